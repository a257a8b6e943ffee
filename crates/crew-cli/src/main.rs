//! The `crew` binary: runs event pipelines from a TOML file, serves their
//! metrics, tests their configs, generates events and benchmarks.
//!
//! The layers, by folder: `config/` turns a TOML file into a wired
//! [`crew_pipeline::PipelineBuilder`]; `admin/` serves `/metrics`, `/health`
//! and `/ready`; `commands/` holds one module per subcommand.

mod admin;
mod commands;
mod config;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

// mimalloc instead of glibc's malloc: events are allocated on the source
// thread and freed on workers and the sink thread, and glibc's cross-thread
// frees and arena locks were ~15% of a stage worker's profile in B7. In
// alternating runs B7 did 79–96 k events/s with glibc and 104–118 k with
// mimalloc (docs/bench-kafka.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// crew: bounded, observable worker pools and the event pipelines built on
/// them.
///
/// Exit codes: 0 success (for `run`: every event read was finished and
/// committed); 1 an error (a bad config, a failed run, a failing config
/// test); 2 bad usage; 3 `run` stopped with events abandoned (the drain
/// deadline passed or a second signal stopped it: they were not committed
/// and the next run reads them again).
#[derive(Parser)]
#[command(name = "crew", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr: `text` (human-readable) or `json` (one object a
    /// line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, as RUST_LOG (which overrides it): `info`, `crew=debug`, ...
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline from a TOML file until its source ends or a signal
    /// stops it, serving /metrics, /health and /ready.
    Run(commands::run::Args),
    /// Check a pipeline file: parse it, build its stages, check that the
    /// input is a readable regular file (from its metadata and permissions)
    /// and that the outputs could be created, and Kafka settings against
    /// librdkafka's properties; it never writes, truncates or creates a file,
    /// and never connects to a broker.
    Validate(commands::validate::Args),
    /// Run a pipeline file's unit tests: inputs fed to named stages, and
    /// conditions on what comes out.
    Test(commands::test::Args),
    /// Write Server Pixels events (NDJSON) to a file, stdout or a Kafka
    /// topic.
    Gen(commands::gen::Args),
    /// Run the benchmark suite beside crew's peers, and the worker sweep.
    Bench(commands::bench::Args),
    /// Watch a running crew's metrics in the terminal.
    Top(commands::top::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log);
    let result = match cli.command {
        Command::Run(args) => commands::run::main(args),
        Command::Validate(args) => commands::validate::main(args),
        Command::Test(args) => commands::test::main(args),
        Command::Gen(args) => commands::gen::main(args),
        Command::Bench(args) => commands::bench::main(args),
        Command::Top(args) => commands::top::main(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("crew: {error:#}");
            ExitCode::FAILURE
        }
    }
}
