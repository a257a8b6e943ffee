//! What travels through the queue: a boxed job plus its submission time, and
//! the wrappers that give every kind of job (plain, spawned, keyed, with a
//! deadline or a token) the same shape for the workers.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::context::{CancelToken, JobContext};
use crate::error::JobError;
use crate::handle::Completer;
use crate::stats::Counter;
use crate::sync::AtomicBool;

/// Identifies a keyed lane: the key's hash under the pool's hasher. Distinct
/// keys that collide share a lane, which keeps every ordering promise and
/// only costs parallelism with odds of 2^-64.
pub(crate) type LaneId = u64;

/// What a job's return value says about success, for the `failed` counter.
///
/// Implemented for `()` (always a success) and `Result` (`Err` is a failure).
/// Fire-and-forget jobs (`submit`) must return one of these so the pool can
/// count failures nobody else would see.
pub trait JobOutput: Send + 'static {
    /// True when the job failed.
    fn is_failure(&self) -> bool;
}

impl JobOutput for () {
    fn is_failure(&self) -> bool {
        false
    }
}

impl<T: Send + 'static, E: Send + 'static> JobOutput for Result<T, E> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

/// Everything a worker hands to a job while running it.
pub(crate) struct RunEnv<'a> {
    /// Tripped by `shutdown_now` and by `shutdown_timeout` at its deadline.
    pub(crate) pool_stopping: &'a AtomicBool,
}

/// How a job ended, for the stats and the panic hook.
pub(crate) enum Outcome {
    Counted(Counter),
    Panicked(String),
}

/// A unit of work as the workers see it.
pub(crate) trait Job: Send + 'static {
    /// The lane to hand over when this job ends, for keyed jobs.
    fn lane(&self) -> Option<LaneId> {
        None
    }

    /// Runs the job, or skips it if it is cancelled or past its deadline.
    /// Called at most once; the job's parts are moved out, so dropping the
    /// box afterwards drops nothing of the user's.
    fn run(&mut self, env: &RunEnv<'_>) -> Outcome;
}

/// A job, stored inline when it fits in two words (most closures capture an
/// `Arc` or two) and on the heap otherwise: no allocation per job for the
/// common case, where a plain `Box` would cost a `malloc` on the producer and
/// a cross-thread `free` on the worker.
pub(crate) type JobBox = smallbox::SmallBox<dyn Job, smallbox::space::S2>;

impl crate::intake::Laned for JobBox {
    #[inline]
    fn lane(&self) -> Option<LaneId> {
        Job::lane(&**self)
    }
}

/// Boxes a job (inline when small).
#[inline]
pub(crate) fn job_box<J: Job>(job: J) -> JobBox {
    smallbox::smallbox!(job)
}

pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<&'static str>() {
        Ok(message) => (*message).to_owned(),
        Err(payload) => match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(_) => "panic payload is not a string".to_owned(),
        },
    }
}

/// The cheapest job: a closure with no deadline, token, key or handle.
/// (`Option` has a niche in every closure that captures a reference or an
/// `Arc`, so it usually costs no space.)
pub(crate) struct Plain<F>(pub(crate) Option<F>);

impl<F, R> Job for Plain<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: JobOutput,
{
    #[inline]
    fn run(&mut self, _env: &RunEnv<'_>) -> Outcome {
        let Some(f) = self.0.take() else {
            unreachable!("a job runs at most once");
        };
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(output) if output.is_failure() => Outcome::Counted(Counter::Failed),
            Ok(_) => Outcome::Counted(Counter::Completed),
            Err(payload) => Outcome::Panicked(panic_message(payload)),
        }
    }
}

/// Where a managed job's result goes.
pub(crate) trait Deliver<T>: Send + 'static {
    /// The handle-side state, when there is a handle.
    fn state(&self) -> Option<&crate::handle::JobState>;
    /// Hands the result over; returns the counter it belongs in.
    fn deliver(self, result: Result<T, JobError>) -> Counter;
    /// Asks to be woken (the running async job's task) on cancellation.
    fn watch_cancel(&self, _runner: &std::task::Waker) {}
}

/// Results go to a `JobHandle`.
impl<T: Send + 'static> Deliver<T> for Completer<T> {
    fn state(&self) -> Option<&crate::handle::JobState> {
        Some(Completer::state(self))
    }

    fn deliver(self, result: Result<T, JobError>) -> Counter {
        let counter = counter_for(&result, false);
        self.complete(result);
        counter
    }

    fn watch_cancel(&self, runner: &std::task::Waker) {
        Completer::watch_cancel(self, runner);
    }
}

/// Fire-and-forget: nobody waits, so only the counters learn the outcome.
pub(crate) struct Detached;

impl<T: JobOutput> Deliver<T> for Detached {
    fn state(&self) -> Option<&crate::handle::JobState> {
        None
    }

    fn deliver(self, result: Result<T, JobError>) -> Counter {
        counter_for(&result, result.as_ref().is_ok_and(JobOutput::is_failure))
    }
}

fn counter_for<T>(result: &Result<T, JobError>, failed: bool) -> Counter {
    match result {
        Ok(_) if failed => Counter::Failed,
        Ok(_) => Counter::Completed,
        Err(JobError::Panicked(_)) => Counter::Panicked,
        Err(JobError::Expired) => Counter::Expired,
        Err(JobError::Cancelled) => Counter::Cancelled,
        Err(JobError::Abandoned) => Counter::Abandoned,
        Err(JobError::Closed) => unreachable!("a job that was never queued has no outcome"),
    }
}

/// Options a job may carry.
#[derive(Clone, Default)]
pub(crate) struct JobOptions {
    pub(crate) deadline: Option<Instant>,
    pub(crate) token: Option<CancelToken>,
    pub(crate) lane: Option<LaneId>,
}

/// A job with options, a context, and somewhere to deliver its result.
pub(crate) struct Managed<F, D> {
    pub(crate) lane: Option<LaneId>,
    pub(crate) parts: Option<ManagedParts<F, D>>,
}

pub(crate) struct ManagedParts<F, D> {
    pub(crate) f: F,
    pub(crate) options: JobOptions,
    pub(crate) deliver: D,
}

impl<F, D> Managed<F, D> {
    pub(crate) fn new(f: F, options: JobOptions, deliver: D) -> Self {
        Managed {
            lane: options.lane,
            parts: Some(ManagedParts {
                f,
                options,
                deliver,
            }),
        }
    }
}

impl<F, T, D> Job for Managed<F, D>
where
    F: FnOnce(&JobContext<'_>) -> T + Send + 'static,
    T: Send + 'static,
    D: Deliver<T>,
{
    fn lane(&self) -> Option<LaneId> {
        self.lane
    }

    fn run(&mut self, env: &RunEnv<'_>) -> Outcome {
        let Some(ManagedParts {
            f,
            options,
            deliver,
        }) = self.parts.take()
        else {
            unreachable!("a job runs at most once");
        };
        if deliver.state().is_some_and(|state| !state.start()) {
            // Cancelled first. The handle resolves itself as Cancelled; say
            // the same here, so whichever lands first the answer is one.
            return Outcome::Counted(deliver.deliver(Err(JobError::Cancelled)));
        }
        if options
            .token
            .as_ref()
            .is_some_and(CancelToken::is_cancelled)
        {
            return Outcome::Counted(deliver.deliver(Err(JobError::Cancelled)));
        }
        if options.deadline.is_some_and(|d| Instant::now() > d) {
            return Outcome::Counted(deliver.deliver(Err(JobError::Expired)));
        }
        let result = {
            let cx = JobContext {
                own: deliver.state(),
                token: options.token.as_ref(),
                pool_stopping: env.pool_stopping,
                deadline: options.deadline,
            };
            catch_unwind(AssertUnwindSafe(|| f(&cx)))
        };
        match result {
            Ok(value) => Outcome::Counted(deliver.deliver(Ok(value))),
            Err(payload) => {
                let message = panic_message(payload);
                deliver.deliver(Err(JobError::Panicked(message.clone())));
                Outcome::Panicked(message)
            }
        }
    }
}
