//! The worker loop: take a job, run it, record it; spin briefly when the
//! queue is empty; sleep when there is nothing to do; leave when the pool
//! shrinks, reaps idle workers, or has drained after a shutdown.

use std::time::{Duration, Instant};

use crate::intake::{Task, CLOSED, DISCARD, PAUSED};
use crate::job::{JobBox, RunEnv};
use crate::stats::WorkerStats;
use crate::sync::{Arc, Ordering};

use super::shared::Shared;
use super::sleep::{Parker, Wakeup};

/// A sleeping worker re-checks the queue at least this often even when
/// nobody wakes it. The wake-up protocol is meant to make this unnecessary,
/// and the loom models find no lost wake-up in it, but the stress suite has
/// shown a job left queued beside a sleeping worker (rarely, under heavy
/// load, with spinning involved, which the models do not cover). Until that
/// is understood, this bounds such a stall to a fraction of a second
/// instead of forever.
const IDLE_RECHECK: Duration = Duration::from_millis(200);

/// Workers per CPU above which takes are serialized (see
/// `Queue::take_lock`). Below it the lock costs more than it saves: at 40
/// workers on 2 CPUs it was the worker's hottest instruction in B1 (15%
/// fewer jobs/s); at 1,000 it is what keeps B3 from starving the producer.
const OVERSUBSCRIBED_PER_CPU: usize = 16;

#[cfg(not(loom))]
std::thread_local! {
    /// The pool the current thread works for, so that a job which shuts its
    /// own pool down is not waited for by that very shutdown.
    static CURRENT_POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// True when the calling thread is one of `shared`'s workers.
pub(crate) fn on_worker_of(shared: &Shared) -> bool {
    #[cfg(not(loom))]
    {
        CURRENT_POOL.with(|pool| pool.get() == shared as *const Shared as usize)
    }
    #[cfg(loom)]
    {
        let _ = shared;
        false
    }
}

pub(crate) fn run(shared: Arc<Shared>, id: usize, stats: Arc<WorkerStats>) {
    #[cfg(not(loom))]
    CURRENT_POOL.with(|pool| pool.set(&*shared as *const Shared as usize));
    let mut worker = Worker {
        parker: Parker::new(),
        spinning: false,
        last_end: None,
        idle_since: None,
        shared: &shared,
        stats: &stats,
    };
    let departure = worker.work();
    if worker.spinning {
        shared.sleepers.stop_spinning();
    }
    // A worker that leaves after a shrink or a reap may have been the one
    // woken for a job still in the queue: pass the wake-up on (it is off the
    // live count already, so an elastic pool can start a replacement).
    if departure == Departure::Counted && !shared.intake.queue.is_empty() {
        shared.notify_work();
    }
    // Last: once this says the worker exited, another thread may join it.
    shared.worker_exited(id, departure == Departure::Drained);
}

/// Why a worker left.
#[derive(PartialEq, Eq)]
enum Departure {
    /// It claimed an excess slot (shrink or reap) and already took itself
    /// off the live count.
    Counted,
    /// The pool drained after a shutdown.
    Drained,
}

struct Worker<'a> {
    shared: &'a Arc<Shared>,
    stats: &'a WorkerStats,
    parker: Arc<Parker>,
    /// Counted as a spinner in the sleepers' counts.
    spinning: bool,
    /// When the previous job ended, if this worker went straight on to the
    /// next one: that reading doubles as the next job's start, saving a
    /// clock read per job under load.
    last_end: Option<u64>,
    /// When this worker last ran out of work, for the keep-alive.
    idle_since: Option<Instant>,
}

impl Worker<'_> {
    /// Runs until the worker leaves; says whether it already took itself off
    /// the live count.
    fn work(&mut self) -> Departure {
        let shared = self.shared;
        loop {
            // Before every job, not only when idle: after a shrink, the extra
            // workers leave as soon as their current job ends.
            if shared.headcount.try_retire() {
                return Departure::Counted;
            }
            let state = shared.state();
            if state & DISCARD != 0 {
                shared.intake.discard_queued();
            } else if state & PAUSED == 0 {
                let oversubscribed = shared.headcount.live.load(Ordering::Relaxed)
                    > OVERSUBSCRIBED_PER_CPU * shared.config.cpus;
                if let Some(task) = shared.intake.take_to_start(oversubscribed) {
                    self.idle_since = None;
                    self.stats.set_busy(true);
                    shared.intake.queue.release_taken();
                    self.found_work();
                    self.run_task(task);
                    continue;
                }
            }
            if state & CLOSED != 0 && shared.intake.queue.reserved() == 0 {
                // Drained. Wake the others so they see it too.
                shared.sleepers.wake_all();
                return Departure::Drained;
            }
            // Empty-handed: a watcher in `wait_idle` may be waiting for this.
            shared.notify_watchers();
            self.last_end = None;
            if state & PAUSED == 0 && self.spin_for_work(state) {
                continue;
            }
            if self.spinning {
                self.spinning = false;
                shared.sleepers.stop_spinning();
            }
            match self.sleep(state) {
                Wakeup::Searching => self.spinning = true,
                Wakeup::Check | Wakeup::Recheck => {}
                Wakeup::TimedOut => {
                    let idle_for = self.idle_since.get_or_insert_with(Instant::now).elapsed();
                    if idle_for >= shared.config.keep_alive && shared.headcount.try_reap() {
                        return Departure::Counted;
                    }
                }
            }
        }
    }

    /// Spins for a while watching the queue. True when work showed up or
    /// the pool's state moved on from `seen`.
    fn spin_for_work(&mut self, seen: usize) -> bool {
        // loom explores every iteration of a spin loop as a new schedule;
        // parking is the protocol worth modelling.
        if cfg!(loom) {
            return false;
        }
        let shared = self.shared;
        if !self.spinning {
            self.spinning = shared.sleepers.try_start_spinning();
            if !self.spinning {
                return false;
            }
        }
        // crossbeam's backoff: a few exponentially longer spins, then yields
        // (so a spinner on a machine with fewer cores than threads gives way
        // to the producer), a few microseconds in all before parking.
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            if !shared.intake.queue.is_empty() || shared.state() != seen {
                return true;
            }
            backoff.snooze();
        }
        false
    }

    /// Called after taking a job. A spinner that finds work stops spinning;
    /// if it was the last one and more work is queued, it wakes another
    /// worker to take over the search, so wake-ups follow the backlog.
    #[inline]
    fn found_work(&mut self) {
        if self.spinning {
            self.spinning = false;
            let shared = self.shared;
            if shared.sleepers.stop_spinning() && !shared.intake.queue.is_empty() {
                shared.notify_work();
            }
        }
    }

    fn sleep(&mut self, seen: usize) -> Wakeup {
        let shared = self.shared;
        let reapable = shared.headcount.reapable();
        if reapable && self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
        let timeout = if reapable {
            shared.config.keep_alive.min(IDLE_RECHECK)
        } else {
            IDLE_RECHECK
        };
        let timeout = Some(timeout);
        shared.sleepers.sleep(&self.parker, timeout, || {
            let state = shared.state();
            state != seen
                || (state & PAUSED == 0 && !shared.intake.queue.is_empty())
                || (state & CLOSED != 0 && shared.intake.queue.reserved() == 0)
                || shared.headcount.over_target()
        })
    }

    fn run_task(&mut self, task: Task<JobBox>) {
        let shared = self.shared;
        let stats = self.stats;
        let Task {
            mut job,
            enqueued_at,
        } = task;
        let lane = job.lane();
        let started = self
            .last_end
            .take()
            .unwrap_or_else(|| shared.intake.clock.now());
        let env = RunEnv {
            pool_stopping: &shared.stopping,
        };
        let outcome = job.run(&env);
        let ended = shared.intake.clock.now();
        self.last_end = Some(ended);
        let ran_for = shared.intake.clock.nanos_between(started, ended);
        let waited = shared.intake.clock.nanos_between(enqueued_at, started);
        stats.record(outcome, waited, ran_for, shared.config.on_panic.as_deref());
        if shared.intake.hand_over(lane) {
            shared.notify_work();
        }
        // Only now: `wait_idle` returns once no worker is busy, and by then
        // this job must be in the counters and its lane handed over.
        stats.set_busy(false);
    }
}
