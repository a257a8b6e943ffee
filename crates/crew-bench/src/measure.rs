//! Running cells: repeats, medians, timeouts, and the job-count check.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use crate::async_peers;
use crate::peers::{self, Impl};
use crate::{SuiteOptions, Workload};

/// Which of a cell's repeated runs the report shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// The fastest run. On a shared machine other work only ever slows a
    /// run down, so the fastest is the one least disturbed.
    Best,
    /// The median run.
    Median,
}

impl Statistic {
    /// `"best"` or `"median"`.
    pub fn name(self) -> &'static str {
        match self {
            Statistic::Best => "best",
            Statistic::Median => "median",
        }
    }

    /// The run this statistic picks among `runs`: the one that took least
    /// `elapsed`, or the median one by it.
    pub fn pick<'a, R>(
        self,
        runs: impl IntoIterator<Item = &'a R>,
        elapsed: impl Fn(&R) -> Duration,
    ) -> Option<&'a R> {
        let mut runs: Vec<&R> = runs.into_iter().collect();
        runs.sort_by_key(|run| elapsed(run));
        match self {
            Statistic::Best => runs.first().copied(),
            Statistic::Median => runs.get(runs.len() / 2).copied(),
        }
    }
}

/// A progress event, reported around every run of every cell.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A run is starting.
    Started {
        /// The workload.
        workload: Workload,
        /// The cell, e.g. `"crew, 40 workers"`.
        cell: String,
        /// This run's number, from 1; 0 for the unrecorded warm-up run.
        run: usize,
        /// How many recorded runs the cell has.
        of: usize,
    },
    /// A run has finished.
    Finished {
        /// The workload.
        workload: Workload,
        /// The cell, as in [`Progress::Started`].
        cell: String,
        /// This run's number, from 1; 0 for the unrecorded warm-up run.
        run: usize,
        /// How many recorded runs the cell has.
        of: usize,
        /// What it measured, or why it failed.
        outcome: String,
    },
}

/// Throughput of one implementation in one cell, over the repeated runs.
#[derive(Debug, Clone)]
pub struct ThroughputRow {
    /// The implementation.
    pub implementation: Impl,
    /// Jobs per run.
    pub jobs: u64,
    /// Which run time [`rate`](Self::rate) reports.
    pub statistic: Statistic,
    /// Time of each successful run, from first submit until every job ran.
    pub runs: Vec<Duration>,
    /// Process CPU time (user + system) of each successful run, in the same
    /// order as `runs`; it includes starting and stopping the pool.
    pub cpu: Vec<Duration>,
    /// Why the cell failed (a hang, a panic, jobs lost); later runs are skipped.
    pub error: Option<String>,
    /// Distinct oddities the implementation reported in any run.
    pub notes: Vec<String>,
}

impl ThroughputRow {
    fn new(implementation: Impl, jobs: u64, statistic: Statistic) -> Self {
        ThroughputRow {
            implementation,
            jobs,
            statistic,
            runs: Vec::new(),
            cpu: Vec::new(),
            error: None,
            notes: Vec::new(),
        }
    }

    /// The median run time (mean of the two middle runs for an even count).
    pub fn median(&self) -> Option<Duration> {
        median(&self.runs)
    }

    /// The shortest run time.
    pub fn best(&self) -> Option<Duration> {
        self.runs.iter().min().copied()
    }

    /// The run time the report uses: [`best`](Self::best) or
    /// [`median`](Self::median), as [`statistic`](Self::statistic) says.
    pub fn time(&self) -> Option<Duration> {
        match self.statistic {
            Statistic::Best => self.best(),
            Statistic::Median => self.median(),
        }
    }

    /// Jobs per second at [`time`](Self::time).
    pub fn rate(&self) -> Option<f64> {
        self.time().map(|d| rate(self.jobs, d))
    }

    /// CPU cores kept busy: the median over the runs of process CPU time
    /// divided by the timed wall time. Above the jobs' own need, it shows
    /// CPU burnt in the pool itself (spinning, contention).
    pub fn cores_busy(&self) -> Option<f64> {
        let mut v: Vec<f64> = self
            .cpu
            .iter()
            .zip(&self.runs)
            .map(|(c, w)| c.as_secs_f64() / w.as_secs_f64().max(1e-9))
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }

    /// Lowest and highest jobs per second over the runs.
    pub fn rate_range(&self) -> Option<(f64, f64)> {
        let fastest = self.runs.iter().min()?;
        let slowest = self.runs.iter().max()?;
        Some((rate(self.jobs, *slowest), rate(self.jobs, *fastest)))
    }
}

/// One workload at one worker count: a row per implementation.
#[derive(Debug, Clone)]
pub struct ThroughputTable {
    /// The workload.
    pub workload: Workload,
    /// Worker threads in every pool.
    pub workers: usize,
    /// Jobs per run (a row may have run fewer: see [`ThroughputRow::jobs`]).
    pub jobs: u64,
    /// One row per implementation, crew first.
    pub rows: Vec<ThroughputRow>,
}

impl ThroughputTable {
    /// The row of `imp`, if it was measured.
    pub fn row(&self, imp: Impl) -> Option<&ThroughputRow> {
        self.rows.iter().find(|r| r.implementation == imp)
    }

    /// The first crew row (the one `crew ÷ this` divides by): `crew` in the
    /// thread-pool tables, `crew-async` in the async ones.
    pub fn crew_row(&self) -> Option<&ThroughputRow> {
        self.rows.iter().find(|r| r.implementation.is_crew())
    }

    /// `imp`'s median rate divided by `peer`'s (above 1: `imp` is faster).
    pub fn ratio(&self, imp: Impl, peer: Impl) -> Option<f64> {
        Some(self.row(imp)?.rate()? / self.row(peer)?.rate()?)
    }

    /// `imp`'s rate divided by `workers` × the single-thread loop's rate
    /// (only for tables that have an [`Impl::SingleThread`] row).
    pub fn efficiency(&self, imp: Impl) -> Option<f64> {
        let single = self.row(Impl::SingleThread)?.rate()?;
        Some(self.row(imp)?.rate()? / (self.workers as f64 * single))
    }
}

/// Jobs per second.
pub fn rate(jobs: u64, elapsed: Duration) -> f64 {
    jobs as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The median of `xs` (mean of the two middle values for an even count).
pub fn median(xs: &[Duration]) -> Option<Duration> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    })
}

/// Runs `f` on a thread of its own and waits at most `timeout` for it.
///
/// A panic becomes an error carrying its message. On timeout the thread is
/// left running (it is presumably stuck) and an error says so.
pub fn isolated<T, F>(timeout: Duration, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name("crew-bench-cell".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| format!("spawn cell thread: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(result) => {
            let _ = handle.join();
            result
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "did not finish within {} s (hung?); its threads were left behind",
            timeout.as_secs()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(payload) => Err(format!("panicked: {}", panic_message(&payload))),
            Ok(()) => Err("cell thread ended without a result".into()),
        },
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

/// Formats a rate as `1.23 M/s`, `456 k/s` or `789 /s`.
pub fn format_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.0} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

/// Formats a duration as `850 ns`, `12.3 µs`, `1.23 ms` or `1.23 s`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Measures one throughput table: every `(implementation, jobs)` of `cells`
/// (`jobs` is normally the table's `jobs`; a peer too slow to run them all
/// in reasonable time may be given fewer, and the report says so).
///
/// With `opts.warmup`, each implementation first does one unrecorded run of
/// a tenth of its jobs (run 0 in [`Progress`]). Then each is run
/// `opts.repeat` times, interleaved (run 1 of every implementation, then run
/// 2, ...) and starting each round one implementation further along, so that
/// neither a noisy stretch nor going first lands on one implementation only.
///
/// `make(counter, i)` builds job `i`; every job must add 1 to `counter`,
/// and a run in which the count does not reach `jobs` is an error.
#[allow(clippy::too_many_arguments)]
pub(crate) fn throughput<J, F>(
    workload: Workload,
    cells: &[(Impl, u64)],
    workers: usize,
    jobs: u64,
    opts: &SuiteOptions,
    progress: &mut dyn FnMut(&Progress),
    make: F,
) -> ThroughputTable
where
    F: Fn(&Arc<AtomicU64>, u64) -> J + Send + Sync + Clone + 'static,
    J: FnOnce() + Send + 'static,
{
    let timeout = opts.cell_timeout;
    throughput_with(
        workload,
        cells,
        workers,
        jobs,
        opts,
        progress,
        |imp, jobs| one_run(timeout, imp, workers, jobs, make.clone()),
    )
}

/// Like [`throughput`] for the async implementations: every run gets a fresh
/// tokio runtime of `opts.runtime_threads` worker threads (built before and
/// dropped after the timed part), and `make(counter, i)` builds job `i` as a
/// future.
#[allow(clippy::too_many_arguments)]
pub(crate) fn async_throughput<Fut, F>(
    workload: Workload,
    cells: &[(Impl, u64)],
    workers: usize,
    jobs: u64,
    opts: &SuiteOptions,
    progress: &mut dyn FnMut(&Progress),
    make: F,
) -> ThroughputTable
where
    F: Fn(&Arc<AtomicU64>, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (timeout, threads) = (opts.cell_timeout, opts.runtime_threads);
    throughput_with(
        workload,
        cells,
        workers,
        jobs,
        opts,
        progress,
        |imp, jobs| {
            let make = make.clone();
            counted(
                timeout,
                jobs,
                move || async_peers::runtime(threads),
                move |rt, c| async_peers::run(rt, imp, workers, jobs, move |i| make(&c, i)),
            )
        },
    )
}

/// Like [`throughput`], with `one(imp, jobs)` doing one run of one cell
/// (on a thread of its own, with the job-count check): the repeats,
/// interleaving, warm-up and progress reports are the same for every kind
/// of workload.
pub(crate) fn throughput_with(
    workload: Workload,
    cells: &[(Impl, u64)],
    workers: usize,
    jobs: u64,
    opts: &SuiteOptions,
    progress: &mut dyn FnMut(&Progress),
    mut one: impl FnMut(Impl, u64) -> Result<CellRun, String>,
) -> ThroughputTable {
    let mut rows: Vec<ThroughputRow> = cells
        .iter()
        .filter(|&&(i, _)| opts.measures(i))
        .map(|&(i, n)| ThroughputRow::new(i, n, opts.statistic))
        .collect();
    let of = opts.repeat.max(1);
    let first = if opts.warmup { 0 } else { 1 };
    let n = rows.len();
    for run in first..=of {
        for k in 0..n {
            let row = &mut rows[(k + run.saturating_sub(1)) % n];
            if row.error.is_some() {
                continue;
            }
            let imp = row.implementation;
            let jobs = if run == 0 {
                (row.jobs / 10).max(1)
            } else {
                row.jobs
            };
            let cell = if !imp.sized_by_workers() {
                imp.name().to_string()
            } else {
                format!("{}, {workers} workers", imp.name())
            };
            progress(&Progress::Started {
                workload,
                cell: cell.clone(),
                run,
                of,
            });
            let result = one(imp, jobs);
            let outcome = match &result {
                Ok(r) => {
                    let d = r.run.elapsed;
                    let note = r
                        .run
                        .note
                        .as_deref()
                        .map(|n| format!(" NOTE: {n}"))
                        .unwrap_or_default();
                    format!(
                        "{} ({:.3} s){note}",
                        format_rate(rate(jobs, d)),
                        d.as_secs_f64()
                    )
                }
                Err(e) => format!("FAILED: {e}"),
            };
            match result {
                Ok(r) => {
                    if run > 0 {
                        row.runs.push(r.run.elapsed);
                        row.cpu.push(r.cpu);
                    }
                    if let Some(n) = r.run.note {
                        if !row.notes.contains(&n) {
                            row.notes.push(n);
                        }
                    }
                }
                Err(e) => row.error = Some(e),
            }
            progress(&Progress::Finished {
                workload,
                cell,
                run,
                of,
                outcome,
            });
        }
    }
    ThroughputTable {
        workload,
        workers,
        jobs,
        rows,
    }
}

/// One run of one cell on a thread of its own, with the job-count check.
fn one_run<J, F>(
    timeout: Duration,
    imp: Impl,
    workers: usize,
    jobs: u64,
    make: F,
) -> Result<CellRun, String>
where
    F: Fn(&Arc<AtomicU64>, u64) -> J + Send + Sync + Clone + 'static,
    J: FnOnce() + Send + 'static,
{
    counted(
        timeout,
        jobs,
        || Ok(()),
        move |(), c| peers::run(imp, workers, jobs, move |i| make(&c, i)),
    )
}

/// One run on a thread of its own (see [`isolated`]), with the job-count
/// check: `setup()` builds what the run needs (not timed, e.g. a runtime),
/// then `run(&setup, counter)` runs `jobs` jobs that each add 1 to
/// `counter`. A run whose counter does not reach `jobs` is an error. What
/// `setup` built is dropped after the process CPU time was read.
pub(crate) fn counted<S, Setup, R>(
    timeout: Duration,
    jobs: u64,
    setup: Setup,
    run: R,
) -> Result<CellRun, String>
where
    Setup: FnOnce() -> Result<S, String> + Send + 'static,
    R: FnOnce(&S, Arc<AtomicU64>) -> Result<peers::Run, String> + Send + 'static,
{
    isolated(timeout, move || {
        let env = setup()?;
        let counter = Arc::new(AtomicU64::new(0));
        let cpu_before = process_cpu_time();
        let run = run(&env, Arc::clone(&counter))?;
        let cpu = process_cpu_time().saturating_sub(cpu_before);
        drop(env);
        let ran = counter.load(Ordering::SeqCst);
        if ran != jobs {
            return Err(format!("only {ran} of {jobs} jobs ran"));
        }
        Ok(CellRun { run, cpu })
    })
}

/// One successful run and the process CPU time it took.
pub(crate) struct CellRun {
    /// The run.
    pub(crate) run: peers::Run,
    /// Process CPU time (user + system) during the run.
    pub(crate) cpu: Duration,
}

/// User + system CPU time of this whole process so far (zero if unknown).
pub fn process_cpu_time() -> Duration {
    // SAFETY: `getrusage` only writes into the zeroed struct we pass it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
