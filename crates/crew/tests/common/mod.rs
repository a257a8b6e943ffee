//! Helpers shared by the integration tests: a hang guard, a bounded polling
//! loop, a gate that holds jobs until the test opens it, a tiny `block_on`,
//! a seeded random generator, and a panic hook that keeps intentional panics
//! out of the test output.
#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test body may run before it is declared hung. Generous on
/// purpose: it only turns a deadlock into a failure, it is not a time bound.
pub const GUARD: Duration = Duration::from_secs(60);

/// How long [`wait_until`] polls: shorter than [`GUARD`] so that its own,
/// more precise, message wins.
pub const POLL_LIMIT: Duration = Duration::from_secs(30);

/// Runs `body` on its own thread and waits at most [`GUARD`] for it. A body
/// that hangs fails the test with `what` in the message instead of hanging
/// CI; a body that panics fails the test with its own panic.
#[track_caller]
pub fn guard<T: Send + 'static>(what: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    guard_for(what, GUARD, body)
}

/// [`guard`] with an explicit limit.
#[track_caller]
pub fn guard_for<T: Send + 'static>(
    what: &str,
    limit: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    guard_probed(what, limit, String::new, body)
}

/// [`guard_for`], adding `probe()` (say, the stats of the pool under test)
/// to the message when the body hangs.
#[track_caller]
pub fn guard_probed<T: Send + 'static>(
    what: &str,
    limit: Duration,
    probe: impl FnOnce() -> String + Send + 'static,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let runner = thread::Builder::new()
        .name(format!("guarded: {what}"))
        .spawn(move || {
            let value = body();
            let _ = tx.send(value);
        })
        .expect("spawn the guarded test body");
    match rx.recv_timeout(limit) {
        Ok(value) => {
            runner.join().expect("guarded body finished");
            value
        }
        Err(RecvTimeoutError::Timeout) => panic!(
            "HANG: `{what}` did not finish within {limit:?}: the pool deadlocked or lost a \
             wake-up (if the body panicked above, it then hung while unwinding, e.g. in \
             the drop of a Pool that drains){}",
            run_probe(probe)
        ),
        Err(RecvTimeoutError::Disconnected) => match runner.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the body sends before it returns"),
        },
    }
}

/// Runs a hang probe on its own thread: reading a hung pool's stats may
/// block too, and the guard must report either way.
fn run_probe(probe: impl FnOnce() -> String + Send + 'static) -> String {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(probe());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| "\n(reading the pool's stats blocked too)".to_owned())
}

/// Polls `condition` (yielding the CPU in between) until it holds; panics
/// with `what` if it still does not hold after [`POLL_LIMIT`]. For states that
/// become true eventually (a worker exiting, a counter settling), never for
/// asserting how long something takes.
#[track_caller]
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + POLL_LIMIT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "`{what}` still false after {POLL_LIMIT:?}"
        );
        thread::yield_now();
    }
}

/// Spins until wall-clock time is past `instant` (no other thread involved).
pub fn wait_past(instant: Instant) {
    while Instant::now() <= instant {
        thread::yield_now();
    }
}

/// A latch: jobs `wait` on it until the test calls `open`.
#[derive(Clone, Default)]
pub struct Gate {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Gate {
    pub fn new() -> Self {
        Gate::default()
    }

    pub fn open(&self) {
        let (lock, condvar) = &*self.inner;
        *lock.lock().unwrap() = true;
        condvar.notify_all();
    }

    /// Opens the gate when the returned value is dropped, so a failing
    /// assertion does not leave jobs blocked (and the pool's drop waiting for
    /// them) while the test unwinds. Declare it after the pool.
    pub fn open_on_drop(&self) -> OpenOnDrop {
        OpenOnDrop(self.clone())
    }

    pub fn is_open(&self) -> bool {
        *self.inner.0.lock().unwrap()
    }

    pub fn wait(&self) {
        let (lock, condvar) = &*self.inner;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = condvar.wait(open).unwrap();
        }
    }
}

/// Opens its gate when dropped; see [`Gate::open_on_drop`].
pub struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// The pool a long test is working on right now, so that a hang can be
/// reported with its stats. Holds a clone; set it to `None` (or the next
/// pool) when done.
#[derive(Clone, Default)]
pub struct Probe(Arc<Mutex<Option<crew::Pool>>>);

impl Probe {
    pub fn watch(&self, pool: &crew::Pool, note: String) {
        *self.0.lock().unwrap() = Some(pool.clone());
        eprintln!("{note}");
    }

    pub fn clear(&self) {
        *self.0.lock().unwrap() = None;
    }

    pub fn report(&self) -> String {
        match &*self.0.lock().unwrap() {
            Some(pool) => format!("\npool under test at the hang: {:?}", pool.stats()),
            None => String::new(),
        }
    }
}

/// Wakes a parked thread.
struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `future` on this thread, parking between polls.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        thread::park();
    }
}

/// xorshift64*: a tiny seeded generator, so failures can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// A seed for randomized tests: `CREW_TEST_SEED` if set (to replay a
/// failure), otherwise derived from the clock. Printed so a failure can be
/// reproduced.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("CREW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: CREW_TEST_SEED={seed}");
    seed
}

/// Marker that intentional panics carry in their message.
pub const INTENTIONAL: &str = "intentional test panic";

/// A non-string panic payload for tests of non-string panics; silenced by
/// [`quiet_intentional_panics`] too.
#[derive(Debug)]
pub struct IntentionalPayload(pub u32);

/// Installs (once per test binary) a panic hook that stays silent for panics
/// whose message contains [`INTENTIONAL`] and defers to the default hook for
/// every other panic, so real failures still print.
pub fn quiet_intentional_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message.is_some_and(|m| m.contains(INTENTIONAL))
                || payload.downcast_ref::<IntentionalPayload>().is_some()
            {
                return;
            }
            default(info);
        }));
    });
}
