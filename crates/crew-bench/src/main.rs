//! `crew-bench`: runs crew's benchmark workloads beside its Rust peers and
//! prints (and optionally writes) a markdown report.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use crew_bench::{b5, run_suite_with_progress, Progress, Statistic, SuiteOptions, Workload};

/// Hidden subcommand through which the suite re-executes itself for B5.
const B5_CHILD: &str = "__b5-child";

/// Runs crew's thread-pool benchmark workloads (B1, B2, B3, B5 of
/// spec/bench.md) with crew beside threadpool, rayon and a crossbeam worker
/// loop, all in the same run.
#[derive(Debug, Parser)]
#[command(name = "crew-bench", version)]
struct Cli {
    /// Scaled-down job counts (÷10) for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Only these workloads, comma-separated (e.g. `B1,B3`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Workload>,
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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Stat {
    Best,
    Median,
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
        opts.workloads = cli.only.clone();
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
