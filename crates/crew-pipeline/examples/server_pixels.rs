//! The Server Pixels pipeline on the built-in event generator, no broker
//! needed: generator → parse → validate → consent → augment → NDJSON file,
//! with malformed and invalid events going to a dead-letter file.
//!
//! ```sh
//! cargo run --release -p crew-pipeline --example server_pixels
//! cargo run --release -p crew-pipeline --example server_pixels -- --events 1000000 --workers 2 --malformed 0.01
//! ```
//!
//! It prints the run's report and checks its own claims: every generated
//! line ended in exactly one of the output, the dead-letter file or the
//! dropped count; every malformed or invalid line is a dead letter with a
//! reason; the output file has one line per delivered event. It exits
//! non-zero if any claim fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{ensure, Context};
use clap::Parser;
use crew_pipeline::pixels::PixelsConfig;
use crew_pipeline::sinks::{FileSink, FileSinkConfig};
use crew_pipeline::sources::{Generator, GeneratorConfig};
use crew_pipeline::{Batching, Ordering, Pipeline, Settings};

#[derive(Parser)]
#[command(about = "The Server Pixels pipeline on generated events")]
struct Args {
    /// Events to generate.
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Stage workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Share of malformed lines (truncated JSON, not an object, invalid UTF-8, empty, oversize).
    #[arg(long, default_value_t = 0.01)]
    malformed: f64,
    /// Share of well-formed events that fail validation.
    #[arg(long, default_value_t = 0.01)]
    invalid: f64,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep per-client order (`key` ordering on client_id) instead of none.
    #[arg(long)]
    ordered: bool,
    /// Where to write; a temporary directory by default.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server_pixels: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let output = dir.join("partners.ndjson");
    let dead_letters = dir.join("dead-letters.ndjson");
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(&dead_letters);

    let pixels = PixelsConfig {
        // Oversize lines are generated at 64 KiB + 1 so the run stays small.
        max_bytes: 64 << 10,
        ..PixelsConfig::default()
    };
    let generator = Generator::new(GeneratorConfig {
        seed: args.seed,
        count: Some(args.events),
        malformed: args.malformed,
        invalid: args.invalid,
        oversize_bytes: (64 << 10) + 1,
        ..GeneratorConfig::default()
    })?;
    let settings = Settings {
        workers: args.workers,
        ordering: if args.ordered {
            Ordering::Key
        } else {
            Ordering::Unordered
        },
        batch: Batching {
            max_events: 1_000,
            ..Batching::default()
        },
        ..Settings::default()
    };
    let mut builder = Pipeline::builder()
        .settings(settings)
        .source(generator)
        .sink(FileSink::open(FileSinkConfig::new(&output))?)
        .dead_letter(FileSink::open(FileSinkConfig::new(&dead_letters))?);
    for (name, stage) in pixels.stages()? {
        builder = builder.arc_stage(name, stage, None);
    }
    let pipeline = builder.build()?;
    println!(
        "server_pixels: {} events ({:.1}% malformed, {:.1}% invalid), {} workers, {} ordering",
        args.events,
        args.malformed * 100.0,
        args.invalid * 100.0,
        args.workers,
        if args.ordered { "key" } else { "no" }
    );
    let report = pipeline.run();

    let secs = report.elapsed.as_secs_f64();
    println!("  read           {:>10}", report.read);
    println!(
        "  delivered      {:>10}  -> {}",
        report.delivered,
        output.display()
    );
    println!(
        "  dropped        {:>10}  {:?}",
        report.dropped, report.dropped_by_reason
    );
    println!(
        "  dead-lettered  {:>10}  {:?}  -> {}",
        report.dead_lettered,
        report.dead_lettered_by_reason,
        dead_letters.display()
    );
    println!("  abandoned      {:>10}", report.abandoned);
    println!("  committed      {:?}", report.committed);
    println!(
        "  elapsed        {secs:.3} s, {:.0} events/s",
        report.read as f64 / secs
    );

    ensure!(
        report.is_clean(),
        "the run did not end cleanly: {:?}",
        report.stopped_by
    );
    ensure!(
        report.read == args.events,
        "read {} of {} events",
        report.read,
        args.events
    );
    ensure!(
        report.read == report.delivered + report.dropped + report.dead_lettered + report.abandoned,
        "the report does not balance"
    );
    let output_lines = count_lines(&output)?;
    ensure!(
        output_lines == report.delivered,
        "the output has {output_lines} lines for {} delivered events",
        report.delivered
    );
    let reasons = dead_letter_reasons(&dead_letters)?;
    let dead_total: u64 = reasons.values().sum();
    ensure!(
        dead_total == report.dead_lettered,
        "the dead-letter file has {dead_total} records for {} dead-lettered events",
        report.dead_lettered
    );
    ensure!(
        reasons == report.dead_lettered_by_reason,
        "dead-letter reasons differ: file {reasons:?}, report {:?}",
        report.dead_lettered_by_reason
    );
    println!("server_pixels: every event accounted for (output + dead letters + dropped = read)");
    Ok(())
}

fn count_lines(path: &PathBuf) -> anyhow::Result<u64> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = 0;
    for line in BufReader::new(file).split(b'\n') {
        line?;
        lines += 1;
    }
    Ok(lines)
}

fn dead_letter_reasons(path: &PathBuf) -> anyhow::Result<BTreeMap<String, u64>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reasons = BTreeMap::new();
    for line in BufReader::new(file).lines() {
        let record: sonic_rs::Value = sonic_rs::from_str(&line?)?;
        let reason = sonic_rs::JsonValueTrait::as_str(&record["reason"])
            .context("a dead letter without a reason")?
            .to_owned();
        *reasons.entry(reason).or_default() += 1;
    }
    Ok(reasons)
}
