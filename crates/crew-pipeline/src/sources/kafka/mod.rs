//! The Kafka source: one topic, read as a member of a consumer group.
//!
//! Offsets are committed from the pipeline's watermarks only (automatic
//! commits and offset stores are off), so a committed offset never covers
//! an event that is not done. A rebalance that takes partitions away waits
//! for their in-flight events (up to `revoke_timeout`), commits what they
//! finished and forgets them ([`PartitionHandoff`]); partitions assigned
//! resume from the group's committed offsets. A partition whose in-flight
//! budget is full is paused, not left unpolled: the consumer keeps calling
//! `poll`, so it stays in its group however slow the stages are.

mod rebalance;
mod stats;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};
use serde::Deserialize;

use crate::event::{Event, Header, Offset, Origin, Partition};
use crate::kafka_client::{client_config, Fixed};
use crate::runtime::PartitionHandoff;
use crate::source::{Full, ReadBatch, ReadStatus, Source, SourceError};

use rebalance::{Notice, Rebalancer};
pub use stats::KafkaSourceStats;

/// The librdkafka properties crew sets for its consumer unless `options`
/// says otherwise.
///
/// - `auto.offset.reset = earliest`: a new group starts at the beginning,
///   so nothing written before it existed is skipped;
/// - `partition.assignment.strategy = cooperative-sticky`: a rebalance
///   moves only the partitions that change owner, so the others keep
///   flowing while those drain;
/// - `queued.max.messages.kbytes = 16384`: librdkafka's prefetch per
///   partition is bounded to 16 MiB (its default is 64 MiB), memory the
///   pipeline's budget cannot see;
/// - `fetch.queue.backoff.ms = 10`: once that prefetch is full, librdkafka
///   fetches again after 10 ms instead of its default second (B7 measured
///   the source idle half the time with the default);
/// - `client.id = crew`.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    ("queued.max.messages.kbytes", "16384"),
    ("fetch.queue.backoff.ms", "10"),
    ("client.id", "crew"),
];

/// Properties the source owns: changing them would commit offsets of events
/// that are not done.
const CONSUMER_FIXED: &[Fixed] = &[
    Fixed {
        key: "enable.auto.commit",
        value: "false",
        why: "crew commits offsets from its watermarks, once events are done",
    },
    Fixed {
        key: "enable.auto.offset.store",
        value: "false",
        why: "crew commits explicit offsets, never the consumer's position",
    },
];

/// How long `connect` waits for the topic's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of a [`KafkaSource`].
///
/// ```
/// use crew_pipeline::sources::KafkaSourceConfig;
///
/// let config: KafkaSourceConfig = toml::from_str(r#"
///     brokers = "127.0.0.1:9092"
///     topic = "pixels"
///     group = "crew-pixels"
///     [options]
///     "session.timeout.ms" = 10000
///     "enable.partition.eof" = false
/// "#).unwrap();
/// assert_eq!(config.revoke_timeout, std::time::Duration::from_secs(10));
/// assert_eq!(config.options["session.timeout.ms"], "10000");
/// assert_eq!(config.options["enable.partition.eof"], "false");
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic to read.
    pub topic: String,
    /// The consumer group (`group.id`): processes with the same group share
    /// the topic's partitions.
    pub group: String,
    /// How long a rebalance waits for the in-flight events of partitions
    /// being taken away before it lets them go (their unfinished events are
    /// then read again by the next owner). Default 10 s; keep it well under
    /// `max.poll.interval.ms`.
    #[serde(default = "default_revoke_timeout", with = "humantime_serde")]
    pub revoke_timeout: Duration,
    /// librdkafka consumer properties, passed through as given; they win
    /// over [`CONSUMER_DEFAULTS`].
    #[serde(default, deserialize_with = "crate::kafka_client::options")]
    pub options: BTreeMap<String, String>,
}

fn default_revoke_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A Kafka source that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConfigError {
    /// An option is refused, or a required setting is empty.
    #[error("{0}")]
    Invalid(String),
    /// librdkafka refused the configuration.
    #[error("librdkafka refused the configuration: {0}")]
    Client(#[from] KafkaError),
}

impl KafkaSourceConfig {
    /// Checks what can be checked without a broker: required fields, and
    /// options crew cannot allow.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        self.client_config().map(drop)
    }

    fn client_config(&self) -> Result<rdkafka::ClientConfig, KafkaConfigError> {
        for (value, name) in [
            (&self.brokers, "brokers"),
            (&self.topic, "topic"),
            (&self.group, "group"),
        ] {
            if value.trim().is_empty() {
                return Err(KafkaConfigError::Invalid(format!("`{name}` is empty")));
            }
        }
        let mut config = client_config(
            &self.brokers,
            CONSUMER_DEFAULTS,
            &self.options,
            CONSUMER_FIXED,
            &[("group.id", "group")],
        )
        .map_err(KafkaConfigError::Invalid)?;
        config.set("group.id", &self.group);
        Ok(config)
    }
}

/// Reads one topic as a member of a consumer group; see the module docs.
pub struct KafkaSource {
    config: KafkaSourceConfig,
    client_config: rdkafka::ClientConfig,
    topic_c: CString,
    consumer: Option<BaseConsumer<Rebalancer>>,
    handoff: Option<PartitionHandoff>,
    /// Messages polled but not pushed yet (their partition had no room, or
    /// the batch was full), per partition in offset order.
    held: BTreeMap<i32, VecDeque<Event>>,
    paused: BTreeSet<i32>,
    stats: Arc<KafkaSourceStats>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.config.topic)
            .field("group", &self.config.group)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// A source for `config`; nothing connects before the pipeline calls
    /// [`Source::connect`].
    pub fn new(config: KafkaSourceConfig) -> Result<KafkaSource, KafkaConfigError> {
        let client_config = config.client_config()?;
        let topic_c = CString::new(config.topic.clone())
            .map_err(|_| KafkaConfigError::Invalid("`topic` contains a NUL byte".to_owned()))?;
        Ok(KafkaSource {
            config,
            client_config,
            topic_c,
            consumer: None,
            handoff: None,
            held: BTreeMap::new(),
            paused: BTreeSet::new(),
            stats: Arc::default(),
        })
    }

    /// The source's own counters (assignments, rebalances), shared with
    /// exporters.
    pub fn stats(&self) -> Arc<KafkaSourceStats> {
        Arc::clone(&self.stats)
    }

    fn consumer(&self) -> Result<&BaseConsumer<Rebalancer>, SourceError> {
        self.consumer
            .as_ref()
            .ok_or_else(|| SourceError::fatal("the Kafka source was read before it connected"))
    }

    /// Pushes held events while their partitions have room, and resumes
    /// paused partitions that have room again and nothing held.
    fn serve_held(&mut self, batch: &mut ReadBatch) {
        let mut emptied = Vec::new();
        for (&partition, queue) in &mut self.held {
            while let Some(event) = queue.pop_front() {
                if let Err(Full(event)) = batch.push(event) {
                    queue.push_front(event);
                    break;
                }
            }
            if queue.is_empty() {
                emptied.push(partition);
            }
        }
        for partition in emptied {
            self.held.remove(&partition);
        }
        let resumable: Vec<i32> = self
            .paused
            .iter()
            .copied()
            .filter(|p| !self.held.contains_key(p) && batch.room(*p as Partition) > 0)
            .collect();
        if !resumable.is_empty() {
            self.set_paused(&resumable, false);
        }
    }

    fn set_paused(&mut self, partitions: &[i32], pause: bool) {
        let Some(consumer) = &self.consumer else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            list.add_partition(&self.config.topic, partition);
        }
        let result = if pause {
            consumer.pause(&list)
        } else {
            consumer.resume(&list)
        };
        match result {
            Ok(()) => {
                for &partition in partitions {
                    if pause {
                        self.stats.paused_one();
                        self.paused.insert(partition);
                    } else {
                        self.paused.remove(&partition);
                    }
                }
            }
            // A partition revoked a moment ago cannot be paused; the next
            // read tries again for those still assigned.
            Err(error) => tracing::debug!(%error, pause, "pausing or resuming partitions failed"),
        }
        self.stats.set_paused(self.paused.len());
    }

    /// Applies what rebalance callbacks reported during the last poll:
    /// events held for a partition that was taken away are dropped (never
    /// registered, so nothing waits for them; the next owner reads them),
    /// and pause marks of revoked or newly assigned partitions are cleared.
    fn apply_notices(&mut self) {
        let Some(consumer) = &self.consumer else {
            return;
        };
        for notice in consumer.context().take_notices() {
            let (Notice::Revoked(partitions) | Notice::Assigned(partitions)) = &notice;
            for partition in partitions {
                self.held.remove(partition);
                self.paused.remove(partition);
            }
            if let Notice::Assigned(partitions) = notice {
                // librdkafka keeps a partition's pause flag across
                // assignments: one paused before a rebalance would come
                // back paused, and nothing here would resume it.
                let mut list = TopicPartitionList::new();
                for partition in partitions {
                    list.add_partition(&self.config.topic, partition);
                }
                if let Err(error) = consumer.resume(&list) {
                    tracing::debug!(%error, "resuming newly assigned partitions");
                }
            }
        }
        self.stats.set_paused(self.paused.len());
    }

    /// Hands one message to the batch, or holds it (pausing its partition
    /// when the partition's room is what ran out).
    fn take_message(&mut self, event: Event, batch: &mut ReadBatch) {
        let partition = event.origin().partition as i32;
        if let Some(queue) = self.held.get_mut(&partition) {
            queue.push_back(event);
            return;
        }
        if let Err(Full(event)) = batch.push(event) {
            let batch_full = batch.is_full();
            self.held.entry(partition).or_default().push_back(event);
            if !batch_full && !self.paused.contains(&partition) {
                self.set_paused(&[partition], true);
            }
        }
    }

    /// Whether every assigned partition is paused (so polling can only serve
    /// callbacks until acks free room).
    fn all_paused(&self) -> bool {
        let assigned = self.stats.assigned_partitions();
        !assigned.is_empty() && assigned.iter().all(|p| self.paused.contains(&(*p as i32)))
    }
}

impl Source for KafkaSource {
    fn attach(&mut self, handoff: PartitionHandoff) {
        self.handoff = Some(handoff);
    }

    fn connect(&mut self) -> Result<(), SourceError> {
        if self.consumer.is_none() {
            let context = Rebalancer::new(
                self.config.topic.clone(),
                self.config.revoke_timeout,
                self.handoff.clone(),
                Arc::clone(&self.stats),
            );
            let consumer: BaseConsumer<Rebalancer> = self
                .client_config
                .create_with_context(context)
                .map_err(|e| SourceError::fatal(format!("creating the consumer: {e}")))?;
            self.consumer = Some(consumer);
        }
        let consumer = self.consumer()?;
        // A reachable broker and an existing topic before subscribing: a
        // typo in `topic` shows up as a retried, logged connect error
        // instead of a consumer that silently gets no partitions.
        let metadata = consumer
            .fetch_metadata(Some(&self.config.topic), METADATA_TIMEOUT)
            .map_err(|e| SourceError::retriable(format!("reaching the brokers: {e}")))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.config.topic);
        match topic {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {}
            _ => {
                return Err(SourceError::retriable(format!(
                    "topic `{}` does not exist (yet)",
                    self.config.topic
                )))
            }
        }
        consumer
            .subscribe(&[&self.config.topic])
            .map_err(|e| SourceError::fatal(format!("subscribing: {e}")))?;
        tracing::info!(topic = %self.config.topic, group = %self.config.group, "Kafka source subscribed");
        Ok(())
    }

    fn read(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, SourceError> {
        self.consumer()?;
        self.serve_held(batch);
        if batch.is_full() {
            return Ok(ReadStatus::More);
        }
        if batch.is_empty() && self.all_paused() {
            // Serve callbacks (a rebalance, heartbeats' errors) without
            // waiting, then let the pipeline wait for acks to free room.
            let polled = self
                .consumer()?
                .poll(Duration::ZERO)
                .map(|r| r.map(to_event));
            self.apply_notices();
            if let Some(polled) = polled {
                self.handle_polled(polled, batch)?;
            }
            return Ok(if batch.is_empty() {
                ReadStatus::Blocked
            } else {
                ReadStatus::More
            });
        }
        let until = batch.linger_until();
        loop {
            let timeout = until.saturating_duration_since(Instant::now());
            let polled = self.consumer()?.poll(timeout).map(|r| r.map(to_event));
            // Notices first: a message polled after a revoke and reassign
            // (offsets going back) must not meet events held from before.
            self.apply_notices();
            if let Some(polled) = polled {
                self.handle_polled(polled, batch)?;
            }
            if batch.is_full() || Instant::now() >= until {
                return Ok(ReadStatus::More);
            }
        }
    }

    fn idle(&mut self) -> Result<(), SourceError> {
        // No room anywhere: stop fetching, but keep polling so the group
        // sees a live member and rebalances are served.
        let fetching: Vec<i32> = self
            .stats
            .assigned_partitions()
            .into_iter()
            .map(|p| p as i32)
            .filter(|p| !self.paused.contains(p))
            .collect();
        if !fetching.is_empty() {
            self.set_paused(&fetching, true);
        }
        while let Some(polled) = self
            .consumer()?
            .poll(Duration::ZERO)
            .map(|r| r.map(to_event))
        {
            self.apply_notices();
            match polled {
                // Already fetched before the pause: kept for the next read.
                Ok(event) => {
                    let partition = event.origin().partition as i32;
                    self.held.entry(partition).or_default().push_back(event);
                }
                Err(error) => self.handle_error(error)?,
            }
        }
        self.apply_notices();
        Ok(())
    }

    fn commit(&mut self, done_through: &[(Partition, Offset)]) -> Result<(), SourceError> {
        let consumer = self.consumer()?;
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in done_through {
            list.add_partition_offset(
                &self.config.topic,
                partition as i32,
                KafkaOffset::Offset(offset as i64 + 1),
            )
            .map_err(|e| SourceError::fatal(format!("building the commit: {e}")))?;
        }
        consumer
            .commit(&list, CommitMode::Sync)
            .map_err(|e| SourceError::retriable(format!("committing offsets: {e}")))?;
        self.stats.committed(done_through);
        Ok(())
    }

    fn end_offsets(&mut self) -> Vec<(Partition, Offset)> {
        let Some(consumer) = &self.consumer else {
            return Vec::new();
        };
        let mut ends = Vec::new();
        for partition in self.stats.assigned_partitions() {
            let (mut low, mut high) = (-1i64, -1i64);
            // The high watermark of the last fetch response, cached by
            // librdkafka: no request. (`fetch_watermarks` asks the broker,
            // and some Kafka-compatible brokers answer it wrongly; see
            // docs/kafka-notes.md.)
            // SAFETY: the client pointer is valid while `consumer` lives,
            // the topic is a NUL-terminated string, and librdkafka only
            // writes the two integers.
            let err = unsafe {
                rdkafka::bindings::rd_kafka_get_watermark_offsets(
                    consumer.client().native_ptr(),
                    self.topic_c.as_ptr(),
                    partition as i32,
                    &mut low,
                    &mut high,
                )
            };
            if err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                && high >= 0
            {
                ends.push((partition, high as Offset));
            }
        }
        ends
    }
}

impl KafkaSource {
    fn handle_polled(
        &mut self,
        polled: Result<Event, KafkaError>,
        batch: &mut ReadBatch,
    ) -> Result<(), SourceError> {
        match polled {
            Ok(event) => {
                self.take_message(event, batch);
                Ok(())
            }
            Err(error) => self.handle_error(error),
        }
    }

    /// A consumer error: fatal ones stop the pipeline, the rest are
    /// counted and logged while librdkafka recovers.
    fn handle_error(&mut self, error: KafkaError) -> Result<(), SourceError> {
        match error {
            KafkaError::PartitionEOF(_) => Ok(()),
            error if is_fatal(&error) => Err(SourceError::fatal(format!(
                "the Kafka consumer failed: {error}"
            ))),
            error => {
                // Broker hiccups: librdkafka reconnects and refetches on
                // its own; failing the pipeline for them would turn a
                // blip into a restart.
                self.stats.error();
                tracing::warn!(%error, "Kafka consumer error");
                Ok(())
            }
        }
    }
}

/// Errors librdkafka will not recover from on its own.
fn is_fatal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::InvalidGroupId
        )
    )
}

/// The event a message becomes: payload as the raw bytes (a tombstone's
/// missing payload as empty bytes, which parsing dead-letters), the message
/// key as the event key, partition and offset as its origin, headers kept.
fn to_event(message: BorrowedMessage<'_>) -> Event {
    let origin = Origin {
        partition: message.partition() as Partition,
        offset: message.offset() as Offset,
    };
    let mut event = Event::new(
        origin,
        Bytes::copy_from_slice(message.payload().unwrap_or_default()),
    );
    if let Some(key) = message.key() {
        event = event.with_key(Bytes::copy_from_slice(key));
    }
    if let Some(headers) = message.headers() {
        let headers = headers
            .iter()
            .map(|h| Header {
                name: h.key.to_owned(),
                value: h.value.map(Bytes::copy_from_slice),
            })
            .collect();
        event = event.with_headers(headers);
    }
    event
}
