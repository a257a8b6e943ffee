//! The three ways a pool stops, and what they report.

use std::time::Instant;

use super::shared::{Shared, CLOSED, DISCARD, PAUSED};
use super::worker::on_worker_of;
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

struct Before {
    ran: u64,
    abandoned: u64,
}

fn counts(shared: &Shared) -> Before {
    let stats = shared.stats();
    Before {
        ran: stats.completed + stats.failed + stats.panicked,
        abandoned: stats.abandoned,
    }
}

fn report(shared: &Shared, before: &Before, cancelled: u64) -> ShutdownReport {
    let after = counts(shared);
    ShutdownReport {
        completed: after.ran - before.ran,
        abandoned: after.abandoned - before.abandoned,
        cancelled,
    }
}

/// The number of workers a shutdown waits for: all of them, except the
/// calling thread when a job shuts down its own pool.
fn others_alive(shared: &Shared) -> usize {
    let live = shared.live_workers.load(Ordering::SeqCst);
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
    shared.queue.wake_all_producers();
}

/// Closes, drains (until `deadline` if given), joins. Past the deadline it
/// falls back to [`stop_now`].
pub(crate) fn drain(shared: &Arc<Shared>, deadline: Option<Instant>) -> ShutdownReport {
    let before = counts(shared);
    close(shared, 0);
    let drained = shared.watch(deadline, || others_alive(shared) == 0);
    if !drained {
        let cancelled = discard_and_cancel(shared);
        return report(shared, &before, cancelled);
    }
    shared.join_all();
    report(shared, &before, 0)
}

/// Closes, drops everything queued, cancels the running jobs' contexts.
pub(crate) fn stop_now(shared: &Arc<Shared>) -> ShutdownReport {
    let before = counts(shared);
    shared.stopping.store(true, Ordering::SeqCst);
    close(shared, DISCARD);
    let cancelled = discard_and_cancel(shared);
    report(shared, &before, cancelled)
}

fn discard_and_cancel(shared: &Shared) -> u64 {
    shared.stopping.store(true, Ordering::SeqCst);
    shared.set_state(DISCARD);
    shared.discard_queued();
    for task in shared.lanes.take_waiting() {
        drop(task);
        shared.queue.release_dropped(1);
        shared.abandoned.fetch_add(1, Ordering::Relaxed);
    }
    // Workers waiting for the last reservations to go must see them gone.
    shared.sleepers.wake_all();
    let mut busy = shared.busy_workers() as u64;
    if on_worker_of(shared) {
        busy = busy.saturating_sub(1);
    }
    busy
}
