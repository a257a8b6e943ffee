//! Writing B7's input topic, once, before anything is timed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crew_pipeline::sources::{GeneratorConfig, LineKind, PixelsEvents};
use crew_testbroker::{Broker, Record};

use super::broker::quietly;
use super::{KafkaOptions, INPUT_TOPIC, OVERSIZE_BYTES, SEED};

/// What the input topic holds.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaInput {
    /// Records produced.
    pub events: u64,
    /// Payload bytes produced.
    pub bytes: u64,
    /// Records that are not a JSON object.
    pub malformed: u64,
    /// JSON objects that fail validation.
    pub invalid: u64,
    /// How long producing them took (idempotent producer, `acks=all`).
    pub produce_time: Duration,
    /// Per partition, the offset after its last record, as read back.
    pub ends: BTreeMap<i32, i64>,
}

impl KafkaInput {
    /// Records crew must dead-letter: the malformed and the invalid ones.
    pub fn broken(&self) -> u64 {
        self.malformed + self.invalid
    }
}

/// Produces the input (`events` generated lines keyed by `client_id`,
/// partitioned by librdkafka's default partitioner, a hash of the key) and
/// reads it back for each partition's end.
pub(super) fn produce(broker: &Broker, o: &KafkaOptions) -> Result<KafkaInput, String> {
    let config = GeneratorConfig {
        seed: SEED,
        malformed: o.malformed,
        oversize_bytes: OVERSIZE_BYTES,
        ..GeneratorConfig::default()
    };
    let mut generator = PixelsEvents::new(&config).map_err(|e| e.to_string())?;
    let mut input = KafkaInput {
        events: 0,
        bytes: 0,
        malformed: 0,
        invalid: 0,
        produce_time: Duration::ZERO,
        ends: BTreeMap::new(),
    };
    let records = (0..o.events).map(|_| {
        let mut payload = Vec::with_capacity(768);
        let info = generator.next_line(&mut payload);
        input.events += 1;
        input.bytes += payload.len() as u64;
        match info.kind {
            LineKind::Valid => {}
            LineKind::Invalid(_) => input.invalid += 1,
            LineKind::Malformed(_) => input.malformed += 1,
        }
        Record {
            partition: None,
            key: Some(info.client_id().as_bytes().to_vec()),
            payload,
            headers: Vec::new(),
        }
    });
    let started = Instant::now();
    quietly(|| broker.produce(INPUT_TOPIC, records))
        .map_err(|e| format!("producing the input: {e}"))?;
    input.produce_time = started.elapsed();
    let back = quietly(|| broker.read_topic(INPUT_TOPIC))
        .map_err(|e| format!("reading the input back: {e}"))?;
    if back.len() as u64 != input.events {
        return Err(format!(
            "produced {} records, but the input topic holds {}",
            input.events,
            back.len()
        ));
    }
    for m in &back {
        let end = input.ends.entry(m.partition).or_insert(0);
        *end = (*end).max(m.offset + 1);
    }
    Ok(input)
}
