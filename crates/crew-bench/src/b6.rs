//! B6: queue wait under a steady load of 80% of the measured capacity.
//!
//! B3-style jobs (a 1 ms sleep each, 1,000 workers) are offered for a set
//! time (60 s by default) at `load` (0.8) × the capacity crew showed in the
//! same run's B3-async (for `AsyncPool`) or B3 (for the thread `Pool`); a
//! run without those workloads measures the capacity first, the same way.
//! The producer is paced by a token bucket refilled every millisecond (a
//! `tokio::time::interval` for `AsyncPool`, a 1 ms thread sleep between
//! refills for `Pool`), not by one sleep per job: each tick it submits the
//! jobs due since the start (rate × elapsed − submitted), so a late tick
//! is made up at the next. It offers with `try_submit` and, should the
//! queue be full, waits in `submit` (the report counts those waits). The
//! figures are crew's own `stats().queue_wait` (time from submit to start;
//! a bucket's upper bound, at most 12.5% above the true value) and the
//! offered rate the producer achieved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crew::SubmitError;
use tokio::time::MissedTickBehavior;

use crate::measure::{self, format_duration, format_rate, isolated, Progress, ThroughputTable};
use crate::peers::{Impl, QUEUE_CAPACITY};
use crate::{async_peers, b3, b3_async, SuiteOptions, Workload};

/// How often the producer's token bucket is refilled.
pub const TICK: Duration = Duration::from_millis(1);

/// Queue-wait figures from a pool's `stats().queue_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueWait {
    /// Jobs recorded.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Longest.
    pub max: Duration,
    /// Mean.
    pub mean: Duration,
}

impl QueueWait {
    /// The figures of `h`.
    pub fn of(h: &crew::Histogram) -> Self {
        QueueWait {
            count: h.count(),
            p50: h.p50(),
            p99: h.p99(),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// What one B6 run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offered {
    /// How long the producer offered jobs.
    pub offered_for: Duration,
    /// Jobs submitted.
    pub submitted: u64,
    /// Jobs that ran (counted by the jobs themselves).
    pub completed: u64,
    /// Submits that found the queue full and had to wait for room.
    pub producer_waits: u64,
    /// The pool's queue-wait histogram at the end.
    pub queue_wait: QueueWait,
}

impl Offered {
    /// Jobs offered per second.
    pub fn rate(&self) -> f64 {
        measure::rate(self.submitted, self.offered_for)
    }
}

/// B6 for one pool.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    /// [`Impl::AsyncCrew`] or [`Impl::Crew`].
    pub implementation: Impl,
    /// Workers in the pool.
    pub workers: usize,
    /// How long each job sleeps.
    pub sleep: Duration,
    /// The capacity (jobs/s) the offered rate derives from.
    pub capacity: Option<f64>,
    /// Where [`capacity`](Self::capacity) comes from.
    pub capacity_source: String,
    /// The rate the producer aimed at: load × capacity.
    pub target_rate: Option<f64>,
    /// The run's figures, if it succeeded.
    pub offered: Option<Offered>,
    /// Why the row failed.
    pub error: Option<String>,
}

/// The B6 results: one row per pool.
#[derive(Debug, Clone)]
pub struct LatencyTable {
    /// The offered rate as a fraction of the capacity.
    pub load: f64,
    /// How long jobs were offered to each pool.
    pub duration: Duration,
    /// `AsyncPool` first, then (if measured) `Pool`.
    pub rows: Vec<LatencyRow>,
}

impl LatencyTable {
    /// The row of `imp`, if it was measured.
    pub fn row(&self, imp: Impl) -> Option<&LatencyRow> {
        self.rows.iter().find(|r| r.implementation == imp)
    }
}

/// The same run's capacity figures B6 derives its rates from, if measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capacities<'a> {
    /// This run's B3-async table (its `crew-async` row).
    pub async_pool: Option<&'a ThroughputTable>,
    /// This run's B3 table (its `crew` row).
    pub thread_pool: Option<&'a ThroughputTable>,
}

/// Runs B6 on `AsyncPool` and (with `opts.b6_thread_pool`) on `Pool`.
pub fn run(
    opts: &SuiteOptions,
    capacities: Capacities<'_>,
    progress: &mut dyn FnMut(&Progress),
) -> LatencyTable {
    let mut rows = Vec::new();
    let (capacity, source) = capacity_of(
        capacities.async_pool,
        Impl::AsyncCrew,
        "B3-async",
        opts,
        progress,
        |opts, progress| {
            let sleep = opts.b3_async_sleep;
            measure::async_throughput(
                Workload::B6,
                &[(Impl::AsyncCrew, opts.b3_async_jobs)],
                opts.b3_async_workers,
                opts.b3_async_jobs,
                opts,
                progress,
                move |c: &Arc<AtomicU64>, _i| b3_async::job(c, sleep),
            )
        },
    );
    rows.push(offer(
        opts,
        Impl::AsyncCrew,
        opts.b3_async_workers,
        opts.b3_async_sleep,
        capacity,
        source,
        progress,
    ));
    if opts.b6_thread_pool {
        let (capacity, source) = capacity_of(
            capacities.thread_pool,
            Impl::Crew,
            "B3",
            opts,
            progress,
            |opts, progress| {
                let sleep = opts.b3_sleep;
                measure::throughput(
                    Workload::B6,
                    &[(Impl::Crew, opts.b3_jobs)],
                    opts.b3_workers,
                    opts.b3_jobs,
                    opts,
                    progress,
                    move |c: &Arc<AtomicU64>, _i| b3::job(c, sleep),
                )
            },
        );
        rows.push(offer(
            opts,
            Impl::Crew,
            opts.b3_workers,
            opts.b3_sleep,
            capacity,
            source,
            progress,
        ));
    }
    LatencyTable {
        load: opts.b6_load,
        duration: opts.b6_duration,
        rows,
    }
}

/// `imp`'s rate in `table` (this run's B3 or B3-async), or else the rate of
/// a measurement made now with `measure`; and where it came from (or why
/// there is none).
fn capacity_of(
    table: Option<&ThroughputTable>,
    imp: Impl,
    workload: &str,
    opts: &SuiteOptions,
    progress: &mut dyn FnMut(&Progress),
    measure: impl FnOnce(&SuiteOptions, &mut dyn FnMut(&Progress)) -> ThroughputTable,
) -> (Result<f64, String>, String) {
    let stat = format!("{} of {}", opts.statistic.name(), opts.repeat.max(1));
    if let Some(rate) = table.and_then(|t| t.row(imp)).and_then(|r| r.rate()) {
        return (Ok(rate), format!("{workload} in this run, {stat}"));
    }
    let source = format!("{workload} jobs measured for B6, {stat}");
    let measured = measure(opts, progress);
    let capacity = match measured.row(imp) {
        Some(row) => row.rate().ok_or_else(|| {
            format!(
                "measuring the capacity failed: {}",
                row.error.as_deref().unwrap_or("no run")
            )
        }),
        None => Err("capacity not measured".into()),
    };
    (capacity, source)
}

fn offer(
    opts: &SuiteOptions,
    imp: Impl,
    workers: usize,
    sleep: Duration,
    capacity: Result<f64, String>,
    capacity_source: String,
    progress: &mut dyn FnMut(&Progress),
) -> LatencyRow {
    let mut row = LatencyRow {
        implementation: imp,
        workers,
        sleep,
        capacity: capacity.as_ref().ok().copied(),
        capacity_source,
        target_rate: None,
        offered: None,
        error: None,
    };
    let capacity = match capacity {
        Ok(c) => c,
        Err(e) => {
            row.error = Some(e);
            return row;
        }
    };
    let rate = capacity * opts.b6_load;
    row.target_rate = Some(rate);
    let duration = opts.b6_duration;
    let cell = format!(
        "{}, {workers} workers, {} offered for {:.1} s",
        imp.name(),
        format_rate(rate),
        duration.as_secs_f64()
    );
    progress(&Progress::Started {
        workload: Workload::B6,
        cell: cell.clone(),
        run: 1,
        of: 1,
    });
    let timeout = duration + opts.cell_timeout;
    let result = if imp == Impl::Crew {
        offer_thread(workers, sleep, rate, duration, timeout)
    } else {
        offer_async(
            opts.runtime_threads,
            workers,
            sleep,
            rate,
            duration,
            timeout,
        )
    }
    .and_then(|o| {
        if o.completed == o.submitted {
            Ok(o)
        } else {
            Err(format!("only {} of {} jobs ran", o.completed, o.submitted))
        }
    });
    let outcome = match &result {
        Ok(o) => format!(
            "offered {}; queue wait p50 {}, p99 {}, max {}",
            format_rate(o.rate()),
            format_duration(o.queue_wait.p50),
            format_duration(o.queue_wait.p99),
            format_duration(o.queue_wait.max)
        ),
        Err(e) => format!("FAILED: {e}"),
    };
    match result {
        Ok(o) => row.offered = Some(o),
        Err(e) => row.error = Some(e),
    }
    progress(&Progress::Finished {
        workload: Workload::B6,
        cell,
        run: 1,
        of: 1,
        outcome,
    });
    row
}

/// Jobs due by `elapsed` at `rate` jobs/s.
fn due(rate: f64, elapsed: Duration) -> u64 {
    (rate * elapsed.as_secs_f64()) as u64
}

/// Offers B3-async jobs to an `AsyncPool` of `workers` tasks at `rate` for
/// `duration`, from a producer task on a fresh runtime.
pub fn offer_async(
    threads: usize,
    workers: usize,
    sleep: Duration,
    rate: f64,
    duration: Duration,
    timeout: Duration,
) -> Result<Offered, String> {
    isolated(timeout, move || {
        let rt = async_peers::runtime(threads)?;
        let counter = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&counter);
        let producer = async move {
            let pool = crew::AsyncPool::builder()
                .workers(workers)
                .queue_capacity(QUEUE_CAPACITY)
                .build();
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let (mut submitted, mut producer_waits) = (0u64, 0u64);
            let start = Instant::now();
            loop {
                tick.tick().await;
                let elapsed = start.elapsed();
                if elapsed >= duration {
                    break;
                }
                while submitted < due(rate, elapsed) {
                    match pool.try_submit(b3_async::job(&c, sleep)) {
                        Ok(()) => {}
                        Err(SubmitError::Full(job)) => {
                            producer_waits += 1;
                            if let Err(e) = pool.submit(job).await {
                                return Err(format!("crew refused a job: {e}"));
                            }
                        }
                        Err(e) => return Err(format!("crew refused a job: {e}")),
                    }
                    submitted += 1;
                }
            }
            let offered_for = start.elapsed();
            pool.wait_idle().await;
            let stats = pool.stats();
            pool.shutdown().await;
            Ok((offered_for, submitted, producer_waits, stats))
        };
        let (offered_for, submitted, producer_waits, stats) = rt.block_on(async move {
            tokio::spawn(producer)
                .await
                .map_err(|e| format!("producer task: {e}"))?
        })?;
        drop(rt);
        Ok(Offered {
            offered_for,
            submitted,
            completed: counter.load(Ordering::SeqCst),
            producer_waits,
            queue_wait: QueueWait::of(&stats.queue_wait),
        })
    })
}

/// Offers B3 jobs (thread sleeps) to a thread `Pool` of `workers` threads at
/// `rate` for `duration`, from a producer thread.
pub fn offer_thread(
    workers: usize,
    sleep: Duration,
    rate: f64,
    duration: Duration,
    timeout: Duration,
) -> Result<Offered, String> {
    isolated(timeout, move || {
        let pool = crew::Pool::builder()
            .workers(workers)
            .queue_capacity(QUEUE_CAPACITY)
            .build();
        let counter = Arc::new(AtomicU64::new(0));
        let (mut submitted, mut producer_waits) = (0u64, 0u64);
        let start = Instant::now();
        loop {
            let elapsed = start.elapsed();
            if elapsed >= duration {
                break;
            }
            while submitted < due(rate, elapsed) {
                match pool.try_submit(b3::job(&counter, sleep)) {
                    Ok(()) => {}
                    Err(SubmitError::Full(job)) => {
                        producer_waits += 1;
                        pool.submit(job)
                            .map_err(|e| format!("crew refused a job: {e}"))?;
                    }
                    Err(e) => return Err(format!("crew refused a job: {e}")),
                }
                submitted += 1;
            }
            thread::sleep(TICK);
        }
        let offered_for = start.elapsed();
        pool.wait_idle();
        let stats = pool.stats();
        pool.shutdown();
        Ok(Offered {
            offered_for,
            submitted,
            completed: counter.load(Ordering::SeqCst),
            producer_waits,
            queue_wait: QueueWait::of(&stats.queue_wait),
        })
    })
}
