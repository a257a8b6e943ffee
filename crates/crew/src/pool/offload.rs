//! `Pool::run`: blocking and CPU-bound work handed from async code to the
//! thread pool, with the caller awaiting queue space instead of blocking
//! its runtime thread.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::Pool;
use crate::context::JobContext;
use crate::error::JobError;
use crate::handle::{Completer, Completion, JobHandle};
use crate::intake::Wait;
use crate::job::{job_box, JobOptions, Managed};

impl Pool {
    /// Runs a blocking or CPU-bound job on the pool and awaits its result,
    /// for async code: while the queue is full the calling task waits for
    /// space (its runtime thread stays free for other tasks), and the job
    /// runs on a pool thread, never on the runtime's.
    ///
    /// This is how an async service keeps hashing, parsing or compression
    /// off its reactor with a bound on how much is queued: unlike
    /// `tokio::task::spawn_blocking`, whose queue has no bound, a burst
    /// waits here, visible in [`Stats::queued`](crate::Stats::queued) and
    /// the queue-wait histogram.
    ///
    /// The future owns what it needs (it is `'static`), so it can be
    /// spawned. Dropping it before the job starts cancels the job; once
    /// started, the job runs to its end and its result is discarded. A
    /// closed pool gives [`JobError::Closed`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cpu = crew::Pool::new(2);
    /// let digest = cpu
    ///     .run(|| (0..1_000_000u64).fold(0u64, |h, i| h.rotate_left(5) ^ i))
    ///     .await
    ///     .unwrap();
    /// assert_ne!(digest, 0);
    /// # }
    /// ```
    pub fn run<F, T>(&self, job: F) -> impl Future<Output = Result<T, JobError>> + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = self.shared().clone();
        async move {
            let got = shared
                .intake
                .queue
                .reserve_async(1, || shared.is_closed())
                .await;
            let settled = shared
                .intake
                .settle_reservation(got, Wait::Forever, |got| shared.unreserve(got));
            if settled.is_err() {
                shared.intake.reject(1);
                return Err(JobError::Closed);
            }
            let completion = Completion::new();
            let deliver = Completer::new(completion.clone());
            let job = move |_: &JobContext<'_>| job();
            shared.enqueue_reserved(job_box(Managed::new(job, JobOptions::default(), deliver)));
            CancelOnDrop(Some(JobHandle::new(completion))).await
        }
    }
}

/// Awaits a handle; cancels the job if dropped before it ends (a job that
/// has not started then never does).
struct CancelOnDrop<T>(Option<JobHandle<T>>);

impl<T> Future for CancelOnDrop<T> {
    type Output = Result<T, JobError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let handle = self.0.as_mut().expect("polled after completion");
        let result = std::task::ready!(Pin::new(handle).poll(cx));
        self.0 = None;
        Poll::Ready(result)
    }
}

impl<T> Drop for CancelOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.cancel();
        }
    }
}
