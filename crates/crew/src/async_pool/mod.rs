//! `AsyncPool`: a bounded pool of tokio tasks for async jobs.

mod builder;
mod job;
mod job_builder;
mod shared;
mod shutdown;
mod worker;

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use builder::AsyncBuilder;
pub use job_builder::AsyncJobBuilder;

use crate::error::SubmitError;
use crate::handle::JobHandle;
use crate::intake::{Wait, PAUSED};
use crate::job::JobOutput;
use crate::pool::ShutdownReport;
use crate::stats::Stats;
use shared::AsyncShared;

/// A fixed number of worker tasks on a tokio runtime, fed from a bounded
/// queue: the bounded replacement for `tokio::spawn` in a loop.
///
/// Each worker runs one job (a future) at a time, so at most `workers` jobs
/// run at once and at most the queue's capacity wait; a producer that
/// outruns them waits in [`submit`](Self::submit) (without blocking its
/// thread) or is told the queue is full by [`try_submit`](Self::try_submit).
/// Everything [`Pool`](crate::Pool) offers is here, with the same errors,
/// [`Stats`] and [`ShutdownReport`]: keyed lanes, deadlines, cancellation,
/// pause, resize, three shutdown modes, panics caught per job.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// let pool = crew::AsyncPool::new(40); // 40 worker tasks, a bounded queue
/// let sent = Arc::new(AtomicU64::new(0));
/// for event in 0..1_000u64 {
///     let sent = sent.clone();
///     // Waits while the queue is full: the backlog cannot eat the heap.
///     pool.submit(async move {
///         tokio::task::yield_now().await; // an HTTP call, say
///         sent.fetch_add(event % 2, Ordering::Relaxed);
///     })
///     .await
///     .unwrap();
/// }
/// pool.shutdown().await; // runs what is queued, then stops
/// assert_eq!(sent.load(Ordering::Relaxed), 500);
/// # }
/// ```
///
/// `AsyncPool` is cheap to clone; clones share the workers and the queue.
/// Dropping the last clone closes the pool: the workers finish what is
/// queued in the background, then exit (await [`shutdown`](Self::shutdown)
/// to wait for that).
#[derive(Clone)]
pub struct AsyncPool {
    owner: Arc<Owner>,
}

/// The user-facing reference count (workers hold `AsyncShared`, not this).
struct Owner {
    shared: Arc<AsyncShared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Nothing can be awaited here: close, and let the workers drain.
        shutdown::close(&self.shared, 0);
    }
}

impl AsyncPool {
    /// A pool of `workers` tasks on the current runtime, with a bounded
    /// queue of [`DEFAULT_QUEUE_CAPACITY`](crate::DEFAULT_QUEUE_CAPACITY)
    /// jobs.
    ///
    /// # Panics
    /// If `workers` is zero or if called outside a tokio runtime.
    pub fn new(workers: usize) -> AsyncPool {
        AsyncBuilder::default().workers(workers).build()
    }

    /// Configures a pool; see [`AsyncBuilder`].
    pub fn builder() -> AsyncBuilder {
        AsyncBuilder::default()
    }

    fn from_shared(shared: Arc<AsyncShared>) -> AsyncPool {
        AsyncPool {
            owner: Arc::new(Owner { shared }),
        }
    }

    fn shared(&self) -> &Arc<AsyncShared> {
        &self.owner.shared
    }

    /// Queues a fire-and-forget job, waiting (asynchronously) while the
    /// queue is full.
    ///
    /// The future may output `()` or a `Result`; an `Err` is counted in
    /// [`Stats::failed`]. After shutdown the future comes back in
    /// [`SubmitError::Closed`].
    pub async fn submit<F>(&self, job: F) -> Result<(), SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: JobOutput,
    {
        self.submit_plain(job, Wait::Forever).await
    }

    /// Queues a job if there is room now; otherwise gives it back in
    /// [`SubmitError::Full`] at once. This is the call for a request
    /// handler that would rather answer "busy" than wait.
    pub fn try_submit<F>(&self, job: F) -> Result<(), SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: JobOutput,
    {
        let shared = self.shared();
        if let Err(reason) = shared.try_reserve() {
            return Err(reason.map(|()| job));
        }
        shared.enqueue_reserved(job::plain(job));
        Ok(())
    }

    /// Queues a job, waiting at most `timeout` for room; gives it back in
    /// [`SubmitError::Timeout`] if the queue stayed full.
    pub async fn submit_timeout<F>(&self, job: F, timeout: Duration) -> Result<(), SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: JobOutput,
    {
        self.submit_plain(job, Wait::Until(Instant::now() + timeout))
            .await
    }

    async fn submit_plain<F>(&self, job: F, wait: Wait) -> Result<(), SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: JobOutput,
    {
        let shared = self.shared();
        if let Err(reason) = shared.reserve(wait).await {
            return Err(reason.map(|()| job));
        }
        shared.enqueue_reserved(job::plain(job));
        Ok(())
    }

    /// Queues a job, waiting for room, and returns a handle to its output.
    /// The handle is a future; [`JobHandle::cancel`] drops the job's future
    /// at its current await point.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = crew::AsyncPool::new(4);
    /// let handle = pool.spawn(async { "hello".len() }).await.unwrap();
    /// assert_eq!(handle.await, Ok(5));
    /// # }
    /// ```
    pub async fn spawn<F>(&self, job: F) -> Result<JobHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.job().spawn(job).await
    }

    /// Queues a fire-and-forget job in `key`'s lane: jobs with the same key
    /// run one at a time, in submission order; different keys run in
    /// parallel.
    pub async fn submit_keyed<K, F>(&self, key: &K, job: F) -> Result<(), SubmitError<F>>
    where
        K: Hash + ?Sized,
        F: Future + Send + 'static,
        F::Output: JobOutput,
    {
        self.job().key(key).submit(job).await
    }

    /// Like [`submit_keyed`](Self::submit_keyed), returning a handle to the
    /// job's output.
    pub async fn spawn_keyed<K, F>(
        &self,
        key: &K,
        job: F,
    ) -> Result<JobHandle<F::Output>, SubmitError<F>>
    where
        K: Hash + ?Sized,
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.job().key(key).spawn(job).await
    }

    /// Starts a job with options: a key, a deadline, a cancellation token.
    pub fn job(&self) -> AsyncJobBuilder<'_> {
        AsyncJobBuilder::new(self)
    }

    /// Stops workers from starting queued jobs; running jobs go on.
    /// Once it returns no job starts until [`resume`](Self::resume), so the
    /// queue holds still: a job a worker was taking at that moment goes
    /// back to the head of the queue. Submissions still queue (and wait
    /// once the queue is full). Has no effect once a shutdown has begun.
    pub fn pause(&self) {
        let shared = self.shared();
        shared.set_state(PAUSED);
        // Either this sees the shutdown's CLOSED, or the shutdown's own
        // un-pause comes after this pause: the drain is never left paused.
        if shared.is_closed() {
            shared.clear_state(PAUSED);
        }
    }

    /// Lets workers take queued jobs again.
    pub fn resume(&self) {
        self.shared().clear_state(PAUSED);
    }

    /// True between [`pause`](Self::pause) and [`resume`](Self::resume).
    pub fn is_paused(&self) -> bool {
        self.shared().state() & PAUSED != 0
    }

    /// Changes the number of workers while the pool runs. Growing starts
    /// tasks at once; shrinking lets the extra workers finish the job they
    /// are running and then exit.
    ///
    /// # Panics
    /// If `workers` is zero (use [`pause`](Self::pause) to stop work).
    pub fn resize(&self, workers: usize) {
        assert!(workers > 0, "crew: a pool needs at least one worker");
        let shared = self.shared();
        shared.headcount.retarget(workers);
        while shared.grow_if_below_target() {}
        shared.wake_all_workers();
    }

    /// Waits until no job is queued or running.
    pub async fn wait_idle(&self) {
        let shared = self.shared();
        shared.watch(|| shared.is_idle()).await;
    }

    /// Closes the pool, runs every queued job (resuming a paused pool), and
    /// waits for the workers to exit.
    pub async fn shutdown(&self) -> ShutdownReport {
        shutdown::drain(self.shared(), None).await
    }

    /// Closes the pool and drains for at most `timeout`; then drops the jobs
    /// still queued (their handles report
    /// [`JobError::Abandoned`](crate::JobError::Abandoned)) and the running
    /// ones at their current await point (their handles report
    /// [`JobError::Cancelled`](crate::JobError::Cancelled)).
    pub async fn shutdown_timeout(&self, timeout: Duration) -> ShutdownReport {
        shutdown::drain(self.shared(), Some(Instant::now() + timeout)).await
    }

    /// Closes the pool, drops every queued job, and drops the running ones
    /// at their current await point. Returns at once.
    pub fn shutdown_now(&self) -> ShutdownReport {
        shutdown::stop_now(self.shared())
    }

    /// True once a shutdown has begun (or the last handle was dropped);
    /// submissions are refused.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// A snapshot of the pool's counters, gauges and histograms.
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }
}

impl std::fmt::Debug for AsyncPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = self.shared();
        f.debug_struct("AsyncPool")
            .field("workers", &shared.headcount.live())
            .field("queued", &shared.intake.queue.reserved())
            .field("capacity", &shared.intake.queue.capacity())
            .field("closed", &shared.is_closed())
            .finish()
    }
}
