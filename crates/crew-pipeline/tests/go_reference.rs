//! Equivalence with the Go reference (`shared/anchors/go-pixels`): on the
//! same generated file, with malformed and invalid lines among the events,
//! crew's Server Pixels pipeline delivers the same set of `event_id`s as Go,
//! and ends as many events delivered, dropped and failed; every dead letter
//! carries its reason.
//!
//! The test builds go-pixels with a Go toolchain: `CREW_GO` (the path to a
//! `go` executable), else `go` on the `PATH`, else `/tmp/go/bin/go`. The
//! reference's source is `CREW_GO_PIXELS`, else `shared/anchors/go-pixels`
//! beside the workspace. **Without the reference's source the test is
//! skipped** (it prints why and passes): it is not part of this repository.
//! **Without a toolchain it is skipped too, except when the `CI` environment
//! variable is set** (to anything but empty, `0` or `false`): CI installs Go,
//! so there a missing toolchain is a failure, not a silent skip.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crew_pipeline::pixels::PixelsConfig;
use crew_pipeline::sinks::{FileMode, FileSink, FileSinkConfig};
use crew_pipeline::sources::{FileSource, FileSourceConfig, GeneratorConfig, PixelsEvents};
use crew_pipeline::{Pipeline, Settings};
use sonic_rs::JsonValueTrait;

const EVENTS: u64 = 50_000;
/// The parse stage's limit here: small, so that the generator's oversize
/// lines (one in a hundred malformed ones) stay small too.
const MAX_BYTES: usize = 8 << 10;

/// How go-pixels ended the events: its printed `ok`, `dropped`, `failed`.
#[derive(Debug, PartialEq, Eq)]
struct GoCounts {
    events: u64,
    ok: u64,
    dropped: u64,
    failed: u64,
}

#[test]
fn crew_delivers_the_same_events_as_the_go_reference() {
    let go_binary_dir = tempfile::tempdir().expect("a temp dir");
    let Some(go_pixels) = build_go_pixels(go_binary_dir.path()) else {
        return;
    };

    let dir = tempfile::tempdir().expect("a temp dir");
    let input = dir.path().join("events.ndjson");
    let generator = GeneratorConfig {
        seed: 11,
        malformed: 0.10,
        invalid: 0.05,
        // One byte over the parse stage's limit, as the default pair is.
        oversize_bytes: MAX_BYTES + 1,
        ..GeneratorConfig::default()
    };
    let summary = {
        let mut events = PixelsEvents::new(&generator).expect("a valid generator config");
        let mut out = BufWriter::new(File::create(&input).expect("create the input"));
        let summary = events
            .write_ndjson(&mut out, EVENTS)
            .expect("write the input");
        out.flush().expect("flush the input");
        summary
    };
    assert_eq!(summary.lines, EVENTS);
    assert_eq!(summary.malformed, EVENTS / 10);
    assert!(summary.invalid > 0);

    // crew: file → the four stages → file, dead letters to a file.
    let crew_out = dir.path().join("crew.ndjson");
    let crew_dead = dir.path().join("crew-dead.ndjson");
    let config = PixelsConfig {
        max_bytes: MAX_BYTES,
        ..PixelsConfig::default()
    };
    let mut builder = Pipeline::builder()
        .settings(Settings {
            workers: 2,
            ..Settings::default()
        })
        .source(FileSource::open(FileSourceConfig::new(&input)).expect("open the input"));
    for (name, stage) in config.stages().expect("valid pixels settings") {
        builder = builder.arc_stage(name, stage, None);
    }
    let report = builder
        .sink(FileSink::open(truncating(&crew_out)).expect("open the output"))
        .dead_letter(FileSink::open(truncating(&crew_dead)).expect("open the dead letters"))
        .build()
        .expect("a valid pipeline")
        .run();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.read, EVENTS);

    // Go, on the same file.
    let go_out = dir.path().join("go.ndjson");
    let go = run_go_pixels(&go_pixels, &input, &go_out);
    assert_eq!(go.events, EVENTS, "go-pixels read every line");

    assert_eq!(
        (report.delivered, report.dropped, report.dead_lettered),
        (go.ok, go.dropped, go.failed),
        "crew's delivered/dropped/dead-lettered against Go's ok/dropped/failed"
    );
    // Every broken line, and nothing else, failed: malformed ones to parse,
    // invalid ones to validation.
    let expected_dead = BTreeMap::from([
        ("invalid".to_owned(), summary.invalid),
        ("parse".to_owned(), summary.malformed),
    ]);
    assert_eq!(report.dead_lettered_by_reason, expected_dead);

    let crew_ids = event_ids(&crew_out);
    let go_ids = event_ids(&go_out);
    assert_eq!(crew_ids.len() as u64, report.delivered);
    if crew_ids != go_ids {
        let only_crew: Vec<_> = crew_ids.difference(&go_ids).take(5).collect();
        let only_go: Vec<_> = go_ids.difference(&crew_ids).take(5).collect();
        panic!(
            "the delivered event_ids differ: {} only in crew's output (first: {only_crew:?}), {} only \
             in Go's (first: {only_go:?})",
            crew_ids.difference(&go_ids).count(),
            go_ids.difference(&crew_ids).count()
        );
    }

    // Every dead letter says why.
    let dead = std::fs::read_to_string(&crew_dead).expect("read the dead letters");
    let mut dead_letters = 0u64;
    for (n, line) in dead.lines().enumerate() {
        let record: sonic_rs::Value = sonic_rs::from_str(line)
            .unwrap_or_else(|e| panic!("dead letter {n} is not JSON ({e}): {line}"));
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "dead letter {n} has no reason: {line}");
        dead_letters += 1;
    }
    assert_eq!(dead_letters, report.dead_lettered);
}

fn truncating(path: &Path) -> FileSinkConfig {
    FileSinkConfig {
        mode: FileMode::Truncate,
        ..FileSinkConfig::new(path)
    }
}

/// The `event_id` of every line of an NDJSON output; each must be there,
/// once.
fn event_ids(path: &Path) -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut ids = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let value: sonic_rs::Value = sonic_rs::from_str(line)
            .unwrap_or_else(|e| panic!("{} line {n} is not JSON ({e})", path.display()));
        let id = value["event_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{} line {n} has no event_id", path.display()));
        assert!(
            ids.insert(id.to_owned()),
            "{} delivers {id} twice",
            path.display()
        );
    }
    ids
}

/// Whether this is a CI run, where a missing toolchain must fail the test.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Skips (returns `None`) or, in CI, fails, saying why.
fn unavailable(why: String) -> Option<PathBuf> {
    if in_ci() {
        panic!("CI is set, so the Go reference must run, but {why}");
    }
    eprintln!("skipping the Go equivalence test: {why} (set CI to make this a failure)");
    None
}

/// The Go toolchain: `CREW_GO`, else `go` on the `PATH`, else
/// `/tmp/go/bin/go`.
fn find_go() -> Result<PathBuf, String> {
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
        if let Some(go) = std::env::split_paths(&path)
            .map(|dir| dir.join("go"))
            .find(|go| go.is_file())
        {
            return Ok(go);
        }
    }
    let fallback = PathBuf::from("/tmp/go/bin/go");
    if fallback.is_file() {
        return Ok(fallback);
    }
    Err(
        "no Go toolchain: CREW_GO is not set, there is no `go` on the PATH, and /tmp/go/bin/go \
         does not exist"
            .to_owned(),
    )
}

/// Builds go-pixels into `dir`; `None` when the test is to be skipped.
fn build_go_pixels(dir: &Path) -> Option<PathBuf> {
    let go = match find_go() {
        Ok(go) => go,
        Err(why) => return unavailable(why),
    };
    let source = std::env::var_os("CREW_GO_PIXELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/anchors/go-pixels")
        });
    if !source.join("main.go").is_file() {
        // The reference lives beside the repository, not in it; a checkout
        // without it cannot run this comparison, in CI or not. The
        // pipeline's own bad-input test still checks every count.
        eprintln!(
            "skipping the Go equivalence test: the Go reference's source is not at {} \
             (set CREW_GO_PIXELS)",
            source.display()
        );
        return None;
    }
    let binary = dir.join("go-pixels");
    // The build cache lives in cargo's target directory, so that only the
    // first run pays for compiling Go's standard library (about 25 s).
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache");
    let output = Command::new(&go)
        .current_dir(&source)
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", &cache)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", go.display()));
    // A toolchain that is there but cannot build the reference is a failure
    // everywhere, not a skip.
    assert!(
        output.status.success(),
        "`{} build` in {} failed: {}",
        go.display(),
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(binary)
}

/// Runs go-pixels on `input` with 2 workers and reads its counts.
fn run_go_pixels(binary: &Path, input: &Path, out: &Path) -> GoCounts {
    let output = Command::new(binary)
        .arg("-in")
        .arg(input)
        .arg("-out")
        .arg(out)
        .args(["-workers", "2"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "go-pixels failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // go-pixels workers=2 events=… ok=… dropped=… failed=… wall=…s rate=… ev/s
    let line = stdout
        .lines()
        .find(|l| l.starts_with("go-pixels "))
        .unwrap_or_else(|| panic!("go-pixels printed no result line: {stdout:?}"));
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number `{key}=` in {line:?}"))
    };
    GoCounts {
        events: field("events"),
        ok: field("ok"),
        dropped: field("dropped"),
        failed: field("failed"),
    }
}
