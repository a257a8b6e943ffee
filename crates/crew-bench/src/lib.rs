//! Benchmark harness for crew.
//!
//! Runs the thread-pool workloads of `spec/bench.md` (B1, B2, B3 and B5) and
//! measures, **in the same run**, crew's [`crew::Pool`] beside its Rust peers
//! (`threadpool`, `rayon`, a crossbeam-channel worker loop of boxed closures):
//! on a shared, noisy machine a ratio from one run holds where an absolute
//! figure does not.
//!
//! Measuring is separate from printing: [`run_suite`] (or
//! [`run_suite_with_progress`]) returns a [`Report`], which
//! [`Report::to_markdown`] renders. The `crew-bench` binary is a thin clap
//! front end over this; the `crew bench` command can call the same functions.
//!
//! B5 (memory per queued job) is measured in a fresh child process per
//! implementation, so that allocator state left by other runs does not
//! pollute the RSS delta. The host binary re-executes itself with a hidden
//! subcommand: set [`SuiteOptions::b5_child`] to the command prefix that
//! reaches it, and forward that subcommand's arguments to
//! [`b5::child_main`]. Without a prefix B5 runs in-process, and the report
//! says so.
//!
//! Benchmarks are not tests: nothing here asserts a time.

pub mod b1;
pub mod b2;
pub mod b3;
pub mod b5;
pub mod machine;
pub mod measure;
pub mod peers;
pub mod report;

use std::ffi::OsString;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use machine::Machine;
pub use measure::{Progress, Statistic, ThroughputRow, ThroughputTable};
pub use peers::Impl;
pub use report::{Report, TargetCheck, Verdict};

/// The workloads of `spec/bench.md` that this harness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Many tiny jobs (one `fetch_add` each), at 2 and 40 workers.
    B1,
    /// CPU-bound jobs (xorshift64 rounds) on 2 workers, with efficiency.
    B2,
    /// Jobs that each sleep 1 ms, on 1,000 workers.
    B3,
    /// Memory per job queued into a paused pool.
    B5,
}

impl Workload {
    /// Every workload this harness runs, in order.
    pub const ALL: [Workload; 4] = [Workload::B1, Workload::B2, Workload::B3, Workload::B5];
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Workload::B1 => "B1",
            Workload::B2 => "B2",
            Workload::B3 => "B3",
            Workload::B5 => "B5",
        };
        f.write_str(s)
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "B1" => Ok(Workload::B1),
            "B2" => Ok(Workload::B2),
            "B3" => Ok(Workload::B3),
            "B5" => Ok(Workload::B5),
            "B4" | "B6" => Err(format!(
                "{s} is not a thread-pool workload this harness runs (B1, B2, B3, B5)"
            )),
            _ => Err(format!(
                "unknown workload {s:?} (expected B1, B2, B3 or B5)"
            )),
        }
    }
}

/// What to run, and how big.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Workloads to run, in this order.
    pub workloads: Vec<Workload>,
    /// Recorded runs per cell; the report shows the run [`statistic`]
    /// picks, and the min–max range.
    ///
    /// [`statistic`]: SuiteOptions::statistic
    pub repeat: usize,
    /// Which run of a throughput cell the report shows (B5 always uses the median).
    pub statistic: Statistic,
    /// Whether each throughput cell starts with an unrecorded warm-up run
    /// of a tenth of its jobs.
    pub warmup: bool,
    /// Whether these are the scaled-down `--quick` counts (shown in the report).
    pub quick: bool,
    /// B1: number of jobs.
    pub b1_jobs: u64,
    /// B1: worker counts, one table each.
    pub b1_workers: Vec<usize>,
    /// B2: number of jobs.
    pub b2_jobs: u64,
    /// B2: xorshift64 rounds per job.
    pub b2_rounds: u32,
    /// B2: workers.
    pub b2_workers: usize,
    /// B3: number of jobs.
    pub b3_jobs: u64,
    /// B3: workers.
    pub b3_workers: usize,
    /// B3: how long each job sleeps.
    pub b3_sleep: Duration,
    /// B5: number of jobs queued into the paused pool.
    pub b5_jobs: u64,
    /// B5: workers.
    pub b5_workers: usize,
    /// B5: command prefix that re-executes the host binary into
    /// [`b5::child_main`]; the harness appends `<impl> <jobs> <workers>`.
    /// `None` measures in-process.
    pub b5_child: Option<Vec<OsString>>,
    /// Longest one run of one cell may take before it is reported as hung.
    pub cell_timeout: Duration,
}

impl SuiteOptions {
    /// The counts of `spec/bench.md`.
    pub fn full() -> Self {
        SuiteOptions {
            workloads: Workload::ALL.to_vec(),
            repeat: 5,
            statistic: Statistic::Best,
            warmup: true,
            quick: false,
            b1_jobs: 1_000_000,
            b1_workers: vec![2, 40],
            b2_jobs: 200_000,
            b2_rounds: 2_000,
            b2_workers: 2,
            b3_jobs: 200_000,
            b3_workers: 1_000,
            b3_sleep: Duration::from_millis(1),
            b5_jobs: 1_000_000,
            b5_workers: 4,
            b5_child: None,
            cell_timeout: Duration::from_secs(120),
        }
    }

    /// A smoke run: every job count divided by 10, same workers and work per job.
    pub fn quick() -> Self {
        let mut o = Self::full();
        o.quick = true;
        o.b1_jobs /= 10;
        o.b2_jobs /= 10;
        o.b3_jobs /= 10;
        o.b5_jobs /= 10;
        o
    }

    /// Whether `w` is selected.
    pub fn runs(&self, w: Workload) -> bool {
        self.workloads.contains(&w)
    }
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self::full()
    }
}

/// Runs the selected workloads and returns their figures.
pub fn run_suite(opts: &SuiteOptions) -> Report {
    run_suite_with_progress(opts, &mut |_| {})
}

/// Like [`run_suite`], calling `progress` before and after every run of
/// every cell (for a progress display; it does not affect measuring).
pub fn run_suite_with_progress(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> Report {
    let mut report = Report::new(opts.clone(), Machine::detect());
    for w in Workload::ALL {
        if !opts.runs(w) {
            continue;
        }
        match w {
            Workload::B1 => report.b1 = b1::run(opts, progress),
            Workload::B2 => report.b2 = Some(b2::run(opts, progress)),
            Workload::B3 => report.b3 = Some(b3::run(opts, progress)),
            Workload::B5 => report.b5 = Some(b5::run(opts, progress)),
        }
    }
    report
}
