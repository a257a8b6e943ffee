//! B3: jobs that each sleep (a thread sleep, 1 ms) on 1,000 workers.
//!
//! The ideal rate is workers / sleep (Little's law): 1,000,000 jobs/s for
//! 1,000 workers and 1 ms. Linux rounds a 1 ms sleep up a little (timer
//! slack), so no pool reaches it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::measure::{self, Progress, ThroughputTable};
use crate::peers::Impl;
use crate::{SuiteOptions, Workload};

/// rayon runs `jobs / RAYON_DIVISOR` B3 jobs: its workers are not made for
/// blocking jobs (with 1,000 workers on 2 cores it manages a few thousand
/// jobs/s, so the full count would take minutes per run). Its rate is still
/// comparable; the report says it ran fewer jobs.
pub const RAYON_DIVISOR: u64 = 20;

/// The B3 job: sleep `sleep` on the worker thread, then one relaxed
/// `fetch_add` on `counter`.
pub fn job(counter: &Arc<AtomicU64>, sleep: Duration) -> impl FnOnce() + Send + 'static {
    let counter = Arc::clone(counter);
    move || {
        thread::sleep(sleep);
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The ideal B3 rate for `workers` workers each sleeping `sleep` per job.
pub fn ideal_rate(workers: usize, sleep: Duration) -> f64 {
    workers as f64 / sleep.as_secs_f64().max(1e-9)
}

/// Runs B3.
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> ThroughputTable {
    let sleep = opts.b3_sleep;
    let cells = Impl::POOLS.map(|i| {
        let jobs = if i == Impl::Rayon {
            (opts.b3_jobs / RAYON_DIVISOR).max(1)
        } else {
            opts.b3_jobs
        };
        (i, jobs)
    });
    measure::throughput(
        Workload::B3,
        &cells,
        opts.b3_workers,
        opts.b3_jobs,
        opts,
        progress,
        move |c: &Arc<AtomicU64>, _i| job(c, sleep),
    )
}
