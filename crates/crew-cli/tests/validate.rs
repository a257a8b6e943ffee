//! `crew validate` on the example pipeline and on broken files: the real
//! binary, its exit code and what it prints.

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

/// Runs `crew validate FILE` in `dir`, with the variables the fixtures use
/// removed from the environment.
fn validate(file: &Path, dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crew"));
    command
        .arg("validate")
        .arg(file)
        .current_dir(dir)
        .env_remove("CREW_EVENTS")
        .env_remove("CREW_FIXTURE_OUT_DIR")
        .env_remove("PIXELS_SALT");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the crew binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Validates a broken fixture: exit 1, nothing on stdout, and the one error
/// line on stderr, which is returned.
fn broken(name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = validate(&fixture(name), dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1), "{name}: {output:?}");
    assert!(output.stdout.is_empty(), "{name}: {}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
    let file = fixture(name).display().to_string();
    assert!(
        stderr.starts_with(&file),
        "{name}: names the file: {stderr}"
    );
    stderr[file.len()..].trim_end().to_owned()
}

#[test]
fn the_pixels_example_is_valid_and_validating_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let example = workspace().join("examples/pixels.toml");
    let output = validate(&example, dir.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        text(&output.stdout),
        format!(
            "{}: ok (pipeline pixels: source generator (1000000 events, seed 1), 4 stages, \
             sink out/partners.ndjson, dead letters out/dead-letters.ndjson)\n",
            example.display()
        )
    );
    // The outputs are relative to the current directory; `validate` only
    // checked that `out/` could be created there.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let output = validate(&example, dir.path(), &[("CREW_EVENTS", "5000")]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(text(&output.stdout).contains("generator (5000 events, seed 1)"));
}

#[test]
fn an_unknown_key_is_named_with_its_line_and_the_allowed_keys() {
    assert_eq!(
        broken("unknown_key.toml"),
        ":8:1: key `stages[0].max_byte`: unknown field `max_byte`, expected one of \
         `type`, `name`, `workers`, `max_bytes`, `max_depth`"
    );
}

#[test]
fn a_wrong_type_is_named_with_what_was_expected() {
    assert_eq!(
        broken("wrong_type.toml"),
        ":4:9: key `source.count`: invalid type: string \"many\", expected u64"
    );
}

#[test]
fn an_unknown_stage_type_lists_the_known_ones() {
    assert_eq!(
        broken("unknown_stage_type.toml"),
        ":11:8: key `stages[1].type`: unknown stage type `json`, expected one of \
         `parse_json`, `validate`, `filter`, `edit`, `remap`"
    );
}

#[test]
fn a_missing_environment_variable_is_named_with_its_line() {
    assert_eq!(
        broken("missing_env.toml"),
        ":7:9: environment variable `CREW_FIXTURE_OUT_DIR` is not set \
         (write `${CREW_FIXTURE_OUT_DIR:-default}` to give a default)"
    );
    // Set, the file is valid, and the output path is the variable's.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = validate(
        &fixture("missing_env.toml"),
        dir.path(),
        &[("CREW_FIXTURE_OUT_DIR", out.to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(text(&output.stdout).contains(&format!("sink {}/events.ndjson", out.display())));
}

#[test]
fn a_bad_ordering_lists_the_orderings() {
    assert_eq!(
        broken("bad_ordering.toml"),
        ":4:12: key `pipeline.ordering`: unknown variant `by_key`, expected one of \
         `unordered`, `key`, `partition`"
    );
}

#[test]
fn duplicate_stage_names_are_refused() {
    let error = broken("duplicate_stage.toml");
    assert!(
        error.starts_with(
            ":10:1: key `stages[1].name`: stage name `parse` is already used by stages[0] (line 5)"
        ),
        "{error}"
    );
}

#[test]
fn a_remap_stage_that_cannot_be_built_is_named() {
    if cfg!(feature = "remap") {
        // The program is compiled by `validate`; VRL's diagnostic follows
        // on the next lines.
        let dir = tempfile::tempdir().unwrap();
        let file = fixture("bad_remap.toml");
        let output = validate(&file, dir.path(), &[]);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.starts_with(&format!(
                "{}:13:1: key `stages[1].program`: remap: `program` does not compile:\n",
                file.display()
            )),
            "{stderr}"
        );
    } else {
        assert_eq!(
            broken("bad_remap.toml"),
            ":12:8: key `stages[1].type`: stage type `remap` (VRL programs) needs crew built \
             with the `remap` feature (cargo build -p crew-cli --features remap)"
        );
    }
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = validate(&dir.path().join("nope.toml"), dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("nope.toml: cannot read the file"),
        "{output:?}"
    );
}
