//! The implementations measured side by side: crew and its Rust peers.
//!
//! Every runner does the same thing: build a pool of `workers` threads
//! (not timed), then time from the first submit until every job has run,
//! using each library's own way of waiting for that:
//!
//! - crew: `submit` (or `submit_batch`) each job, then `wait_idle()`;
//! - `threadpool`: `execute` each job, then `join()`;
//! - `rayon`: `ThreadPool::spawn` each job, then wait on a counting latch that
//!   each job counts down after it ran;
//! - crossbeam: a bounded channel of boxed closures read by `workers` threads
//!   looping on `recv()`; drop the sender, then join the threads (the plain
//!   Rust version of the Go pattern "close the channel, `WaitGroup.Wait()`").
//!
//! Tearing the pool down afterwards is not timed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Queue capacity used for the implementations that have a bounded queue
/// (crew and the crossbeam channel); crew's default capacity.
pub const QUEUE_CAPACITY: usize = 1024;

/// A boxed job, as queued by the crossbeam worker loop.
pub type BoxedJob = Box<dyn FnOnce() + Send + 'static>;

/// One implementation a workload is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Impl {
    /// `crew::Pool`, one `submit` per job.
    Crew,
    /// `crew::Pool`, all jobs through one `submit_batch` call.
    CrewBatch,
    /// The `threadpool` crate (1.8).
    Threadpool,
    /// A `rayon::ThreadPool`, one `spawn` per job.
    Rayon,
    /// `N` threads looping `recv()` on a crossbeam channel of boxed closures.
    Crossbeam,
    /// No pool: the jobs run one after another on the calling thread.
    SingleThread,
    /// No pool and no queue: the jobs are dealt out beforehand to `workers`
    /// plain threads that each run their share in a loop (the machine's
    /// attainable parallel speed-up, for B2).
    BareThreads,
    /// `crew::AsyncPool`, one `submit(..).await` per job, `wait_idle().await`.
    AsyncCrew,
    /// tokio `Semaphore` (`workers` permits) + `JoinSet`: one
    /// `acquire_owned` and one `spawn` per job.
    TokioSemaphore,
    /// `workers` tokio tasks sharing one `tokio::sync::mpsc` receiver of
    /// boxed futures through an `Arc<tokio::sync::Mutex<_>>`.
    TokioMpsc,
    /// `futures_util::StreamExt::buffer_unordered(workers)` over the stream
    /// of jobs, driven to completion by one task.
    BufferUnordered,
    /// No pool and no queue: `workers` bare tokio tasks each looping on the
    /// jobs until all have run (the ceiling for B3-async).
    BareTasks,
    /// `crew::Pool::run(job).await` from many tokio tasks.
    CrewRun,
    /// `tokio::task::spawn_blocking(job).await` from many tokio tasks.
    SpawnBlocking,
    /// B4: a crew-pipeline `Pipeline` (file source, the Server Pixels
    /// stages on a crew pool, file sink).
    Pipeline,
    /// B4: the Go reference `anchors/go-pixels`, run as a child process.
    GoPixels,
}

impl Impl {
    /// The pools measured for the throughput workloads, crew first.
    pub const POOLS: [Impl; 5] = [
        Impl::Crew,
        Impl::CrewBatch,
        Impl::Threadpool,
        Impl::Rayon,
        Impl::Crossbeam,
    ];

    /// The async implementations measured for B1-async and B3-async, crew
    /// first.
    pub const ASYNC_POOLS: [Impl; 4] = [
        Impl::AsyncCrew,
        Impl::TokioSemaphore,
        Impl::TokioMpsc,
        Impl::BufferUnordered,
    ];

    /// The ways of offloading blocking work from async code, crew first.
    pub const OFFLOAD: [Impl; 2] = [Impl::CrewRun, Impl::SpawnBlocking];

    /// Every implementation, in the order the report lists them.
    pub const ALL: [Impl; 16] = [
        Impl::Crew,
        Impl::CrewBatch,
        Impl::Threadpool,
        Impl::Rayon,
        Impl::Crossbeam,
        Impl::SingleThread,
        Impl::BareThreads,
        Impl::AsyncCrew,
        Impl::TokioSemaphore,
        Impl::TokioMpsc,
        Impl::BufferUnordered,
        Impl::BareTasks,
        Impl::CrewRun,
        Impl::SpawnBlocking,
        Impl::Pipeline,
        Impl::GoPixels,
    ];

    /// Short, stable name (used on the command line of the B5 child).
    pub fn name(self) -> &'static str {
        match self {
            Impl::Crew => "crew",
            Impl::CrewBatch => "crew-batch",
            Impl::Threadpool => "threadpool",
            Impl::Rayon => "rayon",
            Impl::Crossbeam => "crossbeam",
            Impl::SingleThread => "single-thread",
            Impl::BareThreads => "bare-threads",
            Impl::AsyncCrew => "crew-async",
            Impl::TokioSemaphore => "tokio-semaphore",
            Impl::TokioMpsc => "tokio-mpsc",
            Impl::BufferUnordered => "buffer-unordered",
            Impl::BareTasks => "bare-tasks",
            Impl::CrewRun => "crew-run",
            Impl::SpawnBlocking => "spawn-blocking",
            Impl::Pipeline => "crew-pipeline",
            Impl::GoPixels => "go-pixels",
        }
    }

    /// The implementation named `name` (see [`Impl::name`]).
    pub fn from_name(name: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|i| i.name() == name)
    }

    /// A one-line description of how the implementation is driven.
    pub fn describe(self) -> &'static str {
        match self {
            Impl::Crew => "crew `Pool`, `submit` per job, `wait_idle()`",
            Impl::CrewBatch => "crew `Pool`, one `submit_batch`, `wait_idle()`",
            Impl::Threadpool => "`threadpool` 1.8, `execute` per job, `join()`",
            Impl::Rayon => "`rayon` `ThreadPool::spawn` per job, counting latch",
            Impl::Crossbeam => "crossbeam-channel workers, boxed closures, drop + join",
            Impl::SingleThread => "single-thread loop, no pool",
            Impl::BareThreads => "jobs dealt out beforehand to plain threads, no queue",
            Impl::AsyncCrew => "crew `AsyncPool`, `submit(..).await` per job, `wait_idle().await`",
            Impl::TokioSemaphore => {
                "tokio `Semaphore` (permits = workers) + `JoinSet`: `acquire_owned` + `spawn` per \
                 job (finished tasks reaped with `try_join_next` as it goes), then join all"
            }
            Impl::TokioMpsc => {
                "`workers` tokio tasks sharing one `mpsc::channel` (capacity 1024) of boxed \
                 futures through `Arc<tokio::sync::Mutex<Receiver>>`; drop the sender, join"
            }
            Impl::BufferUnordered => {
                "`futures_util` `stream::iter(jobs).buffer_unordered(workers)`, driven to the end \
                 by one task"
            }
            Impl::BareTasks => {
                "no pool, no queue: `workers` bare tokio tasks each looping the job until all \
                 have run (the ceiling)"
            }
            Impl::CrewRun => "crew `Pool::run(job).await`",
            Impl::SpawnBlocking => {
                "`tokio::task::spawn_blocking(job).await` (tokio's default blocking pool)"
            }
            Impl::Pipeline => {
                "crew-pipeline `Pipeline`: `FileSource` → the four `pixels::stages()` on a crew \
                 `Pool` → `FileSink` (dead letters to a second `FileSink`), unordered; timed \
                 `Pipeline::run`"
            }
            Impl::GoPixels => {
                "`anchors/go-pixels` (Go, `encoding/json`, 100-line jobs on a channel, N worker \
                 goroutines, one writer) as a child process; its own printed wall time"
            }
        }
    }

    /// Whether the implementation runs on a `workers` count the harness
    /// sets (not so for the single-thread loop, nor for tokio's own
    /// blocking pool).
    pub fn sized_by_workers(self) -> bool {
        !matches!(self, Impl::SingleThread | Impl::SpawnBlocking)
    }

    /// Whether this is one of crew's own rows.
    pub fn is_crew(self) -> bool {
        matches!(
            self,
            Impl::Crew | Impl::CrewBatch | Impl::AsyncCrew | Impl::CrewRun | Impl::Pipeline
        )
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Time from the first submit until every job had run.
    pub elapsed: Duration,
    /// Anything odd the implementation reported about itself (e.g. crew's
    /// own stats disagreeing with the job count).
    pub note: Option<String>,
}

/// Runs `jobs` jobs built by `make` (called with the job's index) on
/// `workers` threads of `imp`, and returns the time from the first submit
/// until every job has run.
///
/// The caller checks that the jobs really ran (they count themselves).
pub fn run<J, M>(imp: Impl, workers: usize, jobs: u64, make: M) -> Result<Run, String>
where
    M: FnMut(u64) -> J,
    J: FnOnce() + Send + 'static,
{
    let elapsed = match imp {
        Impl::Crew => return run_crew(workers, jobs, make, false),
        Impl::CrewBatch => return run_crew(workers, jobs, make, true),
        Impl::Threadpool => run_threadpool(workers, jobs, make)?,
        Impl::Rayon => run_rayon(workers, jobs, make)?,
        Impl::Crossbeam => run_crossbeam(workers, jobs, make)?,
        Impl::SingleThread => run_single(jobs, make),
        Impl::BareThreads => run_bare(workers, jobs, make)?,
        other => {
            return Err(format!(
                "{} is not a thread-pool implementation",
                other.name()
            ))
        }
    };
    Ok(Run {
        elapsed,
        note: None,
    })
}

fn run_crew<J, M>(workers: usize, jobs: u64, mut make: M, batch: bool) -> Result<Run, String>
where
    M: FnMut(u64) -> J,
    J: FnOnce() + Send + 'static,
{
    let pool = crew::Pool::builder()
        .workers(workers)
        .queue_capacity(QUEUE_CAPACITY)
        .build();
    let start = Instant::now();
    let accepted = if batch {
        match pool.submit_batch((0..jobs).map(&mut make)) {
            Ok(n) => n as u64,
            Err(e) => jobs - e.into_inner().len() as u64,
        }
    } else {
        let mut accepted = 0u64;
        for i in 0..jobs {
            if pool.submit(make(i)).is_ok() {
                accepted += 1;
            }
        }
        accepted
    };
    pool.wait_idle();
    let elapsed = start.elapsed();
    let stats = pool.stats();
    pool.shutdown();
    if accepted != jobs {
        return Err(format!("crew accepted {accepted} of {jobs} jobs"));
    }
    let note = (stats.submitted != jobs || stats.completed != jobs || stats.queued != 0 || stats.busy != 0)
        .then(|| {
            format!(
                "after wait_idle() crew's stats said submitted={}, completed={}, queued={}, busy={} \
                 (expected {jobs}, {jobs}, 0, 0)",
                stats.submitted, stats.completed, stats.queued, stats.busy
            )
        });
    Ok(Run { elapsed, note })
}

fn run_threadpool<J, M>(workers: usize, jobs: u64, mut make: M) -> Result<Duration, String>
where
    M: FnMut(u64) -> J,
    J: FnOnce() + Send + 'static,
{
    let pool = threadpool::Builder::new().num_threads(workers).build();
    let start = Instant::now();
    for i in 0..jobs {
        pool.execute(make(i));
    }
    pool.join();
    let elapsed = start.elapsed();
    let panics = pool.panic_count();
    drop(pool);
    if panics > 0 {
        return Err(format!("{panics} jobs panicked"));
    }
    Ok(elapsed)
}

/// Counts down once per job; `wait` returns when it reaches zero.
struct Latch {
    remaining: AtomicU64,
    done: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    fn new(count: u64) -> Self {
        Latch {
            remaining: AtomicU64::new(count),
            done: Mutex::new(count == 0),
            cv: Condvar::new(),
        }
    }

    fn count_down(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            *done = true;
            self.cv.notify_all();
        }
    }

    fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn run_rayon<J, M>(workers: usize, jobs: u64, mut make: M) -> Result<Duration, String>
where
    M: FnMut(u64) -> J,
    J: FnOnce() + Send + 'static,
{
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .map_err(|e| format!("rayon pool: {e}"))?;
    // Leaked (a few dozen bytes per run) so that jobs can reach it through a
    // `&'static` without an `Arc` clone per job, which would cost rayon an
    // extra pair of contended atomic operations the other pools don't pay.
    let latch: &'static Latch = Box::leak(Box::new(Latch::new(jobs)));
    let start = Instant::now();
    for i in 0..jobs {
        let job = make(i);
        pool.spawn(move || {
            job();
            latch.count_down();
        });
    }
    latch.wait();
    let elapsed = start.elapsed();
    drop(pool);
    Ok(elapsed)
}

fn run_crossbeam<J, M>(workers: usize, jobs: u64, mut make: M) -> Result<Duration, String>
where
    M: FnMut(u64) -> J,
    J: FnOnce() + Send + 'static,
{
    let (tx, rx) = crossbeam_channel::bounded::<BoxedJob>(QUEUE_CAPACITY);
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let rx = rx.clone();
        let handle = thread::Builder::new()
            .name(format!("cb-worker-{w}"))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .map_err(|e| format!("spawn worker {w}: {e}"))?;
        handles.push(handle);
    }
    drop(rx);
    let start = Instant::now();
    for i in 0..jobs {
        if tx.send(Box::new(make(i))).is_err() {
            return Err("crossbeam channel closed early".into());
        }
    }
    drop(tx);
    join_timed(handles, start, "crossbeam workers")
}

fn run_single<J, M>(jobs: u64, mut make: M) -> Duration
where
    M: FnMut(u64) -> J,
    J: FnOnce() + Send + 'static,
{
    let start = Instant::now();
    for i in 0..jobs {
        make(i)();
    }
    start.elapsed()
}

fn run_bare<J, M>(workers: usize, jobs: u64, mut make: M) -> Result<Duration, String>
where
    M: FnMut(u64) -> J,
    J: FnOnce() + Send + 'static,
{
    let workers = workers.max(1);
    let per = (jobs as usize).div_ceil(workers);
    let mut shares: Vec<Vec<J>> = (0..workers).map(|_| Vec::with_capacity(per)).collect();
    for i in 0..jobs {
        shares[(i % workers as u64) as usize].push(make(i));
    }
    let go = Arc::new(Barrier::new(workers + 1));
    let mut handles = Vec::with_capacity(workers);
    for (w, share) in shares.into_iter().enumerate() {
        let go = Arc::clone(&go);
        let handle = thread::Builder::new()
            .name(format!("bare-{w}"))
            .spawn(move || {
                go.wait();
                for job in share {
                    job();
                }
            })
            .map_err(|e| format!("spawn thread {w}: {e}"))?;
        handles.push(handle);
    }
    go.wait();
    let start = Instant::now();
    join_timed(handles, start, "threads")
}

/// Joins every thread and returns the time since `start`, or how many of
/// `what` panicked.
fn join_timed(
    handles: Vec<thread::JoinHandle<()>>,
    start: Instant,
    what: &str,
) -> Result<Duration, String> {
    let panicked = handles
        .into_iter()
        .map(thread::JoinHandle::join)
        .filter(Result::is_err)
        .count();
    let elapsed = start.elapsed();
    if panicked > 0 {
        return Err(format!("{panicked} {what} panicked"));
    }
    Ok(elapsed)
}
