//! `AsyncJobBuilder`: one async job with options (key, deadline, token).

use std::future::Future;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::job::managed;
use super::AsyncPool;
use crate::context::CancelToken;
use crate::error::SubmitError;
use crate::handle::{Completer, Completion, JobHandle};
use crate::intake::Wait;
use crate::job::{Detached, JobOptions, JobOutput};

/// Options for one async job, from [`AsyncPool::job`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
///
/// let pool = crew::AsyncPool::new(8);
/// let handle = pool
///     .job()
///     .key(&"customer-17") // same key: one at a time, in order
///     .deadline_in(Duration::from_secs(2)) // dropped if not done by then
///     .spawn(async { 40 + 2 })
///     .await
///     .unwrap();
/// assert_eq!(handle.await, Ok(42));
/// # }
/// ```
#[must_use = "an AsyncJobBuilder does nothing until submit or spawn is called"]
pub struct AsyncJobBuilder<'p> {
    pool: &'p AsyncPool,
    options: JobOptions,
}

impl<'p> AsyncJobBuilder<'p> {
    pub(crate) fn new(pool: &'p AsyncPool) -> Self {
        AsyncJobBuilder {
            pool,
            options: JobOptions::default(),
        }
    }

    /// Runs the job in `key`'s lane: jobs with the same key run one at a
    /// time, in submission order; different keys run in parallel.
    pub fn key<K: Hash + ?Sized>(mut self, key: &K) -> Self {
        self.options.lane = Some(self.pool.shared().intake.lanes.lane_of(key));
        self
    }

    /// The job must end by `deadline`: if it has not started by then it
    /// never runs, and if it is still running then its future is dropped.
    /// Either way it ends as [`JobError::Expired`](crate::JobError::Expired).
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.options.deadline = Some(deadline);
        self
    }

    /// [`deadline`](Self::deadline), `within` from now.
    pub fn deadline_in(self, within: Duration) -> Self {
        self.deadline(Instant::now() + within)
    }

    /// Cancelling `token` stops the job: before it starts it never runs;
    /// while it runs its future is dropped at its current await point.
    ///
    /// A job that returns in the same poll as the cancel (one that awaits
    /// this token itself, say) keeps its value: cancellation only takes a
    /// job that is still pending.
    pub fn token(mut self, token: CancelToken) -> Self {
        self.options.token = Some(token);
        self
    }

    /// Queues the job, waiting for room while the queue is full.
    pub async fn submit<F>(self, job: F) -> Result<(), SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: JobOutput,
    {
        self.enqueue(job, Wait::Forever, Detached).await
    }

    /// Queues the job if there is room now.
    pub fn try_submit<F>(self, job: F) -> Result<(), SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: JobOutput,
    {
        let shared = self.pool.shared();
        if let Err(reason) = shared.try_reserve() {
            return Err(reason.map(|()| job));
        }
        shared.enqueue_reserved(managed(job, self.options, Detached));
        Ok(())
    }

    /// Queues the job, waiting at most `timeout` for room.
    pub async fn submit_timeout<F>(self, job: F, timeout: Duration) -> Result<(), SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: JobOutput,
    {
        let wait = Wait::Until(Instant::now() + timeout);
        self.enqueue(job, wait, Detached).await
    }

    /// Queues the job, waiting for room, and returns a handle to its result.
    pub async fn spawn<F>(self, job: F) -> Result<JobHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let completion = Completion::new();
        let deliver = Completer::new(completion.clone());
        self.enqueue(job, Wait::Forever, deliver).await?;
        Ok(JobHandle::new(completion))
    }

    async fn enqueue<F, D>(self, job: F, wait: Wait, deliver: D) -> Result<(), SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        D: crate::job::Deliver<F::Output>,
    {
        let shared = self.pool.shared();
        if let Err(reason) = shared.reserve(wait).await {
            return Err(reason.map(|()| job));
        }
        shared.enqueue_reserved(managed(job, self.options, deliver));
        Ok(())
    }
}
