//! `JobHandle`: the caller's end of a spawned job.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::error::JobError;
use crate::sync::{lock, thread, Arc, AtomicU8, Mutex, Ordering};

const STARTED: u8 = 1;
const CANCEL_REQUESTED: u8 = 2;

/// The lifecycle bits of one spawned job, shared by the job and its handle.
///
/// `start` and `cancel` are both a single `fetch_or` on the same byte, so
/// exactly one of them wins: either the job starts (and cancellation becomes a
/// request the job may observe) or the cancellation lands first (and the job
/// never runs, and the handle resolves at once).
pub(crate) struct JobState {
    bits: AtomicU8,
}

impl JobState {
    /// The worker is about to run the job. False when it was cancelled first.
    pub(crate) fn start(&self) -> bool {
        self.bits.fetch_or(STARTED, Ordering::SeqCst) & CANCEL_REQUESTED == 0
    }

    pub(crate) fn cancel_requested(&self) -> bool {
        self.bits.load(Ordering::Relaxed) & CANCEL_REQUESTED != 0
    }
}

struct Slot<T> {
    result: Option<Result<T, JobError>>,
    /// Set once the handle took the result, so late completions are ignored.
    taken: bool,
    waker: Option<Waker>,
    /// The task running an async job, woken by `cancel` so the job's future
    /// is dropped at its current await point rather than its next wake-up.
    runner: Option<Waker>,
}

/// Shared between a spawned job (which fills it) and its handle (which
/// reads it). One allocation per spawned job.
pub(crate) struct Completion<T> {
    pub(crate) state: JobState,
    slot: Mutex<Slot<T>>,
}

impl<T> Completion<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Completion {
            state: JobState {
                bits: AtomicU8::new(0),
            },
            slot: Mutex::new(Slot {
                result: None,
                taken: false,
                waker: None,
                runner: None,
            }),
        })
    }

    /// Stores the job's result unless one is already there (the first word
    /// wins: a cancellation that resolved the handle is not overwritten).
    pub(crate) fn complete(&self, result: Result<T, JobError>) {
        let waker = {
            let mut slot = lock(&self.slot);
            if slot.result.is_some() || slot.taken {
                return;
            }
            slot.result = Some(result);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Completion<T> {
    /// Registers the task running the job, to be woken by `cancel`.
    pub(crate) fn watch_cancel(&self, runner: &Waker) {
        let mut slot = lock(&self.slot);
        match &slot.runner {
            Some(waker) if waker.will_wake(runner) => {}
            _ => slot.runner = Some(runner.clone()),
        }
    }
}

/// Fills a [`Completion`] exactly once. If the job is dropped without running
/// (discarded at shutdown), dropping the completer reports `Abandoned`.
pub(crate) struct Completer<T> {
    completion: Option<Arc<Completion<T>>>,
}

impl<T> Completer<T> {
    pub(crate) fn new(completion: Arc<Completion<T>>) -> Self {
        Completer {
            completion: Some(completion),
        }
    }

    pub(crate) fn state(&self) -> &JobState {
        &self
            .completion
            .as_ref()
            .expect("completer used after completion")
            .state
    }

    /// See [`Completion::watch_cancel`].
    pub(crate) fn watch_cancel(&self, runner: &Waker) {
        if let Some(completion) = &self.completion {
            completion.watch_cancel(runner);
        }
    }

    pub(crate) fn complete(mut self, result: Result<T, JobError>) {
        if let Some(completion) = self.completion.take() {
            completion.complete(result);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(completion) = self.completion.take() {
            completion.complete(Err(JobError::Abandoned));
        }
    }
}

/// The result of a job started with `spawn`: wait for it with
/// [`join`](Self::join) (blocking), `.await` it (it is a [`Future`]), or
/// [`cancel`](Self::cancel) it.
///
/// Dropping the handle does not cancel the job; it runs and its result is
/// discarded.
///
/// ```
/// let pool = crew::Pool::new(2);
/// let handle = pool.spawn(|| 6 * 7).unwrap();
/// assert_eq!(handle.join(), Ok(42));
/// ```
#[must_use = "a JobHandle does nothing unless joined, awaited or cancelled; drop it to detach"]
pub struct JobHandle<T> {
    completion: Arc<Completion<T>>,
}

impl<T> JobHandle<T> {
    pub(crate) fn new(completion: Arc<Completion<T>>) -> Self {
        JobHandle { completion }
    }

    /// Cancels the job. A job that has not started yet never runs and the
    /// handle resolves to [`JobError::Cancelled`] at once. A running thread
    /// job sees [`JobContext::is_cancelled`](crate::JobContext::is_cancelled)
    /// turn true and its handle resolves with whatever it returns; a running
    /// async job's future is dropped at the await point it is stopped at (or
    /// its next one) and its handle resolves to [`JobError::Cancelled`].
    pub fn cancel(&self) {
        let previous = self
            .completion
            .state
            .bits
            .fetch_or(CANCEL_REQUESTED, Ordering::SeqCst);
        if previous & STARTED == 0 {
            self.completion.complete(Err(JobError::Cancelled));
        } else {
            // Taken under the lock the runner registers under, after the bit
            // is set: a runner registering later sees the bit on its re-check.
            let runner = lock(&self.completion.slot).runner.take();
            if let Some(runner) = runner {
                runner.wake();
            }
        }
    }

    /// True once the result is available (`join` would not block).
    pub fn is_finished(&self) -> bool {
        lock(&self.completion.slot).result.is_some()
    }

    /// Blocks until the job ends and returns its result.
    ///
    /// Do not call this from async code; `.await` the handle instead.
    pub fn join(self) -> Result<T, JobError> {
        match self.join_until(None) {
            Ok(result) => result,
            Err(_) => unreachable!("join without a deadline cannot time out"),
        }
    }

    /// Blocks for at most `timeout`; gives the handle back if the job has not
    /// ended by then.
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, JobError>, Self> {
        self.join_until(Some(Instant::now() + timeout))
    }

    fn join_until(self, deadline: Option<Instant>) -> Result<Result<T, JobError>, Self> {
        let waker = Waker::from(std::sync::Arc::new(ThreadWaker(thread::current())));
        loop {
            {
                let mut slot = lock(&self.completion.slot);
                if let Some(result) = slot.result.take() {
                    slot.taken = true;
                    return Ok(result);
                }
                slot.waker = Some(waker.clone());
            }
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        lock(&self.completion.slot).waker = None;
                        return Err(self);
                    }
                    park_timeout(deadline - now);
                }
            }
        }
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.completion.slot);
        if let Some(result) = slot.result.take() {
            slot.taken = true;
            return Poll::Ready(result);
        }
        if slot.taken {
            // Polled again after it returned Ready: keep returning the same
            // terminal answer rather than hanging.
            return Poll::Ready(Err(JobError::Abandoned));
        }
        match &slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(not(loom))]
fn park_timeout(timeout: Duration) {
    thread::park_timeout(timeout);
}

// loom has no time; a timed join is an untimed one there.
#[cfg(loom)]
fn park_timeout(_timeout: Duration) {
    thread::park();
}

/// Wakes a thread blocked in `join`.
struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.unpark();
    }
}
