//! The state every clone of a `Pool` and every worker share, and the
//! submission path.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::lanes::Lanes;
use super::queue::Queue;
use super::sleep::Sleepers;
use super::worker;
use crate::clock::Clock;
use crate::error::SubmitError;
use crate::job::{JobBox, LaneId, Task};
use crate::stats::{Stats, WorkerStats};
use crate::sync::{
    fence, lock, thread, wait, wait_timeout, Arc, AtomicBool, AtomicU64, AtomicUsize, Condvar,
    Mutex, Ordering,
};

/// No new jobs are accepted.
pub(crate) const CLOSED: usize = 1;
/// Queued jobs are dropped instead of run (shutdown without drain).
pub(crate) const DISCARD: usize = 2;
/// Workers take no new jobs until `resume`.
pub(crate) const PAUSED: usize = 4;

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

/// How long a submission may wait for space.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all (`try_submit`).
    No,
    /// As long as it takes (`submit`).
    Forever,
    /// Until the instant (`submit_timeout`).
    Until(Instant),
}

/// Worker threads and the counters of the ones that have exited.
pub(crate) struct Registry {
    next_id: usize,
    threads: HashMap<usize, thread::JoinHandle<()>>,
    /// Ids of workers that exited on their own (reaped or retired by a
    /// shrink); their threads are joined the next time the registry is used.
    exited: Vec<usize>,
    workers: Vec<(usize, Arc<WorkerStats>)>,
    retired: Stats,
}

pub(crate) struct Shared {
    pub(crate) queue: CachePadded<Queue>,
    pub(crate) lanes: Lanes,
    pub(crate) sleepers: CachePadded<Sleepers>,
    state: CachePadded<AtomicUsize>,
    /// Read by running jobs' contexts; tripped by a shutdown that cancels.
    pub(crate) stopping: AtomicBool,
    rejected: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) target_workers: AtomicUsize,
    pub(crate) min_workers: AtomicUsize,
    pub(crate) live_workers: AtomicUsize,
    registry: Mutex<Registry>,
    discard_lock: Mutex<()>,
    /// Threads waiting for the pool to become idle or for workers to exit.
    watchers: AtomicUsize,
    watch_lock: Mutex<()>,
    watch_condvar: Condvar,
    pub(crate) config: Config,
    pub(crate) clock: Clock,
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
            queue: CachePadded::new(Queue::new(capacity)),
            lanes: Lanes::new(),
            sleepers: CachePadded::new(Sleepers::new(max_spinning)),
            state: CachePadded::new(AtomicUsize::new(0)),
            stopping: AtomicBool::new(false),
            rejected: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            target_workers: AtomicUsize::new(workers),
            min_workers: AtomicUsize::new(min_workers),
            live_workers: AtomicUsize::new(0),
            registry: Mutex::new(Registry {
                next_id: 0,
                threads: HashMap::new(),
                exited: Vec::new(),
                workers: Vec::new(),
                retired: Stats::default(),
            }),
            discard_lock: Mutex::new(()),
            watchers: AtomicUsize::new(0),
            watch_lock: Mutex::new(()),
            watch_condvar: Condvar::new(),
            config,
            clock: Clock::new(),
        }
    }

    #[inline]
    pub(crate) fn state(&self) -> usize {
        self.state.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state() & CLOSED != 0
    }

    pub(crate) fn set_state(&self, bits: usize) {
        self.state.fetch_or(bits, Ordering::SeqCst);
        self.sleepers.wake_all();
    }

    pub(crate) fn clear_state(&self, bits: usize) {
        self.state.fetch_and(!bits, Ordering::SeqCst);
        self.sleepers.wake_all();
    }

    /// Accepts one job: waits for a slot as `wait` says, then builds the task
    /// and queues it. The closure is only boxed once it is accepted, so every
    /// refusal hands the caller's own value back.
    pub(crate) fn submit<J>(
        self: &Arc<Self>,
        job: J,
        wait: Wait,
        build: impl FnOnce(J) -> (JobBox, Option<LaneId>),
    ) -> Result<(), SubmitError<J>> {
        if let Err(reason) = self.reserve(1, wait) {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(reason.map(|()| job));
        }
        let (job, lane) = build(job);
        self.enqueue_reserved(job, lane);
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
                    self.rejected
                        .fetch_add(rest.len() as u64, Ordering::Relaxed);
                    return Err(reason.map(|()| rest));
                }
            };
            let mut used = 0;
            let now = self.clock.now();
            for job in jobs.by_ref().take(got) {
                self.queue.push(Task {
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
        let got = match wait {
            Wait::No => self.queue.try_reserve(want),
            Wait::Forever => self.queue.reserve_blocking(want, None, || self.is_closed()),
            Wait::Until(deadline) => self
                .queue
                .reserve_blocking(want, Some(deadline), || self.is_closed()),
        };
        if got == 0 {
            return Err(match wait {
                _ if self.is_closed() => SubmitError::Closed(()),
                Wait::No => SubmitError::Full(()),
                _ => SubmitError::Timeout(()),
            });
        }
        // Checked again after reserving: a shutdown that closed the pool
        // before this reservation is seen here, and one that closes it after
        // sees the reservation and waits for this job (see `worker`).
        if self.is_closed() {
            self.unreserve(got);
            return Err(SubmitError::Closed(()));
        }
        Ok(got)
    }

    /// Returns reservations that will not be used.
    pub(crate) fn unreserve(&self, n: usize) {
        self.queue.unreserve(n);
        if self.is_closed() {
            // Draining workers wait for the reservation count to reach zero.
            self.sleepers.wake_all();
        }
    }

    /// Queues a task whose slot is reserved: through its lane if keyed.
    #[inline]
    pub(crate) fn enqueue_reserved(self: &Arc<Self>, job: JobBox, lane: Option<LaneId>) {
        let task = Task {
            job,
            enqueued_at: self.clock.now(),
        };
        let task = match lane {
            None => task,
            Some(lane) => match self.lanes.admit(lane, task) {
                Some(task) => task,
                // Waits behind its lane; its turn comes when the lane's
                // current job ends.
                None => return,
            },
        };
        self.queue.push(task);
        // While paused nobody may take it; `resume` wakes everyone.
        if self.state() & PAUSED == 0 {
            self.notify_work();
        }
    }

    /// Makes sure some worker will look at newly queued work.
    #[inline]
    pub(crate) fn notify_work(self: &Arc<Self>) {
        if !self.sleepers.notify_work(|| self.queue.reserved()) {
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
        let mut live = self.live_workers.load(Ordering::SeqCst);
        loop {
            let target = self.target_workers.load(Ordering::SeqCst).min(limit);
            if live >= target || self.is_closed() {
                return false;
            }
            match self.live_workers.compare_exchange(
                live,
                live + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(actual) => live = actual,
            }
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
            registry.workers.push((id, stats.clone()));
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
                registry.workers.retain(|(w, _)| *w != id);
                drop(registry);
                self.live_workers.fetch_sub(1, Ordering::SeqCst);
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
            if let Some(index) = registry.workers.iter().position(|(w, _)| *w == id) {
                let (_, stats) = registry.workers.swap_remove(index);
                stats.add_to(&mut registry.retired);
            }
            registry.exited.push(id);
        }
        if still_counted {
            self.live_workers.fetch_sub(1, Ordering::SeqCst);
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
        lock(&self.registry)
            .workers
            .iter()
            .filter(|(_, stats)| stats.is_busy())
            .count()
    }

    /// Nothing queued, nothing running.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.reserved() == 0 && self.busy_workers() == 0
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
        let (mut stats, busy, workers) = {
            let registry = lock(&self.registry);
            let mut stats = registry.retired.clone();
            let mut busy = 0;
            for (_, worker) in &registry.workers {
                worker.add_to(&mut stats);
                busy += worker.is_busy() as usize;
            }
            (stats, busy, registry.workers.len())
        };
        stats.submitted = self.queue.accepted();
        stats.rejected = self.rejected.load(Ordering::Relaxed);
        stats.abandoned += self.abandoned.load(Ordering::Relaxed);
        stats.workers = workers;
        stats.busy = busy;
        stats.idle = workers - busy;
        stats.queued = self.queue.reserved();
        stats.queue_capacity = self.queue.capacity();
        stats.lanes = self.lanes.active();
        stats
    }

    /// Drops every task in the queue unrun (shutdown without drain).
    ///
    /// Workers and the shutdown call both do this; the lock makes the
    /// shutdown wait for a worker that is half-way through, so its report
    /// counts every job dropped before it returns.
    pub(crate) fn discard_queued(&self) {
        let _discarding = lock(&self.discard_lock);
        while let Some(task) = self.queue.pop() {
            self.discard(task);
        }
    }

    /// Drops a task unrun (shutdown without drain), then every job queued
    /// behind its lane, and frees their slots. Their handles report
    /// `Abandoned`.
    pub(crate) fn discard(&self, task: Task) {
        let mut lane = task.job.lane();
        drop(task);
        self.abandoned.fetch_add(1, Ordering::Relaxed);
        while let Some(next) = lane.and_then(|l| self.lanes.finish(l)) {
            lane = next.job.lane();
            drop(next);
            self.queue.release_dropped(1);
            self.abandoned.fetch_add(1, Ordering::Relaxed);
        }
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
