//! The rdkafka-bare row: a consumer that only counts messages, the ceiling.

use std::time::{Duration, Instant};

use crew_testbroker::FAST_GROUP;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::cpu::CpuSample;
use super::{Context, Run, INPUT_TOPIC};
use crate::measure;

/// One run of the bare consumer: subscribe, then poll and count until every
/// message was seen. On a thread of its own, bounded by the cell timeout.
pub(super) fn run_bare(c: &Context<'_>, round: usize) -> Result<Run, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", c.broker.bootstrap())
        .set("group.id", format!("b7-bare-{round}"))
        .set("auto.offset.reset", "earliest")
        // It only counts: committing nothing keeps it the ceiling.
        .set("enable.auto.commit", "false");
    for (key, value) in FAST_GROUP {
        config.set(*key, *value);
    }
    let (expected, timeout, pid) = (c.input.events, c.timeout, c.broker_pid);
    measure::isolated(timeout + Duration::from_secs(10), move || {
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| format!("creating the consumer: {e}"))?;
        let subscribed = Instant::now();
        consumer
            .subscribe(&[INPUT_TOPIC])
            .map_err(|e| format!("subscribing: {e}"))?;
        let deadline = subscribed + timeout;
        let mut messages = 0u64;
        let mut first: Option<(Instant, CpuSample)> = None;
        while messages < expected {
            if Instant::now() >= deadline {
                return Err(format!(
                    "counted {messages} of {expected} messages in {} s",
                    timeout.as_secs()
                ));
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(_)) => {
                    if first.is_none() {
                        first = Some((Instant::now(), CpuSample::take(pid)));
                    }
                    messages += 1;
                }
                // Broker hiccups: librdkafka carries on by itself, as crew's
                // source does.
                Some(Err(_)) => {}
            }
        }
        let (end, end_cpu) = (Instant::now(), CpuSample::take(pid));
        let (start, start_cpu) = first.ok_or("no message")?;
        Ok(Run {
            join: start - subscribed,
            elapsed: end - start,
            events: messages,
            cpu: end_cpu.since(&start_cpu),
            crew: None,
        })
    })
}
