//! Cancellation: tokens a caller can trip, and the context a job reads them
//! through.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::sync::{lock, Arc, AtomicBool, Mutex, Ordering};

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
///
/// Async jobs ([`AsyncPool`](crate::AsyncPool)) carrying a token are dropped
/// at their current await point when it is cancelled; async code can also
/// wait for it with [`cancelled`](Self::cancelled).
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<TokenInner>,
}

struct TokenInner {
    cancelled: AtomicBool,
    /// Tasks to wake when the token is cancelled, by registration key.
    /// Entries leave when their future ends, so a long-lived token shared by
    /// many short jobs does not accumulate them.
    watchers: Mutex<Watchers>,
}

impl Default for TokenInner {
    fn default() -> Self {
        TokenInner {
            cancelled: AtomicBool::new(false),
            watchers: Mutex::new(Watchers::default()),
        }
    }
}

#[derive(Default)]
struct Watchers {
    next_key: u64,
    wakers: HashMap<u64, Waker>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Trips the token and wakes every future waiting on it. Idempotent.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut lock(&self.inner.watchers).wakers);
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// True once [`cancel`](Self::cancel) was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once the token is cancelled.
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    ///
    /// let token = crew::CancelToken::new();
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let mut cancelled = std::pin::pin!(token.cancelled());
    /// assert!(cancelled.as_mut().poll(&mut cx).is_pending());
    /// token.cancel();
    /// assert!(cancelled.as_mut().poll(&mut cx).is_ready());
    /// ```
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled {
            token: self,
            key: None,
        }
    }

    /// Registers (or refreshes) a waker under `key`; true if the token is
    /// already cancelled (then nothing is registered).
    pub(crate) fn watch(&self, key: &mut Option<u64>, waker: &Waker) -> bool {
        {
            let mut watchers = lock(&self.inner.watchers);
            let k = *key.get_or_insert_with(|| {
                watchers.next_key += 1;
                watchers.next_key
            });
            match watchers.wakers.get_mut(&k) {
                Some(known) if known.will_wake(waker) => {}
                Some(known) => known.clone_from(waker),
                None => {
                    watchers.wakers.insert(k, waker.clone());
                }
            }
        }
        // After registering: a `cancel` that ran before this registration
        // stored the flag before taking the lock.
        self.is_cancelled()
    }

    /// Drops the registration made by [`watch`](Self::watch).
    pub(crate) fn unwatch(&self, key: Option<u64>) {
        if let Some(key) = key {
            lock(&self.inner.watchers).wakers.remove(&key);
        }
    }
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The future returned by [`CancelToken::cancelled`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct Cancelled<'a> {
    token: &'a CancelToken,
    key: Option<u64>,
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.token.is_cancelled() {
            return Poll::Ready(());
        }
        let token = self.token;
        if token.watch(&mut self.key, cx.waker()) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        self.token.unwatch(self.key.take());
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
