//! The clock behind the queue-wait and run-time histograms.
//!
//! Every job is stamped when queued and when it starts and ends, so the clock
//! is on the hot path. `quanta` reads the TSC (a few nanoseconds) where it is
//! stable and falls back to the OS clock elsewhere. Under loom there is no
//! time, only interleavings, so the clock reads zero.

#[derive(Clone)]
pub(crate) struct Clock {
    #[cfg(not(loom))]
    inner: quanta::Clock,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            #[cfg(not(loom))]
            inner: quanta::Clock::new(),
        }
    }

    /// A raw reading; only differences between readings mean anything.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        #[cfg(not(loom))]
        {
            self.inner.raw()
        }
        #[cfg(loom)]
        {
            0
        }
    }

    /// Nanoseconds between two readings (zero if `end` is not after `start`).
    #[inline]
    pub(crate) fn nanos_between(&self, start: u64, end: u64) -> u64 {
        #[cfg(not(loom))]
        {
            if end <= start {
                return 0;
            }
            self.inner.delta_as_nanos(start, end)
        }
        #[cfg(loom)]
        {
            let _ = (start, end);
            0
        }
    }
}
