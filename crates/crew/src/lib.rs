//! # crew: bounded, observable worker pools
//!
//! A fixed set of workers fed from a bounded queue, with backpressure,
//! graceful shutdown, panic isolation and metrics: the pool every Go service
//! ends up writing after its first queue incident, done once, for Rust.
//!
//! If you know Go's `workerpool.New(40)` and `Submit(f)`, you know this:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//!
//! let pool = crew::Pool::new(40); // 40 workers, a bounded queue
//! let processed = Arc::new(AtomicU64::new(0));
//! for session in 0..10_000u64 {
//!     let processed = processed.clone();
//!     // Blocks while the queue is full: the backlog cannot eat the heap.
//!     pool.submit(move || {
//!         processed.fetch_add(session % 2, Ordering::Relaxed);
//!     })
//!     .unwrap();
//! }
//! pool.shutdown(); // like StopWait: run what is queued, then stop
//! assert_eq!(processed.load(Ordering::Relaxed), 5_000);
//! ```
//!
//! What you get beyond a channel and N threads:
//!
//! | need | API |
//! |---|---|
//! | a result back | [`Pool::spawn`] → [`JobHandle`] (`join()` or `.await`) |
//! | don't block when full | [`Pool::try_submit`], [`Pool::submit_timeout`] (the job comes back in the error) |
//! | per-key order | [`Pool::submit_keyed`], [`Pool::spawn_keyed`] |
//! | deadlines, cancellation | [`Pool::job`] → [`JobBuilder::deadline`], [`JobBuilder::token`], [`JobContext::is_cancelled`] |
//! | lifecycle | [`Pool::pause`], [`Pool::resume`], [`Pool::resize`], [`Pool::shutdown`], [`Pool::shutdown_timeout`], [`Pool::shutdown_now`] |
//! | panics | caught per job: [`JobError::Panicked`], [`Builder::on_panic`] |
//! | metrics | [`Pool::stats`]: counters, gauges, queue-wait and run-time histograms |

#[cfg(all(feature = "tokio", not(loom)))]
mod async_pool;
mod clock;
mod context;
mod error;
mod handle;
mod headcount;
mod intake;
mod job;
mod pool;
mod stats;
mod sync;

#[cfg(all(feature = "tokio", not(loom)))]
pub use async_pool::{AsyncBuilder, AsyncJobBuilder, AsyncPool};
pub use context::{CancelToken, Cancelled, JobContext};
pub use error::{JobError, SubmitError};
pub use handle::JobHandle;
pub use job::JobOutput;
pub use pool::{Builder, JobBuilder, Pool, ShutdownReport, DEFAULT_QUEUE_CAPACITY};
pub use stats::{Histogram, Stats};
