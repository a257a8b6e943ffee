//! Deadlines and cancellation: expired jobs never run, cancelled handles and
//! tokens stop queued jobs and trip running ones, and the stopping shutdowns
//! (`shutdown_now`, `shutdown_timeout`) cancel running contexts, abandon the
//! queue, and report it exactly.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{guard, wait_past, wait_until, Gate};
use crew::{CancelToken, JobContext, JobError, Pool};

/// A job body that waits until its context says stop, then returns `value`.
fn until_cancelled<T>(cx: &JobContext<'_>, value: T) -> T {
    while !cx.is_cancelled() {
        thread::yield_now();
    }
    value
}

#[test]
fn a_queued_job_past_its_deadline_is_not_run_and_expires() {
    guard("expired deadline", || {
        let pool = Pool::new(1);
        pool.pause();
        let ran = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now();
        let handle = {
            let ran = ran.clone();
            pool.job()
                .deadline(deadline)
                .spawn(move |_| ran.store(true, Ordering::SeqCst))
                .unwrap()
        };
        let detached_ran = Arc::new(AtomicBool::new(false));
        {
            let detached_ran = detached_ran.clone();
            pool.job()
                .deadline(deadline)
                .submit(move |_| detached_ran.store(true, Ordering::SeqCst))
                .unwrap();
        }
        wait_past(deadline);
        pool.resume();
        assert_eq!(handle.join(), Err(JobError::Expired));
        pool.shutdown();
        assert!(!ran.load(Ordering::SeqCst), "an expired job ran");
        assert!(!detached_ran.load(Ordering::SeqCst), "an expired job ran");
        let stats = pool.stats();
        assert_eq!(stats.expired, 2);
        assert_eq!(stats.completed, 0);
    });
}

#[test]
fn a_short_deadline_that_passes_while_paused_expires_the_job() {
    guard("short deadline", || {
        let pool = Pool::new(2);
        pool.pause();
        let deadline = Instant::now() + Duration::from_millis(5);
        let handle = pool.job().deadline(deadline).spawn(|_| "ran").unwrap();
        let keyed = pool
            .job()
            .key(&"k")
            .deadline_in(Duration::from_millis(5))
            .spawn(|_| "ran")
            .unwrap();
        let no_deadline = pool.spawn(|| "ran").unwrap();
        // Wall time only, no other thread involved: the pool is paused.
        wait_past(deadline + Duration::from_millis(5));
        pool.resume();
        assert_eq!(handle.join(), Err(JobError::Expired));
        assert_eq!(keyed.join(), Err(JobError::Expired));
        assert_eq!(no_deadline.join(), Ok("ran"));
    });
}

#[test]
fn a_job_started_before_its_deadline_runs_to_completion_and_sees_it() {
    guard("deadline in the future", || {
        let pool = Pool::new(1);
        let deadline = Instant::now() + Duration::from_secs(3_600);
        let handle = pool
            .job()
            .deadline(deadline)
            .spawn(move |cx| cx.deadline())
            .unwrap();
        assert_eq!(handle.join(), Ok(Some(deadline)));
    });
}

#[test]
fn cancelling_a_queued_job_resolves_its_handle_at_once_even_while_paused_and_it_never_runs() {
    guard("cancel queued", || {
        let pool = Pool::new(1);
        pool.pause();
        let ran = Arc::new(AtomicBool::new(false));
        let handle = {
            let ran = ran.clone();
            pool.spawn(move || ran.store(true, Ordering::SeqCst))
                .unwrap()
        };
        handle.cancel();
        assert!(handle.is_finished(), "cancel resolves the handle at once");
        // Still paused: join cannot be waiting for a worker.
        assert_eq!(handle.join(), Err(JobError::Cancelled));
        pool.resume();
        pool.shutdown();
        assert!(!ran.load(Ordering::SeqCst), "a cancelled job ran");
        let stats = pool.stats();
        assert_eq!(stats.cancelled, 1);
        assert_eq!(stats.completed, 0);
    });
}

#[test]
fn cancelling_a_queued_future_resolves_it_as_cancelled() {
    guard("cancel a future", || {
        let pool = Pool::new(1);
        pool.pause();
        let handle = pool.spawn(|| 1).unwrap();
        handle.cancel();
        assert_eq!(common::block_on(handle), Err(JobError::Cancelled));
        pool.resume();
    });
}

#[test]
fn cancelling_a_running_job_trips_its_context_and_join_returns_what_it_returns() {
    guard("cancel running", || {
        let pool = Pool::new(1);
        let (started_tx, started_rx) = mpsc::channel();
        let handle = pool
            .spawn_with(move |cx| {
                started_tx.send(cx.is_cancelled()).unwrap();
                until_cancelled(cx, "stopped early")
            })
            .unwrap();
        assert!(!started_rx.recv().unwrap(), "not cancelled before cancel()");
        handle.cancel();
        assert_eq!(handle.join(), Ok("stopped early"));
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.cancelled), (1, 0));
    });
}

#[test]
fn cancelling_a_finished_job_keeps_its_result() {
    guard("cancel finished", || {
        let pool = Pool::new(1);
        let handle = pool.spawn(|| 5).unwrap();
        wait_until("the job finished", || handle.is_finished());
        handle.cancel();
        assert_eq!(handle.join(), Ok(5));
    });
}

#[test]
fn a_cancel_token_shared_by_several_jobs_stops_the_queued_ones_and_trips_the_running_ones() {
    guard("shared token", || {
        let pool = Pool::new(2);
        let token = CancelToken::new();
        let both_running = Arc::new(Barrier::new(3));
        let running: Vec<_> = (0..2)
            .map(|i| {
                let both_running = both_running.clone();
                pool.job()
                    .token(token.clone())
                    .spawn(move |cx| {
                        both_running.wait();
                        until_cancelled(cx, i)
                    })
                    .unwrap()
            })
            .collect();
        both_running.wait();
        let ran = Arc::new(AtomicUsize::new(0));
        let queued: Vec<_> = (0..3)
            .map(|_| {
                let ran = ran.clone();
                pool.job()
                    .token(token.clone())
                    .spawn(move |_| {
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap()
            })
            .collect();
        {
            let ran = ran.clone();
            pool.job()
                .token(token.clone())
                .submit(move |_| {
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        }
        let untouched = pool.spawn(|| "no token").unwrap();
        assert!(!token.is_cancelled());
        token.cancel();
        assert!(token.is_cancelled());
        for (i, handle) in running.into_iter().enumerate() {
            assert_eq!(handle.join(), Ok(i), "a running job sees the token");
        }
        for handle in queued {
            assert_eq!(handle.join(), Err(JobError::Cancelled));
        }
        assert_eq!(untouched.join(), Ok("no token"));
        pool.shutdown();
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "a job with a cancelled token ran"
        );
        let stats = pool.stats();
        assert_eq!(stats.cancelled, 4);
        assert_eq!(stats.completed, 3);
    });
}

#[test]
fn a_token_cancelled_before_submission_stops_the_job_from_starting() {
    guard("pre-cancelled token", || {
        let pool = Pool::new(1);
        let token = CancelToken::new();
        token.cancel();
        let handle = pool.job().token(token.clone()).spawn(|_| ()).unwrap();
        assert_eq!(handle.join(), Err(JobError::Cancelled));
        let clone = token.clone();
        assert!(clone.is_cancelled(), "clones share the flag");
        assert!(!CancelToken::default().is_cancelled());
    });
}

#[test]
fn shutdown_now_trips_running_contexts_abandons_the_queue_and_reports_exactly() {
    guard("shutdown_now", || {
        let pool = Pool::new(2);
        let both_running = Arc::new(Barrier::new(3));
        let (saw_cancel_tx, saw_cancel_rx) = mpsc::channel();
        let release = Gate::new();
        let _open = release.open_on_drop();
        let running: Vec<_> = (0..2)
            .map(|i| {
                let both_running = both_running.clone();
                let saw_cancel_tx = saw_cancel_tx.clone();
                let release = release.clone();
                pool.spawn_with(move |cx| {
                    both_running.wait();
                    let value = until_cancelled(cx, i);
                    saw_cancel_tx.send(()).unwrap();
                    // Still running when shutdown_now returns: counted as
                    // cancelled, not completed.
                    release.wait();
                    value
                })
                .unwrap()
            })
            .collect();
        both_running.wait();
        let ran = Arc::new(AtomicUsize::new(0));
        let queued: Vec<_> = (0..5)
            .map(|_| {
                let ran = ran.clone();
                pool.spawn(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
            })
            .collect();
        for key in 0..3 {
            let ran = ran.clone();
            pool.submit_keyed(&key, move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }

        let report = pool.shutdown_now();
        assert_eq!(report.completed, 0);
        assert_eq!(report.abandoned, 8);
        assert_eq!(report.cancelled, 2);
        assert!(pool.is_closed());
        assert!(pool.submit(|| ()).unwrap_err().is_closed());
        // Abandoned handles resolve without waiting for the running jobs.
        for handle in queued {
            assert_eq!(handle.join(), Err(JobError::Abandoned));
        }
        saw_cancel_rx.recv().unwrap();
        saw_cancel_rx.recv().unwrap();
        release.open();
        for (i, handle) in running.into_iter().enumerate() {
            assert_eq!(handle.join(), Ok(i));
        }
        pool.shutdown(); // waits for the workers to exit
        assert_eq!(ran.load(Ordering::SeqCst), 0, "an abandoned job ran");
        let stats = pool.stats();
        assert_eq!(stats.abandoned, 8);
        assert_eq!(stats.completed, 2);
        assert_eq!(stats.workers, 0);
        assert_eq!(stats.queued, 0);
        assert_eq!(stats.lanes, 0);
    });
}

#[test]
fn shutdown_now_abandons_jobs_waiting_behind_a_running_lane() {
    guard("shutdown_now and lanes", || {
        let pool = Pool::new(2);
        let (started_tx, started_rx) = mpsc::channel();
        let head = pool
            .spawn_keyed(&"busy", move || {
                started_tx.send(()).unwrap();
            })
            .map(|_| ());
        // Re-do it with a job that waits for cancellation, through the builder.
        drop(head);
        started_rx.recv().unwrap();
        pool.wait_idle();

        let (running_tx, running_rx) = mpsc::channel();
        let head = pool
            .job()
            .key(&"busy")
            .spawn(move |cx| {
                running_tx.send(()).unwrap();
                until_cancelled(cx, "head")
            })
            .unwrap();
        running_rx.recv().unwrap();
        let behind: Vec<_> = (0..4)
            .map(|i| pool.spawn_keyed(&"busy", move || i).unwrap())
            .collect();
        assert_eq!(pool.stats().queued, 4);
        let report = pool.shutdown_now();
        assert_eq!(report.abandoned, 4);
        for handle in behind {
            assert_eq!(handle.join(), Err(JobError::Abandoned));
        }
        assert_eq!(head.join(), Ok("head"));
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!(stats.abandoned, 4);
        assert_eq!(
            stats.lanes, 0,
            "the lane is gone once its running job ended"
        );
        assert_eq!(stats.queued, 0);
    });
}

#[test]
fn shutdown_now_on_a_paused_pool_runs_none_of_the_queued_jobs() {
    guard("shutdown_now of a paused pool", || {
        for round in 0..50 {
            let pool = Pool::new(2);
            pool.pause();
            let ran = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..300)
                .map(|_| {
                    let ran = ran.clone();
                    pool.spawn(move || {
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap()
                })
                .collect();
            let report = pool.shutdown_now();
            let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            pool.shutdown();
            let ran = ran.load(Ordering::SeqCst);
            assert_eq!(
                ran, 0,
                "round {round}: shutdown_now of a paused pool ran {ran} of its 300 queued jobs \
                 instead of dropping them (report: {report:?})"
            );
            assert!(results.iter().all(|r| *r == Err(JobError::Abandoned)));
            assert_eq!(report.abandoned, 300, "round {round}");
            assert_eq!(pool.stats().abandoned, 300, "round {round}");
        }
    });
}

#[test]
fn shutdown_now_report_counts_every_job_it_discards_even_when_workers_help() {
    // Workers that come free while shutdown_now runs discard queued jobs too;
    // the report must still count every job that ended up abandoned.
    guard("shutdown_now report vs helping workers", || {
        for round in 0..50 {
            let pool = Pool::new(2);
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
            let handles: Vec<_> = (0..300).map(|i| pool.spawn(move || i).unwrap()).collect();
            gate.open();
            let report = pool.shutdown_now();
            eprintln!("round {round}: shutdown_now returned {report:?}");
            let mut abandoned = 0;
            for (i, handle) in handles.into_iter().enumerate() {
                match handle.join_timeout(Duration::from_secs(30)) {
                    Ok(Ok(value)) => assert_eq!(value, i),
                    Ok(Err(JobError::Abandoned)) => abandoned += 1,
                    Ok(Err(other)) => panic!("round {round}, job {i}: {other:?}"),
                    Err(_) => panic!(
                        "round {round}: the handle of job {i} never resolved after \
                         shutdown_now ({report:?}): {:?}",
                        pool.stats()
                    ),
                }
            }
            eprintln!("round {round}: all handles resolved; draining");
            pool.shutdown();
            eprintln!("round {round}: drained");
            assert_eq!(pool.stats().abandoned, abandoned, "round {round}");
            assert_eq!(
                report.abandoned, abandoned,
                "round {round}: shutdown_now reported {} abandoned, but {abandoned} handles \
                 say Abandoned",
                report.abandoned
            );
        }
    });
}

#[test]
fn shutdown_timeout_that_drains_in_time_runs_everything() {
    guard("shutdown_timeout drains", || {
        let pool = Pool::new(2);
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let ran = ran.clone();
            pool.submit(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let report = pool.shutdown_timeout(Duration::from_secs(3_600));
        assert_eq!(ran.load(Ordering::SeqCst), 100);
        assert_eq!((report.abandoned, report.cancelled), (0, 0));
        let stats = pool.stats();
        assert_eq!(stats.completed, 100);
        assert_eq!(stats.workers, 0, "joined");
    });
}

#[test]
fn shutdown_timeout_cancels_running_jobs_and_abandons_queued_ones_at_the_deadline() {
    guard("shutdown_timeout expires", || {
        let pool = Pool::new(1);
        let (started_tx, started_rx) = mpsc::channel();
        let release = Gate::new();
        let _open = release.open_on_drop();
        let running = {
            let release = release.clone();
            pool.spawn_with(move |cx| {
                started_tx.send(()).unwrap();
                let value = until_cancelled(cx, "cancelled by the deadline");
                release.wait();
                value
            })
            .unwrap()
        };
        started_rx.recv().unwrap();
        let queued: Vec<_> = (0..3).map(|i| pool.spawn(move || i).unwrap()).collect();
        // The running job only stops when cancelled, so the drain cannot
        // finish before the timeout: the outcome does not depend on timing.
        let report = pool.shutdown_timeout(Duration::from_millis(20));
        assert_eq!(report.completed, 0);
        assert_eq!(report.abandoned, 3);
        assert_eq!(report.cancelled, 1);
        for handle in queued {
            assert_eq!(handle.join(), Err(JobError::Abandoned));
        }
        release.open();
        assert_eq!(running.join(), Ok("cancelled by the deadline"));
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.abandoned), (1, 3));
    });
}

#[test]
fn every_handle_resolves_exactly_once_when_cancel_races_the_start() {
    guard("cancel vs start", || {
        let pool = Pool::new(2);
        for _ in 0..20 {
            let runs: Arc<Vec<AtomicUsize>> =
                Arc::new((0..200).map(|_| AtomicUsize::new(0)).collect());
            let handles: Vec<_> = (0..200)
                .map(|i| {
                    let runs = runs.clone();
                    pool.spawn(move || {
                        runs[i].fetch_add(1, Ordering::SeqCst);
                        i
                    })
                    .unwrap()
                })
                .collect();
            for handle in handles.iter().step_by(2) {
                handle.cancel();
            }
            for (i, handle) in handles.into_iter().enumerate() {
                match handle.join() {
                    Ok(value) => {
                        assert_eq!(value, i);
                        assert_eq!(runs[i].load(Ordering::SeqCst), 1, "job {i}");
                    }
                    Err(JobError::Cancelled) => {
                        assert!(i % 2 == 0, "job {i} was never cancelled");
                        pool.wait_idle();
                        assert_eq!(runs[i].load(Ordering::SeqCst), 0, "cancelled job {i} ran");
                    }
                    Err(other) => panic!("job {i}: {other:?}"),
                }
            }
        }
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!(stats.completed + stats.cancelled, 4_000);
    });
}
