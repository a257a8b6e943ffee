//! The worker sweep: events per second of one pipeline as the pool of its
//! I/O-bound stage grows ("more workers, more events per pod").
//!
//! The pipeline is generator → `parse` (a [`ParseJson`] stage on a pool of
//! [`SweepOptions::cpu_workers`], 2 by default: the CPU part) → `partner` (a
//! stage on its own pool of N workers, added with
//! [`PipelineBuilder::stage_with_workers`]) → a [`Blackhole`] sink. The
//! partner stage stands for a synchronous HTTP call to a partner: for every
//! [`SweepOptions::batch`] events it blocks its worker thread for
//! [`SweepOptions::latency`], one bulk call per batch. It does no work, so
//! while the CPU has room, throughput is about `N × batch / latency`: N
//! batches in flight, each held for one latency. Once the CPU part (the
//! generator on the source thread, parsing on 2 workers, encoding, the sink
//! thread) uses the machine's cores, more workers only wait for it and the
//! curve flattens. [`Sweep::flattening`] finds where from the data.
//!
//! Each point is one pipeline run: a warm-up, then a time-boxed window in
//! which delivered events and process CPU time are counted, then a graceful
//! shutdown that drains everything in flight. The run's report must balance
//! (every event read is delivered, dropped, dead-lettered or abandoned) and
//! abandon nothing, or the point is an error.
//!
//! Benchmarks are not tests: nothing here asserts a time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crew_pipeline::sinks::Blackhole;
use crew_pipeline::sources::{Generator, GeneratorConfig};
use crew_pipeline::transforms::ParseJson;
use crew_pipeline::{
    Batching, Budget, BuildError, Event, Outcome, Pipeline, PipelineBuilder, Settings, SourceError,
    Stage, StageError, StopCause,
};

use crate::machine::Machine;
use crate::measure::{format_rate, process_cpu_time};
use crate::report::thousands;

/// The worker counts of the default sweep.
pub const DEFAULT_WORKERS: [usize; 9] = [1, 2, 4, 8, 15, 40, 50, 100, 200];

/// The default partner call latency.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(20);

/// The default batch size: events per batch, and per partner call.
///
/// At 20 ms a call, 100 events a call is 5,000 events/s per worker, so the
/// ideal line crosses what a 2-core machine's CPU part can carry (about
/// 200k events/s) between 40 and 50 workers: the default worker counts show
/// both the linear part and the flat part. Larger batches would also cut
/// per-batch overhead, smaller ones move the bend to the right.
pub const DEFAULT_BATCH: usize = 100;

/// Most workers one point may have: each is an OS thread.
pub const MAX_WORKERS: usize = 4_096;

/// A step that gains less than this per doubling of workers is flat.
pub const FLAT_GAIN: f64 = 0.10;

/// What the sweep runs, and how long.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOptions {
    /// Worker counts of the partner stage's pool, one point each.
    pub workers: Vec<usize>,
    /// How long one partner call blocks its worker.
    pub latency: Duration,
    /// Events per batch; the partner stage makes one call per batch.
    pub batch: usize,
    /// Workers of the CPU stages' pool (the `parse` stage).
    pub cpu_workers: usize,
    /// Run time before the measured window of each point, so that the pools
    /// are full when counting starts.
    pub warmup: Duration,
    /// The measured window of each point.
    pub window: Duration,
    /// Longest a window is stretched while nothing at all has been
    /// delivered (a very loaded machine), before the point is reported as
    /// delivering nothing.
    pub max_wait: Duration,
    /// The generator's seed.
    pub seed: u64,
    /// Whether these are the `--quick` durations (shown in the report).
    pub quick: bool,
}

impl SweepOptions {
    /// The sweep of record: the default workers, 20 ms, 2 s windows (about
    /// 25 s in all).
    pub fn full() -> Self {
        SweepOptions {
            workers: DEFAULT_WORKERS.to_vec(),
            latency: DEFAULT_LATENCY,
            batch: DEFAULT_BATCH,
            cpu_workers: 2,
            warmup: Duration::from_millis(300),
            window: Duration::from_secs(2),
            max_wait: Duration::from_secs(30),
            seed: 1,
            quick: false,
        }
    }

    /// A smoke run: windows of 0.4 s after 0.1 s of warm-up.
    pub fn quick() -> Self {
        SweepOptions {
            warmup: Duration::from_millis(100),
            window: Duration::from_millis(400),
            quick: true,
            ..Self::full()
        }
    }

    /// Checks the values a caller may get wrong.
    pub fn validate(&self) -> Result<(), SweepError> {
        let bad = |what: String| Err(SweepError::Options(what));
        if self.workers.is_empty() {
            return bad("no worker counts".into());
        }
        if let Some(&w) = self.workers.iter().find(|&&w| w == 0 || w > MAX_WORKERS) {
            return bad(format!(
                "worker count {w} is out of range (1 to {MAX_WORKERS})"
            ));
        }
        if self.latency.is_zero() {
            return bad("the partner call latency must be positive".into());
        }
        if self.batch == 0 {
            return bad("the batch size must be at least 1".into());
        }
        if self.cpu_workers == 0 {
            return bad("the CPU stages need at least 1 worker".into());
        }
        if self.window.is_zero() {
            return bad("the measured window must be positive".into());
        }
        Ok(())
    }

    /// `workers × batch / latency`: the rate `workers` would reach if the
    /// CPU part cost nothing.
    pub fn ideal_rate(&self, workers: usize) -> f64 {
        workers as f64 * self.batch as f64 / self.latency.as_secs_f64()
    }

    /// The pipeline settings of one point: the CPU pool, the batch size,
    /// and a budget that never binds (four batches per partner worker,
    /// which covers the running, the queued and the ones at the sink), so
    /// that the partner pool's size is the variable that matters.
    pub fn settings(&self, workers: usize) -> Settings {
        let events = (workers * self.batch * 4).max(100_000);
        Settings {
            workers: self.cpu_workers,
            batch: Batching {
                max_events: self.batch,
                max_bytes: 1 << 20,
                linger: Duration::from_millis(5),
            },
            budget: Budget {
                max_events: events,
                // Generated events are about 600 bytes.
                max_bytes: events.saturating_mul(4 << 10),
                max_per_partition: events,
            },
            ..Settings::default()
        }
    }
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self::full()
    }
}

/// What can stop a sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The options are not usable.
    #[error("sweep options: {0}")]
    Options(String),
    /// The generator refused its config.
    #[error("the generator: {0}")]
    Source(#[from] SourceError),
    /// The pipeline refused its wiring.
    #[error("building the pipeline: {0}")]
    Build(#[from] BuildError),
    /// The pipeline's thread panicked.
    #[error("the pipeline of the {workers}-worker point panicked")]
    Panicked {
        /// The point's worker count.
        workers: usize,
    },
    /// The run failed, abandoned events, or its counts did not balance.
    #[error("the {workers}-worker point did not finish cleanly: {detail}")]
    Unclean {
        /// The point's worker count.
        workers: usize,
        /// What was wrong.
        detail: String,
    },
}

/// One point of the sweep: a pipeline run with `workers` partner workers.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    /// Workers of the partner stage's pool.
    pub workers: usize,
    /// Events delivered during the measured window.
    pub window_events: u64,
    /// The measured window, as timed.
    pub window: Duration,
    /// Process CPU time (user + system, every thread) during the window.
    pub window_cpu: Duration,
    /// Partner calls made in the whole run.
    pub calls: u64,
    /// Events read in the whole run.
    pub read: u64,
    /// Events delivered to the sink in the whole run.
    pub delivered: u64,
    /// Events dropped on purpose in the whole run.
    pub dropped: u64,
    /// Events dead-lettered in the whole run.
    pub dead_lettered: u64,
    /// Events abandoned at shutdown.
    pub abandoned: u64,
    /// The whole run, warm-up and drain included.
    pub elapsed: Duration,
}

impl SweepPoint {
    /// Events per second delivered in the measured window.
    pub fn rate(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.window_events as f64 / secs
        } else {
            0.0
        }
    }

    /// Events per second per partner worker.
    pub fn per_worker(&self) -> f64 {
        self.rate() / self.workers as f64
    }

    /// Cores kept busy during the window (CPU-seconds per second).
    pub fn cores_busy(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.window_cpu.as_secs_f64() / secs
        } else {
            0.0
        }
    }

    /// Whether every event read is accounted for: read = delivered +
    /// dropped + dead-lettered + abandoned.
    pub fn balances(&self) -> bool {
        self.read == self.delivered + self.dropped + self.dead_lettered + self.abandoned
    }
}

/// Progress of a sweep, for a display.
#[derive(Debug, Clone)]
pub enum SweepProgress<'a> {
    /// A point is starting.
    Started {
        /// Its worker count.
        workers: usize,
        /// Its position, from 0.
        index: usize,
        /// How many points the sweep has.
        of: usize,
    },
    /// A point has finished.
    Finished {
        /// What it measured.
        point: &'a SweepPoint,
        /// Its position, from 0.
        index: usize,
        /// How many points the sweep has.
        of: usize,
    },
}

/// A finished sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// What was run.
    pub options: SweepOptions,
    /// Where, and when.
    pub machine: Machine,
    /// The command line that ran it, for the report.
    pub command: Option<String>,
    /// One point per worker count, in ascending worker order.
    pub points: Vec<SweepPoint>,
}

/// Runs one point per worker count (ascending, duplicates removed).
pub fn run_sweep(
    options: &SweepOptions,
    progress: &mut dyn FnMut(&SweepProgress<'_>),
) -> Result<Sweep, SweepError> {
    options.validate()?;
    let machine = Machine::detect();
    let mut workers = options.workers.clone();
    workers.sort_unstable();
    workers.dedup();
    let of = workers.len();
    let mut points = Vec::with_capacity(of);
    for (index, &w) in workers.iter().enumerate() {
        progress(&SweepProgress::Started {
            workers: w,
            index,
            of,
        });
        let point = run_point(options, w)?;
        progress(&SweepProgress::Finished {
            point: &point,
            index,
            of,
        });
        points.push(point);
    }
    Ok(Sweep {
        options: SweepOptions {
            workers,
            ..options.clone()
        },
        machine,
        command: None,
        points,
    })
}

/// The partner call: blocks the worker for `latency` once per `every`
/// events.
///
/// The event whose offset is a multiple of `every` makes the call. The
/// generator reads one partition with consecutive offsets, and any `every`
/// consecutive offsets hold exactly one multiple of `every`, so each full
/// batch makes exactly one call whatever its alignment.
struct PartnerCall {
    latency: Duration,
    every: u64,
    calls: Arc<AtomicU64>,
}

impl Stage for PartnerCall {
    fn process(&self, event: &mut Event) -> Result<Outcome, StageError> {
        if event.origin().offset % self.every == 0 {
            self.calls.fetch_add(1, AtomicOrdering::Relaxed);
            // The simulated partner: a blocking call holds its worker.
            thread::sleep(self.latency);
        }
        Ok(Outcome::Keep)
    }
}

/// The pipeline of one point: generator → parse → partner → blackhole.
fn pipeline(
    options: &SweepOptions,
    workers: usize,
    calls: &Arc<AtomicU64>,
) -> Result<Pipeline, SweepError> {
    let source = Generator::new(GeneratorConfig {
        seed: options.seed,
        count: None,
        partitions: 1,
        ..GeneratorConfig::default()
    })?;
    let partner = PartnerCall {
        latency: options.latency,
        every: options.batch as u64,
        calls: Arc::clone(calls),
    };
    Ok(PipelineBuilder::default()
        .settings(options.settings(workers))
        .source(source)
        .stage("parse", ParseJson::default())
        .stage_with_workers("partner", partner, workers)
        .sink(Blackhole::default())
        .dead_letter(Blackhole::default())
        .build()?)
}

/// Runs one point: warm-up, measured window, graceful shutdown.
pub fn run_point(options: &SweepOptions, workers: usize) -> Result<SweepPoint, SweepError> {
    options.validate()?;
    let calls = Arc::new(AtomicU64::new(0));
    let pipeline = pipeline(options, workers, &calls)?;
    let handle = pipeline.handle();
    let started = Instant::now();
    let (window, report) = thread::scope(|scope| {
        let runner = scope.spawn(move || pipeline.run());
        let window = measure_window(options, &handle, || runner.is_finished());
        handle.shutdown();
        (window, runner.join())
    });
    let elapsed = started.elapsed();
    let report = report.map_err(|_| SweepError::Panicked { workers })?;
    let point = SweepPoint {
        workers,
        window_events: window.events,
        window: window.time,
        window_cpu: window.cpu,
        calls: calls.load(AtomicOrdering::Relaxed),
        read: report.read,
        delivered: report.delivered,
        dropped: report.dropped,
        dead_lettered: report.dead_lettered,
        abandoned: report.abandoned,
        elapsed,
    };
    let unclean = |detail: String| Err(SweepError::Unclean { workers, detail });
    if let StopCause::Failed(why) = &report.stopped_by {
        return unclean(format!("the pipeline failed: {why}"));
    }
    if !point.balances() {
        return unclean(format!(
            "read {} but delivered {} + dropped {} + dead-lettered {} + abandoned {}",
            point.read, point.delivered, point.dropped, point.dead_lettered, point.abandoned
        ));
    }
    if point.abandoned > 0 || point.dropped > 0 || point.dead_lettered > 0 {
        return unclean(format!(
            "{} abandoned, {} dropped, {} dead-lettered (expected none)",
            point.abandoned, point.dropped, point.dead_lettered
        ));
    }
    Ok(point)
}

/// What one window counted.
struct Window {
    events: u64,
    time: Duration,
    cpu: Duration,
}

/// Waits out the warm-up, then counts delivered events and CPU time over the
/// window. A window in which nothing was delivered is stretched (up to
/// `max_wait`) so that every point measures something.
fn measure_window(
    options: &SweepOptions,
    handle: &crew_pipeline::PipelineHandle,
    finished: impl Fn() -> bool,
) -> Window {
    // Short naps so that a pipeline that stops early is noticed.
    const NAP: Duration = Duration::from_millis(10);
    let nap_until = |deadline: Instant| {
        while !finished() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            thread::sleep(NAP.min(deadline - now));
        }
    };
    nap_until(Instant::now() + options.warmup);
    let cpu_start = process_cpu_time();
    let start = Instant::now();
    let delivered_start = handle.snapshot().delivered;
    nap_until(start + options.window);
    let give_up = start + options.window + options.max_wait;
    let mut delivered_end = handle.snapshot().delivered;
    while delivered_end == delivered_start && !finished() && Instant::now() < give_up {
        thread::sleep(NAP);
        delivered_end = handle.snapshot().delivered;
    }
    Window {
        events: delivered_end - delivered_start,
        time: start.elapsed(),
        cpu: process_cpu_time().saturating_sub(cpu_start),
    }
}

/// Where a curve of `(workers, events/s)` points, in ascending worker
/// order, goes flat: the index of the first point after which more workers
/// never gain `threshold` (0.10 for 10%) or more per doubling, measured from
/// that point to each later one.
///
/// Going from `w₁` to `w₂` workers and from `r₁` to `r₂` events/s gains
/// `(r₂ / r₁)^(1 / log₂(w₂ / w₁)) − 1` per doubling, so steps of other sizes
/// than ×2 (15 → 40) compare fairly. Comparing with every later point, not
/// only the next, keeps one slow point (another process took the CPU for a
/// moment) from hiding the bend: a dip after the flat point does not count
/// against it, and a later point well above it does. `None` when no point
/// but the last qualifies (the curve is still climbing), or there are fewer
/// than two points.
pub fn flattening(points: &[(usize, f64)], threshold: f64) -> Option<usize> {
    let gain = |(w1, r1): (usize, f64), (w2, r2): (usize, f64)| {
        let doublings = (w2 as f64 / w1 as f64).log2();
        if doublings <= 0.0 {
            // Not ascending: no comparison.
            return f64::INFINITY;
        }
        if r1 <= 0.0 {
            return if r2 > 0.0 { f64::INFINITY } else { 0.0 };
        }
        (r2 / r1).powf(1.0 / doublings) - 1.0
    };
    (0..points.len().saturating_sub(1)).find(|&i| {
        points[i + 1..]
            .iter()
            .all(|&later| gain(points[i], later) < threshold)
    })
}

impl Sweep {
    /// The `(workers, events/s)` pairs of the points.
    pub fn curve(&self) -> Vec<(usize, f64)> {
        self.points.iter().map(|p| (p.workers, p.rate())).collect()
    }

    /// The point from which the curve is flat (see [`flattening`], with
    /// [`FLAT_GAIN`]).
    pub fn flattening(&self) -> Option<&SweepPoint> {
        flattening(&self.curve(), FLAT_GAIN).map(|i| &self.points[i])
    }

    /// The highest rate of any point.
    pub fn peak(&self) -> Option<&SweepPoint> {
        self.points
            .iter()
            .max_by(|a, b| a.rate().total_cmp(&b.rate()))
    }

    /// One line per point, with a header: `workers, events_per_sec, ...`.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "workers,events_per_sec,events_per_sec_per_worker,ideal_events_per_sec,of_ideal,\
             cores_busy,window_events,window_secs,partner_calls,read,delivered,dropped,\
             dead_lettered,abandoned\n",
        );
        for p in &self.points {
            let ideal = self.options.ideal_rate(p.workers);
            let _ = writeln!(
                s,
                "{},{:.1},{:.1},{:.1},{:.4},{:.3},{},{:.6},{},{},{},{},{},{}",
                p.workers,
                p.rate(),
                p.per_worker(),
                ideal,
                p.rate() / ideal,
                p.cores_busy(),
                p.window_events,
                p.window.as_secs_f64(),
                p.calls,
                p.read,
                p.delivered,
                p.dropped,
                p.dead_lettered,
                p.abandoned
            );
        }
        s
    }

    /// One-line summary of the pipeline, for titles and reports.
    pub fn setup_line(&self) -> String {
        format!(
            "generator → parse ({} workers) → partner call (N workers, {} ms per batch of {} \
             events) → blackhole",
            self.options.cpu_workers,
            fmt_ms(self.options.latency),
            self.options.batch,
        )
    }

    /// The sweep as a markdown section: setup, table, where it flattens.
    pub fn to_markdown(&self) -> String {
        let o = &self.options;
        let m = &self.machine;
        let mut s = String::from("## Worker sweep: more workers, more events per pod\n\n");
        let _ = writeln!(
            s,
            "generator → parse ({} workers) → partner call ({} ms blocking call per batch of {} \
             events, its own pool of N workers) → blackhole; {} s window per point after {} s \
             of warm-up{}.\n",
            o.cpu_workers,
            fmt_ms(o.latency),
            o.batch,
            o.window.as_secs_f64(),
            o.warmup.as_secs_f64(),
            if o.quick {
                " (**quick**: a smoke run, not figures of record)"
            } else {
                ""
            }
        );
        let kernel = m
            .kernel
            .as_deref()
            .map(|k| format!(", Linux {k}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "- Machine: {}, {} logical CPUs{kernel}; {} UTC",
            m.cpu_model, m.cpus, m.date_utc
        );
        if let Some(load) = &m.load_average {
            let _ = writeln!(s, "- Load average at start (1, 5, 15 min): {load}");
        }
        if let Some(c) = &self.command {
            let _ = writeln!(s, "- Command: `{c}`");
        }
        s.push_str(
            "\n| workers | events/s | per worker | ideal (N × batch / latency) | of ideal | cores \
             busy | events in window | partner calls |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let flat = self.flattening().map(|p| p.workers);
        for p in &self.points {
            let ideal = o.ideal_rate(p.workers);
            let mark = if Some(p.workers) == flat { " ◀" } else { "" };
            let _ = writeln!(
                s,
                "| {}{mark} | {} | {} | {} | {:.0}% | {:.2} | {} | {} |",
                p.workers,
                thousands(p.rate().round() as u64),
                thousands(p.per_worker().round() as u64),
                thousands(ideal.round() as u64),
                100.0 * p.rate() / ideal,
                p.cores_busy(),
                thousands(p.window_events),
                thousands(p.calls)
            );
        }
        s.push('\n');
        match (self.flattening(), self.peak()) {
            (Some(f), Some(peak)) => {
                let _ = writeln!(
                    s,
                    "The curve flattens at **{} workers** ({}): no larger worker count delivers \
                     {:.0}% or more per doubling of workers above it (◀). Peak: {} at {} workers, \
                     {:.2} cores busy.",
                    f.workers,
                    format_rate(f.rate()),
                    FLAT_GAIN * 100.0,
                    format_rate(peak.rate()),
                    peak.workers,
                    peak.cores_busy()
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "The curve does not flatten within these worker counts: more workers still \
                     gain {:.0}% or more per doubling at the end.",
                    FLAT_GAIN * 100.0
                );
            }
        }
        s.push_str(
            "\nEvery point balanced: read = delivered, nothing dropped, dead-lettered or \
             abandoned (a point that does not is an error).\n",
        );
        s
    }
}

/// A latency in milliseconds, without trailing zeros: `20`, `0.5`.
/// A duration in milliseconds, without trailing zeros: `20`, `4.1`, `0.25`.
pub fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    let s = format!("{ms:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_finds_the_start_of_the_flat_part() {
        // Doubling gains: 100%, 100%, 5%, 2%.
        let curve = [(1, 10.0), (2, 20.0), (4, 40.0), (8, 42.0), (16, 42.84)];
        assert_eq!(flattening(&curve, 0.10), Some(2));
    }

    #[test]
    fn a_later_climb_moves_the_flat_point() {
        // Flat from 4 to 8, then 50% more at 16: flat only from 16.
        let curve = [
            (1, 10.0),
            (2, 20.0),
            (4, 20.5),
            (8, 21.0),
            (16, 31.5),
            (32, 32.0),
        ];
        assert_eq!(flattening(&curve, 0.10), Some(4));
    }

    #[test]
    fn a_dip_after_the_flat_point_does_not_move_it() {
        // 8 workers had a bad moment; 16 is barely above 4.
        let curve = [(1, 10.0), (2, 20.0), (4, 40.0), (8, 30.0), (16, 41.0)];
        assert_eq!(flattening(&curve, 0.10), Some(2));
    }

    #[test]
    fn flattening_is_none_while_still_climbing() {
        let curve = [(1, 10.0), (2, 11.0), (4, 30.0)];
        assert_eq!(flattening(&curve, 0.10), None);
        assert_eq!(flattening(&[(1, 10.0)], 0.10), None);
        assert_eq!(flattening(&[], 0.10), None);
    }

    #[test]
    fn flattening_compares_steps_per_doubling() {
        // 15 → 40 workers is about 1.4 doublings: +14% in all is under 10%
        // per doubling, +16% per doubling is not.
        let flat = [(1, 1.0), (15, 15.0), (40, 17.1)];
        assert_eq!(flattening(&flat, 0.10), Some(1));
        let climbing = [(1, 1.0), (15, 15.0), (40, 15.0 * 1.16f64.powf(1.415))];
        assert_eq!(flattening(&climbing, 0.10), None);
    }

    #[test]
    fn flattening_of_a_flat_curve_is_its_first_point() {
        let curve = [(1, 10.0), (2, 10.5), (4, 9.0)];
        assert_eq!(flattening(&curve, 0.10), Some(0));
    }

    #[test]
    fn ideal_rate_is_workers_times_batch_over_latency() {
        let o = SweepOptions {
            batch: 50,
            latency: Duration::from_millis(20),
            ..SweepOptions::full()
        };
        assert!((o.ideal_rate(1) - 2_500.0).abs() < 1e-6);
        assert!((o.ideal_rate(40) - 100_000.0).abs() < 1e-6);
    }

    #[test]
    fn bad_options_are_refused() {
        for o in [
            SweepOptions {
                workers: vec![],
                ..SweepOptions::quick()
            },
            SweepOptions {
                workers: vec![0, 2],
                ..SweepOptions::quick()
            },
            SweepOptions {
                workers: vec![MAX_WORKERS + 1],
                ..SweepOptions::quick()
            },
            SweepOptions {
                latency: Duration::ZERO,
                ..SweepOptions::quick()
            },
            SweepOptions {
                batch: 0,
                ..SweepOptions::quick()
            },
        ] {
            assert!(matches!(o.validate(), Err(SweepError::Options(_))), "{o:?}");
        }
        assert!(SweepOptions::full().validate().is_ok());
    }

    #[test]
    fn budget_leaves_room_for_every_worker() {
        let o = SweepOptions::full();
        let s = o.settings(200);
        // Running, queued (2 per worker) and at the sink: at least 3 batches
        // per worker must fit, or the budget rather than the pool bounds the
        // curve.
        assert!(s.budget.max_events >= 200 * o.batch * 3);
        assert!(s.budget.max_per_partition >= s.budget.max_events);
        assert_eq!(s.batch.max_events, o.batch);
        assert_eq!(s.workers, o.cpu_workers);
    }

    #[test]
    fn a_point_accounts_for_every_event() {
        let o = SweepOptions {
            workers: vec![2],
            latency: Duration::from_millis(1),
            batch: 10,
            warmup: Duration::ZERO,
            window: Duration::from_millis(50),
            ..SweepOptions::quick()
        };
        let p = run_point(&o, 2).expect("a clean point");
        assert!(p.balances(), "{p:?}");
        assert_eq!(p.read, p.delivered);
        assert!(p.window_events > 0, "{p:?}");
        // Offsets start at 0 and every event read reached the partner stage:
        // one call per started group of `batch` offsets.
        assert_eq!(p.calls, p.read.div_ceil(o.batch as u64), "{p:?}");
    }

    #[test]
    fn csv_has_one_row_per_point() {
        let point = SweepPoint {
            workers: 4,
            window_events: 1_000,
            window: Duration::from_millis(500),
            window_cpu: Duration::from_millis(250),
            calls: 30,
            read: 1_500,
            delivered: 1_500,
            dropped: 0,
            dead_lettered: 0,
            abandoned: 0,
            elapsed: Duration::from_secs(1),
        };
        let sweep = Sweep {
            options: SweepOptions::quick(),
            machine: Machine::detect(),
            command: None,
            points: vec![point],
        };
        let csv = sweep.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        let header: Vec<&str> = lines[0].split(',').collect();
        let row: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(header.len(), row.len());
        assert_eq!(row[0], "4");
        assert_eq!(row[1], "2000.0");
        assert_eq!(row[5], "0.500");
    }

    #[test]
    fn milliseconds_without_trailing_zeros() {
        assert_eq!(fmt_ms(Duration::from_millis(20)), "20");
        assert_eq!(fmt_ms(Duration::from_micros(500)), "0.5");
    }
}
