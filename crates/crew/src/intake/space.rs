//! Producers waiting for queue space: threads blocked on a condition
//! variable and futures parked with a waker, woken together.
//!
//! The protocol is the same for both. A waiter registers (bumps `count`)
//! before it re-checks for space; a worker that frees space reads `count`
//! after freeing it, and when it is non-zero wakes everyone under the lock.
//! Either the re-check sees the freed space or the worker sees the
//! registration, so no waiter sleeps through the space it waits for. The
//! waker resets the count, so every waiter registers again on each round; a
//! waiter that leaves without being woken leaves its mark behind, which costs
//! one spurious wake-up later, never a missed one.

use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::sync::{lock, wait, wait_timeout, AtomicUsize, Condvar, Mutex, Ordering};

/// The futures waiting right now. `round` counts wake-ups, so a future
/// polled again within the same round updates its entry instead of adding
/// one: the list never holds more than one waker per waiting future.
struct Wakers {
    round: u64,
    list: Vec<Waker>,
}

/// Where a waiting future's waker sits: (round, index).
pub(crate) type Registration = Option<(u64, usize)>;

pub(crate) struct SpaceWaiters {
    count: AtomicUsize,
    wakers: Mutex<Wakers>,
    condvar: Condvar,
}

impl SpaceWaiters {
    pub(crate) fn new() -> Self {
        SpaceWaiters {
            count: AtomicUsize::new(0),
            wakers: Mutex::new(Wakers {
                round: 0,
                list: Vec::new(),
            }),
            condvar: Condvar::new(),
        }
    }

    /// True when some producer may be waiting (read after freeing space).
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// Blocks the thread until `attempt` gives an answer, re-trying it each
    /// time space is freed. `None` when `deadline` passes first.
    pub(crate) fn block_until<R>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        let mut guard = lock(&self.wakers);
        loop {
            self.count.fetch_add(1, Ordering::SeqCst);
            if let Some(answer) = attempt() {
                return Some(answer);
            }
            guard = match deadline {
                None => wait(&self.condvar, guard),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    wait_timeout(&self.condvar, guard, deadline - now)
                }
            };
        }
    }

    /// The async form of [`block_until`](Self::block_until): `Pending` with
    /// the task's waker registered, or the answer of `attempt`.
    pub(crate) fn poll_until<R>(
        &self,
        cx: &mut Context<'_>,
        registration: &mut Registration,
        mut attempt: impl FnMut() -> Option<R>,
    ) -> Poll<R> {
        if let Some(answer) = attempt() {
            return Poll::Ready(answer);
        }
        {
            let mut wakers = lock(&self.wakers);
            let round = wakers.round;
            match *registration {
                Some((r, index)) if r == round => {
                    let slot = &mut wakers.list[index];
                    if !slot.will_wake(cx.waker()) {
                        slot.clone_from(cx.waker());
                    }
                }
                _ => {
                    wakers.list.push(cx.waker().clone());
                    *registration = Some((round, wakers.list.len() - 1));
                }
            }
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        match attempt() {
            Some(answer) => Poll::Ready(answer),
            None => Poll::Pending,
        }
    }

    /// Wakes every waiting thread and future so they re-check.
    pub(crate) fn wake_all(&self) {
        let woken = {
            let mut wakers = lock(&self.wakers);
            // Everyone woken registers again if it has to wait again; until
            // then nobody freeing space needs to pay for a wake-up.
            self.count.store(0, Ordering::SeqCst);
            self.condvar.notify_all();
            wakers.round += 1;
            std::mem::take(&mut wakers.list)
        };
        // Outside the lock: a waker may run its task right here (a
        // current-thread runtime polling inline is allowed to).
        for waker in woken {
            waker.wake();
        }
    }
}
