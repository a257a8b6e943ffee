//! The state every clone of a `Pool` and every worker share, and the
//! submission path.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::sleep::Sleepers;
use super::worker;
use crate::error::SubmitError;
use crate::headcount::Headcount;
use crate::intake::{Intake, Task, Wait};
use crate::job::JobBox;
use crate::stats::{Stats, WorkerBook, WorkerStats};
use crate::sync::{
    fence, lock, thread, wait, wait_timeout, Arc, AtomicBool, AtomicUsize, Condvar, Mutex, Ordering,
};

/// Called with the panic message of every job that panics.
pub(crate) type PanicHook = Arc<dyn Fn(&str) + Send + Sync>;

pub(crate) struct Config {
    /// CPUs the pool may use (`available_parallelism`).
    pub(crate) cpus: usize,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) keep_alive: Duration,
    pub(crate) on_panic: Option<PanicHook>,
}

/// Worker threads and the counters of the ones that have exited.
pub(crate) struct Registry {
    next_id: usize,
    threads: HashMap<usize, thread::JoinHandle<()>>,
    /// Ids of workers that exited on their own (reaped or retired by a
    /// shrink); their threads are joined the next time the registry is used.
    exited: Vec<usize>,
    book: WorkerBook,
}

pub(crate) struct Shared {
    pub(crate) intake: Intake<JobBox>,
    pub(crate) sleepers: CachePadded<Sleepers>,
    /// Read by running jobs' contexts; tripped by a shutdown that cancels.
    pub(crate) stopping: AtomicBool,
    pub(crate) headcount: Headcount,
    registry: Mutex<Registry>,
    /// Threads waiting for the pool to become idle or for workers to exit.
    watchers: AtomicUsize,
    watch_lock: Mutex<()>,
    watch_condvar: Condvar,
    pub(crate) config: Config,
}

impl Shared {
    pub(crate) fn new(
        capacity: Option<usize>,
        workers: usize,
        min_workers: usize,
        max_spinning: usize,
        config: Config,
    ) -> Self {
        Shared {
            intake: Intake::new(capacity),
            sleepers: CachePadded::new(Sleepers::new(max_spinning)),
            stopping: AtomicBool::new(false),
            headcount: Headcount::new(workers, min_workers),
            registry: Mutex::new(Registry {
                next_id: 0,
                threads: HashMap::new(),
                exited: Vec::new(),
                book: WorkerBook::default(),
            }),
            watchers: AtomicUsize::new(0),
            watch_lock: Mutex::new(()),
            watch_condvar: Condvar::new(),
            config,
        }
    }

    #[inline]
    pub(crate) fn state(&self) -> usize {
        self.intake.state()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.intake.is_closed()
    }

    pub(crate) fn set_state(&self, bits: usize) {
        self.intake.set_state(bits);
        self.sleepers.wake_all();
    }

    pub(crate) fn clear_state(&self, bits: usize) {
        self.intake.clear_state(bits);
        self.sleepers.wake_all();
    }

    /// Accepts one job: waits for a slot as `wait` says, then builds the task
    /// and queues it. The closure is only boxed once it is accepted, so every
    /// refusal hands the caller's own value back.
    pub(crate) fn submit<J>(
        self: &Arc<Self>,
        job: J,
        wait: Wait,
        build: impl FnOnce(J) -> JobBox,
    ) -> Result<(), SubmitError<J>> {
        if let Err(reason) = self.reserve(1, wait) {
            self.intake.reject(1);
            return Err(reason.map(|()| job));
        }
        self.enqueue_reserved(build(job));
        Ok(())
    }

    /// Accepts a batch, as many slots at a time as are free, waiting for
    /// space as `submit` does. Returns the jobs not accepted when the pool
    /// closed part-way.
    pub(crate) fn submit_batch<J>(
        self: &Arc<Self>,
        jobs: impl IntoIterator<Item = J>,
        build: impl Fn(J) -> JobBox,
    ) -> Result<usize, SubmitError<Vec<J>>> {
        let mut jobs = jobs.into_iter().peekable();
        let mut accepted = 0;
        while jobs.peek().is_some() {
            let want = jobs.size_hint().0.max(1);
            let got = match self.reserve(want, Wait::Forever) {
                Ok(got) => got,
                Err(reason) => {
                    let rest: Vec<J> = jobs.collect();
                    self.intake.reject(rest.len());
                    return Err(reason.map(|()| rest));
                }
            };
            let mut used = 0;
            let now = self.intake.clock.now();
            for job in jobs.by_ref().take(got) {
                self.intake.queue.push(Task {
                    job: build(job),
                    enqueued_at: now,
                });
                used += 1;
            }
            if used < got {
                self.unreserve(got - used);
            }
            accepted += used;
            // Wake as many sleepers as there are new jobs at once, rather than
            // letting the wake-up chain ramp up one worker at a time.
            let mut woken = 0;
            while woken < used && self.sleepers.wake_one() {
                woken += 1;
            }
            while woken < used && self.grow_if_below_target() {
                woken += 1;
            }
            if woken == 0 {
                self.notify_work();
            }
        }
        Ok(accepted)
    }

    /// Reserves between 1 and `want` slots; the error carries the reason.
    #[inline]
    fn reserve(&self, want: usize, wait: Wait) -> Result<usize, SubmitError<()>> {
        let queue = &self.intake.queue;
        let got = match wait {
            Wait::No => queue.try_reserve(want),
            Wait::Forever => queue.reserve_blocking(want, None, || self.is_closed()),
            Wait::Until(deadline) => {
                queue.reserve_blocking(want, Some(deadline), || self.is_closed())
            }
        };
        self.intake
            .settle_reservation(got, wait, |got| self.unreserve(got))
    }

    /// Returns reservations that will not be used.
    pub(crate) fn unreserve(&self, n: usize) {
        self.intake.queue.unreserve(n);
        if self.is_closed() {
            // Draining workers wait for the reservation count to reach zero.
            self.sleepers.wake_all();
        }
    }

    /// Queues a job whose slot is reserved and makes sure a worker sees it.
    #[inline]
    pub(crate) fn enqueue_reserved(self: &Arc<Self>, job: JobBox) {
        if self.intake.enqueue_reserved(job) {
            self.notify_work();
        }
    }

    /// Makes sure some worker will look at newly queued work.
    #[inline]
    pub(crate) fn notify_work(self: &Arc<Self>) {
        if !self.sleepers.notify_work(|| self.intake.queue.reserved()) {
            self.grow_if_below_target();
        }
    }

    /// Starts a worker if fewer are alive than the target (elastic pools
    /// start workers on demand; `resize` grows through here too).
    pub(crate) fn grow_if_below_target(self: &Arc<Self>) -> bool {
        self.grow_if_below_target_up_to(usize::MAX)
    }

    /// Starts one worker if fewer than `limit` (and than the target) are
    /// alive. True if one was started.
    pub(crate) fn grow_if_below_target_up_to(self: &Arc<Self>, limit: usize) -> bool {
        if self.is_closed() || !self.headcount.claim_start(limit) {
            return false;
        }
        self.start_worker()
    }

    fn start_worker(self: &Arc<Self>) -> bool {
        let stats = Arc::new(WorkerStats::new());
        // Joined outside the lock: an exiting worker may still need the
        // registry on its way out.
        let exited = Self::take_exited(&mut lock(&self.registry));
        for handle in exited {
            let _ = handle.join();
        }
        let id = {
            let mut registry = lock(&self.registry);
            let id = registry.next_id;
            registry.next_id += 1;
            registry.book.join(id, stats.clone());
            id
        };
        let shared = self.clone();
        let spawned = spawn_thread(&self.config, id, move || {
            worker::run(shared, id, stats);
        });
        let mut registry = lock(&self.registry);
        match spawned {
            Ok(handle) => {
                registry.threads.insert(id, handle);
                true
            }
            Err(error) => {
                // The OS refused a thread. Undo, and let the next submission
                // try again; the jobs stay queued, nothing is lost.
                registry.book.leave(id);
                drop(registry);
                self.headcount.unclaim();
                eprintln!("crew: could not start a worker thread: {error}");
                false
            }
        }
    }

    /// Handles of workers that exited on their own, for joining.
    fn take_exited(registry: &mut Registry) -> Vec<thread::JoinHandle<()>> {
        std::mem::take(&mut registry.exited)
            .into_iter()
            .filter_map(|id| registry.threads.remove(&id))
            .collect()
    }

    /// A worker is leaving: keep its counts, and tell watchers.
    pub(crate) fn worker_exited(&self, id: usize, still_counted: bool) {
        {
            let mut registry = lock(&self.registry);
            registry.book.leave(id);
            registry.exited.push(id);
        }
        if still_counted {
            self.headcount.unclaim();
        }
        self.notify_watchers();
    }

    /// Wakes threads in `wait_idle` or a shutdown so they re-check.
    pub(crate) fn notify_watchers(&self) {
        fence(Ordering::SeqCst);
        if self.watchers.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&self.watch_lock);
            self.watch_condvar.notify_all();
        }
    }

    /// Blocks until `done` holds or `deadline` passes; true if it held.
    /// Re-checked whenever a worker goes idle or exits.
    pub(crate) fn watch(&self, deadline: Option<Instant>, done: impl Fn() -> bool) -> bool {
        let mut guard = lock(&self.watch_lock);
        self.watchers.fetch_add(1, Ordering::SeqCst);
        let held = loop {
            if done() {
                break true;
            }
            guard = match deadline {
                None => wait(&self.watch_condvar, guard),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    wait_timeout(&self.watch_condvar, guard, deadline - now)
                }
            };
        };
        self.watchers.fetch_sub(1, Ordering::SeqCst);
        held
    }

    /// Workers running a job right now.
    pub(crate) fn busy_workers(&self) -> usize {
        lock(&self.registry).book.busy()
    }

    /// Nothing queued, nothing running.
    pub(crate) fn is_idle(&self) -> bool {
        self.intake.queue.reserved() == 0 && self.busy_workers() == 0
    }

    /// Joins every worker thread that has exited (all of them after a drain).
    /// The calling thread's own handle is skipped when a worker shuts its own
    /// pool down.
    pub(crate) fn join_all(&self) {
        let handles: Vec<_> = {
            let mut registry = lock(&self.registry);
            registry.exited.clear();
            registry.threads.drain().map(|(_, h)| h).collect()
        };
        let me = thread::current().id();
        for handle in handles {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = lock(&self.registry).book.snapshot();
        self.intake.add_to(&mut stats);
        stats
    }
}

fn spawn_thread(
    config: &Config,
    id: usize,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<thread::JoinHandle<()>> {
    let mut builder = thread::Builder::new().name(format!("{}-{id}", config.thread_name));
    if let Some(size) = config.stack_size {
        builder = builder.stack_size(size);
    }
    builder.spawn(body)
}
