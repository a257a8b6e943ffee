//! `Pool`: a bounded pool of OS threads for blocking and CPU-bound jobs.

mod builder;
mod job_builder;
mod offload;
mod shared;
mod shutdown;
mod sleep;
mod worker;

use std::hash::Hash;
use std::time::{Duration, Instant};

pub use builder::{Builder, DEFAULT_QUEUE_CAPACITY};
pub use job_builder::JobBuilder;
pub use shutdown::ShutdownReport;

use crate::context::JobContext;
use crate::error::SubmitError;
use crate::handle::JobHandle;
use crate::intake::{Wait, PAUSED};
use crate::job::{job_box, JobOutput, Plain};
use crate::stats::Stats;
use crate::sync::Arc;
use shared::Shared;

/// A fixed set of worker threads fed from a bounded queue.
///
/// `Pool` is cheap to clone; clones share the same workers and queue, and
/// every method takes `&self`, so it can be shared across threads as is.
/// Dropping the last clone drains the queue and joins the workers, like
/// [`shutdown`](Self::shutdown).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let pool = crew::Pool::new(4);
/// let done = Arc::new(AtomicUsize::new(0));
/// for _ in 0..100 {
///     let done = done.clone();
///     // Blocks while the queue is full: backpressure, not unbounded memory.
///     pool.submit(move || {
///         done.fetch_add(1, Ordering::Relaxed);
///     })
///     .unwrap();
/// }
/// let report = pool.shutdown(); // runs everything queued, joins the threads
/// assert_eq!(done.load(Ordering::Relaxed), 100);
/// assert_eq!(report.abandoned, 0);
/// ```
#[derive(Clone)]
pub struct Pool {
    owner: Arc<Owner>,
}

/// The user-facing reference count: workers hold `Shared`, not this, so the
/// pool drains when the last user handle goes away even though its own
/// threads still point at the shared state.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        shutdown::drain(&self.shared, None);
    }
}

impl Pool {
    /// A pool of `workers` threads with a bounded queue of
    /// [`DEFAULT_QUEUE_CAPACITY`] jobs.
    ///
    /// # Panics
    /// If `workers` is zero.
    pub fn new(workers: usize) -> Pool {
        Builder::default().workers(workers).build()
    }

    /// Configures a pool; see [`Builder`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn from_shared(shared: Arc<Shared>) -> Pool {
        Pool {
            owner: Arc::new(Owner { shared }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
    }

    /// Queues a fire-and-forget job, waiting while the queue is full.
    ///
    /// The job may return `()` or a `Result`; an `Err` is counted in
    /// [`Stats::failed`]. After shutdown the job comes back in
    /// [`SubmitError::Closed`].
    pub fn submit<F, R>(&self, job: F) -> Result<(), SubmitError<F>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: JobOutput,
    {
        self.submit_plain(job, Wait::Forever)
    }

    /// Queues a job if there is room now; otherwise gives it back in
    /// [`SubmitError::Full`] at once.
    pub fn try_submit<F, R>(&self, job: F) -> Result<(), SubmitError<F>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: JobOutput,
    {
        self.submit_plain(job, Wait::No)
    }

    /// Queues a job, waiting at most `timeout` for room; gives it back in
    /// [`SubmitError::Timeout`] if the queue stayed full.
    pub fn submit_timeout<F, R>(&self, job: F, timeout: Duration) -> Result<(), SubmitError<F>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: JobOutput,
    {
        self.submit_plain(job, Wait::Until(Instant::now() + timeout))
    }

    #[inline]
    fn submit_plain<F, R>(&self, job: F, wait: Wait) -> Result<(), SubmitError<F>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: JobOutput,
    {
        self.shared().submit(job, wait, |f| job_box(Plain(Some(f))))
    }

    /// Queues many fire-and-forget jobs, reserving queue slots in bulk and
    /// waking workers once per batch instead of once per job. Waits for room
    /// like [`submit`](Self::submit). Returns how many were queued; if the
    /// pool closes part-way, the jobs not queued come back in the error.
    ///
    /// ```
    /// let pool = crew::Pool::new(2);
    /// let queued = pool.submit_batch((0..1000).map(|i| move || drop(i))).unwrap();
    /// assert_eq!(queued, 1000);
    /// ```
    pub fn submit_batch<I, F, R>(&self, jobs: I) -> Result<usize, SubmitError<Vec<F>>>
    where
        I: IntoIterator<Item = F>,
        F: FnOnce() -> R + Send + 'static,
        R: JobOutput,
    {
        self.shared()
            .submit_batch(jobs, |f| job_box(Plain(Some(f))))
    }

    /// Queues a job and returns a handle to its result, waiting while the
    /// queue is full.
    ///
    /// ```
    /// let pool = crew::Pool::new(2);
    /// let handle = pool.spawn(|| "hello".len()).unwrap();
    /// assert_eq!(handle.join(), Ok(5));
    /// ```
    pub fn spawn<F, T>(&self, job: F) -> Result<JobHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.job()
            .spawn_adapted(job, |f| move |_: &JobContext<'_>| f())
    }

    /// Like [`spawn`](Self::spawn), for a job that takes a [`JobContext`] to
    /// check for cancellation.
    ///
    /// ```
    /// let pool = crew::Pool::new(1);
    /// let handle = pool
    ///     .spawn_with(|cx| {
    ///         let mut n = 0u64;
    ///         while !cx.is_cancelled() {
    ///             n += 1;
    ///             std::hint::spin_loop();
    ///         }
    ///         n
    ///     })
    ///     .unwrap();
    /// handle.cancel();
    /// let _ = handle.join(); // Err(Cancelled) if it never started, else Ok(n)
    /// ```
    pub fn spawn_with<F, T>(&self, job: F) -> Result<JobHandle<T>, SubmitError<F>>
    where
        F: FnOnce(&JobContext<'_>) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.job().spawn(job)
    }

    /// Queues a fire-and-forget job in `key`'s lane: jobs with the same key
    /// run one at a time, in submission order; different keys run in
    /// parallel.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// let pool = crew::Pool::new(4);
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// for i in 0..10 {
    ///     let seen = seen.clone();
    ///     pool.submit_keyed(&"account-7", move || seen.lock().unwrap().push(i)).unwrap();
    /// }
    /// pool.wait_idle();
    /// assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>());
    /// ```
    pub fn submit_keyed<K, F, R>(&self, key: &K, job: F) -> Result<(), SubmitError<F>>
    where
        K: Hash + ?Sized,
        F: FnOnce() -> R + Send + 'static,
        R: JobOutput,
    {
        self.job()
            .key(key)
            .submit_adapted(job, Wait::Forever, |f| move |_: &JobContext<'_>| f())
    }

    /// Like [`submit_keyed`](Self::submit_keyed), returning a handle to the
    /// job's result.
    pub fn spawn_keyed<K, F, T>(&self, key: &K, job: F) -> Result<JobHandle<T>, SubmitError<F>>
    where
        K: Hash + ?Sized,
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.job()
            .key(key)
            .spawn_adapted(job, |f| move |_: &JobContext<'_>| f())
    }

    /// Starts a job with options: a key, a deadline, a cancellation token.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = crew::Pool::new(2);
    /// let handle = pool
    ///     .job()
    ///     .key(&42u64)
    ///     .deadline_in(Duration::from_secs(5))
    ///     .spawn(|cx| cx.deadline().is_some())
    ///     .unwrap();
    /// assert_eq!(handle.join(), Ok(true));
    /// ```
    pub fn job(&self) -> JobBuilder<'_> {
        JobBuilder::new(self)
    }

    /// Stops workers from starting queued jobs; running jobs finish.
    /// Once it returns no job starts until [`resume`](Self::resume), so the
    /// queue holds still: a job a worker was taking at that moment goes
    /// back to the head of the queue. Submissions still queue (and block
    /// once the queue is full). Has no effect once a shutdown has begun: a
    /// shutdown never waits on a pause.
    ///
    /// ```
    /// let pool = crew::Pool::builder().workers(1).queue_capacity(1).build();
    /// pool.pause();
    /// pool.submit(|| ()).unwrap();
    /// // The queued job holds the only slot until the pool resumes.
    /// assert!(pool.try_submit(|| ()).is_err());
    /// pool.resume();
    /// pool.wait_idle();
    /// assert_eq!(pool.stats().completed, 1);
    /// ```
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
    /// threads at once; shrinking lets the extra workers finish the job they
    /// are running and then exit.
    ///
    /// # Panics
    /// If `workers` is zero (use [`pause`](Self::pause) to stop work).
    pub fn resize(&self, workers: usize) {
        assert!(workers > 0, "crew: a pool needs at least one worker");
        let shared = self.shared();
        shared.headcount.retarget(workers);
        while shared.grow_if_below_target() {}
        shared.sleepers.wake_all();
    }

    /// Blocks until no job is queued or running. Jobs submitted meanwhile
    /// are waited for too; a paused pool with queued jobs waits until
    /// resumed.
    pub fn wait_idle(&self) {
        let shared = self.shared();
        shared.watch(None, || shared.is_idle());
    }

    /// Like [`wait_idle`](Self::wait_idle), for at most `timeout`; true if
    /// the pool went idle.
    pub fn wait_idle_timeout(&self, timeout: Duration) -> bool {
        let shared = self.shared();
        shared.watch(Some(Instant::now() + timeout), || shared.is_idle())
    }

    /// Closes the pool, runs every queued job (resuming a paused pool), and
    /// joins the workers.
    pub fn shutdown(&self) -> ShutdownReport {
        shutdown::drain(self.shared(), None)
    }

    /// Closes the pool and drains for at most `timeout`; then drops the jobs
    /// still queued (their handles report
    /// [`JobError::Abandoned`](crate::JobError::Abandoned)), cancels the
    /// contexts of the running ones, and returns without waiting for them.
    pub fn shutdown_timeout(&self, timeout: Duration) -> ShutdownReport {
        shutdown::drain(self.shared(), Some(Instant::now() + timeout))
    }

    /// Closes the pool, drops every queued job and cancels the contexts of
    /// the running ones; returns without waiting for them.
    pub fn shutdown_now(&self) -> ShutdownReport {
        shutdown::stop_now(self.shared())
    }

    /// True once a shutdown has begun; submissions are refused.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// A snapshot of the pool's counters, gauges and histograms.
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = self.shared();
        f.debug_struct("Pool")
            .field("workers", &shared.headcount.live())
            .field("queued", &shared.intake.queue.reserved())
            .field("capacity", &shared.intake.queue.capacity())
            .field("closed", &shared.is_closed())
            .finish()
    }
}
