//! B2: CPU-bound jobs (xorshift64 rounds) on 2 workers.
//!
//! Besides the pools, a single-thread loop runs the same jobs one after
//! another, so that efficiency = rate / (workers × single-thread rate) shows
//! how much of the machine the pool turns into work. A last row deals the
//! same jobs out beforehand to plain threads (no queue at all): its
//! efficiency is what this machine allows, the ceiling for any pool.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::measure::{self, Progress, ThroughputTable};
use crate::peers::Impl;
use crate::{SuiteOptions, Workload};

/// `rounds` rounds of xorshift64 from `seed` (0 is mapped to a non-zero seed).
#[inline]
pub fn xorshift64(seed: u64, rounds: u32) -> u64 {
    let mut x = if seed == 0 {
        0x9E37_79B9_7F4A_7C15
    } else {
        seed
    };
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// The B2 job `index`: `rounds` xorshift64 rounds (kept from being optimized
/// away with [`black_box`]), then one relaxed `fetch_add` on `counter`.
pub fn job(counter: &Arc<AtomicU64>, index: u64, rounds: u32) -> impl FnOnce() + Send + 'static {
    let counter = Arc::clone(counter);
    move || {
        black_box(xorshift64(black_box(index), black_box(rounds)));
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs B2: every pool, plus the single-thread loop, in one table.
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> ThroughputTable {
    let mut cells: Vec<(Impl, u64)> = Impl::POOLS.map(|i| (i, opts.b2_jobs)).to_vec();
    cells.push((Impl::SingleThread, opts.b2_jobs));
    cells.push((Impl::BareThreads, opts.b2_jobs));
    let rounds = opts.b2_rounds;
    measure::throughput(
        Workload::B2,
        &cells,
        opts.b2_workers,
        opts.b2_jobs,
        opts,
        progress,
        move |c: &Arc<AtomicU64>, i| job(c, i, rounds),
    )
}
