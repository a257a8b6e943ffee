//! The state an `AsyncPool`'s handles and worker tasks share, and the
//! submission path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, Id};

use super::job::AsyncJob;
use super::worker;
use crate::error::SubmitError;
use crate::headcount::Headcount;
use crate::intake::{Intake, Wait};
use crate::stats::{Stats, WorkerBook, WorkerStats};
use crate::sync::{lock, AtomicUsize, Mutex, Ordering};

/// Called with the panic message of every job that panics.
pub(crate) type PanicHook = Arc<dyn Fn(&str) + Send + Sync>;

pub(crate) struct Config {
    pub(crate) runtime: Handle,
    pub(crate) keep_alive: Duration,
    pub(crate) on_panic: Option<PanicHook>,
}

/// Why an idle worker's wait ended.
pub(crate) enum Wakeup {
    /// The re-check before sleeping found a reason to stay up.
    Recheck,
    /// Woken by a producer (it may hold the searching token) or a state
    /// change.
    Notified,
    /// The keep-alive ran out.
    TimedOut,
}

/// Worker tasks, for aborting them at a hard stop, and their stats.
struct Registry {
    next_id: usize,
    tasks: HashMap<usize, (AbortHandle, Id)>,
    book: WorkerBook,
}

pub(crate) struct AsyncShared {
    pub(crate) intake: Intake<AsyncJob>,
    /// Idle workers wait here for work or a state change.
    work: Notify,
    /// Workers registered on `work` (a wake-up is only sent when one is).
    idle: AtomicUsize,
    /// Woken workers not yet at work (0 or 1, give or take a stolen
    /// token; see `notify_work`).
    searching: AtomicUsize,
    pub(crate) headcount: Headcount,
    registry: Mutex<Registry>,
    /// Callers of `wait_idle` and the shutdowns wait here; workers signal
    /// when they run out of work or exit.
    watch: Notify,
    watchers: AtomicUsize,
    pub(crate) config: Config,
}

impl AsyncShared {
    pub(crate) fn new(
        capacity: Option<usize>,
        workers: usize,
        min_workers: usize,
        config: Config,
    ) -> Self {
        AsyncShared {
            intake: Intake::new(capacity),
            work: Notify::new(),
            idle: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
            headcount: Headcount::new(workers, min_workers),
            registry: Mutex::new(Registry {
                next_id: 0,
                tasks: HashMap::new(),
                book: WorkerBook::default(),
            }),
            watch: Notify::new(),
            watchers: AtomicUsize::new(0),
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
        self.wake_all_workers();
    }

    pub(crate) fn clear_state(&self, bits: usize) {
        self.intake.clear_state(bits);
        self.wake_all_workers();
    }

    /// Reserves one slot, waiting as `wait` says without blocking the
    /// thread: the task awaits space (a timed wait races a tokio timer).
    pub(crate) async fn reserve(&self, wait: Wait) -> Result<(), SubmitError<()>> {
        let space = self.intake.queue.reserve_async(1, || self.is_closed());
        let got = match wait {
            Wait::No => self.intake.queue.try_reserve(1),
            Wait::Forever => space.await,
            Wait::Until(deadline) => {
                let deadline = tokio::time::Instant::from_std(deadline);
                tokio::time::timeout_at(deadline, space).await.unwrap_or(0)
            }
        };
        self.settle(got, wait)
    }

    /// Reserves one slot if there is room now.
    pub(crate) fn try_reserve(&self) -> Result<(), SubmitError<()>> {
        let got = self.intake.queue.try_reserve(1);
        self.settle(got, Wait::No)
    }

    fn settle(&self, got: usize, wait: Wait) -> Result<(), SubmitError<()>> {
        let settled = self
            .intake
            .settle_reservation(got, wait, |got| self.unreserve(got));
        if settled.is_err() {
            self.intake.reject(1);
        }
        settled.map(drop)
    }

    /// Returns reservations that will not be used.
    fn unreserve(&self, n: usize) {
        self.intake.queue.unreserve(n);
        if self.is_closed() {
            // Draining workers wait for the reservation count to reach zero.
            self.wake_all_workers();
        }
    }

    /// Queues a job whose slot is reserved and makes sure a worker sees it.
    #[inline]
    pub(crate) fn enqueue_reserved(self: &Arc<Self>, job: AsyncJob) {
        if self.intake.enqueue_reserved(job) {
            self.notify_work();
        }
    }

    /// Makes sure some worker will look at newly queued work: wakes an idle
    /// one, or starts one if the pool is below its target (elastic pools).
    ///
    /// At most one woken worker is on its way at a time: while one is
    /// (`searching` is set), it will see this job, and once it has taken a
    /// job it wakes the next one if more are queued. Waking one worker per
    /// submitted job instead cost a wake-up and a cross-thread hand-off per
    /// job (a tenth of B1's profile was `Notify` alone). The token is
    /// released before the worker registers as idle and re-checks the
    /// queue, so a job pushed while the token was held is always seen.
    #[inline]
    pub(crate) fn notify_work(self: &Arc<Self>) {
        if self.idle.load(Ordering::SeqCst) == 0 {
            self.grow_if_below_target();
        } else if self.searching.load(Ordering::SeqCst) == 0
            && self
                .searching
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.work.notify_one();
        }
    }

    /// A woken worker found work or is going back to sleep: the next job
    /// needs a wake-up of its own. (A worker woken for another reason may
    /// have taken the token already; then this does nothing, and at worst a
    /// producer wakes one worker more than needed.)
    pub(crate) fn stop_searching(&self) {
        let _ = self
            .searching
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Wakes every idle worker so it re-reads the pool's state.
    pub(crate) fn wake_all_workers(&self) {
        self.work.notify_waiters();
    }

    /// The wait of an idle worker: registered before `recheck`, so a job
    /// queued (or a state change) after the check wakes it. Returns at once
    /// if `recheck` finds something; otherwise sleeps until woken or until
    /// `timeout`.
    pub(crate) async fn idle_wait(
        &self,
        timeout: Option<Duration>,
        recheck: impl Fn() -> bool,
    ) -> Wakeup {
        let notified = self.work.notified();
        let mut notified = std::pin::pin!(notified);
        // True when it took a wake-up stored earlier (a `notify_one` that
        // found nobody waiting). That wake-up may carry the searching token,
        // so it must count as one even if the re-check below also finds
        // work: classed as a re-check, the token would never be given back
        // and every later submit would skip waking anyone.
        let stored_wakeup = notified.as_mut().enable();
        self.idle.fetch_add(1, Ordering::SeqCst);
        let wakeup = if stored_wakeup {
            Wakeup::Notified
        } else if recheck() {
            Wakeup::Recheck
        } else {
            match timeout {
                None => {
                    notified.await;
                    Wakeup::Notified
                }
                Some(timeout) => match tokio::time::timeout(timeout, notified).await {
                    Ok(()) => Wakeup::Notified,
                    Err(_) => Wakeup::TimedOut,
                },
            }
        };
        self.idle.fetch_sub(1, Ordering::SeqCst);
        wakeup
    }

    /// Starts a worker if fewer are alive than the target.
    pub(crate) fn grow_if_below_target(self: &Arc<Self>) -> bool {
        self.grow_if_below_target_up_to(usize::MAX)
    }

    /// Starts one worker if fewer than `limit` (and than the target) are
    /// alive. True if one was started.
    pub(crate) fn grow_if_below_target_up_to(self: &Arc<Self>, limit: usize) -> bool {
        // Claimed and entered in the books under one lock: once a grow
        // returns, every worker claimed before it is counted (`resize` then
        // `stats` agree).
        let (id, stats) = {
            let mut registry = lock(&self.registry);
            if self.is_closed() || !self.headcount.claim_start(limit) {
                return false;
            }
            let stats = Arc::new(WorkerStats::new());
            let id = registry.next_id;
            registry.next_id += 1;
            registry.book.join(id, stats.clone());
            (id, stats)
        };
        // Spawned outside the lock: on a runtime that is shutting down, tokio
        // drops the task inline, and its `Presence` takes the lock to leave.
        let presence = worker::Presence::new(self.clone(), id, stats);
        let task = self.config.runtime.spawn(worker::run(presence));
        let mut registry = lock(&self.registry);
        if registry.book.contains(id) {
            registry.tasks.insert(id, (task.abort_handle(), task.id()));
        }
        true
    }

    /// A worker is leaving (or its task was dropped): keep its counts, and
    /// tell watchers.
    pub(crate) fn worker_exited(&self, id: usize, still_counted: bool) {
        {
            let mut registry = lock(&self.registry);
            registry.book.leave(id);
            registry.tasks.remove(&id);
        }
        if still_counted {
            self.headcount.unclaim();
        }
        self.notify_watchers();
    }

    /// True when the calling task is one of this pool's workers (a job
    /// shutting down its own pool must not wait for itself).
    pub(crate) fn on_worker(&self) -> bool {
        let Some(me) = tokio::task::try_id() else {
            return false;
        };
        lock(&self.registry).tasks.values().any(|(_, id)| *id == me)
    }

    /// Aborts every worker task but the caller's: their running jobs are
    /// dropped at their current await point. Returns how many were running
    /// a job.
    pub(crate) fn abort_workers(&self) -> u64 {
        let me = tokio::task::try_id();
        let registry = lock(&self.registry);
        // Counted before aborting: an aborted worker on another runtime
        // thread may clear its busy flag at once.
        let busy = registry.book.busy();
        let mut mine = false;
        for (abort, id) in registry.tasks.values() {
            if Some(*id) == me {
                mine = true;
            } else {
                abort.abort();
            }
        }
        busy.saturating_sub(usize::from(mine)) as u64
    }

    /// Wakes callers of `wait_idle` and the shutdowns so they re-check.
    pub(crate) fn notify_watchers(&self) {
        if self.watchers.load(Ordering::SeqCst) > 0 {
            self.watch.notify_waiters();
        }
    }

    /// Waits until `done` holds; re-checked whenever a worker goes idle or
    /// exits.
    pub(crate) async fn watch(&self, done: impl Fn() -> bool) {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        let _unregister = Unregister(&self.watchers);
        loop {
            let notified = self.watch.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if done() {
                return;
            }
            notified.await;
        }
    }

    /// Workers running a job right now.
    pub(crate) fn busy_workers(&self) -> usize {
        lock(&self.registry).book.busy()
    }

    /// Nothing queued, nothing running.
    pub(crate) fn is_idle(&self) -> bool {
        self.intake.queue.reserved() == 0 && self.busy_workers() == 0
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = lock(&self.registry).book.snapshot();
        self.intake.add_to(&mut stats);
        stats
    }
}

/// Takes a watcher off the count however `watch` ends (a dropped future
/// included).
struct Unregister<'a>(&'a AtomicUsize);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
