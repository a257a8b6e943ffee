//! The three ways an `AsyncPool` stops, and what they report.

use std::sync::Arc;
use std::time::Instant;

use super::shared::AsyncShared;
use crate::intake::{CLOSED, DISCARD, PAUSED};
use crate::pool::ShutdownReport;

/// Refuses new jobs and lifts a pause (a shutdown either runs the queue or
/// drops it, and never waits on a pause nobody will lift). `also` is set in
/// the same step as `CLOSED`.
pub(crate) fn close(shared: &AsyncShared, also: usize) {
    shared.set_state(CLOSED | also);
    shared.clear_state(PAUSED);
    shared.intake.queue.wake_all_producers();
}

/// Workers a shutdown waits for: all, except the caller's own task when a
/// job shuts down its own pool.
fn others_alive(shared: &AsyncShared, me_too: bool) -> bool {
    shared.headcount.live() > usize::from(me_too)
}

/// Closes, drains (until `deadline` if given), and waits for the workers to
/// exit. Past the deadline it falls back to [`stop_now`].
pub(crate) async fn drain(shared: &Arc<AsyncShared>, deadline: Option<Instant>) -> ShutdownReport {
    let before = ShutdownReport::baseline(&shared.stats());
    close(shared, 0);
    let on_worker = shared.on_worker();
    let drained = shared.watch(|| !others_alive(shared, on_worker));
    let drained = match deadline {
        None => {
            drained.await;
            true
        }
        Some(deadline) => {
            let deadline = tokio::time::Instant::from_std(deadline);
            tokio::time::timeout_at(deadline, drained).await.is_ok()
        }
    };
    let cancelled = if drained {
        0
    } else {
        discard_and_abort(shared)
    };
    before.report(&shared.stats(), cancelled)
}

/// Closes, drops everything queued, and aborts the workers: running jobs
/// are dropped at their current await point.
pub(crate) fn stop_now(shared: &Arc<AsyncShared>) -> ShutdownReport {
    let before = ShutdownReport::baseline(&shared.stats());
    close(shared, DISCARD);
    let cancelled = discard_and_abort(shared);
    before.report(&shared.stats(), cancelled)
}

fn discard_and_abort(shared: &AsyncShared) -> u64 {
    shared.set_state(DISCARD);
    shared.intake.discard_all();
    shared.abort_workers()
}
