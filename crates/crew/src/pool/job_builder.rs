//! `JobBuilder`: one job with options (key, deadline, cancellation token).

use std::hash::Hash;
use std::time::{Duration, Instant};

use super::Pool;
use crate::context::{CancelToken, JobContext};
use crate::error::SubmitError;
use crate::handle::{Completer, Completion, JobHandle};
use crate::intake::Wait;
use crate::job::{job_box, Detached, JobOptions, JobOutput, Managed};

/// Builds one job with options; made by [`Pool::job`].
///
/// A job with a deadline that is still queued when the deadline passes is
/// not run: it ends as [`JobError::Expired`](crate::JobError::Expired). A job
/// whose token is cancelled before it starts ends as
/// [`JobError::Cancelled`](crate::JobError::Cancelled).
///
/// ```
/// use std::time::{Duration, Instant};
/// use crew::{JobError, Pool};
///
/// let pool = Pool::new(1);
/// pool.pause();
/// let late = pool
///     .job()
///     .deadline(Instant::now()) // already due when a worker gets to it
///     .spawn(|_| "too late")
///     .unwrap();
/// pool.resume();
/// assert_eq!(late.join(), Err(JobError::Expired));
/// ```
#[must_use = "a JobBuilder does nothing until submit or spawn is called"]
pub struct JobBuilder<'p> {
    pool: &'p Pool,
    options: JobOptions,
}

impl<'p> JobBuilder<'p> {
    pub(crate) fn new(pool: &'p Pool) -> Self {
        JobBuilder {
            pool,
            options: JobOptions::default(),
        }
    }

    /// Runs the job in `key`'s lane: after every earlier job with the same
    /// key, and never at the same time as one.
    pub fn key<K: Hash + ?Sized>(mut self, key: &K) -> Self {
        self.options.lane = Some(self.pool.shared().intake.lanes.lane_of(key));
        self
    }

    /// The job is dropped unrun if it is still queued at `deadline`.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.options.deadline = Some(deadline);
        self
    }

    /// Shorthand for `deadline(Instant::now() + within)`.
    pub fn deadline_in(self, within: Duration) -> Self {
        self.deadline(Instant::now() + within)
    }

    /// Ties the job to a token: cancelling it stops the job from starting,
    /// and makes [`JobContext::is_cancelled`] true while it runs.
    pub fn token(mut self, token: CancelToken) -> Self {
        self.options.token = Some(token);
        self
    }

    /// Queues the job, waiting while the queue is full.
    pub fn submit<F, R>(self, job: F) -> Result<(), SubmitError<F>>
    where
        F: FnOnce(&JobContext<'_>) -> R + Send + 'static,
        R: JobOutput,
    {
        self.submit_adapted(job, Wait::Forever, |f| f)
    }

    /// Queues the job if there is room now.
    pub fn try_submit<F, R>(self, job: F) -> Result<(), SubmitError<F>>
    where
        F: FnOnce(&JobContext<'_>) -> R + Send + 'static,
        R: JobOutput,
    {
        self.submit_adapted(job, Wait::No, |f| f)
    }

    /// Queues the job, waiting at most `timeout` for room.
    pub fn submit_timeout<F, R>(self, job: F, timeout: Duration) -> Result<(), SubmitError<F>>
    where
        F: FnOnce(&JobContext<'_>) -> R + Send + 'static,
        R: JobOutput,
    {
        self.submit_adapted(job, Wait::Until(Instant::now() + timeout), |f| f)
    }

    /// Queues the job and returns a handle to its result, waiting while the
    /// queue is full.
    pub fn spawn<F, T>(self, job: F) -> Result<JobHandle<T>, SubmitError<F>>
    where
        F: FnOnce(&JobContext<'_>) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_adapted(job, |f| f)
    }

    /// Submits `job` after turning it into a context-taking closure; the
    /// caller's own value comes back on refusal.
    pub(crate) fn submit_adapted<J, F, R>(
        self,
        job: J,
        wait: Wait,
        adapt: impl FnOnce(J) -> F,
    ) -> Result<(), SubmitError<J>>
    where
        F: FnOnce(&JobContext<'_>) -> R + Send + 'static,
        R: JobOutput,
    {
        let options = self.options;
        self.pool.shared().submit(job, wait, move |job| {
            job_box(Managed::new(adapt(job), options, Detached))
        })
    }

    pub(crate) fn spawn_adapted<J, F, T>(
        self,
        job: J,
        adapt: impl FnOnce(J) -> F,
    ) -> Result<JobHandle<T>, SubmitError<J>>
    where
        F: FnOnce(&JobContext<'_>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let options = self.options;
        let completion = Completion::new();
        let for_job = completion.clone();
        self.pool.shared().submit(job, Wait::Forever, move |job| {
            let deliver = Completer::new(for_job);
            job_box(Managed::new(adapt(job), options, deliver))
        })?;
        Ok(JobHandle::new(completion))
    }
}
