//! The Kafka source and sink against a real broker (tansu on loopback, see
//! crew-testbroker): delivery with keys and headers, per-key order, commits
//! from watermarks, pause under backpressure, a rebalance between two
//! consumers of one group, and records the broker refuses.
//!
//! Mid-run checks poll a condition (a counter) under a bounded guard; no
//! test sleeps to wait for another thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crew_pipeline::sinks::{KafkaSink, KafkaSinkConfig};
use crew_pipeline::sources::{KafkaSource, KafkaSourceConfig};
use crew_pipeline::transforms::ParseJson;
use crew_pipeline::{
    Event, Ordering, Outcome, Pipeline, PipelineHandle, Report, Settings, Stage, StageError,
};
use crew_testbroker::{Broker, Message, Record, FAST_GROUP};

const PARTITIONS: u32 = 8;

fn source_config(broker: &Broker, topic: &str, group: &str) -> KafkaSourceConfig {
    KafkaSourceConfig {
        brokers: broker.bootstrap(),
        topic: topic.to_owned(),
        group: group.to_owned(),
        revoke_timeout: Duration::from_secs(10),
        options: FAST_GROUP
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn sink_config(broker: &Broker, topic: &str) -> KafkaSinkConfig {
    KafkaSinkConfig {
        brokers: broker.bootstrap(),
        topic: topic.to_owned(),
        topic_field: None,
        delivery_attempts: 5,
        flush_timeout: Duration::from_secs(60),
        options: BTreeMap::new(),
    }
}

/// `count` JSON events spread over `clients` keys, each with its sequence
/// number per client and a header naming it.
fn records(count: usize, clients: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let client = format!("c{}", i % clients);
            Record {
                partition: None,
                key: Some(client.clone().into_bytes()),
                payload: format!(r#"{{"id":{i},"client":"{client}"}}"#).into_bytes(),
                headers: vec![("seq".to_owned(), i.to_string().into_bytes())],
            }
        })
        .collect()
}

/// `source` → `stage` → a Kafka sink (`sink`), dead letters to topic `dead`.
fn kafka_pipeline(
    broker: &Broker,
    settings: Settings,
    source: KafkaSource,
    stage: impl Stage,
    sink: KafkaSinkConfig,
) -> Pipeline {
    Pipeline::builder()
        .settings(settings)
        .source(source)
        .stage("stage", stage)
        .sink(KafkaSink::new(sink).unwrap())
        .dead_letter(KafkaSink::new(sink_config(broker, "dead")).unwrap())
        .build()
        .unwrap()
}

fn settings() -> Settings {
    Settings {
        workers: 2,
        ordering: Ordering::Key,
        commit_interval: Duration::from_millis(200),
        ..Settings::default()
    }
}

/// Waits for `condition` under a guard: the pipeline runs on its own
/// thread, and these are the points the test must see it reach.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let guard = Instant::now() + Duration::from_secs(120);
    while !condition() {
        assert!(Instant::now() < guard, "timed out waiting for {what}");
        thread::yield_now();
        // A condition poll, not a synchronization by time: the pause only
        // spares the CPU between two looks at counters.
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `pipeline` on a thread; stops it once it has finished `expected`
/// events (the Kafka source never ends on its own).
fn run_until_done(pipeline: Pipeline, expected: u64) -> Report {
    let handle = pipeline.handle();
    let runner = thread::spawn(move || pipeline.run());
    wait_for("every event to finish", || finished(&handle) >= expected);
    handle.shutdown();
    runner.join().expect("the pipeline thread")
}

fn finished(handle: &PipelineHandle) -> u64 {
    let s = handle.snapshot();
    s.delivered
        + s.dropped_by_reason.values().sum::<u64>()
        + s.dead_lettered_by_reason.values().sum::<u64>()
}

fn id_of(message: &Message) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    value["id"].as_u64().unwrap()
}

/// Output ids per key, in the order the topic holds them (one key lives in
/// one partition, so partition order is the key's order).
fn ids_per_key(messages: &[Message]) -> BTreeMap<Vec<u8>, Vec<u64>> {
    let mut per_key: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
    for message in messages {
        per_key
            .entry(message.key.clone().unwrap_or_default())
            .or_default()
            .push(id_of(message));
    }
    per_key
}

#[test]
fn events_flow_topic_to_topic_with_keys_headers_order_and_commits() {
    let broker = Broker::start();
    broker.create_topic("in", PARTITIONS);
    broker.create_topic("out", PARTITIONS);
    broker.create_topic("dead", 1);
    let mut input = records(20_000, 50);
    // Two malformed events: they must reach the dead-letter topic.
    input[17].payload = b"{not json".to_vec();
    input[19_000].payload = Vec::new();
    broker.produce("in", input.clone());

    let source = KafkaSource::new(source_config(&broker, "in", "g1")).unwrap();
    let stats = source.stats();
    let pipeline = kafka_pipeline(
        &broker,
        settings(),
        source,
        ParseJson::default(),
        sink_config(&broker, "out"),
    );
    let report = run_until_done(pipeline, 20_000);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.read, 20_000);
    assert_eq!(report.delivered, 19_998);
    assert_eq!(report.dead_lettered, 2);
    assert_eq!(
        stats.assigned_partitions().len(),
        0,
        "closed consumers own nothing"
    );

    let out = broker.read_topic("out");
    assert_eq!(out.len(), 19_998, "each delivered event exactly once");
    // Per key, the output order is the input order.
    let expected: Vec<Message> = input
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 17 && *i != 19_000)
        .map(|(_, r)| Message {
            partition: 0,
            offset: 0,
            key: r.key.clone(),
            payload: r.payload.clone(),
            headers: r.headers.clone(),
        })
        .collect();
    assert_eq!(ids_per_key(&out), ids_per_key(&expected));
    // Keys and headers are carried through.
    for message in &out {
        let id = id_of(message);
        assert_eq!(
            message.headers,
            vec![("seq".to_owned(), id.to_string().into_bytes())]
        );
        assert_eq!(message.key, input[id as usize].key);
    }
    let dead = broker.read_topic("dead");
    assert_eq!(dead.len(), 2);

    // Everything was committed: the group resumes at each partition's end.
    let input_ends = partition_ends(&broker.read_topic("in"));
    let committed = broker.committed("g1", "in", PARTITIONS);
    assert_eq!(committed, input_ends);
}

/// Per partition, the offset after its last message.
fn partition_ends(messages: &[Message]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for m in messages {
        let end = ends.entry(m.partition).or_insert(0);
        *end = (*end).max(m.offset + 1);
    }
    ends
}

/// A stage that holds every event until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
}

impl Stage for Gate {
    fn process(&self, _event: &mut Event) -> Result<Outcome, StageError> {
        let (open, changed) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
        Ok(Outcome::Keep)
    }
}

#[test]
fn a_full_partition_is_paused_and_nothing_is_lost_or_repeated() {
    let broker = Broker::start();
    broker.create_topic("in", PARTITIONS);
    broker.create_topic("out", PARTITIONS);
    broker.produce("in", records(5_000, 40));

    let source = KafkaSource::new(source_config(&broker, "in", "g2")).unwrap();
    let stats = source.stats();
    let gate = Gate::default();
    let mut settings = settings();
    settings.budget.max_per_partition = 16;
    let pipeline = kafka_pipeline(
        &broker,
        settings,
        source,
        gate.clone(),
        sink_config(&broker, "out"),
    );
    let handle = pipeline.handle();
    let runner = thread::spawn(move || pipeline.run());
    // With the stages held, partitions fill their 16-event budget and the
    // source pauses them instead of reading on.
    wait_for("a paused partition", || stats.paused_partitions() > 0);
    let snapshot = handle.snapshot();
    assert!(
        snapshot.in_flight_events <= 16 * PARTITIONS as usize,
        "in flight {} beyond the per-partition budget",
        snapshot.in_flight_events
    );
    gate.open();
    wait_for("every event to finish", || finished(&handle) >= 5_000);
    handle.shutdown();
    let report = runner.join().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        report.read, 5_000,
        "paused partitions were resumed, none skipped"
    );
    assert!(stats.pauses() > 0);
    let out = broker.read_topic("out");
    let ids: BTreeSet<u64> = out.iter().map(id_of).collect();
    assert_eq!(out.len(), 5_000, "no duplicates");
    assert_eq!(ids.len(), 5_000);
}

#[test]
fn a_second_consumer_takes_partitions_over_and_the_first_commits_what_it_finished() {
    let broker = Broker::start();
    broker.create_topic("in", PARTITIONS);
    broker.create_topic("out", PARTITIONS);
    broker.produce("in", records(4_000, 40));

    // The first consumer reads everything there is and stays.
    let first_source = KafkaSource::new(source_config(&broker, "in", "g3")).unwrap();
    let first_stats = first_source.stats();
    let first = kafka_pipeline(
        &broker,
        settings(),
        first_source,
        ParseJson::default(),
        sink_config(&broker, "out"),
    );
    let first_handle = first.handle();
    let first_runner = thread::spawn(move || first.run());
    wait_for("the first consumer to finish the backlog", || {
        finished(&first_handle) >= 4_000
    });
    assert_eq!(first_stats.assigned_partitions().len(), PARTITIONS as usize);

    // A second member joins: the group moves some partitions to it. The
    // first lets them go after committing what it finished, so the second
    // starts after the first's events and repeats none of them.
    let second_source = KafkaSource::new(source_config(&broker, "in", "g3")).unwrap();
    let second_stats = second_source.stats();
    let second = kafka_pipeline(
        &broker,
        settings(),
        second_source,
        ParseJson::default(),
        sink_config(&broker, "out"),
    );
    let second_handle = second.handle();
    let second_runner = thread::spawn(move || second.run());
    wait_for("the second consumer to get partitions", || {
        !second_stats.assigned_partitions().is_empty()
    });
    wait_for("the first consumer to give them up", || {
        first_stats.assigned_partitions().len() < PARTITIONS as usize
    });
    assert!(first_stats.revokes() > 0);

    // New events go to both; each finishes its own.
    broker.produce(
        "in",
        records(4_000, 40).into_iter().map(|mut r| {
            let id: u64 = serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap()["id"]
                .as_u64()
                .unwrap();
            r.payload = format!(r#"{{"id":{},"client":"late"}}"#, id + 4_000).into_bytes();
            r
        }),
    );
    wait_for("both to finish the new events", || {
        finished(&first_handle) + finished(&second_handle) >= 8_000
    });
    assert!(
        finished(&second_handle) > 0,
        "the second consumer delivered events"
    );
    first_handle.shutdown();
    second_handle.shutdown();
    let first_report = first_runner.join().unwrap();
    let second_report = second_runner.join().unwrap();
    assert!(first_report.is_clean(), "{first_report:?}");
    assert!(second_report.is_clean(), "{second_report:?}");

    let out = broker.read_topic("out");
    let ids: BTreeSet<u64> = out.iter().map(id_of).collect();
    assert_eq!(
        ids,
        (0..8_000).collect::<BTreeSet<u64>>(),
        "every event arrived"
    );
    assert_eq!(
        out.len(),
        8_000,
        "the handed-over partitions were committed before release: no event twice"
    );
    let committed = broker.committed("g3", "in", PARTITIONS);
    assert_eq!(committed, partition_ends(&broker.read_topic("in")));
}

#[test]
fn records_the_broker_refuses_are_dead_lettered_with_the_reason() {
    let broker = Broker::start();
    broker.create_topic("in", 2);
    broker.create_topic("out", 2);
    broker.create_topic("dead", 1);
    let mut input = records(200, 4);
    // Too large for the sink's `message.max.bytes` below, not for the
    // dead-letter sink.
    for i in [5usize, 150] {
        input[i].payload = format!(
            r#"{{"id":{i},"client":"c{}","pad":"{}"}}"#,
            i % 4,
            "x".repeat(4_000)
        )
        .into_bytes();
    }
    broker.produce("in", input);

    let mut out = sink_config(&broker, "out");
    out.options
        .insert("message.max.bytes".to_owned(), "2000".to_owned());
    let pipeline = kafka_pipeline(
        &broker,
        settings(),
        KafkaSource::new(source_config(&broker, "in", "g4")).unwrap(),
        ParseJson::default(),
        out,
    );
    let report = run_until_done(pipeline, 200);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.delivered, 198);
    assert_eq!(
        report.dead_lettered_by_reason,
        BTreeMap::from([("kafka_message_size_too_large".to_owned(), 2)])
    );
    let dead = broker.read_topic("dead");
    assert_eq!(dead.len(), 2);
    for record in &dead {
        let value: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(value["reason"], "kafka_message_size_too_large", "{value}");
    }
    assert_eq!(broker.read_topic("out").len(), 198);
}

#[test]
fn bad_options_are_refused_before_anything_connects() {
    let broker_less = KafkaSourceConfig {
        brokers: "127.0.0.1:1".to_owned(),
        topic: "t".to_owned(),
        group: "g".to_owned(),
        revoke_timeout: Duration::from_secs(1),
        options: BTreeMap::from([("enable.auto.commit".to_owned(), "true".to_owned())]),
    };
    let error = KafkaSource::new(broker_less).unwrap_err().to_string();
    assert!(error.contains("enable.auto.commit"), "{error}");

    let mut sink = KafkaSinkConfig {
        brokers: "127.0.0.1:1".to_owned(),
        topic: "t".to_owned(),
        topic_field: None,
        delivery_attempts: 5,
        flush_timeout: Duration::from_secs(1),
        options: BTreeMap::from([("enable.idempotence".to_owned(), "false".to_owned())]),
    };
    let error = KafkaSink::new(sink.clone()).unwrap_err().to_string();
    assert!(error.contains("enable.idempotence"), "{error}");
    sink.options = BTreeMap::from([("no.such.property".to_owned(), "1".to_owned())]);
    let error = KafkaSink::new(sink).unwrap_err().to_string();
    assert!(error.contains("no.such.property"), "{error}");
}

#[test]
fn a_consumer_with_its_budget_full_still_serves_a_rebalance() {
    let broker = Broker::start();
    broker.create_topic("in", PARTITIONS);
    broker.create_topic("out", PARTITIONS);
    broker.produce("in", records(2_000, 40));

    // The first consumer's stages are held shut, so its whole budget fills
    // and the pipeline stops calling `read`: only `idle` keeps it polling.
    // The eager protocol revokes every partition at a rebalance, so the
    // ones with events in flight are among them.
    let eager = |config: &mut KafkaSourceConfig| {
        config.options.insert(
            "partition.assignment.strategy".to_owned(),
            "range".to_owned(),
        );
    };
    let mut config = source_config(&broker, "in", "g5");
    config.revoke_timeout = Duration::from_millis(500);
    eager(&mut config);
    let first_source = KafkaSource::new(config).unwrap();
    let first_stats = first_source.stats();
    let gate = Gate::default();
    let mut first_settings = settings();
    first_settings.budget.max_events = 64;
    let first = kafka_pipeline(
        &broker,
        first_settings,
        first_source,
        gate.clone(),
        sink_config(&broker, "out"),
    );
    let first_handle = first.handle();
    let first_runner = thread::spawn(move || first.run());
    wait_for("the first consumer's budget to fill", || {
        first_handle.snapshot().in_flight_events >= 64
    });

    // A second member can only get partitions if the first one takes part
    // in the rebalance (its revoke callback runs inside `poll`).
    let mut config = source_config(&broker, "in", "g5");
    eager(&mut config);
    let second_source = KafkaSource::new(config).unwrap();
    let second_stats = second_source.stats();
    let second = kafka_pipeline(
        &broker,
        settings(),
        second_source,
        ParseJson::default(),
        sink_config(&broker, "out"),
    );
    let second_handle = second.handle();
    let second_runner = thread::spawn(move || second.run());
    wait_for("the second consumer to get partitions", || {
        !second_stats.assigned_partitions().is_empty()
    });
    assert!(first_stats.revokes() > 0);
    assert!(
        first_stats.revoked_unfinished() > 0,
        "the revoked partitions had events in flight; the wait gave up on them"
    );

    gate.open();
    let out_ids = || -> BTreeSet<u64> { broker.read_topic("out").iter().map(id_of).collect() };
    wait_for("every event in the output", || out_ids().len() == 2_000);
    first_handle.shutdown();
    second_handle.shutdown();
    assert!(first_runner.join().unwrap().is_clean());
    assert!(second_runner.join().unwrap().is_clean());
    // Events given up at the revoke were read again by the second member
    // (at least once); none is missing.
    assert_eq!(out_ids(), (0..2_000).collect::<BTreeSet<u64>>());
}
