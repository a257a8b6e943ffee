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

/// A pipeline reading `input` into blackholes, written in `dir`.
fn file_pipeline(dir: &Path, input: &Path, head: &str) -> PathBuf {
    let file = dir.join("p.toml");
    std::fs::write(
        &file,
        format!(
            "{head}\n[source]\ntype = \"file\"\npath = {:?}\n\
             [sink]\ntype = \"blackhole\"\n[dead_letter]\ntype = \"blackhole\"\n",
            input.display().to_string()
        ),
    )
    .unwrap();
    file
}

#[test]
fn huge_workers_are_refused_before_run_would_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, b"{}\n").unwrap();
    let file = file_pipeline(
        dir.path(),
        &input,
        "[pipeline]\nworkers = 18446744073709551615",
    );
    let output = validate(&file, dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        text(&output.stderr),
        format!(
            "{}:2:11: key `pipeline.workers`: must be at most 4096, not 18446744073709551615\n",
            file.display()
        )
    );
}

#[test]
fn a_fifo_input_is_refused_without_blocking_or_reading_it() {
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path this test owns.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // Both ends held here (O_RDWR does not wait for a peer): a crew that
    // opened the FIFO would not block on it, so this test fails rather than
    // hangs if it does; what is written stays in the pipe unless crew reads.
    let mut ends = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let line = b"{\"a\":1}\n";
    ends.write_all(line).unwrap();
    let file = file_pipeline(dir.path(), &fifo, "");
    let output = validate(&file, dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}:4:1: key `source.path`: {} is not a regular file",
            file.display(),
            fifo.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("type = \"stdin\""), "{stderr}");
    let mut unread = vec![0; line.len()];
    ends.read_exact(&mut unread).unwrap();
    assert_eq!(unread, line, "validate consumed nothing");
}

#[test]
fn the_help_says_what_validate_reads() {
    let output = Command::new(env!("CARGO_BIN_EXE_crew"))
        .args(["validate", "--help"])
        .output()
        .unwrap();
    let help = text(&output.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!help.contains("without opening any input"), "{help}");
    assert!(
        help.contains("never writes, truncates or creates"),
        "{help}"
    );
}
