//! Helpers for the async tests: run a body on both tokio runtimes (each
//! under the hang guard), an async gate, a poll-once probe, a bounded
//! "eventually" wait, and drop flags that prove a future was dropped.
//!
//! Included with `#[macro_use] #[path = "common/rt.rs"] mod rt;` next to
//! `mod common;`, so the test binaries that do not need tokio never see it.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::common::{guard, POLL_LIMIT};

/// The two runtimes every async behaviour is checked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// One thread: the test body, the pool's workers and every other task
    /// take turns on it, so anything that blocks the thread deadlocks.
    CurrentThread,
    /// Two worker threads: real parallelism between tasks.
    MultiThread,
}

/// Builds a runtime of `flavor` with every driver (time, I/O) enabled.
pub fn runtime(flavor: Flavor) -> tokio::runtime::Runtime {
    let mut builder = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    };
    builder.enable_all().build().expect("build a tokio runtime")
}

/// Runs the future made by `body` to its end on a fresh runtime of
/// `flavor`, on its own thread under [`guard`]: a deadlock fails the test
/// instead of hanging it.
#[track_caller]
pub fn run<F, Fut>(what: &str, flavor: Flavor, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    guard(&format!("{what} ({flavor:?})"), move || {
        let runtime = runtime(flavor);
        runtime.block_on(body());
    });
}

/// The flavor of the runtime the caller runs in.
pub fn flavor() -> Flavor {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => Flavor::CurrentThread,
        _ => Flavor::MultiThread,
    }
}

/// Declares the async fn of the same name a test on both runtimes:
///
/// ```ignore
/// on_both_runtimes!(pause_holds_queued_jobs);
/// async fn pause_holds_queued_jobs() { /* ... */ }
/// ```
///
/// expands to a module `pause_holds_queued_jobs` (modules and functions do
/// not share a namespace) holding two `#[test]`s, `current_thread` and
/// `multi_thread`, each running the fn under the hang guard. Attributes
/// (`#[ignore = ".."]`, `#[should_panic]`) go before the name and apply to
/// both. The body stays a plain fn, so rustfmt formats it.
macro_rules! on_both_runtimes {
    ($(#[$attr:meta])* $name:ident) => {
        mod $name {
            $(#[$attr])*
            #[test]
            fn current_thread() {
                $crate::rt::run(
                    stringify!($name),
                    $crate::rt::Flavor::CurrentThread,
                    super::$name,
                );
            }

            $(#[$attr])*
            #[test]
            fn multi_thread() {
                $crate::rt::run(
                    stringify!($name),
                    $crate::rt::Flavor::MultiThread,
                    super::$name,
                );
            }
        }
    };
}

/// Polls `future` once with a waker that does nothing. True if it is still
/// pending. For states that cannot change while the test holds them (a
/// paused pool with a full queue), so the answer does not depend on timing;
/// the future can be awaited normally afterwards.
pub fn still_pending<F: Future + Unpin>(future: &mut F) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(std::pin::Pin::new(future).poll(&mut cx), Poll::Pending)
}

/// Yields to the runtime until `condition` holds (for states that become
/// true eventually: a worker exiting, a counter settling); panics with
/// `what` after [`POLL_LIMIT`]. Never a bound on how long anything takes.
#[track_caller]
pub fn eventually<'a>(
    what: &'a str,
    mut condition: impl FnMut() -> bool + 'a,
) -> impl Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let limit = Instant::now() + POLL_LIMIT;
        while !condition() {
            assert!(
                Instant::now() < limit,
                "`{what}` still false after {POLL_LIMIT:?} (at {caller})"
            );
            tokio::task::yield_now().await;
        }
    }
}

/// Yields `times` times, giving every other ready task (the pool's workers
/// included) chances to run. Used only before asserting that something did
/// NOT happen, never to wait for something to happen.
pub async fn let_others_run(times: usize) {
    for _ in 0..times {
        tokio::task::yield_now().await;
    }
}

/// An async latch: jobs `wait` until the test calls `open`. Built on a
/// semaphore with no permits that `open` closes, which releases every
/// waiter, present and future.
#[derive(Clone)]
pub struct AsyncGate(Arc<Semaphore>);

impl Default for AsyncGate {
    fn default() -> Self {
        AsyncGate(Arc::new(Semaphore::new(0)))
    }
}

impl AsyncGate {
    pub fn new() -> Self {
        AsyncGate::default()
    }

    pub fn open(&self) {
        self.0.close();
    }

    pub fn is_open(&self) -> bool {
        self.0.is_closed()
    }

    pub async fn wait(&self) {
        // No permit is ever added: this returns only once the gate is open.
        let _ = self.0.acquire().await;
    }

    /// Opens the gate when the returned value is dropped, so a failing
    /// assertion does not leave jobs (and a draining pool) waiting.
    pub fn open_on_drop(&self) -> OpenAsyncGateOnDrop {
        OpenAsyncGateOnDrop(self.clone())
    }
}

pub struct OpenAsyncGateOnDrop(AsyncGate);

impl Drop for OpenAsyncGateOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Sets its flag when dropped: moved into a job's future, it proves the
/// future was dropped (at whatever await point it was stopped at).
pub struct DropFlag(pub Arc<AtomicBool>);

impl DropFlag {
    /// A flag and the guard that sets it.
    pub fn new() -> (Arc<AtomicBool>, DropFlag) {
        let flag = Arc::new(AtomicBool::new(false));
        (flag.clone(), DropFlag(flag))
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Counts live objects: `enter` adds one and returns a guard that takes it
/// off when dropped; `max` is the most ever live at once.
#[derive(Clone, Default)]
pub struct LiveCount(Arc<(AtomicUsize, AtomicUsize)>);

impl LiveCount {
    pub fn new() -> Self {
        LiveCount::default()
    }

    pub fn enter(&self) -> Live {
        let now = self.0 .0.fetch_add(1, Ordering::SeqCst) + 1;
        self.0 .1.fetch_max(now, Ordering::SeqCst);
        Live(self.clone())
    }

    pub fn now(&self) -> usize {
        self.0 .0.load(Ordering::SeqCst)
    }

    pub fn max(&self) -> usize {
        self.0 .1.load(Ordering::SeqCst)
    }
}

/// One live object of a [`LiveCount`].
pub struct Live(LiveCount);

impl Drop for Live {
    fn drop(&mut self) {
        self.0 .0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}
