#![cfg(loom)]
//! loom models of the pool's core protocols, driven through the public API.
//!
//! Run with (a separate target dir keeps the normal build intact):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p crew --release --test loom
//! ```
//!
//! Every model ends with the pool shut down and its workers joined (or in
//! `wait_idle`): a lost wake-up leaves a thread blocked forever, which loom
//! reports as a deadlock.

use std::sync::atomic::Ordering::SeqCst;

use crew::{JobError, Pool, SubmitError};
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Runs `f` under every interleaving with at most `preemptions` forced
/// context switches.
fn check(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(f);
}

fn pool(workers: usize, capacity: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .queue_capacity(capacity)
        .max_spinning(1)
        .build()
}

/// Per-job counts: how often each job ran and how often its closure was
/// dropped (run or not, a closure is dropped exactly once).
struct Log {
    ran: Vec<AtomicUsize>,
    dropped: Vec<AtomicUsize>,
}

impl Log {
    fn new(jobs: usize) -> Arc<Log> {
        Arc::new(Log {
            ran: (0..jobs).map(|_| AtomicUsize::new(0)).collect(),
            dropped: (0..jobs).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    fn ran(&self, job: usize) -> usize {
        self.ran[job].load(SeqCst)
    }

    fn dropped(&self, job: usize) -> usize {
        self.dropped[job].load(SeqCst)
    }
}

/// Captured by a job's closure: counts the run, and the drop.
struct Guard {
    job: usize,
    log: Arc<Log>,
}

impl Guard {
    fn run(&self) {
        self.log.ran[self.job].fetch_add(1, SeqCst);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.log.dropped[self.job].fetch_add(1, SeqCst);
    }
}

/// A fire-and-forget job that records itself in `log`.
fn tracked(log: &Arc<Log>, job: usize) -> impl FnOnce() + Send + 'static {
    let guard = Guard {
        job,
        log: log.clone(),
    };
    move || guard.run()
}

/// What happened to one submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Accepted,
    /// Refused; the error carried the job back (and it was dropped unrun).
    Rejected,
}

fn fate<F: FnOnce()>(result: Result<(), SubmitError<F>>) -> Fate {
    match result {
        Ok(()) => Fate::Accepted,
        Err(error) => {
            // The refused job comes back in the error, unrun.
            drop(error.into_inner());
            Fate::Rejected
        }
    }
}

// ---------------------------------------------------------------------------
// 1. submit/take hand-off

/// A producer submits two jobs while the worker takes them: both run exactly
/// once, and `shutdown` returns with the worker joined.
#[test]
fn submit_take_handoff() {
    check(2, || {
        let pool = pool(1, 2);
        let log = Log::new(2);
        pool.submit(tracked(&log, 0)).unwrap();
        pool.submit(tracked(&log, 1)).unwrap();
        let report = pool.shutdown();
        assert_eq!(report.abandoned, 0);
        for job in 0..2 {
            assert_eq!(log.ran(job), 1, "job {job} ran {} times", log.ran(job));
            assert_eq!(log.dropped(job), 1);
        }
        assert!(pool.is_closed());
    });
}

/// The same with two workers competing for the jobs.
#[test]
fn submit_take_handoff_two_workers() {
    check(2, || {
        let pool = pool(2, 2);
        let log = Log::new(2);
        pool.submit(tracked(&log, 0)).unwrap();
        pool.submit(tracked(&log, 1)).unwrap();
        pool.shutdown();
        for job in 0..2 {
            assert_eq!(log.ran(job), 1, "job {job} ran {} times", log.ran(job));
            assert_eq!(log.dropped(job), 1);
        }
    });
}

// ---------------------------------------------------------------------------
// 2. park/unpark: no lost wake-up

/// The worker goes idle (spins, parks) while another thread submits: the
/// job must run. A lost wake-up leaves `wait_idle` blocked forever, which
/// loom reports as a deadlock.
#[test]
fn park_unpark_no_lost_wakeup() {
    check(2, || {
        let pool = pool(1, 1);
        let log = Log::new(1);
        let producer = {
            let pool = pool.clone();
            let log = log.clone();
            thread::spawn(move || pool.submit(tracked(&log, 0)).is_ok())
        };
        assert!(producer.join().unwrap());
        pool.wait_idle();
        assert_eq!(log.ran(0), 1);
        pool.shutdown();
        assert_eq!(log.ran(0), 1);
        assert_eq!(log.dropped(0), 1);
    });
}

/// Two workers, one spinner at most: two jobs submitted from another thread
/// must both run (the spinner that finds work wakes a sleeper if more is
/// queued; a producer wakes one only when nobody spins).
#[test]
fn park_unpark_two_workers() {
    check(2, || {
        let pool = pool(2, 2);
        let log = Log::new(2);
        let producer = {
            let pool = pool.clone();
            let log = log.clone();
            thread::spawn(move || {
                pool.submit(tracked(&log, 0)).unwrap();
                pool.submit(tracked(&log, 1)).unwrap();
            })
        };
        producer.join().unwrap();
        pool.wait_idle();
        assert_eq!(log.ran(0), 1);
        assert_eq!(log.ran(1), 1);
        pool.shutdown();
    });
}

/// `wait_idle` returning means the jobs are done: their writes must be
/// visible to the caller afterwards (a happens-before edge from the end of
/// each job to the return of `wait_idle`), as they are after `shutdown`.
#[test]
fn wait_idle_publishes_job_effects() {
    check(2, || {
        let pool = pool(1, 1);
        let cell = Arc::new(loom::cell::UnsafeCell::new(0u32));
        {
            let cell = cell.clone();
            // SAFETY: nothing else touches the cell until `wait_idle` says
            // the job is done; loom checks exactly that.
            pool.submit(move || cell.with_mut(|p| unsafe { *p = 7 }))
                .unwrap();
        }
        pool.wait_idle();
        // SAFETY: as above.
        let seen = cell.with(|p| unsafe { *p });
        assert_eq!(seen, 7);
        pool.shutdown();
    });
}

// ---------------------------------------------------------------------------
// 3. shutdown racing submit

/// One thread submits twice into a queue of one (so the second may block on
/// a full queue and must be woken by the worker or by the shutdown) while
/// another shuts down: every accepted job ran exactly once, every refused
/// one came back unrun, and nothing deadlocks.
#[test]
fn shutdown_races_submit() {
    check(2, || {
        let pool = pool(1, 1);
        let log = Log::new(2);
        let producer = {
            let pool = pool.clone();
            let log = log.clone();
            thread::spawn(move || {
                [
                    fate(pool.submit(tracked(&log, 0))),
                    fate(pool.submit(tracked(&log, 1))),
                ]
            })
        };
        pool.shutdown();
        let fates = producer.join().unwrap();
        for (job, fate) in fates.into_iter().enumerate() {
            let ran = log.ran(job);
            match fate {
                Fate::Accepted => assert_eq!(ran, 1, "accepted job {job} ran {ran} times"),
                Fate::Rejected => assert_eq!(ran, 0, "refused job {job} ran"),
            }
            assert_eq!(
                log.dropped(job),
                1,
                "job {job} dropped {}",
                log.dropped(job)
            );
        }
        // Once closed, closed for good.
        assert!(matches!(pool.submit(|| ()), Err(SubmitError::Closed(_))));
    });
}

/// `submit` then `try_submit` racing `shutdown_now`: each accepted job either
/// ran or was dropped unrun, exactly once; refused jobs came back; no
/// deadlock. The pool is drained again (joining the workers) before the
/// counts are read, and is still alive then, so a job stranded in the queue
/// shows as never dropped.
#[test]
fn shutdown_now_races_submit() {
    check(2, || {
        let pool = pool(1, 1);
        let log = Log::new(2);
        let producer = {
            let pool = pool.clone();
            let log = log.clone();
            thread::spawn(move || {
                [
                    fate(pool.submit(tracked(&log, 0))),
                    fate(pool.try_submit(tracked(&log, 1))),
                ]
            })
        };
        pool.shutdown_now();
        let fates = producer.join().unwrap();
        // Waits for the workers to exit and joins them.
        pool.shutdown();
        for (job, fate) in fates.into_iter().enumerate() {
            let ran = log.ran(job);
            match fate {
                Fate::Accepted => assert!(ran <= 1, "accepted job {job} ran {ran} times"),
                Fate::Rejected => assert_eq!(ran, 0, "refused job {job} ran"),
            }
            assert_eq!(
                log.dropped(job),
                1,
                "job {job} dropped {}",
                log.dropped(job)
            );
        }
    });
}

// ---------------------------------------------------------------------------
// 4. keyed lanes

/// A job of the lane: must never overlap another job of the same lane, and
/// records its turn.
fn lane_job(
    busy: &Arc<AtomicBool>,
    order: &Arc<Mutex<Vec<usize>>>,
    job: usize,
) -> impl FnOnce() + Send + 'static {
    let busy = busy.clone();
    let order = order.clone();
    move || {
        assert!(!busy.swap(true, SeqCst), "two jobs of one lane overlapped");
        order.lock().unwrap().push(job);
        busy.store(false, SeqCst);
    }
}

/// Two jobs with one key from one thread, two workers: they never overlap
/// and run in submission order (the second waits in the lane and is handed
/// over by the worker that ends the first).
#[test]
fn lane_handover_one_producer() {
    check(2, || {
        let pool = pool(2, 2);
        let busy = Arc::new(AtomicBool::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        pool.submit_keyed(&7u32, lane_job(&busy, &order, 0))
            .unwrap();
        pool.submit_keyed(&7u32, lane_job(&busy, &order, 1))
            .unwrap();
        pool.shutdown();
        assert_eq!(*order.lock().unwrap(), vec![0, 1]);
    });
}

/// Two jobs with one key from two threads, two workers: they never overlap
/// and both run.
#[test]
fn lane_handover_two_producers() {
    check(2, || {
        let pool = pool(2, 2);
        let busy = Arc::new(AtomicBool::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let producer = {
            let pool = pool.clone();
            let job = lane_job(&busy, &order, 1);
            thread::spawn(move || pool.submit_keyed(&7u32, job).unwrap())
        };
        pool.submit_keyed(&7u32, lane_job(&busy, &order, 0))
            .unwrap();
        producer.join().unwrap();
        pool.shutdown();
        let mut order = order.lock().unwrap().clone();
        order.sort_unstable();
        assert_eq!(order, vec![0, 1]);
    });
}

// ---------------------------------------------------------------------------
// 5. blocking submit on a full queue

/// A queue of one: the second `submit` finds it full and waits until the
/// worker takes the first job and frees the slot. A lost wake-up leaves the
/// producer blocked forever (a loom deadlock).
#[test]
fn blocking_submit_woken_by_worker() {
    check(2, || {
        let pool = pool(1, 1);
        let log = Log::new(2);
        pool.submit(tracked(&log, 0)).unwrap();
        pool.submit(tracked(&log, 1)).unwrap();
        pool.shutdown();
        assert_eq!(log.ran(0), 1);
        assert_eq!(log.ran(1), 1);
    });
}

/// Two producers on two threads, a queue of one: each may wait for space,
/// and every freed slot must reach a waiting producer.
#[test]
fn blocking_submit_two_producers() {
    check(2, || {
        let pool = pool(1, 1);
        let log = Log::new(3);
        let producer = {
            let pool = pool.clone();
            let log = log.clone();
            thread::spawn(move || pool.submit(tracked(&log, 2)).unwrap())
        };
        pool.submit(tracked(&log, 0)).unwrap();
        pool.submit(tracked(&log, 1)).unwrap();
        producer.join().unwrap();
        pool.shutdown();
        for job in 0..3 {
            assert_eq!(log.ran(job), 1, "job {job} ran {} times", log.ran(job));
        }
    });
}

// ---------------------------------------------------------------------------
// 6. JobHandle::cancel racing the worker starting the job

/// Exactly one of: the job ran and `join` returns its value, or it never ran
/// and `join` returns `Cancelled`. `join` returns either way.
#[test]
fn cancel_races_start() {
    check(2, || {
        let pool = pool(1, 1);
        let ran = Arc::new(AtomicBool::new(false));
        let handle = {
            let ran = ran.clone();
            pool.spawn(move || {
                ran.store(true, SeqCst);
                42
            })
            .unwrap()
        };
        handle.cancel();
        let result = handle.join();
        let ran = ran.load(SeqCst);
        match result {
            Ok(value) => {
                assert_eq!(value, 42);
                assert!(ran, "join returned a value but the job never ran");
            }
            Err(JobError::Cancelled) => assert!(!ran, "cancelled, yet the job ran"),
            Err(other) => panic!("join returned {other:?} (job ran: {ran})"),
        }
        pool.shutdown();
    });
}
