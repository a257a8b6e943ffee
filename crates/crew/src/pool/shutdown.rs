//! The three ways a pool stops, and what they report.

use std::time::Instant;

use super::shared::Shared;
use super::worker::on_worker_of;
use crate::intake::{CLOSED, DISCARD, PAUSED};
use crate::stats::Stats;
use crate::sync::{Arc, Ordering};

/// What happened to the jobs a shutdown found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs that ran to their end (returned, failed or panicked) while the
    /// shutdown waited.
    pub completed: u64,
    /// Queued jobs dropped without running; their handles report
    /// [`JobError::Abandoned`](crate::JobError::Abandoned).
    pub abandoned: u64,
    /// Running jobs whose contexts were cancelled, and which had not
    /// returned when the shutdown did.
    pub cancelled: u64,
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} completed, {} abandoned, {} cancelled while running",
            self.completed, self.abandoned, self.cancelled
        )
    }
}

/// The counters a shutdown starts from, so its report counts only what
/// happened while it ran.
pub(crate) struct Baseline {
    ran: u64,
    abandoned: u64,
}

fn ran(stats: &Stats) -> u64 {
    stats.completed + stats.failed + stats.panicked
}

impl ShutdownReport {
    pub(crate) fn baseline(stats: &Stats) -> Baseline {
        Baseline {
            ran: ran(stats),
            abandoned: stats.abandoned,
        }
    }
}

impl Baseline {
    /// The report, from the counters at the end and the running jobs
    /// cancelled.
    pub(crate) fn report(&self, after: &Stats, cancelled: u64) -> ShutdownReport {
        ShutdownReport {
            completed: ran(after) - self.ran,
            abandoned: after.abandoned - self.abandoned,
            cancelled,
        }
    }
}

/// The number of workers a shutdown waits for: all of them, except the
/// calling thread when a job shuts down its own pool.
fn others_alive(shared: &Shared) -> usize {
    let live = shared.headcount.live();
    if on_worker_of(shared) {
        live.saturating_sub(1)
    } else {
        live
    }
}

/// Refuses new jobs. A paused pool is resumed: a shutdown either runs the
/// queue or discards it, and never waits on a pause that nobody will lift.
///
/// `also` is set in the same step as `CLOSED`: a shutdown that discards must
/// not give workers a window, between closing and discarding, in which a
/// resumed pool starts running what it should drop.
fn close(shared: &Shared, also: usize) {
    shared.set_state(CLOSED | also);
    shared.clear_state(PAUSED);
    shared.intake.queue.wake_all_producers();
}

/// Closes, drains (until `deadline` if given), joins. Past the deadline it
/// falls back to [`stop_now`].
pub(crate) fn drain(shared: &Arc<Shared>, deadline: Option<Instant>) -> ShutdownReport {
    let before = ShutdownReport::baseline(&shared.stats());
    close(shared, 0);
    let drained = shared.watch(deadline, || others_alive(shared) == 0);
    if !drained {
        let cancelled = discard_and_cancel(shared);
        return before.report(&shared.stats(), cancelled);
    }
    shared.join_all();
    before.report(&shared.stats(), 0)
}

/// Closes, drops everything queued, cancels the running jobs' contexts.
pub(crate) fn stop_now(shared: &Arc<Shared>) -> ShutdownReport {
    let before = ShutdownReport::baseline(&shared.stats());
    shared.stopping.store(true, Ordering::SeqCst);
    close(shared, DISCARD);
    let cancelled = discard_and_cancel(shared);
    before.report(&shared.stats(), cancelled)
}

fn discard_and_cancel(shared: &Shared) -> u64 {
    shared.stopping.store(true, Ordering::SeqCst);
    shared.set_state(DISCARD);
    shared.intake.discard_all();
    // Workers waiting for the last reservations to go must see them gone.
    shared.sleepers.wake_all();
    let mut busy = shared.busy_workers() as u64;
    if on_worker_of(shared) {
        busy = busy.saturating_sub(1);
    }
    busy
}
