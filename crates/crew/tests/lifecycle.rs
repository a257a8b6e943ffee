//! Lifecycle: pause and resume, resize while busy, elastic workers (min,
//! keep-alive), wait_idle, shutdown and Drop, and jobs that stop their own
//! pool.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::{guard, wait_until, Gate};
use crew::{JobError, Pool};

/// Used only to assert that something did NOT happen in this long.
const STILL_BLOCKED: Duration = Duration::from_millis(100);

/// Submits a job that reports when it starts and then waits on `gate`.
fn blocker(pool: &Pool, gate: &Gate) -> mpsc::Receiver<()> {
    let (started_tx, started_rx) = mpsc::channel();
    let gate = gate.clone();
    pool.submit(move || {
        started_tx.send(()).unwrap();
        gate.wait();
    })
    .unwrap();
    started_rx
}

#[test]
fn pause_holds_queued_jobs_and_lets_running_ones_finish() {
    guard("pause", || {
        let pool = Pool::new(2);
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        let (started_tx, started_rx) = mpsc::channel();
        let running = {
            let gate = gate.clone();
            pool.spawn(move || {
                started_tx.send(()).unwrap();
                gate.wait();
                "finished"
            })
            .unwrap()
        };
        started_rx.recv().unwrap();
        pool.pause();
        assert!(pool.is_paused());
        let queued = pool.spawn(|| "ran after resume").unwrap();
        gate.open();
        assert_eq!(running.join(), Ok("finished"), "a running job finishes");
        // A worker is free, but the pool is paused: the queued job waits.
        let queued = queued
            .join_timeout(STILL_BLOCKED)
            .expect_err("a job ran while the pool was paused");
        assert_eq!(pool.stats().queued, 1);
        pool.resume();
        assert!(!pool.is_paused());
        assert_eq!(queued.join(), Ok("ran after resume"));
    });
}

#[test]
fn resume_runs_every_job_queued_while_paused_in_order_on_one_worker() {
    guard("resume", || {
        let pool = Pool::new(1);
        pool.pause();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..100 {
            let seen = seen.clone();
            pool.submit(move || seen.lock().unwrap().push(i)).unwrap();
        }
        assert_eq!(pool.stats().queued, 100);
        assert!(seen.lock().unwrap().is_empty());
        pool.resume();
        pool.wait_idle();
        assert_eq!(*seen.lock().unwrap(), (0..100).collect::<Vec<_>>());
    });
}

#[test]
fn a_job_submitted_after_pause_returned_never_starts_before_resume() {
    // If a worker could start a job submitted after `pause()` returned, the
    // cancel below would find it running and `join` would give `Ok`.
    guard("pause is immediate", || {
        let pool = Pool::new(2);
        for round in 0..2_000 {
            pool.pause();
            let handle = pool.spawn(move || round).unwrap();
            handle.cancel();
            assert_eq!(
                handle.join(),
                Err(JobError::Cancelled),
                "round {round}: a job started while the pool was paused"
            );
            pool.resume();
            // Let the workers skip the cancelled job (the queue would
            // otherwise fill up with them while paused) and go idle, which is
            // when they watch for new work most closely.
            pool.wait_idle();
        }
        pool.shutdown();
        assert_eq!(pool.stats().cancelled, 2_000);
    });
}

#[test]
fn resize_up_while_busy_runs_more_jobs_at_once() {
    // Two workers, four jobs that each wait until all four run: they can
    // only all get through the barrier once resize has added two workers.
    guard("resize up", || {
        let pool = Pool::new(2);
        let all_running = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let all_running = all_running.clone();
                pool.spawn(move || {
                    all_running.wait();
                    i
                })
                .unwrap()
            })
            .collect();
        pool.resize(4);
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.join(), Ok(i));
        }
        assert_eq!(pool.stats().workers, 4);
    });
}

#[test]
fn resize_down_while_busy_retires_workers_once_their_jobs_finish() {
    guard("resize down", || {
        let pool = Pool::new(4);
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        let started: Vec<_> = (0..4).map(|_| blocker(&pool, &gate)).collect();
        for rx in &started {
            rx.recv().unwrap();
        }
        pool.resize(1);
        // The four running jobs are not interrupted...
        assert_eq!(pool.stats().busy, 4);

        // ...and once they end, the backlog runs on the one remaining worker.
        let threads = Arc::new(Mutex::new(HashSet::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let max_running = Arc::new(AtomicUsize::new(0));
        for _ in 0..200 {
            let (threads, running, max_running) =
                (threads.clone(), running.clone(), max_running.clone());
            pool.submit(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_running.fetch_max(now, Ordering::SeqCst);
                threads.lock().unwrap().insert(thread::current().id());
                thread::yield_now();
                running.fetch_sub(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        gate.open();
        pool.wait_idle();
        wait_until("stats().workers goes down to 1", || {
            pool.stats().workers == 1
        });
        let stats = pool.stats();
        assert_eq!((stats.workers, stats.busy, stats.idle), (1, 0, 1));
        let distinct = threads.lock().unwrap().len();
        let max_running = max_running.load(Ordering::SeqCst);
        assert!(
            distinct == 1 && max_running == 1,
            "after resize(1), the backlog behind the running jobs ran on {distinct} worker \
             threads, up to {max_running} at once: the extra workers did not retire after \
             finishing the job they were running"
        );
    });
}

#[test]
fn shrink_then_grow_again_runs_jobs_concurrently() {
    guard("shrink then grow", || {
        let pool = Pool::new(3);
        pool.resize(1);
        pool.wait_idle();
        wait_until("shrunk to 1", || pool.stats().workers == 1);
        pool.resize(3);
        assert_eq!(pool.stats().workers, 3, "growing starts threads at once");
        let all_running = Arc::new(Barrier::new(3));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let all_running = all_running.clone();
                pool.spawn(move || {
                    all_running.wait();
                })
                .unwrap()
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
}

#[test]
#[should_panic(expected = "at least one worker")]
fn resize_to_zero_panics() {
    let pool = Pool::new(1);
    pool.resize(0);
}

#[test]
fn elastic_pool_starts_with_min_workers_and_grows_on_demand_to_the_maximum() {
    // Four jobs that each wait until all four run: the pool must start
    // three more workers on demand.
    guard("elastic growth", || {
        let pool = Pool::builder()
            .workers(4)
            .min_workers(1)
            .keep_alive(Duration::from_secs(3_600))
            .build();
        assert_eq!(pool.stats().workers, 1);
        let all_running = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let all_running = all_running.clone();
                pool.spawn(move || {
                    all_running.wait();
                    i
                })
                .unwrap()
            })
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.join(), Ok(i));
        }
        assert_eq!(pool.stats().workers, 4);
    });
}

#[test]
fn elastic_pool_grows_for_a_batch_of_jobs_that_must_run_together() {
    guard("elastic growth for a batch", || {
        let pool = Pool::builder()
            .workers(4)
            .min_workers(1)
            .keep_alive(Duration::from_secs(3_600))
            .build();
        let all_running = Arc::new(Barrier::new(4));
        let (done_tx, done_rx) = mpsc::channel();
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                let (all_running, done_tx) = (all_running.clone(), done_tx.clone());
                move || {
                    all_running.wait();
                    done_tx.send(()).unwrap();
                }
            })
            .collect();
        assert_eq!(pool.submit_batch(jobs).unwrap(), 4);
        for _ in 0..4 {
            done_rx.recv().unwrap();
        }
        assert_eq!(pool.stats().workers, 4);
    });
}

#[test]
fn idle_workers_above_the_minimum_exit_after_keep_alive() {
    guard("keep_alive reaping", || {
        let pool = Pool::builder()
            .workers(3)
            .min_workers(1)
            .keep_alive(Duration::from_millis(20))
            .build();
        assert_eq!(pool.stats().workers, 1);
        // Submit one blocker at a time, each after the previous started, so
        // every submission finds all workers busy and starts a new one.
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        for _ in 0..3 {
            blocker(&pool, &gate).recv().unwrap();
        }
        assert_eq!(pool.stats().workers, 3);
        gate.open();
        pool.wait_idle();
        wait_until("idle workers above the minimum exit", || {
            pool.stats().workers == 1
        });
        // The one that stays is never reaped and still runs jobs; the pool
        // grows again when needed.
        assert_eq!(pool.spawn(|| 5).unwrap().join(), Ok(5));
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!(stats.completed, 4);
        assert_eq!(stats.workers, 0);
    });
}

#[test]
fn resize_keeps_an_elastic_pool_elastic() {
    // An elastic pool (min 1, keep-alive) resized to 3 starts the threads at
    // once, but the ones above the minimum are still reaped when idle.
    guard("resize of an elastic pool", || {
        let pool = Pool::builder()
            .workers(2)
            .min_workers(1)
            .keep_alive(Duration::from_millis(10))
            .build();
        assert_eq!(pool.stats().workers, 1);
        pool.resize(3);
        assert_eq!(pool.stats().workers, 3, "growing starts threads at once");
        pool.wait_idle();
        wait_until("idle workers above the minimum exit after resize", || {
            pool.stats().workers == 1
        });
    });
}

#[test]
fn pause_during_a_draining_shutdown_does_not_stall_it() {
    // Shutdown resumes a paused pool so it never waits on a pause nobody
    // will lift; a pause that lands after the shutdown began must not stall
    // it either.
    guard("pause during shutdown", || {
        let pool = Pool::new(1);
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        blocker(&pool, &gate).recv().unwrap();
        let queued = pool.spawn(|| "queued").unwrap();
        let shutdown = {
            let pool = pool.clone();
            thread::spawn(move || pool.shutdown())
        };
        wait_until("the pool is closed", || pool.is_closed());
        pool.pause();
        gate.open();
        let result = queued.join();
        let report = shutdown.join().unwrap();
        assert_eq!(result, Ok("queued"));
        assert_eq!(report.completed, 2);
    });
}

#[test]
fn wait_idle_waits_for_queued_and_running_jobs() {
    guard("wait_idle", || {
        let pool = Pool::new(2);
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..200 {
            let done = done.clone();
            pool.submit(move || {
                thread::yield_now();
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        pool.wait_idle();
        assert_eq!(done.load(Ordering::SeqCst), 200);
        let stats = pool.stats();
        assert_eq!((stats.queued, stats.busy), (0, 0));
        // An idle pool returns at once.
        pool.wait_idle();
        assert!(pool.wait_idle_timeout(Duration::from_secs(3_600)));
    });
}

#[test]
fn wait_idle_timeout_is_false_while_paused_with_queued_jobs() {
    guard("wait_idle_timeout", || {
        let pool = Pool::new(1);
        pool.pause();
        pool.submit(|| ()).unwrap();
        assert!(!pool.wait_idle_timeout(Duration::from_millis(20)));
        pool.resume();
        assert!(pool.wait_idle_timeout(Duration::from_secs(3_600)));
    });
}

#[test]
fn shutdown_drains_every_kind_of_job_and_joins_the_workers() {
    guard("shutdown drains", || {
        let pool = Pool::new(1);
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        blocker(&pool, &gate).recv().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for i in 0..60 {
            let runs = runs.clone();
            let job = move || {
                runs.fetch_add(1, Ordering::SeqCst);
            };
            match i % 3 {
                0 => pool.submit(job).unwrap(),
                1 => pool.submit_keyed(&(i % 4), job).unwrap(),
                _ => handles.push(pool.spawn(job).unwrap()),
            }
        }
        let shutdown = {
            let pool = pool.clone();
            thread::spawn(move || pool.shutdown())
        };
        // The report's baseline is taken before the pool closes.
        wait_until("the pool is closed", || pool.is_closed());
        gate.open();
        let report = shutdown.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 60);
        assert_eq!(report.completed, 61, "the blocker and the 60 queued jobs");
        assert_eq!((report.abandoned, report.cancelled), (0, 0));
        for handle in handles {
            assert_eq!(handle.join(), Ok(()));
        }
        let stats = pool.stats();
        assert_eq!(stats.workers, 0, "shutdown joins the workers");
        assert_eq!(stats.completed, 61);
        assert_eq!(stats.queued, 0);
    });
}

#[test]
fn shutdown_twice_is_harmless() {
    guard("shutdown twice", || {
        let pool = Pool::new(2);
        pool.submit(|| ()).unwrap();
        pool.shutdown();
        let again = pool.shutdown();
        assert_eq!(
            (again.completed, again.abandoned, again.cancelled),
            (0, 0, 0)
        );
        let now = pool.shutdown_now();
        assert_eq!((now.completed, now.abandoned, now.cancelled), (0, 0, 0));
        assert!(pool.is_closed());
    });
}

#[test]
fn dropping_a_clone_that_is_not_the_last_keeps_the_pool_running() {
    guard("drop a clone", || {
        let pool = Pool::new(2);
        let clone = pool.clone();
        drop(clone);
        assert!(!pool.is_closed());
        assert_eq!(pool.spawn(|| 1).unwrap().join(), Ok(1));
    });
}

#[test]
fn dropping_the_last_pool_clone_drains_the_queue() {
    guard("drop drains", || {
        let pool = Pool::new(1);
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        blocker(&pool, &gate).recv().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        for _ in 0..200 {
            let runs = runs.clone();
            pool.submit(move || {
                thread::yield_now();
                runs.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let handle = pool.spawn(|| "last").unwrap();
        let clone = pool.clone();
        let other = thread::spawn(move || drop(clone));
        other.join().unwrap();
        gate.open();
        drop(pool); // the last clone: blocks until the queue is drained
        assert_eq!(runs.load(Ordering::SeqCst), 200);
        assert_eq!(handle.join(), Ok("last"));
    });
}

#[test]
fn dropping_a_paused_pool_with_queued_jobs_does_not_hang() {
    // Drop of the last clone drains; a pool that was left paused must not
    // make that drop wait forever. Each queued job must end one way or the
    // other: run, or be reported abandoned.
    guard("drop of a paused pool", || {
        let pool = Pool::new(2);
        pool.pause();
        let handles: Vec<_> = (0..5).map(|i| pool.spawn(move || i).unwrap()).collect();
        drop(pool);
        for (i, handle) in handles.into_iter().enumerate() {
            match handle.join() {
                Ok(value) => assert_eq!(value, i),
                Err(error) => assert_eq!(error, JobError::Abandoned),
            }
        }
    });
}

#[test]
fn shutdown_of_a_paused_pool_does_not_hang() {
    guard("shutdown of a paused pool", || {
        let pool = Pool::new(2);
        pool.pause();
        let handles: Vec<_> = (0..5).map(|i| pool.spawn(move || i).unwrap()).collect();
        let report = pool.shutdown();
        let mut ran = 0;
        for (i, handle) in handles.into_iter().enumerate() {
            match handle.join() {
                Ok(value) => {
                    assert_eq!(value, i);
                    ran += 1;
                }
                Err(error) => assert_eq!(error, JobError::Abandoned),
            }
        }
        assert_eq!(report.completed, ran);
        assert_eq!(report.abandoned, 5 - ran);
    });
}

#[test]
fn a_job_that_shuts_down_its_own_pool_does_not_deadlock() {
    guard("self shutdown", || {
        for workers in [1, 2] {
            let pool = Pool::new(workers);
            pool.pause();
            let inner = pool.clone();
            let stopper = pool.spawn(move || inner.shutdown()).unwrap();
            let behind: Vec<_> = (0..5).map(|i| pool.spawn(move || i).unwrap()).collect();
            pool.resume();
            let report = stopper.join().expect("the stopping job returns");
            assert_eq!(report.abandoned, 0);
            assert!(pool.is_closed());
            // Jobs queued before the shutdown still run: it drains.
            for (i, handle) in behind.into_iter().enumerate() {
                assert_eq!(handle.join(), Ok(i), "{workers} workers");
            }
            assert!(pool.submit(|| ()).unwrap_err().is_closed());
            pool.shutdown();
            assert_eq!(pool.stats().workers, 0);
            assert_eq!(pool.stats().completed, 6);
        }
    });
}

#[test]
fn a_job_that_drops_the_last_pool_clone_does_not_deadlock() {
    guard("job drops the last clone", || {
        let pool = Pool::new(2);
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        let (dropped_tx, dropped_rx) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        {
            let inner = pool.clone();
            let gate = gate.clone();
            pool.submit(move || {
                started_tx.send(()).unwrap();
                gate.wait();
                drop(inner); // the last clone: drains from a worker
                dropped_tx.send(()).unwrap();
            })
            .unwrap();
        }
        started_rx.recv().unwrap();
        let other = pool.spawn(|| "other").unwrap();
        drop(pool); // not the last: the job holds one
        gate.open();
        dropped_rx
            .recv()
            .expect("the job finished dropping its pool");
        assert_eq!(other.join(), Ok("other"));
    });
}

#[test]
fn a_job_that_calls_shutdown_now_on_its_own_pool_abandons_the_rest_without_deadlock() {
    guard("self shutdown_now", || {
        let pool = Pool::new(1);
        pool.pause();
        let inner = pool.clone();
        let stopper = pool
            .spawn_with(move |cx| {
                let report = inner.shutdown_now();
                (report, cx.is_cancelled())
            })
            .unwrap();
        let behind: Vec<_> = (0..3).map(|i| pool.spawn(move || i).unwrap()).collect();
        pool.resume();
        let (report, saw_cancel) = stopper.join().unwrap();
        assert!(
            saw_cancel,
            "shutdown_now trips the running job's own context"
        );
        assert_eq!(report.abandoned, 3);
        assert_eq!(report.cancelled, 0, "the caller is not waiting on itself");
        for handle in behind {
            assert_eq!(handle.join(), Err(JobError::Abandoned));
        }
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.abandoned, stats.workers), (1, 3, 0));
    });
}

#[test]
fn shutdown_waits_for_a_running_job_and_refuses_new_ones_meanwhile() {
    guard("shutdown waits", || {
        let pool = Pool::new(1);
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        blocker(&pool, &gate).recv().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let shutdown = {
            let pool = pool.clone();
            thread::spawn(move || {
                let report = pool.shutdown();
                done_tx.send(()).unwrap();
                report
            })
        };
        wait_until("the pool is closed", || pool.is_closed());
        assert!(pool.try_submit(|| ()).unwrap_err().is_closed());
        assert_eq!(
            done_rx.recv_timeout(STILL_BLOCKED),
            Err(RecvTimeoutError::Timeout),
            "shutdown returned while a job was still running"
        );
        gate.open();
        let report = shutdown.join().unwrap();
        assert_eq!(report.completed, 1);
    });
}
