//! `AsyncPool` lifecycle: pause and resume, resize while busy, elastic
//! workers (min, keep-alive), `wait_idle`, the three shutdowns and their
//! reports, drop of the last handle, submissions after close, and jobs that
//! shut down their own pool. Every test runs on the current-thread and the
//! multi-thread runtime.

mod common;
#[macro_use]
#[path = "common/rt.rs"]
mod rt;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crew::{AsyncPool, JobError, JobHandle, ShutdownReport, SubmitError};
use rt::{eventually, let_others_run, still_pending, AsyncGate, DropFlag};
use tokio::sync::{mpsc, oneshot, Barrier};

/// Long enough that a `shutdown_timeout` expected to drain never runs out
/// first; only a hang would reach it.
const PLENTY: Duration = Duration::from_secs(30);

/// Longer than the hang guard: a wait this long fails the test.
const AN_HOUR: Duration = Duration::from_secs(3600);

/// A report as (completed, abandoned, cancelled).
fn counts(report: &ShutdownReport) -> (u64, u64, u64) {
    (report.completed, report.abandoned, report.cancelled)
}

/// Spawns a job that says when it starts, then waits for `gate` and returns
/// `value`. Returns its handle once it is running.
async fn running_job<T: Send + 'static>(
    pool: &AsyncPool,
    gate: &AsyncGate,
    value: T,
) -> JobHandle<T> {
    let (started_tx, started_rx) = oneshot::channel();
    let gate = gate.clone();
    let handle = pool
        .spawn(async move {
            started_tx.send(()).unwrap();
            gate.wait().await;
            value
        })
        .await
        .unwrap();
    started_rx.await.expect("the job started");
    handle
}

/// Spawns a job that says when it starts and then never ends on its own;
/// the returned flag turns true once its future is dropped.
async fn endless_job(pool: &AsyncPool) -> (JobHandle<()>, Arc<AtomicBool>) {
    let (started_tx, started_rx) = oneshot::channel();
    let (dropped, guard) = DropFlag::new();
    let handle = pool
        .spawn(async move {
            let _guard = guard;
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        })
        .await
        .unwrap();
    started_rx.await.expect("the job started");
    (handle, dropped)
}

on_both_runtimes!(pause_holds_queued_jobs_and_lets_running_ones_finish);
async fn pause_holds_queued_jobs_and_lets_running_ones_finish() {
    let pool = AsyncPool::new(2);
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let running = running_job(&pool, &gate, "finished").await;
    pool.pause();
    assert!(pool.is_paused());
    let started = Arc::new(AtomicBool::new(false));
    let queued = {
        let started = started.clone();
        pool.spawn(async move {
            started.store(true, Ordering::SeqCst);
            "ran after resume"
        })
        .await
        .unwrap()
    };
    gate.open();
    assert_eq!(running.await, Ok("finished"), "a running job finishes");
    // Two workers free, but the pool is paused: the queued job waits.
    let_others_run(100).await;
    assert!(
        !started.load(Ordering::SeqCst),
        "a job started while paused"
    );
    assert_eq!(pool.stats().queued, 1);
    pool.resume();
    assert!(!pool.is_paused());
    assert_eq!(queued.await, Ok("ran after resume"));
    pool.shutdown().await;
}

on_both_runtimes!(resume_runs_every_job_queued_while_paused_in_order_on_one_worker);
async fn resume_runs_every_job_queued_while_paused_in_order_on_one_worker() {
    let pool = AsyncPool::new(1);
    pool.pause();
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..100 {
        let seen = seen.clone();
        pool.submit(async move { seen.lock().unwrap().push(i) })
            .await
            .unwrap();
    }
    assert_eq!(pool.stats().queued, 100);
    let_others_run(20).await;
    assert!(seen.lock().unwrap().is_empty(), "a job ran while paused");
    pool.resume();
    pool.wait_idle().await;
    assert_eq!(*seen.lock().unwrap(), (0..100).collect::<Vec<_>>());
    pool.shutdown().await;
}

on_both_runtimes!(a_job_submitted_after_pause_returned_never_starts_before_resume);
async fn a_job_submitted_after_pause_returned_never_starts_before_resume() {
    // A job that started would set its flag on its first poll, before
    // the cancel below could drop it.
    let pool = AsyncPool::new(2);
    let started = Arc::new(AtomicUsize::new(0));
    for round in 0..500 {
        pool.pause();
        let handle = {
            let started = started.clone();
            pool.spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
            })
            .await
            .unwrap()
        };
        handle.cancel();
        assert_eq!(handle.await, Err(JobError::Cancelled), "round {round}");
        pool.resume();
        pool.wait_idle().await;
    }
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "a job started while paused"
    );
    pool.shutdown().await;
    assert_eq!(pool.stats().cancelled, 500);
}

on_both_runtimes!(pause_has_no_effect_on_a_shut_down_pool);
async fn pause_has_no_effect_on_a_shut_down_pool() {
    let pool = AsyncPool::new(1);
    pool.shutdown().await;
    pool.pause();
    assert!(!pool.is_paused());
}

on_both_runtimes!(resize_up_while_busy_runs_more_jobs_at_once);
async fn resize_up_while_busy_runs_more_jobs_at_once() {
    // Four jobs that each wait until all four run: they can only get
    // through the barrier once resize has added two workers.
    let pool = AsyncPool::new(2);
    let all_running = Arc::new(Barrier::new(4));
    let mut handles = Vec::new();
    for i in 0..4 {
        let all_running = all_running.clone();
        handles.push(
            pool.spawn(async move {
                all_running.wait().await;
                i
            })
            .await
            .unwrap(),
        );
    }
    pool.resize(4);
    assert_eq!(pool.stats().workers, 4);
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.await, Ok(i));
    }
    pool.shutdown().await;
}

on_both_runtimes!(resize_down_lets_extra_workers_finish_their_job_then_exit);
async fn resize_down_lets_extra_workers_finish_their_job_then_exit() {
    let pool = AsyncPool::new(4);
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let mut running = Vec::new();
    for i in 0..4 {
        running.push(running_job(&pool, &gate, i).await);
    }
    pool.resize(1);
    // Nobody is dropped mid-job.
    assert_eq!(pool.stats().busy, 4);
    gate.open();
    for (i, handle) in running.into_iter().enumerate() {
        assert_eq!(
            handle.await,
            Ok(i),
            "a running job was cut short by a shrink"
        );
    }
    eventually("the extra workers exit", || pool.stats().workers == 1).await;

    // One worker left: jobs now run one at a time.
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let (now, most) = (now.clone(), most.clone());
        pool.submit(async move {
            most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            now.fetch_sub(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    }
    pool.wait_idle().await;
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "jobs overlapped on a one-worker pool"
    );
    assert_eq!(pool.stats().completed, 24);
    pool.shutdown().await;
}

on_both_runtimes!(
    #[should_panic(expected = "at least one worker")]
    resize_to_zero_panics
);
async fn resize_to_zero_panics() {
    let pool = AsyncPool::new(1);
    pool.resize(0);
}

/// Spawns `n` jobs that each wait on `all` (a barrier for at least `n`),
/// waiting for each to start before spawning the next: every worker alive
/// is busy when the next job arrives, so the pool must grow for it.
async fn spawn_one_by_one(pool: &AsyncPool, n: usize, all: &Arc<Barrier>) -> Vec<JobHandle<()>> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let (started_tx, started_rx) = oneshot::channel();
        let all = all.clone();
        handles.push(
            pool.spawn(async move {
                started_tx.send(()).unwrap();
                all.wait().await;
            })
            .await
            .unwrap(),
        );
        started_rx.await.expect("the job started");
    }
    handles
}

on_both_runtimes!(elastic_pool_starts_with_min_workers_and_grows_while_its_workers_are_busy);
async fn elastic_pool_starts_with_min_workers_and_grows_while_its_workers_are_busy() {
    let pool = AsyncPool::builder()
        .workers(4)
        .min_workers(1)
        .keep_alive(PLENTY)
        .build();
    assert_eq!(pool.stats().workers, 1);
    // Each job waits until all four run: the pool must grow to four.
    let all_running = Arc::new(Barrier::new(4));
    for handle in spawn_one_by_one(&pool, 4, &all_running).await {
        assert_eq!(handle.await, Ok(()));
    }
    assert_eq!(pool.stats().workers, 4);
    pool.shutdown().await;
}

on_both_runtimes!(elastic_pool_grows_for_a_burst_that_arrives_while_a_worker_is_idle);
async fn elastic_pool_grows_for_a_burst_that_arrives_while_a_worker_is_idle() {
    // Deterministic on the current-thread runtime: after a few yields the
    // one worker is parked in its idle wait (racy, so sometimes passing, on
    // the multi-thread one).
    let pool = AsyncPool::builder()
        .workers(2)
        .min_workers(1)
        .keep_alive(PLENTY)
        .build();
    pool.wait_idle().await;
    let_others_run(10).await;
    // Both jobs must run at once to pass the barrier.
    let both = Arc::new(Barrier::new(2));
    let mut handles = Vec::new();
    for _ in 0..2 {
        let both = both.clone();
        handles.push(
            pool.spawn(async move {
                both.wait().await;
            })
            .await
            .unwrap(),
        );
    }
    for handle in handles {
        assert_eq!(handle.await, Ok(()));
    }
    pool.shutdown().await;
}

on_both_runtimes!(elastic_pool_reaps_idle_extra_workers_after_keep_alive_down_to_min);
async fn elastic_pool_reaps_idle_extra_workers_after_keep_alive_down_to_min() {
    let pool = AsyncPool::builder()
        .workers(4)
        .min_workers(2)
        .keep_alive(Duration::from_millis(20))
        .build();
    assert_eq!(pool.stats().workers, 2);
    let all_running = Arc::new(Barrier::new(4));
    for handle in spawn_one_by_one(&pool, 4, &all_running).await {
        handle.await.unwrap();
    }
    assert_eq!(pool.stats().workers, 4);
    eventually("idle extra workers are reaped", || {
        pool.stats().workers == 2
    })
    .await;
    // The kept workers stay: let several keep-alives pass (a sleep as the
    // workload of a job, not to synchronize) and count again.
    pool.spawn(tokio::time::sleep(Duration::from_millis(100)))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(pool.stats().workers, 2, "reaped below min_workers");
    // And the pool still works, and grows again.
    let all_running = Arc::new(Barrier::new(3));
    for handle in spawn_one_by_one(&pool, 3, &all_running).await {
        handle.await.unwrap();
    }
    pool.shutdown().await;
    assert_eq!(pool.stats().completed, 8);
}

on_both_runtimes!(wait_idle_returns_once_nothing_is_queued_or_running);
async fn wait_idle_returns_once_nothing_is_queued_or_running() {
    let pool = AsyncPool::new(2);
    // An idle pool: at once.
    pool.wait_idle().await;
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let _running = running_job(&pool, &gate, ()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let (gate, runs) = (gate.clone(), runs.clone());
        pool.submit(async move {
            gate.wait().await;
            runs.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    }
    let mut idle = Box::pin(pool.wait_idle());
    assert!(
        still_pending(&mut idle),
        "wait_idle returned while jobs were held"
    );
    gate.open();
    idle.await;
    assert_eq!(runs.load(Ordering::SeqCst), 20);
    let stats = pool.stats();
    assert_eq!((stats.busy, stats.queued, stats.completed), (0, 0, 21));
    pool.shutdown().await;
}

on_both_runtimes!(wait_idle_waits_for_a_paused_backlog);
async fn wait_idle_waits_for_a_paused_backlog() {
    let pool = AsyncPool::new(1);
    pool.pause();
    pool.submit(async {}).await.unwrap();
    let mut idle = Box::pin(pool.wait_idle());
    let_others_run(20).await;
    assert!(
        still_pending(&mut idle),
        "wait_idle returned with a job queued"
    );
    pool.resume();
    idle.await;
    assert_eq!(pool.stats().completed, 1);
    pool.shutdown().await;
}

on_both_runtimes!(shutdown_runs_the_queue_of_a_paused_pool_and_reports_it);
async fn shutdown_runs_the_queue_of_a_paused_pool_and_reports_it() {
    let pool = AsyncPool::new(2);
    pool.pause();
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        let runs = runs.clone();
        pool.submit(async move {
            tokio::task::yield_now().await;
            runs.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    }
    let report = pool.shutdown().await;
    assert_eq!(counts(&report), (10, 0, 0), "{report}");
    assert_eq!(runs.load(Ordering::SeqCst), 10);
    assert!(pool.is_closed());
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.queued), (0, 0));
}

on_both_runtimes!(shutdown_waits_for_running_jobs);
async fn shutdown_waits_for_running_jobs() {
    let pool = AsyncPool::new(1);
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let running = running_job(&pool, &gate, "done").await;
    let mut shutdown = Box::pin(pool.shutdown());
    assert!(
        still_pending(&mut shutdown),
        "shutdown returned under a running job"
    );
    assert!(pool.is_closed());
    gate.open();
    let report = shutdown.await;
    assert_eq!(report.completed, 1, "{report}");
    assert_eq!(running.await, Ok("done"));
}

on_both_runtimes!(shutdown_timeout_that_drains_in_time_cancels_nothing);
async fn shutdown_timeout_that_drains_in_time_cancels_nothing() {
    let pool = AsyncPool::new(2);
    pool.pause();
    let handles: Vec<_> = {
        let mut handles = Vec::new();
        for i in 0..8 {
            handles.push(pool.spawn(async move { i }).await.unwrap());
        }
        handles
    };
    let report = pool.shutdown_timeout(PLENTY).await;
    assert_eq!(counts(&report), (8, 0, 0), "{report}");
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.await, Ok(i));
    }
}

on_both_runtimes!(shutdown_timeout_abandons_the_queue_and_drops_running_jobs_when_time_runs_out);
async fn shutdown_timeout_abandons_the_queue_and_drops_running_jobs_when_time_runs_out() {
    let pool = AsyncPool::new(1);
    let (running, dropped) = endless_job(&pool).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let mut queued = Vec::new();
    for _ in 0..3 {
        let ran = ran.clone();
        queued.push(
            pool.spawn(async move {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .await
            .unwrap(),
        );
    }
    // The running job never ends, so the timeout always runs out.
    let report = pool.shutdown_timeout(Duration::from_millis(20)).await;
    assert_eq!((report.completed, report.abandoned), (0, 3), "{report}");
    assert_eq!(report.cancelled, 1, "{report}");
    assert_eq!(running.await, Err(JobError::Cancelled));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the running job's future was not dropped"
    );
    for handle in queued {
        assert_eq!(handle.await, Err(JobError::Abandoned));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0, "an abandoned job ran");
    eventually("the aborted worker is gone", || pool.stats().workers == 0).await;
    let stats = pool.stats();
    assert_eq!(
        (stats.abandoned, stats.cancelled, stats.completed),
        (3, 1, 0)
    );
}

on_both_runtimes!(shutdown_now_drops_the_queue_and_the_running_jobs_at_once);
async fn shutdown_now_drops_the_queue_and_the_running_jobs_at_once() {
    let pool = AsyncPool::new(2);
    let (first, first_dropped) = endless_job(&pool).await;
    let (second, second_dropped) = endless_job(&pool).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let mut queued = Vec::new();
    for i in 0..5 {
        let ran = ran.clone();
        let job = async move {
            ran.fetch_add(1, Ordering::SeqCst);
        };
        if i % 2 == 0 {
            queued.push(pool.spawn(job).await.unwrap());
        } else {
            pool.submit(job).await.unwrap();
        }
    }
    let report = pool.shutdown_now();
    assert_eq!((report.completed, report.abandoned), (0, 5), "{report}");
    assert_eq!(report.cancelled, 2, "{report}");
    assert!(pool.is_closed());
    assert_eq!(first.await, Err(JobError::Cancelled));
    assert_eq!(second.await, Err(JobError::Cancelled));
    assert!(first_dropped.load(Ordering::SeqCst));
    assert!(second_dropped.load(Ordering::SeqCst));
    for handle in queued {
        assert_eq!(handle.await, Err(JobError::Abandoned));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0, "an abandoned job ran");
    eventually("the aborted workers are gone", || pool.stats().workers == 0).await;
    let stats = pool.stats();
    assert_eq!(stats.submitted, 7);
    assert_eq!((stats.abandoned, stats.cancelled), (5, 2));
}

on_both_runtimes!(shutdown_now_abandons_jobs_waiting_behind_a_busy_lane);
async fn shutdown_now_abandons_jobs_waiting_behind_a_busy_lane() {
    let pool = AsyncPool::new(2);
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let (started_tx, started_rx) = oneshot::channel();
    let head = {
        let gate = gate.clone();
        pool.spawn_keyed("k", async move {
            started_tx.send(()).unwrap();
            gate.wait().await;
        })
        .await
        .unwrap()
    };
    started_rx.await.unwrap();
    let mut behind = Vec::new();
    for _ in 0..3 {
        behind.push(pool.spawn_keyed("k", async {}).await.unwrap());
    }
    let report = pool.shutdown_now();
    assert_eq!(report.abandoned, 3, "{report}");
    assert_eq!(head.await, Err(JobError::Cancelled));
    for handle in behind {
        assert_eq!(handle.await, Err(JobError::Abandoned));
    }
    eventually("the aborted worker is gone", || pool.stats().workers == 0).await;
    let stats = pool.stats();
    assert_eq!((stats.abandoned, stats.cancelled, stats.queued), (3, 1, 0));
}

on_both_runtimes!(shutdown_now_releases_the_lane_of_a_keyed_job_it_drops);
async fn shutdown_now_releases_the_lane_of_a_keyed_job_it_drops() {
    let pool = AsyncPool::new(1);
    let (started_tx, started_rx) = oneshot::channel();
    let head = pool
        .spawn_keyed("k", async move {
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        })
        .await
        .unwrap();
    started_rx.await.unwrap();
    assert_eq!(pool.stats().lanes, 1);
    pool.shutdown_now();
    assert_eq!(head.await, Err(JobError::Cancelled));
    eventually("the aborted worker is gone", || pool.stats().workers == 0).await;
    let stats = pool.stats();
    assert_eq!(stats.lanes, 0, "no job is queued or running: {stats:?}");
}

on_both_runtimes!(shutdown_reports_every_running_job_it_drops);
async fn shutdown_reports_every_running_job_it_drops() {
    for round in 0..20 {
        let pool = AsyncPool::new(2);
        let (first, _) = endless_job(&pool).await;
        let (second, _) = endless_job(&pool).await;
        let report = if round % 2 == 0 {
            pool.shutdown_now()
        } else {
            pool.shutdown_timeout(Duration::from_millis(1)).await
        };
        assert_eq!(counts(&report), (0, 0, 2), "round {round}: {report}");
        assert_eq!(first.await, Err(JobError::Cancelled));
        assert_eq!(second.await, Err(JobError::Cancelled));
    }
}

on_both_runtimes!(dropping_the_last_handle_drains_the_queue_in_the_background);
async fn dropping_the_last_handle_drains_the_queue_in_the_background() {
    let pool = AsyncPool::new(2);
    pool.pause();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for i in 0..20 {
        let done_tx = done_tx.clone();
        handles.push(
            pool.spawn(async move {
                tokio::task::yield_now().await;
                done_tx.send(i).unwrap();
                i
            })
            .await
            .unwrap(),
        );
    }
    drop(done_tx);
    // Dropping returns at once (nothing to await in a drop), closes the
    // pool and lifts the pause: the workers finish the queue, then exit.
    drop(pool);
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.await, Ok(i));
    }
    let mut done = Vec::new();
    // Ends once every job (and so every sender) is gone.
    while let Some(i) = done_rx.recv().await {
        done.push(i);
    }
    done.sort_unstable();
    assert_eq!(done, (0..20).collect::<Vec<_>>());
}

on_both_runtimes!(dropping_one_clone_leaves_the_pool_open);
async fn dropping_one_clone_leaves_the_pool_open() {
    let pool = AsyncPool::new(1);
    drop(pool.clone());
    assert!(!pool.is_closed());
    assert_eq!(pool.spawn(async { 1 }).await.unwrap().await, Ok(1));
    pool.shutdown().await;
}

on_both_runtimes!(submitting_after_shutdown_gives_the_future_back_in_closed);
async fn submitting_after_shutdown_gives_the_future_back_in_closed() {
    let pool = AsyncPool::new(2);
    pool.shutdown().await;
    assert!(pool.is_closed());
    match pool.submit(async { Ok::<_, ()>("submit") }).await {
        Err(SubmitError::Closed(future)) => assert_eq!(future.await, Ok("submit")),
        other => panic!("expected Closed, got {other:?}"),
    }
    match pool.try_submit(async { Ok::<_, ()>("try_submit") }) {
        Err(SubmitError::Closed(future)) => assert_eq!(future.await, Ok("try_submit")),
        other => panic!("expected Closed, got {other:?}"),
    }
    match pool
        .submit_timeout(async { Ok::<_, ()>("submit_timeout") }, PLENTY)
        .await
    {
        Err(SubmitError::Closed(future)) => assert_eq!(future.await, Ok("submit_timeout")),
        other => panic!("expected Closed, got {other:?}"),
    }
    match pool.spawn(async { "spawn" }).await {
        Err(err) => {
            assert!(err.is_closed());
            assert_eq!(err.into_inner().await, "spawn");
        }
        Ok(_) => panic!("spawn accepted by a closed pool"),
    }
    match pool.spawn_keyed("k", async { "spawn_keyed" }).await {
        Err(SubmitError::Closed(future)) => assert_eq!(future.await, "spawn_keyed"),
        other => panic!("expected Closed, got {other:?}"),
    }
    let stats = pool.stats();
    assert_eq!((stats.rejected, stats.submitted), (5, 0));
}

on_both_runtimes!(a_submit_waiting_for_room_is_refused_with_its_future_when_the_pool_shuts_down);
async fn a_submit_waiting_for_room_is_refused_with_its_future_when_the_pool_shuts_down() {
    let pool = AsyncPool::builder().workers(1).queue_capacity(1).build();
    pool.pause();
    pool.submit(async {}).await.unwrap();
    let mut waiting = Box::pin(pool.submit(async { Ok::<_, ()>(9) }));
    assert!(still_pending(&mut waiting));
    pool.shutdown_now();
    match waiting.await {
        Err(SubmitError::Closed(future)) => assert_eq!(future.await, Ok(9)),
        other => panic!("expected Closed, got {other:?}"),
    }
}

on_both_runtimes!(a_job_that_shuts_down_its_own_pool_does_not_deadlock);
async fn a_job_that_shuts_down_its_own_pool_does_not_deadlock() {
    let pool = AsyncPool::new(2);
    pool.pause();
    let runs = Arc::new(AtomicUsize::new(0));
    let stopper = {
        let own = pool.clone();
        pool.spawn(async move { own.shutdown().await })
            .await
            .unwrap()
    };
    // Queued behind the stopper: a drain still runs them.
    for _ in 0..5 {
        let runs = runs.clone();
        pool.submit(async move {
            runs.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    }
    pool.resume();
    let report = stopper.await.expect("the stopping job finished");
    assert_eq!((report.abandoned, report.cancelled), (0, 0), "{report}");
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    assert!(pool.is_closed());
    eventually("every worker exits", || pool.stats().workers == 0).await;
    assert_eq!(pool.stats().completed, 6);
}

on_both_runtimes!(a_job_that_stops_its_own_pool_now_is_not_cancelled_itself);
async fn a_job_that_stops_its_own_pool_now_is_not_cancelled_itself() {
    let pool = AsyncPool::new(2);
    let (other, other_dropped) = endless_job(&pool).await;
    let stopper = {
        let own = pool.clone();
        pool.spawn(async move {
            let report = own.shutdown_now();
            // Still running after the hard stop: only the others went.
            tokio::task::yield_now().await;
            report
        })
        .await
        .unwrap()
    };
    let report = stopper.await.expect("the stopping job was not cut short");
    assert_eq!(report.cancelled, 1, "{report}");
    assert_eq!(other.await, Err(JobError::Cancelled));
    assert!(other_dropped.load(Ordering::SeqCst));
    eventually("every worker exits", || pool.stats().workers == 0).await;
}

on_both_runtimes!(a_job_that_shuts_down_its_own_pool_with_a_timeout_does_not_wait_for_itself);
async fn a_job_that_shuts_down_its_own_pool_with_a_timeout_does_not_wait_for_itself() {
    let pool = AsyncPool::new(1);
    let own = pool.clone();
    let report = pool
        .spawn(async move { own.shutdown_timeout(AN_HOUR).await })
        .await
        .unwrap()
        .await
        .expect("the stopping job finished");
    // It returned (waiting for itself would have taken the hour, and the
    // guard fires long before) without counting its own job as cut short.
    assert_eq!(report.cancelled, 0, "{report}");
    eventually("every worker exits", || pool.stats().workers == 0).await;
}
