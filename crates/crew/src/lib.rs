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
//! ## Which pool
//!
//! | the work | use | because |
//! |---|---|---|
//! | blocking or CPU-bound jobs, submitted from ordinary threads (file I/O, compression, a blocking client) | [`Pool`] | OS threads: a job may block its worker; `submit` blocks the producer while the queue is full |
//! | async jobs, submitted from async code (HTTP calls, database writes, producing to Kafka) | [`AsyncPool`] | worker tasks on your tokio runtime: a thousand jobs waiting on I/O cost a thousand tasks, not threads; `submit(..).await` waits for space without blocking a thread |
//! | CPU work inside an async service (hashing, JSON, compression) | [`Pool::run`] | the job runs on the pool's threads, so the runtime's threads stay free for I/O; the caller awaits queue space; the queue is bounded, unlike `spawn_blocking`'s |
//!
//! Two mistakes the table avoids: CPU-heavy work inside an `AsyncPool` job
//! holds a runtime thread for its whole run (other requests stall), and a
//! blocking `Pool::submit` called from async code blocks the runtime
//! thread while the queue is full (use `Pool::run` there).
//!
//! `AsyncPool` (feature `tokio`, on by default) has the same vocabulary as
//! `Pool`, awaited:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let io = crew::AsyncPool::new(64); // 64 jobs in flight at most, 1,024 queued
//! let cpu = crew::Pool::new(2);
//! for order in 0..100u32 {
//!     let cpu = cpu.clone();
//!     io.submit(async move {
//!         // CPU work off the runtime, then the I/O on the runtime.
//!         let checksum = cpu.run(move || order.wrapping_mul(2_654_435_761)).await?;
//!         tokio::task::yield_now().await; // stands in for an HTTP call
//!         Ok::<_, crew::JobError>(checksum)
//!     })
//!     .await
//!     .unwrap();
//! }
//! let report = io.shutdown().await;
//! assert_eq!(io.stats().completed, 100);
//! # let _ = report;
//! # }
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
pub use stats::{Histogram, SharedHistogram, Stats, Tally};
