//! `crew-bench`: runs crew's benchmark workloads beside its Rust peers and
//! prints (and optionally writes) a markdown report.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use crew_bench::{
    b5, run_suite_with_progress, Impl, Progress, Selection, Statistic, SuiteOptions, Workload,
};

/// Hidden subcommand through which the suite re-executes itself for B5.
const B5_CHILD: &str = "__b5-child";

/// Runs crew's benchmark workloads (spec/bench.md) with crew beside its
/// peers, all in the same run: the thread pools (B1, B2, B3, B5: crew `Pool`
/// beside threadpool, rayon and a crossbeam worker loop), the async pools
/// (B1-async, B3-async: crew `AsyncPool` beside tokio Semaphore + JoinSet,
/// mpsc-fed worker tasks and buffer_unordered), B4 (the Server Pixels
/// pipeline, file → file, beside its Go reference on the same file), B6 (queue wait at 80% load),
/// offload (`Pool::run` beside `spawn_blocking`), B7 (Kafka → Server Pixels → Kafka beside a
/// bare rdkafka consumer, on a tansu broker it starts) and B8 (the HTTP sink's adaptive
/// concurrency beside fixed limits, against a simulated service in this process).
///
/// Examples: `crew-bench --out docs/benchmarks.md` (everything);
/// `crew-bench --only async` (B1-async, B3-async, B6, offload);
/// `crew-bench --quick --only B1-async,B3-async,B6 --b6-secs 2 --repeat 1`
/// (a smoke run); `crew-bench --only B4` (the pipeline against Go);
/// `crew-bench --only B8` (adaptive against fixed HTTP concurrency).
#[derive(Debug, Parser)]
#[command(name = "crew-bench", version)]
struct Cli {
    /// Scaled-down job counts (÷10, and B6's duration ÷10) for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Only these workloads, comma-separated: B1, B2, B3, B4, B5, B1-async,
    /// B3-async, B6, offload, B7, B8, or the groups `thread` (B1, B2, B3, B5),
    /// `pipeline` (B4, B7, B8), `async` (B1-async, B3-async, B6, offload) and `all`.
    /// They run in that order whatever the order given.
    #[arg(long, value_delimiter = ',', value_parser = parse_selection)]
    only: Vec<Selection>,
    /// B1: jobs per run (default 1,000,000; --quick 100,000).
    #[arg(long, value_name = "N")]
    b1_jobs: Option<u64>,
    /// B1: worker counts, comma-separated, one table each (default 2,40).
    #[arg(long, value_name = "N,..", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    b1_workers: Vec<u64>,
    /// B2: jobs per run (default 200,000; --quick 20,000).
    #[arg(long, value_name = "N")]
    b2_jobs: Option<u64>,
    /// B3: jobs per run (default 200,000; --quick 20,000).
    #[arg(long, value_name = "N")]
    b3_jobs: Option<u64>,
    /// B4: events in the generated input file (default 200,000; --quick
    /// 20,000).
    #[arg(long, value_name = "N")]
    b4_events: Option<u64>,
    /// B4: workers of crew's pool and of the Go reference.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    b4_workers: u64,
    /// B4: crew's batch size, events per job.
    #[arg(long, value_name = "N", default_value_t = crew_bench::b4::DEFAULT_BATCH as u64, value_parser = clap::value_parser!(u64).range(1..))]
    b4_batch: u64,
    /// B4: share of malformed lines in the input, 0.0 to 1.0 (one in a
    /// hundred of them a 1 MiB line).
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    b4_malformed: f64,
    /// B4: the Go reference's source directory (default: CREW_GO_PIXELS, else
    /// shared/anchors/go-pixels beside the workspace). The Go toolchain is
    /// CREW_GO, else `go` on the PATH, else /tmp/go/bin/go.
    #[arg(long, value_name = "DIR")]
    go_pixels: Option<PathBuf>,
    /// B5: jobs queued per run (default 1,000,000; --quick 100,000).
    #[arg(long, value_name = "N")]
    b5_jobs: Option<u64>,
    /// B1-async: jobs per run (default 1,000,000; --quick 100,000).
    #[arg(long, value_name = "N")]
    b1_async_jobs: Option<u64>,
    /// B1-async: worker counts, comma-separated, one table each (default 2,40).
    #[arg(long, value_name = "N,..", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    b1_async_workers: Vec<u64>,
    /// B3-async: jobs per run (default 200,000; --quick 20,000).
    #[arg(long, value_name = "N")]
    b3_async_jobs: Option<u64>,
    /// B6: seconds of offered load per pool (default 60; --quick 6).
    #[arg(long, value_name = "SECS")]
    b6_secs: Option<f64>,
    /// B6: the offered rate as a fraction of the measured capacity.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.8)]
    b6_load: f64,
    /// B6: measure only `AsyncPool`, not the thread `Pool`.
    #[arg(long)]
    b6_async_only: bool,
    /// Offload: jobs per run (default 1,000,000; --quick 100,000).
    #[arg(long, value_name = "N")]
    offload_jobs: Option<u64>,
    /// B7: events in the input topic (default 200,000; --quick 20,000).
    #[arg(long, value_name = "N")]
    b7_events: Option<u64>,
    /// B7: rounds, each one run of every row (default 3; --quick 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100))]
    b7_repeat: Option<u64>,
    /// B7: crew's ordering.
    #[arg(long, value_enum, default_value_t = B7Ordering::Key)]
    b7_ordering: B7Ordering,
    /// B7: a librdkafka property for crew's Kafka source, over crew's
    /// defaults (repeatable; to try a setting).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_property)]
    b7_source_option: Vec<(String, String)>,
    /// B7: a librdkafka property for crew's Kafka sinks, over crew's
    /// defaults (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_property)]
    b7_sink_option: Vec<(String, String)>,
    /// B8: records each run sends (default 200,000; --quick 20,000).
    #[arg(long, value_name = "N")]
    b8_records: Option<u64>,
    /// B8: rounds, each one run of every row (default 3; --quick 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100))]
    b8_repeat: Option<u64>,
    /// Only these implementations in the throughput and memory tables,
    /// comma-separated (e.g. `crew-async` alone, to profile it): crew,
    /// crew-batch, threadpool, rayon, crossbeam, single-thread,
    /// bare-threads, crew-async, tokio-semaphore, tokio-mpsc,
    /// buffer-unordered, bare-tasks, crew-run, spawn-blocking.
    #[arg(long, value_delimiter = ',', value_parser = parse_impl)]
    impls: Vec<Impl>,
    /// Async workloads: worker threads of the tokio runtime.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    runtime_threads: u64,
    /// Recorded runs per cell (after one unrecorded warm-up run).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Which run of a throughput cell to report: the fastest (`best`, the
    /// least disturbed on a shared machine) or the `median`.
    #[arg(long, value_enum, default_value_t = Stat::Best)]
    stat: Stat,
    /// Skip the unrecorded warm-up run of each throughput cell.
    #[arg(long)]
    no_warmup: bool,
    /// Write the markdown report to this file as well as to standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds one run of one cell may take before it counts as hung.
    #[arg(long, default_value_t = 120)]
    cell_timeout: u64,
    /// Measure B5 in this process instead of a fresh child per implementation.
    #[arg(long)]
    b5_in_process: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

fn parse_selection(s: &str) -> Result<Selection, String> {
    s.parse()
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.trim().is_empty())
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn parse_impl(s: &str) -> Result<Impl, String> {
    Impl::from_name(s.trim()).ok_or_else(|| format!("unknown implementation {s:?}"))
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Stat {
    Best,
    Median,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum B7Ordering {
    Key,
    Partition,
    Unordered,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Internal: one B5 measurement in a fresh process.
    #[command(name = B5_CHILD, hide = true)]
    B5Child {
        /// `<impl> <jobs> <workers>`
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::B5Child { args }) = &cli.command {
        return match b5::child_main(args) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("crew-bench {B5_CHILD}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crew-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut opts = if cli.quick {
        SuiteOptions::quick()
    } else {
        SuiteOptions::full()
    };
    if !cli.only.is_empty() {
        let chosen: Vec<Workload> = cli.only.iter().flat_map(|s| s.0.iter().copied()).collect();
        opts.workloads = Workload::ALL
            .into_iter()
            .filter(|w| chosen.contains(w))
            .collect();
    }
    let set = |field: &mut u64, value: Option<u64>| {
        if let Some(v) = value {
            *field = v.max(1);
        }
    };
    set(&mut opts.b1_jobs, cli.b1_jobs);
    set(&mut opts.b2_jobs, cli.b2_jobs);
    set(&mut opts.b3_jobs, cli.b3_jobs);
    set(&mut opts.b4_events, cli.b4_events);
    anyhow::ensure!(
        (0.0..=1.0).contains(&cli.b4_malformed),
        "--b4-malformed must be between 0.0 and 1.0, got {}",
        cli.b4_malformed
    );
    opts.b4_malformed = cli.b4_malformed;
    opts.b4_workers = cli.b4_workers as usize;
    opts.b4_batch = cli.b4_batch as usize;
    if let Some(dir) = cli.go_pixels.clone() {
        opts.b4_go_source = dir;
    }
    set(&mut opts.b5_jobs, cli.b5_jobs);
    set(&mut opts.b1_async_jobs, cli.b1_async_jobs);
    set(&mut opts.b3_async_jobs, cli.b3_async_jobs);
    set(&mut opts.offload_jobs, cli.offload_jobs);
    set(&mut opts.b7.events, cli.b7_events);
    if let Some(rounds) = cli.b7_repeat {
        // clap bounds it to 1..=100.
        opts.b7.repeat = rounds as usize;
    }
    opts.b7.ordering = match cli.b7_ordering {
        B7Ordering::Key => crew_pipeline::Ordering::Key,
        B7Ordering::Partition => crew_pipeline::Ordering::Partition,
        B7Ordering::Unordered => crew_pipeline::Ordering::Unordered,
    };
    opts.b7
        .source_options
        .extend(cli.b7_source_option.iter().cloned());
    opts.b7
        .sink_options
        .extend(cli.b7_sink_option.iter().cloned());
    set(&mut opts.b8.records, cli.b8_records);
    if let Some(rounds) = cli.b8_repeat {
        // clap bounds it to 1..=100.
        opts.b8.repeat = rounds as usize;
    }
    if !cli.b1_workers.is_empty() {
        opts.b1_workers = cli.b1_workers.iter().map(|&w| w as usize).collect();
    }
    if !cli.b1_async_workers.is_empty() {
        opts.b1_async_workers = cli.b1_async_workers.iter().map(|&w| w as usize).collect();
    }
    if let Some(secs) = cli.b6_secs {
        opts.b6_duration = Duration::try_from_secs_f64(secs.max(0.0))
            .with_context(|| format!("--b6-secs {secs}"))?;
    }
    anyhow::ensure!(
        cli.b6_load > 0.0 && cli.b6_load.is_finite(),
        "--b6-load must be a positive fraction, got {}",
        cli.b6_load
    );
    opts.b6_load = cli.b6_load;
    opts.b6_thread_pool = !cli.b6_async_only;
    opts.runtime_threads = cli.runtime_threads as usize;
    if !cli.impls.is_empty() {
        opts.impls = Some(cli.impls.clone());
    }
    opts.repeat = cli.repeat as usize;
    opts.statistic = match cli.stat {
        Stat::Best => Statistic::Best,
        Stat::Median => Statistic::Median,
    };
    opts.warmup = !cli.no_warmup;
    opts.cell_timeout = Duration::from_secs(cli.cell_timeout.max(1));
    if !cli.b5_in_process {
        let exe = std::env::current_exe().context("locating this executable for the B5 child")?;
        opts.b5_child = Some(vec![exe.into_os_string(), OsString::from(B5_CHILD)]);
    }

    let mut report = run_suite_with_progress(&opts, &mut print_progress);
    report.command = Some(command_line());
    let markdown = report.to_markdown();
    println!("{markdown}");
    if let Some(path) = &cli.out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn print_progress(p: &Progress) {
    let mut err = std::io::stderr().lock();
    let _ = match p {
        Progress::Started {
            workload,
            cell,
            run,
            of,
        } if *run == 0 => write!(err, "{workload} {cell} [warm-up] ... "),
        Progress::Started {
            workload,
            cell,
            run,
            of,
        } => write!(err, "{workload} {cell} [{run}/{of}] ... "),
        Progress::Finished { outcome, .. } => writeln!(err, "{outcome}"),
    };
    let _ = err.flush();
}

/// The command line as typed, with the executable shown by its file name.
fn command_line() -> String {
    let mut args = std::env::args();
    let exe = args
        .next()
        .map(|a| {
            PathBuf::from(&a)
                .file_name()
                .map_or(a.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "crew-bench".into());
    std::iter::once(exe)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
