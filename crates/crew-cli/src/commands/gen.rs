//! `crew gen`: Server Pixels events (NDJSON) for load tests, written by the
//! same [`PixelsEvents`] generator the `generator` source uses, so a file
//! made here holds exactly the lines a pipeline with the same seed and
//! shares would read. With `--kafka`, the same lines go to a topic instead,
//! one record each ([`kafka`]).

mod kafka;

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use anyhow::Context;
use crew_pipeline::sources::{GeneratorConfig, Pacer, PixelsEvents, WriteSummary};
use indicatif::{ProgressBar, ProgressStyle};

/// Lines per `write_ndjson` call: the progress bar moves once per chunk,
/// and each call buffers its writes (256 KiB at a time) on its own.
const CHUNK_LINES: u64 = 16_384;

/// Arguments of `crew gen`.
///
/// The lines are the `generator` source's for the same seed, clients and
/// shares: `crew gen --seed 7 --count 1000` writes what a pipeline with
/// `[source] type = "generator", seed = 7, count = 1000` reads.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many events to write.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// The same seed gives the same bytes.
    #[arg(long, default_value_t = GeneratorConfig::default().seed)]
    pub seed: u64,
    /// Events per second (paced by sleeping); leave out to write as fast as
    /// the output takes them.
    #[arg(long, value_name = "EVENTS_PER_SEC")]
    pub rate: Option<f64>,
    /// Share of lines, 0.0 to 1.0, that are not a JSON object; the first n
    /// lines hold exactly floor(n × SHARE) of them.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub malformed: f64,
    /// Share of lines, 0.0 to 1.0, that are JSON objects failing validation.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub invalid: f64,
    /// How many distinct `client_id`s (the event key).
    #[arg(long, default_value_t = GeneratorConfig::default().clients)]
    pub clients: u64,
    /// The length in bytes of the oversize malformed line (one in a hundred
    /// malformed lines); the default is one byte over the parse stage's
    /// default limit.
    #[arg(long, value_name = "BYTES", default_value_t = GeneratorConfig::default().oversize_bytes)]
    pub oversize_bytes: usize,
    /// Where to write: a file, or `-` for standard output.
    #[arg(long, short, value_name = "PATH", default_value = "-")]
    pub output: PathBuf,
    /// Write to Kafka instead, through these brokers (`host:port[,...]`):
    /// one record per event, its key the event's `client_id`, through an
    /// idempotent producer; crew gen exits once every record is
    /// acknowledged (non-zero if one is not), and always prints its summary.
    #[arg(
        long,
        value_name = "BROKERS",
        requires = "topic",
        conflicts_with = "output"
    )]
    pub kafka: Option<String>,
    /// The topic to write to (with `--kafka`).
    #[arg(long, value_name = "TOPIC", requires = "kafka")]
    pub topic: Option<String>,
    /// A librdkafka producer property, passed through (repeatable): for
    /// example `--kafka-option compression.type=lz4`. crew gen sets
    /// `message.timeout.ms=30000` and `linger.ms=5` unless told otherwise;
    /// `enable.idempotence` stays `true`.
    #[arg(
        long = "kafka-option",
        value_name = "KEY=VALUE",
        requires = "kafka",
        value_parser = kafka::parse_option
    )]
    pub kafka_options: Vec<(String, String)>,
}

impl Args {
    fn generator_config(&self) -> GeneratorConfig {
        GeneratorConfig {
            seed: self.seed,
            count: Some(self.count),
            rate: self.rate,
            clients: self.clients,
            malformed: self.malformed,
            invalid: self.invalid,
            oversize_bytes: self.oversize_bytes,
            ..GeneratorConfig::default()
        }
    }

    fn to_stdout(&self) -> bool {
        self.output.as_os_str() == "-"
    }
}

/// Runs `crew gen`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.generator_config();
    // Checks the shares, clients and oversize length too.
    let events = PixelsEvents::new(&config)?;
    let progress = progress_bar(args.count);
    if let (Some(brokers), Some(topic)) = (&args.kafka, &args.topic) {
        let target = kafka::Target {
            brokers,
            topic,
            options: &args.kafka_options,
        };
        let summary = kafka::write(events, &target, &args, &progress).inspect_err(|_| {
            progress.abandon();
        })?;
        progress.finish_and_clear();
        // Nothing else goes to the terminal, and the last line says every
        // record is acknowledged: always told.
        eprintln!(
            "{}, delivered to topic `{topic}` at {brokers}",
            describe(&summary)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let result = if args.to_stdout() {
        write(events, io::stdout().lock(), &args, &progress)
    } else {
        let file = File::create(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?;
        write(events, file, &args, &progress)
    };
    match result {
        Ok(summary) => {
            if !progress.is_hidden() {
                progress.finish_and_clear();
                eprintln!("{}", describe(&summary));
            }
            Ok(ExitCode::SUCCESS)
        }
        // The reader has all it wanted (`crew gen | head`): not an error.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
            progress.abandon();
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            progress.abandon();
            let target = if args.to_stdout() {
                "standard output".to_owned()
            } else {
                args.output.display().to_string()
            };
            Err(anyhow::Error::new(error).context(format!("cannot write to {target}")))
        }
    }
}

/// A bar on stderr when a person watches it; hidden when stderr is a file
/// or a pipe, where it would only be noise.
fn progress_bar(count: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(count);
    // The template is a constant: it can only fail if it is edited wrongly.
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} events · {rate} · eta {eta}")
    {
        bar.set_style(style.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} events/s", state.per_sec());
            },
        ));
    }
    bar
}

/// What was written, told on a terminal when the bar goes.
fn describe(summary: &WriteSummary) -> String {
    format!(
        "crew gen: {} lines, {:.1} MiB, {} malformed, {} invalid",
        summary.lines,
        summary.bytes as f64 / (1 << 20) as f64,
        summary.malformed,
        summary.invalid
    )
}

/// Writes the events in chunks through [`PixelsEvents::write_ndjson`], so
/// the lines, their buffering and their counts are the source's own; a paced
/// run hands over each chunk once it is due.
fn write(
    mut events: PixelsEvents,
    mut out: impl Write,
    args: &Args,
    progress: &ProgressBar,
) -> io::Result<WriteSummary> {
    let mut summary = WriteSummary::default();
    paced(args, progress, |chunk| -> io::Result<()> {
        summary += events.write_ndjson(&mut out, chunk)?;
        Ok(())
    })?;
    Ok(summary)
}

/// Calls `emit(n)` for consecutive chunks of `n` events until `args.count`
/// are out: as large as [`CHUNK_LINES`] when unpaced; when paced, each
/// chunk once it is due, holding everything due by then, so the stream
/// reaches its reader at the rate, not in lumps.
fn paced<E>(
    args: &Args,
    progress: &ProgressBar,
    mut emit: impl FnMut(u64) -> Result<(), E>,
) -> Result<(), E> {
    let mut pacer = args.rate.map(Pacer::new);
    let mut written = 0;
    while written < args.count {
        let left = args.count - written;
        let chunk = match &mut pacer {
            None => left.min(CHUNK_LINES),
            Some(pacer) => {
                let now = Instant::now();
                let due = pacer.due_at(written, now);
                if due > now {
                    // Pacing, not synchronization: nothing else will wake us.
                    thread::sleep(due - now);
                    continue;
                }
                let mut due_now = 1;
                while due_now < left.min(CHUNK_LINES) && pacer.due_at(written + due_now, now) <= now
                {
                    due_now += 1;
                }
                due_now
            }
        };
        emit(chunk)?;
        written += chunk;
        progress.set_position(written);
    }
    Ok(())
}
