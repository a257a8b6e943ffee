//! B8: crew-pipeline's HTTP sink with an adaptive concurrency limit beside
//! the same sink with fixed limits, in the same run, against one simulated
//! service.
//!
//! The service is an axum server on a loopback port of this process, on a
//! tokio runtime of its own (one thread): [`HttpOptions::workers`] workers
//! (a semaphore), each holding a request for [`HttpOptions::service_time`]
//! (a tokio sleep, so 1–2 ms more than asked: tokio's timer rounds up to its
//! 1 ms tick); up to [`HttpOptions::queue_bound`] requests wait for a
//! worker, and one arriving while that many wait is answered 503 at once (a
//! service that sheds load). Its capacity is `workers / service time`
//! requests per second, whatever the client does; a client with more
//! requests out than workers only makes them wait in the queue or be shed.
//!
//! Each row drives a fresh `HttpSink` (the sink's defaults but for the URL
//! and `concurrency`) through the `Sink` trait, as the pipeline's sink
//! thread does: [`HttpOptions::records`] small NDJSON records, written in
//! batches of [`HttpOptions::batch`] (one request each), a flush every
//! [`HttpOptions::flush_every`] batches and at the end. A flush that reports
//! failed requests is called again (it re-sends them), as the pipeline's
//! sink retry would. Rows: one per fixed limit in [`HttpOptions::fixed`],
//! and `adaptive` (the default [`AdaptiveSettings`]); rounds of one run per
//! row, each round starting one row further along.
//!
//! Timed from the first write to the end of the last flush. Every run is
//! checked: the service must have answered 2xx to bodies holding every
//! record exactly once, the sink must count them all delivered and refuse
//! none. A run that does not add up is a failure of the bench.
//!
//! [`AdaptiveSettings`]: crew_pipeline::concurrency::AdaptiveSettings

mod markdown;
mod row;
mod server;

use std::sync::Arc;
use std::time::Duration;

use crew_pipeline::concurrency::Concurrency;

use crate::measure::{self, format_rate, Progress, Statistic};
use crate::{SuiteOptions, Workload};

pub use markdown::write_markdown;
pub use server::ServerCounts;
use server::{Server, Shape};

/// B8's sizes and the simulated service's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// Records each run sends.
    pub records: u64,
    /// Records per `write`, and so per request.
    pub batch: usize,
    /// A flush after this many batches (and one at the end). 160 batches
    /// of 100 is about the 16,384 events after which the pipeline's sink
    /// thread flushes while batches keep coming.
    pub flush_every: usize,
    /// Rounds, each one run of every row.
    pub repeat: usize,
    /// The fixed limits measured, one row each.
    pub fixed: Vec<usize>,
    /// The service's workers: requests served at once.
    pub workers: usize,
    /// How long a worker holds each request.
    pub service_time: Duration,
    /// Requests that may wait for a worker before the service sheds load
    /// with 503.
    pub queue_bound: usize,
    /// How often a sampler thread reads the sink's limit and requests in
    /// flight.
    pub sample_every: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            records: 200_000,
            batch: 100,
            flush_every: 160,
            repeat: 3,
            fixed: vec![1, 2, 8, 32, 128],
            workers: 8,
            service_time: Duration::from_millis(2),
            queue_bound: 32,
            sample_every: Duration::from_millis(2),
        }
    }
}

impl HttpOptions {
    /// The rows measured, in table order: the fixed limits, then adaptive.
    pub fn rows(&self) -> Vec<Row> {
        self.fixed
            .iter()
            .map(|&n| Row::Fixed(n))
            .chain([Row::Adaptive])
            .collect()
    }

    /// Requests per second the service can serve, at best: workers over
    /// the nominal service time.
    pub fn nominal_capacity(&self) -> f64 {
        self.workers as f64 / self.service_time.as_secs_f64().max(1e-9)
    }

    fn sanitized(&self) -> HttpOptions {
        let mut fixed: Vec<usize> = self.fixed.iter().map(|&n| n.max(1)).collect();
        fixed.sort_unstable();
        fixed.dedup();
        HttpOptions {
            records: self.records.max(1),
            batch: self.batch.max(1),
            flush_every: self.flush_every.max(1),
            repeat: self.repeat.max(1),
            fixed,
            workers: self.workers.max(1),
            service_time: self.service_time,
            queue_bound: self.queue_bound,
            sample_every: self.sample_every.max(Duration::from_micros(100)),
        }
    }
}

/// One row of B8's table: the sink's `concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// `concurrency = N`.
    Fixed(usize),
    /// `concurrency = "adaptive"`, default settings.
    Adaptive,
}

impl Row {
    /// The row's name: `fixed 8`, `adaptive`.
    pub fn name(self) -> String {
        match self {
            Row::Fixed(n) => format!("fixed {n}"),
            Row::Adaptive => "adaptive".to_owned(),
        }
    }

    /// The sink's setting for this row.
    pub fn concurrency(self) -> Concurrency {
        match self {
            Row::Fixed(n) => Concurrency::Fixed(n),
            Row::Adaptive => Concurrency::Adaptive,
        }
    }
}

/// One run of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Records sent (and accepted exactly once).
    pub records: u64,
    /// From the first write to the end of the last flush.
    pub elapsed: Duration,
    /// This process's CPU (sink, service, driver) over `elapsed`.
    pub cpu: Duration,
    /// Requests the service accepted (one per batch).
    pub requests: u64,
    /// HTTP attempts the sink made: accepted, shed and any other.
    pub attempts: u64,
    /// Median attempt time, from the sink's histogram (503s included).
    pub latency_p50: Duration,
    /// 99th percentile attempt time.
    pub latency_p99: Duration,
    /// Attempts made again after a retriable failure.
    pub retries: u64,
    /// Flushes that reported requests still failing (and re-sent them).
    pub failed_flushes: u32,
    /// The limit, averaged over the sampler's readings.
    pub limit_mean: f64,
    /// The lowest and highest limit seen.
    pub limit_range: (usize, usize),
    /// The limit at the end of the run.
    pub limit_final: usize,
    /// Requests holding a permit, averaged over the sampler's readings.
    pub in_flight_mean: f64,
    /// Times the controller raised the limit.
    pub increases: u64,
    /// Times it lowered it.
    pub decreases: u64,
    /// What the service saw.
    pub server: ServerCounts,
}

impl Run {
    /// Records per second.
    pub fn rate(&self) -> f64 {
        measure::rate(self.records, self.elapsed)
    }

    /// HTTP attempts per second (503s included).
    pub fn attempt_rate(&self) -> f64 {
        measure::rate(self.attempts, self.elapsed)
    }

    /// Mean time an accepted request waited in the service's queue.
    pub fn mean_queue_wait(&self) -> Duration {
        self.server
            .queue_wait
            .checked_div(u32::try_from(self.server.accepted_requests.max(1)).unwrap_or(u32::MAX))
            .unwrap_or_default()
    }
}

/// One row's runs.
#[derive(Debug, Clone)]
pub struct RowResult {
    /// The row.
    pub row: Row,
    /// Its runs, one per round, in round order (`None` after a failure).
    pub runs: Vec<Option<Run>>,
    /// Why it failed (later rounds skip it).
    pub error: Option<String>,
}

impl RowResult {
    /// The run the statistic picks: the fastest, or the median one.
    pub fn of_record(&self, statistic: Statistic) -> Option<&Run> {
        statistic.pick(self.runs.iter().flatten(), |r| r.elapsed)
    }
}

/// B8's figures.
#[derive(Debug, Clone)]
pub struct HttpTable {
    /// The sizes it ran with.
    pub options: HttpOptions,
    /// Which run of each row the main table shows.
    pub statistic: Statistic,
    /// One entry per row, in table order.
    pub rows: Vec<RowResult>,
    /// Why nothing was measured (the service did not start).
    pub error: Option<String>,
}

impl HttpTable {
    /// The entry of `row`.
    pub fn row(&self, row: Row) -> Option<&RowResult> {
        self.rows.iter().find(|r| r.row == row)
    }

    /// Rounds run.
    pub fn rounds(&self) -> usize {
        self.rows.iter().map(|r| r.runs.len()).max().unwrap_or(0)
    }

    /// In round `i` (from 0): the fastest fixed row and its rate.
    pub fn best_fixed(&self, i: usize) -> Option<(Row, f64)> {
        self.rows
            .iter()
            .filter(|r| matches!(r.row, Row::Fixed(_)))
            .filter_map(|r| Some((r.row, r.runs.get(i)?.as_ref()?.rate())))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// In round `i`: adaptive's rate over the fastest fixed row's.
    pub fn ratio(&self, i: usize) -> Option<f64> {
        let adaptive = self.row(Row::Adaptive)?.runs.get(i)?.as_ref()?.rate();
        Some(adaptive / self.best_fixed(i)?.1)
    }

    /// The median of the rounds' ratios.
    pub fn median_ratio(&self) -> Option<f64> {
        let mut ratios: Vec<f64> = (0..self.rounds()).filter_map(|i| self.ratio(i)).collect();
        ratios.sort_by(f64::total_cmp);
        ratios.get(ratios.len().checked_sub(1)? / 2).copied()
    }

    /// What failed, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.error
            .iter()
            .map(|e| format!("B8: {e}"))
            .chain(self.rows.iter().filter_map(|r| {
                r.error
                    .as_ref()
                    .map(|e| format!("B8 {}: {e}", r.row.name()))
            }))
            .collect()
    }
}

/// Runs B8: starts the service, then every row once per round.
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> HttpTable {
    let o = opts.b8.sanitized();
    let mut table = HttpTable {
        rows: o
            .rows()
            .into_iter()
            .map(|row| RowResult {
                row,
                runs: Vec::new(),
                error: None,
            })
            .collect(),
        options: o.clone(),
        statistic: opts.statistic,
        error: None,
    };
    let server = match Server::start(Shape {
        workers: o.workers,
        service_time: o.service_time,
        queue_bound: o.queue_bound,
    }) {
        Ok(server) => Arc::new(server),
        Err(e) => {
            table.error = Some(e);
            return table;
        }
    };
    let input = Arc::new(row::input(o.records, o.batch));
    let options = Arc::new(o.clone());
    let n = table.rows.len();
    for round in 1..=o.repeat {
        for entry in &mut table.rows {
            entry.runs.push(None);
        }
        // Each round starts one row further along, so that no row always
        // follows the same one.
        for k in 0..n {
            let entry = &mut table.rows[(k + round - 1) % n];
            if entry.error.is_some() {
                continue;
            }
            let cell = entry.row.name();
            progress(&Progress::Started {
                workload: Workload::B8,
                cell: cell.clone(),
                run: round,
                of: o.repeat,
            });
            let (server, input, options, row) = (
                Arc::clone(&server),
                Arc::clone(&input),
                Arc::clone(&options),
                entry.row,
            );
            // On its own thread with a deadline: a sink stuck on a
            // service that stopped answering fails the row, not the suite.
            let result = measure::isolated(opts.cell_timeout, move || {
                row::run_once(&server, &input, row, &options)
            });
            let outcome = match result {
                Ok(run) => {
                    let text = format!(
                        "{} ({:.3} s, {} shed, limit {:.1} mean)",
                        format_rate(run.rate()),
                        run.elapsed.as_secs_f64(),
                        run.server.shed,
                        run.limit_mean
                    );
                    entry.runs[round - 1] = Some(run);
                    text
                }
                Err(e) => {
                    let text = format!("FAILED: {e}");
                    entry.error = Some(e);
                    text
                }
            };
            progress(&Progress::Finished {
                workload: Workload::B8,
                cell,
                run: round,
                of: o.repeat,
                outcome,
            });
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> SuiteOptions {
        let mut opts = SuiteOptions::quick();
        opts.b8 = HttpOptions {
            records: 3_000,
            batch: 50,
            // One flush at the end: every request goes out at once.
            flush_every: 1_000,
            repeat: 2,
            fixed: vec![1, 64],
            workers: 4,
            // Long enough that the sink issues its 60 requests faster than
            // the service serves them even on a loaded machine.
            service_time: Duration::from_millis(5),
            queue_bound: 8,
            ..HttpOptions::default()
        };
        opts
    }

    /// Every row runs every round and delivers every record exactly once
    /// (checked inside each run against the service's ledger); the
    /// too-high fixed limit is shed and retried, and still delivers all.
    #[test]
    fn b8_runs_every_row_and_delivers_every_record_once() {
        let mut seen = Vec::new();
        let table = run(&tiny(), &mut |p| {
            if let Progress::Finished { cell, run, .. } = p {
                seen.push((cell.clone(), *run));
            }
        });
        assert_eq!(table.failures(), Vec::<String>::new());
        let names: Vec<String> = table.rows.iter().map(|r| r.row.name()).collect();
        assert_eq!(names, ["fixed 1", "fixed 64", "adaptive"]);
        // Round 2 starts one row further along.
        let order: Vec<&str> = seen.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            order,
            ["fixed 1", "fixed 64", "adaptive", "fixed 64", "adaptive", "fixed 1"]
        );
        for entry in &table.rows {
            assert_eq!(entry.runs.len(), 2, "{}", entry.row.name());
            for run in entry.runs.iter().map(|r| r.as_ref().unwrap()) {
                assert_eq!(run.records, 3_000);
                assert_eq!(run.requests, 60, "3,000 records in batches of 50");
                assert_eq!(run.server.lines, 3_000);
                assert_eq!(run.attempts, run.requests + run.server.shed);
                assert!(run.server.peak_queued <= 8);
                if let Row::Fixed(n) = entry.row {
                    assert_eq!(run.limit_final, n);
                    assert_eq!(run.limit_range, (n, n));
                }
            }
        }
        // 64 requests out against 4 workers and 8 places in the queue:
        // the service must shed, and the sink must retry what it shed.
        let shedding = table.row(Row::Fixed(64)).unwrap();
        for run in shedding.runs.iter().flatten() {
            assert!(run.server.shed > 0);
            assert!(run.retries > 0);
        }
        assert!(table.ratio(0).is_some() && table.median_ratio().is_some());
        let mut markdown = String::new();
        write_markdown(&mut markdown, &table);
        assert!(markdown.contains("## B8"), "{markdown}");
        assert!(markdown.contains("| **adaptive** |"), "{markdown}");
    }

    #[test]
    fn options_are_sanitized() {
        let o = HttpOptions {
            records: 0,
            batch: 0,
            flush_every: 0,
            repeat: 0,
            fixed: vec![8, 0, 8, 2],
            workers: 0,
            ..HttpOptions::default()
        }
        .sanitized();
        assert_eq!(
            (o.records, o.batch, o.flush_every, o.repeat, o.workers),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(o.fixed, [1, 2, 8]);
        assert_eq!(
            o.rows(),
            [Row::Fixed(1), Row::Fixed(2), Row::Fixed(8), Row::Adaptive]
        );
    }
}
