//! `crew run FILE.toml`: wires the pipeline, serves the admin endpoints,
//! turns signals into a drain, and prints a summary at the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;

use anyhow::Context as _;
use crew_pipeline::{Phase, PipelineHandle, Report, StopCause};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::admin::AdminListener;
use crate::commands::summary::Summary;
use crate::config;

/// Exit code of a run that stopped with events abandoned (not committed).
pub const EXIT_ABANDONED: u8 = 3;

/// Arguments of `crew run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline file.
    pub file: PathBuf,
    /// Serve the admin endpoints here instead of the file's `[admin]
    /// listen` (port 0 picks a free port; the address is logged).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_admin")]
    pub admin: Option<SocketAddr>,
    /// Serve no admin endpoints.
    #[arg(long)]
    pub no_admin: bool,
}

/// Runs `crew run`.
///
/// Exit codes: 0 when every event read was finished and committed; 3 when
/// the run stopped with events abandoned (they are read again next time);
/// 1 when the pipeline failed or could not start.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.file)?;
    let listen = if args.no_admin {
        None
    } else {
        args.admin.or(config.admin.listen)
    };
    // Bind before wiring: wiring opens (and may truncate) the outputs, which
    // must not happen when a second instance is started by mistake and its
    // port is taken.
    let admin = listen.map(AdminListener::bind).transpose()?;
    let wired = config
        .wire()
        .with_context(|| format!("wiring {}", args.file.display()))?;
    let pipeline = wired
        .builder
        .build()
        .with_context(|| format!("building {}", args.file.display()))?;
    let handle = pipeline.handle();
    let admin = admin
        .map(|admin| admin.serve(&config.name, handle.clone(), &wired.stats))
        .transpose()?;
    watch_signals(handle.clone(), config.settings.drain_timeout)?;

    tracing::info!(
        pipeline = %config.name,
        source = %wired.source,
        workers = config.settings.workers,
        "pipeline running"
    );
    let report = pipeline.run();

    let summary = Summary {
        pipeline: &config.name,
        report: &report,
        outputs: &wired.outputs,
    };
    // The summary is for a person; when the events themselves go to stdout
    // it goes to stderr, so it never mixes into the data.
    if wired.outputs.iter().any(|(_, place)| place == "stdout") {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    // The server stays up until the summary is out, so a last scrape sees
    // the final counters; stopping it takes at most about a second.
    drop(admin);
    Ok(exit_code(&report))
}

/// The run's exit code, as documented on [`main`].
fn exit_code(report: &Report) -> ExitCode {
    match &report.stopped_by {
        StopCause::Failed(message) => {
            tracing::error!(%message, "the pipeline failed");
            ExitCode::FAILURE
        }
        _ if report.abandoned > 0 || report.commit_error.is_some() => {
            ExitCode::from(EXIT_ABANDONED)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// SIGTERM or SIGINT starts a drain; a second one stops at once (finished
/// events are still committed).
fn watch_signals(handle: PipelineHandle, drain_timeout: std::time::Duration) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")?;
    thread::Builder::new()
        .name("crew-signals".to_owned())
        .spawn(move || {
            let mut received = 0;
            for signal in signals.forever() {
                received += 1;
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                if handle.phase() == Phase::Stopped {
                    tracing::info!(signal = name, "the run has ended; exiting");
                } else if received == 1 {
                    tracing::info!(
                        signal = name,
                        deadline = ?drain_timeout,
                        "draining in-flight events; send the signal again to stop at once"
                    );
                    handle.shutdown();
                } else {
                    tracing::warn!(
                        signal = name,
                        "stopping at once; unfinished events are not committed"
                    );
                    handle.shutdown_now();
                }
            }
        })
        .context("spawning the signal thread")?;
    Ok(())
}
