//! Benchmark harness for crew.
//!
//! Runs the workloads of `spec/bench.md` and measures, **in the same run**,
//! crew beside its Rust peers: on a shared, noisy machine a ratio from one
//! run holds where an absolute figure does not.
//!
//! - Thread pools (B1, B2, B3, B5): [`crew::Pool`] beside `threadpool`,
//!   `rayon` and a crossbeam-channel worker loop of boxed closures.
//! - Async (B1-async, B3-async): [`crew::AsyncPool`] beside tokio
//!   `Semaphore` + `JoinSet`, mpsc-fed worker tasks and `buffer_unordered`,
//!   on a tokio multi-thread runtime (see [`async_peers`]); B3-async also
//!   runs bare tokio tasks, the ceiling.
//! - B6: queue wait under a steady 80% load, for `AsyncPool` and `Pool`
//!   (see [`b6`]).
//! - Offload: [`crew::Pool::run`] from many tasks beside
//!   `tokio::task::spawn_blocking` (see [`offload`]).
//! - B4: the Server Pixels pipeline (crew-pipeline, file → file) beside
//!   its Go reference on the same generated file, with a single-thread loop
//!   of the same stages for the parallel efficiency (see [`b4`]).
//! - B7: Kafka → Server Pixels → Kafka (crew-pipeline) beside a bare
//!   rdkafka consumer on the same topic of a broker it starts (see
//!   [`b7_kafka`]).
//! - B8: crew-pipeline's HTTP sink with `concurrency = "adaptive"` beside
//!   the same sink with fixed limits, against a simulated service that
//!   queues and sheds load (see [`b8_http`]).
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

pub mod async_peers;
pub mod b1;
pub mod b1_async;
pub mod b2;
pub mod b3;
pub mod b3_async;
pub mod b4;
pub mod b5;
pub mod b6;
pub mod b7_kafka;
pub mod b8_http;
pub mod chart;
pub mod machine;
pub mod measure;
pub mod offload;
pub mod peers;
pub mod report;
pub mod sweep;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
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
    /// The Server Pixels pipeline, file → file, on 2 workers, beside the Go
    /// reference.
    B4,
    /// Memory per job queued into a paused pool.
    B5,
    /// B1 for async pools: tiny async jobs, at 2 and 40 workers.
    B1Async,
    /// B3 for async pools: jobs that each `tokio::time::sleep` 1 ms, on
    /// 1,000 workers, with bare tokio tasks as the ceiling.
    B3Async,
    /// Queue wait of B3-style jobs offered at 80% of the measured capacity.
    B6,
    /// `Pool::run` from many async tasks beside `spawn_blocking`.
    Offload,
    /// Kafka → Server Pixels → Kafka beside a bare rdkafka consumer.
    B7,
    /// The HTTP sink's adaptive concurrency beside fixed limits.
    B8,
}

/// One item of a `--only` list: a workload, or a group of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection(pub Vec<Workload>);

impl std::str::FromStr for Selection {
    type Err = String;

    /// A workload name (`B1`, `B3-async`, ...) or a group: `all`, `thread`,
    /// `async`, `pipeline`.
    fn from_str(s: &str) -> Result<Selection, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(Selection(Workload::ALL.to_vec())),
            "thread" | "threads" => Ok(Selection(Workload::THREAD.to_vec())),
            "async" => Ok(Selection(Workload::ASYNC.to_vec())),
            "pipeline" => Ok(Selection(Workload::PIPELINE.to_vec())),
            _ => s.parse().map(|w| Selection(vec![w])),
        }
    }
}

impl Workload {
    /// Every workload this harness runs, in order (B6 after B3 and
    /// B3-async, whose figures it uses).
    pub const ALL: [Workload; 11] = [
        Workload::B1,
        Workload::B2,
        Workload::B3,
        Workload::B4,
        Workload::B5,
        Workload::B1Async,
        Workload::B3Async,
        Workload::B6,
        Workload::Offload,
        Workload::B7,
        Workload::B8,
    ];

    /// The thread-pool workloads.
    pub const THREAD: [Workload; 4] = [Workload::B1, Workload::B2, Workload::B3, Workload::B5];

    /// The workloads that run on a tokio runtime.
    pub const ASYNC: [Workload; 4] = [
        Workload::B1Async,
        Workload::B3Async,
        Workload::B6,
        Workload::Offload,
    ];

    /// The event-pipeline workloads.
    pub const PIPELINE: [Workload; 3] = [Workload::B4, Workload::B7, Workload::B8];
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Workload::B1 => "B1",
            Workload::B2 => "B2",
            Workload::B3 => "B3",
            Workload::B4 => "B4",
            Workload::B5 => "B5",
            Workload::B1Async => "B1-async",
            Workload::B3Async => "B3-async",
            Workload::B6 => "B6",
            Workload::Offload => "offload",
            Workload::B7 => "B7",
            Workload::B8 => "B8",
        };
        f.write_str(s)
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_uppercase();
        match key.as_str() {
            "B1" => Ok(Workload::B1),
            "B2" => Ok(Workload::B2),
            "B3" => Ok(Workload::B3),
            "B5" => Ok(Workload::B5),
            "B1ASYNC" => Ok(Workload::B1Async),
            "B3ASYNC" => Ok(Workload::B3Async),
            "B6" => Ok(Workload::B6),
            "OFFLOAD" => Ok(Workload::Offload),
            "B4" => Ok(Workload::B4),
            "B7" => Ok(Workload::B7),
            "B8" => Ok(Workload::B8),
            _ => Err(format!(
                "unknown workload {s:?} (expected B1, B2, B3, B4, B5, B1-async, B3-async, B6, \
                 offload, B7 or B8)"
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
    /// B4: events in the generated input file.
    pub b4_events: u64,
    /// B4: workers of crew's pool and of the Go reference.
    pub b4_workers: usize,
    /// B4: crew's batch size, events per job (see [`b4::DEFAULT_BATCH`]).
    pub b4_batch: usize,
    /// B4: share of malformed lines in the input, 0.0 to 1.0.
    pub b4_malformed: f64,
    /// B4: the Go reference's source directory (see
    /// [`b4::default_go_source`]).
    pub b4_go_source: PathBuf,
    /// B4: where the Go reference is built; `None` for `go-pixels/` in the
    /// cargo target directory.
    pub b4_go_build_dir: Option<PathBuf>,
    /// B5: number of jobs queued into the paused pool.
    pub b5_jobs: u64,
    /// B5: workers.
    pub b5_workers: usize,
    /// B5: command prefix that re-executes the host binary into
    /// [`b5::child_main`]; the harness appends `<impl> <jobs> <workers>`.
    /// `None` measures in-process.
    pub b5_child: Option<Vec<OsString>>,
    /// Longest one run of one cell may take before it is reported as hung
    /// (for B6, on top of its duration).
    pub cell_timeout: Duration,
    /// Async workloads: worker threads of the tokio multi-thread runtime
    /// each run gets.
    pub runtime_threads: usize,
    /// B1-async: number of jobs.
    pub b1_async_jobs: u64,
    /// B1-async: worker counts, one table each.
    pub b1_async_workers: Vec<usize>,
    /// B3-async: number of jobs.
    pub b3_async_jobs: u64,
    /// B3-async: workers (and bare tasks for the ceiling).
    pub b3_async_workers: usize,
    /// B3-async: how long each job sleeps (`tokio::time::sleep`).
    pub b3_async_sleep: Duration,
    /// B6: how long jobs are offered, per pool. B6's `AsyncPool` uses B3-async's
    /// workers and sleep, its `Pool` B3's.
    pub b6_duration: Duration,
    /// B6: the offered rate as a fraction of the measured capacity.
    pub b6_load: f64,
    /// B6: whether to measure the thread `Pool` too (beside `AsyncPool`).
    pub b6_thread_pool: bool,
    /// Offload: number of jobs.
    pub offload_jobs: u64,
    /// Offload: concurrent tokio tasks offloading jobs, one at a time each.
    pub offload_tasks: usize,
    /// Offload: threads of the `crew::Pool` that `Pool::run` offloads to.
    pub offload_workers: usize,
    /// If set, only these implementations get rows in the throughput and
    /// memory tables (e.g. one implementation alone, to profile it). B6
    /// is not filtered.
    pub impls: Option<Vec<Impl>>,
    /// B7: sizes and crew's settings.
    pub b7: b7_kafka::KafkaOptions,
    /// B8: sizes and the simulated service's shape.
    pub b8: b8_http::HttpOptions,
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
            b4_events: 200_000,
            b4_workers: 2,
            b4_batch: b4::DEFAULT_BATCH,
            b4_malformed: 0.0,
            b4_go_source: b4::default_go_source(),
            b4_go_build_dir: None,
            b5_jobs: 1_000_000,
            b5_workers: 4,
            b5_child: None,
            cell_timeout: Duration::from_secs(120),
            runtime_threads: 2,
            b1_async_jobs: 1_000_000,
            b1_async_workers: vec![2, 40],
            b3_async_jobs: 200_000,
            b3_async_workers: 1_000,
            b3_async_sleep: Duration::from_millis(1),
            b6_duration: Duration::from_secs(60),
            b6_load: 0.8,
            b6_thread_pool: true,
            offload_jobs: 1_000_000,
            offload_tasks: 64,
            offload_workers: 2,
            impls: None,
            b7: b7_kafka::KafkaOptions::default(),
            b8: b8_http::HttpOptions::default(),
        }
    }

    /// A smoke run: every job count and B6's duration divided by 10, same
    /// workers and work per job; B7 and B8 one round.
    pub fn quick() -> Self {
        let mut o = Self::full();
        o.quick = true;
        o.b1_jobs /= 10;
        o.b2_jobs /= 10;
        o.b3_jobs /= 10;
        o.b4_events /= 10;
        o.b5_jobs /= 10;
        o.b1_async_jobs /= 10;
        o.b3_async_jobs /= 10;
        o.b6_duration /= 10;
        o.offload_jobs /= 10;
        o.b7.events /= 10;
        // Each B7 run also waits about a second for its group join.
        o.b7.repeat = 1;
        o.b8.records /= 10;
        o.b8.repeat = 1;
        o
    }

    /// Whether `w` is selected.
    pub fn runs(&self, w: Workload) -> bool {
        self.workloads.contains(&w)
    }

    /// Whether `imp` gets a row (see [`impls`](Self::impls)).
    pub fn measures(&self, imp: Impl) -> bool {
        self.impls.as_ref().is_none_or(|v| v.contains(&imp))
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
            Workload::B4 => report.b4 = Some(b4::run(opts, progress)),
            Workload::B5 => report.b5 = Some(b5::run(opts, progress)),
            Workload::B1Async => report.b1_async = b1_async::run(opts, progress),
            Workload::B3Async => report.b3_async = Some(b3_async::run(opts, progress)),
            Workload::B6 => {
                let capacity = b6::Capacities {
                    async_pool: report.b3_async.as_ref(),
                    thread_pool: report.b3.as_ref(),
                };
                report.b6 = Some(b6::run(opts, capacity, progress));
            }
            Workload::Offload => report.offload = Some(offload::run(opts, progress)),
            Workload::B7 => report.b7 = Some(b7_kafka::run(opts, progress)),
            Workload::B8 => report.b8 = Some(b8_http::run(opts, progress)),
        }
    }
    report
}
