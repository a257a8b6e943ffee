//! A real crash: the Server Pixels pipeline (file source with a checkpoint →
//! stages → file sink) runs in a child process that is killed with SIGKILL
//! after a random number of commits, then restarted. After the restart the
//! output holds every event_id a clean run outputs (at-least-once: nothing
//! lost), and the duplicates are at most the in-flight budget.
//!
//! The child is this same test binary, re-run with `CREW_CRASH_CHILD` set:
//! [`crash_child`] is its entry point and does nothing in a normal test run.
//! The parent learns when to kill from the child's stdout (one line per
//! commit), so no sleep decides anything.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crew_pipeline::sinks::{Blackhole, FileSink, FileSinkConfig};
use crew_pipeline::sources::{FileSource, FileSourceConfig, GeneratorConfig, PixelsEvents};
use crew_pipeline::{
    Batching, Budget, Offset, Partition, Pipeline, ReadBatch, ReadStatus, Report, Settings, Source,
    SourceError,
};

const CHILD_ENV: &str = "CREW_CRASH_CHILD";
const EVENTS: u64 = 40_000;
const BUDGET_EVENTS: usize = 4_000;

/// Wraps the file source and prints each commit, flushed, so the parent can
/// kill at a commit boundary of its choosing (the kill then lands while the
/// child goes on working).
struct Announcing(FileSource);

impl Source for Announcing {
    fn read(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, SourceError> {
        self.0.read(batch)
    }

    fn commit(&mut self, done_through: &[(Partition, Offset)]) -> Result<(), SourceError> {
        self.0.commit(done_through)?;
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "commit {done_through:?}");
        let _ = out.flush();
        Ok(())
    }
}

fn settings() -> Settings {
    Settings {
        workers: 2,
        batch: Batching {
            max_events: 200,
            ..Batching::default()
        },
        budget: Budget {
            max_events: BUDGET_EVENTS,
            ..Budget::default()
        },
        commit_interval: std::time::Duration::from_millis(2),
        ..Settings::default()
    }
}

/// Runs the pixels pipeline from `input` to `output` (appending), resuming
/// from `checkpoint` when given.
fn run_pipeline(
    input: &Path,
    checkpoint: Option<PathBuf>,
    output: &Path,
    announce: bool,
) -> Report {
    let mut source_config = FileSourceConfig::new(input);
    source_config.checkpoint = checkpoint;
    let source = FileSource::open(source_config).expect("opening the input");
    let mut builder = Pipeline::builder()
        .settings(settings())
        .sink(FileSink::open(FileSinkConfig::new(output)).expect("opening the output"))
        .dead_letter(Blackhole::default());
    builder = if announce {
        builder.source(Announcing(source))
    } else {
        builder.source(source)
    };
    for (name, stage) in crew_pipeline::pixels::stages() {
        builder = builder.arc_stage(name, stage, None);
    }
    builder.build().expect("building the pipeline").run()
}

/// The child's entry point (see the module docs); a no-op unless
/// `CREW_CRASH_CHILD` names the work directory.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let report = run_pipeline(
        &dir.join("input.ndjson"),
        Some(dir.join("input.checkpoint")),
        &dir.join("output.ndjson"),
        true,
    );
    assert!(report.is_clean(), "{report:?}");
}

fn event_ids(path: &Path) -> HashMap<String, u32> {
    let file = std::fs::File::open(path).expect("opening an output");
    let mut ids = HashMap::new();
    for line in BufReader::new(file).lines() {
        let line = line.expect("reading an output");
        let value: sonic_rs::Value = sonic_rs::from_str(&line).expect("an output line is JSON");
        let id = sonic_rs::JsonValueTrait::as_str(&value["event_id"])
            .expect("an output line has an event_id")
            .to_owned();
        *ids.entry(id).or_default() += 1;
    }
    ids
}

fn spawn_child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the child")
}

#[test]
fn kill_9_then_restart_loses_nothing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let input = dir.path().join("input.ndjson");
    let file = std::fs::File::create(&input).expect("creating the input");
    let mut events = PixelsEvents::new(&GeneratorConfig {
        seed: 7,
        ..GeneratorConfig::default()
    })
    .expect("a generator");
    events
        .write_ndjson(std::io::BufWriter::new(file), EVENTS)
        .expect("writing the input");

    // What a clean run outputs: the set every crash-and-restart must reach.
    let clean_output = dir.path().join("clean.ndjson");
    let clean = run_pipeline(&input, None, &clean_output, false);
    assert!(clean.is_clean(), "{clean:?}");
    let expected = event_ids(&clean_output);
    assert_eq!(expected.len() as u64, clean.delivered);

    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let kill_after = rng.usize(1..=40);
    eprintln!("seed {seed}: SIGKILL after {kill_after} commits");

    let mut child = spawn_child(dir.path());
    let stdout = child.stdout.take().expect("the child's stdout");
    let mut commits = 0;
    let mut lines = BufReader::new(stdout).lines();
    while commits < kill_after {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("commit ") => commits += 1,
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("reading the child's stdout: {error}"),
            None => break,
        }
    }
    child.kill().expect("SIGKILL to the child");
    let status = child.wait().expect("reaping the child");
    assert!(
        !status.success(),
        "the child finished all {EVENTS} events before {kill_after} commits; the crash never happened"
    );
    let before_restart = event_ids(&dir.path().join("output.ndjson"));
    assert!(
        before_restart.len() < expected.len(),
        "the child had already delivered everything when it was killed"
    );

    // The restart resumes from the checkpoint and runs to the end.
    let mut child = spawn_child(dir.path());
    let stdout = child.stdout.take().expect("the child's stdout");
    for line in BufReader::new(stdout).lines() {
        line.expect("reading the child's stdout");
    }
    let status = child.wait().expect("reaping the child");
    assert!(status.success(), "the restarted child failed: {status}");

    let after = event_ids(&dir.path().join("output.ndjson"));
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !after.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} event_ids lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    let unexpected = after
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .count();
    assert_eq!(
        unexpected, 0,
        "the output holds event_ids a clean run does not produce"
    );
    let duplicates: u32 = after.values().map(|n| n - 1).sum();
    assert!(
        duplicates as usize <= BUDGET_EVENTS,
        "{duplicates} duplicates; at most the in-flight budget ({BUDGET_EVENTS}) may be read twice"
    );
    eprintln!(
        "killed after {kill_after} commits with {} of {} delivered; after the restart: {} duplicates",
        before_restart.len(),
        expected.len(),
        duplicates
    );
}
