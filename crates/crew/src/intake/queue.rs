//! The bounded queue: slot reservations, the job storage, and the producers
//! waiting for space.
//!
//! Capacity is enforced by a reservation count rather than by the storage:
//! a producer reserves a slot before it builds the task, so a full queue gives
//! the caller its closure back untouched, and jobs parked behind a busy keyed
//! lane hold a slot too, so the bound covers every job the pool holds. The
//! storage never holds more tasks than there are reservations, so pushing
//! into it cannot fail.

use std::future::poll_fn;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use super::space::{Registration, SpaceWaiters};
use crate::sync::{lock, AtomicUsize, Mutex, Ordering};

/// Up to this capacity the storage is a preallocated ring; above it (and for
/// unbounded queues) a segmented queue that grows and shrinks with use, so a
/// huge bound costs nothing until it is used.
#[cfg(not(loom))]
const RING_MAX: usize = 1 << 16;

#[cfg(not(loom))]
enum Storage<T> {
    Ring(crossbeam_queue::ArrayQueue<T>),
    Segmented(crossbeam_queue::SegQueue<T>),
}

#[cfg(not(loom))]
impl<T> Storage<T> {
    fn new(capacity: Option<usize>) -> Self {
        match capacity {
            Some(cap) if cap <= RING_MAX => Storage::Ring(crossbeam_queue::ArrayQueue::new(cap)),
            _ => Storage::Segmented(crossbeam_queue::SegQueue::new()),
        }
    }

    #[inline]
    fn push(&self, task: T) {
        match self {
            Storage::Ring(ring) => {
                if ring.push(task).is_err() {
                    unreachable!("queue storage overflow: more tasks than reservations");
                }
            }
            Storage::Segmented(seg) => seg.push(task),
        }
    }

    #[inline]
    fn pop(&self) -> Option<T> {
        match self {
            Storage::Ring(ring) => ring.pop(),
            Storage::Segmented(seg) => seg.pop(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Storage::Ring(ring) => ring.is_empty(),
            Storage::Segmented(seg) => seg.is_empty(),
        }
    }
}

// Under loom the storage is a locked deque: loom cannot see inside crossbeam's
// lock-free queues, and the protocols modelled are the ones around the
// storage (reservations, wake-ups, shutdown), not the storage itself.
#[cfg(loom)]
struct Storage<T>(Mutex<std::collections::VecDeque<T>>);

#[cfg(loom)]
impl<T> Storage<T> {
    fn new(_capacity: Option<usize>) -> Self {
        Storage(Mutex::new(std::collections::VecDeque::new()))
    }
    fn push(&self, task: T) {
        lock(&self.0).push_back(task);
    }
    fn pop(&self) -> Option<T> {
        lock(&self.0).pop_front()
    }
    fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }
}

/// What producers write on every job.
struct ProducerSide {
    /// Slots reserved, ever, less the ones handed back unused.
    accepted: AtomicUsize,
    /// A recent reading of `taken`. Taken only grows, so an old reading
    /// overstates how full the queue is and never lets it overfill;
    /// producers read the workers' counter only when the queue looks full.
    taken_seen: AtomicUsize,
}

pub(crate) struct Queue<T> {
    storage: Storage<T>,
    /// Tasks a worker took just as the pool paused and gave back unstarted
    /// (see [`give_back`](Self::give_back)). Taken before `storage`, so they
    /// keep their place at the head of the queue. Rare, so a locked deque.
    returned: Mutex<std::collections::VecDeque<T>>,
    /// `returned`'s length, so that takes look at the lock only when it
    /// holds something.
    returned_len: AtomicUsize,
    /// When workers far outnumber CPUs, they take jobs one at a
    /// time. crossbeam's queues spin, without yielding, while a push they can
    /// see is half-done; with hundreds of workers on two cores, a producer
    /// preempted mid-push was starved by every idle worker spinning on it
    /// (B3 ran at a twentieth of `threadpool`). Behind a lock, one worker
    /// waits for the push and the rest sleep in the kernel. With few
    /// workers per CPU the lock would only add contention (B1 at 2 workers
    /// lost two thirds of its rate), so they take lock-free. Producers are
    /// lock-free either way.
    take_lock: Mutex<()>,
    /// Jobs accepted and not yet taken by a worker (in storage, parked in a
    /// lane, or being pushed right now) is `accepted - taken`. The two
    /// halves live on separate cache lines so producers and workers do not
    /// fight over one line on every job.
    producers: CachePadded<ProducerSide>,
    /// Jobs taken by workers, ever. Only workers write it.
    taken: CachePadded<AtomicUsize>,
    capacity: usize,
    /// Blocked producers are woken once the queue drains to this level, not
    /// on every freed slot: a producer woken per slot would sleep and wake
    /// once per job (a futex round trip each) instead of refilling in bulk.
    low_water: usize,
    bounded: bool,
    space: SpaceWaiters,
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: Option<usize>) -> Self {
        Queue {
            storage: Storage::new(capacity),
            returned: Mutex::new(std::collections::VecDeque::new()),
            returned_len: AtomicUsize::new(0),
            take_lock: Mutex::new(()),
            producers: CachePadded::new(ProducerSide {
                accepted: AtomicUsize::new(0),
                taken_seen: AtomicUsize::new(0),
            }),
            taken: CachePadded::new(AtomicUsize::new(0)),
            capacity: capacity.unwrap_or(usize::MAX),
            low_water: capacity.map_or(usize::MAX, |cap| cap - (cap / 4).max(1)),
            bounded: capacity.is_some(),
            space: SpaceWaiters::new(),
        }
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        self.bounded.then_some(self.capacity)
    }

    /// Jobs accepted and not yet started.
    ///
    /// Exact when it reads zero: `taken` is read first and never passes
    /// `accepted`, so zero means there was a moment (the read of `accepted`)
    /// when nothing was reserved. Otherwise it may overstate by the jobs
    /// taken in between.
    pub(crate) fn reserved(&self) -> usize {
        let taken = self.taken.load(Ordering::SeqCst);
        let accepted = self.producers.accepted.load(Ordering::SeqCst);
        accepted.wrapping_sub(taken)
    }

    /// Reserves up to `want` slots without blocking; returns how many it got.
    #[inline]
    pub(crate) fn try_reserve(&self, want: usize) -> usize {
        let producers = &*self.producers;
        if !self.bounded {
            producers.accepted.fetch_add(want, Ordering::SeqCst);
            return want;
        }
        let mut accepted = producers.accepted.load(Ordering::Relaxed);
        let mut taken = producers.taken_seen.load(Ordering::Relaxed);
        loop {
            // A reading of `taken` newer than the reading of `accepted` can
            // make this wrap; it then looks full and is refreshed below.
            let used = accepted.wrapping_sub(taken);
            let free = self.capacity.saturating_sub(used);
            if free == 0 || used > self.capacity {
                let fresh = self.taken.load(Ordering::SeqCst);
                let fresh_accepted = producers.accepted.load(Ordering::SeqCst);
                if fresh == taken && fresh_accepted == accepted {
                    return 0;
                }
                producers.taken_seen.store(fresh, Ordering::Relaxed);
                taken = fresh;
                accepted = fresh_accepted;
                continue;
            }
            let got = want.min(free);
            match producers.accepted.compare_exchange_weak(
                accepted,
                accepted + got,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return got,
                Err(actual) => accepted = actual,
            }
        }
    }

    /// Reserves at least one and up to `want` slots, waiting for space until
    /// `deadline` (forever when `None`). Returns 0 on timeout, or when
    /// `give_up` turns true (the pool closed) while waiting.
    pub(crate) fn reserve_blocking(
        &self,
        want: usize,
        deadline: Option<Instant>,
        give_up: impl Fn() -> bool,
    ) -> usize {
        let got = self.try_reserve(want);
        if got > 0 {
            return got;
        }
        self.space
            .block_until(deadline, || {
                let got = self.try_reserve(want);
                (got > 0 || give_up()).then_some(got)
            })
            .unwrap_or(0)
    }

    /// The async form of [`reserve_blocking`](Self::reserve_blocking)
    /// without a deadline (callers race it against a timer): the task waits
    /// until it gets at least one slot, or until `give_up` turns true (then
    /// 0). No thread is blocked.
    pub(crate) async fn reserve_async(&self, want: usize, give_up: impl Fn() -> bool) -> usize {
        let got = self.try_reserve(want);
        if got > 0 || give_up() {
            return got;
        }
        let mut registration: Registration = None;
        poll_fn(|cx| {
            self.space.poll_until(cx, &mut registration, || {
                let got = self.try_reserve(want);
                (got > 0 || give_up()).then_some(got)
            })
        })
        .await
    }

    /// Gives back `n` reservations that will not be used (the pool closed
    /// between reserving and pushing, or a shutdown dropped jobs parked in
    /// lanes).
    pub(crate) fn unreserve(&self, n: usize) {
        self.producers.accepted.fetch_sub(n, Ordering::SeqCst);
        if self.space.any() {
            self.wake_all_producers();
        }
    }

    /// Stores a task whose slot is already reserved.
    #[inline]
    pub(crate) fn push(&self, task: T) {
        self.storage.push(task);
    }

    /// Takes a task and frees its slot.
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        let task = self.take(true)?;
        self.release(1);
        Some(task)
    }

    /// Takes a task (one worker at a time when `oversubscribed`; see
    /// `take_lock`) but keeps its slot until [`release_taken`](Self::release_taken):
    /// a worker marks itself busy in between, so nobody can see the job
    /// neither queued nor running (`wait_idle` would return too early).
    #[inline]
    pub(crate) fn take(&self, oversubscribed: bool) -> Option<T> {
        if self.returned_len.load(Ordering::SeqCst) != 0 {
            if let Some(task) = self.take_returned() {
                return Some(task);
            }
        }
        if !oversubscribed {
            return self.storage.pop();
        }
        // Idle workers poll often; an empty queue costs no lock.
        if self.storage.is_empty() {
            return None;
        }
        let _taking = lock(&self.take_lock);
        self.storage.pop()
    }

    /// Puts back, at the head of the queue, a task obtained with
    /// [`take`](Self::take) that its worker must not start after all. Its
    /// slot was never released, so it stays counted as queued.
    pub(crate) fn give_back(&self, task: T) {
        let mut returned = lock(&self.returned);
        returned.push_front(task);
        self.returned_len.store(returned.len(), Ordering::SeqCst);
    }

    #[cold]
    fn take_returned(&self) -> Option<T> {
        let mut returned = lock(&self.returned);
        let task = returned.pop_front();
        self.returned_len.store(returned.len(), Ordering::SeqCst);
        task
    }

    /// Frees the slots of `n` accepted jobs dropped unrun without passing
    /// through storage (jobs parked in a lane, at shutdown). Unlike
    /// [`unreserve`](Self::unreserve) they stay counted as accepted.
    pub(crate) fn release_dropped(&self, n: usize) {
        self.release(n);
    }

    /// Jobs accepted over the queue's life (`Stats::submitted`): every
    /// reservation not handed back is a job that was queued.
    pub(crate) fn accepted(&self) -> u64 {
        self.producers.accepted.load(Ordering::Relaxed) as u64
    }

    /// Frees the slot of a task obtained with [`take`](Self::take).
    #[inline]
    pub(crate) fn release_taken(&self) {
        self.release(1);
    }

    /// True when no task is in storage or given back (lanes may still hold
    /// parked jobs).
    pub(crate) fn is_empty(&self) -> bool {
        self.storage.is_empty() && self.returned_len.load(Ordering::SeqCst) == 0
    }

    #[inline]
    fn release(&self, n: usize) {
        let taken = self.taken.fetch_add(n, Ordering::SeqCst) + n;
        // Producers only wait when the queue is full, so one that registered
        // before this release is woken at the latest when the level crosses
        // `low_water`; one that registers after it re-checks and finds room.
        if self.space.any() {
            let left = self.producers.accepted.load(Ordering::SeqCst) - taken;
            if left <= self.low_water {
                self.wake_all_producers();
            }
        }
    }

    /// Wakes every blocked producer so it can see that the pool closed.
    pub(crate) fn wake_all_producers(&self) {
        self.space.wake_all();
    }
}
