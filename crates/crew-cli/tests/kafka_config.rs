//! `crew validate` and `crew test` on Kafka pipelines: the real binary, no
//! broker (validating must not even try to reach one).

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> PathBuf {
    workspace().join("examples/pixels-kafka.toml")
}

/// Variables the example reads, removed so its defaults apply.
const EXAMPLE_VARIABLES: &[&str] = &[
    "CREW_KAFKA_BROKERS",
    "CREW_INPUT_TOPIC",
    "CREW_OUTPUT_TOPIC",
    "CREW_DEAD_LETTER_TOPIC",
    "CREW_GROUP",
    "CREW_ADMIN_LISTEN",
    "CREW_KAFKA_SESSION_TIMEOUT_MS",
    "CREW_KAFKA_HEARTBEAT_INTERVAL_MS",
    "PIXELS_SALT",
];

fn crew(args: &[&str], file: &Path, dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crew"));
    command.args(args).arg(file).current_dir(dir);
    for name in EXAMPLE_VARIABLES {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the crew binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_kafka_example_is_valid_without_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let output = crew(&["validate"], &example(), dir.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "{}: ok (pipeline pixels-kafka: source kafka topic pixels (group crew-pixels, \
             brokers 127.0.0.1:9092), 4 stages, sink kafka topic pixels-out (brokers \
             127.0.0.1:9092), dead letters kafka topic pixels-dead (brokers 127.0.0.1:9092))\n",
            example().display()
        )
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn validating_never_connects_to_the_brokers() {
    // A listener that never accepts: a client that connected would sit in
    // its backlog, and `accept` would hand it over.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let brokers = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = crew(
        &["validate"],
        &example(),
        dir.path(),
        &[
            ("CREW_KAFKA_BROKERS", &brokers),
            ("CREW_INPUT_TOPIC", "in"),
            ("CREW_OUTPUT_TOPIC", "out"),
            ("CREW_DEAD_LETTER_TOPIC", "dead"),
            ("CREW_GROUP", "g"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "source kafka topic in (group g, brokers {brokers})"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("dead letters kafka topic dead"), "{stdout}");
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("crew validate connected to the broker: {other:?}"),
    }
}

/// The example with `line` added after the line `after`, in a temporary
/// directory; returns the file and the added line's number.
fn edited(dir: &Path, after: &str, line: &str) -> (PathBuf, usize) {
    let original = std::fs::read_to_string(example()).unwrap();
    let mut lines: Vec<&str> = original.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == after)
        .unwrap_or_else(|| panic!("no line `{after}` in the example"));
    lines.insert(at + 1, line);
    let file = dir.join("edited.toml");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    (file, at + 2)
}

/// `crew validate` on the example with `line` added after `after`: exit 1,
/// one error line on stderr, returned without the file's name.
fn refused(after: &str, line: &str) -> (String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (file, line_number) = edited(dir.path(), after, line);
    let output = crew(&["validate"], &file, dir.path(), &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{line}: {stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let name = file.display().to_string();
    let rest = stderr
        .strip_prefix(&name)
        .unwrap_or_else(|| panic!("names the file: {stderr}"));
    (rest.trim_end().to_owned(), line_number)
}

#[test]
fn automatic_commits_are_refused_naming_the_option_and_its_line() {
    let (error, line) = refused("[source.options]", "\"enable.auto.commit\" = \"true\"");
    assert_eq!(
        error,
        format!(
            ":{line}:1: key `source.options.\"enable.auto.commit\"`: `options.enable.auto.commit` \
             must be `false`: crew commits offsets from its watermarks, once events are done"
        )
    );
    // Setting it to what crew sets anyway is fine.
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = edited(
        dir.path(),
        "[source.options]",
        "\"enable.auto.commit\" = \"false\"",
    );
    let output = crew(&["validate"], &file, dir.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn the_group_is_set_by_group_not_by_an_option() {
    let (error, line) = refused("[source.options]", "\"group.id\" = \"other\"");
    assert_eq!(
        error,
        format!(":{line}:1: key `source.options.\"group.id\"`: set `group` instead")
    );
}

#[test]
fn an_unknown_key_in_a_kafka_table_is_named_with_the_allowed_ones() {
    let (error, line) = refused("type = \"kafka\"", "topics = \"pixels\"");
    assert!(
        error.starts_with(&format!(
            ":{line}:1: key `source.topics`: unknown field `topics`, expected one of `type`, \
             `brokers`, `topic`, `group`, `revoke_timeout`, `options`"
        )),
        "{error}"
    );
    // In the sink's table too (its `type` line is the second such line, so
    // the key goes after the sink's `topic`).
    let (error, line) = refused(
        "topic = \"${CREW_OUTPUT_TOPIC:-pixels-out}\"",
        "acks = \"all\"",
    );
    assert!(
        error.starts_with(&format!(
            ":{line}:1: key `sink.acks`: unknown field `acks`, expected one of `type`, \
             `brokers`, `topic`, `topic_field`"
        )),
        "{error}"
    );
}

#[test]
fn a_misspelt_librdkafka_option_is_refused() {
    let (error, line) = refused("[source.options]", "\"sesion.timeout.ms\" = \"6000\"");
    assert_eq!(
        error,
        format!(
            ":{line}:1: key `source.options.\"sesion.timeout.ms\"`: librdkafka refuses it: No such \
             configuration property: \"sesion.timeout.ms\""
        )
    );
}

#[test]
fn a_wrong_typed_librdkafka_option_says_what_is_expected() {
    let (error, line) = refused("[source.options]", "\"socket.timeout.ms\" = [6000]");
    assert!(
        error.starts_with(&format!(
            ":{line}:23: key `source.options.\"socket.timeout.ms\"`: invalid type: sequence, \
             expected a librdkafka option value: a string, a number or a boolean"
        )),
        "{error}"
    );
}

#[test]
fn the_kafka_examples_tests_pass_and_are_the_pixels_ones() {
    let dir = tempfile::tempdir().unwrap();
    let output = crew(&["test"], &example(), dir.path(), &[]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("pixels-kafka.tests.toml\n"), "{stdout}");
    assert!(stdout.ends_with("\n7 passed, 0 failed\n"), "{stdout}");

    // The same tests as the file pipeline's, below each file's header.
    let body = |name: &str| {
        let text = std::fs::read_to_string(workspace().join("examples").join(name)).unwrap();
        let start = text.find("[[tests]]").expect("tests");
        text[start..].to_owned()
    };
    assert!(
        body("pixels-kafka.tests.toml") == body("pixels.tests.toml"),
        "examples/pixels-kafka.tests.toml has drifted from examples/pixels.tests.toml"
    );
}
