//! Idle workers: spinning, parking, and who gets woken.
//!
//! The rule that keeps a pool of 40 workers fast on 2 cores: a producer wakes
//! a sleeping worker only when no worker is already spinning (looking for
//! work). A spinner that finds a job wakes one more sleeper only if the queue
//! still has jobs behind it, so wake-ups grow with the backlog and a trickle
//! of tiny jobs costs no futex calls at all. Waking and sleeping are the only
//! places that take a lock.
//!
//! No lost wake-up: a worker registers as a sleeper (one `SeqCst` update of
//! `counts`) and then re-checks the queue before it parks; a producer pushes
//! and then reads `counts` (`SeqCst`). One of them must see the other.

use std::time::Duration;

use crate::sync::{lock, wait, wait_timeout, Arc, AtomicUsize, Condvar, Mutex, Ordering};

/// `counts` holds sleepers above this bit and spinners below it.
const SLEEPER: usize = 1 << 20;
const SPINNER_MASK: usize = SLEEPER - 1;
/// Queued jobs one spinner is trusted to absorb before a producer wakes
/// another sleeper anyway.
const BACKLOG_PER_SPINNER: usize = 16;

const EMPTY: u8 = 0;
/// Woken to look for work: counted as a spinner by the waker.
const NOTIFIED_SEARCH: u8 = 1;
/// Woken to re-check the pool's state (resume, resize, shutdown).
const NOTIFIED_CHECK: u8 = 2;

/// How a sleeping worker came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wakeup {
    /// Woken as a spinner: it must call `stop_spinning` once it found work or
    /// gave up.
    Searching,
    /// Woken to re-check the pool's state; not a spinner.
    Check,
    /// Never slept: the re-check before parking found a reason to stay up.
    Recheck,
    /// The keep-alive ran out with no wake-up.
    TimedOut,
}

/// One worker's bed.
pub(crate) struct Parker {
    state: Mutex<u8>,
    condvar: Condvar,
}

impl Parker {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Parker {
            state: Mutex::new(EMPTY),
            condvar: Condvar::new(),
        })
    }

    /// Waits for a notification; `None` when `timeout` passed first.
    fn park(&self, timeout: Option<Duration>) -> Option<u8> {
        let mut state = lock(&self.state);
        // Read the clock only for a timed park: untimed parks happen on every
        // idle spell of every worker, and the clock read showed up in
        // profiles of 40 workers on 2 cores.
        let deadline = timeout.map(|timeout| std::time::Instant::now() + timeout);
        while *state == EMPTY {
            state = match deadline {
                None => wait(&self.condvar, state),
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    wait_timeout(&self.condvar, state, deadline - now)
                }
            };
        }
        Some(std::mem::replace(&mut *state, EMPTY))
    }

    fn unpark(&self, kind: u8) {
        let mut state = lock(&self.state);
        // A search request outranks a plain check: the waker already counted
        // this worker as a spinner.
        if *state != NOTIFIED_SEARCH {
            *state = kind;
        }
        drop(state);
        self.condvar.notify_one();
    }
}

pub(crate) struct Sleepers {
    counts: AtomicUsize,
    idle: Mutex<Vec<Arc<Parker>>>,
    max_spinning: usize,
}

impl Sleepers {
    pub(crate) fn new(max_spinning: usize) -> Self {
        Sleepers {
            counts: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            max_spinning: max_spinning.max(1),
        }
    }

    /// Called by a producer after pushing work; `backlog` reads how many
    /// jobs are queued. Returns false when nobody could be woken and the
    /// spinners cannot cover the backlog (the caller may start a worker).
    ///
    /// A sleeper is woken when nobody spins, or when the backlog outgrows the
    /// spinners: a worker woken to search is counted as a spinner before the
    /// OS has even scheduled it, and without this second rule a burst of slow
    /// jobs would wake idle workers one at a time, each waiting for the
    /// previous one to run (a 1,000-worker pool took a second to ramp up).
    #[inline]
    pub(crate) fn notify_work(&self, backlog: impl FnOnce() -> usize) -> bool {
        let counts = self.counts.load(Ordering::SeqCst);
        let spinning = counts & SPINNER_MASK;
        if counts < SLEEPER {
            // Nobody to wake. Spinners cover the backlog only if there are at
            // least as many of them as queued jobs; otherwise an elastic pool
            // must start a worker, or a job could wait behind busy workers
            // while the pool is below its maximum.
            return spinning != 0 && backlog() <= spinning;
        }
        if spinning == 0 || backlog() > spinning * BACKLOG_PER_SPINNER {
            // The sleeper seen in `counts` may have left (reaped, or woken by
            // another producer) before the list was locked: then nobody was
            // woken, and the caller must start a worker if it can.
            return self.wake_one() || spinning != 0;
        }
        true
    }

    /// Wakes one sleeper as a spinner. Returns false if none was asleep.
    pub(crate) fn wake_one(&self) -> bool {
        let parker = {
            let mut idle = lock(&self.idle);
            let Some(parker) = idle.pop() else {
                return false;
            };
            // One fewer sleeper, one more spinner, in one step so producers
            // never see the gap and wake a second worker for the same job.
            self.counts.fetch_sub(SLEEPER - 1, Ordering::SeqCst);
            parker
        };
        parker.unpark(NOTIFIED_SEARCH);
        true
    }

    /// Wakes every sleeper to re-check the pool's state.
    pub(crate) fn wake_all(&self) {
        let parkers = std::mem::take(&mut *lock(&self.idle));
        if parkers.is_empty() {
            return;
        }
        self.counts
            .fetch_sub(SLEEPER * parkers.len(), Ordering::SeqCst);
        for parker in parkers {
            parker.unpark(NOTIFIED_CHECK);
        }
    }

    /// Becomes a spinner unless enough workers already spin.
    pub(crate) fn try_start_spinning(&self) -> bool {
        let mut counts = self.counts.load(Ordering::Relaxed);
        loop {
            if counts & SPINNER_MASK >= self.max_spinning {
                return false;
            }
            match self.counts.compare_exchange_weak(
                counts,
                counts + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => counts = actual,
            }
        }
    }

    /// Stops spinning. Returns true if this was the last spinner.
    pub(crate) fn stop_spinning(&self) -> bool {
        self.counts.fetch_sub(1, Ordering::SeqCst) & SPINNER_MASK == 1
    }

    /// Parks the calling worker until woken or until `timeout`.
    ///
    /// `stay_awake` is evaluated after the worker is registered as a sleeper:
    /// if it says there is a reason to stay up (work arrived, the pool's state
    /// changed), the worker unregisters and returns `Recheck` without parking.
    pub(crate) fn sleep(
        &self,
        parker: &Arc<Parker>,
        timeout: Option<Duration>,
        stay_awake: impl Fn() -> bool,
    ) -> Wakeup {
        {
            let mut idle = lock(&self.idle);
            idle.push(parker.clone());
            self.counts.fetch_add(SLEEPER, Ordering::SeqCst);
        }
        if stay_awake() {
            return match self.unregister(parker) {
                true => Wakeup::Recheck,
                false => self.consume_notification(parker),
            };
        }
        match parker.park(timeout) {
            Some(kind) => kind_to_wakeup(kind),
            None => match self.unregister(parker) {
                true => Wakeup::TimedOut,
                // Woken at the same moment the timeout ran out: the waker has
                // already counted on this worker, so honour the wake-up.
                false => self.consume_notification(parker),
            },
        }
    }

    /// Removes `parker` from the idle list; false if a waker took it first.
    fn unregister(&self, parker: &Arc<Parker>) -> bool {
        let mut idle = lock(&self.idle);
        match idle.iter().position(|p| Arc::ptr_eq(p, parker)) {
            Some(index) => {
                idle.swap_remove(index);
                self.counts.fetch_sub(SLEEPER, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// A waker popped this worker from the idle list; its notification is
    /// on the way (or here). Take it so the next park does not return early.
    fn consume_notification(&self, parker: &Arc<Parker>) -> Wakeup {
        match parker.park(None) {
            Some(kind) => kind_to_wakeup(kind),
            None => unreachable!("park without timeout returned no notification"),
        }
    }
}

fn kind_to_wakeup(kind: u8) -> Wakeup {
    match kind {
        NOTIFIED_SEARCH => Wakeup::Searching,
        _ => Wakeup::Check,
    }
}
