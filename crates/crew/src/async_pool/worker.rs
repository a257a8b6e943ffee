//! The worker task: take a job, run it to its end, record it; wait when
//! there is nothing to do; leave when the pool shrinks, reaps idle workers,
//! or has drained after a shutdown.

use std::sync::Arc;

use super::job::AsyncJob;
use super::shared::{AsyncShared, Wakeup};
use crate::intake::{Laned, Task, CLOSED, DISCARD, PAUSED};
use crate::job::LaneId;
use crate::stats::{Counter, WorkerStats};

/// A worker's membership in its pool. It is moved into the worker's future,
/// so whatever ends the worker (its loop returning, an abort by a hard
/// stop, the runtime shutting down, even before the task was first polled)
/// drops it, and dropping it takes the worker off the books.
pub(crate) struct Presence {
    shared: Arc<AsyncShared>,
    id: usize,
    stats: Arc<WorkerStats>,
    /// Set when the worker already took itself off the live count (it left
    /// after a shrink or an idle keep-alive).
    uncounted: bool,
    /// The lane of the job running now, released if the job is dropped
    /// mid-run (nobody else would hand it over).
    lane: Option<LaneId>,
}

impl Presence {
    pub(crate) fn new(shared: Arc<AsyncShared>, id: usize, stats: Arc<WorkerStats>) -> Self {
        Presence {
            shared,
            id,
            stats,
            uncounted: false,
            lane: None,
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let shared = &self.shared;
        if self.stats.is_busy() {
            // Dropped mid-job by a hard stop: the job's future went with it.
            self.stats.count(Counter::Cancelled);
            shared.intake.drop_lane(self.lane.take());
            self.stats.set_busy(false);
        }
        // A worker leaving after a shrink or a reap may have been the one
        // woken for a job still queued: pass the wake-up on.
        if self.uncounted && !shared.intake.queue.is_empty() {
            shared.notify_work();
        }
        shared.worker_exited(self.id, !self.uncounted);
    }
}

pub(crate) async fn run(mut me: Presence) {
    let shared = me.shared.clone();
    let stats = me.stats.clone();
    let mut idle_since: Option<tokio::time::Instant> = None;
    // Woken by a producer and not yet at work (see `notify_work`).
    let mut searching = false;
    let stop_searching = |searching: &mut bool| {
        if std::mem::take(searching) {
            shared.stop_searching();
        }
    };
    loop {
        // Before every job, not only when idle: after a shrink, the extra
        // workers leave as soon as their current job ends.
        if shared.headcount.try_retire() {
            stop_searching(&mut searching);
            me.uncounted = true;
            return;
        }
        let state = shared.state();
        if state & DISCARD != 0 {
            shared.intake.discard_queued();
        } else if state & PAUSED == 0 {
            if let Some(task) = shared.intake.take_to_start(false) {
                if searching {
                    // Found work: if more is queued, the next worker is
                    // woken, so wake-ups follow the backlog.
                    stop_searching(&mut searching);
                    if !shared.intake.queue.is_empty() {
                        shared.notify_work();
                    }
                }
                idle_since = None;
                me.lane = task.job.lane();
                stats.set_busy(true);
                shared.intake.queue.release_taken();
                run_task(&shared, &stats, task).await;
                me.lane = None;
                // A worker whose jobs never wait would otherwise hold its
                // runtime thread for as long as the queue has work; this
                // yields once the task's cooperative budget is spent.
                tokio::task::coop::consume_budget().await;
                continue;
            }
        }
        stop_searching(&mut searching);
        if state & CLOSED != 0 && shared.intake.queue.reserved() == 0 {
            // Drained. Wake the others so they see it too.
            shared.wake_all_workers();
            return;
        }
        // Empty-handed: a watcher in `wait_idle` may be waiting for this.
        shared.notify_watchers();
        let reapable = shared.headcount.reapable();
        let timeout = if reapable {
            let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
            Some(shared.config.keep_alive.saturating_sub(since.elapsed()))
        } else {
            None
        };
        let wakeup = shared
            .idle_wait(timeout, || {
                let now = shared.state();
                now != state
                    || (now & PAUSED == 0 && !shared.intake.queue.is_empty())
                    || (now & CLOSED != 0 && shared.intake.queue.reserved() == 0)
                    || shared.headcount.over_target()
            })
            .await;
        match wakeup {
            Wakeup::Notified => searching = true,
            Wakeup::Recheck => {}
            Wakeup::TimedOut => {
                if shared.headcount.try_reap() {
                    me.uncounted = true;
                    return;
                }
            }
        }
    }
}

async fn run_task(shared: &Arc<AsyncShared>, stats: &WorkerStats, task: Task<AsyncJob>) {
    let clock = &shared.intake.clock;
    let Task { job, enqueued_at } = task;
    let lane = job.lane();
    let started = clock.now();
    let outcome = job.run.await;
    let ended = clock.now();
    stats.record(
        outcome,
        clock.nanos_between(enqueued_at, started),
        clock.nanos_between(started, ended),
        shared.config.on_panic.as_deref(),
    );
    if shared.intake.hand_over(lane) {
        shared.notify_work();
    }
    // Only now: `wait_idle` returns once no worker is busy, and by then this
    // job must be in the counters and its lane handed over.
    stats.set_busy(false);
}
