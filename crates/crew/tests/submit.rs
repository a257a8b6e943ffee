//! Submitting work: construction and builder options, backpressure
//! (`submit` blocks, `try_submit` refuses, `submit_timeout` gives up), jobs
//! coming back in `SubmitError`, `spawn` and its `JobHandle` (join, timeout,
//! future), and `submit_batch`.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::{block_on, guard, wait_until, Gate};
use crew::{Pool, SubmitError, DEFAULT_QUEUE_CAPACITY};

/// Long enough for a thread that should stay blocked to have returned if the
/// pool were wrong; used only to assert that something did NOT happen.
const STILL_BLOCKED: Duration = Duration::from_millis(100);

#[test]
fn new_pool_runs_every_submitted_job_once() {
    guard("new_pool_runs_every_submitted_job_once", || {
        let pool = Pool::new(4);
        let runs = Arc::new(AtomicUsize::new(0));
        for _ in 0..2_000 {
            let runs = runs.clone();
            pool.submit(move || {
                runs.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        }
        pool.shutdown();
        assert_eq!(runs.load(Ordering::Relaxed), 2_000);
        let stats = pool.stats();
        assert_eq!(stats.submitted, 2_000);
        assert_eq!(stats.completed, 2_000);
    });
}

#[test]
fn new_pool_starts_the_requested_workers_with_the_default_queue_bound() {
    let pool = Pool::new(3);
    let stats = pool.stats();
    assert_eq!(stats.workers, 3);
    assert_eq!(stats.queue_capacity, Some(DEFAULT_QUEUE_CAPACITY));
    assert!(!pool.is_closed());
    assert!(!pool.is_paused());
    pool.shutdown();
}

#[test]
fn builder_sets_workers_and_queue_capacity() {
    let pool = Pool::builder().workers(5).queue_capacity(7).build();
    let stats = pool.stats();
    assert_eq!(stats.workers, 5);
    assert_eq!(stats.queue_capacity, Some(7));
    pool.shutdown();
}

#[test]
fn unbounded_pool_has_no_capacity_and_accepts_a_backlog_beyond_the_default_bound() {
    guard("unbounded backlog", || {
        let pool = Pool::builder().workers(1).unbounded().build();
        assert_eq!(pool.stats().queue_capacity, None);
        pool.pause();
        let backlog = DEFAULT_QUEUE_CAPACITY * 3;
        let runs = Arc::new(AtomicUsize::new(0));
        for _ in 0..backlog {
            let runs = runs.clone();
            // try_submit never reports Full on an unbounded queue.
            pool.try_submit(move || {
                runs.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        }
        assert_eq!(pool.stats().queued, backlog);
        pool.resume();
        pool.shutdown();
        assert_eq!(runs.load(Ordering::Relaxed), backlog);
    });
}

#[test]
#[should_panic(expected = "at least one worker")]
fn builder_with_zero_workers_panics() {
    let _ = Pool::builder().workers(0).build();
}

#[test]
#[should_panic(expected = "at least one worker")]
fn pool_new_with_zero_workers_panics() {
    let _ = Pool::new(0);
}

#[test]
#[should_panic(expected = "queue_capacity")]
fn builder_with_zero_queue_capacity_panics() {
    let _ = Pool::builder().workers(1).queue_capacity(0).build();
}

#[test]
fn thread_name_prefixes_every_worker_thread() {
    guard("thread_name", || {
        let pool = Pool::builder().workers(2).thread_name("ingest").build();
        let names: Vec<_> = (0..20)
            .map(|_| {
                pool.spawn(|| thread::current().name().map(str::to_owned))
                    .unwrap()
            })
            .collect();
        for name in names {
            let name = name.join().unwrap().expect("worker threads are named");
            assert!(name.starts_with("ingest-"), "worker thread named {name:?}");
        }
        pool.shutdown();
    });
}

#[test]
fn default_thread_name_prefix_is_crew() {
    guard("default thread_name", || {
        let pool = Pool::new(1);
        let name = pool
            .spawn(|| thread::current().name().map(str::to_owned))
            .unwrap()
            .join()
            .unwrap()
            .expect("worker threads are named");
        assert!(name.starts_with("crew-"), "worker thread named {name:?}");
    });
}

#[test]
fn stack_size_gives_workers_room_for_large_stack_frames() {
    // 8 MiB on the stack overflows a default 2 MiB thread stack (aborting the
    // test binary), so this only passes if the configured size is used.
    const FRAME: usize = 8 << 20;
    guard("stack_size", || {
        let pool = Pool::builder().workers(1).stack_size(64 << 20).build();
        let sum = pool
            .spawn(|| {
                let mut frame = [0u8; FRAME];
                for (i, byte) in frame.iter_mut().enumerate().step_by(4096) {
                    *byte = (i / 4096) as u8;
                }
                std::hint::black_box(&mut frame);
                frame.iter().map(|&b| u64::from(b)).sum::<u64>()
            })
            .unwrap()
            .join()
            .unwrap();
        let expected: u64 = (0..FRAME / 4096).map(|i| u64::from(i as u8)).sum();
        assert_eq!(sum, expected);
    });
}

#[test]
fn submit_blocks_while_the_queue_is_full_and_returns_once_there_is_room() {
    guard("submit backpressure", || {
        let pool = Pool::builder().workers(1).queue_capacity(2).build();
        pool.pause();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 0..2 {
            let order = order.clone();
            pool.submit(move || order.lock().unwrap().push(i)).unwrap();
        }
        assert_eq!(pool.stats().queued, 2);

        let (returned_tx, returned_rx) = mpsc::channel();
        let producer = {
            let pool = pool.clone();
            let order = order.clone();
            thread::spawn(move || {
                let result = pool.submit(move || order.lock().unwrap().push(2));
                returned_tx.send(result.is_ok()).unwrap();
            })
        };
        // The queue is full and paused: the producer cannot have got in.
        assert_eq!(
            returned_rx.recv_timeout(STILL_BLOCKED),
            Err(RecvTimeoutError::Timeout),
            "submit returned while the queue was full"
        );
        assert!(pool.stats().queued <= 2, "queue grew past its bound");

        pool.resume();
        assert!(returned_rx.recv().unwrap(), "blocked submit was refused");
        producer.join().unwrap();
        pool.wait_idle();
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert_eq!(pool.stats().rejected, 0);
    });
}

#[test]
fn queue_capacity_bounds_waiting_jobs_not_running_ones() {
    // "Maximum number of jobs waiting to start": a job a worker is running
    // no longer takes a slot, so with every worker busy the queue still
    // holds exactly `capacity` more jobs, and `stats().queued` counts only
    // those.
    guard("capacity counts waiting jobs", || {
        for (workers, capacity) in [(1, 64), (2, 64), (1, 8), (3, 1024)] {
            let pool = Pool::builder()
                .workers(workers)
                .queue_capacity(capacity)
                .build();
            let gate = Gate::new();
            let _open = gate.open_on_drop();
            let (started_tx, started_rx) = mpsc::channel();
            for _ in 0..workers {
                let (gate, started_tx) = (gate.clone(), started_tx.clone());
                pool.submit(move || {
                    started_tx.send(()).unwrap();
                    gate.wait();
                })
                .unwrap();
            }
            for _ in 0..workers {
                started_rx.recv().unwrap();
            }
            assert_eq!(
                pool.stats().queued,
                0,
                "{workers} workers, capacity {capacity}: running jobs counted as queued"
            );
            let mut accepted = 0;
            while pool.try_submit(|| ()).is_ok() {
                accepted += 1;
                assert!(
                    accepted <= capacity,
                    "the queue took more than its capacity"
                );
            }
            assert_eq!(
                accepted, capacity,
                "{workers} workers, capacity {capacity}: with every worker busy, the queue \
                 took {accepted} waiting jobs"
            );
            assert_eq!(pool.stats().queued, capacity);
            gate.open();
            pool.shutdown();
            assert_eq!(pool.stats().completed as usize, workers + capacity);
        }
    });
}

#[test]
fn try_submit_returns_full_at_once_with_the_same_job() {
    let pool = Pool::builder().workers(1).queue_capacity(2).build();
    pool.pause();
    pool.submit(|| ()).unwrap();
    pool.try_submit(|| ()).unwrap();

    let ran = Arc::new(AtomicBool::new(false));
    let job = {
        let ran = ran.clone();
        move || ran.store(true, Ordering::SeqCst)
    };
    let err = pool.try_submit(job).unwrap_err();
    assert!(matches!(err, SubmitError::Full(_)), "got {err:?}");
    assert!(!err.is_closed());
    assert_eq!(err.to_string(), "the pool's queue is full");
    // The job comes back untouched: calling it runs the caller's closure.
    let job = err.into_inner();
    assert!(!ran.load(Ordering::SeqCst));
    job();
    assert!(ran.load(Ordering::SeqCst));

    let stats = pool.stats();
    assert_eq!(stats.submitted, 2);
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.queued, 2);
    pool.resume();
    pool.shutdown();
}

#[test]
fn submit_timeout_returns_timeout_with_the_job_when_the_queue_stays_full() {
    guard("submit_timeout gives up", || {
        let pool = Pool::builder().workers(1).queue_capacity(1).build();
        pool.pause();
        pool.submit(|| ()).unwrap();

        let err = pool
            .submit_timeout(|| Ok::<u32, ()>(41 + 1), Duration::from_millis(20))
            .unwrap_err();
        assert!(matches!(err, SubmitError::Timeout(_)), "got {err:?}");
        assert!(!err.is_closed());
        assert_eq!(
            err.into_inner()(),
            Ok(42),
            "the job comes back and can be run"
        );
        assert_eq!(pool.stats().rejected, 1);
        assert_eq!(pool.stats().submitted, 1);
        pool.resume();
        pool.shutdown();
    });
}

#[test]
fn submit_timeout_succeeds_when_room_frees_up_in_time() {
    guard("submit_timeout gets in", || {
        let pool = Pool::builder().workers(1).queue_capacity(1).build();
        pool.pause();
        pool.submit(|| ()).unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let producer = {
            let pool = pool.clone();
            let ran = ran.clone();
            thread::spawn(move || {
                pool.submit_timeout(
                    move || ran.store(true, Ordering::SeqCst),
                    Duration::from_secs(3_600),
                )
                .is_ok()
            })
        };
        pool.resume();
        assert!(producer.join().unwrap(), "submit_timeout refused the job");
        pool.shutdown();
        assert!(ran.load(Ordering::SeqCst));
    });
}

#[test]
fn every_kind_of_submission_after_shutdown_returns_closed_with_the_job() {
    let pool = Pool::new(2);
    pool.shutdown();
    assert!(pool.is_closed());

    let err = pool.submit(|| ()).unwrap_err();
    assert!(err.is_closed(), "submit: {err:?}");
    assert_eq!(err.to_string(), "the pool is shut down");
    err.into_inner()();

    let err = pool.try_submit(|| Ok::<u8, ()>(1)).unwrap_err();
    assert!(matches!(err, SubmitError::Closed(_)), "try_submit: {err:?}");
    assert_eq!(err.into_inner()(), Ok(1));

    let err = pool
        .submit_timeout(|| (), Duration::from_secs(1))
        .unwrap_err();
    assert!(err.is_closed(), "submit_timeout: {err:?}");

    let err = pool.spawn(|| 3).unwrap_err();
    assert!(err.is_closed(), "spawn: {err:?}");
    assert_eq!(err.into_inner()(), 3);

    let err = pool.submit_keyed(&"k", || ()).unwrap_err();
    assert!(err.is_closed(), "submit_keyed: {err:?}");

    let err = pool.spawn_keyed(&7u32, || 4).unwrap_err();
    assert!(err.is_closed(), "spawn_keyed: {err:?}");
    assert_eq!(err.into_inner()(), 4);

    let err = pool.spawn_with(|cx| cx.is_cancelled()).unwrap_err();
    assert!(err.is_closed(), "spawn_with: {err:?}");

    let err = pool.job().key(&1).submit(|_| ()).unwrap_err();
    assert!(err.is_closed(), "job().submit: {err:?}");

    let err = pool.job().try_submit(|_| ()).unwrap_err();
    assert!(err.is_closed(), "job().try_submit: {err:?}");

    let err = pool.job().spawn(|_| 5).unwrap_err();
    assert!(err.is_closed(), "job().spawn: {err:?}");

    let jobs: Vec<_> = (0..3).map(|i| move || Ok::<i32, ()>(i * 10)).collect();
    let err = pool.submit_batch(jobs).unwrap_err();
    assert!(err.is_closed(), "submit_batch: {err:?}");
    let back: Vec<_> = err.into_inner().into_iter().map(|job| job()).collect();
    assert_eq!(back, vec![Ok(0), Ok(10), Ok(20)]);

    let stats = pool.stats();
    assert_eq!(stats.submitted, 0);
    assert_eq!(stats.rejected, 10 + 3);
}

#[test]
fn submit_blocked_on_a_full_queue_returns_closed_when_the_pool_shuts_down() {
    guard("blocked submit vs shutdown", || {
        let pool = Pool::builder().workers(1).queue_capacity(1).build();
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        let (started_tx, started_rx) = mpsc::channel();
        {
            let gate = gate.clone();
            pool.submit(move || {
                started_tx.send(()).unwrap();
                gate.wait();
            })
            .unwrap();
        }
        started_rx.recv().unwrap();
        let queued_ran = Arc::new(AtomicBool::new(false));
        {
            let queued_ran = queued_ran.clone();
            pool.submit(move || queued_ran.store(true, Ordering::SeqCst))
                .unwrap();
        }
        // The worker is busy and the one slot is taken: this producer blocks.
        let blocked_ran = Arc::new(AtomicBool::new(false));
        let producer = {
            let pool = pool.clone();
            let blocked_ran = blocked_ran.clone();
            thread::spawn(move || {
                let err = pool
                    .submit(move || blocked_ran.store(true, Ordering::SeqCst))
                    .expect_err("a full queue cannot accept until shutdown closes it");
                assert!(err.is_closed(), "expected Closed, got {err:?}");
                err.into_inner()
            })
        };
        let shutdown = {
            let pool = pool.clone();
            thread::spawn(move || pool.shutdown())
        };
        wait_until("the pool is closed", || pool.is_closed());
        let job = producer.join().unwrap();
        assert!(!blocked_ran.load(Ordering::SeqCst));
        job();
        assert!(
            blocked_ran.load(Ordering::SeqCst),
            "the job in Closed is the caller's closure"
        );
        gate.open();
        let report = shutdown.join().unwrap();
        assert!(
            queued_ran.load(Ordering::SeqCst),
            "shutdown drains the queue"
        );
        assert_eq!(report.abandoned, 0);
        let stats = pool.stats();
        assert_eq!(stats.submitted, 2);
        assert_eq!(stats.completed, 2);
        assert_eq!(stats.rejected, 1);
    });
}

#[test]
fn spawn_join_returns_the_jobs_value() {
    guard("spawn join", || {
        let pool = Pool::new(2);
        let handles: Vec<_> = (0..100u64)
            .map(|i| pool.spawn(move || i * i).unwrap())
            .collect();
        let values: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(values, (0..100u64).map(|i| i * i).collect::<Vec<_>>());
    });
}

#[test]
fn join_blocks_until_the_job_has_finished() {
    guard("join blocks", || {
        let pool = Pool::new(1);
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        let handle = {
            let gate = gate.clone();
            pool.spawn(move || {
                gate.wait();
                "done"
            })
            .unwrap()
        };
        let (joined_tx, joined_rx) = mpsc::channel();
        let joiner = thread::spawn(move || joined_tx.send(handle.join()).unwrap());
        assert_eq!(
            joined_rx.recv_timeout(STILL_BLOCKED),
            Err(RecvTimeoutError::Timeout),
            "join returned before the job finished"
        );
        gate.open();
        assert_eq!(joined_rx.recv().unwrap(), Ok("done"));
        joiner.join().unwrap();
    });
}

#[test]
fn join_timeout_gives_the_handle_back_while_the_job_is_queued() {
    guard("join_timeout", || {
        let pool = Pool::new(1);
        pool.pause();
        let handle = pool.spawn(|| 7).unwrap();
        assert!(!handle.is_finished());
        let handle = handle
            .join_timeout(Duration::from_millis(10))
            .expect_err("a paused pool cannot have run the job");
        assert!(!handle.is_finished());
        pool.resume();
        assert_eq!(
            handle.join_timeout(Duration::from_secs(3_600)).ok(),
            Some(Ok(7))
        );
    });
}

#[test]
fn is_finished_turns_true_when_the_result_is_ready() {
    guard("is_finished", || {
        let pool = Pool::new(1);
        let handle = pool.spawn(|| 1).unwrap();
        wait_until("the handle is finished", || handle.is_finished());
        assert_eq!(handle.join(), Ok(1));
    });
}

#[test]
fn dropping_a_handle_does_not_cancel_the_job() {
    guard("detached handle", || {
        let pool = Pool::new(1);
        pool.pause();
        let ran = Arc::new(AtomicBool::new(false));
        {
            let ran = ran.clone();
            drop(
                pool.spawn(move || ran.store(true, Ordering::SeqCst))
                    .unwrap(),
            );
        }
        pool.resume();
        pool.wait_idle();
        assert!(ran.load(Ordering::SeqCst));
        pool.shutdown();
        assert_eq!(pool.stats().completed, 1);
    });
}

#[test]
fn job_handle_is_a_future_that_resolves_to_the_result() {
    guard("block_on a handle", || {
        let pool = Pool::new(2);
        let handle = pool.spawn(|| String::from("from a worker")).unwrap();
        assert_eq!(block_on(handle), Ok(String::from("from a worker")));

        // Several handles awaited in sequence inside one future.
        let handles: Vec<_> = (0..10)
            .map(|i| pool.spawn(move || i + 1).unwrap())
            .collect();
        let total = block_on(async move {
            let mut total = 0;
            for handle in handles {
                total += handle.await.unwrap();
            }
            total
        });
        assert_eq!(total, 55);
    });
}

#[test]
fn job_handle_polled_with_a_noop_waker_eventually_becomes_ready() {
    guard("noop waker polling", || {
        let pool = Pool::new(1);
        let mut handle = pool.spawn(|| 99).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let result = loop {
            match Pin::new(&mut handle).poll(&mut cx) {
                Poll::Ready(result) => break result,
                Poll::Pending => thread::yield_now(),
            }
        };
        assert_eq!(result, Ok(99));
    });
}

/// A waker that reports each wake on a channel.
struct ChannelWaker(std::sync::Mutex<mpsc::Sender<()>>);

impl Wake for ChannelWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

#[test]
fn job_handle_future_wakes_its_waker_when_the_job_ends() {
    guard("future wakes", || {
        let pool = Pool::new(1);
        pool.pause();
        let mut handle = pool.spawn(|| "woken").unwrap();
        let (woke_tx, woke_rx) = mpsc::channel();
        let waker = Waker::from(Arc::new(ChannelWaker(std::sync::Mutex::new(woke_tx))));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut handle).poll(&mut cx).is_pending());
        pool.resume();
        woke_rx
            .recv()
            .expect("the waker is called when the job ends");
        assert_eq!(
            Pin::new(&mut handle).poll(&mut cx),
            Poll::Ready(Ok("woken"))
        );
    });
}

#[test]
fn submit_batch_queues_every_job_even_beyond_the_queue_bound() {
    guard("submit_batch", || {
        let pool = Pool::builder().workers(2).queue_capacity(16).build();
        let runs = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..1_000)
            .map(|_| {
                let runs = runs.clone();
                move || {
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            })
            .collect();
        assert_eq!(pool.submit_batch(jobs).unwrap(), 1_000);
        pool.shutdown();
        assert_eq!(runs.load(Ordering::Relaxed), 1_000);
        let stats = pool.stats();
        assert_eq!(stats.submitted, 1_000);
        assert_eq!(stats.completed, 1_000);
    });
}

#[test]
fn submit_batch_of_an_iterator_without_size_hint_queues_everything() {
    guard("submit_batch unsized", || {
        let pool = Pool::builder().workers(2).queue_capacity(4).build();
        let runs = Arc::new(AtomicUsize::new(0));
        let jobs = (0..300).filter(|i| i % 3 != 0).map(|_| {
            let runs = runs.clone();
            move || {
                runs.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert_eq!(pool.submit_batch(jobs).unwrap(), 200);
        pool.shutdown();
        assert_eq!(runs.load(Ordering::Relaxed), 200);
    });
}

#[test]
fn submit_batch_interrupted_by_shutdown_gives_back_exactly_the_jobs_not_queued() {
    guard("submit_batch vs shutdown", || {
        let pool = Pool::builder().workers(1).queue_capacity(4).build();
        let gate = Gate::new();
        let _open = gate.open_on_drop();
        let (started_tx, started_rx) = mpsc::channel();
        {
            let gate = gate.clone();
            pool.submit(move || {
                started_tx.send(()).unwrap();
                gate.wait();
            })
            .unwrap();
        }
        started_rx.recv().unwrap();
        let ran: Arc<Vec<AtomicUsize>> = Arc::new((0..100).map(|_| AtomicUsize::new(0)).collect());
        let batch = {
            let pool = pool.clone();
            let ran = ran.clone();
            thread::spawn(move || {
                let jobs: Vec<_> = (0..100)
                    .map(|i| {
                        let ran = ran.clone();
                        move || {
                            ran[i].fetch_add(1, Ordering::SeqCst);
                        }
                    })
                    .collect();
                match pool.submit_batch(jobs) {
                    Ok(n) => panic!("a 4-slot queue with a stuck worker accepted {n} of 100"),
                    Err(err) => {
                        assert!(err.is_closed(), "got {err:?}");
                        err.into_inner()
                    }
                }
            })
        };
        let shutdown = {
            let pool = pool.clone();
            thread::spawn(move || pool.shutdown())
        };
        wait_until("the pool is closed", || pool.is_closed());
        gate.open();
        let given_back = batch.join().unwrap();
        let report = shutdown.join().unwrap();
        let ran_in_pool = ran.iter().filter(|r| r.load(Ordering::SeqCst) == 1).count();
        assert!(ran.iter().all(|r| r.load(Ordering::SeqCst) <= 1));
        // Only a prefix can have been queued, and it all ran.
        assert!(ran[..ran_in_pool]
            .iter()
            .all(|r| r.load(Ordering::SeqCst) == 1));
        assert_eq!(ran_in_pool + given_back.len(), 100);
        // The jobs given back are exactly the ones that did not run.
        let given_back_count = given_back.len();
        for job in given_back {
            job();
        }
        assert!(
            ran.iter().all(|r| r.load(Ordering::SeqCst) == 1),
            "every job of the batch either ran in the pool or came back, once"
        );
        assert_eq!(report.abandoned, 0);
        let stats = pool.stats();
        assert_eq!(stats.submitted as usize, 1 + ran_in_pool);
        assert_eq!(stats.rejected as usize, given_back_count);
    });
}

#[test]
fn clones_share_one_pool_and_can_submit_from_many_threads() {
    guard("clones share", || {
        let pool = Pool::new(3);
        let runs = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(4));
        let producers: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                let runs = runs.clone();
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    for _ in 0..250 {
                        let runs = runs.clone();
                        pool.submit(move || {
                            runs.fetch_add(1, Ordering::Relaxed);
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
        assert_eq!(runs.load(Ordering::Relaxed), 1_000);
        assert_eq!(pool.stats().submitted, 1_000);
    });
}

#[test]
fn spawn_with_passes_a_context_that_is_not_cancelled_by_default() {
    guard("spawn_with context", || {
        let pool = Pool::new(1);
        let handle = pool
            .spawn_with(|cx| (cx.is_cancelled(), cx.deadline().is_none()))
            .unwrap();
        assert_eq!(handle.join(), Ok((false, true)));
    });
}

#[test]
fn job_builder_try_submit_and_submit_timeout_return_the_job_when_full() {
    guard("JobBuilder backpressure", || {
        let pool = Pool::builder().workers(1).queue_capacity(1).build();
        pool.pause();
        pool.job().submit(|_| ()).unwrap();
        let err = pool.job().try_submit(|_| ()).unwrap_err();
        assert!(matches!(err, SubmitError::Full(_)), "got {err:?}");
        let err = pool
            .job()
            .key(&"k")
            .submit_timeout(|_| (), Duration::from_millis(10))
            .unwrap_err();
        assert!(matches!(err, SubmitError::Timeout(_)), "got {err:?}");
        assert_eq!(pool.stats().rejected, 2);
        pool.resume();
        pool.shutdown();
    });
}

#[test]
fn spawn_of_a_job_returning_err_hands_the_err_to_the_caller() {
    guard("spawn returning Err", || {
        let pool = Pool::new(1);
        let handle = pool.spawn(|| Err::<u8, _>("nope")).unwrap();
        assert_eq!(handle.join(), Ok(Err::<u8, _>("nope")));
        // Only fire-and-forget jobs count an Err as failed: here the caller
        // sees it.
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.failed), (1, 0));
    });
}
