//! The semaphore that enforces the controller's limit, and its permits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::controller::{Change, Controller};
use super::{AdaptiveSettings, Concurrency, Signal};

/// The largest limit a semaphore can hold; larger settings are clamped.
pub(super) const MAX_LIMIT: usize = Semaphore::MAX_PERMITS;

/// Bounds the requests in flight to a fixed or adaptive limit.
///
/// Take a [`Permit`] before each request and give it back with
/// [`Permit::done`] and what the response said; with
/// [`Concurrency::Adaptive`] the limit then follows the service's latency and
/// backpressure. Cloning is cheap and clones share the limit.
///
/// ```
/// use crew_pipeline::concurrency::{AdaptiveSettings, Concurrency, Limiter, Signal};
///
/// let runtime = tokio::runtime::Builder::new_current_thread()
///     .enable_time()
///     .build()
///     .unwrap();
/// let limiter = Limiter::new(Concurrency::Adaptive, AdaptiveSettings::default());
/// runtime.block_on(async {
///     let permit = limiter.acquire().await;
///     assert_eq!(limiter.snapshot().in_flight, 1);
///     // ... send the request, look at the response ...
///     permit.done(Signal::Ok);
/// });
/// let snapshot = limiter.snapshot();
/// assert_eq!((snapshot.limit, snapshot.in_flight), (1, 0));
/// assert!(snapshot.rtt_mean.is_some(), "the response was a latency sample");
/// ```
#[derive(Clone)]
pub struct Limiter {
    shared: Arc<Shared>,
}

struct Shared {
    /// Holds `limit + debt` permits in all (available plus taken).
    semaphore: Semaphore,
    /// Exact, because a permit increments it only once it holds a slot and
    /// decrements it before giving the slot back.
    in_flight: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    controller: Controller,
    /// Permits still to retire after a decrease found them taken: each one
    /// released is forgotten instead of returned until this is 0, so that a
    /// lower limit never revokes a request already in flight.
    debt: usize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held, and the state stays
        // consistent between statements anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lower(&self, state: &mut State, by: usize) {
        let idle = self.semaphore.forget_permits(by);
        state.debt += by - idle;
    }

    fn raise(&self, state: &mut State, by: usize) {
        let repaid = by.min(state.debt);
        state.debt -= repaid;
        self.semaphore.add_permits(by - repaid);
    }

    /// Feeds one request's outcome to the controller and applies its
    /// decision.
    fn observe(
        &self,
        state: &mut State,
        now: Instant,
        rtt: Duration,
        signal: Signal,
        in_flight: usize,
    ) {
        match state.controller.on_response(now, rtt, signal, in_flight) {
            Change::None => {}
            Change::Increased => self.raise(state, 1),
            Change::Decreased(by) => self.lower(state, by),
        }
    }

    /// Gives back a permit's slot, first feeding the controller if the
    /// request's outcome is known.
    fn release(&self, outcome: Option<(Instant, Duration, Signal)>) {
        // Before the slot is returned, so that a new permit never sees the
        // old one still counted.
        let in_flight = self.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        let mut state = self.state();
        if let Some((now, rtt, signal)) = outcome {
            self.observe(&mut state, now, rtt, signal, in_flight);
        }
        if state.debt > 0 {
            state.debt -= 1;
        } else {
            self.semaphore.add_permits(1);
        }
    }
}

impl Limiter {
    /// A limiter for `concurrency`; `adaptive` is used only for
    /// [`Concurrency::Adaptive`].
    ///
    /// Validate the settings first ([`AdaptiveSettings::validate`]): out of
    /// range values are replaced here rather than refused (limits clamped,
    /// ratios back to their defaults), and `Fixed(0)` counts as `Fixed(1)`.
    pub fn new(concurrency: Concurrency, adaptive: AdaptiveSettings) -> Limiter {
        let controller = match concurrency {
            Concurrency::Fixed(limit) => Controller::fixed(limit.clamp(1, MAX_LIMIT)),
            Concurrency::Adaptive => Controller::adaptive(adaptive.sanitized()),
        };
        Limiter {
            shared: Arc::new(Shared {
                semaphore: Semaphore::new(controller.limit()),
                in_flight: AtomicUsize::new(0),
                state: Mutex::new(State {
                    controller,
                    debt: 0,
                }),
            }),
        }
    }

    /// Waits for a free slot (while in-flight requests are at the limit) and
    /// takes it; the request's round-trip time starts now.
    ///
    /// Cancel-safe: dropping the future before it completes takes nothing.
    pub async fn acquire(&self) -> Permit {
        let permit = self
            .shared
            .semaphore
            .acquire()
            .await
            .expect("the limiter never closes its semaphore");
        // The slot is tracked by `Permit` (which may have to retire it rather
        // than return it), not by the semaphore's borrowed guard.
        permit.forget();
        let in_flight = self.shared.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.shared.state().controller.on_start(in_flight);
        Permit {
            shared: Some(Arc::clone(&self.shared)),
            started: Instant::now(),
        }
    }

    /// The current limit, in-flight count and counters; cheap (one
    /// uncontended lock), for `/metrics`.
    pub fn snapshot(&self) -> LimiterSnapshot {
        let state = self.shared.state();
        LimiterSnapshot {
            limit: state.controller.limit(),
            in_flight: self.shared.in_flight.load(Ordering::Acquire),
            increases: state.controller.increases(),
            decreases: state.controller.decreases(),
            backpressure: state.controller.backpressure(),
            rtt_mean: state.controller.rtt_mean(),
        }
    }
}

/// One request's slot, from [`Limiter::acquire`] to [`Permit::done`].
///
/// Dropping a permit without calling `done` frees the slot and tells the
/// controller nothing (e.g. a request abandoned at shutdown).
#[must_use = "a permit holds its slot until `done` or drop"]
pub struct Permit {
    /// `None` once released, so that `done` and `Drop` release only once.
    shared: Option<Arc<Shared>>,
    started: Instant,
}

impl Permit {
    /// The request finished with `signal`: its round-trip time (since
    /// `acquire`) feeds the controller, and the slot is freed.
    pub fn done(mut self, signal: Signal) {
        if let Some(shared) = self.shared.take() {
            let now = Instant::now();
            let rtt = now.saturating_duration_since(self.started);
            shared.release(Some((now, rtt, signal)));
        }
    }
}

impl Permit {
    /// The attempt ended with `signal`, and the request will be tried again
    /// in this same slot: the attempt's round-trip time feeds the controller
    /// as with [`done`](Self::done), and the clock restarts for the next
    /// attempt. For callers that must not give the slot up between attempts
    /// (a fixed limit of 1 that promises order).
    pub fn retry(&mut self, signal: Signal) {
        if let Some(shared) = &self.shared {
            let now = Instant::now();
            let rtt = now.saturating_duration_since(self.started);
            let in_flight = shared.in_flight.load(Ordering::Acquire);
            shared.observe(&mut shared.state(), now, rtt, signal, in_flight);
            self.started = now;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.release(None);
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// A point-in-time view of a [`Limiter`], for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct LimiterSnapshot {
    /// The current limit on requests in flight.
    pub limit: usize,
    /// Requests holding a permit now. It can exceed `limit` for a while
    /// after a decrease, until the requests already out come back.
    pub in_flight: usize,
    /// How many times the controller raised the limit.
    pub increases: u64,
    /// How many times the controller lowered the limit.
    pub decreases: u64,
    /// Responses that signalled backpressure.
    pub backpressure: u64,
    /// The controller's long-run (EWMA) round-trip time, once there has been
    /// a sample.
    pub rtt_mean: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The semaphore always holds `limit + debt` permits; a raise repays
    /// debt before it adds permits.
    #[tokio::test]
    async fn a_raise_repays_debt_before_adding_permits() {
        let limiter = Limiter::new(Concurrency::Fixed(8), AdaptiveSettings::default());
        let shared = &limiter.shared;
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(limiter.acquire().await);
        }
        // 8 → 4 with every permit out, then back up to 5.
        shared.lower(&mut shared.state(), 4);
        shared.raise(&mut shared.state(), 1);
        assert_eq!(shared.state().debt, 3);
        assert_eq!(shared.semaphore.available_permits(), 0);
        drop(held);
        assert_eq!(shared.state().debt, 0);
        assert_eq!(shared.semaphore.available_permits(), 5);
    }
}
