//! What an `AsyncPool` queues: a boxed future that runs the user's future
//! to its end and says how it ended, plus its lane.

use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Instant;

use crate::error::JobError;
use crate::intake::Laned;
use crate::job::{panic_message, Deliver, JobOptions, JobOutput, LaneId, Outcome};
use crate::stats::Counter;

/// A queued async job. One allocation: the future, wrappers included.
pub(crate) struct AsyncJob {
    pub(crate) run: Pin<Box<dyn Future<Output = Outcome> + Send>>,
    lane: Option<LaneId>,
}

impl Laned for AsyncJob {
    #[inline]
    fn lane(&self) -> Option<LaneId> {
        self.lane
    }
}

/// Polls a future, turning a panic inside `poll` into `Err(message)`.
struct CatchUnwind<F>(F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; it is never moved.
        let inner = unsafe { self.map_unchecked_mut(|this| &mut this.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(panic_message(payload))),
        }
    }
}

/// A fire-and-forget future with no options: the cheapest job.
pub(crate) fn plain<F>(fut: F) -> AsyncJob
where
    F: Future + Send + 'static,
    F::Output: JobOutput,
{
    AsyncJob {
        run: Box::pin(async move {
            match CatchUnwind(fut).await {
                Ok(output) if output.is_failure() => Outcome::Counted(Counter::Failed),
                Ok(_) => Outcome::Counted(Counter::Completed),
                Err(message) => Outcome::Panicked(message),
            }
        }),
        lane: None,
    }
}

/// How a managed job's run ended.
enum Ending<T> {
    Returned(Result<T, String>),
    Cancelled,
    Expired,
}

/// A job with options and somewhere to deliver its result: it is skipped if
/// cancelled or expired before it starts, dropped at an await point if
/// cancelled (handle or token) or past its deadline while it runs.
pub(crate) fn managed<F, D>(fut: F, options: JobOptions, deliver: D) -> AsyncJob
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    D: Deliver<F::Output>,
{
    let lane = options.lane;
    AsyncJob {
        run: Box::pin(run_managed(fut, options, deliver)),
        lane,
    }
}

async fn run_managed<F, D>(fut: F, options: JobOptions, deliver: D) -> Outcome
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    D: Deliver<F::Output>,
{
    if deliver.state().is_some_and(|state| !state.start()) {
        // Cancelled first; the handle already says so.
        return Outcome::Counted(deliver.deliver(Err(JobError::Cancelled)));
    }
    let token = options.token.as_ref();
    if token.is_some_and(|t| t.is_cancelled()) {
        return Outcome::Counted(deliver.deliver(Err(JobError::Cancelled)));
    }
    if options.deadline.is_some_and(|d| Instant::now() > d) {
        return Outcome::Counted(deliver.deliver(Err(JobError::Expired)));
    }
    // From here the job has started: if the worker is aborted by a shutdown
    // while the future is pending, the guard reports the job cancelled.
    let mut guard = DeliverOnDrop(Some(deliver), PhantomData);
    // The job's future lives in this block only: it is dropped (its locks,
    // permits and connections released) before anyone hears how it ended.
    let ending = {
        let mut fut = pin!(CatchUnwind(fut));
        let mut timer = options
            .deadline
            .map(|d| Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(d))));
        let mut token_key = None;
        let ending = poll_fn(|cx| {
            let deliver = &*guard.0.as_mut().expect("delivered only after the run");
            let cancelled = || {
                deliver.state().is_some_and(|s| s.cancel_requested())
                    || token.is_some_and(|t| t.is_cancelled())
            };
            if cancelled() {
                return Poll::Ready(Ending::Cancelled);
            }
            if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ending::Returned(result));
            }
            if let Some(timer) = timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ending::Expired);
                }
            }
            // Registered after the checks above, and checked once more after
            // registering: a cancel in between either sees the registration
            // or is seen here.
            deliver.watch_cancel(cx.waker());
            if token.is_some_and(|t| t.watch(&mut token_key, cx.waker())) || cancelled() {
                return Poll::Ready(Ending::Cancelled);
            }
            Poll::Pending
        })
        .await;
        if let Some(token) = token {
            token.unwatch(token_key);
        }
        ending
    };
    let deliver = guard.0.take().expect("delivered once");
    match ending {
        Ending::Returned(Ok(value)) => Outcome::Counted(deliver.deliver(Ok(value))),
        Ending::Returned(Err(message)) => {
            deliver.deliver(Err(JobError::Panicked(message.clone())));
            Outcome::Panicked(message)
        }
        Ending::Cancelled => Outcome::Counted(deliver.deliver(Err(JobError::Cancelled))),
        Ending::Expired => Outcome::Counted(deliver.deliver(Err(JobError::Expired))),
    }
}

/// Delivers `Cancelled` if a started job is dropped before it ends (its
/// worker was aborted by `shutdown_now` or a `shutdown_timeout` deadline).
struct DeliverOnDrop<T: Send + 'static, D: Deliver<T>>(Option<D>, PhantomData<fn() -> T>);

impl<T: Send + 'static, D: Deliver<T>> Drop for DeliverOnDrop<T, D> {
    fn drop(&mut self) {
        if let Some(deliver) = self.0.take() {
            // The worker's own guard counts the job; only the handle is told.
            let _ = deliver.deliver(Err(JobError::Cancelled));
        }
    }
}
