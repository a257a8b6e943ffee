//! `AsyncBuilder`: the options of an `AsyncPool`.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use super::shared::{AsyncShared, Config, PanicHook};
use super::AsyncPool;
use crate::pool::DEFAULT_QUEUE_CAPACITY;

/// Configures an [`AsyncPool`]. The options mean what they mean for
/// [`Builder`](crate::Builder); the thread-only ones (names, stack size,
/// spinning) have no counterpart.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
///
/// let pool = crew::AsyncPool::builder()
///     .workers(64)
///     .min_workers(4) // elastic: 4 tasks kept, up to 64 on demand
///     .keep_alive(Duration::from_secs(30))
///     .queue_capacity(10_000)
///     .build();
/// pool.submit(async { /* an HTTP call, a DB write... */ }).await.unwrap();
/// pool.shutdown().await;
/// # }
/// ```
#[must_use = "an AsyncBuilder does nothing until build() is called"]
pub struct AsyncBuilder {
    workers: usize,
    min_workers: Option<usize>,
    keep_alive: Duration,
    capacity: Option<usize>,
    on_panic: Option<PanicHook>,
    runtime: Option<Handle>,
}

impl Default for AsyncBuilder {
    fn default() -> Self {
        AsyncBuilder {
            workers: std::thread::available_parallelism().map_or(4, |n| n.get()),
            min_workers: None,
            keep_alive: Duration::from_secs(60),
            capacity: Some(DEFAULT_QUEUE_CAPACITY),
            on_panic: None,
            runtime: None,
        }
    }
}

impl AsyncBuilder {
    /// The number of worker tasks: how many jobs run at once. Defaults to
    /// the number of CPUs; I/O-bound pools usually want far more.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Makes the pool elastic: it keeps `min_workers` tasks and starts more,
    /// up to [`workers`](Self::workers), while there is work; extra tasks
    /// exit after [`keep_alive`](Self::keep_alive) idle.
    pub fn min_workers(mut self, min_workers: usize) -> Self {
        self.min_workers = Some(min_workers);
        self
    }

    /// How long an extra worker of an elastic pool stays idle before it
    /// exits (default 60 s).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The queue's bound (default [`DEFAULT_QUEUE_CAPACITY`]): how many jobs
    /// may wait beyond the ones running.
    ///
    /// # Panics
    /// [`build`](Self::build) panics if it is zero.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// No bound on the queue. Submissions never wait, and a backlog can eat
    /// the heap: this is the failure a bounded pool exists to prevent, so
    /// opt in only when something upstream bounds the work.
    pub fn unbounded(mut self) -> Self {
        self.capacity = None;
        self
    }

    /// Called with the message of every job that panics, on the worker
    /// task, after the panic was caught and counted.
    pub fn on_panic(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_panic = Some(Arc::new(hook));
        self
    }

    /// The runtime to run the worker tasks on. Defaults to the runtime
    /// `build` is called in.
    pub fn runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Builds the pool and starts its worker tasks.
    ///
    /// Deadlines, `submit_timeout`, `shutdown_timeout` and the keep-alive of
    /// elastic pools use tokio's timer: the runtime needs it enabled
    /// (`enable_time` or `enable_all`).
    ///
    /// # Panics
    /// If `workers` or the queue capacity is zero, or if no runtime was
    /// given and `build` is not called from within one.
    pub fn build(self) -> AsyncPool {
        assert!(self.workers > 0, "crew: a pool needs at least one worker");
        assert!(
            self.capacity != Some(0),
            "crew: queue_capacity must be at least 1 (use pause() to hold jobs back)"
        );
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => Handle::try_current().unwrap_or_else(|_| {
                panic!(
                    "crew: AsyncPool::build needs a tokio runtime: call it inside one, \
                     or pass one with AsyncBuilder::runtime"
                )
            }),
        };
        let min_workers = self.min_workers.unwrap_or(self.workers).min(self.workers);
        let shared = Arc::new(AsyncShared::new(
            self.capacity,
            self.workers,
            min_workers,
            Config {
                runtime,
                keep_alive: self.keep_alive,
                on_panic: self.on_panic,
            },
        ));
        for _ in 0..min_workers {
            shared.grow_if_below_target_up_to(min_workers);
        }
        AsyncPool::from_shared(shared)
    }
}
