//! The adaptive limiter against simulated services, in virtual time: tokio's
//! paused clock jumps to the next timer whenever every task is waiting, so
//! thousands of 10 ms requests take no real time and run deterministically.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crew_pipeline::concurrency::{AdaptiveSettings, Concurrency, Limiter, LimiterSnapshot, Signal};

const BASE_LATENCY: Duration = Duration::from_millis(10);

/// A service that answers a request from how loaded it was when the request
/// arrived (`in_flight` counts that request).
trait Service: Send + Sync + 'static {
    fn answer(&self, in_flight: usize) -> (Duration, Signal);
}

/// 10 ms up to `capacity` requests at once, then quadratically slower (the
/// knee of a saturating service). Optionally each answer varies by up to
/// ±`jitter` (a fraction, from a seeded generator), and requests past
/// `refuse_above` are refused (a bounded queue, or a timeout).
struct Saturating {
    capacity: usize,
    jitter: f64,
    refuse_above: usize,
    rng: Mutex<fastrand::Rng>,
}

impl Saturating {
    fn steady(capacity: usize) -> Saturating {
        Saturating {
            capacity,
            jitter: 0.0,
            refuse_above: usize::MAX,
            rng: Mutex::new(fastrand::Rng::with_seed(0)),
        }
    }
}

impl Service for Saturating {
    fn answer(&self, in_flight: usize) -> (Duration, Signal) {
        let overload = (in_flight as f64 / self.capacity as f64).max(1.0);
        let noise = 1.0 + self.jitter * (2.0 * self.rng.lock().unwrap().f64() - 1.0);
        let signal = if in_flight > self.refuse_above {
            Signal::Backpressure
        } else {
            Signal::Ok
        };
        (BASE_LATENCY.mul_f64(overload * overload * noise), signal)
    }
}

/// 10 ms always, but refuses (like a 429) past `accepts` requests at once.
struct Refusing {
    accepts: usize,
}

impl Service for Refusing {
    fn answer(&self, in_flight: usize) -> (Duration, Signal) {
        let signal = if in_flight > self.accepts {
            Signal::Backpressure
        } else {
            Signal::Ok
        };
        (BASE_LATENCY, signal)
    }
}

/// What the clients saw.
#[derive(Default)]
struct Trace {
    /// The limiter's snapshot after each response, in order.
    snapshots: Vec<LimiterSnapshot>,
    /// The most requests the service ever had at once.
    peak_at_service: usize,
}

/// `clients` tasks loop acquire → call the service → done, `requests` calls
/// in all.
async fn run(limiter: &Limiter, service: impl Service, clients: usize, requests: usize) -> Trace {
    let service = Arc::new(service);
    let left = Arc::new(AtomicUsize::new(requests));
    let at_service = Arc::new(AtomicUsize::new(0));
    let trace = Arc::new(Mutex::new(Trace::default()));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (limiter, service) = (limiter.clone(), Arc::clone(&service));
            let (left, at_service, trace) = (
                Arc::clone(&left),
                Arc::clone(&at_service),
                Arc::clone(&trace),
            );
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let permit = limiter.acquire().await;
                    let in_flight = at_service.fetch_add(1, Ordering::AcqRel) + 1;
                    {
                        let mut trace = trace.lock().unwrap();
                        trace.peak_at_service = trace.peak_at_service.max(in_flight);
                    }
                    let (latency, signal) = service.answer(in_flight);
                    tokio::time::sleep(latency).await;
                    at_service.fetch_sub(1, Ordering::AcqRel);
                    permit.done(signal);
                    trace.lock().unwrap().snapshots.push(limiter.snapshot());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(trace).ok().unwrap().into_inner().unwrap()
}

fn limits(trace: &Trace) -> impl Iterator<Item = usize> + '_ {
    trace.snapshots.iter().map(|s| s.limit)
}

const CAPACITY: usize = 8;

/// The lowest and highest limit after the first `warm_up` responses.
fn range_after(trace: &Trace, warm_up: usize) -> (usize, usize) {
    let after = limits(trace).skip(warm_up);
    after.fold((usize::MAX, 0), |(lo, hi), limit| {
        (lo.min(limit), hi.max(limit))
    })
}

#[tokio::test(start_paused = true)]
async fn the_limit_finds_the_capacity_and_stays_near_it() {
    let limiter = Limiter::new(Concurrency::Adaptive, AdaptiveSettings::default());
    let trace = run(&limiter, Saturating::steady(CAPACITY), 64, 4000).await;

    assert_eq!(trace.snapshots.len(), 4000);
    assert_eq!(trace.snapshots[0].limit, 1, "starts at initial_limit");
    let peak = limits(&trace).max().unwrap();
    assert!(peak >= CAPACITY / 2, "the limit rose from 1 to only {peak}");

    // After warm-up (a tenth of the run), the limit hovers around the
    // capacity instead of running away to the 64 clients or max_limit.
    let (low, high) = range_after(&trace, 400);
    assert!(
        low >= CAPACITY / 2 && high <= 3 * CAPACITY,
        "after warm-up the limit ranged over {low}..={high}, outside [{}, {}]",
        CAPACITY / 2,
        3 * CAPACITY
    );
    let last = *trace.snapshots.last().unwrap();
    assert!(last.increases > 0 && last.decreases > 0, "{last:?}");
    assert_eq!(last.backpressure, 0);
    // The long-run RTT stays near the uncongested latency, far from what a
    // 64-deep queue would take (640 ms).
    let rtt = last.rtt_mean.unwrap();
    assert!(rtt < BASE_LATENCY * 3, "long-run RTT {rtt:?}");
    assert!(trace.peak_at_service <= 3 * CAPACITY);
    assert_eq!(limiter.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn with_jitter_and_a_bounded_queue_the_limit_stays_near_the_capacity() {
    for seed in 1..=5 {
        let service = Saturating {
            jitter: 0.1,
            refuse_above: 2 * CAPACITY,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            ..Saturating::steady(CAPACITY)
        };
        let limiter = Limiter::new(Concurrency::Adaptive, AdaptiveSettings::default());
        let trace = run(&limiter, service, 64, 4000).await;

        let (low, high) = range_after(&trace, 400);
        assert!(
            low >= CAPACITY / 2 && high <= 3 * CAPACITY,
            "seed {seed}: after warm-up the limit ranged over {low}..={high}"
        );
        let last = *trace.snapshots.last().unwrap();
        assert!(last.decreases > 0, "seed {seed}: {last:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn backpressure_keeps_the_limit_down_and_never_below_one() {
    let limiter = Limiter::new(Concurrency::Adaptive, AdaptiveSettings::default());
    let trace = run(&limiter, Refusing { accepts: 5 }, 32, 3000).await;

    let last = *trace.snapshots.last().unwrap();
    assert!(
        last.backpressure > 0,
        "the limit never went past 5: {last:?}"
    );
    assert!(last.decreases > 0, "{last:?}");
    assert!(limits(&trace).all(|limit| limit >= 1));
    // Each refusal costs a decrease within a window, so the limit stays
    // close to what the service accepts.
    let high = limits(&trace).skip(300).max().unwrap();
    assert!(
        high <= 8,
        "the limit reached {high} against a service that accepts 5"
    );
    let low = limits(&trace).skip(300).min().unwrap();
    assert!(low >= 2, "the limit fell to {low} though 5 are accepted");
}

#[tokio::test(start_paused = true)]
async fn a_service_that_always_refuses_holds_the_limit_at_one() {
    let settings = AdaptiveSettings {
        initial_limit: 16,
        ..AdaptiveSettings::default()
    };
    let limiter = Limiter::new(Concurrency::Adaptive, settings);
    let trace = run(&limiter, Refusing { accepts: 0 }, 32, 1000).await;

    let limits: Vec<usize> = limits(&trace).collect();
    assert!(limits.windows(2).all(|w| w[1] <= w[0]), "it never grows");
    assert_eq!(*limits.last().unwrap(), 1);
    let last = *trace.snapshots.last().unwrap();
    assert_eq!(last.backpressure, 1000);
    assert_eq!(last.increases, 0);
    assert_eq!(last.rtt_mean, None, "backpressure is no latency sample");
    // 16 → 14 → 12 → 10 → 9 → 8 → 7 → 6 → 5 → 4 → 3 → 2 → 1 at 0.9 each.
    assert_eq!(last.decreases, 12);
}

#[tokio::test(start_paused = true)]
async fn a_fixed_limit_never_moves_and_is_never_exceeded() {
    let limiter = Limiter::new(Concurrency::Fixed(3), AdaptiveSettings::default());
    let trace = run(&limiter, Refusing { accepts: 2 }, 16, 500).await;

    assert!(limits(&trace).all(|limit| limit == 3));
    assert_eq!(trace.peak_at_service, 3);
    let last = *trace.snapshots.last().unwrap();
    assert_eq!((last.increases, last.decreases), (0, 0));
    assert!(last.backpressure > 0);
    assert_eq!(
        last.rtt_mean,
        Some(BASE_LATENCY),
        "still measured for metrics"
    );
}

#[tokio::test(start_paused = true)]
async fn a_permit_dropped_without_done_frees_its_slot() {
    let limiter = Limiter::new(Concurrency::Fixed(1), AdaptiveSettings::default());
    let held = limiter.acquire().await;
    // Virtual time: the timeout fires as soon as every task is waiting.
    let blocked = tokio::time::timeout(Duration::from_secs(1), limiter.acquire()).await;
    assert!(blocked.is_err(), "the only slot is taken");

    let waiter = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire().await }
    });
    tokio::time::sleep(BASE_LATENCY).await;
    drop(held);
    let permit = waiter.await.unwrap();
    assert_eq!(limiter.snapshot().in_flight, 1);
    drop(permit);

    let snapshot = limiter.snapshot();
    assert_eq!(snapshot.in_flight, 0);
    assert_eq!(snapshot.rtt_mean, None, "a dropped permit is no sample");
}

#[tokio::test(start_paused = true)]
async fn a_lower_limit_is_respected_once_the_permits_out_come_back() {
    let settings = AdaptiveSettings {
        initial_limit: 8,
        decrease_ratio: 0.5,
        ..AdaptiveSettings::default()
    };
    let limiter = Limiter::new(Concurrency::Adaptive, settings);
    let mut held: Vec<_> = Vec::new();
    for _ in 0..8 {
        held.push(limiter.acquire().await);
    }
    // Eight clients wait for a slot and note how many were in flight when
    // they got one; they hold it past the end of the test's drops.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, seen) = (limiter.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let permit = limiter.acquire().await;
                seen.lock().unwrap().push(limiter.snapshot().in_flight);
                tokio::time::sleep(BASE_LATENCY * 10).await;
                drop(permit);
            })
        })
        .collect();

    // Backpressure on the first response halves the limit while 7 are out.
    tokio::time::sleep(BASE_LATENCY).await;
    held.pop().unwrap().done(Signal::Backpressure);
    let snapshot = limiter.snapshot();
    assert_eq!((snapshot.limit, snapshot.in_flight), (4, 7));

    // The others come back one at a time: the first three slots are retired
    // (7 → 4 in flight), and only then does each returned slot go to a
    // waiter, keeping in-flight at the new limit.
    for returned in 1..=7 {
        drop(held.pop().unwrap());
        // Lets every woken waiter run before looking.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let in_flight = limiter.snapshot().in_flight;
        assert_eq!(
            in_flight,
            (7 - returned).max(4),
            "after {returned} came back"
        );
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "four waiters got the four slots"
    );
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 8, "every waiter got a slot in the end");
    assert!(
        seen.iter().all(|&in_flight| in_flight <= 4),
        "in flight on acquire: {seen:?}"
    );
    assert_eq!(limiter.snapshot().limit, 4);
    assert_eq!(limiter.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_lower_limit_takes_idle_slots_at_once() {
    let settings = AdaptiveSettings {
        initial_limit: 8,
        decrease_ratio: 0.5,
        ..AdaptiveSettings::default()
    };
    let limiter = Limiter::new(Concurrency::Adaptive, settings);
    let first = limiter.acquire().await;
    let _second = limiter.acquire().await;
    tokio::time::sleep(BASE_LATENCY).await;
    first.done(Signal::Backpressure);
    assert_eq!(limiter.snapshot().limit, 4);

    // One is still out, so exactly three more fit under the new limit.
    let mut taken = Vec::new();
    while let Ok(permit) = tokio::time::timeout(BASE_LATENCY, limiter.acquire()).await {
        taken.push(permit);
        assert!(taken.len() <= 8, "the limit is not enforced at all");
    }
    assert_eq!(taken.len(), 3);
    assert_eq!(limiter.snapshot().in_flight, 4);
}

#[test]
fn acquire_from_a_plain_thread_and_done_from_a_task() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let limiter = Limiter::new(Concurrency::Fixed(2), AdaptiveSettings::default());
    let handle = runtime.handle().clone();
    let thread = std::thread::spawn({
        let limiter = limiter.clone();
        move || {
            // The HTTP sink's shape: a sink thread blocks for a slot, then a
            // task finishes the request.
            let permit = handle.block_on(limiter.acquire());
            handle.block_on(handle.spawn(async move { permit.done(Signal::Ok) }))
        }
    });
    thread.join().unwrap().unwrap();
    let snapshot = limiter.snapshot();
    assert_eq!((snapshot.limit, snapshot.in_flight), (2, 0));
    assert!(snapshot.rtt_mean.is_some());
}
