//! How many workers a pool has, wants, and must keep: the counts behind
//! growing, shrinking and reaping, shared by the thread and async pools.

use crate::sync::{AtomicUsize, Ordering};

pub(crate) struct Headcount {
    /// Workers the pool should have (its maximum; `resize` moves it).
    pub(crate) target: AtomicUsize,
    /// Workers kept even when idle past the keep-alive.
    pub(crate) min: AtomicUsize,
    /// Workers started and not yet claimed a departure.
    pub(crate) live: AtomicUsize,
}

impl Headcount {
    pub(crate) fn new(target: usize, min: usize) -> Self {
        Headcount {
            target: AtomicUsize::new(target),
            min: AtomicUsize::new(min),
            live: AtomicUsize::new(0),
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Claims a slot for one more worker if fewer than `limit` (and than the
    /// target) are alive. The caller starts the worker, or calls
    /// [`unclaim`](Self::unclaim) if it cannot.
    pub(crate) fn claim_start(&self, limit: usize) -> bool {
        let mut live = self.live.load(Ordering::SeqCst);
        loop {
            let target = self.target.load(Ordering::SeqCst).min(limit);
            if live >= target {
                return false;
            }
            match self
                .live
                .compare_exchange(live, live + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => live = actual,
            }
        }
    }

    /// A worker claimed with [`claim_start`](Self::claim_start) did not
    /// start, or a drained worker left.
    pub(crate) fn unclaim(&self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }

    /// More workers alive than the target (after a shrink).
    pub(crate) fn over_target(&self) -> bool {
        self.live.load(Ordering::SeqCst) > self.target.load(Ordering::SeqCst)
    }

    /// True when an idle worker may be reaped after the keep-alive.
    pub(crate) fn reapable(&self) -> bool {
        self.live.load(Ordering::SeqCst) > self.min.load(Ordering::SeqCst)
    }

    /// Leaves if the pool has more workers than its target (after `resize`).
    pub(crate) fn try_retire(&self) -> bool {
        self.leave_if(|live| live > self.target.load(Ordering::SeqCst))
    }

    /// Leaves after an idle keep-alive if the pool is above its minimum.
    pub(crate) fn try_reap(&self) -> bool {
        self.leave_if(|live| {
            live > self
                .min
                .load(Ordering::SeqCst)
                .min(self.target.load(Ordering::SeqCst))
        })
    }

    /// Claims a departure by taking a worker off the live count, so two idle
    /// workers can never both leave for the same excess slot.
    fn leave_if(&self, excess: impl Fn(usize) -> bool) -> bool {
        let mut current = self.live.load(Ordering::SeqCst);
        while excess(current) {
            match self.live.compare_exchange(
                current,
                current - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        false
    }

    /// Sets a new target. A fixed pool (minimum = maximum) stays fixed at its
    /// new size; an elastic one keeps its minimum, lowered if above the new
    /// maximum.
    pub(crate) fn retarget(&self, workers: usize) {
        let old_target = self.target.swap(workers, Ordering::SeqCst);
        let min = self.min.load(Ordering::SeqCst);
        if min >= old_target || min > workers {
            self.min.store(workers, Ordering::SeqCst);
        }
    }
}
