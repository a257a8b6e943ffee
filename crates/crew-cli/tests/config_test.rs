//! `crew test` on the example pipeline's tests and on tests that must fail:
//! the real binary, its exit code and what it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn crew_test(args: &[&Path]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_crew"))
        .arg("test")
        .args(args)
        .current_dir(dir.path())
        .env_remove("CREW_EVENTS")
        .env_remove("PIXELS_SALT")
        .output()
        .expect("the crew binary runs");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "`crew test` writes nothing"
    );
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_pixels_examples_tests_pass() {
    let example = workspace().join("examples/pixels.toml");
    let output = crew_test(&[&example]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.starts_with("running 7 tests from "), "{stdout}");
    assert!(stdout.contains("pixels.tests.toml\n"), "{stdout}");
    assert!(stdout.contains("test no marketing consent is dropped ... ok\n"));
    assert_eq!(stdout.matches(" ... ok\n").count(), 7, "{stdout}");
    assert!(stdout.ends_with("\n7 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn wrong_expectations_fail_with_a_diff() {
    let example = workspace().join("examples/pixels.toml");
    let tests = fixture("wrong.tests.toml");
    let output = crew_test(&[&example, Path::new("--tests"), &tests]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("test right: a consenting event is delivered ... ok\n"));
    assert!(stdout.contains("test wrong partner ... FAILED\n"));
    assert!(stdout.contains("test wrong outcome: this one is dropped ... FAILED\n"));
    // Where the failing test is, what differs, and a line diff.
    assert!(stdout.contains(&format!(
        "---- wrong partner ({}:12) ----\nfield `partner`: expected \"meta\", got \"pinterest\"\n--- expected\n+++ actual\n",
        tests.display()
    )), "{stdout}");
    assert!(stdout.contains("\n-    \"partner\": \"meta\",\n+    \"partner\": \"pinterest\",\n     \"context.ip\": <absent>\n"), "{stdout}");
    // The event the stages delivered, for context.
    assert!(stdout.contains("output:\n{\n"), "{stdout}");
    assert!(stdout.contains("outcome: expected delivered, got dropped\n"));
    assert!(stdout.contains("-  \"outcome\": \"delivered\"\n+  \"outcome\": \"dropped\",\n+  \"stage\": \"consent\",\n+  \"reason\": \"consent\"\n"), "{stdout}");
    assert!(stdout.ends_with("\n1 passed, 2 failed\n"), "{stdout}");
}

#[test]
fn a_tests_file_naming_an_unknown_stage_is_an_error() {
    let example = workspace().join("examples/pixels.toml");
    let tests = fixture("bad_stage.tests.toml");
    let output = crew_test(&[&example, Path::new("--tests"), &tests]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}:4:1: key `tests[0].stages`: the pipeline has no stage `enrich`; its stages are \
             `parse`, `validate`, `consent`, `augment`",
            tests.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_pipeline_without_a_tests_file_says_so() {
    let pipeline = fixture("bad_ordering.toml");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("lonely.toml");
    std::fs::copy(&pipeline, &copy).unwrap();
    std::fs::write(
        &copy,
        std::fs::read_to_string(&pipeline)
            .unwrap()
            .replace("by_key", "key"),
    )
    .unwrap();
    let output = crew_test(&[&copy]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("lonely.tests.toml: no tests file for"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_toml_datetime_in_a_test_is_an_error_naming_its_key() {
    let example = workspace().join("examples/pixels.toml");
    let tests = fixture("datetime.tests.toml");
    let output = crew_test(&[&example, Path::new("--tests"), &tests]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    assert_eq!(
        text(&output.stderr),
        format!(
            "{}:4:72: key `tests[0].input_json.ts`: a TOML datetime is not a value crew \
             reads: write dates as strings: \"1979-05-27T07:32:00Z\"\n",
            tests.display()
        )
    );
}
