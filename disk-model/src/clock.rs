//! Time for the models.
//!
//! madsim rounds every `sleep`/`sleep_until` up to at least 1 ms; an NVMe read takes ~20 µs, so the
//! models sleep with [`sleep_until_precise`], which re-arms the timer at the exact deadline
//! (`Sleep::reset` bypasses the floor). Under plain tokio this is an ordinary `sleep_until`.
//!
//! [`Clock`] lets the model run either on the runtime's (virtual) time or on a manual clock that
//! advances instantly when slept on — for single-task tests and model benchmarks that need no
//! runtime timers at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Sleeps until exactly `deadline`, without madsim's 1 ms floor.
pub async fn sleep_until_precise(deadline: Instant) {
    if Instant::now() >= deadline {
        return;
    }
    wait_exactly(tokio::time::sleep_until(deadline), deadline).await
}

/// Waits on `sleep` until exactly `deadline`: the timer is made with madsim's 1 ms floor, and
/// reset to the deadline before its first poll.
async fn wait_exactly(sleep: tokio::time::Sleep, deadline: Instant) {
    tokio::pin!(sleep);
    sleep.as_mut().reset(deadline);
    sleep.await;
}

/// A point on the runtime's clock, and time since it read cheaply.
///
/// Under madsim, `Instant::now` goes through madsim's `clock_gettime`, which finds the running
/// simulation anew on every call (~150-230 instructions); the models and the tracer read the clock
/// on every operation, segment and record. An `Epoch` holds madsim's time handle instead and
/// reads the same virtual time from it. Outside madsim (or made outside a runtime) it reads
/// `Instant::now`.
#[derive(Clone)]
pub struct Epoch {
    at: Instant,
    /// madsim's handle, and its virtual time elapsed at `at`: `now_ns` is the difference of two
    /// elapsed times (madsim's `Instant`s are its elapsed time from a zero base, so this is
    /// `now_instant() - at` without the `timespec` arithmetic of `Instant::duration_since`).
    #[cfg(madsim)]
    clock: Option<(madsim::time::TimeHandle, Duration)>,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch").field("at", &self.at).finish_non_exhaustive()
    }
}

impl Epoch {
    /// An epoch at the runtime's now.
    pub fn now() -> Self {
        #[cfg(madsim)]
        let clock = madsim::time::TimeHandle::try_current().map(|h| {
            let elapsed = h.elapsed();
            (h, elapsed)
        });
        Epoch {
            #[cfg(madsim)]
            at: clock.as_ref().map_or_else(Instant::now, |(h, _)| h.now_instant()),
            #[cfg(not(madsim))]
            at: Instant::now(),
            #[cfg(madsim)]
            clock,
        }
    }

    /// The instant this epoch starts at.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The runtime's now.
    pub fn now_instant(&self) -> Instant {
        #[cfg(madsim)]
        if let Some((clock, _)) = &self.clock {
            return clock.now_instant();
        }
        Instant::now()
    }

    /// Sleeps until `deadline_ns` after the epoch, exactly ([`sleep_until_precise`]); reads
    /// "now" and makes the timer through the held handle instead of looking up the runtime's
    /// thread-local context twice (~75 instructions a wait fewer; the models and the workload
    /// wait ~20,000 times a simulated second at 100,000 records a second).
    pub async fn sleep_until_ns(&self, deadline_ns: u64) {
        if self.now_ns() >= deadline_ns {
            return;
        }
        let deadline = self.at + Duration::from_nanos(deadline_ns);
        #[cfg(madsim)]
        if let Some((clock, _)) = &self.clock {
            return wait_exactly(clock.sleep_until(deadline), deadline).await;
        }
        sleep_until_precise(deadline).await
    }

    /// Nanoseconds since the epoch (saturating).
    pub fn now_ns(&self) -> u64 {
        #[cfg(madsim)]
        if let Some((clock, at)) = &self.clock {
            let since = clock.elapsed().saturating_sub(*at);
            return u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        }
        u64::try_from(self.now_instant().duration_since(self.at).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Where a model reads "now" and how it waits.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The runtime's clock (madsim virtual time in the simulator), measured from the epoch.
    Runtime(Epoch),
    /// A counter in nanoseconds that `sleep_until` advances at once. Valid for one task at a time.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn runtime() -> Self {
        Clock::Runtime(Epoch::now())
    }

    pub fn manual() -> Self {
        Clock::Manual(Arc::new(AtomicU64::new(0)))
    }

    /// Nanoseconds since this clock's epoch.
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Runtime(epoch) => epoch.now_ns(),
            Clock::Manual(ns) => ns.load(Ordering::Acquire),
        }
    }

    /// Waits until `deadline_ns` (since the epoch).
    pub async fn sleep_until_ns(&self, deadline_ns: u64) {
        match self {
            Clock::Runtime(epoch) => epoch.sleep_until_ns(deadline_ns).await,
            Clock::Manual(ns) => {
                ns.fetch_max(deadline_ns, Ordering::AcqRel);
            }
        }
    }

    /// Moves a manual clock forward (no effect on the runtime clock).
    pub fn advance_ns(&self, by_ns: u64) {
        if let Clock::Manual(ns) = self {
            ns.fetch_add(by_ns, Ordering::AcqRel);
        }
    }
}

#[cfg(all(test, madsim))]
mod tests {
    use super::*;

    /// An epoch made after virtual time has moved counts from when it was made, and reads the
    /// instant the runtime reads.
    #[madsim::test]
    async fn an_epoch_counts_from_when_it_was_made() {
        madsim::time::sleep(Duration::from_millis(5)).await;
        let epoch = Epoch::now();
        assert_eq!(epoch.at(), Instant::now(), "the runtime's now");
        assert_eq!(epoch.now_ns(), 0);
        madsim::time::sleep(Duration::from_millis(3)).await;
        let since = Instant::now() - epoch.at();
        assert!(since >= Duration::from_millis(3), "{since:?}");
        assert_eq!(u128::from(epoch.now_ns()), since.as_nanos());
        assert_eq!(epoch.now_instant(), Instant::now());
    }

    /// A wait through the epoch ends at its deadline, below madsim's 1 ms floor (madsim moves
    /// time a few tens of ns per poll, hence the slack), and one whose deadline has passed
    /// returns at once. Red without the reset to the exact deadline (woke at 1 ms for 37 µs).
    #[madsim::test]
    async fn an_epoch_wait_ends_at_its_deadline() {
        const SLACK_NS: u64 = 1_000;
        let epoch = Epoch::now();
        let waits = |deadline_ns: u64, now_ns: u64| {
            assert!(
                (deadline_ns..deadline_ns + SLACK_NS).contains(&now_ns),
                "woke at {now_ns} ns for a deadline of {deadline_ns} ns"
            )
        };
        epoch.sleep_until_ns(37_000).await;
        waits(37_000, epoch.now_ns());
        epoch.sleep_until_ns(1_000_123).await;
        waits(1_000_123, epoch.now_ns());
        let before = epoch.now_ns();
        epoch.sleep_until_ns(500).await;
        assert!(epoch.now_ns() < before + SLACK_NS, "a past deadline does not wait");
        // The clock the models hold waits the same way.
        Clock::Runtime(epoch.clone()).sleep_until_ns(2_000_001).await;
        waits(2_000_001, epoch.now_ns());
    }
}
