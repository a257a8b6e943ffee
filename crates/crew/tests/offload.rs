//! `Pool::run`: blocking work handed from async code to the thread pool. It
//! returns the job's value, runs it on a pool thread, waits for queue space
//! without blocking the runtime thread (so a current-thread runtime keeps
//! running its other tasks), cancels the job when dropped before it starts,
//! and reports a closed pool. Every test runs on the current-thread and the
//! multi-thread runtime.

mod common;
#[macro_use]
#[path = "common/rt.rs"]
mod rt;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::{quiet_intentional_panics, Gate, INTENTIONAL};
use crew::{JobError, Pool, SubmitError};
use rt::still_pending;
use tokio::sync::{mpsc, oneshot};

/// Blocks the pool's workers: submits one job per worker that says when it
/// starts and then waits for `gate`; returns once all of them run.
async fn block_workers(pool: &Pool, workers: usize, gate: &Gate) {
    for _ in 0..workers {
        let (started_tx, started_rx) = oneshot::channel();
        let gate = gate.clone();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            gate.wait();
        })
        .unwrap();
        started_rx.await.expect("the blocking job started");
    }
}

/// Two tasks on the caller's runtime bounce `rounds` messages: returns only
/// if the runtime keeps scheduling tasks (on a current-thread runtime, only
/// if nothing blocks its one thread).
async fn ping_pong(rounds: u32) {
    let (ping_tx, mut ping_rx) = mpsc::channel(1);
    let (pong_tx, mut pong_rx) = mpsc::channel(1);
    let ponger = tokio::spawn(async move {
        while let Some(i) = ping_rx.recv().await {
            pong_tx.send(i).await.unwrap();
        }
    });
    let pinger = tokio::spawn(async move {
        for i in 0..rounds {
            ping_tx.send(i).await.unwrap();
            assert_eq!(pong_rx.recv().await, Some(i));
        }
    });
    pinger.await.unwrap();
    ponger.await.unwrap();
}

on_both_runtimes!(run_returns_the_jobs_value);
async fn run_returns_the_jobs_value() {
    let pool = Pool::new(2);
    assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    let owned = String::from("moved in");
    assert_eq!(pool.run(move || owned.len()).await, Ok(8));
    pool.wait_idle();
    assert_eq!(pool.stats().completed, 2);
}

on_both_runtimes!(run_executes_the_job_on_a_pool_thread_not_a_runtime_thread);
async fn run_executes_the_job_on_a_pool_thread_not_a_runtime_thread() {
    let pool = Pool::builder().workers(2).thread_name("offload").build();
    let caller = thread::current().id();
    let (thread, name, in_runtime) = pool
        .run(|| {
            let me = thread::current();
            (
                me.id(),
                me.name().map(str::to_owned),
                tokio::runtime::Handle::try_current().is_ok(),
            )
        })
        .await
        .unwrap();
    assert_ne!(thread, caller, "the job ran on the caller's thread");
    let name = name.expect("pool threads are named");
    assert!(name.starts_with("offload-"), "the job ran on {name:?}");
    assert!(!in_runtime, "the job ran inside the runtime");
}

on_both_runtimes!(run_waiting_for_queue_space_leaves_the_runtime_free_for_other_tasks);
async fn run_waiting_for_queue_space_leaves_the_runtime_free_for_other_tasks() {
    let pool = Pool::builder().workers(1).queue_capacity(1).build();
    let gate = Gate::new();
    let _open = gate.open_on_drop();
    block_workers(&pool, 1, &gate).await;
    pool.try_submit(|| ()).unwrap();
    assert!(matches!(pool.try_submit(|| ()), Err(SubmitError::Full(_))));

    let mut run = Box::pin(pool.run(|| 7));
    // A run that blocked its thread would hang here (and the guard
    // would fail the test); it must come back pending instead.
    assert!(
        still_pending(&mut run),
        "run finished with the pool blocked"
    );
    let stats = pool.stats();
    assert_eq!(
        (stats.queued, stats.submitted),
        (1, 2),
        "run got in a full queue"
    );
    let run = tokio::spawn(run);
    // While it waits, the runtime's other tasks run.
    ping_pong(100).await;
    assert!(!run.is_finished());

    gate.open();
    assert_eq!(run.await.unwrap(), Ok(7));
    pool.wait_idle();
    assert_eq!(pool.stats().completed, 3);
}

on_both_runtimes!(run_waiting_for_its_result_leaves_the_runtime_free_for_other_tasks);
async fn run_waiting_for_its_result_leaves_the_runtime_free_for_other_tasks() {
    let pool = Pool::builder().workers(1).queue_capacity(4).build();
    let gate = Gate::new();
    let _open = gate.open_on_drop();
    block_workers(&pool, 1, &gate).await;
    let mut run = Box::pin(pool.run(|| "done"));
    assert!(still_pending(&mut run));
    assert_eq!(pool.stats().queued, 1, "run queued its job");
    let run = tokio::spawn(run);
    ping_pong(100).await;
    assert!(!run.is_finished());
    gate.open();
    assert_eq!(run.await.unwrap(), Ok("done"));
}

on_both_runtimes!(many_runs_waiting_on_a_full_pool_all_complete_once_it_frees);
async fn many_runs_waiting_on_a_full_pool_all_complete_once_it_frees() {
    // More callers than workers and queue slots together: most wait for
    // space, all as tasks of this runtime.
    let pool = Pool::builder().workers(2).queue_capacity(2).build();
    let gate = Gate::new();
    let _open = gate.open_on_drop();
    block_workers(&pool, 2, &gate).await;
    let runs: Vec<_> = (0..32u64)
        .map(|i| tokio::spawn(pool.run(move || i * 3)))
        .collect();
    ping_pong(20).await;
    assert!(pool.stats().queued <= 2, "the queue grew past its bound");
    gate.open();
    for (i, run) in runs.into_iter().enumerate() {
        assert_eq!(run.await.unwrap(), Ok(i as u64 * 3));
    }
    pool.wait_idle();
    assert_eq!(pool.stats().completed, 34);
}

on_both_runtimes!(dropping_the_run_future_before_the_job_starts_cancels_the_job);
async fn dropping_the_run_future_before_the_job_starts_cancels_the_job() {
    let pool = Pool::builder().workers(1).queue_capacity(4).build();
    let gate = Gate::new();
    let _open = gate.open_on_drop();
    block_workers(&pool, 1, &gate).await;
    let ran = Arc::new(AtomicBool::new(false));
    let mut run = {
        let ran = ran.clone();
        Box::pin(pool.run(move || ran.store(true, Ordering::SeqCst)))
    };
    assert!(still_pending(&mut run));
    assert_eq!(pool.stats().queued, 1, "run queued its job");
    drop(run);
    gate.open();
    // One worker, first in first out: once this one ran, the dropped
    // one's turn has come and gone.
    pool.run(|| ()).await.unwrap();
    pool.wait_idle();
    assert!(!ran.load(Ordering::SeqCst), "the job of a dropped run ran");
    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.completed), (1, 2), "{stats:?}");
}

on_both_runtimes!(dropping_the_run_future_while_it_waits_for_space_queues_nothing);
async fn dropping_the_run_future_while_it_waits_for_space_queues_nothing() {
    let pool = Pool::builder().workers(1).queue_capacity(1).build();
    let gate = Gate::new();
    let _open = gate.open_on_drop();
    block_workers(&pool, 1, &gate).await;
    pool.try_submit(|| ()).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let mut run = {
        let ran = ran.clone();
        Box::pin(pool.run(move || ran.store(true, Ordering::SeqCst)))
    };
    assert!(still_pending(&mut run));
    drop(run);
    gate.open();
    pool.wait_idle();
    assert!(!ran.load(Ordering::SeqCst));
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.queued, stats.rejected),
        (2, 0, 0),
        "{stats:?}"
    );
    // No slot was leaked: the queue takes a job and another run works.
    assert_eq!(pool.run(|| 1).await, Ok(1));
}

on_both_runtimes!(dropping_the_run_future_after_the_job_started_lets_it_finish);
async fn dropping_the_run_future_after_the_job_started_lets_it_finish() {
    let pool = Pool::builder().workers(1).build();
    let gate = Gate::new();
    let _open = gate.open_on_drop();
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = oneshot::channel();
    let run = {
        let (gate, finished) = (gate.clone(), finished.clone());
        tokio::spawn(pool.run(move || {
            started_tx.send(()).unwrap();
            gate.wait();
            finished.store(true, Ordering::SeqCst);
        }))
    };
    started_rx.await.unwrap();
    // Aborting the task drops the run future with the job running.
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    gate.open();
    pool.run(|| ()).await.unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "a started job was cut short"
    );
    pool.wait_idle();
    assert_eq!(pool.stats().completed, 2);
}

on_both_runtimes!(run_on_a_closed_pool_returns_closed_and_never_runs_the_job);
async fn run_on_a_closed_pool_returns_closed_and_never_runs_the_job() {
    let pool = Pool::new(2);
    pool.shutdown();
    let ran = Arc::new(AtomicBool::new(false));
    let result = {
        let ran = ran.clone();
        pool.run(move || ran.store(true, Ordering::SeqCst)).await
    };
    assert_eq!(result, Err(JobError::Closed));
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(pool.stats().rejected, 1);
}

on_both_runtimes!(run_waiting_for_space_returns_closed_when_the_pool_shuts_down);
async fn run_waiting_for_space_returns_closed_when_the_pool_shuts_down() {
    let pool = Pool::builder().workers(1).queue_capacity(1).build();
    let gate = Gate::new();
    let _open = gate.open_on_drop();
    block_workers(&pool, 1, &gate).await;
    pool.try_submit(|| ()).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let mut run = {
        let ran = ran.clone();
        Box::pin(pool.run(move || ran.store(true, Ordering::SeqCst)))
    };
    assert!(still_pending(&mut run));
    // Returns at once: the blocked job is left to finish on its own.
    pool.shutdown_now();
    assert_eq!(run.await, Err(JobError::Closed));
    gate.open();
    assert!(!ran.load(Ordering::SeqCst));
}

on_both_runtimes!(a_panicking_job_gives_panicked_and_the_pool_keeps_working);
async fn a_panicking_job_gives_panicked_and_the_pool_keeps_working() {
    quiet_intentional_panics();
    let pool = Pool::new(1);
    match pool.run(|| -> u8 { panic!("{INTENTIONAL}: in run") }).await {
        Err(JobError::Panicked(message)) => assert!(message.contains("in run"), "{message}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(pool.run(|| 2).await, Ok(2));
    pool.wait_idle();
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.completed, stats.workers), (1, 1, 1));
}

on_both_runtimes!(the_run_future_can_be_spawned_and_outlives_the_pool_handle);
async fn the_run_future_can_be_spawned_and_outlives_the_pool_handle() {
    // The future owns what it needs: spawned, it completes after the
    // handle it came from is gone.
    let pool = Pool::new(1);
    let run = tokio::spawn(pool.run(|| "owned"));
    assert_eq!(run.await.unwrap(), Ok("owned"));
    let run = {
        let pool = pool.clone();
        pool.run(|| 5)
    };
    assert_eq!(run.await, Ok(5));
}
