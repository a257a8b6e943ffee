//! Cancellation: tokens a caller can trip, and the context a job reads them
//! through.

use std::time::Instant;

use crate::sync::{Arc, AtomicBool, Ordering};

/// A cancellation flag shared by any number of jobs.
///
/// Cancelling a token stops every queued job that carries it from starting
/// (they end as [`JobError::Cancelled`](crate::JobError::Cancelled)) and makes
/// [`JobContext::is_cancelled`] true inside the ones already running, which
/// decide for themselves when to stop.
///
/// ```
/// use crew::{CancelToken, Pool};
///
/// let pool = Pool::new(2);
/// let token = CancelToken::new();
/// let handle = pool
///     .job()
///     .token(token.clone())
///     .spawn(|cx| {
///         let mut steps = 0u64;
///         while !cx.is_cancelled() && steps < 1_000_000_000 {
///             steps += 1;
///         }
///         steps
///     })
///     .unwrap();
/// token.cancel();
/// let _ = handle.join(); // returns soon: the job saw the token, or never started
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    cancelled: Arc<AtomicBool>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        CancelToken {
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Trips the token. Idempotent.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// True once [`cancel`](Self::cancel) was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// What a running job can ask about itself: whether it should stop, and its
/// deadline. Passed to the closures given to
/// [`Pool::spawn_with`](crate::Pool::spawn_with) and [`JobBuilder`](crate::JobBuilder).
pub struct JobContext<'a> {
    pub(crate) own: Option<&'a crate::handle::JobState>,
    pub(crate) token: Option<&'a CancelToken>,
    pub(crate) pool_stopping: &'a AtomicBool,
    pub(crate) deadline: Option<Instant>,
}

impl JobContext<'_> {
    /// True when the job should stop: its handle was cancelled, its token was
    /// tripped, or the pool is being shut down with `shutdown_now` or past a
    /// `shutdown_timeout` deadline. Cheap enough to call in a tight loop.
    pub fn is_cancelled(&self) -> bool {
        self.own.is_some_and(|state| state.cancel_requested())
            || self.token.is_some_and(CancelToken::is_cancelled)
            || self.pool_stopping.load(Ordering::Relaxed)
    }

    /// The deadline the job was submitted with, if any. A job that started
    /// before its deadline keeps running past it; it may check this to give up
    /// early.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}
