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
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    sleep.as_mut().reset(deadline);
    sleep.await;
}

/// Where a model reads "now" and how it waits.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The runtime's clock (madsim virtual time in the simulator), measured from `epoch`.
    Runtime { epoch: Instant },
    /// A counter in nanoseconds that `sleep_until` advances at once. Valid for one task at a time.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn runtime() -> Self {
        Clock::Runtime { epoch: Instant::now() }
    }

    pub fn manual() -> Self {
        Clock::Manual(Arc::new(AtomicU64::new(0)))
    }

    /// Nanoseconds since this clock's epoch.
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Runtime { epoch } => {
                u64::try_from(Instant::now().duration_since(*epoch).as_nanos()).unwrap_or(u64::MAX)
            }
            Clock::Manual(ns) => ns.load(Ordering::Acquire),
        }
    }

    /// Waits until `deadline_ns` (since the epoch).
    pub async fn sleep_until_ns(&self, deadline_ns: u64) {
        match self {
            Clock::Runtime { epoch } => {
                sleep_until_precise(*epoch + Duration::from_nanos(deadline_ns)).await
            }
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
