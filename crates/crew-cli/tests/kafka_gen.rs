//! `crew gen --kafka`, run as a user runs it, against a real broker
//! (tansu, through crew-testbroker): the records are the file mode's lines,
//! keyed by client, in order per client; an unreachable broker is an error.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crew_pipeline::sources::{GeneratorConfig, PixelsEvents};
use crew_testbroker::Broker;

fn crew(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crew"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("crew runs")
}

/// Runs crew, failing the test instead of hanging if it never ends: a
/// guard against a hang, not a measurement (the command's own bound is
/// 10 s of metadata timeout).
fn crew_bounded(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_crew"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crew runs");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(output) => output.expect("crew's output"),
        Err(_) => {
            // SAFETY: kill(2) on the child this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("crew {args:?} did not end");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The generator's lines for `config`, each with its event's client_id.
fn expected(config: &GeneratorConfig, count: u64) -> Vec<(String, Vec<u8>)> {
    let mut events = PixelsEvents::new(config).unwrap();
    (0..count)
        .map(|_| {
            let mut line = Vec::new();
            let info = events.next_line(&mut line);
            (info.client_id().to_owned(), line)
        })
        .collect()
}

#[test]
fn the_topic_holds_the_file_modes_lines_keyed_by_client_in_order() {
    let broker = Broker::start();
    let topic = "gen-pixels";
    broker.create_topic(topic, 8);
    let count = 3_000u64;
    // Few clients, so each has many events whose order can be checked; 5%
    // malformed over 3,000 lines is 150, the 100th of them oversize
    // (1 MiB + 1 byte by default), so that one travels too.
    let options = [
        "--count",
        "3000",
        "--seed",
        "17",
        "--malformed",
        "0.05",
        "--invalid",
        "0.02",
        "--clients",
        "40",
    ];
    let bootstrap = broker.bootstrap();
    let mut args = vec!["gen", "--kafka", &bootstrap, "--topic", topic];
    args.extend(options);
    let output = crew(&args);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "crew {args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    assert!(
        stderr.contains("crew gen: 3000 lines")
            && stderr.contains("150 malformed")
            && stderr.contains(&format!("delivered to topic `{topic}` at {bootstrap}")),
        "{stderr}"
    );

    // The file mode's bytes for the same options.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let mut args = vec!["gen", "--output", file.to_str().unwrap()];
    args.extend(options);
    let output = crew(&args);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let bytes = std::fs::read(&file).unwrap();
    let file_lines: Vec<&[u8]> = bytes
        .strip_suffix(b"\n")
        .unwrap()
        .split(|&b| b == b'\n')
        .collect();
    assert_eq!(file_lines.len() as u64, count);
    let lines = expected(
        &GeneratorConfig {
            seed: 17,
            malformed: 0.05,
            invalid: 0.02,
            clients: 40,
            ..GeneratorConfig::default()
        },
        count,
    );
    assert!(
        lines
            .iter()
            .map(|(_, l)| l.as_slice())
            .eq(file_lines.iter().copied()),
        "the in-process lines are the file's"
    );
    assert!(
        lines.iter().any(|(_, l)| l.len() > 1 << 20),
        "an oversize line"
    );

    let messages = broker.read_topic(topic);
    assert_eq!(messages.len() as u64, count);
    // The same bytes, as a multiset.
    let mut read: Vec<&[u8]> = messages.iter().map(|m| m.payload.as_slice()).collect();
    let mut written = file_lines.clone();
    read.sort_unstable();
    written.sort_unstable();
    assert!(read == written, "the topic holds the file's lines");

    // Keyed by client_id, each client on one partition, its events in the
    // file's order (`read_topic` sorts by partition, then offset).
    let mut by_key: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for message in &messages {
        let key = String::from_utf8(message.key.clone().expect("every record has a key")).unwrap();
        let first = *partition_of.entry(key.clone()).or_insert(message.partition);
        assert_eq!(first, message.partition, "client {key} on two partitions");
        by_key.entry(key).or_default().push(&message.payload);
    }
    let mut expected_by_key: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for (client, line) in &lines {
        expected_by_key
            .entry(client.clone())
            .or_default()
            .push(line);
    }
    assert_eq!(by_key.len(), 40);
    assert!(by_key == expected_by_key, "per client, the file's order");
    let partitions: std::collections::BTreeSet<i32> = partition_of.values().copied().collect();
    assert!(
        partitions.len() > 1,
        "40 keys over 8 partitions: {partitions:?}"
    );
}

#[test]
fn an_unreachable_broker_is_an_error() {
    // A port nothing listens on: bound, then closed.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let brokers = format!("127.0.0.1:{port}");
    let output = crew_bounded(&[
        "gen", "--kafka", &brokers, "--topic", "nowhere", "--count", "100",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the Kafka brokers at {brokers}")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn kafka_options_are_checked() {
    let output = crew(&[
        "gen",
        "--kafka",
        "127.0.0.1:1",
        "--topic",
        "t",
        "--kafka-option",
        "enable.idempotence=false",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("enable.idempotence must be `true`"));

    let output = crew(&[
        "gen",
        "--kafka",
        "127.0.0.1:1",
        "--topic",
        "t",
        "--kafka-option",
        "no.such.property=1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("no.such.property"),
        "{}",
        text(&output.stderr)
    );

    // Usage errors: a topic without brokers, brokers without a topic, both
    // a file and Kafka.
    for args in [
        &["gen", "--topic", "t"][..],
        &["gen", "--kafka", "127.0.0.1:1"][..],
        &[
            "gen",
            "--kafka",
            "127.0.0.1:1",
            "--topic",
            "t",
            "-o",
            "x.ndjson",
        ][..],
        &["gen", "--kafka-option", "linger.ms=1"][..],
    ] {
        let output = crew(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}
