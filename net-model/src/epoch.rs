//! Time since a fixed instant on the runtime's clock, read cheaply.
//!
//! Under madsim, `Instant::now` goes through madsim's `clock_gettime`, which finds the running
//! simulation anew on every call (about 150 instructions); the models read the clock on every
//! read, segment and CPU charge. [`Epoch`] holds madsim's time handle instead and reads the same
//! virtual time from it. Outside madsim (and outside a runtime) it is `Instant::now`.

use tokio::time::Instant;

#[derive(Clone)]
pub(crate) struct Epoch {
    at: Instant,
    #[cfg(madsim)]
    clock: Option<madsim::time::TimeHandle>,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch").field("at", &self.at).finish_non_exhaustive()
    }
}

impl Epoch {
    /// An epoch at the runtime's now.
    pub(crate) fn now() -> Self {
        Epoch {
            at: Instant::now(),
            #[cfg(madsim)]
            clock: madsim::time::TimeHandle::try_current(),
        }
    }

    /// The instant this epoch starts at.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// Nanoseconds since the epoch (saturating).
    pub(crate) fn now_ns(&self) -> u64 {
        #[cfg(madsim)]
        let now = match &self.clock {
            Some(clock) => clock.now_instant(),
            None => Instant::now(),
        };
        #[cfg(not(madsim))]
        let now = Instant::now();
        u64::try_from(now.duration_since(self.at).as_nanos()).unwrap_or(u64::MAX)
    }
}
