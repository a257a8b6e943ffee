//! The Kafka sink: records to a topic (or the topic a field names), with an
//! idempotent producer; an event counts as delivered only once its delivery
//! report says the broker has it.
//!
//! `write` only queues records in librdkafka; `flush` waits for every
//! delivery report. The pipeline acks after `flush`, so its committed
//! offsets never cover an event the broker has not acknowledged. A report
//! with a retriable error (a timeout, a leader moving) sends the record
//! again, up to `delivery_attempts`; any other error (a record too large, a
//! topic that does not exist) sends the event to the dead-letter output
//! ([`Sink::take_refused`]).
//!
//! Built on librdkafka's threaded producer with crew's own delivery
//! callback rather than `FutureProducer`: the callback runs the moment a
//! report arrives, so delivery latency is measured there, and a batch needs
//! no future (and no oneshot channel) per record.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crew::{Histogram, SharedHistogram};
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::Deserialize;
use sonic_rs::JsonValueTrait;

use crate::event::Origin;
use crate::kafka_client::{client_config, is_retriable, reason_of, Fixed};
use crate::sink::{OutBatch, Refused, Sink, SinkError};

/// The librdkafka properties crew sets for its producer unless `options`
/// says otherwise.
///
/// - `linger.ms = 1`: records wait up to 1 ms to travel in larger batches
///   (each flush waits for its reports, so a longer linger is paid on every
///   flush: B7 ran twice as fast at 1 ms as at 5);
/// - `message.timeout.ms = 60000`: a record not acknowledged within a
///   minute is reported failed (and sent again, see `delivery_attempts`)
///   rather than after librdkafka's five minutes;
/// - `client.id = crew`.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("linger.ms", "1"),
    ("message.timeout.ms", "60000"),
    ("client.id", "crew"),
];

/// How long a send waits for room in librdkafka's queue before trying again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(100);

/// Properties the sink owns.
const PRODUCER_FIXED: &[Fixed] = &[Fixed {
    key: "enable.idempotence",
    value: "true",
    why: "retried sends must not write a record twice or out of order",
}];

/// Configuration of a [`KafkaSink`].
///
/// ```
/// use crew_pipeline::sinks::KafkaSinkConfig;
///
/// let config: KafkaSinkConfig = toml::from_str(r#"
///     brokers = "127.0.0.1:9092"
///     topic = "pixels-out"
///     topic_field = "destination"
/// "#).unwrap();
/// assert_eq!(config.delivery_attempts, 5);
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic records go to (when `topic_field` names none).
    pub topic: String,
    /// A field of the record (`/`-separated path, as `key_field`) whose
    /// string value is the topic to write the record to; records without
    /// it go to `topic`.
    #[serde(default)]
    pub topic_field: Option<String>,
    /// How many times a record whose delivery failed with a retriable error
    /// is sent in all, before the flush reports the sink failing. Default 5.
    #[serde(default = "default_delivery_attempts")]
    pub delivery_attempts: u32,
    /// How long one flush waits for delivery reports. Default 2 minutes
    /// (above the default `message.timeout.ms`, so librdkafka reports first).
    #[serde(default = "default_flush_timeout", with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// librdkafka producer properties, passed through as given; they win
    /// over [`PRODUCER_DEFAULTS`].
    #[serde(default, deserialize_with = "crate::kafka_client::options")]
    pub options: BTreeMap<String, String>,
}

fn default_delivery_attempts() -> u32 {
    5
}

fn default_flush_timeout() -> Duration {
    Duration::from_secs(120)
}

use crate::sources::KafkaConfigError;

impl KafkaSinkConfig {
    /// Checks what can be checked without a broker.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        self.client_config().map(drop)
    }

    fn client_config(&self) -> Result<rdkafka::ClientConfig, KafkaConfigError> {
        for (value, name) in [(&self.brokers, "brokers"), (&self.topic, "topic")] {
            if value.trim().is_empty() {
                return Err(KafkaConfigError::Invalid(format!("`{name}` is empty")));
            }
        }
        if self.delivery_attempts == 0 {
            return Err(KafkaConfigError::Invalid(
                "`delivery_attempts` must be at least 1".to_owned(),
            ));
        }
        client_config(
            &self.brokers,
            PRODUCER_DEFAULTS,
            &self.options,
            PRODUCER_FIXED,
            &[],
        )
        .map_err(KafkaConfigError::Invalid)
    }
}

/// Counters and gauges of a [`KafkaSink`], shared with exporters.
#[derive(Debug, Default)]
pub struct KafkaSinkStats {
    sent: AtomicU64,
    reported: AtomicU64,
    delivered: AtomicU64,
    resent: AtomicU64,
    refused: AtomicU64,
    delivery_latency: SharedHistogram,
}

impl KafkaSinkStats {
    /// Records handed to the producer and not reported yet.
    pub fn in_flight(&self) -> u64 {
        let reported = self.reported.load(Ordering::Relaxed);
        self.sent.load(Ordering::Relaxed).saturating_sub(reported)
    }

    /// Records the broker acknowledged.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Records sent again after a retriable delivery error.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// Records refused for good (dead-lettered).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// From handing a record to the producer to its delivery report.
    pub fn delivery_latency(&self) -> Histogram {
        self.delivery_latency.snapshot()
    }
}

/// What travels with a record through librdkafka to its delivery report.
struct Sent {
    origin: Origin,
    sent_at: Instant,
    attempt: u32,
}

/// A delivery that failed, with what is needed to send it again.
struct Failed {
    origin: Origin,
    attempt: u32,
    error: KafkaError,
    topic: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

#[derive(Default)]
struct Reports {
    reported: u64,
    failed: Vec<Failed>,
}

/// The producer's context: delivery reports land here, on librdkafka's
/// polling thread.
struct Deliveries {
    reports: Mutex<Reports>,
    changed: Condvar,
    stats: Arc<KafkaSinkStats>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        let failed = match result {
            Ok(_) => {
                self.stats.delivery_latency.record(sent.sent_at.elapsed());
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err((error, message)) => Some(Failed {
                origin: sent.origin,
                attempt: sent.attempt,
                error: error.clone(),
                topic: message.topic().to_owned(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().unwrap_or_default().to_vec(),
                headers: message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        };
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports.reported += 1;
        reports.failed.extend(failed);
        self.stats.reported.fetch_add(1, Ordering::Relaxed);
        drop(reports);
        self.changed.notify_all();
    }
}

/// Writes records to Kafka; see the module docs.
pub struct KafkaSink {
    config: KafkaSinkConfig,
    topic_path: Vec<String>,
    producer: ThreadedProducer<Deliveries>,
    /// Records handed to the producer (each gets exactly one report).
    sent: u64,
    refused: Vec<Refused>,
    stats: Arc<KafkaSinkStats>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.config.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A sink for `config`. Creating the producer does not contact the
    /// brokers; a broker that is down shows up as retried flushes.
    pub fn new(config: KafkaSinkConfig) -> Result<KafkaSink, KafkaConfigError> {
        let client_config = config.client_config()?;
        let stats = Arc::new(KafkaSinkStats::default());
        let producer = client_config.create_with_context(Deliveries {
            reports: Mutex::default(),
            changed: Condvar::new(),
            stats: Arc::clone(&stats),
        })?;
        let topic_path = config
            .topic_field
            .as_deref()
            .map(|field| field.split('/').map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(KafkaSink {
            config,
            topic_path,
            producer,
            sent: 0,
            refused: Vec::new(),
            stats,
        })
    }

    /// The sink's counters, shared with exporters.
    pub fn stats(&self) -> Arc<KafkaSinkStats> {
        Arc::clone(&self.stats)
    }

    /// The topic a record goes to.
    fn topic_of<'a>(&'a self, payload: &'a [u8]) -> std::borrow::Cow<'a, str> {
        if !self.topic_path.is_empty() {
            if let Ok(found) = sonic_rs::get_from_slice(payload, &self.topic_path) {
                if let Some(topic) = found.as_str().filter(|t| !t.is_empty()) {
                    return std::borrow::Cow::Owned(topic.to_owned());
                }
            }
        }
        std::borrow::Cow::Borrowed(&self.config.topic)
    }

    /// Hands one record to the producer, waiting while its queue is full.
    /// A record librdkafka refuses outright (too large, unknown partition)
    /// is refused for good.
    fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
        origin: Origin,
        attempt: u32,
    ) {
        let mut headers = headers;
        loop {
            let mut record = BaseRecord::with_opaque_to(
                topic,
                Box::new(Sent {
                    origin,
                    sent_at: Instant::now(),
                    attempt,
                }),
            )
            .payload(payload);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(headers) = headers.take() {
                record = record.headers(headers);
            }
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                    headers = record.headers;
                    // Backpressure from librdkafka's queue: wait for some
                    // deliveries to make room, then try again.
                    let reported = self.stats.reported.load(Ordering::Relaxed);
                    self.wait_reported(reported + 1, Instant::now() + QUEUE_FULL_WAIT);
                }
                Err((error, _)) => {
                    self.refuse(origin, &error);
                    return;
                }
            }
        }
    }

    fn refuse(&mut self, origin: Origin, error: &KafkaError) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        self.refused.push(Refused {
            origin,
            reason: reason_of(error),
            message: error.to_string(),
        });
    }

    /// Waits until at least `reported` records have their delivery report,
    /// at most until `deadline`; returns whether they do.
    fn wait_reported(&self, reported: u64, deadline: Instant) -> bool {
        let context = self.producer.context();
        let mut reports = context.reports.lock().unwrap_or_else(|p| p.into_inner());
        while reports.reported < reported {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            reports = context
                .changed
                .wait_timeout(reports, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Waits until every record sent has its report, or the flush timeout;
    /// returns the failed deliveries.
    ///
    /// The producer's own polling thread serves delivery reports as they
    /// come, so this waits on them directly. (`Producer::flush` would poll
    /// from this thread too and, when the polling thread takes the report,
    /// sleep out its 100 ms poll: a tenth of a second per flush.)
    fn wait_for_reports(&self) -> Result<Vec<Failed>, SinkError> {
        let deadline = Instant::now() + self.config.flush_timeout;
        if !self.wait_reported(self.sent, deadline) {
            let reported = self.stats.reported.load(Ordering::Relaxed);
            return Err(SinkError::retriable(format!(
                "{} Kafka delivery reports still missing after {:?}",
                self.sent.saturating_sub(reported),
                self.config.flush_timeout
            )));
        }
        let context = self.producer.context();
        let mut reports = context.reports.lock().unwrap_or_else(|p| p.into_inner());
        Ok(std::mem::take(&mut reports.failed))
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        for (index, (payload, key, origin)) in batch.records().enumerate() {
            let topic = self.topic_of(payload).into_owned();
            let headers = batch.headers(index);
            let headers = (!headers.is_empty()).then(|| {
                headers
                    .iter()
                    .fold(OwnedHeaders::new_with_capacity(headers.len()), |all, h| {
                        all.insert(KafkaHeader {
                            key: &h.name,
                            value: h.value.as_deref(),
                        })
                    })
            });
            self.send(&topic, key, payload, headers, origin, 1);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        loop {
            let failed = self.wait_for_reports()?;
            if failed.is_empty() {
                return Ok(());
            }
            let mut gave_up = None;
            for failed in failed {
                let retriable = failed.error.rdkafka_error_code().is_some_and(is_retriable);
                if !retriable {
                    self.refuse(failed.origin, &failed.error);
                    continue;
                }
                if failed.attempt >= self.config.delivery_attempts {
                    // Kept for the next flush: the pipeline's retry policy
                    // decides whether to try again or to stop.
                    gave_up.get_or_insert_with(|| failed.error.to_string());
                }
                self.stats.resent.fetch_add(1, Ordering::Relaxed);
                let headers = (!failed.headers.is_empty()).then(|| {
                    failed.headers.iter().fold(
                        OwnedHeaders::new_with_capacity(failed.headers.len()),
                        |all, (key, value)| {
                            all.insert(KafkaHeader {
                                key,
                                value: value.as_deref(),
                            })
                        },
                    )
                });
                let attempt = failed.attempt.saturating_add(1);
                self.send(
                    &failed.topic,
                    failed.key.as_deref(),
                    &failed.payload,
                    headers,
                    failed.origin,
                    attempt,
                );
            }
            if let Some(error) = gave_up {
                return Err(SinkError::retriable(format!(
                    "Kafka deliveries keep failing after {} attempts: {error}",
                    self.config.delivery_attempts
                )));
            }
        }
    }

    fn take_refused(&mut self) -> Vec<Refused> {
        std::mem::take(&mut self.refused)
    }
}
