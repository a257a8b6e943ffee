//! loom models of the pool's core protocols, driven through the public API.
// The crate docs come first: attributes after a false crate-level `cfg` are
// dropped with the rest, and `missing_docs` would flag the empty test crate.
#![cfg(loom)]
//!
//! Run with (a separate target dir keeps the normal build intact):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p crew --release --test loom
//! ```
//!
//! Every model ends with the pool shut down and its workers joined. Models
//! about wake-ups first wait for their jobs on a latch of their own (a
//! shutdown wakes every worker and would heal a lost wake-up); a lost
//! wake-up leaves a thread blocked forever, which loom reports as a
//! deadlock. A model that fails leaks its pool instead of shutting it down.
//!
//! Preemption bounds are chosen per model to keep each under a couple of
//! minutes; `LOOM_MAX_PREEMPTIONS` overrides them all for a deeper run.

use std::ops::Deref;
use std::sync::atomic::Ordering::SeqCst;
// `std`'s `Arc` for the models' own bookkeeping: loom's counts its
// references, and dropping one while a failed model unwinds (after loom has
// torn the execution down) would turn the report into an abort.
use std::sync::Arc;
use std::time::Duration;

use crew::{CancelToken, JobError, Pool, SubmitError};
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Condvar, Mutex};
use loom::thread;

/// Runs `f` under every interleaving with at most `preemptions` forced
/// context switches (`LOOM_MAX_PREEMPTIONS` overrides it, for a deeper run).
fn check(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}

/// The pool under test, shut down when the model ends. If the model fails
/// (a deadlock or an assertion unwinds through here) the pool is leaked
/// instead: loom has already torn the execution down, and a shutdown would
/// turn the failure report into an abort.
struct ModelPool(Option<Pool>);

impl Deref for ModelPool {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        self.0.as_ref().expect("pool present until dropped")
    }
}

impl Drop for ModelPool {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::mem::forget(self.0.take());
        }
    }
}

fn pool(workers: usize, capacity: usize) -> ModelPool {
    ModelPool(Some(
        Pool::builder()
            .workers(workers)
            .queue_capacity(capacity)
            .max_spinning(1)
            .build(),
    ))
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
        // Not while a failed model unwinds: loom is gone by then.
        if std::thread::panicking() {
            return;
        }
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

/// Jobs signal here when they have run, so a model can wait for them without
/// the pool's help. If the pool never wakes a worker for a queued job, the
/// wait blocks forever and loom reports the deadlock; waiting in `shutdown`
/// instead would hide that, since a shutdown wakes every worker itself.
struct Latch {
    arrived: Mutex<usize>,
    condvar: Condvar,
}

impl Latch {
    fn new() -> Arc<Latch> {
        Arc::new(Latch {
            arrived: Mutex::new(0),
            condvar: Condvar::new(),
        })
    }

    fn arrive(&self) {
        *self.arrived.lock().unwrap() += 1;
        self.condvar.notify_all();
    }

    fn wait_for(&self, jobs: usize) {
        let mut arrived = self.arrived.lock().unwrap();
        while *arrived < jobs {
            arrived = self.condvar.wait(arrived).unwrap();
        }
    }
}

/// A tracked job that also arrives at `latch` once it has run.
fn latched(log: &Arc<Log>, job: usize, latch: &Arc<Latch>) -> impl FnOnce() + Send + 'static {
    let run = tracked(log, job);
    let latch = latch.clone();
    move || {
        run();
        latch.arrive();
    }
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
    check(3, || {
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
        // Every worker has exited and been joined.
        assert_eq!(pool.stats().workers, 0);
    });
}

/// Two workers competing for two jobs; both run exactly once without help
/// from a shutdown (the model waits on its own latch first).
#[test]
fn submit_take_handoff_two_workers() {
    check(2, || {
        let pool = pool(2, 2);
        let log = Log::new(2);
        let latch = Latch::new();
        pool.submit(latched(&log, 0, &latch)).unwrap();
        pool.submit(latched(&log, 1, &latch)).unwrap();
        latch.wait_for(2);
        pool.shutdown();
        for job in 0..2 {
            assert_eq!(log.ran(job), 1, "job {job} ran {} times", log.ran(job));
            assert_eq!(log.dropped(job), 1);
        }
    });
}

// ---------------------------------------------------------------------------
// 2. park/unpark: no lost wake-up

/// The worker goes idle (parks) while another thread submits: the job must
/// run. The model waits for it on a latch of its own; a lost wake-up leaves
/// that wait blocked forever, which loom reports as a deadlock.
#[test]
fn park_unpark_no_lost_wakeup() {
    check(3, || {
        let pool = pool(1, 1);
        let log = Log::new(1);
        let latch = Latch::new();
        let producer = {
            let pool = Pool::clone(&pool);
            let job = latched(&log, 0, &latch);
            thread::spawn(move || pool.submit(job).is_ok())
        };
        latch.wait_for(1);
        assert!(producer.join().unwrap());
        pool.shutdown();
        assert_eq!(log.ran(0), 1);
        assert_eq!(log.dropped(0), 1);
    });
}

/// Two workers, one spinner at most: two jobs submitted from another thread
/// must both run without help from a shutdown (a producer wakes a sleeper
/// when nobody spins; a worker woken to search that finds work wakes another
/// if more is queued).
#[test]
fn park_unpark_two_workers() {
    // Four threads: bound 2 takes about three minutes.
    check(1, || {
        let pool = pool(2, 2);
        let log = Log::new(2);
        let latch = Latch::new();
        let producer = {
            let pool = Pool::clone(&pool);
            let jobs = [latched(&log, 0, &latch), latched(&log, 1, &latch)];
            thread::spawn(move || {
                for job in jobs {
                    pool.submit(job).unwrap();
                }
            })
        };
        latch.wait_for(2);
        producer.join().unwrap();
        pool.shutdown();
        assert_eq!(log.ran(0), 1);
        assert_eq!(log.ran(1), 1);
    });
}

/// `pause` is a barrier: a job submitted after it returns does not start
/// until `resume`, even when the worker had checked the pause just before
/// and was taking from the queue meanwhile (it gives the job back). After
/// `resume`, the job runs without help from a shutdown.
#[test]
fn pause_holds_jobs_queued_after_it() {
    check(3, || {
        let pool = pool(1, 2);
        let log = Log::new(1);
        let latch = Latch::new();
        pool.pause();
        pool.submit(latched(&log, 0, &latch)).unwrap();
        assert_eq!(log.ran(0), 0, "a job started after pause returned");
        assert_eq!(pool.stats().queued, 1);
        pool.resume();
        latch.wait_for(1);
        pool.shutdown();
        assert_eq!(log.ran(0), 1);
        assert_eq!(log.dropped(0), 1);
    });
}

/// `shutdown_now` on a paused pool races the worker giving back a job it
/// took as the pool paused: the job is dropped unrun exactly once, counted
/// as abandoned, and never started after the pause.
#[test]
fn shutdown_now_races_a_job_given_back() {
    check(3, || {
        let pool = pool(1, 2);
        let log = Log::new(1);
        pool.pause();
        pool.submit(tracked(&log, 0)).unwrap();
        pool.shutdown_now();
        // Waits for the worker to exit and joins it.
        pool.shutdown();
        assert_eq!(log.ran(0), 0, "a job started after pause returned");
        assert_eq!(log.dropped(0), 1);
        let stats = pool.stats();
        assert_eq!((stats.abandoned, stats.queued), (1, 0));
    });
}

/// A cell written by a job and read by the caller once the job is known to
/// be done; loom reports a read that does not happen after the write.
struct Cell(loom::cell::UnsafeCell<u32>);

// SAFETY: accesses are ordered by the pool's own synchronization, which is
// what the model checks; loom flags any access that is not.
unsafe impl Sync for Cell {}

/// `wait_idle` returning means the jobs are done: their writes must be
/// visible to the caller afterwards (a happens-before edge from the end of
/// each job to the return of `wait_idle`), as they are after `shutdown`.
///
/// The model polls `wait_idle_timeout(0)` (the same `is_idle` check, without
/// blocking) instead of blocking in `wait_idle`. The blocking handshake (the
/// worker's `busy` store, then `fence(SeqCst)` and a `SeqCst` load of the
/// watcher count, against the watcher's `SeqCst` increment of that count and
/// `SeqCst` load of `busy`) is sound under C++20's rules, but loom 0.7 does
/// not order `SeqCst` fences against `SeqCst` accesses and reports a
/// deadlock there unless the `busy` store is itself `SeqCst`.
#[test]
fn wait_idle_publishes_job_effects() {
    check(3, || {
        let pool = pool(1, 1);
        let cell = Arc::new(Cell(loom::cell::UnsafeCell::new(0)));
        {
            let cell = cell.clone();
            // SAFETY: nothing else touches the cell until `wait_idle` says
            // the job is done; loom checks exactly that.
            pool.submit(move || cell.0.with_mut(|p| unsafe { *p = 7 }))
                .unwrap();
        }
        while !pool.wait_idle_timeout(Duration::ZERO) {
            thread::yield_now();
        }
        // SAFETY: as above.
        let seen = cell.0.with(|p| unsafe { *p });
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
    check(3, || {
        let pool = pool(1, 1);
        let log = Log::new(2);
        let producer = {
            let pool = Pool::clone(&pool);
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
    check(3, || {
        let pool = pool(1, 1);
        let log = Log::new(2);
        let producer = {
            let pool = Pool::clone(&pool);
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
    latch: &Arc<Latch>,
    job: usize,
) -> impl FnOnce() + Send + 'static {
    let busy = busy.clone();
    let order = order.clone();
    let latch = latch.clone();
    move || {
        assert!(!busy.swap(true, SeqCst), "two jobs of one lane overlapped");
        order.lock().unwrap().push(job);
        busy.store(false, SeqCst);
        latch.arrive();
    }
}

/// Two jobs with one key from one thread, two workers: they never overlap
/// and run in submission order (the second waits in the lane and is handed
/// over, and a worker woken for it, by the worker that ends the first).
#[test]
fn lane_handover_one_producer() {
    check(2, || {
        let pool = pool(2, 2);
        let busy = Arc::new(AtomicBool::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let latch = Latch::new();
        pool.submit_keyed(&7u32, lane_job(&busy, &order, &latch, 0))
            .unwrap();
        pool.submit_keyed(&7u32, lane_job(&busy, &order, &latch, 1))
            .unwrap();
        latch.wait_for(2);
        pool.shutdown();
        assert_eq!(*order.lock().unwrap(), vec![0, 1]);
    });
}

/// Two jobs with one key from two threads, two workers: they never overlap
/// and both run.
#[test]
fn lane_handover_two_producers() {
    // Four threads: a deeper bound takes more than five minutes.
    check(1, || {
        let pool = pool(2, 2);
        let busy = Arc::new(AtomicBool::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let latch = Latch::new();
        let producer = {
            let pool = Pool::clone(&pool);
            let job = lane_job(&busy, &order, &latch, 1);
            thread::spawn(move || pool.submit_keyed(&7u32, job).unwrap())
        };
        pool.submit_keyed(&7u32, lane_job(&busy, &order, &latch, 0))
            .unwrap();
        latch.wait_for(2);
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
    check(3, || {
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
            let pool = Pool::clone(&pool);
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

/// A spawned job that records whether it ran.
fn spawn_flagged(pool: &Pool) -> (crew::JobHandle<u32>, Arc<AtomicBool>) {
    let ran = Arc::new(AtomicBool::new(false));
    let handle = {
        let ran = ran.clone();
        pool.spawn(move || {
            ran.store(true, SeqCst);
            42
        })
        .unwrap()
    };
    (handle, ran)
}

/// Checks a cancelled job's outcome once the pool is shut down (the joins
/// order the `ran` flag): either it ran and `join` gave its value, or it
/// never ran and `join` said `Cancelled`.
fn assert_ran_or_cancelled(result: Result<u32, JobError>, ran: &AtomicBool) {
    let ran = ran.load(SeqCst);
    match result {
        Ok(value) => {
            assert_eq!(value, 42);
            assert!(ran, "join returned a value but the job never ran");
        }
        Err(JobError::Cancelled) => assert!(!ran, "join said Cancelled, yet the job ran"),
        Err(other) => panic!("join returned {other:?} (job ran: {ran})"),
    }
}

/// Exactly one of: the job ran and `join` returns its value, or it never ran
/// and `join` returns `Cancelled`. `join` returns either way.
#[test]
fn cancel_races_start() {
    check(3, || {
        let pool = pool(1, 1);
        let (handle, ran) = spawn_flagged(&pool);
        handle.cancel();
        let result = handle.join();
        pool.shutdown();
        assert_ran_or_cancelled(result, &ran);
    });
}

/// A cancellation token tripped on another thread while the caller blocks
/// in `join`: the job either ran, or saw the token at its start and ended
/// as `Cancelled`; either way the worker resolves the handle and wakes the
/// joiner.
#[test]
fn token_cancel_races_start() {
    check(3, || {
        let pool = pool(1, 1);
        let token = CancelToken::new();
        let ran = Arc::new(AtomicBool::new(false));
        let handle = {
            let ran = ran.clone();
            pool.job()
                .token(token.clone())
                .spawn(move |_| {
                    ran.store(true, SeqCst);
                    42
                })
                .unwrap()
        };
        let canceller = thread::spawn(move || token.cancel());
        let result = handle.join();
        canceller.join().unwrap();
        pool.shutdown();
        assert_ran_or_cancelled(result, &ran);
    });
}

/// `shutdown_now` racing a spawned job: the job either ran (and `join` gives
/// its value) or was dropped unrun (and `join` says `Abandoned`); `join`
/// never hangs.
#[test]
fn shutdown_now_resolves_handles() {
    check(3, || {
        let pool = pool(1, 1);
        let (handle, ran) = spawn_flagged(&pool);
        let stopper = {
            let pool = Pool::clone(&pool);
            thread::spawn(move || {
                pool.shutdown_now();
            })
        };
        let result = handle.join();
        stopper.join().unwrap();
        pool.shutdown();
        let ran = ran.load(SeqCst);
        match result {
            Ok(value) => {
                assert_eq!(value, 42);
                assert!(ran, "join returned a value but the job never ran");
            }
            Err(JobError::Abandoned) => assert!(!ran, "join said Abandoned, yet the job ran"),
            Err(other) => panic!("join returned {other:?} (job ran: {ran})"),
        }
    });
}

// ---------------------------------------------------------------------------
// 8. Async producers: `Pool::run` waiting for space with a waker, and
//    `CancelToken::cancelled` waking its future

/// Drives a future on the calling loom thread, parking between polls.
/// (loom's own `future::block_on` trips loom's `Notify` assertion once the
/// model also joins threads, tokio-rs/loom#249; park/unpark is what
/// `JobHandle::join` uses, and loom models it well.)
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        thread::park();
    }
}

/// A queue of one holding a job: `run` finds it full and parks its future's
/// waker; the worker frees the slot and must wake it. A lost wake-up leaves
/// `block_on` parked forever (a loom deadlock).
#[test]
fn async_run_woken_by_worker() {
    check(3, || {
        let pool = pool(1, 1);
        let log = Log::new(1);
        pool.submit(tracked(&log, 0)).unwrap();
        let value = block_on(pool.run(|| 7u32));
        assert_eq!(value, Ok(7));
        // loom reports a park followed by a join as a failed assertion in
        // its own `Notify` (tokio-rs/loom#249) unless a yield separates them.
        thread::yield_now();
        pool.shutdown();
        assert_eq!(log.ran(0), 1);
    });
}

/// A thread blocked in `submit` and a future waiting in `run` on the same
/// full queue: the wake-ups must reach both kinds of waiter.
#[test]
fn async_and_blocking_producers_share_the_wakeups() {
    check(2, || {
        let pool = pool(1, 1);
        let log = Log::new(2);
        pool.submit(tracked(&log, 0)).unwrap();
        let producer = {
            let pool = Pool::clone(&pool);
            let log = log.clone();
            thread::spawn(move || pool.submit(tracked(&log, 1)).unwrap())
        };
        let value = block_on(pool.run(|| 7u32));
        producer.join().unwrap();
        pool.shutdown();
        assert_eq!(value, Ok(7));
        assert_eq!(log.ran(0), 1);
        assert_eq!(log.ran(1), 1);
    });
}

/// A shutdown while `run` waits for space: the future must resolve (to
/// `Closed`, or with the job's value if it got in first), never hang.
#[test]
fn async_run_sees_shutdown() {
    check(3, || {
        let pool = pool(1, 1);
        pool.pause();
        pool.submit(|| ()).unwrap();
        let runner = {
            let pool = Pool::clone(&pool);
            thread::spawn(move || block_on(pool.run(|| 7u32)))
        };
        pool.shutdown_now();
        let result = runner.join().unwrap();
        assert!(
            matches!(
                result,
                Ok(7) | Err(JobError::Closed) | Err(JobError::Abandoned)
            ),
            "unexpected {result:?}"
        );
    });
}

/// `cancelled()` registers its waker, then re-checks: a `cancel` on another
/// thread either is seen by the re-check or finds the waker to wake.
#[test]
fn token_cancel_wakes_waiting_future() {
    check(3, || {
        let token = CancelToken::new();
        let canceller = {
            let token = token.clone();
            thread::spawn(move || token.cancel())
        };
        block_on(token.cancelled());
        canceller.join().unwrap();
        assert!(token.is_cancelled());
    });
}
