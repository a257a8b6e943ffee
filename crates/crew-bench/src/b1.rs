//! B1: many tiny jobs, each one `fetch_add` on a shared atomic.
//!
//! Measures the per-job overhead of submitting, queueing and running a job.
//! Each job captures one `Arc<AtomicU64>` clone (a small capture).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::measure::{self, Progress, ThroughputTable};
use crate::peers::Impl;
use crate::{SuiteOptions, Workload};

/// The B1 job: one relaxed `fetch_add` on its own clone of `counter`.
pub fn job(counter: &Arc<AtomicU64>) -> impl FnOnce() + Send + 'static {
    let counter = Arc::clone(counter);
    move || {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs B1 at each worker count of `opts.b1_workers`, one table each.
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> Vec<ThroughputTable> {
    opts.b1_workers
        .iter()
        .map(|&workers| {
            measure::throughput(
                Workload::B1,
                &Impl::POOLS.map(|i| (i, opts.b1_jobs)),
                workers,
                opts.b1_jobs,
                opts,
                progress,
                |c: &Arc<AtomicU64>, _i| job(c),
            )
        })
        .collect()
}
