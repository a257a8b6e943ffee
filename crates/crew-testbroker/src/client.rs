//! The broker's helpers: topics through the tansu CLI, records through
//! plain blocking rdkafka clients.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::{Broker, Message, Record};

/// The producer a [`Broker`] keeps for its whole life.
pub(crate) type Producer = BaseProducer<Deliveries>;

/// Bound on a metadata or committed-offsets request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on `read_topic` (200k messages take a few seconds).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound on each record's delivery; past it librdkafka reports it failed, so
/// `produce` always ends.
const DELIVERY_TIMEOUT_MS: &str = "60000";

/// Messages `read_topic_until` takes in one go before asking `done` again,
/// so that a `done` which scans everything read does not run per message.
const UNTIL_BATCH: usize = 10_000;

/// The idempotent producer behind [`Broker::produce`]. It is made once, when
/// the broker starts: a new idempotent producer asks for its producer id
/// before its connection is up and librdkafka retries only 500 ms later, a
/// delay each `produce` would pay with a producer of its own.
pub(crate) fn producer(bootstrap: &str) -> Producer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", DELIVERY_TIMEOUT_MS)
        // Room for a whole test's records, so sending rarely waits.
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Deliveries)
        .unwrap_or_else(|e| panic!("cannot create a producer: {e}"))
}

impl Broker {
    /// `tansu topic create NAME --partitions N --broker tcp://127.0.0.1:PORT`.
    /// Tests create their topics first: producing to a missing topic makes
    /// one with 4 partitions. Panics with tansu's output on failure.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", name, "--partitions"])
            .arg(partitions.to_string())
            .args(["--broker", &format!("tcp://{}", self.bootstrap())])
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        assert!(
            out.status.success(),
            "`tansu topic create {name} --partitions {partitions}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }

    /// Produces every record (idempotent producer, `acks=all`) and waits for
    /// every delivery report. Panics on any delivery error.
    ///
    /// Records with `partition: None` go where their key hashes (librdkafka's
    /// default partitioner). Many records are in flight at once: 200k small
    /// records take about a second. Several threads may produce at once.
    pub fn produce(&self, topic: &str, records: impl IntoIterator<Item = Record>) {
        let producer = self
            .producer
            .as_ref()
            .expect("the producer lives until drop");
        // This call's own tally: other threads' records share the producer.
        let report = Arc::new(Report::default());
        let mut sent = 0;
        for record in records {
            let mut base = BaseRecord::<[u8], [u8], _>::with_opaque_to(topic, report.clone())
                .payload(&record.payload);
            if let Some(key) = &record.key {
                base = base.key(key);
            }
            if let Some(partition) = record.partition {
                base = base.partition(partition);
            }
            if !record.headers.is_empty() {
                let headers = record.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(record.headers.len()),
                    |headers, (key, value)| {
                        headers.insert(Header {
                            key,
                            value: Some(value),
                        })
                    },
                );
                base = base.headers(headers);
            }
            loop {
                match producer.send(base) {
                    Ok(()) => break,
                    // The queue drains as deliveries are reported, which
                    // happens in poll.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        base = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("cannot send to {topic}: {e}"),
                }
            }
            sent += 1;
        }
        // Each record is reported by message.timeout.ms, delivered or not;
        // the deadline is only a backstop.
        let deadline = Instant::now() + Duration::from_secs(120);
        while report.delivered.load(Ordering::Relaxed) + report.failed.load(Ordering::Relaxed)
            < sent
        {
            assert!(
                Instant::now() < deadline,
                "producing to {topic}: delivery reports missing; broker log:\n{}",
                self.log_tail()
            );
            producer.poll(Duration::from_millis(10));
        }
        let failed = report.failed.load(Ordering::Relaxed);
        assert!(
            failed == 0,
            "producing to {topic}: {failed} of {sent} records failed, the first with {}",
            report.first_error.lock().unwrap().as_deref().unwrap_or("?"),
        );
    }

    /// Every message of every partition of `topic`, from the beginning to the
    /// end as the broker reports it when read, sorted by (partition, offset).
    ///
    /// The end is each partition's end-of-partition event (the high watermark
    /// of a fetch response), not `fetch_watermarks`, which is wrong on tansu
    /// (docs/kafka-notes.md). Panics naming the partitions not at their end
    /// after 60 s.
    pub fn read_topic(&self, topic: &str) -> Vec<Message> {
        let (consumer, partitions) = self.reader(topic, true);
        let mut at_end = vec![false; partitions as usize];
        let mut messages = Vec::new();
        let deadline = Instant::now() + READ_TIMEOUT;
        while at_end.contains(&false) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let behind: Vec<usize> = (0..at_end.len()).filter(|&p| !at_end[p]).collect();
                panic!(
                    "reading {topic}: partitions {behind:?} not at their end after {READ_TIMEOUT:?} \
                     ({} messages read); broker log:\n{}",
                    messages.len(),
                    self.log_tail()
                );
            }
            match consumer.poll(left) {
                Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
                Some(read) => {
                    let message = owned(topic, read);
                    at_end[message.partition as usize] = false;
                    messages.push(message);
                }
                None => {}
            }
        }
        messages.sort_by_key(|m| (m.partition, m.offset));
        messages
    }

    /// Reads `topic` from the beginning of every partition until
    /// `done(&messages_so_far)` is true or `timeout` passes, and returns what
    /// it read, sorted by (partition, offset). For a topic another process is
    /// still writing; it does not panic at the timeout: the caller asserts.
    ///
    /// `done` sees the messages in the order they were read (in offset order
    /// within a partition), once per batch of messages, not once per message.
    pub fn read_topic_until(
        &self,
        topic: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let (consumer, _) = self.reader(topic, false);
        let mut messages = Vec::new();
        while !done(&messages) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Some(read) = consumer.poll(left) {
                messages.push(owned(topic, read));
                // Take what is already fetched before asking `done` again.
                for _ in 1..UNTIL_BATCH {
                    match consumer.poll(Duration::ZERO) {
                        Some(read) => messages.push(owned(topic, read)),
                        None => break,
                    }
                }
            }
        }
        messages.sort_by_key(|m| (m.partition, m.offset));
        messages
    }

    /// The committed offsets of `group` for partitions `0..partitions` of
    /// `topic`; partitions with no commit are absent.
    pub fn committed(&self, group: &str, topic: &str, partitions: u32) -> BTreeMap<i32, i64> {
        // It never subscribes, so it does not join the group and cannot
        // disturb the members under test.
        let consumer = self.consumer(group, &[]);
        let mut asked = TopicPartitionList::new();
        for partition in 0..partitions {
            asked.add_partition(topic, partition as i32);
        }
        let got = consumer
            .committed_offsets(asked, REQUEST_TIMEOUT)
            .unwrap_or_else(|e| panic!("committed offsets of {group} on {topic}: {e}"));
        got.elements()
            .iter()
            .filter_map(|entry| {
                if let Err(e) = entry.error() {
                    panic!(
                        "committed offset of {group} on {topic}/{}: {e}",
                        entry.partition()
                    );
                }
                match entry.offset() {
                    Offset::Offset(offset) => Some((entry.partition(), offset)),
                    _ => None,
                }
            })
            .collect()
    }

    /// The partition count of `topic`, from metadata. Panics if the topic
    /// does not exist.
    pub fn partitions(&self, topic: &str) -> u32 {
        partition_count(&self.consumer(READER_GROUP, &[]), topic)
    }

    fn consumer(&self, group: &str, settings: &[(&str, &str)]) -> BaseConsumer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        for (key, value) in settings {
            config.set(*key, *value);
        }
        config
            .create()
            .unwrap_or_else(|e| panic!("cannot create a consumer: {e}"))
    }

    /// A consumer that joins no group, assigned every partition of `topic`
    /// from its first offset, and the topic's partition count.
    fn reader(&self, topic: &str, eof: bool) -> (BaseConsumer, u32) {
        let consumer = self.consumer(
            READER_GROUP,
            &[
                ("enable.partition.eof", if eof { "true" } else { "false" }),
                // tansu answers a fetch with no new data only after this
                // wait: it is how long finding the end of a partition takes.
                ("fetch.wait.max.ms", "10"),
                // Only if a log does not start at 0 (see below).
                ("auto.offset.reset", "earliest"),
            ],
        );
        let partitions = partition_count(&consumer, topic);
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            // Offset 0 rather than Offset::Beginning, which costs a
            // ListOffsets request that a new client makes before its
            // connection is up and retries 500 ms later (measured). tansu's
            // memory logs start at 0; one that did not would be out of
            // range and start at the earliest offset instead.
            assignment
                .add_partition_offset(topic, partition as i32, Offset::Offset(0))
                .unwrap_or_else(|e| panic!("assigning {topic}/{partition}: {e}"));
        }
        consumer
            .assign(&assignment)
            .unwrap_or_else(|e| panic!("assigning {topic}: {e}"));
        (consumer, partitions)
    }
}

/// librdkafka refuses `assign` without a group.id ("Unknown group"). The
/// consumers using this one never subscribe, so they join no group, and
/// with auto commit off they commit nothing.
const READER_GROUP: &str = "crew-testbroker-reader";

fn partition_count(consumer: &BaseConsumer, topic: &str) -> u32 {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("metadata of {topic}: topic not in the answer"));
    if let Some(e) = found.error() {
        panic!("metadata of {topic}: {}", RDKafkaErrorCode::from(e));
    }
    found.partitions().len() as u32
}

/// Copies a message out of the consumer; panics on a read error.
fn owned(topic: &str, read: KafkaResult<BorrowedMessage<'_>>) -> Message {
    let message = read.unwrap_or_else(|e| panic!("reading {topic}: {e}"));
    Message {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().unwrap_or_default().to_vec(),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Routes each delivery report to the tally of the `produce` call that sent
/// the record. Reports are served by whichever thread polls the producer.
pub(crate) struct Deliveries;

/// One `produce` call's delivery reports.
#[derive(Default)]
pub(crate) struct Report {
    delivered: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<Report>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Arc<Report>) {
        match result {
            Ok(_) => {
                report.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, message)) => {
                report.failed.fetch_add(1, Ordering::Relaxed);
                report
                    .first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{e} (partition {})", message.partition()));
            }
        }
    }
}
