//! Keyed lanes: jobs with the same key run one at a time in submission
//! order, different keys run in parallel, a stuck key never holds back
//! another key, and an idle key costs nothing.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use common::{guard, quiet_intentional_panics, wait_until, Gate, INTENTIONAL};
use crew::{CancelToken, JobError, Pool, SubmitError};
use proptest::prelude::*;

/// Records, per key, the order jobs ran in and whether two ever overlapped.
#[derive(Default)]
struct KeyLog {
    running: Vec<AtomicBool>,
    order: Vec<Mutex<Vec<usize>>>,
    overlaps: AtomicUsize,
    runs: Vec<AtomicUsize>,
}

impl KeyLog {
    fn new(keys: usize, jobs: usize) -> Arc<Self> {
        Arc::new(KeyLog {
            running: (0..keys).map(|_| AtomicBool::new(false)).collect(),
            order: (0..keys).map(|_| Mutex::new(Vec::new())).collect(),
            overlaps: AtomicUsize::new(0),
            runs: (0..jobs).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// The body of job `job` of key `key`.
    fn run(&self, key: usize, job: usize) {
        if self.running[key].swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.runs[job].fetch_add(1, Ordering::SeqCst);
        self.order[key].lock().unwrap().push(job);
        // Give a second job of the same key every chance to overlap.
        for _ in 0..50 {
            std::hint::spin_loop();
        }
        thread::yield_now();
        self.running[key].store(false, Ordering::SeqCst);
    }
}

#[test]
fn same_key_jobs_run_one_at_a_time_in_submission_order() {
    guard("same key order", || {
        let pool = Pool::new(8);
        let log = KeyLog::new(1, 500);
        for job in 0..500 {
            let log = log.clone();
            pool.submit_keyed(&"account-7", move || log.run(0, job))
                .unwrap();
        }
        pool.wait_idle();
        assert_eq!(
            log.overlaps.load(Ordering::SeqCst),
            0,
            "two jobs of one key overlapped"
        );
        assert_eq!(*log.order[0].lock().unwrap(), (0..500).collect::<Vec<_>>());
        assert!(log.runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
    });
}

#[test]
fn spawn_keyed_results_come_back_in_key_order() {
    guard("spawn_keyed order", || {
        let pool = Pool::new(4);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..200)
            .map(|i| {
                let seen = seen.clone();
                pool.spawn_keyed(&42u64, move || {
                    seen.lock().unwrap().push(i);
                    i
                })
                .unwrap()
            })
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.join(), Ok(i));
        }
        assert_eq!(*seen.lock().unwrap(), (0..200).collect::<Vec<_>>());
    });
}

#[test]
fn jobs_of_different_keys_run_in_parallel() {
    // Each job waits until all four are running: only possible if four keys
    // run at once on the four workers.
    guard("different keys in parallel", || {
        let pool = Pool::new(4);
        let all_running = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|key| {
                let all_running = all_running.clone();
                pool.spawn_keyed(&key, move || {
                    all_running.wait();
                    key
                })
                .unwrap()
            })
            .collect();
        for (key, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.join(), Ok(key));
        }
    });
}

#[test]
fn a_blocked_key_never_holds_back_another_keys_jobs() {
    guard("blocked key", || {
        let pool = Pool::new(2);
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let slow_order = Arc::new(Mutex::new(Vec::new()));
        {
            let slow_order = slow_order.clone();
            pool.submit_keyed(&"slow", move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                slow_order.lock().unwrap().push(0);
            })
            .unwrap();
        }
        started_rx.recv().unwrap();
        // More work for the stuck key waits in its lane...
        for i in 1..=5 {
            let slow_order = slow_order.clone();
            pool.submit_keyed(&"slow", move || slow_order.lock().unwrap().push(i))
                .unwrap();
        }
        // ...while other keys and unkeyed jobs all complete on the other
        // worker, although they were submitted after the stuck key's jobs.
        let fast: Vec<_> = (0..100)
            .map(|i| {
                if i % 2 == 0 {
                    pool.spawn_keyed(&(i % 7), move || i).unwrap()
                } else {
                    pool.spawn(move || i).unwrap()
                }
            })
            .collect();
        for (i, handle) in fast.into_iter().enumerate() {
            assert_eq!(handle.join(), Ok(i));
        }
        assert_eq!(
            slow_order.lock().unwrap().len(),
            0,
            "the slow key's lane moved"
        );
        // The other keys' lanes are released just after their results are
        // delivered; only the stuck key keeps one.
        wait_until("only the stuck key holds a lane", || {
            pool.stats().lanes == 1
        });
        release_tx.send(()).unwrap();
        pool.wait_idle();
        assert_eq!(*slow_order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    });
}

#[test]
fn an_idle_key_costs_no_lane() {
    guard("idle keys", || {
        let pool = Pool::new(4);
        pool.pause();
        for key in 0..3 {
            pool.submit_keyed(&key, || ()).unwrap();
            pool.submit_keyed(&key, || ()).unwrap();
        }
        assert_eq!(pool.stats().lanes, 3, "a lane per key with work");
        pool.resume();
        pool.wait_idle();
        wait_until("lanes drop to zero", || pool.stats().lanes == 0);

        // A burst over many distinct keys leaves nothing behind either.
        for key in 0..5_000u64 {
            pool.submit_keyed(&key, || ()).unwrap();
        }
        pool.wait_idle();
        wait_until("lanes drop to zero after a burst", || {
            pool.stats().lanes == 0
        });
        pool.shutdown();
        assert_eq!(pool.stats().completed, 5_006);
    });
}

#[test]
fn keyed_jobs_waiting_in_their_lane_count_against_the_queue_bound() {
    guard("lanes and capacity", || {
        let pool = Pool::builder().workers(2).queue_capacity(2).build();
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        let (started_tx, started_rx) = mpsc::channel();
        {
            let gate = gate.clone();
            pool.submit_keyed(&"a", move || {
                started_tx.send(()).unwrap();
                gate.wait();
            })
            .unwrap();
        }
        started_rx.recv().unwrap();
        // Two jobs wait behind the running one: the queue is now full even
        // though the shared queue itself is empty and a worker is idle.
        pool.submit_keyed(&"a", || ()).unwrap();
        pool.submit_keyed(&"a", || ()).unwrap();
        assert_eq!(pool.stats().queued, 2);
        let err = pool.try_submit(|| ()).unwrap_err();
        assert!(matches!(err, SubmitError::Full(_)), "got {err:?}");
        gate.open();
        pool.wait_idle();
        pool.try_submit(|| ()).unwrap();
        pool.shutdown();
        assert_eq!(pool.stats().completed, 4);
    });
}

#[test]
fn a_cancelled_keyed_job_is_skipped_and_its_lane_moves_on() {
    guard("cancelled keyed job", || {
        let pool = Pool::new(2);
        pool.pause();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let seen = seen.clone();
                pool.spawn_keyed(&"k", move || seen.lock().unwrap().push(i))
                    .unwrap()
            })
            .collect();
        handles[2].cancel();
        pool.resume();
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        assert_eq!(results[2], Err(JobError::Cancelled));
        assert!(results.iter().enumerate().all(|(i, r)| i == 2 || r.is_ok()));
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 3, 4]);
        pool.wait_idle();
        wait_until("lane released", || pool.stats().lanes == 0);
    });
}

#[test]
fn a_token_cancelled_keyed_job_is_skipped_and_its_lane_moves_on() {
    guard("token keyed job", || {
        let pool = Pool::new(2);
        pool.pause();
        let token = CancelToken::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..4 {
            let seen = seen.clone();
            let job = pool.job().key(&9u8);
            let job = if i == 1 {
                job.token(token.clone())
            } else {
                job
            };
            job.submit(move |_| seen.lock().unwrap().push(i)).unwrap();
        }
        token.cancel();
        pool.resume();
        pool.wait_idle();
        assert_eq!(*seen.lock().unwrap(), vec![0, 2, 3]);
        pool.shutdown();
        assert_eq!(pool.stats().cancelled, 1);
    });
}

#[test]
fn a_panicking_keyed_job_releases_its_lane_for_the_next() {
    quiet_intentional_panics();
    guard("panicking keyed job", || {
        let pool = Pool::new(2);
        let first = pool
            .spawn_keyed(&"p", || -> u32 { panic!("{INTENTIONAL}: keyed") })
            .unwrap();
        let second = pool.spawn_keyed(&"p", || 2).unwrap();
        assert!(matches!(first.join(), Err(JobError::Panicked(m)) if m.contains("keyed")));
        assert_eq!(second.join(), Ok(2));
        pool.wait_idle();
        wait_until("lane released", || pool.stats().lanes == 0);
    });
}

#[test]
fn an_expired_keyed_job_releases_its_lane_for_the_next() {
    guard("expired keyed job", || {
        let pool = Pool::new(1);
        pool.pause();
        let past = std::time::Instant::now();
        let expired = pool
            .job()
            .key(&"e")
            .deadline(past)
            .spawn(|_| "late")
            .unwrap();
        let next = pool.spawn_keyed(&"e", || "next").unwrap();
        common::wait_past(past);
        pool.resume();
        assert_eq!(expired.join(), Err(JobError::Expired));
        assert_eq!(next.join(), Ok("next"));
    });
}

/// (producer, sequence number within that producer)
type ProducerSeq = (usize, usize);

#[test]
fn keyed_jobs_from_many_producers_keep_each_producers_order() {
    guard("many producers, shared keys", || {
        const PRODUCERS: usize = 4;
        const PER_PRODUCER: usize = 300;
        const KEYS: usize = 3;
        let pool = Pool::builder().workers(4).queue_capacity(32).build();
        let seen: Arc<Vec<Mutex<Vec<ProducerSeq>>>> =
            Arc::new((0..KEYS).map(|_| Mutex::new(Vec::new())).collect());
        let running: Arc<Vec<AtomicBool>> =
            Arc::new((0..KEYS).map(|_| AtomicBool::new(false)).collect());
        let overlaps = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(PRODUCERS));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (pool, seen, running, overlaps, start) = (
                    pool.clone(),
                    seen.clone(),
                    running.clone(),
                    overlaps.clone(),
                    start.clone(),
                );
                thread::spawn(move || {
                    start.wait();
                    for n in 0..PER_PRODUCER {
                        let key = (p + n) % KEYS;
                        let (seen, running, overlaps) =
                            (seen.clone(), running.clone(), overlaps.clone());
                        pool.submit_keyed(&key, move || {
                            if running[key].swap(true, Ordering::SeqCst) {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            seen[key].lock().unwrap().push((p, n));
                            running[key].store(false, Ordering::SeqCst);
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        pool.wait_idle();
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
        let mut total = 0;
        for key_log in seen.iter() {
            let key_log = key_log.lock().unwrap();
            total += key_log.len();
            let mut last: HashMap<usize, usize> = HashMap::new();
            for &(p, n) in key_log.iter() {
                if let Some(&previous) = last.get(&p) {
                    assert!(previous < n, "producer {p}: job {n} ran after {previous}");
                }
                last.insert(p, n);
            }
        }
        assert_eq!(total, PRODUCERS * PER_PRODUCER);
    });
}

/// One generated job: which key (if any), and how it is submitted.
#[derive(Clone, Debug)]
struct GenJob {
    key: Option<usize>,
    spawn: bool,
}

fn gen_job(keys: usize) -> impl Strategy<Value = GenJob> {
    (prop::option::weighted(0.85, 0..keys), any::<bool>())
        .prop_map(|(key, spawn)| GenJob { key, spawn })
}

fn gen_case() -> impl Strategy<Value = (usize, usize, bool, Vec<GenJob>)> {
    (1usize..6, 1usize..5).prop_flat_map(|(keys, workers)| {
        (
            Just(workers),
            prop_oneof![Just(1usize), 2usize..8, Just(1024usize)],
            any::<bool>(),
            prop::collection::vec(gen_job(keys), 0..150),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random keys and jobs: every job runs exactly once, each key's jobs run
    /// in submission order, and never two of one key at once.
    #[test]
    fn keyed_jobs_run_exactly_once_in_order_without_overlap(
        (workers, capacity, start_paused, jobs) in gen_case()
    ) {
        let outcome = guard("lanes proptest case", move || {
            let pool = Pool::builder().workers(workers).queue_capacity(capacity).build();
            let keys = jobs.iter().filter_map(|j| j.key).max().map_or(0, |k| k + 1);
            let log = KeyLog::new(keys, jobs.len());
            let unkeyed_order = Arc::new(Mutex::new(Vec::new()));
            if start_paused && capacity >= jobs.len() {
                // Let the whole batch pile up in the lanes first.
                pool.pause();
            }
            let mut handles = Vec::new();
            for (i, job) in jobs.iter().enumerate() {
                let log = log.clone();
                let unkeyed_order = unkeyed_order.clone();
                match (job.key, job.spawn) {
                    (Some(key), false) => pool.submit_keyed(&key, move || log.run(key, i)).unwrap(),
                    (Some(key), true) => {
                        handles.push((i, pool.spawn_keyed(&key, move || { log.run(key, i); i }).unwrap()));
                    }
                    (None, false) => pool.submit(move || {
                        log.runs[i].fetch_add(1, Ordering::SeqCst);
                        unkeyed_order.lock().unwrap().push(i);
                    }).unwrap(),
                    (None, true) => {
                        handles.push((i, pool.spawn(move || {
                            log.runs[i].fetch_add(1, Ordering::SeqCst);
                            i
                        }).unwrap()));
                    }
                }
            }
            pool.resume();
            for (i, handle) in handles {
                assert_eq!(handle.join(), Ok(i));
            }
            pool.shutdown();
            let stats = pool.stats();
            (jobs, log, stats)
        });
        let (jobs, log, stats) = outcome;
        for (i, runs) in log.runs.iter().enumerate() {
            prop_assert_eq!(runs.load(Ordering::SeqCst), 1, "job {} ran {} times", i, runs.load(Ordering::SeqCst));
        }
        prop_assert_eq!(log.overlaps.load(Ordering::SeqCst), 0, "two jobs of one key overlapped");
        for (key, order) in log.order.iter().enumerate() {
            let expected: Vec<usize> = jobs
                .iter()
                .enumerate()
                .filter(|(_, j)| j.key == Some(key))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(&*order.lock().unwrap(), &expected, "key {} ran out of order", key);
        }
        prop_assert_eq!(stats.submitted as usize, jobs.len());
        prop_assert_eq!(stats.completed as usize, jobs.len());
        prop_assert_eq!(stats.lanes, 0);
        prop_assert_eq!(stats.queued, 0);
    }
}
