//! `AsyncPool` cancellation, deadlines and panics: a cancelled handle or
//! token stops a queued job before it starts and drops a running one at its
//! await point; a deadline expires a job that has not started and drops one
//! still running; a panic is caught, reported, counted and hooked, and the
//! worker goes on. Every test runs on the current-thread and the
//! multi-thread runtime.

mod common;
#[macro_use]
#[path = "common/rt.rs"]
mod rt;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{quiet_intentional_panics, wait_past, INTENTIONAL};
use crew::{AsyncPool, CancelToken, JobError, JobHandle};
use rt::{eventually, let_others_run, still_pending, AsyncGate, DropFlag};
use tokio::sync::oneshot;

/// Far longer than any test may take: a job sleeping this long is only ever
/// stopped by being dropped.
const FOREVER: Duration = Duration::from_secs(3600);

/// What a job that never ends on its own reports about itself.
struct Probe {
    /// Set on the job's first poll.
    started: Arc<AtomicBool>,
    /// Set when its future is dropped.
    dropped: Arc<AtomicBool>,
    /// Set if it ever gets past its await point (it must not).
    finished: Arc<AtomicBool>,
}

/// A job that says when it starts (on `started_tx` too, if given), then
/// waits "forever" at an await point.
fn endless(
    started_tx: Option<oneshot::Sender<()>>,
) -> (Probe, impl std::future::Future<Output = ()>) {
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (dropped, guard) = DropFlag::new();
    let probe = Probe {
        started: started.clone(),
        dropped,
        finished: finished.clone(),
    };
    let job = async move {
        let _guard = guard;
        started.store(true, Ordering::SeqCst);
        if let Some(started_tx) = started_tx {
            let _ = started_tx.send(());
        }
        tokio::time::sleep(FOREVER).await;
        finished.store(true, Ordering::SeqCst);
    };
    (probe, job)
}

/// A fire-and-forget job that panics with `what` in its message.
async fn panicking(what: &'static str) {
    panic!("{INTENTIONAL}: {what}")
}

/// A job that only records whether it ran.
fn flagging(ran: &Arc<AtomicBool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let ran = ran.clone();
    async move { ran.store(true, Ordering::SeqCst) }
}

on_both_runtimes!(cancel_before_start_resolves_cancelled_and_the_job_never_runs);
async fn cancel_before_start_resolves_cancelled_and_the_job_never_runs() {
    let pool = AsyncPool::new(1);
    pool.pause();
    let ran = Arc::new(AtomicBool::new(false));
    let handle = pool.spawn(flagging(&ran)).await.unwrap();
    handle.cancel();
    // Resolved at once, paused pool and all.
    assert!(handle.is_finished());
    assert_eq!(handle.await, Err(JobError::Cancelled));
    pool.resume();
    pool.wait_idle().await;
    assert!(!ran.load(Ordering::SeqCst), "a cancelled job ran");
    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.completed), (1, 0));
    // Skipped jobs are not timed.
    assert_eq!(stats.run_time.count(), 0);
    pool.shutdown().await;
}

on_both_runtimes!(cancel_while_running_drops_the_future_at_its_await_point);
async fn cancel_while_running_drops_the_future_at_its_await_point() {
    let pool = AsyncPool::new(1);
    let (started_tx, started_rx) = oneshot::channel();
    let (probe, job) = endless(Some(started_tx));
    let handle = pool.spawn(job).await.unwrap();
    started_rx.await.unwrap();
    handle.cancel();
    assert_eq!(handle.await, Err(JobError::Cancelled));
    assert!(probe.started.load(Ordering::SeqCst));
    // The future is dropped before the handle hears of it.
    assert!(
        probe.dropped.load(Ordering::SeqCst),
        "the cancelled future was not dropped"
    );
    assert!(
        !probe.finished.load(Ordering::SeqCst),
        "the future ran past its await point"
    );
    // The worker is free again.
    assert_eq!(
        pool.spawn(async { "next" }).await.unwrap().await,
        Ok("next")
    );
    pool.wait_idle().await;
    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.completed, stats.workers), (1, 1, 1));
    pool.shutdown().await;
}

on_both_runtimes!(cancelling_one_running_job_leaves_the_others_running);
async fn cancelling_one_running_job_leaves_the_others_running() {
    let pool = AsyncPool::new(2);
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let (started_tx, started_rx) = oneshot::channel();
    let (probe, job) = endless(Some(started_tx));
    let doomed = pool.spawn(job).await.unwrap();
    started_rx.await.unwrap();
    let (other_started_tx, other_started_rx) = oneshot::channel();
    let other = {
        let gate = gate.clone();
        pool.spawn(async move {
            other_started_tx.send(()).unwrap();
            gate.wait().await;
            "other"
        })
        .await
        .unwrap()
    };
    other_started_rx.await.unwrap();
    doomed.cancel();
    assert_eq!(doomed.await, Err(JobError::Cancelled));
    eventually("the cancelled future is dropped", || {
        probe.dropped.load(Ordering::SeqCst)
    })
    .await;
    gate.open();
    assert_eq!(other.await, Ok("other"));
    pool.shutdown().await;
}

on_both_runtimes!(cancel_after_the_job_ended_changes_nothing);
async fn cancel_after_the_job_ended_changes_nothing() {
    let pool = AsyncPool::new(1);
    let handle = pool.spawn(async { 42 }).await.unwrap();
    pool.wait_idle().await;
    assert!(handle.is_finished());
    handle.cancel();
    assert_eq!(handle.await, Ok(42));
    pool.shutdown().await;
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.cancelled), (1, 0));
}

on_both_runtimes!(a_cancelled_token_stops_queued_jobs_and_drops_running_ones);
async fn a_cancelled_token_stops_queued_jobs_and_drops_running_ones() {
    let pool = AsyncPool::new(1);
    let token = CancelToken::new();
    let (started_tx, started_rx) = oneshot::channel();
    let (probe, job) = endless(Some(started_tx));
    let running = pool.job().token(token.clone()).spawn(job).await.unwrap();
    started_rx.await.unwrap();

    let ran = Arc::new(AtomicBool::new(false));
    let queued_spawned = pool
        .job()
        .token(token.clone())
        .spawn(flagging(&ran))
        .await
        .unwrap();
    pool.job()
        .token(token.clone())
        .submit(flagging(&ran))
        .await
        .unwrap();
    pool.job()
        .token(token.clone())
        .key("k")
        .try_submit(flagging(&ran))
        .unwrap();
    // Another token's job is not affected.
    let unrelated = pool
        .job()
        .token(CancelToken::new())
        .spawn(async { "unrelated" })
        .await
        .unwrap();

    token.cancel();
    assert_eq!(running.await, Err(JobError::Cancelled));
    assert_eq!(queued_spawned.await, Err(JobError::Cancelled));
    assert_eq!(unrelated.await, Ok("unrelated"));
    pool.wait_idle().await;
    assert!(
        probe.dropped.load(Ordering::SeqCst),
        "the running future was not dropped"
    );
    assert!(!probe.finished.load(Ordering::SeqCst));
    assert!(
        !ran.load(Ordering::SeqCst),
        "a job ran after its token was cancelled"
    );
    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.completed), (4, 1), "{stats:?}");
    assert_eq!(stats.lanes, 0);
    pool.shutdown().await;
}

on_both_runtimes!(a_token_cancelled_before_submission_means_the_job_never_runs);
async fn a_token_cancelled_before_submission_means_the_job_never_runs() {
    let pool = AsyncPool::new(2);
    let token = CancelToken::new();
    token.cancel();
    let ran = Arc::new(AtomicBool::new(false));
    let handle = pool
        .job()
        .token(token.clone())
        .spawn(flagging(&ran))
        .await
        .unwrap();
    assert_eq!(handle.await, Err(JobError::Cancelled));
    pool.shutdown().await;
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(pool.stats().cancelled, 1);
}

on_both_runtimes!(one_token_stops_many_running_jobs_at_once);
async fn one_token_stops_many_running_jobs_at_once() {
    let pool = AsyncPool::new(4);
    let token = CancelToken::new();
    let mut probes = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (started_tx, started_rx) = oneshot::channel();
        let (probe, job) = endless(Some(started_tx));
        handles.push(pool.job().token(token.clone()).spawn(job).await.unwrap());
        started_rx.await.unwrap();
        probes.push(probe);
    }
    token.cancel();
    for handle in handles {
        assert_eq!(handle.await, Err(JobError::Cancelled));
    }
    pool.wait_idle().await;
    for probe in &probes {
        assert!(probe.dropped.load(Ordering::SeqCst));
        assert!(!probe.finished.load(Ordering::SeqCst));
    }
    pool.wait_idle().await;
    assert_eq!(pool.stats().cancelled, 4);
    pool.shutdown().await;
}

on_both_runtimes!(a_job_can_wait_on_its_own_token);
async fn a_job_can_wait_on_its_own_token() {
    // CancelToken::cancelled lets a job stop cleanly on its own terms. The
    // pool and the job both watch the token, so either may see it first:
    // on a multi-thread runtime the cancel can land while the job is being
    // polled, and then the job returns its value. Both endings are correct;
    // what must hold is that exactly one is reported, consistently.
    let pool = AsyncPool::new(1);
    let token = CancelToken::new();
    let (dropped, guard) = DropFlag::new();
    let (started_tx, started_rx) = oneshot::channel();
    let handle = {
        let inner = token.clone();
        pool.job()
            .token(token.clone())
            .spawn(async move {
                let _guard = guard;
                started_tx.send(()).unwrap();
                inner.cancelled().await;
                "saw the token"
            })
            .await
            .unwrap()
    };
    started_rx.await.unwrap();
    token.cancel();
    let outcome = handle.await;
    pool.wait_idle().await;
    assert!(dropped.load(Ordering::SeqCst));
    let stats = pool.stats();
    match outcome {
        Err(JobError::Cancelled) => assert_eq!((stats.cancelled, stats.completed), (1, 0)),
        Ok("saw the token") => assert_eq!((stats.cancelled, stats.completed), (0, 1)),
        other => panic!("a job waiting on its token ended with {other:?}"),
    }
    pool.shutdown().await;
}

on_both_runtimes!(a_job_not_started_by_its_deadline_expires_and_never_runs);
async fn a_job_not_started_by_its_deadline_expires_and_never_runs() {
    let pool = AsyncPool::new(1);
    pool.pause();
    let ran = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now();
    let handle = pool
        .job()
        .deadline(deadline)
        .spawn(flagging(&ran))
        .await
        .unwrap();
    pool.job()
        .deadline(deadline)
        .submit(flagging(&ran))
        .await
        .unwrap();
    pool.job()
        .deadline(deadline)
        .key("k")
        .try_submit(flagging(&ran))
        .unwrap();
    wait_past(deadline);
    pool.resume();
    assert_eq!(handle.await, Err(JobError::Expired));
    pool.wait_idle().await;
    assert!(!ran.load(Ordering::SeqCst), "an expired job ran");
    let stats = pool.stats();
    assert_eq!((stats.expired, stats.completed), (3, 0));
    assert_eq!(stats.run_time.count(), 0);
    pool.shutdown().await;
}

on_both_runtimes!(a_job_running_past_its_deadline_is_dropped_and_expires);
async fn a_job_running_past_its_deadline_is_dropped_and_expires() {
    // The job must start before its deadline for this to test anything,
    // and on a loaded machine nothing guarantees when it starts: a round
    // whose job expired in the queue is retried with a longer deadline.
    let pool = AsyncPool::new(1);
    let mut started_once = false;
    for within in [50, 500, 5_000].map(Duration::from_millis) {
        let (probe, job) = endless(None);
        let handle = pool.job().deadline_in(within).spawn(job).await.unwrap();
        assert_eq!(handle.await, Err(JobError::Expired));
        pool.wait_idle().await;
        if probe.started.load(Ordering::SeqCst) {
            assert!(
                probe.dropped.load(Ordering::SeqCst),
                "the expired future was not dropped"
            );
            assert!(!probe.finished.load(Ordering::SeqCst));
            started_once = true;
            break;
        }
    }
    assert!(
        started_once,
        "no job started within even the longest deadline"
    );
    pool.wait_idle().await;
    let stats = pool.stats();
    assert!(stats.expired >= 1);
    assert_eq!(stats.completed, 0);
    assert_eq!(stats.workers, 1, "the worker kept going");
    assert_eq!(pool.spawn(async { 1 }).await.unwrap().await, Ok(1));
    pool.shutdown().await;
}

on_both_runtimes!(a_job_that_ends_before_its_deadline_is_not_affected);
async fn a_job_that_ends_before_its_deadline_is_not_affected() {
    let pool = AsyncPool::new(2);
    let handle = pool
        .job()
        .deadline_in(FOREVER)
        .spawn(async {
            tokio::task::yield_now().await;
            7
        })
        .await
        .unwrap();
    assert_eq!(handle.await, Ok(7));
    pool.shutdown().await;
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.expired), (1, 0));
}

on_both_runtimes!(panics_are_caught_reported_counted_and_hooked_and_the_worker_keeps_working);
async fn panics_are_caught_reported_counted_and_hooked_and_the_worker_keeps_working() {
    quiet_intentional_panics();
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let pool = {
        let hooked = hooked.clone();
        AsyncPool::builder()
            .workers(1)
            .on_panic(move |message| hooked.lock().unwrap().push(message.to_owned()))
            .build()
    };
    // A panic in the first poll, one after an await point (a later
    // poll), and a fire-and-forget one.
    let at_once: JobHandle<()> = pool
        .spawn(async { panic!("{INTENTIONAL}: at once") })
        .await
        .unwrap();
    let later: JobHandle<u32> = pool
        .spawn(async {
            tokio::task::yield_now().await;
            panic!("{INTENTIONAL}: after an await")
        })
        .await
        .unwrap();
    pool.submit(panicking("detached")).await.unwrap();
    let after = pool.spawn(async { "still working" }).await.unwrap();

    match at_once.await {
        Err(JobError::Panicked(message)) => assert!(message.contains("at once"), "{message}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    match later.await {
        Err(JobError::Panicked(message)) => {
            assert!(message.contains("after an await"), "{message}")
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(after.await, Ok("still working"));
    pool.wait_idle().await;
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.completed), (3, 1));
    assert_eq!(stats.workers, 1, "a panic took the worker down");
    let hooked = hooked.lock().unwrap().clone();
    assert_eq!(hooked.len(), 3, "{hooked:?}");
    for (expected, message) in ["at once", "after an await", "detached"]
        .iter()
        .zip(&hooked)
    {
        assert!(message.contains(expected), "hook got {message:?}");
    }
    pool.shutdown().await;
}

on_both_runtimes!(a_panicking_panic_hook_does_not_take_the_worker_down);
async fn a_panicking_panic_hook_does_not_take_the_worker_down() {
    quiet_intentional_panics();
    let calls = Arc::new(AtomicUsize::new(0));
    let pool = {
        let calls = calls.clone();
        AsyncPool::builder()
            .workers(1)
            .on_panic(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                panic!("{INTENTIONAL}: in the hook");
            })
            .build()
    };
    for _ in 0..3 {
        pool.submit(panicking("job")).await.unwrap();
    }
    assert_eq!(pool.spawn(async { 5 }).await.unwrap().await, Ok(5));
    pool.wait_idle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.completed, stats.workers), (3, 1, 1));
    pool.shutdown().await;
}

on_both_runtimes!(a_panic_with_a_non_string_payload_is_reported_too);
async fn a_panic_with_a_non_string_payload_is_reported_too() {
    quiet_intentional_panics();
    let pool = AsyncPool::new(1);
    let handle: JobHandle<()> = pool
        .spawn(async { std::panic::panic_any(common::IntentionalPayload(3)) })
        .await
        .unwrap();
    assert!(matches!(handle.await, Err(JobError::Panicked(_))));
    pool.wait_idle().await;
    assert_eq!(pool.stats().panicked, 1);
    pool.shutdown().await;
}

on_both_runtimes!(a_job_cancelled_while_queued_behind_its_key_lets_the_lane_go_on);
async fn a_job_cancelled_while_queued_behind_its_key_lets_the_lane_go_on() {
    let pool = AsyncPool::new(2);
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let (started_tx, started_rx) = oneshot::channel();
    let head = {
        let gate = gate.clone();
        pool.spawn_keyed("k", async move {
            started_tx.send(()).unwrap();
            gate.wait().await;
            0
        })
        .await
        .unwrap()
    };
    started_rx.await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let cancelled = pool.spawn_keyed("k", flagging(&ran)).await.unwrap();
    let last = pool.spawn_keyed("k", async { 2 }).await.unwrap();
    cancelled.cancel();
    assert_eq!(cancelled.await, Err(JobError::Cancelled));
    let mut last = Box::pin(last);
    let_others_run(20).await;
    assert!(still_pending(&mut last), "a job ran while its key was busy");
    gate.open();
    assert_eq!(head.await, Ok(0));
    assert_eq!(last.await, Ok(2));
    pool.wait_idle().await;
    assert!(!ran.load(Ordering::SeqCst));
    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.completed, stats.lanes), (1, 2, 0));
    pool.shutdown().await;
}

/// Sets its flag when dropped, after a while: a destructor with work to do
/// (closing a connection, say), so that anything that looks at the flag
/// before the drop has finished sees it unset.
struct SlowDrop(Arc<AtomicBool>);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        // The workload of the drop, not a wait for another task.
        std::thread::sleep(Duration::from_millis(20));
        self.0.store(true, Ordering::SeqCst);
    }
}

on_both_runtimes!(a_stopped_jobs_handle_resolves_only_after_its_future_is_dropped);
async fn a_stopped_jobs_handle_resolves_only_after_its_future_is_dropped() {
    let pool = AsyncPool::new(2);
    for how in ["handle", "token", "deadline"] {
        let dropped = Arc::new(AtomicBool::new(false));
        let token = CancelToken::new();
        let (started_tx, started_rx) = oneshot::channel();
        let job = {
            let guard = SlowDrop(dropped.clone());
            async move {
                let _guard = guard;
                started_tx.send(()).unwrap();
                tokio::time::sleep(FOREVER).await;
            }
        };
        let mut builder = pool.job().token(token.clone());
        if how == "deadline" {
            // Long enough to start first (a retry would only muddy this).
            builder = builder.deadline_in(Duration::from_millis(500));
        }
        let handle = builder.spawn(job).await.unwrap();
        if started_rx.await.is_err() {
            // Expired before it started: nothing to check this time.
            continue;
        }
        match how {
            "handle" => handle.cancel(),
            "token" => token.cancel(),
            _ => {}
        }
        let result = handle.await;
        assert!(
            dropped.load(Ordering::SeqCst),
            "{how}: the handle resolved ({result:?}) before the future was dropped"
        );
    }
    pool.shutdown().await;
}
