//! `crew gen`: Server Pixels events (NDJSON) for load tests, written by the
//! same [`PixelsEvents`] generator the `generator` source uses, so a file
//! made here holds exactly the lines a pipeline with the same seed and
//! shares would read.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use anyhow::Context;
use crew_pipeline::sources::{GeneratorConfig, LineKind, Pacer, PixelsEvents};
use indicatif::{ProgressBar, ProgressStyle};

/// Bytes gathered before one write: large writes keep the syscall count low.
const FLUSH_AT: usize = 256 << 10;
/// Room for a typical line on top of [`FLUSH_AT`], so the buffer rarely grows.
const LINE_CAPACITY: usize = 1024;

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
                eprintln!("{summary}");
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
#[derive(Debug, Default)]
struct Summary {
    lines: u64,
    bytes: u64,
    malformed: u64,
    invalid: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "crew gen: {} lines, {:.1} MiB, {} malformed, {} invalid",
            self.lines,
            self.bytes as f64 / (1 << 20) as f64,
            self.malformed,
            self.invalid
        )
    }
}

fn write(
    mut events: PixelsEvents,
    mut out: impl Write,
    args: &Args,
    progress: &ProgressBar,
) -> io::Result<Summary> {
    let mut pacer = args.rate.map(Pacer::new);
    let mut summary = Summary::default();
    let mut buf = Vec::with_capacity(FLUSH_AT + LINE_CAPACITY);
    for n in 0..args.count {
        if let Some(pacer) = &mut pacer {
            let now = Instant::now();
            let due = pacer.due_at(n, now);
            if due > now {
                // Hand over what is due before waiting, so a paced stream
                // reaches its reader at the rate, not in 256 KiB lumps.
                drain(&mut out, &mut buf, &mut summary)?;
                out.flush()?;
                progress.set_position(n);
                // Pacing, not synchronization: nothing else will wake us.
                thread::sleep(due - now);
            }
        }
        let info = events.next_line(&mut buf);
        buf.push(b'\n');
        summary.lines += 1;
        match info.kind {
            LineKind::Valid => {}
            LineKind::Invalid(_) => summary.invalid += 1,
            LineKind::Malformed(_) => summary.malformed += 1,
        }
        if buf.len() >= FLUSH_AT {
            drain(&mut out, &mut buf, &mut summary)?;
            progress.set_position(n + 1);
        }
    }
    drain(&mut out, &mut buf, &mut summary)?;
    out.flush()?;
    progress.set_position(args.count);
    Ok(summary)
}

fn drain(out: &mut impl Write, buf: &mut Vec<u8>, summary: &mut Summary) -> io::Result<()> {
    out.write_all(buf)?;
    summary.bytes += buf.len() as u64;
    buf.clear();
    Ok(())
}
