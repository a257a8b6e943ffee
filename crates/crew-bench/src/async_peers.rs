//! The async implementations: crew's `AsyncPool` and the tokio patterns
//! people write instead, plus the two ways of offloading blocking work from
//! async code (`Pool::run`, `spawn_blocking`).
//!
//! Every run gets a fresh tokio multi-thread runtime ([`runtime`], not
//! timed). The producer is a task spawned on that runtime, so it shares the
//! runtime's worker threads with the jobs, as it would in a service. Each
//! runner builds its pool or its worker tasks (not timed), then times from
//! the first submit until every job has run, using each pattern's own way
//! of waiting for that:
//!
//! - crew: `submit(..).await` each job, then `wait_idle().await`;
//! - tokio `Semaphore` + `JoinSet`: `acquire_owned` a permit (`workers`
//!   permits), `spawn` the job with the permit into a `JoinSet` (reaping
//!   finished tasks with `try_join_next` as it goes, so the set does not
//!   hold a million finished tasks), then `join_next` until empty;
//! - mpsc-fed worker tasks: `workers` tasks loop on
//!   `rx.lock().await.recv().await` over one `tokio::sync::mpsc::channel`
//!   of boxed futures (capacity [`QUEUE_CAPACITY`]) shared through
//!   `Arc<tokio::sync::Mutex<Receiver>>`; drop the sender, join the tasks;
//! - `buffer_unordered`: `stream::iter(jobs).buffer_unordered(workers)`
//!   driven to the end by the producer task itself;
//! - bare tasks (the ceiling): `workers` tasks, released together, each
//!   claiming the next job from a shared atomic counter until all are
//!   claimed; join them.
//!
//! Tearing down (pool shutdown, runtime drop) is not timed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::peers::{Impl, Run, QUEUE_CAPACITY};

/// A boxed job future, as queued by the mpsc-fed worker tasks.
pub type BoxedFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A tokio multi-thread runtime with `threads` worker threads and the timer
/// and I/O drivers enabled.
pub fn runtime(threads: usize) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("crew-bench-rt")
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// Runs `jobs` job futures built by `make` (called with the job's index)
/// through `imp` with `workers` concurrent jobs, from a producer task on
/// `rt`, and returns the time from the first submit until every job ran.
///
/// The caller checks that the jobs really ran (they count themselves).
pub fn run<Fut, M>(
    rt: &Runtime,
    imp: Impl,
    workers: usize,
    jobs: u64,
    make: M,
) -> Result<Run, String>
where
    M: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let producer = async move {
        match imp {
            Impl::AsyncCrew => run_crew(workers, jobs, make).await,
            Impl::TokioSemaphore => run_semaphore(workers, jobs, make).await,
            Impl::TokioMpsc => run_mpsc(workers, jobs, make).await,
            Impl::BufferUnordered => Ok(run_buffer_unordered(workers, jobs, make).await),
            Impl::BareTasks => run_bare_tasks(workers, jobs, make).await,
            other => Err(format!("{} is not an async implementation", other.name())),
        }
    };
    on_producer_task(rt, producer)
}

/// Runs `producer` as a task spawned on `rt` and waits for it.
fn on_producer_task<F>(rt: &Runtime, producer: F) -> Result<Run, String>
where
    F: Future<Output = Result<Run, String>> + Send + 'static,
{
    rt.block_on(async move {
        tokio::spawn(producer)
            .await
            .map_err(|e| format!("producer task: {e}"))?
    })
}

fn plain(elapsed: std::time::Duration) -> Run {
    Run {
        elapsed,
        note: None,
    }
}

async fn run_crew<Fut, M>(workers: usize, jobs: u64, make: M) -> Result<Run, String>
where
    M: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pool = crew::AsyncPool::builder()
        .workers(workers)
        .queue_capacity(QUEUE_CAPACITY)
        .build();
    let start = Instant::now();
    let mut accepted = 0u64;
    for i in 0..jobs {
        if pool.submit(make(i)).await.is_ok() {
            accepted += 1;
        }
    }
    pool.wait_idle().await;
    let elapsed = start.elapsed();
    let stats = pool.stats();
    pool.shutdown().await;
    if accepted != jobs {
        return Err(format!("crew accepted {accepted} of {jobs} jobs"));
    }
    Ok(Run {
        elapsed,
        note: crew_stats_note(&stats, jobs),
    })
}

/// What crew's own stats said after `wait_idle`, if it disagrees with `jobs`.
pub(crate) fn crew_stats_note(stats: &crew::Stats, jobs: u64) -> Option<String> {
    (stats.submitted != jobs || stats.completed != jobs || stats.queued != 0 || stats.busy != 0)
        .then(|| {
            format!(
                "after wait_idle() crew's stats said submitted={}, completed={}, queued={}, busy={} \
                 (expected {jobs}, {jobs}, 0, 0)",
                stats.submitted, stats.completed, stats.queued, stats.busy
            )
        })
}

async fn run_semaphore<Fut, M>(workers: usize, jobs: u64, make: M) -> Result<Run, String>
where
    M: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(workers));
    let mut set = JoinSet::new();
    let mut failed = 0u64;
    let start = Instant::now();
    for i in 0..jobs {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(|e| format!("semaphore: {e}"))?;
        let job = make(i);
        set.spawn(async move {
            job.await;
            drop(permit);
        });
        while let Some(done) = set.try_join_next() {
            failed += u64::from(done.is_err());
        }
    }
    while let Some(done) = set.join_next().await {
        failed += u64::from(done.is_err());
    }
    let elapsed = start.elapsed();
    if failed > 0 {
        return Err(format!("{failed} tasks failed"));
    }
    Ok(plain(elapsed))
}

async fn run_mpsc<Fut, M>(workers: usize, jobs: u64, make: M) -> Result<Run, String>
where
    M: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<BoxedFuture>(QUEUE_CAPACITY);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let rx = Arc::clone(&rx);
            tokio::spawn(async move {
                loop {
                    // The lock is held while waiting for a job, and released
                    // (end of statement) before running it.
                    let job = rx.lock().await.recv().await;
                    match job {
                        Some(job) => job.await,
                        None => break,
                    }
                }
            })
        })
        .collect();
    drop(rx);
    let start = Instant::now();
    for i in 0..jobs {
        if tx.send(Box::pin(make(i))).await.is_err() {
            return Err("mpsc channel closed early".into());
        }
    }
    drop(tx);
    let mut failed = 0u64;
    for h in handles {
        failed += u64::from(h.await.is_err());
    }
    let elapsed = start.elapsed();
    if failed > 0 {
        return Err(format!("{failed} worker tasks failed"));
    }
    Ok(plain(elapsed))
}

async fn run_buffer_unordered<Fut, M>(workers: usize, jobs: u64, make: M) -> Run
where
    M: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    stream::iter((0..jobs).map(make))
        .buffer_unordered(workers)
        .for_each(|()| std::future::ready(()))
        .await;
    plain(start.elapsed())
}

async fn run_bare_tasks<Fut, M>(workers: usize, jobs: u64, make: M) -> Result<Run, String>
where
    M: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    // Closed gate: the tasks start together once it opens.
    let gate = Arc::new(Semaphore::new(0));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (next, gate, make) = (Arc::clone(&next), Arc::clone(&gate), make.clone());
            tokio::spawn(async move {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs {
                        break;
                    }
                    make(i).await;
                }
            })
        })
        .collect();
    let start = Instant::now();
    gate.add_permits(workers);
    let mut failed = 0u64;
    for h in handles {
        failed += u64::from(h.await.is_err());
    }
    let elapsed = start.elapsed();
    if failed > 0 {
        return Err(format!("{failed} tasks failed"));
    }
    Ok(plain(elapsed))
}

/// Runs `jobs` blocking jobs built by `make` from `tasks` concurrent tokio
/// tasks on `rt`, each awaiting one job at a time (task `t` runs jobs `t`,
/// `t + tasks`, ...), through `imp`: [`Impl::CrewRun`] on a `crew::Pool`
/// of `pool_workers` threads, or [`Impl::SpawnBlocking`] on tokio's own
/// blocking pool. Returns the time from spawning the tasks until all ended.
pub fn run_offload<J, M>(
    rt: &Runtime,
    imp: Impl,
    pool_workers: usize,
    tasks: usize,
    jobs: u64,
    make: M,
) -> Result<Run, String>
where
    M: Fn(u64) -> J + Clone + Send + Sync + 'static,
    J: FnOnce() + Send + 'static,
{
    let tasks = tasks.max(1);
    let pool = match imp {
        Impl::CrewRun => Some(
            crew::Pool::builder()
                .workers(pool_workers)
                .queue_capacity(QUEUE_CAPACITY)
                .build(),
        ),
        Impl::SpawnBlocking => None,
        other => return Err(format!("{} is not an offload implementation", other.name())),
    };
    let task_pool = pool.clone();
    let producer = async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks as u64)
            .map(|t| {
                let (pool, make) = (task_pool.clone(), make.clone());
                tokio::spawn(async move {
                    let mut failed = 0u64;
                    for i in (t..jobs).step_by(tasks) {
                        let ok = match &pool {
                            Some(pool) => pool.run(make(i)).await.is_ok(),
                            None => tokio::task::spawn_blocking(make(i)).await.is_ok(),
                        };
                        failed += u64::from(!ok);
                    }
                    failed
                })
            })
            .collect();
        let mut failed = 0u64;
        for h in handles {
            failed += h.await.map_err(|e| format!("offloading task: {e}"))?;
        }
        let elapsed = start.elapsed();
        if failed > 0 {
            return Err(format!("{failed} jobs failed"));
        }
        Ok(plain(elapsed))
    };
    let result = on_producer_task(rt, producer);
    if let Some(pool) = pool {
        pool.shutdown();
    }
    result
}
