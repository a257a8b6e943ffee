//! One scrape of `/metrics`, parsed by `prometheus-parse` into plain series
//! and histograms that `view` can sum, group and subtract.

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};

/// Labels of one series, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One counter, gauge or untyped value (a histogram's `_sum` and `_count`
/// are untyped here).
#[derive(Clone, Debug, PartialEq)]
struct Series {
    name: String,
    labels: Labels,
    value: f64,
}

/// One histogram series: its name without `_bucket`.
#[derive(Clone, Debug, PartialEq)]
struct HistogramSeries {
    name: String,
    labels: Labels,
    histogram: Histogram,
}

/// The cumulative buckets of a histogram: `(le, count of observations ≤
/// le)`, sorted by `le`, the last one `+Inf` in a complete exposition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// A histogram from `(le, cumulative count)` pairs in any order.
    pub fn new(mut buckets: Vec<(f64, f64)>) -> Histogram {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram { buckets }
    }

    /// Observations in all: the `+Inf` bucket's count.
    pub fn count(&self) -> f64 {
        match self.buckets.last() {
            Some(&(le, count)) if le == f64::INFINITY => count,
            _ => 0.0,
        }
    }

    /// Adds `other`'s counts bucket by bucket (the same `le`); a bound only
    /// one of them has is kept as it is.
    fn add(&mut self, other: &Histogram) {
        for &(le, count) in &other.buckets {
            match self.buckets.iter_mut().find(|(mine, _)| *mine == le) {
                Some((_, mine)) => *mine += count,
                None => self.buckets.push((le, count)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// What was observed since `earlier`: bucket counts minus `earlier`'s.
    /// After a restart (a count went down) the counting started over, so
    /// all of `self` is new.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for &(le, count) in &self.buckets {
            let before = earlier
                .buckets
                .iter()
                .find(|(other, _)| *other == le)
                .map_or(0.0, |&(_, count)| count);
            if count < before {
                return self.clone();
            }
            buckets.push((le, count - before));
        }
        Histogram { buckets }
    }

    /// The `q` quantile (0 to 1) the way Prometheus's `histogram_quantile`
    /// estimates it: linear within the bucket the rank falls in, the first
    /// bucket starting at 0, and the highest finite bound when the rank falls
    /// in the `+Inf` bucket. `None` without observations or without a `+Inf`
    /// bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let index = self.buckets.iter().position(|&(_, count)| count >= rank)?;
        let (upper, count) = self.buckets[index];
        if upper == f64::INFINITY {
            return index.checked_sub(1).map(|below| self.buckets[below].0);
        }
        let (lower, below) = match index.checked_sub(1) {
            Some(previous) => self.buckets[previous],
            None if upper > 0.0 => (0.0, 0.0),
            None => return Some(upper),
        };
        let in_bucket = count - below;
        if in_bucket <= 0.0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / in_bucket)
    }
}

/// A parsed scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// In the order of the text, which is the exporter's (stages in pipeline
    /// order).
    series: Vec<Series>,
    histograms: Vec<HistogramSeries>,
}

impl Metrics {
    /// Parses the Prometheus text format; lines it cannot read are skipped,
    /// as Prometheus's own scraper would reject them but a dashboard should
    /// still show the rest.
    pub fn parse(text: &str) -> Metrics {
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        // Reading from a `&str` cannot fail.
        let Ok(scrape) = Scrape::parse(lines) else {
            return Metrics::default();
        };
        let mut metrics = Metrics::default();
        for sample in scrape.samples {
            let labels: Labels = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            match sample.value {
                Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => {
                    metrics.series.push(Series {
                        name: sample.metric,
                        labels,
                        value,
                    })
                }
                Value::Histogram(buckets) => metrics.histograms.push(HistogramSeries {
                    name: sample.metric,
                    labels,
                    histogram: Histogram::new(
                        buckets.iter().map(|b| (b.less_than, b.count)).collect(),
                    ),
                }),
                // crew exports no summaries.
                Value::Summary(_) => {}
            }
        }
        // prometheus-parse hands histograms over in hash order: put them back
        // in a stable one.
        metrics
            .histograms
            .sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        metrics
    }

    /// Whether any series is a crew one: a scrape of something else (a wrong
    /// port) has none.
    pub fn has_crew(&self) -> bool {
        self.series.iter().any(|s| s.name.starts_with("crew_"))
            || self.histograms.iter().any(|h| h.name.starts_with("crew_"))
    }

    /// The `pipeline` label's values, sorted.
    pub fn pipelines(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .series
            .iter()
            .filter(|s| s.name.starts_with("crew_"))
            .filter_map(|s| s.labels.get("pipeline").cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Only the series of pipeline `name` (and those without a `pipeline`
    /// label).
    pub fn only_pipeline(&self, name: &str) -> Metrics {
        let keep = |labels: &Labels| labels.get("pipeline").is_none_or(|p| p == name);
        Metrics {
            series: self
                .series
                .iter()
                .filter(|s| keep(&s.labels))
                .cloned()
                .collect(),
            histograms: self
                .histograms
                .iter()
                .filter(|h| keep(&h.labels))
                .cloned()
                .collect(),
        }
    }

    /// The sum of every series named `name`; `None` when there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut values = self
            .series
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .peekable();
        values.peek()?;
        Some(values.sum())
    }

    /// The sum of the series named `name` whose `label` is `value`.
    pub fn sum_where(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        self.sum_matching(name, &[(label, value)])
    }

    /// The sum of the series named `name` that have every one of `labels`
    /// (name, value).
    pub fn sum_matching(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut values = self
            .series
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(label, value)| s.labels.get(*label).is_some_and(|v| v == value))
            })
            .map(|s| s.value)
            .peekable();
        values.peek()?;
        Some(values.sum())
    }

    /// The values of `label` on the series named `name`, in the order they
    /// first appear.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        for series in self.series.iter().filter(|s| s.name == name) {
            if let Some(value) = series.labels.get(label) {
                if !values.contains(value) {
                    values.push(value.clone());
                }
            }
        }
        for histogram in self.histograms.iter().filter(|h| h.name == name) {
            if let Some(value) = histogram.labels.get(label) {
                if !values.contains(value) {
                    values.push(value.clone());
                }
            }
        }
        values
    }

    /// The histogram named `name` (without `_bucket`), summed over the
    /// series whose `label` is `value`, or over all of them when `label` is
    /// `None`.
    pub fn histogram(&self, name: &str, label: Option<(&str, &str)>) -> Option<Histogram> {
        let mut sum: Option<Histogram> = None;
        for series in self.histograms.iter().filter(|h| h.name == name) {
            if let Some((label, value)) = label {
                if series.labels.get(label).is_none_or(|v| v != value) {
                    continue;
                }
            }
            match &mut sum {
                Some(sum) => sum.add(&series.histogram),
                None => sum = Some(series.histogram.clone()),
            }
        }
        sum
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A crew's `/metrics` as docs/metrics.md describes it, in the
    /// Prometheus text format 0.0.4; `k` scales the counters, to make a
    /// second scrape.
    pub fn canned(k: f64) -> String {
        let mut text = String::new();
        let mut line = |s: String| {
            text.push_str(&s);
            text.push('\n');
        };
        let p = "pipeline=\"pixels\"";
        line("# HELP crew_events_read_total events read from the source".into());
        line("# TYPE crew_events_read_total counter".into());
        line(format!("crew_events_read_total{{{p}}} {}", 1000.0 * k));
        line("# TYPE crew_events_delivered_total counter".into());
        line(format!("crew_events_delivered_total{{{p}}} {}", 800.0 * k));
        line("# TYPE crew_events_dropped_total counter".into());
        line(format!(
            "crew_events_dropped_total{{{p},reason=\"consent\"}} {}",
            150.0 * k
        ));
        line("# TYPE crew_events_dead_lettered_total counter".into());
        line(format!(
            "crew_events_dead_lettered_total{{{p},reason=\"parse\"}} {}",
            30.0 * k
        ));
        line(format!(
            "crew_events_dead_lettered_total{{{p},reason=\"invalid\"}} {}",
            10.0 * k
        ));
        line("# TYPE crew_events_in_flight gauge".into());
        line(format!("crew_events_in_flight{{{p}}} 10"));
        line(format!("crew_events_in_flight_bytes{{{p}}} 6400"));
        line(format!("crew_budget_events{{{p}}} 40"));
        line(format!("crew_budget_bytes{{{p}}} 1048576"));
        line(format!("crew_pipeline_ready{{{p}}} 1"));
        line(format!("crew_pipeline_draining{{{p}}} 0"));
        line(format!("crew_pipeline_uptime_seconds{{{p}}} 3723"));
        line(format!("crew_build_info{{{p},version=\"0.1.0\"}} 1"));
        line("# TYPE crew_event_latency_seconds histogram".into());
        // 100·k observations: 50·k ≤ 1 ms, 90·k ≤ 10 ms, all ≤ 100 ms.
        for (le, n) in [
            ("0.001", 50.0),
            ("0.01", 90.0),
            ("0.1", 100.0),
            ("+Inf", 100.0),
        ] {
            line(format!(
                "crew_event_latency_seconds_bucket{{{p},le=\"{le}\"}} {}",
                n * k
            ));
        }
        line(format!("crew_event_latency_seconds_sum{{{p}}} {}", 0.5 * k));
        line(format!(
            "crew_event_latency_seconds_count{{{p}}} {}",
            100.0 * k
        ));
        for (stage, input, out, dropped, errors) in [
            ("parse_json", 1000.0, 970.0, 0.0, 30.0),
            ("validate", 970.0, 960.0, 0.0, 10.0),
            ("consent", 960.0, 810.0, 150.0, 0.0),
        ] {
            let s = format!("{p},stage=\"{stage}\"");
            line(format!("crew_stage_events_in_total{{{s}}} {}", input * k));
            line(format!("crew_stage_events_out_total{{{s}}} {}", out * k));
            line(format!(
                "crew_stage_events_dropped_total{{{s}}} {}",
                dropped * k
            ));
            line(format!("crew_stage_errors_total{{{s}}} {}", errors * k));
            line(format!("crew_stage_retries_total{{{s}}} 0"));
        }
        line("# TYPE crew_stage_duration_seconds histogram".into());
        for stage in ["parse_json", "validate", "consent"] {
            for (le, n) in [
                ("0.000001", 0.0),
                ("0.00001", 900.0),
                ("0.0001", 1000.0),
                ("+Inf", 1000.0),
            ] {
                line(format!(
                    "crew_stage_duration_seconds_bucket{{{p},stage=\"{stage}\",le=\"{le}\"}} {}",
                    n * k
                ));
            }
        }
        for (pool, workers, busy, depth, capacity) in [
            ("parse_json", 4.0, 3.0, 60.0, 64.0),
            ("sink", 2.0, 0.0, 0.0, 16.0),
        ] {
            let l = format!("{p},pool=\"{pool}\"");
            line(format!("crew_pool_workers{{{l}}} {workers}"));
            line(format!("crew_pool_workers_busy{{{l}}} {busy}"));
            line(format!("crew_pool_queue_depth{{{l}}} {depth}"));
            line(format!("crew_pool_queue_capacity{{{l}}} {capacity}"));
            line(format!("crew_jobs_submitted_total{{{l}}} {}", 20.0 * k));
            line(format!("crew_jobs_processed_total{{{l}}} {}", 20.0 * k));
            line(format!("crew_jobs_panicked_total{{{l}}} 0"));
        }
        line("# TYPE crew_pool_queue_wait_seconds histogram".into());
        line("# TYPE crew_job_processing_duration_seconds histogram".into());
        for pool in ["parse_json", "sink"] {
            // 20·k jobs: waits 10 ≤ 1 ms, 20 ≤ 2 ms; runs all ≤ 4 ms.
            for (le, wait, run) in [
                ("0.001", 10.0, 0.0),
                ("0.002", 20.0, 0.0),
                ("0.004", 20.0, 20.0),
                ("+Inf", 20.0, 20.0),
            ] {
                line(format!(
                    "crew_pool_queue_wait_seconds_bucket{{{p},pool=\"{pool}\",le=\"{le}\"}} {}",
                    wait * k
                ));
                line(format!(
                    "crew_job_processing_duration_seconds_bucket{{{p},pool=\"{pool}\",le=\"{le}\"}} {}",
                    run * k
                ));
            }
        }
        for (partition, end, committed) in [(0, 600.0, 500.0), (1, 400.0, 390.0)] {
            let l = format!("{p},partition=\"{partition}\"");
            line(format!("crew_source_end_offset{{{l}}} {}", end * k));
            line(format!(
                "crew_source_committed_offset{{{l}}} {}",
                committed * k
            ));
            line(format!(
                "crew_source_lag_events{{{l}}} {}",
                (end - committed) * k
            ));
        }
        line(format!("crew_source_commit_errors_total{{{p}}} 0"));
        line(format!("crew_sink_retries_total{{{p},sink=\"sink\"}} 2"));
        line(format!(
            "crew_sink_retries_total{{{p},sink=\"dead_letter\"}} 0"
        ));
        text
    }

    #[test]
    fn a_canned_scrape_parses() {
        let metrics = Metrics::parse(&canned(1.0));
        assert!(metrics.has_crew());
        assert_eq!(metrics.pipelines(), vec!["pixels".to_owned()]);
        assert_eq!(metrics.sum("crew_events_read_total"), Some(1000.0));
        assert_eq!(metrics.sum("crew_events_dead_lettered_total"), Some(40.0));
        assert_eq!(
            metrics.sum_where("crew_events_dead_lettered_total", "reason", "parse"),
            Some(30.0)
        );
        assert_eq!(metrics.sum("crew_no_such_metric"), None);
        assert_eq!(
            metrics.sum_matching(
                "crew_stage_events_in_total",
                &[("pipeline", "pixels"), ("stage", "validate")]
            ),
            Some(970.0)
        );
        assert_eq!(
            metrics.sum_matching(
                "crew_stage_events_in_total",
                &[("pipeline", "other"), ("stage", "validate")]
            ),
            None
        );
        assert_eq!(
            metrics.label_values("crew_stage_events_in_total", "stage"),
            ["parse_json", "validate", "consent"]
        );
        let latency = metrics
            .histogram("crew_event_latency_seconds", None)
            .unwrap();
        assert_eq!(latency.count(), 100.0);
        let waits = metrics
            .histogram("crew_pool_queue_wait_seconds", Some(("pool", "sink")))
            .unwrap();
        assert_eq!(waits.count(), 20.0);
        let all_waits = metrics
            .histogram("crew_pool_queue_wait_seconds", None)
            .unwrap();
        assert_eq!(all_waits.count(), 40.0);
    }

    #[test]
    fn other_exporters_and_junk_have_no_crew_series() {
        let metrics = Metrics::parse("# TYPE up gauge\nup 1\nnot a metric line {\n");
        assert!(!metrics.has_crew());
        assert!(!Metrics::parse("").has_crew());
    }

    #[test]
    fn pipelines_are_kept_apart() {
        let text =
            "crew_events_read_total{pipeline=\"a\"} 1\ncrew_events_read_total{pipeline=\"b\"} 2\n";
        let metrics = Metrics::parse(text);
        assert_eq!(metrics.pipelines(), ["a", "b"]);
        assert_eq!(
            metrics.only_pipeline("b").sum("crew_events_read_total"),
            Some(2.0)
        );
        assert_eq!(metrics.sum("crew_events_read_total"), Some(3.0));
    }

    #[test]
    fn quantiles_follow_histogram_quantile() {
        let h = Histogram::new(vec![
            (f64::INFINITY, 100.0),
            (0.1, 100.0),
            (0.01, 90.0),
            (0.001, 50.0),
        ]);
        // Rank 50 is the top of the first bucket, which starts at 0.
        assert_eq!(h.quantile(0.5), Some(0.001));
        assert_eq!(h.quantile(0.25), Some(0.0005));
        // Rank 95: half-way through (0.01, 0.1].
        let p95 = h.quantile(0.95).unwrap();
        assert!((p95 - 0.055).abs() < 1e-12, "{p95}");
        // In the +Inf bucket: the highest finite bound.
        let tail = Histogram::new(vec![(0.5, 1.0), (f64::INFINITY, 10.0)]);
        assert_eq!(tail.quantile(0.99), Some(0.5));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(
            Histogram::new(vec![(0.5, 0.0), (f64::INFINITY, 0.0)]).quantile(0.5),
            None
        );
        // Without +Inf the exposition is incomplete: no estimate.
        assert_eq!(Histogram::new(vec![(0.5, 3.0)]).quantile(0.5), None);
    }

    #[test]
    fn a_histogram_since_an_earlier_one_and_after_a_restart() {
        let earlier = Histogram::new(vec![(1.0, 10.0), (f64::INFINITY, 10.0)]);
        let later = Histogram::new(vec![(1.0, 10.0), (f64::INFINITY, 14.0)]);
        let window = later.since(&earlier);
        assert_eq!(window.count(), 4.0);
        // All 4 new observations are over 1: the +Inf rule gives 1.
        assert_eq!(window.quantile(0.5), Some(1.0));
        let restarted = Histogram::new(vec![(1.0, 2.0), (f64::INFINITY, 3.0)]);
        assert_eq!(restarted.since(&later), restarted);
    }
}
