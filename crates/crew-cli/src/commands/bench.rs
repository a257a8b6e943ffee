//! `crew bench`: the benchmark suite of `spec/bench.md` (crew beside its
//! peers, through the `crew-bench` library) and the worker sweep (one
//! pipeline's events/s as the pool of its I/O-bound stage grows), with
//! tables on stdout, a progress bar on a terminal, and with `--out` the
//! files: `report.md`, `sweep.csv`, `sweep.md`, `sweep.svg`, `sweep.png`.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use crew_bench::sweep::{self, SweepOptions, SweepProgress};
use crew_bench::{b5, chart, run_suite_with_progress, Progress, Selection, SuiteOptions, Workload};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `crew bench`.
///
/// Examples: `crew bench --quick` (a smoke run of everything);
/// `crew bench --sweep-only --out docs/img` (the sweep and its chart);
/// `crew bench --no-sweep --only B1,B4` (two workloads of the suite).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Smoke-run sizes: the suite's job counts ÷10, sweep windows of 0.4 s.
    #[arg(long)]
    quick: bool,
    /// Only these workloads of the suite, comma-separated: B1, B2, B3, B4,
    /// B5, B1-async, B3-async, B6, offload, B7, B8, or the groups `thread`,
    /// `async`, `pipeline` and `all` (they run in that order whatever the
    /// order given).
    #[arg(long, value_delimiter = ',', value_parser = parse_selection, value_name = "W,..")]
    only: Vec<Selection>,
    /// Write report.md (the suite), sweep.csv, sweep.md, sweep.svg and
    /// sweep.png (the sweep) into this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Run the worker sweep alone, not the suite.
    #[arg(long, conflicts_with_all = ["no_sweep", "only", "repeat"])]
    sweep_only: bool,
    /// Run the suite alone, not the worker sweep.
    #[arg(long)]
    no_sweep: bool,
    /// Sweep: how long one partner call blocks its worker (`20ms`, `1ms`,
    /// `500us`).
    #[arg(long, value_parser = parse_latency, default_value = "20ms", value_name = "DURATION")]
    latency: Duration,
    /// Sweep: worker counts of the partner-call pool, one point each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,15,40,50,100,200",
        value_parser = clap::value_parser!(u64).range(1..=sweep::MAX_WORKERS as u64),
        value_name = "N,.."
    )]
    workers: Vec<u64>,
    /// Sweep: events per batch, and per partner call.
    #[arg(long, default_value_t = sweep::DEFAULT_BATCH as u64, value_parser = clap::value_parser!(u64).range(1..=100_000), value_name = "N")]
    batch: u64,
    /// Suite: recorded runs per cell, after one unrecorded warm-up run
    /// (default 5).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100), value_name = "N")]
    repeat: Option<u64>,
    /// Internal: one B5 measurement in a fresh process (`<impl> <jobs>
    /// <workers>`); the suite re-executes `crew bench` with it.
    #[arg(long, hide = true, num_args = 3, value_names = ["IMPL", "JOBS", "WORKERS"])]
    b5_child: Option<Vec<String>>,
}

fn parse_selection(s: &str) -> Result<Selection, String> {
    s.parse()
}

fn parse_latency(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e}"))?;
    if d.is_zero() {
        return Err("the latency must be positive".into());
    }
    if d > Duration::from_secs(10) {
        return Err("the latency must be at most 10s".into());
    }
    Ok(d)
}

/// Runs `crew bench`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(child) = &args.b5_child {
        let line = b5::child_main(child).map_err(|e| anyhow::anyhow!("B5 child: {e}"))?;
        println!("{line}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let command = command_line();
    let mut failures = Vec::new();

    if !args.sweep_only {
        let opts = suite_options(&args)?;
        let mut report = {
            let bar = Bar::for_suite();
            let report = run_suite_with_progress(&opts, &mut |p| bar.on_suite(p));
            bar.done();
            report
        };
        report.command = Some(command.clone());
        let markdown = report.to_markdown();
        println!("{markdown}");
        if let Some(dir) = &args.out {
            write(&dir.join("report.md"), markdown.as_bytes())?;
        }
        failures.extend(report.failures());
    }

    if !args.no_sweep {
        let opts = sweep_options(&args);
        let mut result = {
            let bar = Bar::for_sweep(opts.workers.len());
            let result = sweep::run_sweep(&opts, &mut |p| bar.on_sweep(p));
            bar.done();
            result.context("the worker sweep")?
        };
        result.command = Some(command);
        let markdown = result.to_markdown();
        println!("{markdown}");
        if let Some(dir) = &args.out {
            write(&dir.join("sweep.md"), markdown.as_bytes())?;
            write(&dir.join("sweep.csv"), result.to_csv().as_bytes())?;
            let svg = chart::svg(&result).context("drawing the sweep chart (SVG)")?;
            write(&dir.join("sweep.svg"), svg.as_bytes())?;
            let png = chart::png(&result).context("drawing the sweep chart (PNG)")?;
            write(&dir.join("sweep.png"), &png)?;
        }
    }

    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            eprintln!("crew bench: failed: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The suite's options: `--quick`, `--only`, `--repeat`, and B5 measured in
/// a fresh `crew bench --b5-child` process per implementation.
fn suite_options(args: &Args) -> anyhow::Result<SuiteOptions> {
    let mut opts = if args.quick {
        SuiteOptions::quick()
    } else {
        SuiteOptions::full()
    };
    if !args.only.is_empty() {
        opts.workloads = Workload::ALL
            .into_iter()
            .filter(|w| args.only.iter().any(|chosen| chosen.0.contains(w)))
            .collect();
    }
    if let Some(repeat) = args.repeat {
        opts.repeat = usize::try_from(repeat).context("--repeat")?;
    }
    let exe = std::env::current_exe().context("locating this executable for the B5 child")?;
    opts.b5_child = Some(vec![
        exe.into_os_string(),
        OsString::from("bench"),
        OsString::from("--b5-child"),
    ]);
    Ok(opts)
}

fn sweep_options(args: &Args) -> SweepOptions {
    let base = if args.quick {
        SweepOptions::quick()
    } else {
        SweepOptions::full()
    };
    SweepOptions {
        // clap bounds both to small ranges, so they fit a usize.
        workers: args.workers.iter().map(|&w| w as usize).collect(),
        batch: args.batch as usize,
        latency: args.latency,
        ..base
    }
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The command line as typed, with the executable shown by its file name.
fn command_line() -> String {
    let mut args = std::env::args();
    let exe = args
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "crew".into());
    std::iter::once(exe)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The progress display: an indicatif bar on a terminal, nothing otherwise
/// (stderr piped to a file or CI log stays clean).
struct Bar(ProgressBar);

impl Bar {
    fn new(bar: ProgressBar, template: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Bar(ProgressBar::hidden());
        }
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        Bar(bar)
    }

    /// The suite's number of runs is not known ahead: a spinner with the
    /// cell being measured and the count of runs done.
    fn for_suite() -> Self {
        Self::new(
            ProgressBar::new_spinner(),
            "{spinner} suite [{elapsed}] {pos} runs done · {msg}",
        )
    }

    fn for_sweep(points: usize) -> Self {
        Self::new(
            ProgressBar::new(points as u64),
            "{spinner} sweep [{elapsed}] {bar:24} {pos}/{len} points · {msg}",
        )
    }

    fn on_suite(&self, p: &Progress) {
        match p {
            Progress::Started {
                workload,
                cell,
                run,
                of,
            } => {
                let run = if *run == 0 {
                    "warm-up".to_owned()
                } else {
                    format!("{run}/{of}")
                };
                self.0.set_message(format!("{workload} {cell} [{run}]"));
            }
            Progress::Finished { .. } => self.0.inc(1),
        }
    }

    fn on_sweep(&self, p: &SweepProgress<'_>) {
        match p {
            SweepProgress::Started { workers, .. } => {
                self.0.set_message(format!("{workers} workers"));
            }
            SweepProgress::Finished { point, .. } => {
                self.0.inc(1);
                self.0.println(format!(
                    "  {:>5} workers: {:>9.0} events/s, {:.2} cores busy",
                    point.workers,
                    point.rate(),
                    point.cores_busy()
                ));
            }
        }
    }

    fn done(self) {
        self.0.finish_and_clear();
    }
}
