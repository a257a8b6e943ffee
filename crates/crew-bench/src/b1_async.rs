//! B1-async: many tiny async jobs, each one `fetch_add` on a shared atomic.
//!
//! B1 for the async pools: the per-job overhead of submitting, queueing and
//! polling a job future, on a tokio multi-thread runtime. Each job captures
//! one `Arc<AtomicU64>` clone and never awaits.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::measure::{self, Progress, ThroughputTable};
use crate::peers::Impl;
use crate::{SuiteOptions, Workload};

/// The B1-async job: one relaxed `fetch_add` on its own clone of `counter`.
pub fn job(counter: &Arc<AtomicU64>) -> impl Future<Output = ()> + Send + 'static {
    let counter = Arc::clone(counter);
    async move {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs B1-async at each worker count of `opts.b1_async_workers`, one table
/// each, on [`Impl::ASYNC_POOLS`].
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> Vec<ThroughputTable> {
    opts.b1_async_workers
        .iter()
        .map(|&workers| {
            measure::async_throughput(
                Workload::B1Async,
                &Impl::ASYNC_POOLS.map(|i| (i, opts.b1_async_jobs)),
                workers,
                opts.b1_async_jobs,
                opts,
                progress,
                |c: &Arc<AtomicU64>, _i| job(c),
            )
        })
        .collect()
}
