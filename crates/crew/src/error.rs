//! Errors returned by the pools.

use std::fmt;

/// Why a job was not accepted. Every variant gives the job back, so nothing a
/// caller hands to a pool is ever lost silently.
///
/// ```
/// use crew::{Pool, SubmitError};
///
/// let pool = Pool::builder().workers(1).queue_capacity(1).build();
/// pool.pause();
/// pool.submit(|| ()).unwrap(); // fills the queue
/// match pool.try_submit(|| ()) {
///     Err(SubmitError::Full(job)) => job(), // run it here instead
///     other => panic!("expected a full queue, got {other:?}"),
/// }
/// pool.resume();
/// ```
#[derive(PartialEq, Eq, Clone, Copy, thiserror::Error)]
pub enum SubmitError<J> {
    /// The pool is shut down (or shutting down) and takes no new jobs.
    #[error("the pool is shut down")]
    Closed(J),
    /// The queue is full (`try_submit`).
    #[error("the pool's queue is full")]
    Full(J),
    /// The queue stayed full for the whole timeout (`submit_timeout`).
    #[error("the pool's queue stayed full until the timeout")]
    Timeout(J),
}

impl<J> SubmitError<J> {
    /// Gives the rejected job back.
    pub fn into_inner(self) -> J {
        match self {
            SubmitError::Closed(job) | SubmitError::Full(job) | SubmitError::Timeout(job) => job,
        }
    }

    /// True when the pool was closed (the job will never be accepted).
    pub fn is_closed(&self) -> bool {
        matches!(self, SubmitError::Closed(_))
    }

    /// Replaces the job inside the error, keeping the reason.
    pub(crate) fn map<U>(self, f: impl FnOnce(J) -> U) -> SubmitError<U> {
        match self {
            SubmitError::Closed(job) => SubmitError::Closed(f(job)),
            SubmitError::Full(job) => SubmitError::Full(f(job)),
            SubmitError::Timeout(job) => SubmitError::Timeout(f(job)),
        }
    }
}

// Jobs are closures, which have no useful `Debug`; print only the reason.
impl<J> fmt::Debug for SubmitError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SubmitError::Closed(_) => "Closed",
            SubmitError::Full(_) => "Full",
            SubmitError::Timeout(_) => "Timeout",
        };
        write!(f, "SubmitError::{name}(..)")
    }
}

/// Why an accepted job produced no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The job panicked; the message is the panic's payload when it was a
    /// string.
    #[error("job panicked: {0}")]
    Panicked(String),
    /// The job's deadline passed: a thread-pool job waited in the queue past
    /// it and was not run; an async job was also dropped if it was still
    /// running at the deadline.
    #[error("job missed its deadline")]
    Expired,
    /// The job was cancelled: a thread-pool job before it started (it never
    /// ran); an async job before it started or at an await point while it
    /// ran (its future was dropped there).
    #[error("job was cancelled")]
    Cancelled,
    /// The pool shut down (`shutdown_now`, or `shutdown_timeout` past its
    /// deadline) before the job started; it never ran.
    #[error("job was abandoned by a shutdown before it started")]
    Abandoned,
    /// The pool was shut down before the job could be queued
    /// ([`Pool::run`](crate::Pool::run) has no job to give back).
    #[error("the pool is shut down")]
    Closed,
}
