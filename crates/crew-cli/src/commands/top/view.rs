//! What `crew top` shows, computed from two scrapes: totals and gauges from
//! the later one, rates from the difference over the time between them, and
//! quantiles from the histogram buckets' increase in that window (what
//! `histogram_quantile` over `rate(..._bucket)` gives in Prometheus).

use std::time::Instant;

use anyhow::bail;

use super::metrics::{Histogram, Metrics};

/// One scrape and when it was asked for.
#[derive(Clone, Debug)]
pub struct Scraped {
    /// When the request went out.
    pub at: Instant,
    /// What came back.
    pub metrics: Metrics,
}

/// A part of a whole: workers busy of workers, queue depth of capacity,
/// events in flight of the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Fill {
    /// How much is used.
    pub used: Option<f64>,
    /// Of how much.
    pub capacity: Option<f64>,
}

impl Fill {
    /// `used / capacity`, when both are known and the capacity is not 0.
    pub fn ratio(&self) -> Option<f64> {
        match (self.used, self.capacity) {
            (Some(used), Some(capacity)) if capacity > 0.0 => Some(used / capacity),
            _ => None,
        }
    }
}

/// P50, P95 and P99 of a histogram's window, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantiles {
    /// The median.
    pub p50: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
}

impl Quantiles {
    fn of(histogram: &Histogram) -> Option<Quantiles> {
        Some(Quantiles {
            p50: histogram.quantile(0.50)?,
            p95: histogram.quantile(0.95)?,
            p99: histogram.quantile(0.99)?,
        })
    }
}

/// A counter: its value and its rate over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct Counted {
    /// What it counts.
    pub name: String,
    /// The value at the later scrape.
    pub total: Option<f64>,
    /// Per second over the window.
    pub rate: Option<f64>,
}

/// One stage.
#[derive(Clone, Debug, PartialEq)]
pub struct StageRow {
    /// The stage's name.
    pub name: String,
    /// Events in.
    pub events_in: Counted,
    /// Events passed on.
    pub events_out: Counted,
    /// Events dropped on purpose.
    pub dropped: Counted,
    /// Events failed.
    pub errors: Counted,
    /// Retried calls.
    pub retries: Counted,
    /// Call duration P99 over the window.
    pub p99: Option<f64>,
}

/// One pool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolRow {
    /// The pool's name (its first stage's).
    pub name: String,
    /// Workers busy of workers.
    pub workers: Fill,
    /// Jobs queued of the queue's bound.
    pub queue: Fill,
    /// Jobs run to completion.
    pub processed: Counted,
    /// Jobs that panicked.
    pub panicked: Option<f64>,
    /// Queue wait over the window.
    pub wait: Option<Quantiles>,
    /// Run time over the window.
    pub run: Option<Quantiles>,
}

/// One source partition.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionRow {
    /// The partition's number, as exported.
    pub partition: String,
    /// The offset after the last available event.
    pub end: Option<f64>,
    /// The last committed offset; its rate is the commit throughput.
    pub committed: Counted,
    /// Events available and not yet committed.
    pub lag: Option<f64>,
}

/// The Kafka consumer and producer, from the `crew_kafka_` families (a
/// pipeline has them only with a Kafka component).
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaRow {
    /// Partitions the consumer owns; `None` without a Kafka source.
    pub assigned: Option<f64>,
    /// Partitions paused for backpressure.
    pub paused: Option<f64>,
    /// Rebalance callbacks, assigns and revokes together.
    pub rebalances: Counted,
    /// Records the producer has not had reported yet, by sink (`sink`,
    /// `dead_letter`).
    pub in_flight: Vec<(String, f64)>,
}

/// One HTTP sink, from the `crew_http_sink_` families (a pipeline has them
/// only with an HTTP sink or dead-letter sink).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpRow {
    /// Its role: `sink` or `dead_letter`.
    pub sink: String,
    /// The concurrency limit now.
    pub limit: Option<f64>,
    /// Requests holding a concurrency slot now.
    pub in_flight: Option<f64>,
    /// Attempts of every result; the rate is requests per second.
    pub requests: Counted,
    /// Requests sent again after a retriable failure.
    pub retries: Option<f64>,
    /// Records the service refused (dead-lettered).
    pub refused: Option<f64>,
}

/// Events dropped or dead-lettered for one reason.
#[derive(Clone, Debug, PartialEq)]
pub struct ReasonRow {
    /// `dropped` or `dead-lettered`.
    pub outcome: &'static str,
    /// Why.
    pub counted: Counted,
}

/// Everything `crew top` draws.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// Where the metrics came from.
    pub url: String,
    /// The pipeline shown.
    pub pipeline: Option<String>,
    /// Other pipelines the endpoint serves.
    pub other_pipelines: Vec<String>,
    /// crew's version, from `crew_build_info`.
    pub version: Option<String>,
    /// `ready`, `draining`, `not ready` (starting or over: the metrics do
    /// not say which), or `unknown` (no such gauges).
    pub state: &'static str,
    /// Seconds since the run started.
    pub uptime: Option<f64>,
    /// Seconds between the two scrapes; `None` before a second one.
    pub window: Option<f64>,
    /// Read, delivered, dropped, dead-lettered.
    pub events: Vec<Counted>,
    /// Events in flight of the budget.
    pub in_flight: Fill,
    /// Bytes in flight of the budget.
    pub in_flight_bytes: Fill,
    /// From read to acked, over the window.
    pub latency: Option<Quantiles>,
    /// Stages in the exporter's order.
    pub stages: Vec<StageRow>,
    /// Pools in the exporter's order.
    pub pools: Vec<PoolRow>,
    /// Partitions by number.
    pub partitions: Vec<PartitionRow>,
    /// Drop and dead-letter reasons.
    pub reasons: Vec<ReasonRow>,
    /// Commits the source refused.
    pub commit_errors: Option<f64>,
    /// Retried sink writes, by sink.
    pub sink_retries: Vec<(String, f64)>,
    /// Kafka's consumer and producer, when the pipeline has either.
    pub kafka: Option<KafkaRow>,
    /// The HTTP sinks, by role; empty without one.
    pub http: Vec<HttpRow>,
}

/// The two scrapes a view compares, narrowed to one pipeline.
struct Pair<'a> {
    now: &'a Metrics,
    before: Option<&'a Metrics>,
    seconds: Option<f64>,
}

impl Pair<'_> {
    fn counted(&self, name: &str, metric: &str, label: Option<(&str, &str)>) -> Counted {
        let value = |metrics: &Metrics| match label {
            Some((label, value)) => metrics.sum_where(metric, label, value),
            None => metrics.sum(metric),
        };
        let total = value(self.now);
        let rate = match (total, self.before.and_then(value), self.seconds) {
            (Some(now), Some(before), Some(seconds)) if seconds > 0.0 => {
                Some(rate(now, before, seconds))
            }
            // A series that appeared during the window (the first event
            // dropped for a reason) counted from 0.
            (Some(now), None, Some(seconds)) if seconds > 0.0 && self.before.is_some() => {
                Some(now / seconds)
            }
            _ => None,
        };
        Counted {
            name: name.to_owned(),
            total,
            rate,
        }
    }

    fn quantiles(&self, metric: &str, label: Option<(&str, &str)>) -> Option<Quantiles> {
        let now = self.now.histogram(metric, label)?;
        let window = match self.before?.histogram(metric, label) {
            Some(before) => now.since(&before),
            None => now,
        };
        Quantiles::of(&window)
    }

    fn fill(&self, used: &str, capacity: &str, label: Option<(&str, &str)>) -> Fill {
        let value = |metric: &str| match label {
            Some((label, value)) => self.now.sum_where(metric, label, value),
            None => self.now.sum(metric),
        };
        Fill {
            used: value(used),
            capacity: value(capacity),
        }
    }
}

/// The run's state from its two gauges. Ready 0 and draining 0 is a run
/// still connecting its source, or one that is over (docs/metrics.md: ready
/// is 1 only while running, draining only while draining): the gauges
/// cannot tell which, so it shows as `not ready`, not as a guess.
fn state(ready: Option<f64>, draining: Option<f64>) -> &'static str {
    match (ready, draining) {
        (_, Some(draining)) if draining > 0.0 => "draining",
        (Some(ready), _) if ready > 0.0 => "ready",
        (Some(_), _) => "not ready",
        _ => "unknown",
    }
}

/// The increase per second of a counter, Prometheus's way: a counter that
/// went down was reset (a restart) and counted from 0 since.
pub fn rate(now: f64, before: f64, seconds: f64) -> f64 {
    let increase = if now >= before { now - before } else { now };
    increase / seconds
}

impl View {
    /// The view of `now`, with rates and quantiles since `before` when there
    /// is one. Fails when the scrape has no crew series, or not the asked
    /// pipeline.
    pub fn build(
        url: &str,
        pipeline: Option<&str>,
        before: Option<&Scraped>,
        now: &Scraped,
    ) -> anyhow::Result<View> {
        if !now.metrics.has_crew() {
            bail!("{url} serves no crew_ metrics: is it a crew admin address?");
        }
        let pipelines = now.metrics.pipelines();
        let chosen = match pipeline {
            Some(name) if pipelines.iter().any(|p| p == name) => Some(name.to_owned()),
            Some(name) => bail!(
                "{url} has no pipeline `{name}`; it has: {}",
                pipelines.join(", ")
            ),
            None => pipelines.first().cloned(),
        };
        let narrow = |metrics: &Metrics| match &chosen {
            Some(name) => metrics.only_pipeline(name),
            None => metrics.clone(),
        };
        let now_metrics = narrow(&now.metrics);
        let before_metrics = before.map(|b| narrow(&b.metrics));
        let pair = Pair {
            now: &now_metrics,
            before: before_metrics.as_ref(),
            seconds: before.map(|b| now.at.saturating_duration_since(b.at).as_secs_f64()),
        };
        let m = pair.now;

        let state = state(
            m.sum("crew_pipeline_ready"),
            m.sum("crew_pipeline_draining"),
        );

        let events = vec![
            pair.counted("read", "crew_events_read_total", None),
            pair.counted("delivered", "crew_events_delivered_total", None),
            pair.counted("dropped", "crew_events_dropped_total", None),
            pair.counted("dead-lettered", "crew_events_dead_lettered_total", None),
        ];

        let stages = m
            .label_values("crew_stage_events_in_total", "stage")
            .into_iter()
            .map(|stage| {
                let label = Some(("stage", stage.as_str()));
                StageRow {
                    events_in: pair.counted("in", "crew_stage_events_in_total", label),
                    events_out: pair.counted("out", "crew_stage_events_out_total", label),
                    dropped: pair.counted("dropped", "crew_stage_events_dropped_total", label),
                    errors: pair.counted("errors", "crew_stage_errors_total", label),
                    retries: pair.counted("retries", "crew_stage_retries_total", label),
                    p99: pair
                        .quantiles("crew_stage_duration_seconds", label)
                        .map(|q| q.p99),
                    name: stage,
                }
            })
            .collect();

        let pools = m
            .label_values("crew_pool_workers", "pool")
            .into_iter()
            .map(|pool| {
                let label = Some(("pool", pool.as_str()));
                PoolRow {
                    workers: pair.fill("crew_pool_workers_busy", "crew_pool_workers", label),
                    queue: pair.fill("crew_pool_queue_depth", "crew_pool_queue_capacity", label),
                    processed: pair.counted("processed", "crew_jobs_processed_total", label),
                    panicked: m.sum_where("crew_jobs_panicked_total", "pool", &pool),
                    wait: pair.quantiles("crew_pool_queue_wait_seconds", label),
                    run: pair.quantiles("crew_job_processing_duration_seconds", label),
                    name: pool,
                }
            })
            .collect();

        let mut partition_names = m.label_values("crew_source_lag_events", "partition");
        for name in m.label_values("crew_source_committed_offset", "partition") {
            if !partition_names.contains(&name) {
                partition_names.push(name);
            }
        }
        partition_names.sort_by(|a, b| match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => a.cmp(b),
        });
        let partitions = partition_names
            .into_iter()
            .map(|partition| {
                let label = ("partition", partition.as_str());
                PartitionRow {
                    end: m.sum_where("crew_source_end_offset", label.0, label.1),
                    committed: pair.counted(
                        "committed",
                        "crew_source_committed_offset",
                        Some(label),
                    ),
                    lag: m.sum_where("crew_source_lag_events", label.0, label.1),
                    partition,
                }
            })
            .collect();

        let mut reasons = Vec::new();
        for (outcome, metric) in [
            ("dropped", "crew_events_dropped_total"),
            ("dead-lettered", "crew_events_dead_lettered_total"),
        ] {
            let mut names = m.label_values(metric, "reason");
            names.sort();
            for reason in names {
                reasons.push(ReasonRow {
                    outcome,
                    counted: pair.counted(&reason, metric, Some(("reason", reason.as_str()))),
                });
            }
        }

        let sink_retries = m
            .label_values("crew_sink_retries_total", "sink")
            .into_iter()
            .filter_map(|sink| {
                let value = m.sum_where("crew_sink_retries_total", "sink", &sink)?;
                Some((sink, value))
            })
            .collect();

        let kafka_in_flight: Vec<(String, f64)> = m
            .label_values("crew_kafka_producer_in_flight", "sink")
            .into_iter()
            .filter_map(|sink| {
                let value = m.sum_where("crew_kafka_producer_in_flight", "sink", &sink)?;
                Some((sink, value))
            })
            .collect();
        let assigned = m.sum("crew_kafka_assigned_partitions");
        let kafka = (assigned.is_some() || !kafka_in_flight.is_empty()).then(|| KafkaRow {
            assigned,
            paused: m.sum("crew_kafka_paused_partitions"),
            rebalances: pair.counted("rebalances", "crew_kafka_rebalances_total", None),
            in_flight: kafka_in_flight,
        });

        let http = m
            .label_values("crew_http_sink_concurrency_limit", "sink")
            .into_iter()
            .map(|sink| {
                let label = ("sink", sink.as_str());
                HttpRow {
                    limit: m.sum_where("crew_http_sink_concurrency_limit", label.0, label.1),
                    in_flight: m.sum_where("crew_http_sink_in_flight_requests", label.0, label.1),
                    requests: pair.counted(
                        "requests",
                        "crew_http_sink_attempts_total",
                        Some(label),
                    ),
                    retries: m.sum_where("crew_http_sink_retries_total", label.0, label.1),
                    refused: m.sum_matching(
                        "crew_http_sink_records_total",
                        &[label, ("outcome", "refused")],
                    ),
                    sink,
                }
            })
            .collect();

        Ok(View {
            url: url.to_owned(),
            other_pipelines: pipelines
                .iter()
                .filter(|p| Some(*p) != chosen.as_ref())
                .cloned()
                .collect(),
            pipeline: chosen,
            version: m
                .label_values("crew_build_info", "version")
                .into_iter()
                .next(),
            state,
            uptime: m.sum("crew_pipeline_uptime_seconds"),
            window: pair.seconds,
            events,
            in_flight: pair.fill("crew_events_in_flight", "crew_budget_events", None),
            in_flight_bytes: pair.fill("crew_events_in_flight_bytes", "crew_budget_bytes", None),
            latency: pair.quantiles("crew_event_latency_seconds", None),
            stages,
            pools,
            partitions,
            reasons,
            commit_errors: m.sum("crew_source_commit_errors_total"),
            sink_retries,
            kafka,
            http,
        })
    }
}

/// The partitions table's rate column: offsets, not commits, and in the
/// source's unit.
pub const COMMITTED_LEGEND: &str =
    "COMMITTED/S: offsets committed per second (events, or bytes for a file)";

/// A cell's text for a missing value.
pub const NONE: &str = "-";

/// A count: exact up to 99,999, then 3 significant digits with k, M, G, T.
pub fn count(value: Option<f64>) -> String {
    match value {
        None => NONE.to_owned(),
        Some(v) if v.abs() < 100_000.0 => format!("{v:.0}"),
        Some(v) => si(v),
    }
}

/// A rate per second: one decimal under 10.
pub fn per_second(value: Option<f64>) -> String {
    match value {
        None => NONE.to_owned(),
        Some(v) if v.abs() < 10.0 => format!("{v:.1}"),
        Some(v) if v.abs() < 100_000.0 => format!("{v:.0}"),
        Some(v) => si(v),
    }
}

fn si(v: f64) -> String {
    let (scaled, unit) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(scale, _)| v.abs() >= *scale)
        .map_or((v, ""), |(scale, unit)| (v / scale, unit));
    if scaled.abs() >= 100.0 {
        format!("{scaled:.0}{unit}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}{unit}")
    } else {
        format!("{scaled:.2}{unit}")
    }
}

/// An offset: always exact.
pub fn offset(value: Option<f64>) -> String {
    value.map_or_else(|| NONE.to_owned(), |v| format!("{v:.0}"))
}

/// A duration in seconds, in µs, ms, s, or minutes and seconds. The unit is
/// picked by the value as it will be printed, so 119.7 s is `2m00s`, not
/// `1m60s`, and 999.7 µs is `1.00ms`, not `1000µs`.
pub fn seconds(value: Option<f64>) -> String {
    let Some(s) = value else {
        return NONE.to_owned();
    };
    // `v` rounded to `digits` decimals stays under `limit`.
    let under = |v: f64, digits: i32, limit: f64| {
        let scale = 10f64.powi(digits);
        (v * scale).round() < limit * scale
    };
    let (us, ms) = (s * 1e6, s * 1e3);
    if under(us, 0, 1000.0) {
        format!("{us:.0}µs")
    } else if under(ms, 2, 10.0) {
        format!("{ms:.2}ms")
    } else if under(ms, 1, 100.0) {
        format!("{ms:.1}ms")
    } else if under(ms, 0, 1000.0) {
        format!("{ms:.0}ms")
    } else if under(s, 2, 60.0) {
        format!("{s:.2}s")
    } else {
        // Rounded to whole seconds first, then split: 119.7 s is 120 s.
        let whole = s.round();
        let minutes = (whole / 60.0).floor();
        format!("{minutes:.0}m{:02.0}s", whole - minutes * 60.0)
    }
}

/// A byte count in B, KiB, MiB or GiB.
pub fn bytes(value: Option<f64>) -> String {
    let Some(b) = value else {
        return NONE.to_owned();
    };
    let (scaled, unit) = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        .into_iter()
        .find(|(scale, _)| b >= *scale as f64)
        .map_or((b, "B"), |(scale, unit)| (b / scale as f64, unit));
    if unit == "B" {
        format!("{scaled:.0} B")
    } else {
        format!("{scaled:.1} {unit}")
    }
}

/// A ratio as a whole percentage.
pub fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| NONE.to_owned(), |r| format!("{:.0}%", r * 100.0))
}

/// An uptime: `3d 4h`, `1h 02m`, `5m 03s`, `42s`.
pub fn uptime(value: Option<f64>) -> String {
    let Some(s) = value else {
        return NONE.to_owned();
    };
    let s = s.max(0.0) as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// A table's header and rows: the first `left` columns (names)
/// left-aligned, the rest (numbers) right-aligned.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The section's title.
    pub title: &'static str,
    /// How many leading columns are names.
    pub left: usize,
    /// Column names.
    pub header: Vec<&'static str>,
    /// What a column name alone does not say, shown with the table.
    pub legend: Option<&'static str>,
    /// Cells, one `Vec` a row.
    pub rows: Vec<Vec<Cell>>,
}

/// A table cell: its text, and how full it shows something (for colour).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// What is written.
    pub text: String,
    /// A fill ratio (0 to 1) the cell shows, if any.
    pub fill: Option<f64>,
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, fill: None }
    }
}

fn cells(texts: impl IntoIterator<Item = String>) -> Vec<Cell> {
    texts.into_iter().map(Cell::from).collect()
}

/// `used/capacity`, with a bar of `bar` characters before it when asked.
pub fn fill_cell(fill: &Fill, bar: usize) -> Cell {
    let numbers = format!("{}/{}", offset(fill.used), offset(fill.capacity));
    let ratio = fill.ratio();
    let text = match ratio {
        Some(r) if bar > 0 => {
            let full = ((r.clamp(0.0, 1.0) * bar as f64).round()) as usize;
            format!("{}{} {numbers}", "█".repeat(full), "░".repeat(bar - full))
        }
        _ => numbers,
    };
    Cell { text, fill: ratio }
}

impl View {
    /// Read, delivered, dropped, dead-lettered: totals and rates.
    pub fn events_table(&self) -> Table {
        Table {
            title: "EVENTS",
            legend: None,
            left: 1,
            header: vec!["EVENTS", "TOTAL", "PER SEC"],
            rows: self
                .events
                .iter()
                .map(|e| cells([e.name.clone(), count(e.total), per_second(e.rate)]))
                .collect(),
        }
    }

    /// One row a stage.
    pub fn stages_table(&self) -> Table {
        Table {
            title: "STAGES",
            legend: None,
            left: 1,
            header: vec![
                "STAGE", "IN/S", "OUT/S", "IN", "OUT", "DROPPED", "ERRORS", "RETRIES", "P99",
            ],
            rows: self
                .stages
                .iter()
                .map(|s| {
                    cells([
                        s.name.clone(),
                        per_second(s.events_in.rate),
                        per_second(s.events_out.rate),
                        count(s.events_in.total),
                        count(s.events_out.total),
                        count(s.dropped.total),
                        count(s.errors.total),
                        count(s.retries.total),
                        seconds(s.p99),
                    ])
                })
                .collect(),
        }
    }

    /// One row a pool; `bar` characters of gauge before busy/total and
    /// queued/capacity (0 for none).
    pub fn pools_table(&self, bar: usize) -> Table {
        let q = |q: &Option<Quantiles>, pick: fn(&Quantiles) -> f64| seconds(q.as_ref().map(pick));
        Table {
            title: "POOLS",
            legend: None,
            left: 1,
            header: vec![
                "POOL", "BUSY", "QUEUE", "JOBS/S", "PANICS", "WAIT P50", "P95", "P99", "RUN P50",
                "P95", "P99",
            ],
            rows: self
                .pools
                .iter()
                .map(|p| {
                    let mut row = vec![
                        Cell::from(p.name.clone()),
                        fill_cell(&p.workers, bar),
                        fill_cell(&p.queue, bar),
                    ];
                    row.extend(cells([
                        per_second(p.processed.rate),
                        count(p.panicked),
                        q(&p.wait, |q| q.p50),
                        q(&p.wait, |q| q.p95),
                        q(&p.wait, |q| q.p99),
                        q(&p.run, |q| q.p50),
                        q(&p.run, |q| q.p95),
                        q(&p.run, |q| q.p99),
                    ]));
                    row
                })
                .collect(),
        }
    }

    /// One row a partition.
    pub fn partitions_table(&self) -> Table {
        Table {
            title: "PARTITIONS",
            left: 1,
            header: vec!["PARTITION", "END", "COMMITTED", "LAG", "COMMITTED/S"],
            legend: Some(COMMITTED_LEGEND),
            rows: self
                .partitions
                .iter()
                .map(|p| {
                    cells([
                        p.partition.clone(),
                        offset(p.end),
                        offset(p.committed.total),
                        offset(p.lag),
                        per_second(p.committed.rate),
                    ])
                })
                .collect(),
        }
    }

    /// One row a drop or dead-letter reason.
    pub fn reasons_table(&self) -> Table {
        Table {
            title: "REASONS",
            legend: None,
            left: 2,
            header: vec!["OUTCOME", "REASON", "TOTAL", "PER SEC"],
            rows: self
                .reasons
                .iter()
                .map(|r| {
                    cells([
                        r.outcome.to_owned(),
                        r.counted.name.clone(),
                        count(r.counted.total),
                        per_second(r.counted.rate),
                    ])
                })
                .collect(),
        }
    }

    /// The header line: pipeline, version, state (unless the caller shows
    /// it its own way), uptime, window.
    pub fn headline(&self, with_state: bool) -> String {
        let mut line = format!("pipeline {}", self.pipeline.as_deref().unwrap_or(NONE));
        if let Some(version) = &self.version {
            line.push_str(&format!(" · crew {version}"));
        }
        if with_state {
            line.push_str(&format!(" · {}", self.state));
        }
        line.push_str(&format!(" · up {}", uptime(self.uptime)));
        if let Some(window) = self.window {
            line.push_str(&format!(" · rates over {window:.2}s"));
        }
        if !self.other_pipelines.is_empty() {
            line.push_str(&format!(
                " · also: {} (--pipeline)",
                self.other_pipelines.join(", ")
            ));
        }
        line
    }

    /// In flight against the budget, events and bytes.
    pub fn in_flight_line(&self) -> String {
        format!(
            "{} of {} events ({}) · {} of {}",
            offset(self.in_flight.used),
            offset(self.in_flight.capacity),
            percent(self.in_flight.ratio()),
            bytes(self.in_flight_bytes.used),
            bytes(self.in_flight_bytes.capacity),
        )
    }

    /// Event latency quantiles.
    pub fn latency_line(&self) -> String {
        let q = self.latency;
        format!(
            "p50 {} · p95 {} · p99 {}",
            seconds(q.map(|q| q.p50)),
            seconds(q.map(|q| q.p95)),
            seconds(q.map(|q| q.p99)),
        )
    }

    /// The source's lag: in all, and the partition furthest behind.
    pub fn lag_line(&self) -> String {
        let lags: Vec<(&str, f64)> = self
            .partitions
            .iter()
            .filter_map(|p| Some((p.partition.as_str(), p.lag?)))
            .collect();
        let Some(&(worst, most)) = lags.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
            return format!("{NONE} (the source reports no lag)");
        };
        let total: f64 = lags.iter().map(|(_, lag)| lag).sum();
        format!(
            "{} events over {} partitions · most {} on partition {worst}",
            offset(Some(total)),
            lags.len(),
            offset(Some(most)),
        )
    }

    /// The Kafka consumer's partitions and rebalances and the producer's
    /// records in flight; `None` for a pipeline without Kafka.
    pub fn kafka_line(&self) -> Option<String> {
        let kafka = self.kafka.as_ref()?;
        let mut parts = Vec::new();
        if let Some(assigned) = kafka.assigned {
            parts.push(format!(
                "{} partitions assigned ({} paused) · {} rebalances",
                count(Some(assigned)),
                count(kafka.paused),
                count(kafka.rebalances.total),
            ));
        }
        if !kafka.in_flight.is_empty() {
            let sinks: Vec<String> = kafka
                .in_flight
                .iter()
                .map(|(sink, n)| format!("{sink} {}", count(Some(*n))))
                .collect();
            parts.push(format!("producer in flight {}", sinks.join(", ")));
        }
        Some(parts.join(" · "))
    }

    /// Each HTTP sink's concurrency limit, requests in flight and per
    /// second, retries and refused records; `None` for a pipeline without an
    /// HTTP sink.
    pub fn http_line(&self) -> Option<String> {
        if self.http.is_empty() {
            return None;
        }
        let sinks: Vec<String> = self
            .http
            .iter()
            .map(|h| {
                format!(
                    "{} limit {} · in flight {} · {} req/s · {} retries · {} refused",
                    h.sink,
                    count(h.limit),
                    count(h.in_flight),
                    per_second(h.requests.rate),
                    count(h.retries),
                    count(h.refused),
                )
            })
            .collect();
        Some(sinks.join("; "))
    }

    /// Commit errors and sink retries.
    pub fn problems_line(&self) -> String {
        let mut line = format!("commit errors {}", count(self.commit_errors));
        for (sink, retries) in &self.sink_retries {
            line.push_str(&format!(" · {sink} retries {}", count(Some(*retries))));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::metrics::tests::canned;
    use super::*;

    fn scraped(k: f64, at: Instant) -> Scraped {
        Scraped {
            at,
            metrics: Metrics::parse(&canned(k)),
        }
    }

    #[test]
    fn a_view_of_two_scrapes() {
        let t0 = Instant::now();
        let before = scraped(1.0, t0);
        // Every counter doubles in 2 s: rate = value at k=1 / 2.
        let now = scraped(2.0, t0 + Duration::from_secs(2));
        let view = View::build("http://x/metrics", None, Some(&before), &now).unwrap();
        assert_eq!(view.pipeline.as_deref(), Some("pixels"));
        assert_eq!(view.version.as_deref(), Some("0.1.0"));
        assert_eq!(view.state, "ready");
        assert_eq!(view.window, Some(2.0));
        let read = &view.events[0];
        assert_eq!((read.total, read.rate), (Some(2000.0), Some(500.0)));
        let dead = &view.events[3];
        assert_eq!((dead.total, dead.rate), (Some(80.0), Some(20.0)));
        assert_eq!(view.in_flight.ratio(), Some(0.25));
        let latency = view.latency.unwrap();
        assert_eq!(latency.p50, 0.001);
        assert!((latency.p95 - 0.055).abs() < 1e-12);

        let names: Vec<&str> = view.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["parse_json", "validate", "consent"]);
        let consent = &view.stages[2];
        assert_eq!(consent.events_in.rate, Some(480.0));
        assert_eq!(consent.dropped.total, Some(300.0));
        // 1000 calls a window: 900 ≤ 10 µs, the rest ≤ 100 µs.
        let p99 = consent.p99.unwrap();
        assert!((p99 - 0.000091).abs() < 1e-12, "{p99}");

        let pool = &view.pools[0];
        assert_eq!(pool.name, "parse_json");
        assert_eq!(pool.workers.ratio(), Some(0.75));
        assert_eq!(pool.queue.ratio(), Some(60.0 / 64.0));
        assert_eq!(pool.processed.rate, Some(10.0));
        let wait = pool.wait.unwrap();
        assert_eq!(wait.p50, 0.001);
        assert!((wait.p99 - 0.00198).abs() < 1e-12, "{}", wait.p99);
        assert!((pool.run.unwrap().p50 - 0.003).abs() < 1e-12);

        let partitions: Vec<(&str, Option<f64>)> = view
            .partitions
            .iter()
            .map(|p| (p.partition.as_str(), p.lag))
            .collect();
        assert_eq!(partitions, [("0", Some(200.0)), ("1", Some(20.0))]);
        assert_eq!(view.partitions[0].committed.rate, Some(250.0));
        assert_eq!(
            view.lag_line(),
            "220 events over 2 partitions · most 200 on partition 0"
        );

        let reasons: Vec<(&str, &str, Option<f64>)> = view
            .reasons
            .iter()
            .map(|r| (r.outcome, r.counted.name.as_str(), r.counted.total))
            .collect();
        assert_eq!(
            reasons,
            [
                ("dropped", "consent", Some(300.0)),
                ("dead-lettered", "invalid", Some(20.0)),
                ("dead-lettered", "parse", Some(60.0)),
            ]
        );
        assert_eq!(view.sink_retries[0], ("sink".to_owned(), 2.0));
    }

    #[test]
    fn one_scrape_has_totals_and_no_rates() {
        let view = View::build("u", None, None, &scraped(1.0, Instant::now())).unwrap();
        assert_eq!(view.events[0].total, Some(1000.0));
        assert_eq!(view.events[0].rate, None);
        assert_eq!(view.latency, None);
        assert_eq!(view.window, None);
    }

    #[test]
    fn an_idle_window_has_no_quantiles() {
        let t0 = Instant::now();
        let view = View::build(
            "u",
            None,
            Some(&scraped(1.0, t0)),
            &scraped(1.0, t0 + Duration::from_secs(1)),
        )
        .unwrap();
        assert_eq!(view.events[0].rate, Some(0.0));
        assert_eq!(view.latency, None);
        assert_eq!(view.pools[0].wait, None);
    }

    #[test]
    fn the_state_guesses_nothing_the_gauges_do_not_say() {
        assert_eq!(state(Some(1.0), Some(0.0)), "ready");
        assert_eq!(state(Some(0.0), Some(1.0)), "draining");
        assert_eq!(state(None, Some(1.0)), "draining");
        // Connecting, or over: the same gauges.
        assert_eq!(state(Some(0.0), Some(0.0)), "not ready");
        assert_eq!(state(Some(0.0), None), "not ready");
        assert_eq!(state(None, None), "unknown");
        let view = View::build(
            "u",
            None,
            None,
            &Scraped {
                at: Instant::now(),
                metrics: Metrics::parse(&canned(1.0).replace(
                    "crew_pipeline_ready{pipeline=\"pixels\"} 1",
                    "crew_pipeline_ready{pipeline=\"pixels\"} 0",
                )),
            },
        )
        .unwrap();
        assert_eq!(view.state, "not ready");
        assert!(view.headline(true).contains(" · not ready · "));
    }

    #[test]
    fn the_partitions_rate_is_named_for_offsets() {
        let view = View::build("u", None, None, &scraped(1.0, Instant::now())).unwrap();
        let table = view.partitions_table();
        assert_eq!(table.header.last(), Some(&"COMMITTED/S"));
        assert!(table.legend.is_some_and(|l| l.starts_with("COMMITTED/S: ")));
    }

    #[test]
    fn kafka_shows_only_when_the_pipeline_has_it() {
        let at = Instant::now();
        let view = View::build("u", None, None, &scraped(1.0, at)).unwrap();
        assert_eq!(view.kafka, None);
        assert_eq!(view.kafka_line(), None);

        let p = "pipeline=\"pixels\"";
        let kafka = format!(
            "# TYPE crew_kafka_assigned_partitions gauge\n\
             crew_kafka_assigned_partitions{{{p}}} 3\n\
             # TYPE crew_kafka_paused_partitions gauge\n\
             crew_kafka_paused_partitions{{{p}}} 1\n\
             # TYPE crew_kafka_rebalances_total counter\n\
             crew_kafka_rebalances_total{{{p},kind=\"assign\"}} 2\n\
             crew_kafka_rebalances_total{{{p},kind=\"revoke\"}} 1\n\
             # TYPE crew_kafka_producer_in_flight gauge\n\
             crew_kafka_producer_in_flight{{{p},sink=\"sink\"}} 120\n\
             crew_kafka_producer_in_flight{{{p},sink=\"dead_letter\"}} 0\n"
        );
        let scrape = Scraped {
            at,
            metrics: Metrics::parse(&format!("{}{kafka}", canned(1.0))),
        };
        let view = View::build("u", None, None, &scrape).unwrap();
        assert_eq!(
            view.kafka_line().as_deref(),
            Some(
                "3 partitions assigned (1 paused) · 3 rebalances · producer in flight \
                 sink 120, dead_letter 0"
            )
        );
        // A pipeline with a Kafka sink only: the producer alone.
        let sink_only: String = kafka
            .lines()
            .filter(|l| l.contains("producer_in_flight"))
            .map(|l| format!("{l}\n"))
            .collect();
        let scrape = Scraped {
            at,
            metrics: Metrics::parse(&format!("{}{sink_only}", canned(1.0))),
        };
        let view = View::build("u", None, None, &scrape).unwrap();
        assert_eq!(
            view.kafka_line().as_deref(),
            Some("producer in flight sink 120, dead_letter 0")
        );
    }

    /// An HTTP sink's families as the exporter writes them, `k` scaling the
    /// counters.
    fn http_families(k: f64) -> String {
        let p = "pipeline=\"pixels\"";
        let mut text = String::new();
        text.push_str("# TYPE crew_http_sink_concurrency_limit gauge\n");
        text.push_str(&format!(
            "crew_http_sink_concurrency_limit{{{p},sink=\"sink\"}} 4\n"
        ));
        text.push_str("# TYPE crew_http_sink_in_flight_requests gauge\n");
        text.push_str(&format!(
            "crew_http_sink_in_flight_requests{{{p},sink=\"sink\"}} 3\n"
        ));
        text.push_str("# TYPE crew_http_sink_attempts_total counter\n");
        for (result, n) in [
            ("success", 90.0),
            ("server_error", 8.0),
            ("client_error", 2.0),
        ] {
            text.push_str(&format!(
                "crew_http_sink_attempts_total{{{p},sink=\"sink\",result=\"{result}\"}} {}\n",
                n * k
            ));
        }
        text.push_str("# TYPE crew_http_sink_retries_total counter\n");
        text.push_str(&format!(
            "crew_http_sink_retries_total{{{p},sink=\"sink\"}} {}\n",
            8.0 * k
        ));
        text.push_str("# TYPE crew_http_sink_records_total counter\n");
        for (outcome, n) in [("delivered", 9000.0), ("refused", 20.0)] {
            text.push_str(&format!(
                "crew_http_sink_records_total{{{p},sink=\"sink\",outcome=\"{outcome}\"}} {}\n",
                n * k
            ));
        }
        text
    }

    #[test]
    fn http_shows_only_when_the_pipeline_has_it() {
        let t0 = Instant::now();
        let view = View::build("u", None, None, &scraped(1.0, t0)).unwrap();
        assert!(view.http.is_empty());
        assert_eq!(view.http_line(), None);

        let scrape = |k: f64, at: Instant| Scraped {
            at,
            metrics: Metrics::parse(&format!("{}{}", canned(k), http_families(k))),
        };
        // 100 attempts more in 2 s: 50 requests a second.
        let view = View::build(
            "u",
            None,
            Some(&scrape(1.0, t0)),
            &scrape(2.0, t0 + Duration::from_secs(2)),
        )
        .unwrap();
        assert_eq!(
            view.http_line().as_deref(),
            Some("sink limit 4 · in flight 3 · 50 req/s · 16 retries · 40 refused")
        );
        // One scrape: no rate yet.
        let view = View::build("u", None, None, &scrape(1.0, t0)).unwrap();
        assert_eq!(
            view.http_line().as_deref(),
            Some("sink limit 4 · in flight 3 · - req/s · 8 retries · 20 refused")
        );
    }

    #[test]
    fn rates_survive_a_restart() {
        assert_eq!(rate(30.0, 10.0, 2.0), 10.0);
        // The counter went from 1000 to 30: a restart, 30 since.
        assert_eq!(rate(30.0, 1000.0, 2.0), 15.0);
    }

    #[test]
    fn a_scrape_without_crew_or_without_the_pipeline_fails() {
        let at = Instant::now();
        let other = Scraped {
            at,
            metrics: Metrics::parse("up 1\n"),
        };
        let error = View::build("http://x", None, None, &other).unwrap_err();
        assert!(error.to_string().contains("no crew_ metrics"), "{error}");
        let error = View::build("http://x", Some("nope"), None, &scraped(1.0, at)).unwrap_err();
        assert!(error.to_string().contains("pixels"), "{error}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(Some(12_345.0)), "12345");
        assert_eq!(count(Some(1_234_567.0)), "1.23M");
        assert_eq!(count(Some(456_700.0)), "457k");
        assert_eq!(count(None), "-");
        assert_eq!(per_second(Some(0.26)), "0.3");
        assert_eq!(per_second(Some(12_345.6)), "12346");
        assert_eq!(seconds(Some(0.000_85)), "850µs");
        assert_eq!(seconds(Some(0.001_25)), "1.25ms");
        assert_eq!(seconds(Some(0.0125)), "12.5ms");
        assert_eq!(seconds(Some(0.125)), "125ms");
        assert_eq!(seconds(Some(2.5)), "2.50s");
        assert_eq!(seconds(Some(65.0)), "1m05s");
        // Rounded first, then split into units.
        assert_eq!(seconds(Some(119.7)), "2m00s");
        assert_eq!(seconds(Some(59.999)), "1m00s");
        assert_eq!(seconds(Some(59.99)), "59.99s");
        assert_eq!(seconds(Some(0.999_7)), "1.00s");
        assert_eq!(seconds(Some(0.099_96)), "100ms");
        assert_eq!(seconds(Some(0.009_996)), "10.0ms");
        assert_eq!(seconds(Some(0.000_999_7)), "1.00ms");
        assert_eq!(seconds(Some(0.0)), "0µs");
        assert_eq!(seconds(Some(7322.4)), "122m02s");
        assert_eq!(bytes(Some(6500.0)), "6.3 KiB");
        assert_eq!(bytes(Some(10.0)), "10 B");
        assert_eq!(uptime(Some(3723.0)), "1h 02m");
        assert_eq!(uptime(Some(42.0)), "42s");
        assert_eq!(uptime(Some(90_000.0)), "1d 1h");
        assert_eq!(percent(Some(0.9375)), "94%");
        let cell = fill_cell(
            &Fill {
                used: Some(3.0),
                capacity: Some(4.0),
            },
            4,
        );
        assert_eq!(cell.text, "███░ 3/4");
        assert_eq!(cell.fill, Some(0.75));
    }
}
