//! `crew gen`, run as a user runs it: the real binary, its files and pipes.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crew_pipeline::sources::{GeneratorConfig, PixelsEvents};

fn crew(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crew"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("crew runs")
}

/// Runs `crew gen ARGS --output FILE` and returns the file's bytes.
fn gen_to_file(dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let mut all = vec!["gen"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", path.to_str().unwrap()]);
    let output = crew(&all);
    assert!(
        output.status.success(),
        "crew {all:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Not a terminal: no progress bar, and nothing else to say.
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty());
    std::fs::read(path).unwrap()
}

/// What `PixelsEvents` writes in-process for the same settings.
fn in_process(config: &GeneratorConfig, count: u64) -> Vec<u8> {
    let mut out = Vec::new();
    PixelsEvents::new(config)
        .unwrap()
        .write_ndjson(&mut out, count)
        .unwrap();
    out
}

fn is_json_object(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|v| v.is_object())
}

#[test]
fn a_file_of_events_with_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (count, share) = (1000u64, 0.1);
    let bytes = gen_to_file(
        dir.path(),
        "a.ndjson",
        &["--count", "1000", "--seed", "7", "--malformed", "0.1"],
    );
    assert_eq!(bytes.last(), Some(&b'\n'));
    let lines: Vec<&[u8]> = bytes[..bytes.len() - 1].split(|&b| b == b'\n').collect();
    assert_eq!(lines.len() as u64, count);
    let not_objects = lines.iter().filter(|line| !is_json_object(line)).count();
    // The generator's documented count: floor(n × share), exactly.
    assert_eq!(not_objects as u64, (count as f64 * share).floor() as u64);

    let again = gen_to_file(
        dir.path(),
        "b.ndjson",
        &["--count", "1000", "--seed", "7", "--malformed", "0.1"],
    );
    assert!(again == bytes, "the same seed gives the same bytes");
    let other = gen_to_file(
        dir.path(),
        "c.ndjson",
        &["--count", "1000", "--seed", "8", "--malformed", "0.1"],
    );
    assert!(other != bytes, "another seed gives other bytes");
    assert_eq!(other.iter().filter(|&&b| b == b'\n').count(), 1000);
}

#[test]
fn the_cli_adds_nothing_to_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = gen_to_file(
        dir.path(),
        "g.ndjson",
        &[
            "--count",
            "3000",
            "--seed",
            "11",
            "--malformed",
            "0.02",
            "--invalid",
            "0.03",
            "--clients",
            "50",
            "--oversize-bytes",
            "2000",
        ],
    );
    let config = GeneratorConfig {
        seed: 11,
        malformed: 0.02,
        invalid: 0.03,
        clients: 50,
        oversize_bytes: 2000,
        ..GeneratorConfig::default()
    };
    assert!(bytes == in_process(&config, 3000));
    // Invalid lines are still JSON objects: only the malformed ones are not.
    let not_objects = bytes
        .split(|&b| b == b'\n')
        .take(3000)
        .filter(|line| !is_json_object(line))
        .count();
    assert_eq!(not_objects, (3000.0 * 0.02f64).floor() as usize);
}

#[test]
fn defaults_are_the_generator_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = gen_to_file(dir.path(), "d.ndjson", &["--count", "200"]);
    assert!(bytes == in_process(&GeneratorConfig::default(), 200));
}

#[test]
fn standard_output_holds_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = gen_to_file(dir.path(), "s.ndjson", &["--count", "500", "--seed", "3"]);
    for args in [
        &["gen", "--count", "500", "--seed", "3"][..],
        &["gen", "--count", "500", "--seed", "3", "--output", "-"][..],
    ] {
        let output = crew(args);
        assert!(output.status.success());
        assert!(output.stdout == file, "{args:?}");
        assert!(output.stderr.is_empty());
    }
}

#[test]
fn a_paced_run_writes_the_same_lines() {
    let dir = tempfile::tempdir().unwrap();
    let paced = gen_to_file(
        dir.path(),
        "p.ndjson",
        &["--count", "40", "--seed", "5", "--rate", "2000"],
    );
    let config = GeneratorConfig {
        seed: 5,
        ..GeneratorConfig::default()
    };
    assert!(paced == in_process(&config, 40));
}

#[test]
fn a_reader_that_stops_early_ends_it_quietly() {
    // Far more than a pipe holds: crew is still writing when the reader
    // goes away, and must take the broken pipe as the end, not a failure.
    let mut child = Command::new(env!("CARGO_BIN_EXE_crew"))
        .args(["gen", "--count", "10000000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 4096];
    stdout.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"{\"event_id\":\""));
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn bad_settings_are_refused() {
    let output = crew(&["gen", "--count", "10", "--malformed", "1.5"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("malformed"), "{stderr}");
    assert!(output.stdout.is_empty());

    let output = crew(&["gen", "--count", "10", "--clients", "0"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("clients"));

    let output = crew(&["gen", "--count", "ten"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");

    let output = crew(&["gen", "--count", "10", "--rate", "0"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("rate"));

    let output = crew(&[
        "gen",
        "--count",
        "10",
        "--output",
        "/nonexistent-dir/events.ndjson",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent-dir/events.ndjson"));
}
