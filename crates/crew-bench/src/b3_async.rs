//! B3-async: jobs that each `tokio::time::sleep` 1 ms, on 1,000 workers.
//!
//! The ideal rate is workers / sleep (Little's law): 1,000,000 jobs/s for
//! 1,000 workers and 1 ms. tokio's timer has a 1 ms resolution and rounds a
//! sleep up to the next tick, so a 1 ms sleep lasts between 1 and 2 ms and
//! nothing reaches the ideal. The ceiling row shows what this runtime
//! allows: 1,000 bare tokio tasks each looping the same sleep, no pool and
//! no queue.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::measure::{self, Progress, ThroughputTable};
use crate::peers::Impl;
use crate::{SuiteOptions, Workload};

/// The implementations B3-async measures: the async pools, then the
/// ceiling.
pub const IMPLS: [Impl; 5] = [
    Impl::AsyncCrew,
    Impl::TokioSemaphore,
    Impl::TokioMpsc,
    Impl::BufferUnordered,
    Impl::BareTasks,
];

/// The B3-async job: `tokio::time::sleep(sleep)`, then one relaxed
/// `fetch_add` on `counter`.
pub fn job(counter: &Arc<AtomicU64>, sleep: Duration) -> impl Future<Output = ()> + Send + 'static {
    let counter = Arc::clone(counter);
    async move {
        tokio::time::sleep(sleep).await;
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs B3-async.
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> ThroughputTable {
    let sleep = opts.b3_async_sleep;
    measure::async_throughput(
        Workload::B3Async,
        &IMPLS.map(|i| (i, opts.b3_async_jobs)),
        opts.b3_async_workers,
        opts.b3_async_jobs,
        opts,
        progress,
        move |c: &Arc<AtomicU64>, _i| job(c, sleep),
    )
}
