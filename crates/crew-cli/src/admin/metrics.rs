//! `/metrics`: a collector that reads one [`Snapshot`] of the running
//! pipeline per scrape and encodes it. Nothing is counted twice: the
//! pipeline's own atomics and histograms are the source of every value, so
//! the hot path pays nothing for the exporter.
//!
//! Kafka components and HTTP sinks keep counters of their own
//! (assignments, rebalances, deliveries; requests and the concurrency
//! limit); `crew run` hands their shared handles over from wiring
//! ([`ComponentStats`]), and a collector per kind reads them at scrape
//! time. Their families are served only when such a component is
//! configured: a pipeline without Kafka has no `crew_kafka_` series at all,
//! one without an HTTP sink no `crew_http_sink_` series.
//!
//! The names are the ones in `docs/metrics.md`; the test
//! `the_exporter_serves_exactly_the_metrics_docs_metrics_md_lists` in
//! `tests/run.rs` checks that the two agree for a pipeline without either,
//! and `the_kafka_families_are_the_documented_ones` and
//! `the_http_families_are_the_documented_ones` below for those sections.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crew_pipeline::sinks::{HttpSinkStats, KafkaSinkStats};
use crew_pipeline::sources::KafkaSourceStats;
use crew_pipeline::{Phase, PipelineHandle, Snapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::config::ComponentStats;

/// Upper bounds of the exported histogram buckets, in seconds: 1 µs to 60 s,
/// 1-2.5-5 per decade. The pipeline's own histograms are finer (8 buckets
/// per octave); these are re-bucketed from them at scrape time.
const BUCKETS_SECONDS: [f64; 24] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// One sample's own labels (the `pipeline` label is the registry's).
type Labels = Vec<(&'static str, String)>;

/// Builds the registry `/metrics` encodes: the pipeline's collector, the
/// Kafka one when `components` (by role: `source`, `sink`, `dead_letter`)
/// hold Kafka counters, and the HTTP one when they hold an HTTP sink's,
/// with `pipeline` as a constant label on every series.
pub fn registry(
    pipeline: &str,
    handle: PipelineHandle,
    components: &[(&'static str, ComponentStats)],
) -> Registry {
    let mut registry = Registry::with_labels(
        [(Cow::Borrowed("pipeline"), Cow::Owned(pipeline.to_owned()))].into_iter(),
    );
    registry.register_collector(Box::new(PipelineCollector { handle }));
    if let Some(kafka) = KafkaCollector::of(components) {
        registry.register_collector(Box::new(kafka));
    }
    if let Some(http) = HttpCollector::of(components) {
        registry.register_collector(Box::new(http));
    }
    registry
}

/// Encodes `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// Reads the pipeline at scrape time.
struct PipelineCollector {
    handle: PipelineHandle,
}

impl fmt::Debug for PipelineCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineCollector").finish_non_exhaustive()
    }
}

impl Collector for PipelineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.handle.snapshot();
        let mut out = Families {
            encoder: &mut encoder,
        };
        encode_events(&mut out, &snapshot)?;
        encode_stages(&mut out, &snapshot)?;
        encode_pools(&mut out, &snapshot)?;
        encode_source(&mut out, &snapshot)?;
        encode_sinks(&mut out, &snapshot)
    }
}

fn encode_events(out: &mut Families<'_, '_>, s: &Snapshot) -> Result<(), fmt::Error> {
    out.counter(
        "crew_events_read",
        "Events read from the source.",
        [(vec![], s.read)],
    )?;
    out.counter(
        "crew_events_delivered",
        "Events the sink wrote and flushed.",
        [(vec![], s.delivered)],
    )?;
    out.counter(
        "crew_events_dropped",
        "Events dropped on purpose, by reason.",
        by_reason(&s.dropped_by_reason),
    )?;
    out.counter(
        "crew_events_dead_lettered",
        "Events written to the dead-letter sink, by reason.",
        by_reason(&s.dead_lettered_by_reason),
    )?;
    out.gauge(
        "crew_events_in_flight",
        "Events read and not yet finished.",
        [(vec![], s.in_flight_events as f64)],
    )?;
    out.gauge(
        "crew_events_in_flight_bytes",
        "Raw bytes of the events in flight.",
        [(vec![], s.in_flight_bytes as f64)],
    )?;
    out.gauge(
        "crew_budget_events",
        "The in-flight budget in events.",
        [(vec![], s.budget.max_events as f64)],
    )?;
    out.gauge(
        "crew_budget_bytes",
        "The in-flight budget in bytes.",
        [(vec![], s.budget.max_bytes as f64)],
    )?;
    out.histogram(
        "crew_event_latency_seconds",
        "From read to acked (written, flushed, watermark moved).",
        [(vec![], &s.event_latency)],
    )?;
    out.gauge(
        "crew_pipeline_ready",
        "1 while the source is connected and the pipeline runs.",
        [(vec![], f64::from(u8::from(s.phase == Phase::Running)))],
    )?;
    out.gauge(
        "crew_pipeline_draining",
        "1 once a shutdown was asked for or reading stopped.",
        [(vec![], f64::from(u8::from(s.phase == Phase::Draining)))],
    )?;
    out.gauge(
        "crew_pipeline_uptime_seconds",
        "Time since the run started.",
        [(vec![], s.uptime.as_secs_f64())],
    )?;
    out.gauge(
        "crew_build_info",
        "The running crew's version; always 1.",
        [(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1.0)],
    )
}

fn encode_stages(out: &mut Families<'_, '_>, s: &Snapshot) -> Result<(), fmt::Error> {
    let stage = |name: &str| vec![("stage", name.to_owned())];
    out.counter(
        "crew_stage_events_in",
        "Events the stage was called for (once per event, retries aside).",
        s.stages.iter().map(|st| (stage(&st.name), st.processed)),
    )?;
    out.counter(
        "crew_stage_events_out",
        "Events the stage passed on.",
        s.stages.iter().map(|st| (stage(&st.name), st.passed)),
    )?;
    out.counter(
        "crew_stage_events_dropped",
        "Events the stage dropped on purpose.",
        s.stages.iter().map(|st| (stage(&st.name), st.dropped)),
    )?;
    out.counter(
        "crew_stage_errors",
        "Events the stage failed (they were dead-lettered).",
        s.stages.iter().map(|st| (stage(&st.name), st.failed)),
    )?;
    out.counter(
        "crew_stage_retries",
        "Retried stage calls.",
        s.stages.iter().map(|st| (stage(&st.name), st.retried)),
    )?;
    out.histogram(
        "crew_stage_duration_seconds",
        "Time of one stage call (with its retries), per event.",
        s.stages.iter().map(|st| (stage(&st.name), &st.duration)),
    )
}

fn encode_pools(out: &mut Families<'_, '_>, s: &Snapshot) -> Result<(), fmt::Error> {
    let pool = |name: &str| vec![("pool", name.to_owned())];
    let pools = || s.pools.iter().map(|(name, stats)| (pool(name), stats));
    out.gauge(
        "crew_pool_workers",
        "Worker threads of the pool.",
        pools().map(|(l, st)| (l, st.workers as f64)),
    )?;
    out.gauge(
        "crew_pool_workers_busy",
        "Workers running a job now.",
        pools().map(|(l, st)| (l, st.busy as f64)),
    )?;
    out.gauge(
        "crew_pool_queue_depth",
        "Jobs (batches) waiting in the pool's queue.",
        pools().map(|(l, st)| (l, st.queued as f64)),
    )?;
    out.gauge(
        "crew_pool_queue_capacity",
        "The bound of the pool's queue.",
        pools().map(|(l, st)| (l, st.queue_capacity.map_or(f64::INFINITY, |c| c as f64))),
    )?;
    out.counter(
        "crew_jobs_submitted",
        "Jobs the pool accepted.",
        pools().map(|(l, st)| (l, st.submitted)),
    )?;
    out.counter(
        "crew_jobs_processed",
        "Jobs that ran to completion.",
        pools().map(|(l, st)| (l, st.completed)),
    )?;
    out.counter(
        "crew_jobs_panicked",
        "Jobs that panicked.",
        pools().map(|(l, st)| (l, st.panicked)),
    )?;
    out.histogram(
        "crew_pool_queue_wait_seconds",
        "From submit to start of a job.",
        pools().map(|(l, st)| (l, &st.queue_wait)),
    )?;
    out.histogram(
        "crew_job_processing_duration_seconds",
        "From start to end of a job.",
        pools().map(|(l, st)| (l, &st.run_time)),
    )
}

fn encode_source(out: &mut Families<'_, '_>, s: &Snapshot) -> Result<(), fmt::Error> {
    let partition = |p: &u32| vec![("partition", p.to_string())];
    out.gauge(
        "crew_source_end_offset",
        "The offset after the last event the source has available.",
        s.end_offsets
            .iter()
            .map(|(p, end)| (partition(p), *end as f64)),
    )?;
    out.gauge(
        "crew_source_committed_offset",
        "The last committed done-through offset.",
        s.committed
            .iter()
            .map(|(p, offset)| (partition(p), *offset as f64)),
    )?;
    out.gauge(
        "crew_source_lag_events",
        "Events available and not yet committed.",
        s.end_offsets
            .keys()
            .filter_map(|p| Some((partition(p), s.lag(*p)? as f64))),
    )?;
    out.counter(
        "crew_source_commit_errors",
        "Commits the source refused.",
        [(vec![], s.commit_errors)],
    )
}

fn encode_sinks(out: &mut Families<'_, '_>, s: &Snapshot) -> Result<(), fmt::Error> {
    out.counter(
        "crew_sink_retries",
        "Retried sink writes and flushes.",
        [
            (vec![("sink", "sink".to_owned())], s.sink_retries),
            (
                vec![("sink", "dead_letter".to_owned())],
                s.dead_letter_retries,
            ),
        ],
    )
}

/// Reads the Kafka components' own counters at scrape time.
#[derive(Debug)]
struct KafkaCollector {
    source: Option<Arc<KafkaSourceStats>>,
    /// By role: `sink`, `dead_letter`.
    sinks: Vec<(&'static str, Arc<KafkaSinkStats>)>,
}

impl KafkaCollector {
    /// The collector of `components`' Kafka counters; `None` without any.
    fn of(components: &[(&'static str, ComponentStats)]) -> Option<KafkaCollector> {
        let mut collector = KafkaCollector {
            source: None,
            sinks: Vec::new(),
        };
        for (role, stats) in components {
            match stats {
                ComponentStats::KafkaSource(stats) => collector.source = Some(Arc::clone(stats)),
                ComponentStats::KafkaSink(stats) => {
                    collector.sinks.push((role, Arc::clone(stats)));
                }
                ComponentStats::HttpSink(_) => {}
            }
        }
        (collector.source.is_some() || !collector.sinks.is_empty()).then_some(collector)
    }
}

impl Collector for KafkaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut out = Families {
            encoder: &mut encoder,
        };
        if let Some(source) = &self.source {
            encode_kafka_source(&mut out, source)?;
        }
        if !self.sinks.is_empty() {
            encode_kafka_sinks(&mut out, &self.sinks)?;
        }
        Ok(())
    }
}

fn encode_kafka_source(out: &mut Families<'_, '_>, s: &KafkaSourceStats) -> Result<(), fmt::Error> {
    let assigned = s.assigned_partitions();
    out.gauge(
        "crew_kafka_assigned_partitions",
        "Partitions this consumer owns now.",
        [(vec![], assigned.len() as f64)],
    )?;
    out.gauge(
        "crew_kafka_partition_assigned",
        "1 for each partition this consumer owns now.",
        assigned
            .iter()
            .map(|p| (vec![("partition", p.to_string())], 1.0)),
    )?;
    out.counter(
        "crew_kafka_rebalances",
        "Rebalance callbacks, by kind (assign or revoke).",
        [
            (vec![("kind", "assign".to_owned())], s.assigns()),
            (vec![("kind", "revoke".to_owned())], s.revokes()),
        ],
    )?;
    out.counter(
        "crew_kafka_revoked_unfinished_events",
        "Events still in flight when their partition was let go (read again by the next owner).",
        [(vec![], s.revoked_unfinished())],
    )?;
    out.counter(
        "crew_kafka_consumer_errors",
        "Consumer errors librdkafka reported and recovered from.",
        [(vec![], s.errors())],
    )?;
    out.gauge(
        "crew_kafka_paused_partitions",
        "Partitions paused because their in-flight budget is full.",
        [(vec![], s.paused_partitions() as f64)],
    )
}

fn encode_kafka_sinks(
    out: &mut Families<'_, '_>,
    sinks: &[(&'static str, Arc<KafkaSinkStats>)],
) -> Result<(), fmt::Error> {
    let sink = |role: &str| vec![("sink", role.to_owned())];
    out.gauge(
        "crew_kafka_producer_in_flight",
        "Records handed to the producer and not yet reported.",
        sinks.iter().map(|(r, s)| (sink(r), s.in_flight() as f64)),
    )?;
    let latencies: Vec<(&str, crew::Histogram)> = sinks
        .iter()
        .map(|(r, s)| (*r, s.delivery_latency()))
        .collect();
    out.histogram(
        "crew_kafka_delivery_latency_seconds",
        "From handing a record to the producer to its delivery report.",
        latencies.iter().map(|(r, h)| (sink(r), h)),
    )?;
    out.counter(
        "crew_kafka_deliveries",
        "Records the broker acknowledged.",
        sinks.iter().map(|(r, s)| (sink(r), s.delivered())),
    )?;
    out.counter(
        "crew_kafka_resent",
        "Records sent again after a retriable delivery error.",
        sinks.iter().map(|(r, s)| (sink(r), s.resent())),
    )?;
    out.counter(
        "crew_kafka_refused",
        "Records refused for good (their events were dead-lettered).",
        sinks.iter().map(|(r, s)| (sink(r), s.refused())),
    )
}

/// Reads the HTTP sinks' own counters and concurrency limits at scrape
/// time.
#[derive(Debug)]
struct HttpCollector {
    /// By role: `sink`, `dead_letter`.
    sinks: Vec<(&'static str, Arc<HttpSinkStats>)>,
}

impl HttpCollector {
    /// The collector of `components`' HTTP sinks; `None` without any.
    fn of(components: &[(&'static str, ComponentStats)]) -> Option<HttpCollector> {
        let sinks: Vec<_> = components
            .iter()
            .filter_map(|(role, stats)| match stats {
                ComponentStats::HttpSink(stats) => Some((*role, Arc::clone(stats))),
                _ => None,
            })
            .collect();
        (!sinks.is_empty()).then_some(HttpCollector { sinks })
    }
}

impl Collector for HttpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut out = Families {
            encoder: &mut encoder,
        };
        encode_http_sinks(&mut out, &self.sinks)
    }
}

fn encode_http_sinks(
    out: &mut Families<'_, '_>,
    sinks: &[(&'static str, Arc<HttpSinkStats>)],
) -> Result<(), fmt::Error> {
    // One read of each limiter, so that a scrape's limit, in-flight count
    // and counters are of the same moment.
    let limits: Vec<_> = sinks
        .iter()
        .map(|(role, stats)| (*role, stats.concurrency()))
        .collect();
    let sink = |role: &str| vec![("sink", role.to_owned())];
    let with = |role: &str, name: &'static str, value: &str| {
        vec![("sink", role.to_owned()), (name, value.to_owned())]
    };
    out.gauge(
        "crew_http_sink_concurrency_limit",
        "Requests the sink may have in flight now (fixed, or set by the adaptive controller).",
        limits.iter().map(|(r, l)| (sink(r), l.limit as f64)),
    )?;
    out.gauge(
        "crew_http_sink_in_flight_requests",
        "Requests holding a concurrency slot now (sent, awaiting their answer).",
        limits.iter().map(|(r, l)| (sink(r), l.in_flight as f64)),
    )?;
    out.gauge(
        "crew_http_sink_pending_requests",
        "Requests started and not finished, those waiting to be retried included.",
        sinks
            .iter()
            .map(|(r, s)| (sink(r), s.in_flight_requests() as f64)),
    )?;
    out.counter(
        "crew_http_sink_limit_changes",
        "Moves of the adaptive concurrency limit, by direction (increase or decrease).",
        limits.iter().flat_map(|(r, l)| {
            [
                (with(r, "direction", "increase"), l.increases),
                (with(r, "direction", "decrease"), l.decreases),
            ]
        }),
    )?;
    out.counter(
        "crew_http_sink_backpressure",
        "Answers that said the service is overloaded (429, 503, 408, a timeout, a refused connection).",
        limits.iter().map(|(r, l)| (sink(r), l.backpressure)),
    )?;
    out.gauge(
        "crew_http_sink_rtt_mean_seconds",
        "The adaptive controller's long-run (EWMA) mean round-trip time.",
        limits
            .iter()
            .filter_map(|(r, l)| Some((sink(r), l.rtt_mean?.as_secs_f64()))),
    )?;
    out.counter(
        "crew_http_sink_attempts",
        "Requests sent, retries included, by result (success, client_error, server_error, transport_error).",
        sinks.iter().flat_map(|(r, s)| {
            [
                (with(r, "result", "success"), s.succeeded()),
                (with(r, "result", "client_error"), s.client_errors()),
                (with(r, "result", "server_error"), s.server_errors()),
                (with(r, "result", "transport_error"), s.transport_errors()),
            ]
        }),
    )?;
    out.counter(
        "crew_http_sink_retries",
        "Requests sent again after a retriable failure.",
        sinks.iter().map(|(r, s)| (sink(r), s.retries())),
    )?;
    out.counter(
        "crew_http_sink_records",
        "Records by outcome: delivered (answered 2xx) or refused (a 4xx: dead-lettered).",
        sinks.iter().flat_map(|(r, s)| {
            [
                (with(r, "outcome", "delivered"), s.delivered()),
                (with(r, "outcome", "refused"), s.refused()),
            ]
        }),
    )?;
    let latencies: Vec<(&str, crew::Histogram)> =
        sinks.iter().map(|(r, s)| (*r, s.latency())).collect();
    out.histogram(
        "crew_http_sink_request_seconds",
        "Time of one attempt, from sending to its answer or error.",
        latencies.iter().map(|(r, h)| (sink(r), h)),
    )
}

fn by_reason(
    counts: &std::collections::BTreeMap<String, u64>,
) -> impl Iterator<Item = (Labels, u64)> + '_ {
    counts
        .iter()
        .map(|(reason, n)| (vec![("reason", reason.clone())], *n))
}

/// Writes metric families: one descriptor, then one sample per label set.
struct Families<'e, 'a> {
    encoder: &'e mut DescriptorEncoder<'a>,
}

impl Families<'_, '_> {
    /// A counter family; `name` without `_total`, which the encoder adds.
    fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) -> Result<(), fmt::Error> {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in samples {
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn gauge(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) -> Result<(), fmt::Error> {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in samples {
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn histogram<'h>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, &'h crew::Histogram)>,
    ) -> Result<(), fmt::Error> {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, histogram) in samples {
            let buckets = rebucket(histogram);
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    histogram.sum().as_secs_f64(),
                    histogram.count(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}

/// Per-bucket counts at the exported bounds, the last bucket `+Inf`. A value
/// lands in the first exported bucket whose bound is at or above its own
/// (fine) bucket's upper bound, so a quantile read from these is never below
/// the true one.
fn rebucket(histogram: &crew::Histogram) -> Vec<(f64, u64)> {
    let mut buckets = Vec::with_capacity(BUCKETS_SECONDS.len() + 1);
    let mut below = 0;
    for bound in BUCKETS_SECONDS {
        let at_or_below = histogram.count_at_or_below(Duration::from_secs_f64(bound));
        buckets.push((bound, at_or_below - below));
        below = at_or_below;
    }
    buckets.push((f64::INFINITY, histogram.count() - below));
    buckets
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The rows of docs/metrics.md's "Kafka" section: name to type.
    fn documented_kafka() -> BTreeMap<String, String> {
        documented_section("Kafka")
    }

    /// The rows of the docs/metrics.md section `## {title}`: name to type.
    fn documented_section(title: &str) -> BTreeMap<String, String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
        let docs = std::fs::read_to_string(path).unwrap();
        let section = docs
            .split(&format!("\n## {title}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("docs/metrics.md has a {title} section"));
        let section = section.split("\n## ").next().unwrap_or_default();
        section
            .lines()
            .filter_map(|line| {
                let mut cells = line.strip_prefix('|')?.split('|');
                let name = cells.next()?.trim().strip_prefix('`')?.strip_suffix('`')?;
                Some((name.to_owned(), cells.next()?.trim().to_owned()))
            })
            .collect()
    }

    /// The families an encoded registry declares, as docs/metrics.md names
    /// them (a counter with `_total`), to their types.
    fn families(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(name, kind)| {
                let name = if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                };
                (name, kind.to_owned())
            })
            .collect()
    }

    fn kafka_registry(components: &[(&'static str, ComponentStats)]) -> Option<String> {
        let collector = KafkaCollector::of(components)?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        Some(encode(&registry).unwrap())
    }

    #[test]
    fn the_kafka_families_are_the_documented_ones() {
        let documented = documented_kafka();
        assert!(documented.len() >= 10, "{documented:?}");
        assert!(documented
            .keys()
            .all(|name| name.starts_with("crew_kafka_")));
        let sink = Arc::new(KafkaSinkStats::default());
        let text = kafka_registry(&[
            (
                "source",
                ComponentStats::KafkaSource(Arc::new(KafkaSourceStats::default())),
            ),
            ("sink", ComponentStats::KafkaSink(Arc::clone(&sink))),
            ("dead_letter", ComponentStats::KafkaSink(sink)),
        ])
        .unwrap();
        assert_eq!(families(&text), documented);
        // One series per sink role, and the counts of a consumer that owns
        // nothing yet.
        assert!(
            text.contains("crew_kafka_deliveries_total{sink=\"sink\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("crew_kafka_deliveries_total{sink=\"dead_letter\"} 0\n"));
        assert!(
            text.contains("crew_kafka_assigned_partitions{} 0.0\n"),
            "{text}"
        );
        assert!(text.contains("crew_kafka_rebalances_total{kind=\"revoke\"} 0\n"));
        assert!(!text.contains("crew_kafka_partition_assigned{"));
    }

    #[test]
    fn kafka_families_come_with_kafka_components_only() {
        assert!(kafka_registry(&[]).is_none());
        let text = kafka_registry(&[(
            "sink",
            ComponentStats::KafkaSink(Arc::new(KafkaSinkStats::default())),
        )])
        .unwrap();
        let served = families(&text);
        assert!(served.contains_key("crew_kafka_producer_in_flight"));
        assert!(
            !served.contains_key("crew_kafka_assigned_partitions"),
            "no consumer families without a Kafka source: {served:?}"
        );
    }

    fn http_registry(components: &[(&'static str, ComponentStats)]) -> Option<String> {
        let collector = HttpCollector::of(components)?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        Some(encode(&registry).unwrap())
    }

    /// A sink that was never asked to send: nothing connects before the
    /// first write.
    fn idle_http_sink(extra: &str) -> crew_pipeline::sinks::HttpSink {
        let config: crew_pipeline::sinks::HttpSinkConfig =
            toml::from_str(&format!("uri = \"http://127.0.0.1:1/events\"\n{extra}")).unwrap();
        crew_pipeline::sinks::HttpSink::new(config).unwrap()
    }

    #[test]
    fn the_http_families_are_the_documented_ones() {
        let documented = documented_section("HTTP sink");
        assert!(documented.len() >= 9, "{documented:?}");
        assert!(documented
            .keys()
            .all(|name| name.starts_with("crew_http_sink_")));
        let sink = idle_http_sink("concurrency = 8");
        let dead = idle_http_sink("");
        let text = http_registry(&[
            ("sink", ComponentStats::HttpSink(sink.stats())),
            ("dead_letter", ComponentStats::HttpSink(dead.stats())),
        ])
        .unwrap();
        assert_eq!(families(&text), documented);
        // Each role has its own series, and the limit is each sink's own:
        // fixed at 8, or the adaptive controller's starting limit.
        assert!(
            text.contains("crew_http_sink_concurrency_limit{sink=\"sink\"} 8.0\n"),
            "{text}"
        );
        assert!(
            text.contains("crew_http_sink_concurrency_limit{sink=\"dead_letter\"} 1.0\n"),
            "{text}"
        );
        assert!(text.contains(
            "crew_http_sink_limit_changes_total{sink=\"sink\",direction=\"decrease\"} 0\n"
        ));
        assert!(text.contains(
            "crew_http_sink_attempts_total{sink=\"dead_letter\",result=\"transport_error\"} 0\n"
        ));
        assert!(
            text.contains("crew_http_sink_records_total{sink=\"sink\",outcome=\"refused\"} 0\n")
        );
        assert!(text.contains("crew_http_sink_request_seconds_count{sink=\"sink\"} 0\n"));
        // No round trip yet: no mean to report, rather than a made-up 0.
        assert!(!text.contains("crew_http_sink_rtt_mean_seconds{"), "{text}");
    }

    #[test]
    fn http_families_come_with_http_sinks_only() {
        assert!(http_registry(&[]).is_none());
        let kafka_only = [(
            "sink",
            ComponentStats::KafkaSink(Arc::new(KafkaSinkStats::default())),
        )];
        assert!(http_registry(&kafka_only).is_none());
        let sink = idle_http_sink("");
        let text = http_registry(&[
            (
                "source",
                ComponentStats::KafkaSource(Arc::new(KafkaSourceStats::default())),
            ),
            ("dead_letter", ComponentStats::HttpSink(sink.stats())),
        ])
        .unwrap();
        assert!(
            families(&text)
                .keys()
                .all(|name| name.starts_with("crew_http_sink_")),
            "{text}"
        );
        assert!(
            !text.contains("sink=\"sink\""),
            "only the dead-letter sink: {text}"
        );
        // And the Kafka collector leaves HTTP sinks to this one.
        let kafka = kafka_registry(&[("sink", ComponentStats::HttpSink(sink.stats()))]);
        assert!(kafka.is_none());
    }

    #[test]
    fn rebucketing_keeps_every_value_and_never_moves_one_down() {
        let shared = crew::SharedHistogram::new();
        for nanos in [500u64, 3_000, 40_000, 900_000, 12_000_000, 70_000_000_000] {
            shared.record(Duration::from_nanos(nanos));
        }
        let histogram = shared.snapshot();
        let buckets = rebucket(&histogram);
        assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 6);
        // 70 s is past the last bound: +Inf.
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        // 0.5 µs sits in the first bucket (≤ 1 µs); 3 µs in the 5 µs one.
        assert_eq!(buckets[0], (1e-6, 1));
        assert_eq!(buckets[2], (5e-6, 1));
    }
}
