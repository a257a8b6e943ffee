//! Where jobs enter a pool, thread or async alike: the bounded queue with its
//! slot reservations, the keyed lanes, the pool's state bits, and the
//! counters of jobs refused or dropped.
//!
//! The two pools differ in how their workers sleep and run jobs; everything
//! about admitting, queueing and discarding jobs is this one piece.

mod lanes;
mod queue;
mod space;

use std::time::Instant;

use crossbeam_utils::CachePadded;

pub(crate) use lanes::Lanes;
pub(crate) use queue::Queue;

use crate::clock::Clock;
use crate::error::SubmitError;
use crate::job::LaneId;
use crate::stats::Stats;
use crate::sync::{lock, AtomicU64, AtomicUsize, Mutex, Ordering};

/// No new jobs are accepted.
pub(crate) const CLOSED: usize = 1;
/// Queued jobs are dropped instead of run (shutdown without drain).
pub(crate) const DISCARD: usize = 2;
/// Workers take no new jobs until `resume`.
pub(crate) const PAUSED: usize = 4;

/// How long a submission may wait for space.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all (`try_submit`).
    No,
    /// As long as it takes (`submit`).
    Forever,
    /// Until the instant (`submit_timeout`).
    Until(Instant),
}

/// A job that may belong to a keyed lane.
pub(crate) trait Laned {
    /// The lane to hand over when this job ends.
    fn lane(&self) -> Option<LaneId>;
}

/// A queued job and when it was queued (raw clock ticks, for the queue-wait
/// histogram).
pub(crate) struct Task<J> {
    pub(crate) job: J,
    pub(crate) enqueued_at: u64,
}

pub(crate) struct Intake<J> {
    pub(crate) queue: CachePadded<Queue<Task<J>>>,
    pub(crate) lanes: Lanes<Task<J>>,
    state: CachePadded<AtomicUsize>,
    rejected: AtomicU64,
    abandoned: AtomicU64,
    discard_lock: Mutex<()>,
    pub(crate) clock: Clock,
}

impl<J: Laned> Intake<J> {
    pub(crate) fn new(capacity: Option<usize>) -> Self {
        Intake {
            queue: CachePadded::new(Queue::new(capacity)),
            lanes: Lanes::new(),
            state: CachePadded::new(AtomicUsize::new(0)),
            rejected: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            discard_lock: Mutex::new(()),
            clock: Clock::new(),
        }
    }

    #[inline]
    pub(crate) fn state(&self) -> usize {
        self.state.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state() & CLOSED != 0
    }

    /// Sets state bits; the caller wakes its workers so they see them.
    pub(crate) fn set_state(&self, bits: usize) {
        self.state.fetch_or(bits, Ordering::SeqCst);
    }

    /// Clears state bits; the caller wakes its workers so they see them.
    pub(crate) fn clear_state(&self, bits: usize) {
        self.state.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Counts `n` submissions refused.
    pub(crate) fn reject(&self, n: usize) {
        self.rejected.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Turns the outcome of a reservation attempt (`got` slots, after waiting
    /// as `wait` said) into the slots to use or the reason for refusing.
    /// Gives the slots back (and says so through `closed_with`) when the
    /// pool closed meanwhile.
    #[inline]
    pub(crate) fn settle_reservation(
        &self,
        got: usize,
        wait: Wait,
        closed_with: impl FnOnce(usize),
    ) -> Result<usize, SubmitError<()>> {
        if got == 0 {
            return Err(match wait {
                _ if self.is_closed() => SubmitError::Closed(()),
                Wait::No => SubmitError::Full(()),
                _ => SubmitError::Timeout(()),
            });
        }
        // Checked again after reserving: a shutdown that closed the pool
        // before this reservation is seen here, and one that closes it after
        // sees the reservation and waits for this job (workers drain until
        // no slot is reserved).
        if self.is_closed() {
            closed_with(got);
            return Err(SubmitError::Closed(()));
        }
        Ok(got)
    }

    /// Queues a job whose slot is reserved: through its lane if keyed.
    /// True when it went to the shared queue and a worker should be told.
    ///
    /// If a shutdown that discards began meanwhile (the slot was reserved
    /// before the pool closed), the job is dropped here: the shutdown's own
    /// sweep may have run before this push, and an async pool's workers are
    /// gone by then, so nobody else would. Either that sweep sees the job or
    /// this check sees the shutdown.
    #[inline]
    pub(crate) fn enqueue_reserved(&self, job: J) -> bool {
        let lane = job.lane();
        let task = Task {
            job,
            enqueued_at: self.clock.now(),
        };
        let pushed = match lane {
            None => Some(task),
            // Waits behind its lane unless the lane was idle; its turn comes
            // when the lane's current job ends.
            Some(lane) => self.lanes.admit(lane, task),
        };
        if let Some(task) = pushed {
            self.queue.push(task);
            let state = self.state();
            if state & DISCARD != 0 {
                self.discard_all();
                return false;
            }
            // While paused nobody may take it; `resume` wakes everyone.
            return state & PAUSED == 0;
        }
        if self.state() & DISCARD != 0 {
            self.discard_all();
        }
        false
    }

    /// A job of `lane` ended: moves the lane's next job to the shared queue.
    /// True when there was one (a worker should be told).
    pub(crate) fn hand_over(&self, lane: Option<LaneId>) -> bool {
        match lane.and_then(|lane| self.lanes.finish(lane)) {
            Some(next) => {
                self.queue.push(next);
                // As in `enqueue_reserved`: a discarding shutdown's sweep may
                // have run before this push.
                if self.state() & DISCARD != 0 {
                    self.discard_all();
                    return false;
                }
                true
            }
            None => false,
        }
    }

    /// Takes a task for a worker to start, unless the pool is paused or
    /// discarding.
    ///
    /// A worker checks the state before taking, so one that read it just
    /// before a `pause` may be taking a task right now; `pause` promises
    /// that no job starts once it has returned (a caller may count on the
    /// queue staying full, or on nothing running). Such a task goes back to
    /// the head of the queue, still holding its slot. Likewise a task taken
    /// as a `shutdown_now` begins is dropped with the rest of the queue
    /// rather than started.
    #[inline]
    pub(crate) fn take_to_start(&self, oversubscribed: bool) -> Option<Task<J>> {
        let task = self.queue.take(oversubscribed)?;
        if self.state() & (PAUSED | DISCARD) == 0 {
            return Some(task);
        }
        self.give_back(task);
        None
    }

    #[cold]
    fn give_back(&self, task: Task<J>) {
        // Under the discard lock: either a discarding shutdown's sweep comes
        // after this and finds the task, or this sees the shutdown.
        let _discarding = lock(&self.discard_lock);
        if self.state() & DISCARD != 0 {
            self.queue.release_taken();
            self.discard(task);
        } else {
            self.queue.give_back(task);
        }
    }

    /// Drops every task in the queue unrun (shutdown without drain).
    ///
    /// Workers and the shutdown call both do this; the lock makes the
    /// shutdown wait for a worker that is half-way through, so its report
    /// counts every job dropped before it returns.
    pub(crate) fn discard_queued(&self) {
        let _discarding = lock(&self.discard_lock);
        while let Some(task) = self.queue.pop() {
            self.discard(task);
        }
    }

    /// Drops a task unrun (shutdown without drain), then every job queued
    /// behind its lane, and frees their slots. Their handles report
    /// `Abandoned`.
    fn discard(&self, task: Task<J>) {
        let lane = task.job.lane();
        drop(task);
        self.abandoned.fetch_add(1, Ordering::Relaxed);
        self.drop_lane(lane);
    }

    /// Ends `lane` (its running job was dropped or discarded): drops every
    /// job queued behind it unrun and frees their slots.
    pub(crate) fn drop_lane(&self, mut lane: Option<LaneId>) {
        while let Some(next) = lane.and_then(|l| self.lanes.finish(l)) {
            lane = next.job.lane();
            drop(next);
            self.queue.release_dropped(1);
            self.abandoned.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops everything queued, in the shared queue and behind busy lanes
    /// (the last step of a shutdown that gives up on the queue).
    pub(crate) fn discard_all(&self) {
        self.discard_queued();
        for task in self.lanes.take_waiting() {
            drop(task);
            self.queue.release_dropped(1);
            self.abandoned.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Fills in the figures the intake owns.
    pub(crate) fn add_to(&self, stats: &mut Stats) {
        stats.submitted = self.queue.accepted();
        stats.rejected = self.rejected.load(Ordering::Relaxed);
        stats.abandoned += self.abandoned.load(Ordering::Relaxed);
        stats.queued = self.queue.reserved();
        stats.queue_capacity = self.queue.capacity();
        stats.lanes = self.lanes.active();
    }
}
