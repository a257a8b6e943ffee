//! One run of one B8 row: an `HttpSink` driven through the `Sink` trait as
//! the pipeline's sink thread drives it, against the simulated service.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crew_pipeline::sinks::{HttpSink, HttpSinkConfig, HttpSinkStats};
use crew_pipeline::{Origin, OutBatch, Sink};

use super::server::{Server, RECORD_PREFIX};
use super::{HttpOptions, Row, Run};
use crate::measure::process_cpu_time;

/// Flushes that may fail in a row (each one sends the failed requests
/// again) before the run counts as failed.
const MAX_FAILED_FLUSHES: u32 = 20;

/// `records` small NDJSON records `{"id":N,"b8":"..."}`, ids `0..records`,
/// in batches of `batch`.
pub(super) fn input(records: u64, batch: usize) -> Vec<OutBatch> {
    let batch = batch.max(1) as u64;
    (0..records)
        .step_by(batch as usize)
        .map(|first| {
            let mut out = OutBatch::default();
            for id in first..(first + batch).min(records) {
                out.push(
                    Origin {
                        partition: 0,
                        offset: id,
                    },
                    None,
                    |buf| {
                        buf.extend_from_slice(RECORD_PREFIX.as_bytes());
                        buf.extend_from_slice(id.to_string().as_bytes());
                        buf.extend_from_slice(b",\"b8\":\"adaptive-concurrency\"}");
                    },
                );
            }
            out
        })
        .collect()
}

/// The limiter as a sampler thread saw it during a run.
#[derive(Debug, Default)]
struct Samples {
    count: u64,
    limit_sum: u64,
    in_flight_sum: u64,
    limit_min: usize,
    limit_max: usize,
}

/// Samples the sink's limit and requests in flight every `every` until
/// told to stop.
struct Sampler {
    stop: crossbeam_channel::Sender<()>,
    thread: thread::JoinHandle<Samples>,
}

impl Sampler {
    fn start(stats: Arc<HttpSinkStats>, every: Duration) -> Result<Sampler, String> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = thread::Builder::new()
            .name("b8-sampler".into())
            .spawn(move || {
                let mut s = Samples {
                    limit_min: usize::MAX,
                    ..Samples::default()
                };
                loop {
                    let snapshot = stats.concurrency();
                    s.count += 1;
                    s.limit_sum += snapshot.limit as u64;
                    s.in_flight_sum += snapshot.in_flight as u64;
                    s.limit_min = s.limit_min.min(snapshot.limit);
                    s.limit_max = s.limit_max.max(snapshot.limit);
                    // The sampling period, not a synchronization: a message
                    // or a hang-up ends the loop at once.
                    match stopped.recv_timeout(every) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        _ => break s,
                    }
                }
            })
            .map_err(|e| format!("spawning the sampler: {e}"))?;
        Ok(Sampler { stop, thread })
    }

    fn finish(self) -> Result<Samples, String> {
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| "the sampler thread panicked".to_owned())
    }
}

/// Flushes, sending failed requests again as the pipeline's sink retry
/// does, until everything written was accepted.
fn flush(sink: &mut HttpSink, failed_flushes: &mut u32) -> Result<(), String> {
    let mut in_a_row = 0;
    loop {
        match sink.flush() {
            Ok(()) => return Ok(()),
            Err(e) => {
                *failed_flushes += 1;
                in_a_row += 1;
                if in_a_row >= MAX_FAILED_FLUSHES {
                    return Err(format!("{in_a_row} flushes in a row failed: {}", e.message));
                }
            }
        }
    }
}

/// One run of `row`: every batch of `input` written, a flush every
/// `flush_every` batches and at the end; then the service's ledger checked.
pub(super) fn run_once(
    server: &Server,
    input: &[OutBatch],
    row: Row,
    o: &HttpOptions,
) -> Result<Run, String> {
    let records: u64 = input.iter().map(|b| b.len() as u64).sum();
    server.begin_run(records);
    // The sink's own defaults for everything but the URL and the
    // concurrency: the rows differ in that alone.
    let mut config: HttpSinkConfig = sonic_rs::from_str(&format!("{{\"uri\":{:?}}}", server.url()))
        .map_err(|e| format!("the sink's configuration: {e}"))?;
    config.concurrency = row.concurrency();
    let mut sink = HttpSink::new(config).map_err(|e| format!("building the sink: {e}"))?;
    let stats = sink.stats();
    let sampler = Sampler::start(Arc::clone(&stats), o.sample_every)?;

    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let mut failed_flushes = 0;
    let flush_every = o.flush_every.max(1);
    let mut driven = || -> Result<(), String> {
        for (i, batch) in input.iter().enumerate() {
            sink.write(batch)
                .map_err(|e| format!("writing batch {i}: {}", e.message))?;
            if (i + 1) % flush_every == 0 {
                flush(&mut sink, &mut failed_flushes)?;
            }
        }
        flush(&mut sink, &mut failed_flushes)
    };
    let driven = driven();
    let elapsed = started.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    let samples = sampler.finish()?;
    driven?;

    let refused = sink.take_refused();
    if let Some(first) = refused.first() {
        return Err(format!(
            "the sink refused {} records ({}: {})",
            refused.len(),
            first.reason,
            first.message
        ));
    }
    let limiter = stats.concurrency();
    let latency = stats.latency();
    let attempts = stats.succeeded()
        + stats.client_errors()
        + stats.server_errors()
        + stats.transport_errors();
    let (delivered, retries) = (stats.delivered(), stats.retries());
    drop(sink);
    let server_counts = server.end_run();
    server_counts.exactly_once(records)?;
    if delivered != records {
        return Err(format!(
            "the sink counts {delivered} records delivered, the service accepted {records}"
        ));
    }
    let per_sample = |sum: u64| sum as f64 / samples.count.max(1) as f64;
    Ok(Run {
        records,
        elapsed,
        cpu,
        requests: server_counts.accepted_requests,
        attempts,
        latency_p50: latency.p50(),
        latency_p99: latency.p99(),
        retries,
        failed_flushes,
        limit_mean: per_sample(samples.limit_sum),
        limit_range: (
            samples.limit_min.min(limiter.limit),
            samples.limit_max.max(limiter.limit),
        ),
        limit_final: limiter.limit,
        in_flight_mean: per_sample(samples.in_flight_sum),
        increases: limiter.increases,
        decreases: limiter.decreases,
        server: server_counts,
    })
}
