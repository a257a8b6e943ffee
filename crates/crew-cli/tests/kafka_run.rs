//! `crew run examples/pixels-kafka.toml` as real processes against a real
//! broker (tansu, through crew-testbroker): issue 7's checks.
//!
//! - End to end: 200,000 Server Pixels events, 5% malformed, on an
//!   8-partition topic: the output topic and the dead-letter topic hold
//!   exactly the expected events, once each, and per client the output
//!   order is the input order.
//! - `kill -9` at a random moment, then a restart: every expected event
//!   arrives, with at most the in-flight budget of duplicates.
//! - Scale-out: two processes in one group both deliver; `kill -9` one and
//!   the other takes its partitions over.
//! - SIGTERM: the drain commits exactly what was delivered, and a restart
//!   delivers the rest, nothing twice and nothing missing.
//!
//! Every input record carries its position in the generated stream as a
//! `seq` header, so the (partition, offset) a dead letter names maps back to
//! the line it came from. Waits are condition polls on `/metrics` or on a
//! topic's content, under a guard that fails the test instead of hanging; no
//! test sleeps to let something happen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;

use common::{get, samples_of};
use crew_pipeline::sources::{GeneratorConfig, LineKind, PixelsEvents};
use crew_testbroker::{Broker, Message, Record, FAST_GROUP};

/// The longest any wait may take before it fails the test: generous, for a
/// loaded 2-core machine running a debug build.
const GUARD: Duration = Duration::from_secs(180);

/// Partitions of the input and output topics.
const PARTITIONS: u32 = 8;

/// The in-flight budget of the kill, scale-out and SIGTERM tests, well
/// below their 40,000 events: a stop then comes while much of the input is
/// unread (with the example's 50,000, crew reads it all at once), and the
/// bound on duplicates is far below the input, so exceeding it is possible.
const SMALL_BUDGET: u64 = 2_000;

/// [`common::poll_until`] with this file's [`GUARD`].
#[track_caller]
fn poll_until<T>(probe: impl FnMut() -> Result<T, String>) -> T {
    common::poll_until(GUARD, probe)
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pixels-kafka.toml")
}

/// The example with `[pipeline.budget] max_events = SMALL_BUDGET` added,
/// written in `dir`; everything else is the example's.
fn example_with_small_budget(dir: &Path) -> PathBuf {
    let mut text = fs::read_to_string(example()).unwrap();
    text.push_str(&format!(
        "\n[pipeline.budget]\nmax_events = {SMALL_BUDGET}\n"
    ));
    let path = dir.join("pixels-kafka-small-budget.toml");
    fs::write(&path, text).unwrap();
    path
}

/// splitmix64: the seeded choices of when to kill or stop.
struct Rng(u64);

impl Rng {
    /// Seeded from `CREW_TEST_SEED` when set (to replay a failure), else
    /// from the clock; the seed is printed, so a failing run names it.
    fn new(test: &str) -> Rng {
        let seed = std::env::var("CREW_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: CREW_TEST_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A whole number in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// One test's topics and group, created on its broker.
struct Topics {
    input: String,
    output: String,
    dead: String,
    group: String,
}

impl Topics {
    fn create(broker: &Broker, tag: &str) -> Topics {
        let topics = Topics {
            input: format!("{tag}-in"),
            output: format!("{tag}-out"),
            dead: format!("{tag}-dead"),
            group: format!("{tag}-group"),
        };
        broker.create_topic(&topics.input, PARTITIONS);
        broker.create_topic(&topics.output, PARTITIONS);
        broker.create_topic(&topics.dead, 2);
        topics
    }
}

/// How a correct run ends a generated line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Delivered,
    Dropped,
    /// Dead-lettered with this reason.
    Dead(&'static str),
}

/// A generated line and what must become of it.
struct Line {
    client_id: String,
    /// `None` for a malformed line.
    event_id: Option<String>,
    fate: Fate,
    payload: Vec<u8>,
}

/// The fields of a generated event the test needs. Typed, borrowing, the
/// rest skipped: parsing 200,000 lines into `serde_json::Value`s takes
/// seconds in a debug build.
#[derive(serde::Deserialize)]
struct Head<'a> {
    event_id: &'a str,
    consent: Consent,
    region: &'a str,
}

#[derive(serde::Deserialize)]
struct Consent {
    marketing: bool,
}

/// The event_id of an invalid line (whose other fields may be anything).
#[derive(serde::Deserialize)]
struct Id<'a> {
    event_id: &'a str,
}

/// The fate of a valid event under the example's consent filter: delivered
/// only with `consent.marketing` true and a region other than DE and FR.
fn valid_fate(event: &Head) -> Fate {
    if event.consent.marketing && !matches!(event.region, "DE" | "FR") {
        Fate::Delivered
    } else {
        Fate::Dropped
    }
}

/// The input of one test: the generated lines, in order, and where each
/// landed in the input topic.
struct Input {
    lines: Vec<Line>,
    /// (partition, offset) → index in `lines`.
    at: HashMap<(i32, i64), usize>,
}

impl Input {
    /// Generates `count` lines (seed `seed`, 5% malformed, 1% invalid, few
    /// clients so each has many events to keep in order).
    fn generate(count: u64, seed: u64) -> Input {
        let config = GeneratorConfig {
            seed,
            malformed: 0.05,
            invalid: 0.01,
            clients: 1_000,
            // One malformed line in a hundred is this long; the default
            // (1 MiB + 1) is over the producer's message.max.bytes.
            oversize_bytes: 4_096,
            ..GeneratorConfig::default()
        };
        let mut events = PixelsEvents::new(&config).unwrap();
        let lines = (0..count)
            .map(|_| {
                let mut payload = Vec::new();
                let info = events.next_line(&mut payload);
                let (event_id, fate) = match info.kind {
                    LineKind::Valid => {
                        let event: Head = serde_json::from_slice(&payload)
                            .unwrap_or_else(|e| panic!("a valid line parses: {e}"));
                        (Some(event.event_id.to_owned()), valid_fate(&event))
                    }
                    LineKind::Invalid(_) => {
                        let event: Id = serde_json::from_slice(&payload)
                            .unwrap_or_else(|e| panic!("an invalid line is JSON: {e}"));
                        (Some(event.event_id.to_owned()), Fate::Dead("invalid"))
                    }
                    LineKind::Malformed(_) => (None, Fate::Dead("parse")),
                };
                Line {
                    client_id: info.client_id().to_owned(),
                    event_id,
                    fate,
                    payload,
                }
            })
            .collect();
        Input {
            lines,
            at: HashMap::new(),
        }
    }

    /// Produces lines `range` to `topic`, keyed by client, each with a
    /// `seq` header.
    fn produce(&self, broker: &Broker, topic: &str, range: std::ops::Range<usize>) {
        broker.produce(
            topic,
            range.map(|seq| Record {
                partition: None,
                key: Some(self.lines[seq].client_id.clone().into_bytes()),
                payload: self.lines[seq].payload.clone(),
                headers: vec![("seq".to_owned(), seq.to_string().into_bytes())],
            }),
        );
    }

    /// Reads the input topic back to learn where each line landed; checks
    /// that it holds every line exactly once, in order per client (what the
    /// output's order is compared with).
    fn locate(&mut self, broker: &Broker, topic: &str) {
        let messages = broker.read_topic(topic);
        assert_eq!(
            messages.len(),
            self.lines.len(),
            "the input topic holds the input"
        );
        let mut last: HashMap<&str, usize> = HashMap::new();
        self.at = messages
            .iter()
            .map(|m| {
                let seq = seq_of(m);
                let line = &self.lines[seq];
                assert_eq!(m.payload, line.payload, "line {seq} as produced");
                if let Some(before) = last.insert(&line.client_id, seq) {
                    assert!(before < seq, "line {seq} after line {before} of its client");
                }
                ((m.partition, m.offset), seq)
            })
            .collect();
        assert_eq!(self.at.len(), self.lines.len());
    }

    /// The event_ids that must reach the output topic.
    fn delivered_ids(&self, below: impl Fn(usize) -> bool) -> BTreeSet<String> {
        (0..self.lines.len())
            .filter(|&seq| self.lines[seq].fate == Fate::Delivered && below(seq))
            .map(|seq| {
                self.lines[seq]
                    .event_id
                    .clone()
                    .expect("a valid line has an id")
            })
            .collect()
    }

    /// The lines that must reach the dead-letter topic.
    fn dead_seqs(&self, below: impl Fn(usize) -> bool) -> BTreeSet<usize> {
        (0..self.lines.len())
            .filter(|&seq| matches!(self.lines[seq].fate, Fate::Dead(_)) && below(seq))
            .collect()
    }

    /// The event_ids that must never reach the output topic: dropped events
    /// and dead letters (the invalid ones have ids too).
    fn never_delivered_ids(&self) -> BTreeSet<String> {
        self.lines
            .iter()
            .filter(|line| line.fate != Fate::Delivered)
            .filter_map(|line| line.event_id.clone())
            .collect()
    }

    /// Per client, the event_ids to deliver, in input order.
    fn order_per_client(&self) -> BTreeMap<String, Vec<String>> {
        let mut per_client: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in self.lines.iter().filter(|l| l.fate == Fate::Delivered) {
            per_client
                .entry(line.client_id.clone())
                .or_default()
                .push(line.event_id.clone().unwrap());
        }
        per_client
    }
}

fn seq_of(message: &Message) -> usize {
    let (_, value) = message
        .headers
        .iter()
        .find(|(name, _)| name == "seq")
        .unwrap_or_else(|| panic!("no seq header: {message:?}"));
    std::str::from_utf8(value).unwrap().parse().unwrap()
}

/// An output record's event_id and client_id; checks its key is the
/// client_id (so per-client order holds in its partition).
fn output_event(message: &Message) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct Out<'a> {
        event_id: &'a str,
        client_id: &'a str,
    }
    let event: Out = serde_json::from_slice(&message.payload)
        .unwrap_or_else(|e| panic!("an output record is an event ({e}): {message:?}"));
    assert_eq!(
        message.key.as_deref(),
        Some(event.client_id.as_bytes()),
        "an output record's key is its client_id"
    );
    (event.event_id.to_owned(), event.client_id.to_owned())
}

/// A dead-letter record's line, found through its partition and offset;
/// checks its reason is the line's and `original` the line's bytes (when
/// they are UTF-8).
fn dead_letter(message: &Message, input: &Input) -> usize {
    let record: serde_json::Value = serde_json::from_slice(&message.payload)
        .unwrap_or_else(|e| panic!("a dead letter is JSON ({e}): {message:?}"));
    let origin = (
        record["partition"].as_i64().expect("a partition") as i32,
        record["offset"].as_i64().expect("an offset"),
    );
    let seq = *input
        .at
        .get(&origin)
        .unwrap_or_else(|| panic!("a dead letter from no input record: {record}"));
    let line = &input.lines[seq];
    match (line.fate, record["reason"].as_str()) {
        (Fate::Dead(expected), Some(reason)) if reason == expected => {}
        (fate, reason) => panic!("line {seq} ({fate:?}) dead-lettered with reason {reason:?}"),
    }
    if let Some(original) = record["original"].as_str() {
        assert_eq!(original.as_bytes(), line.payload, "{record}");
    } else {
        assert!(record["original_base64"].is_string(), "{record}");
    }
    seq
}

/// Counts of each item; the ones seen more than once are duplicates.
fn counts<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, u64> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    counts
}

fn duplicates<T>(counts: &BTreeMap<T, u64>) -> u64 {
    counts.values().map(|n| n - 1).sum()
}

/// The two sets are equal; on failure, says how many differ and shows a few.
#[track_caller]
fn assert_same<T: Ord + std::fmt::Debug>(got: &BTreeSet<T>, expected: &BTreeSet<T>, what: &str) {
    let missing: Vec<_> = expected.difference(got).take(5).collect();
    let extra: Vec<_> = got.difference(expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} missing (first: {missing:?}), {} unexpected (first: {extra:?})",
        expected.difference(got).count(),
        got.difference(expected).count(),
    );
}

/// Checks what the output and dead-letter topics hold against the whole
/// input, allowing duplicates; returns the lines they hold more than once,
/// once for each extra copy.
#[track_caller]
fn check_complete(broker: &Broker, topics: &Topics, input: &Input) -> Vec<usize> {
    let out = broker.read_topic(&topics.output);
    let delivered = counts(out.iter().map(|m| output_event(m).0));
    let ids: BTreeSet<String> = delivered.keys().cloned().collect();
    assert_same(&ids, &input.delivered_ids(|_| true), "output event_ids");
    assert!(
        ids.is_disjoint(&input.never_delivered_ids()),
        "a dropped or dead event was delivered"
    );
    let dead = broker.read_topic(&topics.dead);
    let dead_seqs = counts(dead.iter().map(|m| dead_letter(m, input)));
    let seqs: BTreeSet<usize> = dead_seqs.keys().copied().collect();
    assert_same(&seqs, &input.dead_seqs(|_| true), "dead-lettered lines");
    let seq_of_id: HashMap<&str, usize> = input
        .lines
        .iter()
        .enumerate()
        .filter_map(|(seq, line)| Some((line.event_id.as_deref()?, seq)))
        .collect();
    let mut twice = Vec::new();
    for (id, n) in &delivered {
        twice.extend(std::iter::repeat_n(
            seq_of_id[id.as_str()],
            (n - 1) as usize,
        ));
    }
    for (&seq, n) in &dead_seqs {
        twice.extend(std::iter::repeat_n(seq, (n - 1) as usize));
    }
    twice
}

/// Reads the output and dead-letter topics until they hold every expected
/// event (a running crew is still writing them); the wait for a run whose
/// own counters cannot say when it is done (it re-reads an unknown share).
///
/// On a hang, `survivor` is asked for its state (metrics and log), so the
/// failure says whether it owned the partitions, was paused, or was stuck.
fn wait_for_everything(
    broker: &Broker,
    topics: &Topics,
    input: &Input,
    survivor: impl FnOnce() -> String,
) {
    let mut missing = input.delivered_ids(|_| true);
    let mut seen = 0;
    broker.read_topic_until(&topics.output, GUARD, |messages| {
        // `messages` is everything read so far: look at the new ones.
        for message in &messages[seen..] {
            missing.remove(&output_event(message).0);
        }
        seen = messages.len();
        missing.is_empty()
    });
    let mut missing_dead = input.dead_seqs(|_| true);
    let mut seen = 0;
    broker.read_topic_until(&topics.dead, GUARD, |messages| {
        for message in &messages[seen..] {
            missing_dead.remove(&dead_letter(message, input));
        }
        seen = messages.len();
        missing_dead.is_empty()
    });
    if !(missing.is_empty() && missing_dead.is_empty()) {
        panic!(
            "HANG after {GUARD:?}: {} events never delivered, {} never dead-lettered\n{}",
            missing.len(),
            missing_dead.len(),
            survivor()
        );
    }
}

impl Crew {
    /// Its Kafka and flow metrics and its log, for a failure message.
    fn state(&mut self) -> String {
        let samples = self.scrape();
        let metrics: Vec<String> = samples
            .iter()
            .filter(|(name, _)| {
                name.starts_with("crew_kafka_")
                    || name.starts_with("crew_events_")
                    || name.starts_with("crew_in_flight")
            })
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        format!("metrics:\n{}\nlog:\n{}", metrics.join("\n"), self.log())
    }
}

/// A running `crew run`: stdout and stderr read on threads, the admin
/// address taken from its log. Dropped while running, it is killed.
struct Crew {
    child: Child,
    admin: SocketAddr,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Every stderr line so far, for failure messages.
    log: String,
    exited: bool,
}

impl Crew {
    /// Starts `crew --log-format json run CONFIG --admin 127.0.0.1:0` with
    /// the environment pointing the example at the broker and topics, and
    /// the group settings that make a join take about a second on tansu.
    fn start(config: &Path, broker: &Broker, topics: &Topics) -> Crew {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crew"));
        command
            .args(["--log-format", "json", "run"])
            .arg(config)
            .args(["--admin", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .env_remove("PIXELS_SALT")
            .env_remove("CREW_ADMIN_LISTEN")
            .env("CREW_KAFKA_BROKERS", broker.bootstrap())
            .env("CREW_INPUT_TOPIC", &topics.input)
            .env("CREW_OUTPUT_TOPIC", &topics.output)
            .env("CREW_DEAD_LETTER_TOPIC", &topics.dead)
            .env("CREW_GROUP", &topics.group)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in FAST_GROUP {
            let var = match *name {
                "session.timeout.ms" => "CREW_KAFKA_SESSION_TIMEOUT_MS",
                "heartbeat.interval.ms" => "CREW_KAFKA_HEARTBEAT_INTERVAL_MS",
                other => panic!("the example has no variable for {other}"),
            };
            command.env(var, value);
        }
        let mut child = command.spawn().expect("crew starts");
        let stdout = read_all(child.stdout.take().expect("piped"));
        let (addr_tx, addr_rx) = mpsc::channel();
        let (lines_tx, stderr) = mpsc::channel();
        let err = child.stderr.take().expect("piped");
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                    if let Ok(addr) = addr.parse::<SocketAddr>() {
                        let _ = addr_tx.send(addr);
                    }
                }
                let _ = lines_tx.send(line + "\n");
            }
        });
        let admin = match addr_rx.recv_timeout(GUARD) {
            Ok(admin) => admin,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log: String = stderr.try_iter().collect();
                panic!("crew logged no admin address:\n{log}");
            }
        };
        Crew {
            child,
            admin,
            stdout,
            stderr,
            log: String::new(),
            exited: false,
        }
    }

    fn log(&mut self) -> &str {
        self.log.extend(self.stderr.try_iter());
        &self.log
    }

    /// The `/metrics` samples, `name{labels}` → value (labels sorted, the
    /// `pipeline` label left out). Fails the test if crew has exited.
    fn scrape(&mut self) -> BTreeMap<String, f64> {
        if let Some(status) = self.child.try_wait().unwrap() {
            self.exited = true;
            panic!("crew exited ({status}):\n{}", self.log());
        }
        let (status, body) = get(self.admin, "/metrics", GUARD);
        assert_eq!(status, 200, "{body}");
        samples_of(&body)
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits");
        // SAFETY: kill(2) on a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// `kill -9`, and waits for the exit.
    fn kill(mut self) {
        self.signal(libc::SIGKILL);
        self.child.wait().expect("crew is reaped");
        self.exited = true;
    }

    /// SIGTERM, then waits (under the guard) for the exit: its status, the
    /// summary on stdout and the log.
    fn terminate(mut self) -> (ExitStatus, String, String) {
        self.signal(libc::SIGTERM);
        // Stdout closes when crew exits: the summary is the last thing it
        // writes.
        let stdout = match self.stdout.recv_timeout(GUARD) {
            Ok(text) => text,
            Err(_) => panic!("HANG: crew did not exit within {GUARD:?}:\n{}", self.log()),
        };
        let status = self.child.wait().expect("crew is reaped");
        self.exited = true;
        // The log's end: stderr closes at the exit too.
        let rest: String = self.stderr.iter().collect();
        self.log.push_str(&rest);
        (status, stdout, std::mem::take(&mut self.log))
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a pipe to its end on a thread.
fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// A sample's value; absent counts as 0 (a labelled counter has no series
/// until its first increment).
fn value(samples: &BTreeMap<String, f64>, key: &str) -> u64 {
    samples.get(key).map_or(0, |v| *v as u64)
}

/// Events delivered, dropped or dead-lettered, per `/metrics`.
fn finished(samples: &BTreeMap<String, f64>) -> u64 {
    value(samples, "crew_events_delivered_total{}")
        + samples
            .iter()
            .filter(|(k, _)| {
                k.starts_with("crew_events_dropped_total{")
                    || k.starts_with("crew_events_dead_lettered_total{")
            })
            .map(|(_, v)| *v as u64)
            .sum::<u64>()
}

/// The rebalance counters, for a failure message: an event finished twice
/// without a kill is only legitimate after a lost assignment (a session
/// that expired on a starved machine).
fn rebalances(samples: &BTreeMap<String, f64>) -> String {
    format!(
        "rebalances: {} assign, {} revoke; {} events revoked unfinished",
        value(samples, "crew_kafka_rebalances_total{kind=assign}"),
        value(samples, "crew_kafka_rebalances_total{kind=revoke}"),
        value(samples, "crew_kafka_revoked_unfinished_events_total{}"),
    )
}

/// The summary's numbers: `read`, `delivered`, ..., `abandoned`.
fn summary(stdout: &str) -> BTreeMap<String, u64> {
    let mut numbers = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.starts_with("    ")) {
        let mut words = line.split_whitespace();
        if let (Some(label), Some(number)) = (words.next(), words.next()) {
            if let Ok(n) = number.replace(',', "").parse::<u64>() {
                numbers.insert(label.to_owned(), n);
            }
        }
    }
    numbers
}

#[test]
fn end_to_end_200k_events_reach_exactly_their_topics_in_order_per_client() {
    const EVENTS: u64 = 200_000;
    let broker = Broker::start();
    let topics = Topics::create(&broker, "e2e");
    let mut input = Input::generate(EVENTS, 7);
    input.produce(&broker, &topics.input, 0..EVENTS as usize);
    input.locate(&broker, &topics.input);

    let mut crew = Crew::start(&example(), &broker, &topics);
    // The source never ends: wait until /metrics says every event is
    // finished, and never more than that (an event finished twice).
    poll_until(|| {
        let samples = crew.scrape();
        match finished(&samples) {
            n if n > EVENTS => panic!("{n} events finished, of {EVENTS}: {}", rebalances(&samples)),
            n if n == EVENTS => Ok(()),
            n => Err(format!("{n} of {EVENTS} finished")),
        }
    });
    let (status, stdout, log) = crew.terminate();
    assert_eq!(status.code(), Some(0), "{stdout}\n{log}");
    let s = summary(&stdout);
    assert_eq!(s["read"], EVENTS, "{stdout}");
    assert_eq!(s["abandoned"], 0, "{stdout}");

    let out = broker.read_topic(&topics.output);
    let events: Vec<(String, String)> = out.iter().map(output_event).collect();
    let ids = counts(events.iter().map(|(id, _)| id.clone()));
    assert_eq!(duplicates(&ids), 0, "no event delivered twice");
    assert_same(
        &ids.keys().cloned().collect(),
        &input.delivered_ids(|_| true),
        "output event_ids",
    );
    // Implied by the equality (event ids are random UUIDs), said outright.
    let never = input.never_delivered_ids();
    assert!(
        ids.keys().all(|id| !never.contains(id)),
        "a dropped or dead event was delivered"
    );
    // The topic is read in (partition, offset) order and a client's records
    // share a partition (the key is the client_id): that is its order.
    let mut per_client: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, client) in events {
        per_client.entry(client).or_default().push(id);
    }
    let expected_order = input.order_per_client();
    let wrong: Vec<&String> = expected_order
        .keys()
        .filter(|client| per_client.get(*client) != expected_order.get(*client))
        .collect();
    if let Some(first) = wrong.first() {
        let got = per_client.get(*first).map_or(&[][..], Vec::as_slice);
        let expected = &expected_order[*first];
        let at = (0..expected.len())
            .find(|&i| got.get(i) != expected.get(i))
            .unwrap_or(expected.len());
        let near = |ids: &[String]| {
            ids[at.min(ids.len())..]
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
        };
        panic!(
            "{} of {} clients out of order; the first, {first}, from its event {at} of {}: \
             got {:?}, expected {:?}",
            wrong.len(),
            expected_order.len(),
            expected.len(),
            near(got),
            near(expected),
        );
    }

    let dead = broker.read_topic(&topics.dead);
    let mut dead_seqs = BTreeMap::new();
    for message in &dead {
        let seq = dead_letter(message, &input);
        *dead_seqs.entry(seq).or_insert(0) += 1;
    }
    assert_eq!(duplicates(&dead_seqs), 0, "no event dead-lettered twice");
    assert_same(
        &dead_seqs.keys().copied().collect(),
        &input.dead_seqs(|_| true),
        "dead-lettered lines",
    );
    assert_eq!(
        input.lines.len() - ids.len() - dead_seqs.len(),
        input
            .lines
            .iter()
            .filter(|l| l.fate == Fate::Dropped)
            .count(),
        "the rest were dropped"
    );

    // Everything finished was committed: the group resumes at the end.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for &(partition, offset) in input.at.keys() {
        let end = ends.entry(partition).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    assert_eq!(
        broker.committed(&topics.group, &topics.input, PARTITIONS),
        ends
    );
}

/// Whether a line lies below the committed offset of its partition (none
/// does in a partition with no commit).
fn below_committed(input: &Input, committed: &BTreeMap<i32, i64>) -> impl Fn(usize) -> bool {
    let origin: Vec<(i32, i64)> = {
        let mut origin = vec![(0, 0); input.lines.len()];
        for (&at, &seq) in &input.at {
            origin[seq] = at;
        }
        origin
    };
    let committed = committed.clone();
    move |seq| {
        let (partition, offset) = origin[seq];
        committed.get(&partition).is_some_and(|&c| offset < c)
    }
}

#[test]
fn after_kill_9_at_a_random_moment_a_restart_delivers_everything_with_duplicates_within_the_budget()
{
    const EVENTS: u64 = 40_000;
    let mut rng = Rng::new("kill -9");
    let dir = tempfile::tempdir().unwrap();
    let config = example_with_small_budget(dir.path());
    let broker = Broker::start();
    let topics = Topics::create(&broker, "kill");
    let mut input = Input::generate(EVENTS, 11);
    input.produce(&broker, &topics.input, 0..EVENTS as usize);
    input.locate(&broker, &topics.input);
    let to_deliver = input.delivered_ids(|_| true).len() as u64;

    let mut first = Crew::start(&config, &broker, &topics);
    // The moment: once this many events are delivered, somewhere between a
    // tenth and nine tenths of the way.
    let moment = rng.between(to_deliver / 10, to_deliver * 9 / 10);
    let budget = poll_until(|| {
        let samples = first.scrape();
        match value(&samples, "crew_events_delivered_total{}") {
            n if n >= moment => Ok(value(&samples, "crew_budget_events{}")),
            n => Err(format!("{n} delivered, waiting for {moment}")),
        }
    });
    first.kill();
    assert_eq!(budget, SMALL_BUDGET, "the budget /metrics reports");
    let before = counts(
        broker
            .read_topic(&topics.output)
            .iter()
            .map(|m| output_event(m).0),
    );
    assert!(
        (before.len() as u64) < to_deliver,
        "killed mid-run: {} of {to_deliver} delivered",
        before.len()
    );
    // What the killed process committed last: the restart resumes there.
    let committed = broker.committed(&topics.group, &topics.input, PARTITIONS);
    let below = below_committed(&input, &committed);
    let committed_lines = (0..input.lines.len()).filter(|&seq| below(seq)).count();

    let mut second = Crew::start(&config, &broker, &topics);
    wait_for_everything(&broker, &topics, &input, || second.state());
    let (status, stdout, log) = second.terminate();
    assert_eq!(status.code(), Some(0), "{stdout}\n{log}");
    assert_eq!(
        summary(&stdout)["read"],
        EVENTS - committed_lines as u64,
        "the restart reads from the committed offsets on: {committed:?}\n{stdout}"
    );
    let duplicates = check_complete(&broker, &topics, &input).len() as u64;
    eprintln!(
        "kill -9 after {} delivered ({} lines committed): {duplicates} duplicates, budget {budget}",
        before.len(),
        committed_lines
    );
    assert!(
        duplicates <= budget,
        "{duplicates} duplicates, over the budget of {budget} (killed after {} delivered, \
         {committed_lines} of {EVENTS} lines committed)",
        before.len()
    );
}

#[test]
fn two_processes_share_the_partitions_and_one_takes_over_when_the_other_is_killed() {
    const EVENTS: usize = 40_000;
    // The input comes in three parts: shared by both members, then the one
    // during which the second is killed, then the rest.
    const FIRST: usize = 10_000;
    const SECOND: usize = 25_000;
    let dir = tempfile::tempdir().unwrap();
    let config = example_with_small_budget(dir.path());
    let broker = Broker::start();
    let topics = Topics::create(&broker, "scale");
    let mut input = Input::generate(EVENTS as u64, 13);
    let mut a = Crew::start(&config, &broker, &topics);
    let assigned =
        |samples: &BTreeMap<String, f64>| value(samples, "crew_kafka_assigned_partitions{}");
    // Both members must own partitions before any event exists, or the
    // first could finish the first part alone.
    poll_until(|| match assigned(&a.scrape()) {
        8 => Ok(()),
        n => Err(format!("the first member owns {n} partitions")),
    });
    let mut b = Crew::start(&config, &broker, &topics);
    let in_b_partitions = poll_until(|| {
        let (in_a, in_b) = (assigned(&a.scrape()), assigned(&b.scrape()));
        if in_a > 0 && in_b > 0 && in_a + in_b == u64::from(PARTITIONS) {
            Ok(in_b)
        } else {
            Err(format!("partitions owned: {in_a} and {in_b}"))
        }
    });

    let delivered = |s: &BTreeMap<String, f64>| value(s, "crew_events_delivered_total{}");

    // A first part, shared: together the two finish each event once, and
    // each delivers some.
    input.produce(&broker, &topics.input, 0..FIRST);
    let (in_a, in_b) = poll_until(|| {
        let (sa, sb) = (a.scrape(), b.scrape());
        // Counters only grow, so two scrapes taken one after the other
        // never add up to more than the truth.
        match finished(&sa) + finished(&sb) {
            n if n > FIRST as u64 => panic!(
                "{n} events finished, of {FIRST} (delivered: {} and {})",
                delivered(&sa),
                delivered(&sb)
            ),
            n if n == FIRST as u64 => Ok((delivered(&sa), delivered(&sb))),
            n => Err(format!("{n} of {FIRST} finished")),
        }
    });
    assert!(in_a > 0 && in_b > 0, "both delivered: {in_a} and {in_b}");
    let out = counts(
        broker
            .read_topic(&topics.output)
            .iter()
            .map(|m| output_event(m).0),
    );
    assert_eq!(duplicates(&out), 0, "no event delivered by both");
    assert_same(
        &out.keys().cloned().collect(),
        &input.delivered_ids(|seq| seq < FIRST),
        "delivered from the first part",
    );

    // A second part: `b` is killed in the middle of its share. No rebalance
    // can come between the last scrape and the kill (both members live), so
    // `b` owns then what the scrape says.
    input.produce(&broker, &topics.input, FIRST..SECOND);
    let owned_by_b = poll_until(|| {
        let samples = b.scrape();
        if delivered(&samples) > in_b {
            Ok(partitions_owned(&samples))
        } else {
            Err(format!("the second member delivered {in_b}, nothing more"))
        }
    });
    b.kill();
    assert_eq!(owned_by_b.len() as u64, in_b_partitions);
    // The rest lands on every partition, `b`'s former ones too.
    input.produce(&broker, &topics.input, SECOND..EVENTS);
    input.locate(&broker, &topics.input);
    wait_for_everything(&broker, &topics, &input, || a.state());
    assert_eq!(
        assigned(&a.scrape()),
        u64::from(PARTITIONS),
        "the survivor owns every partition"
    );
    let (status, stdout, log) = a.terminate();
    assert_eq!(status.code(), Some(0), "{stdout}\n{log}");
    // The killed member's uncommitted events are read again; the survivor
    // let its partitions go at the rebalance after committing what it had
    // finished, so none of its events comes twice (a stale or missing
    // commit there would show here).
    let twice = check_complete(&broker, &topics, &input);
    let origin: HashMap<usize, i32> = input.at.iter().map(|(&(p, _), &seq)| (seq, p)).collect();
    let from_a: Vec<(usize, i32)> = twice
        .iter()
        .map(|seq| (*seq, origin[seq]))
        .filter(|(_, partition)| !owned_by_b.contains(partition))
        .collect();
    eprintln!(
        "scale-out: {} duplicates, the killed member owned partitions {owned_by_b:?}",
        twice.len()
    );
    assert!(
        from_a.is_empty(),
        "{} duplicates from the survivor's partitions (the killed one owned {owned_by_b:?}), \
         the first (line, partition): {:?}",
        from_a.len(),
        &from_a[..from_a.len().min(5)]
    );
}

/// The partitions a `/metrics` scrape says its process owns.
fn partitions_owned(samples: &BTreeMap<String, f64>) -> BTreeSet<i32> {
    samples
        .iter()
        .filter(|(_, v)| **v == 1.0)
        .filter_map(|(key, _)| {
            key.strip_prefix("crew_kafka_partition_assigned{partition=")?
                .strip_suffix('}')?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn sigterm_commits_exactly_what_was_delivered_and_a_restart_delivers_the_rest_once() {
    const EVENTS: u64 = 40_000;
    let mut rng = Rng::new("SIGTERM");
    let dir = tempfile::tempdir().unwrap();
    let config = example_with_small_budget(dir.path());
    let broker = Broker::start();
    let topics = Topics::create(&broker, "term");
    let mut input = Input::generate(EVENTS, 17);
    input.produce(&broker, &topics.input, 0..EVENTS as usize);
    input.locate(&broker, &topics.input);
    let to_deliver = input.delivered_ids(|_| true).len() as u64;

    let mut first = Crew::start(&config, &broker, &topics);
    let moment = rng.between(to_deliver / 10, to_deliver * 6 / 10);
    poll_until(
        || match value(&first.scrape(), "crew_events_delivered_total{}") {
            n if n >= moment => Ok(()),
            n => Err(format!("{n} delivered, waiting for {moment}")),
        },
    );
    // The example's drain_timeout (30 s) is far more than the budget's
    // 2,000 events need.
    let (status, stdout, log) = first.terminate();
    assert_eq!(status.code(), Some(0), "{stdout}\n{log}");
    assert!(stdout.contains("a shutdown was requested"), "{stdout}");
    let s1 = summary(&stdout);
    assert_eq!(s1["abandoned"], 0, "{stdout}");
    assert!(s1["read"] < EVENTS, "stopped mid-run: {stdout}");

    // The commit covers exactly the lines the first run finished: those
    // below it are in the outputs, once; nothing above it is.
    let committed = broker.committed(&topics.group, &topics.input, PARTITIONS);
    let below = below_committed(&input, &committed);
    let covered = (0..input.lines.len()).filter(|&seq| below(seq)).count() as u64;
    assert_eq!(covered, s1["read"], "committed: {committed:?}\n{stdout}");
    let out = counts(
        broker
            .read_topic(&topics.output)
            .iter()
            .map(|m| output_event(m).0),
    );
    assert_eq!(duplicates(&out), 0, "no event delivered twice");
    assert_same(
        &out.keys().cloned().collect(),
        &input.delivered_ids(&below),
        "delivered by the first run",
    );
    let dead = counts(
        broker
            .read_topic(&topics.dead)
            .iter()
            .map(|m| dead_letter(m, &input)),
    );
    assert_eq!(duplicates(&dead), 0, "no event dead-lettered twice");
    assert_same(
        &dead.keys().copied().collect(),
        &input.dead_seqs(&below),
        "dead-lettered by the first run",
    );

    // The restart reads exactly the rest.
    let rest = EVENTS - covered;
    let mut second = Crew::start(&config, &broker, &topics);
    poll_until(|| {
        let samples = second.scrape();
        match finished(&samples) {
            n if n > rest => panic!(
                "{n} events finished, of the {rest} left: {}",
                rebalances(&samples)
            ),
            n if n == rest => Ok(()),
            n => Err(format!("{n} of the {rest} left finished")),
        }
    });
    let (status, stdout, log) = second.terminate();
    assert_eq!(status.code(), Some(0), "{stdout}\n{log}");
    assert_eq!(summary(&stdout)["read"], rest, "{stdout}");
    assert_eq!(
        check_complete(&broker, &topics, &input),
        Vec::<usize>::new(),
        "no duplicates"
    );
}
