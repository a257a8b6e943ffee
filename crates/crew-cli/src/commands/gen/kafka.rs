//! `crew gen --kafka`: the generator's lines as records of a topic.
//!
//! Each line is one record, its key the event's `client_id` (also for
//! broken lines: the generator knows whose event it broke), so the default
//! partitioner sends one client's events to one partition, in the order
//! generated. The producer is idempotent: a record retried after a lost
//! acknowledgement is neither written twice nor out of order. The command
//! ends only when every record has its delivery report, and fails at the
//! first one that reports an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _};
use crew_pipeline::sources::{LineKind, PixelsEvents, WriteSummary};
use indicatif::ProgressBar;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientConfig;

use super::{paced, Args};

/// Producer properties set unless `--kafka-option` says otherwise.
/// `message.timeout.ms` bounds how long a record (and so crew gen) waits
/// for a broker that is down: 30 s, not librdkafka's 5 minutes.
const DEFAULTS: &[(&str, &str)] = &[
    ("client.id", "crew-gen"),
    ("linger.ms", "5"),
    ("message.timeout.ms", "30000"),
];

/// How long the brokers have to answer the first metadata request: an
/// unreachable address fails here, before any event is generated.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// librdkafka's own `message.max.bytes` default.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Where the events go.
pub(super) struct Target<'a> {
    /// `bootstrap.servers`.
    pub brokers: &'a str,
    /// The topic.
    pub topic: &'a str,
    /// `--kafka-option` pairs, in the order given.
    pub options: &'a [(String, String)],
}

/// `KEY=VALUE`, for `--kafka-option`.
pub(super) fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, found `{text}`")),
    }
}

/// Delivery reports, counted on the thread that polls.
#[derive(Default)]
struct Reports {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| error.clone());
            }
        }
    }
}

impl Reports {
    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn first_error(&self) -> String {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or_else(|| "no report".to_owned(), explain)
    }
}

/// The producer's configuration: crew gen's defaults, a `message.max.bytes`
/// that lets the oversize line through, the user's options, and
/// idempotence, which the user may not turn off.
fn client_config(target: &Target<'_>, oversize_bytes: usize) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", target.brokers);
    for (key, value) in DEFAULTS {
        config.set(*key, *value);
    }
    // The oversize line exists to be refused by the parse stage, so it
    // must reach the topic: room for it, its key and the record's framing.
    // The broker has a limit of its own (Kafka's `message.max.bytes`, about
    // 1 MiB by default); `--oversize-bytes` lowers the line's length.
    let max_bytes = LIBRDKAFKA_MESSAGE_MAX_BYTES.max(oversize_bytes.saturating_add(64 << 10));
    config.set("message.max.bytes", max_bytes.to_string());
    for (key, value) in target.options {
        match key.as_str() {
            "bootstrap.servers" => {
                bail!("--kafka-option bootstrap.servers: give the brokers with --kafka")
            }
            "enable.idempotence" if value != "true" => bail!(
                "--kafka-option enable.idempotence must be `true`: a record retried after a lost \
                 acknowledgement would be written twice, or out of order"
            ),
            _ => {
                config.set(key.as_str(), value.as_str());
            }
        }
    }
    config.set("enable.idempotence", "true");
    Ok(config)
}

/// Produces `args.count` events to the topic (paced like the file mode)
/// and waits for every delivery report.
pub(super) fn write(
    mut events: PixelsEvents,
    target: &Target<'_>,
    args: &Args,
    progress: &ProgressBar,
) -> anyhow::Result<WriteSummary> {
    let config = client_config(target, args.oversize_bytes)?;
    let producer: BaseProducer<Reports> =
        config
            .create_with_context(Reports::default())
            .map_err(|e| {
                anyhow::anyhow!(
                    "librdkafka refuses the producer's settings: {}",
                    explain(&e)
                )
            })?;
    // Fails fast, and clearly, on brokers that cannot be reached; a topic
    // that does not exist yet is the brokers' business (they may create
    // it on the first record).
    producer
        .client()
        .fetch_metadata(Some(target.topic), METADATA_TIMEOUT)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the Kafka brokers at {} within {}s: {}",
                target.brokers,
                METADATA_TIMEOUT.as_secs(),
                explain(&e)
            )
        })?;

    let reports = producer.context();
    let mut summary = WriteSummary::default();
    let mut line = Vec::new();
    let sent = paced(args, progress, |chunk| -> anyhow::Result<()> {
        for _ in 0..chunk {
            line.clear();
            let info = events.next_line(&mut line);
            let mut record = BaseRecord::to(target.topic)
                .key(info.client_id())
                .payload(line.as_slice());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        // Serves delivery reports, which frees the queue.
                        producer.poll(Duration::from_millis(100));
                    }
                    Err((error, _)) => bail!(
                        "event {} ({} bytes) refused by the producer: {}",
                        info.seq,
                        line.len(),
                        explain(&error)
                    ),
                }
            }
            summary.lines += 1;
            summary.bytes += line.len() as u64;
            match info.kind {
                LineKind::Valid => {}
                LineKind::Invalid(_) => summary.invalid += 1,
                LineKind::Malformed(_) => summary.malformed += 1,
            }
        }
        producer.poll(Duration::ZERO);
        if reports.failed() > 0 {
            bail!("a record was not delivered: {}", reports.first_error());
        }
        Ok(())
    });
    // Whatever happened, what was handed over gets its report (within
    // `message.timeout.ms`) before crew gen says how it went.
    let flushed = producer.flush(flush_timeout(&config));
    sent.with_context(|| format!("writing to topic `{}` at {}", target.topic, target.brokers))?;
    let delivered = reports.delivered.load(Ordering::Relaxed);
    if reports.failed() > 0 || delivered != summary.lines {
        bail!(
            "{} of {} records were not delivered to topic `{}` at {}: {}",
            summary.lines - delivered.min(summary.lines),
            summary.lines,
            target.topic,
            target.brokers,
            match flushed {
                Err(error) if reports.failed() == 0 =>
                    format!("still unreported after the flush: {}", explain(&error)),
                _ => reports.first_error(),
            }
        );
    }
    Ok(summary)
}

/// Every record has its report within `message.timeout.ms`; the flush waits
/// a little longer, as a backstop.
fn flush_timeout(config: &ClientConfig) -> Duration {
    let message_timeout = config
        .get("message.timeout.ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .unwrap_or(300_000);
    Duration::from_millis(message_timeout) + Duration::from_secs(10)
}

/// A Kafka error, with what to do for the ones a user can fix.
fn explain(error: &KafkaError) -> String {
    if let KafkaError::ClientConfig(_, description, _, _) = error {
        // Already names the property: `No such configuration property: "x"`.
        return description.clone();
    }
    let hint = match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
            " (an oversize malformed line is longer than the broker takes: lower --oversize-bytes, \
             or raise the topic's max.message.bytes)"
        }
        Some(RDKafkaErrorCode::MessageTimedOut) => {
            " (no broker acknowledged it within message.timeout.ms)"
        }
        _ => "",
    };
    format!("{error}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_key_equals_value() {
        assert_eq!(
            parse_option("linger.ms=20"),
            Ok(("linger.ms".to_owned(), "20".to_owned()))
        );
        assert_eq!(
            parse_option("sasl.password=a=b"),
            Ok(("sasl.password".to_owned(), "a=b".to_owned()))
        );
        assert!(parse_option("linger.ms").is_err());
        assert!(parse_option("=1").is_err());
    }

    #[test]
    fn idempotence_stays_on_and_the_brokers_come_from_kafka() {
        let options = vec![("linger.ms".to_owned(), "20".to_owned())];
        let target = Target {
            brokers: "b:1",
            topic: "t",
            options: &options,
        };
        let config = client_config(&target, 1_048_577).unwrap();
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("linger.ms"), Some("20"));
        assert_eq!(config.get("message.timeout.ms"), Some("30000"));
        let max: usize = config.get("message.max.bytes").unwrap().parse().unwrap();
        assert!(max > 1_048_577);
        assert_eq!(flush_timeout(&config), Duration::from_secs(40));

        for (key, value, says) in [
            ("enable.idempotence", "false", "must be `true`"),
            ("bootstrap.servers", "x:1", "--kafka"),
        ] {
            let options = vec![(key.to_owned(), value.to_owned())];
            let target = Target {
                brokers: "b:1",
                topic: "t",
                options: &options,
            };
            let error = client_config(&target, 10).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
