//! Stress: many producers, a thread flipping pause/resume and resize, and a
//! shutdown of a random kind at a random moment. Whatever the interleaving,
//! every accepted job either ran exactly once or is reported abandoned, and
//! nothing vanishes. Bounded by iteration counts, not time.
//!
//! Set `CREW_TEST_SEED` to replay a failing run (each test prints its seed).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{guard_probed, Probe, Rng, GUARD};
use crew::{JobError, JobHandle, Pool, ShutdownReport, Stats, SubmitError};

const PRODUCERS: usize = 8;
const PER_PRODUCER: usize = 150;
const TOTAL: usize = PRODUCERS * PER_PRODUCER;

fn outcomes(stats: &Stats) -> u64 {
    stats.completed
        + stats.failed
        + stats.panicked
        + stats.expired
        + stats.cancelled
        + stats.abandoned
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Drain,
    Now,
    Timeout(Duration),
}

impl Stop {
    fn pick(rng: &mut Rng) -> Stop {
        match rng.below(3) {
            0 => Stop::Drain,
            1 => Stop::Now,
            _ => Stop::Timeout(Duration::from_micros(rng.below(2_000))),
        }
    }

    fn apply(self, pool: &Pool) -> ShutdownReport {
        match self {
            Stop::Drain => pool.shutdown(),
            Stop::Now => pool.shutdown_now(),
            Stop::Timeout(timeout) => pool.shutdown_timeout(timeout),
        }
    }
}

/// What one producer got accepted and refused.
#[derive(Default)]
struct Produced {
    /// Fire-and-forget jobs accepted.
    detached: Vec<usize>,
    /// Spawned jobs accepted, with their handles.
    spawned: Vec<(usize, JobHandle<usize>)>,
    /// Jobs refused (they came back in the error).
    refused: Vec<usize>,
}

/// Records one refusal: the job must come back, and must not have run.
fn refused<F>(produced: &mut Produced, id: usize, err: SubmitError<F>) {
    let job = err.into_inner();
    drop(job);
    produced.refused.push(id);
}

/// One run: producers, a flipper, a shutdown at a random point; then checks
/// the books. Returns a short description for the log.
fn producers_flipper_and_shutdown(seed: u64, probe: &Probe) -> String {
    let mut rng = Rng::new(seed);
    let workers = rng.below(8) as usize + 1;
    let capacity = [1, 3, 16, 64, 1024][rng.below(5) as usize];
    let stop = Stop::pick(&mut rng);
    let stop_after = rng.below(TOTAL as u64 + 1) as usize;
    let pool = Pool::builder()
        .workers(workers)
        .queue_capacity(capacity)
        .build();
    probe.watch(
        &pool,
        format!("seed {seed}: {workers} workers, capacity {capacity}, {stop:?} after {stop_after}"),
    );
    let runs: Arc<Vec<AtomicU32>> = Arc::new((0..TOTAL).map(|_| AtomicU32::new(0)).collect());
    let attempts = Arc::new(AtomicUsize::new(0));
    let producers_done = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(PRODUCERS + 2));

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (pool, runs, attempts, producers_done, start) = (
                pool.clone(),
                runs.clone(),
                attempts.clone(),
                producers_done.clone(),
                start.clone(),
            );
            let mut rng = Rng::new(seed ^ ((p as u64 + 1) * 0x1000_0001));
            thread::spawn(move || {
                let mut produced = Produced::default();
                start.wait();
                for n in 0..PER_PRODUCER {
                    let id = p * PER_PRODUCER + n;
                    let job = {
                        let runs = runs.clone();
                        move || {
                            runs[id].fetch_add(1, Ordering::SeqCst);
                        }
                    };
                    let value_job = {
                        let runs = runs.clone();
                        move || {
                            runs[id].fetch_add(1, Ordering::SeqCst);
                            id
                        }
                    };
                    let key = id % 5;
                    match rng.below(6) {
                        0 => match pool.submit(job) {
                            Ok(()) => produced.detached.push(id),
                            Err(err) => {
                                assert!(err.is_closed(), "submit refused an open pool");
                                refused(&mut produced, id, err);
                            }
                        },
                        1 => match pool.try_submit(job) {
                            Ok(()) => produced.detached.push(id),
                            Err(err) => refused(&mut produced, id, err),
                        },
                        2 => match pool.submit_keyed(&key, job) {
                            Ok(()) => produced.detached.push(id),
                            Err(err) => {
                                assert!(err.is_closed(), "submit_keyed refused an open pool");
                                refused(&mut produced, id, err);
                            }
                        },
                        3 => match pool.submit_timeout(job, Duration::from_micros(200)) {
                            Ok(()) => produced.detached.push(id),
                            Err(err) => refused(&mut produced, id, err),
                        },
                        4 => match pool.spawn(value_job) {
                            Ok(handle) => produced.spawned.push((id, handle)),
                            Err(err) => refused(&mut produced, id, err),
                        },
                        _ => match pool.spawn_keyed(&key, value_job) {
                            Ok(handle) => produced.spawned.push((id, handle)),
                            Err(err) => refused(&mut produced, id, err),
                        },
                    }
                    attempts.fetch_add(1, Ordering::SeqCst);
                }
                producers_done.fetch_add(1, Ordering::SeqCst);
                produced
            })
        })
        .collect();

    // Flips pause/resume and resizes while the producers run; always ends
    // resumed, so a pause never outlives it.
    let flipper = {
        let (pool, producers_done, start) = (pool.clone(), producers_done.clone(), start.clone());
        let mut rng = Rng::new(seed ^ 0xF11F);
        thread::spawn(move || {
            start.wait();
            let mut flips = 0;
            while producers_done.load(Ordering::SeqCst) < PRODUCERS && flips < 20_000 {
                match rng.below(3) {
                    0 => pool.pause(),
                    1 => pool.resume(),
                    _ => pool.resize(rng.below(8) as usize + 1),
                }
                flips += 1;
                thread::yield_now();
            }
            pool.resume();
            flips
        })
    };

    start.wait();
    // Shut down once the producers have made `stop_after` attempts (or all
    // of them).
    while attempts.load(Ordering::SeqCst) < stop_after {
        thread::yield_now();
    }
    let report = stop.apply(&pool);

    let produced: Vec<Produced> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    let flips = flipper.join().unwrap();
    // Settle: wait for every worker to exit (after shutdown_now or an
    // expired shutdown_timeout, running jobs may still be finishing).
    pool.shutdown();

    // The books.
    let run_count = |id: usize| runs[id].load(Ordering::SeqCst);
    let doubles: Vec<_> = (0..TOTAL).filter(|&id| run_count(id) > 1).collect();
    assert!(doubles.is_empty(), "jobs ran more than once: {doubles:?}");
    let mut accepted = 0u64;
    let mut ran = 0u64;
    let mut abandoned = 0u64;
    for produced in produced {
        for id in produced.refused {
            assert_eq!(run_count(id), 0, "refused job {id} ran");
        }
        for id in produced.detached {
            accepted += 1;
            match run_count(id) {
                1 => ran += 1,
                _ => abandoned += 1,
            }
        }
        for (id, handle) in produced.spawned {
            accepted += 1;
            match handle.join() {
                Ok(value) => {
                    assert_eq!(value, id);
                    assert_eq!(run_count(id), 1, "job {id}: Ok but never ran");
                    ran += 1;
                }
                Err(JobError::Abandoned) => {
                    assert_eq!(run_count(id), 0, "job {id}: Abandoned but it ran");
                    abandoned += 1;
                }
                Err(other) => panic!("job {id}: unexpected {other:?}"),
            }
        }
    }
    let stats = pool.stats();
    let context = format!(
        "seed {seed}: {workers} workers, capacity {capacity}, {stop:?} after {stop_after} \
         attempts, {flips} flips; report {report:?}; {stats:?}"
    );
    assert_eq!(stats.submitted, accepted, "{context}");
    assert_eq!(stats.completed, ran, "{context}");
    assert_eq!(
        stats.abandoned, abandoned,
        "accepted jobs that did not run must be reported abandoned: {context}"
    );
    assert_eq!(stats.submitted, outcomes(&stats), "{context}");
    assert_eq!(
        (stats.queued, stats.lanes, stats.workers),
        (0, 0, 0),
        "{context}"
    );
    if let Stop::Drain = stop {
        assert_eq!(abandoned, 0, "shutdown() drains everything: {context}");
        assert_eq!(report.abandoned, 0, "{context}");
    }
    assert!(report.abandoned <= stats.abandoned, "{context}");
    context
}

#[test]
fn producers_with_pause_resize_and_a_random_shutdown_lose_no_job() {
    let seed = common::seed("producers_with_pause_resize_and_a_random_shutdown_lose_no_job");
    let probe = Probe::default();
    guard_probed(
        "stress: producers, flipper, shutdown",
        GUARD,
        {
            let probe = probe.clone();
            move || probe.report()
        },
        move || {
            let mut rng = Rng::new(seed);
            for _ in 0..30 {
                let iteration_seed = rng.next_u64();
                // Printed only on failure (or with --nocapture).
                eprintln!("{}", producers_flipper_and_shutdown(iteration_seed, &probe));
            }
        },
    );
}

#[test]
fn shutdown_racing_submit_never_strands_an_accepted_job() {
    let seed = common::seed("shutdown_racing_submit_never_strands_an_accepted_job");
    let probe = Probe::default();
    guard_probed(
        "stress: shutdown vs submit",
        GUARD,
        {
            let probe = probe.clone();
            move || probe.report()
        },
        move || {
            let mut rng = Rng::new(seed);
            for iteration in 0..300 {
                let drain = rng.chance(2);
                let stop_after = rng.below(40) as usize;
                let pool = Pool::builder()
                    .workers(rng.below(3) as usize + 1)
                    .queue_capacity(rng.below(4) as usize + 1)
                    .build();
                probe.watch(&pool, format!("iteration {iteration}, drain {drain}"));
                let ran = Arc::new(AtomicUsize::new(0));
                let accepted = Arc::new(AtomicUsize::new(0));
                let start = Arc::new(Barrier::new(4));
                let submitters: Vec<_> = (0..3)
                    .map(|s| {
                        let (pool, ran, accepted, start) =
                            (pool.clone(), ran.clone(), accepted.clone(), start.clone());
                        thread::spawn(move || {
                            start.wait();
                            let mut handles = Vec::new();
                            for n in 0.. {
                                let ran = ran.clone();
                                let job = move || {
                                    ran.fetch_add(1, Ordering::SeqCst);
                                };
                                let closed = match s {
                                    0 => pool.submit(job).is_err(),
                                    1 => pool.submit_keyed(&(n % 2), job).is_err(),
                                    _ => match pool.spawn(job) {
                                        Ok(handle) => {
                                            handles.push(handle);
                                            false
                                        }
                                        Err(_) => true,
                                    },
                                };
                                if closed {
                                    break;
                                }
                                accepted.fetch_add(1, Ordering::SeqCst);
                            }
                            handles
                        })
                    })
                    .collect();
                start.wait();
                while accepted.load(Ordering::SeqCst) < stop_after {
                    thread::yield_now();
                }
                let report = if drain {
                    pool.shutdown()
                } else {
                    pool.shutdown_now()
                };
                let ran_when_shutdown_returned = ran.load(Ordering::SeqCst);
                let handles: Vec<_> = submitters
                    .into_iter()
                    .flat_map(|s| s.join().unwrap())
                    .collect();
                let accepted = accepted.load(Ordering::SeqCst);
                let mut handles_abandoned = 0;
                for handle in handles {
                    match handle.join() {
                        Ok(()) => {}
                        Err(JobError::Abandoned) if !drain => handles_abandoned += 1,
                        Err(other) => panic!("iteration {iteration}: handle {other:?}"),
                    }
                }
                pool.shutdown();
                let stats = pool.stats();
                let ran = ran.load(Ordering::SeqCst);
                let context = format!(
                    "seed {seed} iteration {iteration}, drain {drain}: accepted {accepted}, ran \
                 {ran} ({ran_when_shutdown_returned} when shutdown returned); {report:?}; \
                 {stats:?}"
                );
                assert_eq!(stats.submitted as usize, accepted, "{context}");
                if drain {
                    // shutdown() returns only once every accepted job has run,
                    // including ones whose submit was still returning.
                    assert_eq!(ran_when_shutdown_returned, accepted, "{context}");
                    assert_eq!(stats.abandoned, 0, "{context}");
                } else {
                    assert_eq!(ran + stats.abandoned as usize, accepted, "{context}");
                    assert!(handles_abandoned <= stats.abandoned as usize, "{context}");
                }
                assert_eq!(stats.completed as usize, ran, "{context}");
                assert_eq!(stats.submitted, outcomes(&stats), "{context}");
            }
        },
    );
}

#[test]
fn two_jobs_submitted_back_to_back_to_two_idle_workers_both_start() {
    // Both jobs wait until the other runs too: if the second job's wake-up
    // is lost, it stays queued while a worker sleeps, and the first job
    // waits forever.
    let probe = Probe::default();
    guard_probed(
        "stress: back-to-back wake-ups",
        GUARD,
        {
            let probe = probe.clone();
            move || probe.report()
        },
        move || {
            for round in 0..300 {
                let pool = Pool::new(2);
                probe.watch(&pool, format!("round {round}"));
                let both = Arc::new(Barrier::new(2));
                let handles: Vec<_> = (0..2)
                    .map(|i| {
                        let both = both.clone();
                        pool.spawn(move || {
                            both.wait();
                            i
                        })
                        .unwrap()
                    })
                    .collect();
                for (i, handle) in handles.into_iter().enumerate() {
                    match handle.join_timeout(Duration::from_secs(20)) {
                        Ok(result) => assert_eq!(result, Ok(i)),
                        Err(_) => panic!(
                            "round {round}: job {i} never finished: the other job was never \
                         started although a worker was idle (lost wake-up): {:?}",
                            pool.stats()
                        ),
                    }
                }
                pool.shutdown();
            }
        },
    );
}

#[test]
fn elastic_pool_with_constant_reaping_runs_every_job() {
    // A keep-alive of 1 µs reaps idle workers above the minimum almost as
    // soon as they go idle, so submissions keep racing reaping.
    let seed = common::seed("elastic_pool_with_constant_reaping_runs_every_job");
    let probe = Probe::default();
    guard_probed(
        "stress: elastic churn",
        GUARD,
        {
            let probe = probe.clone();
            move || probe.report()
        },
        move || {
            let mut rng = Rng::new(seed);
            for min_workers in [0, 1] {
                let pool = Pool::builder()
                    .workers(3)
                    .min_workers(min_workers)
                    .keep_alive(Duration::from_micros(1))
                    .build();
                probe.watch(&pool, format!("min_workers {min_workers}"));
                for round in 0..1_000 {
                    let handle = pool.spawn(move || round).unwrap();
                    // A little idle time before the next job, of varying length.
                    for _ in 0..rng.below(2_000) {
                        std::hint::spin_loop();
                    }
                    if rng.chance(3) {
                        thread::yield_now();
                    }
                    let result = handle.join_timeout(Duration::from_secs(30));
                    match result {
                        Ok(value) => assert_eq!(value, Ok(round)),
                        Err(_) => panic!(
                            "min_workers {min_workers}, round {round}: job stranded in the queue \
                         for 30 s: {:?}",
                            pool.stats()
                        ),
                    }
                }
                pool.shutdown();
                assert_eq!(pool.stats().completed, 1_000);
            }
        },
    );
}

#[test]
fn keyed_order_holds_under_pause_and_resize_flipping() {
    let seed = common::seed("keyed_order_holds_under_pause_and_resize_flipping");
    let probe = Probe::default();
    guard_probed(
        "stress: keyed order with flipping",
        GUARD,
        {
            let probe = probe.clone();
            move || probe.report()
        },
        move || {
            const KEYS: usize = 4;
            const JOBS: usize = 2_000;
            let pool = Pool::builder().workers(4).queue_capacity(16).build();
            probe.watch(&pool, format!("seed {seed}"));
            let next: Arc<Vec<AtomicUsize>> =
                Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect());
            let running: Arc<Vec<AtomicBool>> =
                Arc::new((0..KEYS).map(|_| AtomicBool::new(false)).collect());
            let violations = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let flipper = {
                let (pool, done) = (pool.clone(), done.clone());
                let mut rng = Rng::new(seed);
                thread::spawn(move || {
                    let mut flips = 0;
                    while !done.load(Ordering::SeqCst) && flips < 50_000 {
                        match rng.below(3) {
                            0 => pool.pause(),
                            1 => pool.resume(),
                            _ => pool.resize(rng.below(6) as usize + 1),
                        }
                        flips += 1;
                        thread::yield_now();
                    }
                    pool.resume();
                })
            };
            let mut per_key_seq = [0usize; KEYS];
            for i in 0..JOBS {
                let key = i % KEYS;
                let seq = per_key_seq[key];
                per_key_seq[key] += 1;
                let (next, running, violations) =
                    (next.clone(), running.clone(), violations.clone());
                pool.submit_keyed(&key, move || {
                    if running[key].swap(true, Ordering::SeqCst) {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                    if next[key].fetch_add(1, Ordering::SeqCst) != seq {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                    running[key].store(false, Ordering::SeqCst);
                })
                .unwrap();
            }
            done.store(true, Ordering::SeqCst);
            flipper.join().unwrap();
            pool.shutdown();
            assert_eq!(violations.load(Ordering::SeqCst), 0, "seed {seed}");
            for key in 0..KEYS {
                assert_eq!(next[key].load(Ordering::SeqCst), JOBS / KEYS);
            }
        },
    );
}
