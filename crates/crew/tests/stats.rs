//! Stats: every counter, every gauge, the two histograms, and the identity
//! `submitted == completed + failed + panicked + expired + cancelled +
//! abandoned` once the pool is idle.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{guard, quiet_intentional_panics, wait_past, wait_until, Gate, Rng, INTENTIONAL};
use crew::{CancelToken, JobError, Pool, Stats};

/// Every accepted job ends in exactly one outcome counter.
fn outcomes(stats: &Stats) -> u64 {
    stats.completed
        + stats.failed
        + stats.panicked
        + stats.expired
        + stats.cancelled
        + stats.abandoned
}

fn boom() {
    panic!("{INTENTIONAL}")
}

#[test]
fn counters_count_every_outcome_and_add_up() {
    quiet_intentional_panics();
    guard("counters", || {
        let pool = Pool::builder().workers(2).queue_capacity(8).build();

        // Ran: 10 completed, 4 failed, 3 panicked.
        for i in 0..17 {
            match i {
                0..=9 => pool.submit(|| ()).unwrap(),
                10..=13 => pool.submit(|| Err::<(), _>("failed")).unwrap(),
                _ => pool.submit(boom).unwrap(),
            }
        }
        pool.wait_idle();

        // Skipped: 2 expired, 3 cancelled (2 by handle, 1 by token).
        pool.pause();
        let past = Instant::now();
        let expired: Vec<_> = (0..2)
            .map(|_| pool.job().deadline(past).spawn(|_| ()).unwrap())
            .collect();
        let cancelled: Vec<_> = (0..2).map(|_| pool.spawn(|| ()).unwrap()).collect();
        for handle in &cancelled {
            handle.cancel();
        }
        let token = CancelToken::new();
        pool.job().token(token.clone()).submit(|_| ()).unwrap();
        token.cancel();
        // 5 queued of 8: 3 more fill the queue, then 3 refusals.
        for _ in 0..3 {
            pool.submit(|| ()).unwrap();
        }
        assert!(pool.try_submit(|| ()).is_err());
        assert!(pool.job().try_submit(|_| ()).is_err());
        assert!(pool
            .submit_timeout(|| (), Duration::from_millis(1))
            .is_err());
        wait_past(past);
        pool.resume();
        for handle in expired {
            assert_eq!(handle.join(), Err(JobError::Expired));
        }
        for handle in cancelled {
            assert_eq!(handle.join(), Err(JobError::Cancelled));
        }
        pool.wait_idle();

        // Abandoned: 4 queued behind two blocked workers, then shutdown_now.
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        let (started_tx, started_rx) = mpsc::channel();
        for _ in 0..2 {
            let (gate, started_tx) = (gate.clone(), started_tx.clone());
            pool.submit(move || {
                started_tx.send(()).unwrap();
                gate.wait();
            })
            .unwrap();
        }
        started_rx.recv().unwrap();
        started_rx.recv().unwrap();
        for _ in 0..4 {
            pool.submit(|| ()).unwrap();
        }
        let report = pool.shutdown_now();
        assert_eq!((report.abandoned, report.cancelled), (4, 2));
        gate.open();
        pool.shutdown();
        // Closed: one more refusal.
        assert!(pool.submit(|| ()).is_err());

        let stats = pool.stats();
        assert_eq!(stats.completed, 10 + 3 + 2, "completed");
        assert_eq!(stats.failed, 4, "failed");
        assert_eq!(stats.panicked, 3, "panicked");
        assert_eq!(stats.expired, 2, "expired");
        assert_eq!(stats.cancelled, 3, "cancelled");
        assert_eq!(stats.abandoned, 4, "abandoned");
        assert_eq!(stats.rejected, 3 + 1, "rejected");
        assert_eq!(stats.submitted, 17 + 2 + 2 + 1 + 3 + 2 + 4, "submitted");
        assert_eq!(stats.submitted, outcomes(&stats));
    });
}

#[test]
fn gauges_report_workers_busy_idle_queued_capacity_and_lanes() {
    guard("gauges", || {
        let pool = Pool::builder().workers(3).queue_capacity(10).build();
        let stats = pool.stats();
        assert_eq!(stats.workers, 3);
        assert_eq!((stats.busy, stats.idle), (0, 3));
        assert_eq!(stats.queued, 0);
        assert_eq!(stats.queue_capacity, Some(10));
        assert_eq!(stats.lanes, 0);

        let gate = Gate::new();
        let _open = gate.open_on_drop();
        let (started_tx, started_rx) = mpsc::channel();
        for key in ["a", "b"] {
            let (gate, started_tx) = (gate.clone(), started_tx.clone());
            pool.submit_keyed(&key, move || {
                started_tx.send(()).unwrap();
                gate.wait();
            })
            .unwrap();
        }
        started_rx.recv().unwrap();
        started_rx.recv().unwrap();
        let stats = pool.stats();
        assert_eq!((stats.workers, stats.busy, stats.idle), (3, 2, 1));
        assert_eq!(stats.lanes, 2, "a running keyed job holds its lane");
        assert_eq!(stats.queued, 0);

        pool.pause();
        for _ in 0..3 {
            pool.submit(|| ()).unwrap();
        }
        pool.submit_keyed(&"a", || ()).unwrap(); // waits behind "a"
        pool.submit_keyed(&"c", || ()).unwrap(); // a new lane
        let stats = pool.stats();
        assert_eq!(stats.queued, 5);
        assert_eq!(stats.lanes, 3);
        assert_eq!(stats.busy, 2);

        gate.open();
        pool.resume();
        pool.wait_idle();
        wait_until("lanes released", || pool.stats().lanes == 0);
        let stats = pool.stats();
        assert_eq!((stats.busy, stats.idle, stats.queued), (0, 3, 0));

        pool.shutdown();
        let stats = pool.stats();
        assert_eq!((stats.workers, stats.busy, stats.idle), (0, 0, 0));
    });
}

#[test]
fn histograms_count_every_job_run_with_ordered_quantiles() {
    guard("histograms", || {
        let pool = Pool::new(2);
        for i in 0..500u32 {
            pool.submit(move || {
                // Varied, tiny amounts of work.
                for _ in 0..(i % 50) * 100 {
                    std::hint::black_box(i);
                }
            })
            .unwrap();
        }
        pool.shutdown();
        let stats = pool.stats();
        for (name, histogram) in [
            ("queue_wait", &stats.queue_wait),
            ("run_time", &stats.run_time),
        ] {
            assert_eq!(histogram.count(), 500, "{name} count");
            let (p50, p90, p99, max) = (
                histogram.p50(),
                histogram.p90(),
                histogram.p99(),
                histogram.max(),
            );
            assert!(
                p50 <= p90 && p90 <= p99 && p99 <= max,
                "{name}: p50 {p50:?} p90 {p90:?} p99 {p99:?} max {max:?}"
            );
            assert!(histogram.quantile(0.0) <= p50);
            assert_eq!(histogram.quantile(1.0), max);
            assert!(histogram.mean() <= max, "{name} mean above max");
            assert!(histogram.sum() >= max, "{name} sum below max");
            assert_eq!(
                histogram.buckets().map(|(_, n)| n).sum::<u64>(),
                500,
                "{name} buckets"
            );
            let bounds: Vec<_> = histogram.buckets().map(|(bound, _)| bound).collect();
            assert!(
                bounds.windows(2).all(|w| w[0] < w[1]),
                "{name} bucket order"
            );
            assert_eq!(histogram.count_at_or_below(Duration::MAX), 500);
        }
        assert!(stats.run_time.max() > Duration::ZERO);
    });
}

#[test]
fn an_empty_pool_has_empty_histograms() {
    let pool = Pool::new(1);
    let stats = pool.stats();
    assert_eq!(stats.queue_wait.count(), 0);
    assert_eq!(stats.run_time.count(), 0);
    assert_eq!(stats.run_time.p99(), Duration::ZERO);
    assert_eq!(stats.run_time.mean(), Duration::ZERO);
    assert_eq!(stats.run_time.buckets().count(), 0);
}

#[test]
fn queue_wait_and_run_time_count_only_jobs_that_started() {
    // "queue_wait: time from submission to the start of the job": expired
    // and cancelled jobs never start, so neither histogram counts them.
    guard("histograms skip skipped jobs", || {
        let pool = Pool::new(1);
        pool.pause();
        let past = Instant::now();
        for _ in 0..3 {
            pool.job().deadline(past).submit(|_| ()).unwrap();
        }
        let cancelled = pool.spawn(|| ()).unwrap();
        cancelled.cancel();
        for _ in 0..5 {
            pool.submit(|| ()).unwrap();
        }
        wait_past(past);
        pool.resume();
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.expired, stats.cancelled), (5, 3, 1));
        assert_eq!(stats.run_time.count(), 5, "run_time counts jobs that ran");
        assert_eq!(
            stats.queue_wait.count(),
            5,
            "queue_wait counts jobs that started, not the 4 skipped ones"
        );
    });
}

#[test]
fn a_queued_jobs_wait_shows_in_queue_wait() {
    // Not a time bound on the pool: the job provably waited at least as
    // long as the test kept the pool paused, and the histogram must not say
    // much less.
    guard("queue_wait measures the wait", || {
        let pool = Pool::new(1);
        pool.pause();
        pool.submit(|| ()).unwrap();
        // Queued before this instant, started after `held`.
        let held = Instant::now() + Duration::from_millis(20);
        wait_past(held);
        pool.resume();
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!(stats.queue_wait.count(), 1);
        // Half the provable wait: room for the histogram's own clock.
        assert!(
            stats.queue_wait.max() >= Duration::from_millis(10),
            "queue_wait max {:?} for a job held over 20 ms",
            stats.queue_wait.max()
        );
    });
}

#[test]
fn counts_of_retired_workers_are_kept() {
    guard("retired workers' counts", || {
        let pool = Pool::new(4);
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..400 {
            let done = done.clone();
            pool.submit(move || {
                thread::yield_now();
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        pool.wait_idle();
        pool.resize(1);
        wait_until("three workers retired", || pool.stats().workers == 1);
        let stats = pool.stats();
        assert_eq!(stats.completed, 400);
        assert_eq!(stats.run_time.count(), 400);
        assert_eq!(stats.queue_wait.count(), 400);
        pool.shutdown();
        assert_eq!(pool.stats().completed, 400);
    });
}

#[test]
fn counters_add_up_whenever_wait_idle_returns() {
    // wait_idle means nothing is queued or running; at that moment every
    // job has been counted, its lane released and no worker is busy.
    quiet_intentional_panics();
    guard("stats settled at wait_idle", || {
        let mut rng = Rng::new(common::seed("counters_add_up_whenever_wait_idle_returns"));
        let pool = Pool::new(4);
        for round in 0..300 {
            for _ in 0..rng.below(8) + 1 {
                match rng.below(5) {
                    0 => pool.submit(|| ()).unwrap(),
                    1 => pool.submit(|| Err::<(), _>(())).unwrap(),
                    2 => pool.submit_keyed(&rng.below(3), || ()).unwrap(),
                    3 => drop(pool.spawn(|| ()).unwrap()),
                    _ => pool.submit(boom).unwrap(),
                }
            }
            pool.wait_idle();
            let stats = pool.stats();
            assert_eq!(
                stats.submitted,
                outcomes(&stats),
                "round {round}: counters do not add up after wait_idle: {stats:?}"
            );
            assert_eq!(
                (stats.busy, stats.queued, stats.lanes),
                (0, 0, 0),
                "round {round}: gauges after wait_idle: {stats:?}"
            );
            assert_eq!(
                stats.run_time.count(),
                stats.completed + stats.failed + stats.panicked,
                "round {round}"
            );
        }
    });
}
