//! The test broker against a real tansu process.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crew_testbroker::{Broker, Message, Record, FAST_GROUP};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

/// Bound on the waits below that poll a condition: they have nothing to
/// block on (a process exit seen from outside, a group join), so they poll
/// and give up here.
const GUARD: Duration = Duration::from_secs(60);

fn keyed(i: usize) -> Record {
    Record {
        partition: None,
        key: Some(format!("key-{}", i % 97).into_bytes()),
        payload: format!("record-{i}").into_bytes(),
        headers: vec![
            ("seq".to_owned(), i.to_string().into_bytes()),
            ("origin".to_owned(), b"broker-test".to_vec()),
        ],
    }
}

fn to_partition(partition: i32, payload: &str) -> Record {
    Record {
        partition: Some(partition),
        payload: payload.as_bytes().to_vec(),
        ..Record::default()
    }
}

fn payloads(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8(m.payload.clone()).unwrap())
        .collect()
}

#[test]
fn keyed_records_with_headers_read_back_in_produce_order_per_key() {
    let broker = Broker::start();
    broker.create_topic("keyed", 8);
    assert_eq!(broker.partitions("keyed"), 8);
    let records: Vec<Record> = (0..10_000).map(keyed).collect();
    broker.produce("keyed", records.clone());

    let read = broker.read_topic("keyed");
    assert_eq!(read.len(), records.len());

    // Offsets are dense from 0 in every partition.
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for m in &read {
        let next = next_offset.entry(m.partition).or_insert(0);
        assert_eq!(m.offset, *next, "partition {}", m.partition);
        *next += 1;
    }
    assert!(
        next_offset.len() > 1,
        "97 keys all landed in one partition: {next_offset:?}"
    );

    // Each key lives in one partition, and reading it back in (partition,
    // offset) order gives its records in the order they were produced, with
    // the key and headers they were produced with.
    let mut produced: BTreeMap<&[u8], Vec<&Record>> = BTreeMap::new();
    for r in &records {
        produced
            .entry(r.key.as_deref().unwrap())
            .or_default()
            .push(r);
    }
    let mut read_back: BTreeMap<&[u8], Vec<&Message>> = BTreeMap::new();
    for m in &read {
        read_back
            .entry(m.key.as_deref().unwrap())
            .or_default()
            .push(m);
    }
    assert_eq!(read_back.len(), produced.len());
    for (key, sent) in &produced {
        let got = &read_back[key];
        let partitions: BTreeSet<i32> = got.iter().map(|m| m.partition).collect();
        assert_eq!(
            partitions.len(),
            1,
            "key {key:?} in partitions {partitions:?}"
        );
        assert_eq!(got.len(), sent.len());
        for (m, r) in got.iter().zip(sent) {
            assert_eq!(m.payload, r.payload);
            assert_eq!(m.headers, r.headers);
        }
    }
}

#[test]
fn empty_partitions_do_not_hang_read_topic() {
    let broker = Broker::start();
    broker.create_topic("sparse", 3);
    assert_eq!(broker.read_topic("sparse"), Vec::<Message>::new());

    broker.produce(
        "sparse",
        (0..5).map(|i| to_partition(1, &format!("p1-{i}"))),
    );
    let read = broker.read_topic("sparse");
    assert_eq!(payloads(&read), ["p1-0", "p1-1", "p1-2", "p1-3", "p1-4"]);
    assert!(read.iter().all(|m| m.partition == 1));
    let offsets: Vec<i64> = read.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 4]);
}

#[test]
fn read_topic_until_follows_a_topic_being_written() {
    let broker = Broker::start();
    broker.create_topic("growing", 2);
    let read = std::thread::scope(|s| {
        s.spawn(|| {
            for batch in 0..10 {
                let records = (0..100).map(|i| to_partition(i % 2, &format!("{batch}-{i}")));
                broker.produce("growing", records);
            }
        });
        broker.read_topic_until("growing", GUARD, |so_far| so_far.len() >= 1000)
    });
    assert_eq!(read.len(), 1000);
    let per_partition: BTreeMap<i32, usize> = read.iter().fold(BTreeMap::new(), |mut n, m| {
        *n.entry(m.partition).or_default() += 1;
        n
    });
    assert_eq!(per_partition, BTreeMap::from([(0, 500), (1, 500)]));
    // Sorted by (partition, offset), and every batch's records in order.
    assert!(read
        .windows(2)
        .all(|w| (w[0].partition, w[0].offset) < (w[1].partition, w[1].offset)));
    let first_in_p0: Vec<String> = payloads(&read[..3]);
    assert_eq!(first_in_p0, ["0-0", "0-2", "0-4"]);

    // A condition never met returns, once the timeout passes, whatever it
    // read by then (how much depends on the machine's speed).
    let partial = broker.read_topic_until("growing", Duration::from_millis(500), |_| false);
    assert!(partial.iter().all(|m| read.contains(m)));
}

#[test]
fn two_brokers_run_side_by_side() {
    let a = Broker::start();
    let b = Broker::start();
    assert_ne!(a.bootstrap(), b.bootstrap());
    for (broker, name) in [(&a, "a"), (&b, "b")] {
        broker.create_topic("same-name", 1);
        broker.produce("same-name", [to_partition(0, name)]);
    }
    assert_eq!(payloads(&a.read_topic("same-name")), ["a"]);
    assert_eq!(payloads(&b.read_topic("same-name")), ["b"]);
}

#[test]
fn committed_returns_what_a_group_member_committed() {
    let broker = Broker::start();
    broker.create_topic("commits", 3);
    let records = (0..4)
        .map(|i| to_partition(0, &format!("p0-{i}")))
        .chain((0..6).map(|i| to_partition(1, &format!("p1-{i}"))));
    broker.produce("commits", records);
    assert_eq!(broker.committed("readers", "commits", 3), BTreeMap::new());

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "readers")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (key, value) in FAST_GROUP {
        config.set(*key, *value);
    }
    let member: BaseConsumer = config.create().unwrap();
    member.subscribe(&["commits"]).unwrap();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let start = Instant::now();
    while next.values().sum::<i64>() < 10 && start.elapsed() < GUARD {
        if let Some(read) = member.poll(Duration::from_millis(100)) {
            let m = read.unwrap();
            next.insert(m.partition(), m.offset() + 1);
        }
    }
    assert_eq!(next, BTreeMap::from([(0, 4), (1, 6)]), "joined and read");
    let mut offsets = TopicPartitionList::new();
    for (&partition, &offset) in &next {
        offsets
            .add_partition_offset("commits", partition, Offset::Offset(offset))
            .unwrap();
    }
    member.commit(&offsets, CommitMode::Sync).unwrap();

    // Partition 2 has no commit, so it is absent.
    assert_eq!(broker.committed("readers", "commits", 3), next);
    assert_eq!(broker.committed("others", "commits", 3), BTreeMap::new());
}

#[test]
fn a_dropped_broker_is_gone() {
    let broker = Broker::start();
    let addr = broker.bootstrap();
    TcpStream::connect(&addr).expect("a started broker listens");
    drop(broker);
    // Drop has waited for the process, so its port is closed already; the
    // loop only guards against a slow kernel.
    let start = Instant::now();
    while TcpStream::connect(&addr).is_ok() && start.elapsed() < GUARD {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        TcpStream::connect(&addr).is_err(),
        "{addr} still accepts connections"
    );
}

#[test]
#[should_panic(expected = "metadata of missing")]
fn a_missing_topic_is_an_error_not_created() {
    let broker = Broker::start();
    broker.partitions("missing");
}
