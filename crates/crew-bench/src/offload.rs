//! Offload: blocking work handed from async code to a thread pool.
//!
//! 1,000,000 tiny CPU jobs (B1's: one `fetch_add`) are offloaded from 64
//! concurrent tokio tasks, each awaiting one job at a time, through
//! `crew::Pool::run(job).await` (a `Pool` of 2 threads, the machine's
//! cores) and through `tokio::task::spawn_blocking(job).await` (tokio's own
//! blocking pool, up to 512 threads). The figure is the cost of the
//! round trip: queue, wake a thread, run, deliver the result, wake the task.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::measure::{self, Progress, ThroughputTable};
use crate::peers::Impl;
use crate::{async_peers, b1, SuiteOptions, Workload};

/// spawn-blocking runs `jobs / SPAWN_BLOCKING_DIVISOR` jobs: at well under
/// 100 k jobs/s here, the full count would take over 10 s per run. Its rate
/// is still comparable; the report says it ran fewer jobs.
pub const SPAWN_BLOCKING_DIVISOR: u64 = 5;

/// Runs the offload workload on [`Impl::OFFLOAD`].
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> ThroughputTable {
    let (timeout, threads) = (opts.cell_timeout, opts.runtime_threads);
    let (workers, tasks) = (opts.offload_workers, opts.offload_tasks);
    measure::throughput_with(
        Workload::Offload,
        &Impl::OFFLOAD.map(|i| {
            let jobs = if i == Impl::SpawnBlocking {
                (opts.offload_jobs / SPAWN_BLOCKING_DIVISOR).max(1)
            } else {
                opts.offload_jobs
            };
            (i, jobs)
        }),
        workers,
        opts.offload_jobs,
        opts,
        progress,
        |imp, jobs| {
            measure::counted(
                timeout,
                jobs,
                move || async_peers::runtime(threads),
                move |rt, c: Arc<AtomicU64>| {
                    async_peers::run_offload(rt, imp, workers, tasks, jobs, move |_i| b1::job(&c))
                },
            )
        },
    )
}
