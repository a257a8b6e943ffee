//! `AsyncPool` stress: many producer tasks, resizes and pauses racing the
//! submissions, a shutdown of a random kind at a random moment, and a
//! producer outrunning slow workers. Whatever the interleaving, every
//! accepted job runs exactly once or is reported as not run, nothing runs
//! twice, and no more jobs are alive than the pool's bound allows. Bounded
//! by iteration counts, not time. Every test runs on the current-thread and
//! the multi-thread runtime.
//!
//! Set `CREW_TEST_SEED` to replay a failing run (each test prints its seed).

mod common;
#[macro_use]
#[path = "common/rt.rs"]
mod rt;

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use crew::{AsyncPool, JobError, JobHandle, ShutdownReport, Stats, SubmitError};
use rt::{eventually, LiveCount};
use tokio::sync::Notify;

fn outcomes(stats: &Stats) -> u64 {
    stats.completed
        + stats.failed
        + stats.panicked
        + stats.expired
        + stats.cancelled
        + stats.abandoned
}

/// One run counter per job id.
fn run_counters(total: usize) -> Arc<Vec<AtomicU32>> {
    Arc::new((0..total).map(|_| AtomicU32::new(0)).collect())
}

/// A job that counts its run as its very last step (so a job dropped part
/// way never counts), after yielding a few times so that jobs interleave.
fn counted(runs: &Arc<Vec<AtomicU32>>, id: usize) -> impl Future<Output = usize> + Send + 'static {
    let runs = runs.clone();
    async move {
        for _ in 0..id % 3 {
            tokio::task::yield_now().await;
        }
        runs[id].fetch_add(1, Ordering::SeqCst);
        id
    }
}

/// [`counted`] as a fire-and-forget job.
fn detached(runs: &Arc<Vec<AtomicU32>>, id: usize) -> impl Future<Output = ()> + Send + 'static {
    let job = counted(runs, id);
    async move {
        job.await;
    }
}

/// Submits job `id` through one of the entry points picked by `rng`,
/// waiting for room when refused for a full queue. Returns its handle if
/// it was spawned.
async fn submit_somehow(
    pool: &AsyncPool,
    runs: &Arc<Vec<AtomicU32>>,
    id: usize,
    rng: &mut Rng,
    refusals: &AtomicUsize,
) -> Option<JobHandle<usize>> {
    let key = id % 7;
    match rng.below(6) {
        0 => pool.submit(detached(runs, id)).await.unwrap(),
        1 => pool.submit_keyed(&key, detached(runs, id)).await.unwrap(),
        2 => {
            if let Err(err) = pool.try_submit(detached(runs, id)) {
                assert!(matches!(err, SubmitError::Full(_)), "{err:?}");
                refusals.fetch_add(1, Ordering::SeqCst);
                // The job came back: submit it again, waiting this time.
                pool.submit(err.into_inner()).await.unwrap();
            }
        }
        3 => {
            let timeout = Duration::from_micros(rng.below(200));
            if let Err(err) = pool.submit_timeout(detached(runs, id), timeout).await {
                assert!(matches!(err, SubmitError::Timeout(_)), "{err:?}");
                refusals.fetch_add(1, Ordering::SeqCst);
                pool.submit(err.into_inner()).await.unwrap();
            }
        }
        4 => return Some(pool.spawn(counted(runs, id)).await.unwrap()),
        _ => return Some(pool.spawn_keyed(&key, counted(runs, id)).await.unwrap()),
    }
    None
}

/// Checks that every job ran exactly once.
fn assert_each_ran_once(runs: &[AtomicU32]) {
    let wrong: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(id, n)| (id, n.load(Ordering::SeqCst)))
        .filter(|&(_, n)| n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "(job, runs) not run exactly once: {wrong:?}"
    );
}

on_both_runtimes!(many_producer_tasks_every_job_runs_exactly_once);
async fn many_producer_tasks_every_job_runs_exactly_once() {
    const PRODUCERS: usize = 8;
    const PER_PRODUCER: usize = 250;
    const TOTAL: usize = PRODUCERS * PER_PRODUCER;
    let seed = common::seed("many_producer_tasks_every_job_runs_exactly_once");
    let pool = AsyncPool::builder().workers(4).queue_capacity(16).build();
    let runs = run_counters(TOTAL);
    let refusals = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (pool, runs, refusals) = (pool.clone(), runs.clone(), refusals.clone());
        let mut rng = Rng::new(seed ^ ((p as u64 + 1) * 0x1000_0001));
        producers.push(tokio::spawn(async move {
            let mut handles = Vec::new();
            for n in 0..PER_PRODUCER {
                let id = p * PER_PRODUCER + n;
                if let Some(handle) = submit_somehow(&pool, &runs, id, &mut rng, &refusals).await {
                    handles.push((id, handle));
                }
            }
            handles
        }));
    }
    for producer in producers {
        for (id, handle) in producer.await.unwrap() {
            assert_eq!(handle.await, Ok(id));
        }
    }
    let report = pool.shutdown().await;
    assert_eq!((report.abandoned, report.cancelled), (0, 0), "{report}");
    assert_each_ran_once(&runs);
    let stats = pool.stats();
    assert_eq!(stats.submitted, TOTAL as u64, "seed {seed}: {stats:?}");
    assert_eq!(stats.completed, TOTAL as u64, "seed {seed}: {stats:?}");
    assert_eq!(stats.rejected, refusals.load(Ordering::SeqCst) as u64);
    assert_eq!((stats.queued, stats.lanes, stats.workers), (0, 0, 0));
}

on_both_runtimes!(resizes_and_pauses_racing_submits_lose_nothing_and_run_nothing_twice);
async fn resizes_and_pauses_racing_submits_lose_nothing_and_run_nothing_twice() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 300;
    const TOTAL: usize = PRODUCERS * PER_PRODUCER;
    const MAX_WORKERS: u64 = 6;
    let seed = common::seed("resizes_and_pauses_racing_submits");
    let pool = AsyncPool::builder().workers(2).queue_capacity(8).build();
    let runs = run_counters(TOTAL);
    let refusals = Arc::new(AtomicUsize::new(0));
    // Jobs running at once, and the most ever: never above the largest
    // size the pool was given.
    let running = LiveCount::new();
    let done = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (pool, runs, refusals, running, done) = (
            pool.clone(),
            runs.clone(),
            refusals.clone(),
            running.clone(),
            done.clone(),
        );
        let mut rng = Rng::new(seed ^ ((p as u64 + 1) * 0x1000_0001));
        producers.push(tokio::spawn(async move {
            for n in 0..PER_PRODUCER {
                let id = p * PER_PRODUCER + n;
                let job = counted(&runs, id);
                let running = running.clone();
                let job = async move {
                    let _running = running.enter();
                    job.await;
                };
                if rng.chance(2) {
                    pool.submit(job).await.unwrap();
                } else if let Err(err) = pool.try_submit(job) {
                    refusals.fetch_add(1, Ordering::SeqCst);
                    pool.submit(err.into_inner()).await.unwrap();
                }
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let flipper = {
        let (pool, done) = (pool.clone(), done.clone());
        let mut rng = Rng::new(seed ^ 0xF11F);
        tokio::spawn(async move {
            let mut flips = 0u32;
            while done.load(Ordering::SeqCst) < PRODUCERS {
                match rng.below(4) {
                    0 => pool.pause(),
                    1 => pool.resume(),
                    _ => pool.resize(rng.below(MAX_WORKERS) as usize + 1),
                }
                flips += 1;
                tokio::task::yield_now().await;
            }
            // Never leave the pool paused or shrunk for the drain.
            pool.resume();
            flips
        })
    };
    for producer in producers {
        producer.await.unwrap();
    }
    let flips = flipper.await.unwrap();
    pool.wait_idle().await;
    assert_each_ran_once(&runs);
    assert!(
        running.max() <= MAX_WORKERS as usize,
        "seed {seed}: {} jobs ran at once, the pool never had more than {MAX_WORKERS} workers",
        running.max()
    );
    let report = pool.shutdown().await;
    assert_eq!((report.abandoned, report.cancelled), (0, 0), "{report}");
    let stats = pool.stats();
    let context = format!("seed {seed}, {flips} flips: {stats:?}");
    assert_eq!(stats.submitted, TOTAL as u64, "{context}");
    assert_eq!(stats.completed, TOTAL as u64, "{context}");
    assert_eq!(
        stats.rejected,
        refusals.load(Ordering::SeqCst) as u64,
        "{context}"
    );
    assert_eq!((stats.queued, stats.workers), (0, 0), "{context}");
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Drain,
    Now,
    Timeout(Duration),
}

impl Stop {
    /// A drain, or one of the two stops that give up on jobs.
    fn pick(rng: &mut Rng, hard: bool) -> Stop {
        match (hard, rng.chance(2)) {
            (false, _) => Stop::Drain,
            (true, true) => Stop::Now,
            (true, false) => Stop::Timeout(Duration::from_micros(rng.below(2_000))),
        }
    }

    async fn apply(self, pool: &AsyncPool) -> ShutdownReport {
        match self {
            Stop::Drain => pool.shutdown().await,
            Stop::Now => pool.shutdown_now(),
            Stop::Timeout(timeout) => pool.shutdown_timeout(timeout).await,
        }
    }
}

/// What one producer got accepted and refused.
#[derive(Default)]
struct Produced {
    detached: Vec<usize>,
    spawned: Vec<(usize, JobHandle<usize>)>,
    /// Refused, the job given back (and dropped here, unrun).
    refused: Vec<usize>,
}

/// One round: producers submit while a shutdown (a drain, or if `hard` a
/// `shutdown_now` or a short `shutdown_timeout`) lands after a random number
/// of attempts; then the books must balance.
async fn shutdown_racing_submits(seed: u64, hard: bool) {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 60;
    const TOTAL: usize = PRODUCERS * PER_PRODUCER;
    let mut rng = Rng::new(seed);
    let workers = rng.below(4) as usize + 1;
    let capacity = [1, 2, 8, 64][rng.below(4) as usize];
    let stop = Stop::pick(&mut rng, hard);
    let stop_after = rng.below(TOTAL as u64 + 1) as usize;
    let context =
        format!("seed {seed}: {workers} workers, capacity {capacity}, {stop:?} after {stop_after}");
    // Printed only on failure (or with --nocapture): the round a hang was in.
    eprintln!("{context}");
    let pool = AsyncPool::builder()
        .workers(workers)
        .queue_capacity(capacity)
        .build();
    let runs = run_counters(TOTAL);
    let attempts = Arc::new(AtomicUsize::new(0));
    let time_to_stop = Arc::new(Notify::new());

    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (pool, runs, attempts, time_to_stop) = (
            pool.clone(),
            runs.clone(),
            attempts.clone(),
            time_to_stop.clone(),
        );
        let mut rng = Rng::new(seed ^ ((p as u64 + 1) * 0x1000_0001));
        producers.push(tokio::spawn(async move {
            let mut produced = Produced::default();
            for n in 0..PER_PRODUCER {
                let id = p * PER_PRODUCER + n;
                let key = id % 5;
                match rng.below(5) {
                    0 => match pool.submit(detached(&runs, id)).await {
                        Ok(()) => produced.detached.push(id),
                        Err(err) => {
                            assert!(err.is_closed(), "submit refused an open pool");
                            produced.refused.push(id);
                        }
                    },
                    1 => match pool.try_submit(detached(&runs, id)) {
                        Ok(()) => produced.detached.push(id),
                        Err(_) => produced.refused.push(id),
                    },
                    2 => match pool.submit_keyed(&key, detached(&runs, id)).await {
                        Ok(()) => produced.detached.push(id),
                        Err(err) => {
                            assert!(err.is_closed(), "submit_keyed refused an open pool");
                            produced.refused.push(id);
                        }
                    },
                    3 => match pool.spawn(counted(&runs, id)).await {
                        Ok(handle) => produced.spawned.push((id, handle)),
                        Err(err) => {
                            assert!(err.is_closed(), "spawn refused an open pool");
                            produced.refused.push(id);
                        }
                    },
                    _ => match pool.spawn_keyed(&key, counted(&runs, id)).await {
                        Ok(handle) => produced.spawned.push((id, handle)),
                        Err(err) => {
                            assert!(err.is_closed(), "spawn_keyed refused an open pool");
                            produced.refused.push(id);
                        }
                    },
                }
                if attempts.fetch_add(1, Ordering::SeqCst) + 1 == stop_after {
                    time_to_stop.notify_one();
                }
            }
            produced
        }));
    }
    let stopper = {
        let pool = pool.clone();
        tokio::spawn(async move {
            if stop_after > 0 {
                // A permit is stored if the producers get there first.
                time_to_stop.notified().await;
            }
            stop.apply(&pool).await
        })
    };

    let mut produced = Vec::new();
    for producer in producers {
        produced.push(producer.await.unwrap());
    }
    let report = stopper.await.unwrap();
    // After a hard stop the aborted workers go when the runtime drops them.
    eventually("every worker exits", || pool.stats().workers == 0).await;
    // With no worker left, a job still queued would never end (and awaiting
    // its handle below would hang): fail here, with the books.
    assert_eq!(
        pool.stats().queued,
        0,
        "{context}: a job is stranded in the queue: {:?}",
        pool.stats()
    );

    let run_count = |id: usize| runs[id].load(Ordering::SeqCst);
    let doubles: Vec<_> = (0..TOTAL).filter(|&id| run_count(id) > 1).collect();
    assert!(
        doubles.is_empty(),
        "{context}: jobs ran more than once: {doubles:?}"
    );
    let drain = matches!(stop, Stop::Drain);
    let (mut accepted, mut ran, mut refused) = (0u64, 0u64, 0u64);
    for produced in produced {
        for id in produced.refused {
            refused += 1;
            assert_eq!(run_count(id), 0, "{context}: refused job {id} ran");
        }
        for id in produced.detached {
            accepted += 1;
            ran += u64::from(run_count(id));
            if drain {
                assert_eq!(
                    run_count(id),
                    1,
                    "{context}: job {id} accepted, not run by a drain"
                );
            }
        }
        for (id, handle) in produced.spawned {
            accepted += 1;
            match handle.await {
                Ok(value) => {
                    assert_eq!(value, id);
                    assert_eq!(run_count(id), 1, "{context}: job {id} Ok but never ran");
                    ran += 1;
                }
                // Dropped unrun from the queue, or dropped part way by a
                // hard stop: either way its run never counted.
                Err(JobError::Abandoned | JobError::Cancelled) if !drain => {
                    assert_eq!(run_count(id), 0, "{context}: job {id} stopped, yet it ran");
                }
                Err(other) => panic!("{context}: job {id}: unexpected {other:?}"),
            }
        }
    }
    let stats = pool.stats();
    let context = format!("{context}; report {report}; {stats:?}");
    assert_eq!(stats.submitted, accepted, "{context}");
    assert_eq!(stats.rejected, refused, "{context}");
    assert_eq!(stats.completed, ran, "{context}");
    assert_eq!(
        stats.submitted,
        outcomes(&stats),
        "every accepted job ends in exactly one counter: {context}"
    );
    assert_eq!(stats.queued, 0, "{context}");
    if drain {
        assert_eq!((report.abandoned, report.cancelled), (0, 0), "{context}");
        assert_eq!(
            (stats.abandoned, stats.cancelled, stats.lanes),
            (0, 0, 0),
            "{context}"
        );
    }
    assert!(report.abandoned <= stats.abandoned, "{context}");
}

on_both_runtimes!(a_drain_racing_submits_loses_nothing_and_runs_nothing_twice);
async fn a_drain_racing_submits_loses_nothing_and_runs_nothing_twice() {
    let seed = common::seed("a_drain_racing_submits_loses_nothing_and_runs_nothing_twice");
    let mut rng = Rng::new(seed);
    for _ in 0..100 {
        shutdown_racing_submits(rng.next_u64(), false).await;
    }
}

on_both_runtimes!(a_hard_stop_racing_submits_loses_nothing_and_runs_nothing_twice);
async fn a_hard_stop_racing_submits_loses_nothing_and_runs_nothing_twice() {
    let seed = common::seed("a_hard_stop_racing_submits_loses_nothing_and_runs_nothing_twice");
    let mut rng = Rng::new(seed);
    for _ in 0..100 {
        shutdown_racing_submits(rng.next_u64(), true).await;
    }
}

/// A producer (or several) submitting as fast as it can to workers that
/// yield a while in every job. A job is alive from the moment its producer
/// creates it until its future is dropped (finished, or dropped unrun).
async fn producers_outrunning_workers(producers: usize) -> (LiveCount, usize) {
    const WORKERS: usize = 3;
    const CAPACITY: usize = 5;
    const PER_PRODUCER: usize = 300;
    let pool = AsyncPool::builder()
        .workers(WORKERS)
        .queue_capacity(CAPACITY)
        .build();
    let live = LiveCount::new();
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (pool, live) = (pool.clone(), live.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_PRODUCER {
                let alive = live.enter();
                pool.submit(async move {
                    let _alive = alive;
                    // Slow workers: the workload of the job.
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .unwrap();
                if producers == 1 {
                    // Right after an accepted submit the lone producer holds
                    // no job: everything alive is running or queued.
                    let now = live.now();
                    assert!(
                        now <= WORKERS + CAPACITY,
                        "{now} jobs alive with {WORKERS} workers and room for {CAPACITY}"
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    pool.shutdown().await;
    assert_eq!(live.now(), 0, "a job future was leaked");
    assert_eq!(pool.stats().completed, (producers * PER_PRODUCER) as u64);
    (live, WORKERS + CAPACITY)
}

on_both_runtimes!(a_producer_outrunning_slow_workers_never_has_more_jobs_alive_than_the_bound);
async fn a_producer_outrunning_slow_workers_never_has_more_jobs_alive_than_the_bound() {
    let (live, bound) = producers_outrunning_workers(1).await;
    // Each job is counted from its creation, one before its submit.
    assert!(
        live.max() <= bound + 1,
        "{} jobs alive at once, bound {bound}",
        live.max()
    );
    if rt::flavor() == rt::Flavor::CurrentThread {
        // Deterministic here: the producer fills the queue before any
        // worker gets a turn. Proves the bound was actually tested.
        assert!(
            live.max() > bound / 2,
            "the queue never filled: max {}",
            live.max()
        );
    }
}

on_both_runtimes!(many_producers_outrunning_slow_workers_never_have_more_jobs_alive_than_the_bound);
async fn many_producers_outrunning_slow_workers_never_have_more_jobs_alive_than_the_bound() {
    const PRODUCERS: usize = 4;
    let (live, bound) = producers_outrunning_workers(PRODUCERS).await;
    // Each producer may hold one job it has not submitted yet.
    assert!(
        live.max() <= bound + PRODUCERS,
        "{} jobs alive at once, bound {bound} + {PRODUCERS} in producers' hands",
        live.max()
    );
}

on_both_runtimes!(a_submit_racing_shutdown_now_is_never_stranded_in_the_queue);
async fn a_submit_racing_shutdown_now_is_never_stranded_in_the_queue() {
    // Only the multi-thread runtime can interleave the producer with the
    // shutdown; on the current-thread one this always passes.
    for round in 0..2_000 {
        let pool = AsyncPool::builder().workers(1).unbounded().build();
        let producer = {
            let pool = pool.clone();
            tokio::spawn(async move {
                while pool.submit(async {}).await.is_ok() {
                    // An unbounded queue never makes submit wait: give the
                    // current-thread runtime back now and then.
                    tokio::task::coop::consume_budget().await;
                }
            })
        };
        tokio::task::yield_now().await;
        pool.shutdown_now();
        producer.await.unwrap();
        eventually("every worker exits", || pool.stats().workers == 0).await;
        let stats = pool.stats();
        assert_eq!(
            (stats.queued, stats.submitted),
            (0, outcomes(&stats)),
            "round {round}: a job accepted during shutdown_now was stranded: {stats:?}"
        );
    }
}
