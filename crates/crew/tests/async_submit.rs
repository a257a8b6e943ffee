//! Submitting to an `AsyncPool`: construction and builder options,
//! backpressure (`submit` waits, `try_submit` refuses, `submit_timeout` gives
//! up), futures coming back in `SubmitError`, `spawn` and its handle, keyed
//! lanes, and the stats. Every test runs on the current-thread and the
//! multi-thread runtime.

mod common;
#[macro_use]
#[path = "common/rt.rs"]
mod rt;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crew::{AsyncPool, SubmitError, DEFAULT_QUEUE_CAPACITY};
use rt::{eventually, let_others_run, still_pending, AsyncGate};
use tokio::sync::{mpsc, Barrier};

/// Long enough that a `submit_timeout` expected to succeed never times out
/// first (room appears as soon as the test resumes the pool); only a hang
/// would reach it, and the guard fires after it.
const PLENTY: Duration = Duration::from_secs(30);

/// A fire-and-forget job that counts its run.
fn count_into(runs: &Arc<AtomicUsize>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let runs = runs.clone();
    async move {
        runs.fetch_add(1, Ordering::SeqCst);
    }
}

on_both_runtimes!(submit_runs_every_job_exactly_once);
async fn submit_runs_every_job_exactly_once() {
    let pool = AsyncPool::new(4);
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..2_000 {
        pool.submit(count_into(&runs)).await.unwrap();
    }
    let report = pool.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2_000);
    // The report counts only what ran while the shutdown waited.
    assert!(report.completed <= 2_000, "{report}");
    assert_eq!((report.abandoned, report.cancelled), (0, 0));
    let stats = pool.stats();
    assert_eq!(stats.submitted, 2_000);
    assert_eq!(stats.completed, 2_000);
    assert_eq!(stats.rejected, 0);
}

on_both_runtimes!(new_pool_starts_its_workers_with_the_default_queue_bound);
async fn new_pool_starts_its_workers_with_the_default_queue_bound() {
    let pool = AsyncPool::new(3);
    let stats = pool.stats();
    assert_eq!(stats.workers, 3);
    assert_eq!(stats.queue_capacity, Some(DEFAULT_QUEUE_CAPACITY));
    assert!(!pool.is_closed());
    assert!(!pool.is_paused());
    pool.shutdown().await;
    assert_eq!(pool.stats().workers, 0);
}

on_both_runtimes!(builder_sets_workers_and_queue_capacity);
async fn builder_sets_workers_and_queue_capacity() {
    let pool = AsyncPool::builder().workers(5).queue_capacity(7).build();
    let stats = pool.stats();
    assert_eq!(stats.workers, 5);
    assert_eq!(stats.queue_capacity, Some(7));
    pool.shutdown().await;
}

on_both_runtimes!(unbounded_pool_takes_a_backlog_beyond_the_default_bound_without_refusing);
async fn unbounded_pool_takes_a_backlog_beyond_the_default_bound_without_refusing() {
    let pool = AsyncPool::builder().workers(1).unbounded().build();
    assert_eq!(pool.stats().queue_capacity, None);
    pool.pause();
    let backlog = DEFAULT_QUEUE_CAPACITY * 2;
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..backlog {
        // try_submit never reports Full on an unbounded queue.
        pool.try_submit(count_into(&runs)).unwrap();
    }
    assert_eq!(pool.stats().queued, backlog);
    pool.resume();
    pool.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), backlog);
}

on_both_runtimes!(runtime_option_builds_a_pool_outside_the_runtime);
async fn runtime_option_builds_a_pool_outside_the_runtime() {
    // Built on a plain thread, which has no runtime of its own: the
    // workers run on the runtime handed to the builder.
    let handle = tokio::runtime::Handle::current();
    let pool = std::thread::spawn(move || AsyncPool::builder().workers(2).runtime(handle).build())
        .join()
        .unwrap();
    let on_runtime = pool
        .spawn(async { tokio::runtime::Handle::try_current().is_ok() })
        .await
        .unwrap();
    assert_eq!(on_runtime.await, Ok(true));
    pool.shutdown().await;
}

#[test]
#[should_panic(expected = "needs a tokio runtime")]
fn building_outside_a_runtime_without_one_panics() {
    let _ = AsyncPool::new(1);
}

#[test]
#[should_panic(expected = "at least one worker")]
fn building_with_zero_workers_panics() {
    let runtime = rt::runtime(rt::Flavor::CurrentThread);
    let _ = AsyncPool::builder()
        .workers(0)
        .runtime(runtime.handle().clone())
        .build();
}

#[test]
#[should_panic(expected = "queue_capacity")]
fn building_with_zero_queue_capacity_panics() {
    let runtime = rt::runtime(rt::Flavor::CurrentThread);
    let _ = AsyncPool::builder()
        .workers(1)
        .queue_capacity(0)
        .runtime(runtime.handle().clone())
        .build();
}

on_both_runtimes!(spawn_returns_the_futures_output_through_the_handle);
async fn spawn_returns_the_futures_output_through_the_handle() {
    let pool = AsyncPool::new(2);
    let handles: Vec<_> = {
        let mut handles = Vec::new();
        for i in 0..50u64 {
            handles.push(
                pool.spawn(async move {
                    tokio::task::yield_now().await;
                    i * i
                })
                .await
                .unwrap(),
            );
        }
        handles
    };
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.await, Ok((i * i) as u64));
    }
    pool.shutdown().await;
    assert_eq!(pool.stats().completed, 50);
}

on_both_runtimes!(a_dropped_handle_does_not_cancel_its_job);
async fn a_dropped_handle_does_not_cancel_its_job() {
    let pool = AsyncPool::new(1);
    let (ran_tx, ran_rx) = tokio::sync::oneshot::channel();
    drop(
        pool.spawn(async move {
            tokio::task::yield_now().await;
            ran_tx.send(()).unwrap();
        })
        .await
        .unwrap(),
    );
    ran_rx
        .await
        .expect("the job of a dropped handle still runs");
    pool.shutdown().await;
    assert_eq!(pool.stats().completed, 1);
}

on_both_runtimes!(try_submit_gives_the_future_back_when_the_queue_is_full);
async fn try_submit_gives_the_future_back_when_the_queue_is_full() {
    let pool = AsyncPool::builder().workers(1).queue_capacity(2).build();
    pool.pause();
    let runs = Arc::new(AtomicUsize::new(0));
    pool.try_submit(count_into(&runs)).unwrap();
    pool.try_submit(count_into(&runs)).unwrap();
    let refused = match pool.try_submit(async { Ok::<_, ()>("the refused future") }) {
        Err(SubmitError::Full(future)) => future,
        other => panic!("expected Full, got {other:?}"),
    };
    // The future came back whole: the caller can run it itself.
    assert_eq!(refused.await, Ok("the refused future"));
    let stats = pool.stats();
    assert_eq!(stats.queued, 2);
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.submitted, 2);
    pool.resume();
    pool.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

on_both_runtimes!(submit_waits_while_the_queue_is_full_and_queues_once_there_is_room);
async fn submit_waits_while_the_queue_is_full_and_queues_once_there_is_room() {
    let pool = AsyncPool::builder().workers(1).queue_capacity(2).build();
    pool.pause();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..2 {
        let order = order.clone();
        pool.submit(async move { order.lock().unwrap().push(i) })
            .await
            .unwrap();
    }
    let third = {
        let order = order.clone();
        pool.submit(async move { order.lock().unwrap().push(2) })
    };
    let mut third = Box::pin(third);
    // Paused with a full queue: nothing can make room, so this is
    // pending whatever the timing.
    assert!(
        still_pending(&mut third),
        "submit returned while the queue was full"
    );
    assert!(pool.stats().queued <= 2, "the queue grew past its bound");
    pool.resume();
    third.await.unwrap();
    pool.wait_idle().await;
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    assert_eq!(pool.stats().rejected, 0);
}

on_both_runtimes!(a_submit_waiting_for_room_does_not_block_other_tasks);
async fn a_submit_waiting_for_room_does_not_block_other_tasks() {
    // The producer waits in `submit` on a full queue; another task on the
    // same runtime must still run (on the current-thread runtime it could
    // not if the wait blocked the thread), and it is the one that lets
    // the queue drain.
    let pool = AsyncPool::builder().workers(1).queue_capacity(1).build();
    pool.pause();
    pool.submit(async {}).await.unwrap();
    let producer = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.submit(async {}).await.is_ok() })
    };
    let resumer = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.resume() })
    };
    resumer.await.unwrap();
    assert!(producer.await.unwrap(), "the waiting submit was refused");
    pool.shutdown().await;
    assert_eq!(pool.stats().completed, 2);
}

on_both_runtimes!(submit_timeout_gives_the_future_back_when_the_queue_stays_full);
async fn submit_timeout_gives_the_future_back_when_the_queue_stays_full() {
    let pool = AsyncPool::builder().workers(1).queue_capacity(1).build();
    pool.pause();
    pool.submit(async {}).await.unwrap();
    // Paused: the queue stays full for as long as the timeout lasts.
    let refused = match pool
        .submit_timeout(async { Ok::<_, ()>(7) }, Duration::from_millis(20))
        .await
    {
        Err(SubmitError::Timeout(future)) => future,
        other => panic!("expected Timeout, got {other:?}"),
    };
    assert_eq!(refused.await, Ok(7));
    assert_eq!(pool.stats().rejected, 1);
    pool.resume();
    pool.shutdown().await;
    assert_eq!(pool.stats().completed, 1);
}

on_both_runtimes!(submit_timeout_queues_the_job_when_room_frees_in_time);
async fn submit_timeout_queues_the_job_when_room_frees_in_time() {
    let pool = AsyncPool::builder().workers(1).queue_capacity(1).build();
    pool.pause();
    pool.submit(async {}).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut waiting = Box::pin(pool.submit_timeout(count_into(&runs), PLENTY));
    assert!(still_pending(&mut waiting));
    pool.resume();
    waiting.await.unwrap();
    pool.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(pool.stats().rejected, 0);
}

on_both_runtimes!(queue_capacity_bounds_waiting_jobs_not_running_ones);
async fn queue_capacity_bounds_waiting_jobs_not_running_ones() {
    let pool = AsyncPool::builder().workers(2).queue_capacity(3).build();
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    for _ in 0..2 {
        let gate = gate.clone();
        let started_tx = started_tx.clone();
        pool.submit(async move {
            started_tx.send(()).unwrap();
            gate.wait().await;
        })
        .await
        .unwrap();
    }
    // Both workers hold a job; their slots are free again.
    started_rx.recv().await.unwrap();
    started_rx.recv().await.unwrap();
    for _ in 0..3 {
        pool.try_submit(async {}).unwrap();
    }
    assert!(matches!(
        pool.try_submit(async {}),
        Err(SubmitError::Full(_))
    ));
    let stats = pool.stats();
    assert_eq!(stats.busy, 2);
    assert_eq!(stats.queued, 3);
    gate.open();
    pool.shutdown().await;
    assert_eq!(pool.stats().completed, 5);
}

on_both_runtimes!(job_builder_submits_through_every_entry_point);
async fn job_builder_submits_through_every_entry_point() {
    let pool = AsyncPool::new(2);
    let runs = Arc::new(AtomicUsize::new(0));
    pool.job().submit(count_into(&runs)).await.unwrap();
    pool.job().try_submit(count_into(&runs)).unwrap();
    pool.job()
        .submit_timeout(count_into(&runs), PLENTY)
        .await
        .unwrap();
    pool.job().key("k").submit(count_into(&runs)).await.unwrap();
    let handle = pool.job().key("k").spawn(async { 5 }).await.unwrap();
    assert_eq!(handle.await, Ok(5));
    pool.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!(pool.stats().completed, 5);
}

on_both_runtimes!(keyed_jobs_run_one_at_a_time_in_submission_order);
async fn keyed_jobs_run_one_at_a_time_in_submission_order() {
    const KEYS: usize = 4;
    const PER_KEY: usize = 60;
    let pool = AsyncPool::new(4);
    let seen: Arc<Vec<Mutex<Vec<usize>>>> =
        Arc::new((0..KEYS).map(|_| Mutex::new(Vec::new())).collect());
    let running: Arc<Vec<AtomicBool>> =
        Arc::new((0..KEYS).map(|_| AtomicBool::new(false)).collect());
    let overlaps = Arc::new(AtomicUsize::new(0));
    for seq in 0..PER_KEY {
        for key in 0..KEYS {
            let (seen, running, overlaps) = (seen.clone(), running.clone(), overlaps.clone());
            // Mixed entry points; all share the key's lane.
            let job = async move {
                if running[key].swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                // Suspend mid-job: a second job of the key would get in
                // here if the lane let it.
                tokio::task::yield_now().await;
                seen[key].lock().unwrap().push(seq);
                running[key].store(false, Ordering::SeqCst);
            };
            if seq % 2 == 0 {
                pool.submit_keyed(&key, job).await.unwrap();
            } else {
                drop(pool.spawn_keyed(&key, job).await.unwrap());
            }
        }
    }
    pool.shutdown().await;
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two jobs of a key ran at once"
    );
    for (key, seen) in seen.iter().enumerate() {
        assert_eq!(
            *seen.lock().unwrap(),
            (0..PER_KEY).collect::<Vec<_>>(),
            "key {key} ran out of order"
        );
    }
    assert_eq!(pool.stats().lanes, 0);
}

on_both_runtimes!(different_keys_run_in_parallel);
async fn different_keys_run_in_parallel() {
    // Each job waits until both run: they only finish if the two keys
    // got a worker each.
    let pool = AsyncPool::new(2);
    let both = Arc::new(Barrier::new(2));
    let mut handles = Vec::new();
    for key in ["a", "b"] {
        let both = both.clone();
        handles.push(
            pool.spawn_keyed(key, async move {
                both.wait().await;
                key
            })
            .await
            .unwrap(),
        );
    }
    assert_eq!(handles.remove(0).await, Ok("a"));
    assert_eq!(handles.remove(0).await, Ok("b"));
    pool.shutdown().await;
}

on_both_runtimes!(a_key_waiting_behind_a_busy_lane_does_not_hold_up_other_keys);
async fn a_key_waiting_behind_a_busy_lane_does_not_hold_up_other_keys() {
    let pool = AsyncPool::new(2);
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    {
        let gate = gate.clone();
        pool.submit_keyed("busy", async move {
            started_tx.send(()).unwrap();
            gate.wait().await;
        })
        .await
        .unwrap();
    }
    started_rx.await.unwrap();
    let behind = pool.spawn_keyed("busy", async { "behind" }).await.unwrap();
    let other = pool.spawn_keyed("other", async { "other" }).await.unwrap();
    assert_eq!(other.await, Ok("other"));
    // The handle resolves as the job returns; its worker ends the lane
    // right after (a moment later on a multi-thread runtime).
    eventually("the other key's lane ended", || pool.stats().lanes == 1).await;
    let stats = pool.stats();
    assert_eq!(stats.lanes, 1, "only the busy key has work left: {stats:?}");
    assert_eq!(stats.queued, 1, "the job behind its lane counts as queued");
    let mut behind = Box::pin(behind);
    let_others_run(50).await;
    assert!(
        still_pending(&mut behind),
        "a job ran while its key was busy"
    );
    gate.open();
    assert_eq!(behind.await, Ok("behind"));
    pool.shutdown().await;
}

on_both_runtimes!(stats_count_every_outcome_and_time_the_jobs_that_ran);
async fn stats_count_every_outcome_and_time_the_jobs_that_ran() {
    let pool = AsyncPool::new(2);
    for i in 0..30u32 {
        if i % 3 == 0 {
            pool.submit(async move { Err::<(), _>(format!("job {i} failed")) })
                .await
                .unwrap();
        } else {
            pool.submit(async move { Ok::<u32, String>(i) })
                .await
                .unwrap();
        }
    }
    for _ in 0..10 {
        drop(pool.spawn(async { Err::<(), ()>(()) }).await.unwrap());
    }
    pool.wait_idle().await;
    let stats = pool.stats();
    assert_eq!(stats.submitted, 40);
    // A spawned job's `Err` is the caller's business: it completed.
    assert_eq!(stats.completed, 30);
    assert_eq!(stats.failed, 10);
    assert_eq!(
        stats.panicked + stats.expired + stats.cancelled + stats.abandoned,
        0
    );
    assert_eq!(stats.queue_wait.count(), 40);
    assert_eq!(stats.run_time.count(), 40);
    assert_eq!((stats.busy, stats.queued, stats.lanes), (0, 0, 0));
    assert_eq!(stats.workers, 2);
    assert_eq!(stats.idle, 2);
    pool.shutdown().await;
}

on_both_runtimes!(busy_and_queued_gauges_follow_the_jobs);
async fn busy_and_queued_gauges_follow_the_jobs() {
    let pool = AsyncPool::builder().workers(1).queue_capacity(8).build();
    let gate = AsyncGate::new();
    let _open = gate.open_on_drop();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    {
        let gate = gate.clone();
        pool.submit(async move {
            started_tx.send(()).unwrap();
            gate.wait().await;
        })
        .await
        .unwrap();
    }
    started_rx.await.unwrap();
    for _ in 0..4 {
        pool.submit(async {}).await.unwrap();
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.busy, stats.idle, stats.queued),
        (1, 0, 4),
        "{stats:?}"
    );
    gate.open();
    pool.wait_idle().await;
    let stats = pool.stats();
    assert_eq!(
        (stats.busy, stats.idle, stats.queued),
        (0, 1, 0),
        "{stats:?}"
    );
    assert_eq!(stats.completed, 5);
    pool.shutdown().await;
}

on_both_runtimes!(many_tasks_submitting_at_once_share_the_bound_and_all_get_in);
async fn many_tasks_submitting_at_once_share_the_bound_and_all_get_in() {
    let pool = AsyncPool::builder().workers(2).queue_capacity(4).build();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for _ in 0..8 {
        let (pool, runs) = (pool.clone(), runs.clone());
        producers.push(tokio::spawn(async move {
            for _ in 0..100 {
                pool.submit(count_into(&runs)).await.unwrap();
            }
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
    pool.wait_idle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 800);
    let stats = pool.stats();
    assert_eq!(stats.submitted, 800);
    assert_eq!(stats.completed, 800);
    pool.shutdown().await;
}

on_both_runtimes!(worker_tasks_yield_so_a_busy_pool_does_not_starve_the_runtime);
async fn worker_tasks_yield_so_a_busy_pool_does_not_starve_the_runtime() {
    // Jobs that never wait: without the worker yielding between jobs, a
    // current-thread runtime would run the whole backlog before the
    // ticker below got a single turn.
    const BACKLOG: u64 = 10_000;
    let pool = AsyncPool::builder().workers(1).unbounded().build();
    pool.pause();
    for _ in 0..BACKLOG {
        pool.try_submit(async {}).unwrap();
    }
    let ticker = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            pool.stats().completed
        })
    };
    pool.resume();
    let completed_when_ticked = ticker.await.unwrap();
    // Only the current-thread runtime makes this deterministic: on the
    // multi-thread one the ticker runs beside the worker anyway.
    if rt::flavor() == rt::Flavor::CurrentThread {
        assert!(
            completed_when_ticked < BACKLOG,
            "the worker ran all {BACKLOG} jobs before another task got a turn"
        );
    }
    pool.shutdown().await;
    assert_eq!(pool.stats().completed, BACKLOG);
}

on_both_runtimes!(clones_share_one_pool);
async fn clones_share_one_pool() {
    let pool = AsyncPool::new(2);
    let clone = pool.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        clone.submit(count_into(&runs)).await.unwrap();
    }
    pool.wait_idle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 10);
    assert_eq!(pool.stats().submitted, 10);
    pool.shutdown().await;
    assert!(clone.is_closed());
    let debug = format!("{clone:?}");
    assert!(debug.contains("closed: true"), "{debug}");
}

on_both_runtimes!(submitted_futures_run_on_the_pools_runtime);
async fn submitted_futures_run_on_the_pools_runtime() {
    // A job may use the runtime's facilities (timers, spawn).
    let pool = AsyncPool::new(2);
    let handle = pool
        .spawn(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            tokio::spawn(async { 3 }).await.unwrap()
        })
        .await
        .unwrap();
    assert_eq!(handle.await, Ok(3));
    pool.wait_idle().await;
    assert_eq!(pool.stats().completed, 1);
    pool.shutdown().await;
}
