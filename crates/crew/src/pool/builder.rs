//! `Builder`: every knob of a `Pool`, with defaults a service can live with.

use std::time::Duration;

use super::shared::{Config, PanicHook, Shared};
use super::Pool;
use crate::sync::Arc;

/// The queue bound when none is given: enough to absorb bursts, small enough
/// that a stuck pool pushes back on its producers within milliseconds instead
/// of growing for days.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// Configures and builds a [`Pool`].
///
/// ```
/// use std::time::Duration;
///
/// let pool = crew::Pool::builder()
///     .workers(40)
///     .min_workers(4) // start 4, grow to 40 on demand
///     .keep_alive(Duration::from_secs(30)) // idle workers above 4 exit
///     .queue_capacity(10_000)
///     .thread_name("sessions")
///     .on_panic(|message| eprintln!("job panicked: {message}"))
///     .build();
/// pool.submit(|| println!("hello from a worker")).unwrap();
/// ```
#[must_use = "a Builder does nothing until build() is called"]
pub struct Builder {
    workers: usize,
    min_workers: Option<usize>,
    keep_alive: Duration,
    capacity: Option<usize>,
    thread_name: String,
    stack_size: Option<usize>,
    on_panic: Option<PanicHook>,
    max_spinning: Option<usize>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: std::thread::available_parallelism().map_or(4, |n| n.get()),
            min_workers: None,
            keep_alive: Duration::from_secs(60),
            capacity: Some(DEFAULT_QUEUE_CAPACITY),
            thread_name: "crew".to_owned(),
            stack_size: None,
            on_panic: None,
            max_spinning: None,
        }
    }
}

impl Builder {
    /// Maximum number of worker threads (default: the number of CPUs).
    ///
    /// # Panics
    /// `build` panics if this is zero.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Workers started at once and never reaped (default: all of them, a
    /// fixed pool). Workers above this start on demand and exit after
    /// [`keep_alive`](Self::keep_alive) idle.
    pub fn min_workers(mut self, min_workers: usize) -> Self {
        self.min_workers = Some(min_workers);
        self
    }

    /// How long a worker above the minimum stays idle before it exits
    /// (default: 60 s).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Maximum number of jobs waiting to start, including jobs waiting behind
    /// their key's lane (default: [`DEFAULT_QUEUE_CAPACITY`]). A full queue
    /// makes `submit` wait and `try_submit` refuse.
    ///
    /// # Panics
    /// `build` panics if this is zero.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Removes the queue bound. Memory then grows with the backlog: the
    /// failure this crate exists to prevent. Use it only where something else
    /// bounds the producers.
    pub fn unbounded(mut self) -> Self {
        self.capacity = None;
        self
    }

    /// Prefix for worker thread names (`{prefix}-{n}`, default `crew`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Stack size of each worker thread, in bytes (default: the platform's).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Called on the worker thread with the message of every job that panics.
    pub fn on_panic(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_panic = Some(Arc::new(hook));
        self
    }

    /// How many idle workers may busy-wait for new jobs before sleeping
    /// (default: half the CPUs, at least one). Spinning saves a wake-up per
    /// job under a steady stream of short jobs at the price of some CPU while
    /// the pool idles; 0 is treated as 1.
    pub fn max_spinning(mut self, spinners: usize) -> Self {
        self.max_spinning = Some(spinners);
        self
    }

    /// Starts the pool.
    ///
    /// # Panics
    /// If `workers` or `queue_capacity` is zero, or the OS refuses to start
    /// the minimum number of threads.
    pub fn build(self) -> Pool {
        assert!(self.workers > 0, "crew: a pool needs at least one worker");
        assert!(
            self.capacity != Some(0),
            "crew: queue_capacity must be at least 1 (use pause() to hold jobs back)"
        );
        let min_workers = self.min_workers.unwrap_or(self.workers).min(self.workers);
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let max_spinning = self.max_spinning.unwrap_or(cpus / 2).min(self.workers);
        let shared = Arc::new(Shared::new(
            self.capacity,
            self.workers,
            min_workers,
            max_spinning,
            Config {
                cpus,
                thread_name: self.thread_name,
                stack_size: self.stack_size,
                keep_alive: self.keep_alive,
                on_panic: self.on_panic,
            },
        ));
        for _ in 0..min_workers {
            let started = shared.grow_if_below_target_up_to(min_workers);
            assert!(started, "crew: could not start the pool's worker threads");
        }
        Pool::from_shared(shared)
    }
}
