//! Pool statistics: counters, gauges and latency histograms.
//!
//! Recording is per worker: each worker owns its counters and histograms and
//! is their only writer, so the hot path does plain loads and stores on memory
//! no other thread writes (no locks, no contended read-modify-writes). Reading
//! ([`Pool::stats`](crate::Pool::stats)) sums the workers' cells; it is the
//! only place that pays.

use std::time::Duration;

// Counters and histograms are single-writer cells outside every protocol, so
// they stay plain atomics even under loom (modelling them would only multiply
// interleavings). `busy` takes part in `wait_idle`'s protocol, so it is
// loom-visible.
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::AtomicBool;

/// Sub-bucket bits per power of two: 8 buckets per octave, so a bucket's upper
/// bound overstates a value by at most 12.5%.
const SUB_BITS: u32 = 3;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Values at or above 2^MAX_EXP nanoseconds (about 18 minutes) share the last
/// bucket; `max` still records them exactly.
const MAX_EXP: u32 = 40;
/// Number of buckets: values below `SUB_BUCKETS` get one bucket each, then
/// `SUB_BUCKETS` per octave up to `MAX_EXP`.
pub(crate) const BUCKETS: usize = SUB_BUCKETS + (MAX_EXP - SUB_BITS) as usize * SUB_BUCKETS;

fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB_BUCKETS as u64 {
        return nanos as usize;
    }
    let exp = 63 - nanos.leading_zeros();
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (nanos >> (exp - SUB_BITS)) as usize & (SUB_BUCKETS - 1);
    SUB_BUCKETS + (exp - SUB_BITS) as usize * SUB_BUCKETS + sub
}

/// The largest value (in nanoseconds) that falls into `bucket`.
fn upper_bound_of(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let octave = (bucket - SUB_BUCKETS) / SUB_BUCKETS;
    let sub = (bucket - SUB_BUCKETS) % SUB_BUCKETS;
    let exp = octave as u32 + SUB_BITS;
    let width = 1u64 << (exp - SUB_BITS);
    (1u64 << exp) + (sub as u64 + 1) * width - 1
}

/// Adds one to a cell that only the calling thread writes.
///
/// A load and a store instead of `fetch_add`: no lock prefix, no cache-line
/// ownership fight, and readers still see a value that only ever grows.
#[inline]
fn bump(cell: &AtomicU64, by: u64) {
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// A latency histogram written by one thread and read by any.
pub(crate) struct LocalHistogram {
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    max: AtomicU64,
}

impl LocalHistogram {
    pub(crate) fn new() -> Self {
        LocalHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value. Only the owning worker may call this.
    #[inline]
    pub(crate) fn record(&self, nanos: u64) {
        bump(&self.buckets[bucket_of(nanos)], 1);
        bump(&self.sum, nanos);
        if nanos > self.max.load(Ordering::Relaxed) {
            self.max.store(nanos, Ordering::Relaxed);
        }
    }

    fn add_to(&self, snapshot: &mut Histogram) {
        for (total, cell) in snapshot.buckets.iter_mut().zip(self.buckets.iter()) {
            let n = cell.load(Ordering::Relaxed);
            *total += n;
            snapshot.count += n;
        }
        snapshot.sum_nanos += self.sum.load(Ordering::Relaxed);
        snapshot.max_nanos = snapshot.max_nanos.max(self.max.load(Ordering::Relaxed));
    }
}

/// What one worker counts. One writer (the worker), many readers.
pub(crate) struct WorkerStats {
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    /// True while the worker runs a job.
    pub(crate) busy: AtomicBool,

    pub(crate) queue_wait: LocalHistogram,
    pub(crate) run_time: LocalHistogram,
}

/// Which counter an outcome lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counter {
    Completed,
    Failed,
    Panicked,
    Expired,
    Cancelled,
    Abandoned,
}

impl WorkerStats {
    pub(crate) fn new() -> Self {
        WorkerStats {
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            queue_wait: LocalHistogram::new(),
            run_time: LocalHistogram::new(),
        }
    }

    #[inline]
    pub(crate) fn count(&self, counter: Counter) {
        bump(self.cell(counter), 1);
    }

    fn cell(&self, counter: Counter) -> &AtomicU64 {
        match counter {
            Counter::Completed => &self.completed,
            Counter::Failed => &self.failed,
            Counter::Panicked => &self.panicked,
            Counter::Expired => &self.expired,
            Counter::Cancelled => &self.cancelled,
            Counter::Abandoned => &self.abandoned,
        }
    }

    #[inline]
    pub(crate) fn set_busy(&self, busy: bool) {
        // Release: a reader that sees `false` also sees the counts recorded
        // before it.
        self.busy.store(busy, crate::sync::Ordering::Release);
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(crate::sync::Ordering::SeqCst)
    }

    /// Records how a job ended. Both histograms describe jobs that started;
    /// a job skipped as expired or cancelled only lands in its counter.
    /// A panic is also handed to the pool's hook, if any.
    pub(crate) fn record(
        &self,
        outcome: crate::job::Outcome,
        waited_nanos: u64,
        ran_nanos: u64,
        on_panic: Option<&(dyn Fn(&str) + Send + Sync)>,
    ) {
        use crate::job::Outcome;
        match outcome {
            Outcome::Counted(counter) => {
                if matches!(counter, Counter::Completed | Counter::Failed) {
                    self.queue_wait.record(waited_nanos);
                    self.run_time.record(ran_nanos);
                }
                self.count(counter);
            }
            Outcome::Panicked(message) => {
                self.queue_wait.record(waited_nanos);
                self.run_time.record(ran_nanos);
                self.count(Counter::Panicked);
                if let Some(hook) = on_panic {
                    // A panicking hook must not take the worker down either.
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&message)));
                }
            }
        }
    }

    /// Adds this worker's counters and histograms into `stats`.
    pub(crate) fn add_to(&self, stats: &mut Stats) {
        stats.completed += self.completed.load(Ordering::Relaxed);
        stats.failed += self.failed.load(Ordering::Relaxed);
        stats.panicked += self.panicked.load(Ordering::Relaxed);
        stats.expired += self.expired.load(Ordering::Relaxed);
        stats.cancelled += self.cancelled.load(Ordering::Relaxed);
        stats.abandoned += self.abandoned.load(Ordering::Relaxed);
        self.queue_wait.add_to(&mut stats.queue_wait);
        self.run_time.add_to(&mut stats.run_time);
    }
}

/// The stats of a pool's live workers, and the sums of the ones that left.
#[derive(Default)]
pub(crate) struct WorkerBook {
    live: Vec<(usize, crate::sync::Arc<WorkerStats>)>,
    retired: Stats,
}

impl WorkerBook {
    pub(crate) fn join(&mut self, id: usize, stats: crate::sync::Arc<WorkerStats>) {
        self.live.push((id, stats));
    }

    /// Worker `id` left (or never started): keep its counts, drop its cell.
    pub(crate) fn leave(&mut self, id: usize) {
        if let Some(index) = self.live.iter().position(|(w, _)| *w == id) {
            let (_, stats) = self.live.swap_remove(index);
            stats.add_to(&mut self.retired);
        }
    }

    /// True while worker `id` has not left.
    #[cfg(not(loom))]
    pub(crate) fn contains(&self, id: usize) -> bool {
        self.live.iter().any(|(w, _)| *w == id)
    }

    /// Workers running a job right now.
    pub(crate) fn busy(&self) -> usize {
        self.live
            .iter()
            .filter(|(_, stats)| stats.is_busy())
            .count()
    }

    /// Counters and histograms summed over every worker, with the worker
    /// gauges filled in.
    pub(crate) fn snapshot(&self) -> Stats {
        let mut stats = self.retired.clone();
        let mut busy = 0;
        for (_, worker) in &self.live {
            worker.add_to(&mut stats);
            busy += worker.is_busy() as usize;
        }
        stats.workers = self.live.len();
        stats.busy = busy;
        stats.idle = stats.workers - busy;
        stats
    }
}

/// A point-in-time copy of a latency histogram.
///
/// Buckets are log-linear (8 per power of two), so a quantile is reported as
/// its bucket's upper bound: at most 12.5% above the true value, never below.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum_nanos: u64,
    max_nanos: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum_nanos: 0,
            max_nanos: 0,
        }
    }
}

impl Histogram {
    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of all recorded values.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }

    /// Mean of the recorded values (zero when empty).
    pub fn mean(&self) -> Duration {
        match self.count {
            0 => Duration::ZERO,
            n => Duration::from_nanos(self.sum_nanos / n),
        }
    }

    /// Largest recorded value, exact.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_nanos)
    }

    /// The value at quantile `q` (0.0 ..= 1.0); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (bucket, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(upper_bound_of(bucket).min(self.max_nanos));
            }
        }
        self.max()
    }

    /// Median.
    pub fn p50(&self) -> Duration {
        self.quantile(0.50)
    }

    /// 90th percentile.
    pub fn p90(&self) -> Duration {
        self.quantile(0.90)
    }

    /// 99th percentile.
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// Non-empty buckets as `(upper bound, count)` pairs in increasing order,
    /// for exporters that re-bucket (Prometheus `le` buckets, for example).
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(bucket, n)| (Duration::from_nanos(upper_bound_of(bucket)), *n))
    }

    /// How many recorded values are at or below `bound` (to bucket precision:
    /// a bucket counts when its upper bound is at or below `bound`).
    pub fn count_at_or_below(&self, bound: Duration) -> u64 {
        let bound = bound.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets
            .iter()
            .enumerate()
            .take_while(|(bucket, _)| upper_bound_of(*bucket) <= bound)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A latency histogram that any number of threads record into, for
/// latencies measured outside a pool: a pipeline stage's calls, an event's
/// trip from source to sink.
///
/// Each [`record`](Self::record) is three atomic operations on shared cache lines;
/// a thread that records many values per unit of work (a batch) counts them
/// in a [`Tally`] and [`add`](Self::add)s it once, which keeps the shared
/// cache lines out of the hot loop.
///
/// ```
/// use std::time::Duration;
/// use crew::{SharedHistogram, Tally};
///
/// let histogram = SharedHistogram::new();
/// histogram.record(Duration::from_micros(40));
/// let mut tally = Tally::new();
/// for micros in 1..=99 {
///     tally.record(Duration::from_micros(micros));
/// }
/// histogram.add(&tally);
/// let snapshot = histogram.snapshot();
/// assert_eq!(snapshot.count(), 100);
/// assert!(snapshot.p99() >= Duration::from_micros(98));
/// ```
pub struct SharedHistogram {
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for SharedHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SharedHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedHistogram({})", self.snapshot())
    }
}

impl SharedHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        SharedHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn record(&self, value: Duration) {
        self.record_n(value, 1);
    }

    /// Records `n` values of the same size (a batch whose events all waited
    /// the same time).
    pub fn record_n(&self, value: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let nanos = saturating_nanos(value);
        self.buckets[bucket_of(nanos)].fetch_add(n, Ordering::Relaxed);
        self.sum
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
        self.max.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Adds every value counted in `tally`.
    pub fn add(&self, tally: &Tally) {
        if tally.count == 0 {
            return;
        }
        for (cell, n) in self.buckets.iter().zip(tally.buckets.iter()) {
            if *n > 0 {
                cell.fetch_add(*n, Ordering::Relaxed);
            }
        }
        self.sum.fetch_add(tally.sum_nanos, Ordering::Relaxed);
        self.max.fetch_max(tally.max_nanos, Ordering::Relaxed);
    }

    /// A point-in-time copy. Concurrent records may be half in it (a bucket
    /// counted, its sum not yet): exporters tolerate that, as Prometheus
    /// client libraries do.
    pub fn snapshot(&self) -> Histogram {
        let mut snapshot = Histogram::default();
        for (total, cell) in snapshot.buckets.iter_mut().zip(self.buckets.iter()) {
            *total = cell.load(Ordering::Relaxed);
            snapshot.count += *total;
        }
        snapshot.sum_nanos = self.sum.load(Ordering::Relaxed);
        snapshot.max_nanos = self.max.load(Ordering::Relaxed);
        snapshot
    }
}

/// Values counted by one thread with plain arithmetic, to be added to a
/// [`SharedHistogram`] in one go.
#[derive(Clone, Debug)]
pub struct Tally {
    buckets: Box<[u64]>,
    count: u64,
    sum_nanos: u64,
    max_nanos: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Tally {
            buckets: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum_nanos: 0,
            max_nanos: 0,
        }
    }

    /// Counts one value.
    #[inline]
    pub fn record(&mut self, value: Duration) {
        self.record_nanos(saturating_nanos(value));
    }

    /// Counts one value given in nanoseconds.
    #[inline]
    pub fn record_nanos(&mut self, nanos: u64) {
        self.buckets[bucket_of(nanos)] += 1;
        self.count += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
        self.max_nanos = self.max_nanos.max(nanos);
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.count
    }
}

fn saturating_nanos(value: Duration) -> u64 {
    value.as_nanos().min(u64::MAX as u128) as u64
}

/// `n=1000 p50=1.2ms p90=2.1ms p99=3.4ms max=5.0ms`, each rounded to
/// three significant digits.
impl std::fmt::Display for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={} p90={} p99={} max={}",
            self.count,
            Short(self.p50()),
            Short(self.p90()),
            Short(self.p99()),
            Short(self.max())
        )
    }
}

/// A duration printed with three significant digits and a unit that fits.
pub(crate) struct Short(pub(crate) Duration);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nanos = self.0.as_nanos() as f64;
        let (value, unit) = if nanos < 1e3 {
            (nanos, "ns")
        } else if nanos < 1e6 {
            (nanos / 1e3, "µs")
        } else if nanos < 1e9 {
            (nanos / 1e6, "ms")
        } else {
            (nanos / 1e9, "s")
        };
        let decimals = if value >= 100.0 {
            0
        } else if value >= 10.0 {
            1
        } else {
            2
        };
        write!(f, "{value:.decimals$}{unit}")
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("p50", &self.p50())
            .field("p90", &self.p90())
            .field("p99", &self.p99())
            .field("max", &self.max())
            .finish()
    }
}

/// A snapshot of a pool's counters, gauges and histograms.
///
/// Counters only grow over the pool's life. Every accepted job ends in
/// exactly one of `completed`, `failed`, `panicked`, `expired`, `cancelled`
/// or `abandoned`, so once the pool is idle,
/// `submitted == completed + failed + panicked + expired + cancelled + abandoned`.
///
/// ```
/// let pool = crew::Pool::new(2);
/// for _ in 0..10 {
///     pool.submit(|| ()).unwrap();
/// }
/// pool.wait_idle();
/// let stats = pool.stats();
/// assert_eq!(stats.completed, 10);
/// println!("queue wait p99: {:?}", stats.queue_wait.p99());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Jobs accepted.
    pub submitted: u64,
    /// Jobs that ran and returned normally (for `submit`, returned `()` or
    /// `Ok`).
    pub completed: u64,
    /// Fire-and-forget jobs that ran and returned `Err`.
    pub failed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs refused: queue full (`try_submit`, `submit_timeout`) or pool
    /// closed.
    pub rejected: u64,
    /// Jobs not run because they waited past their deadline.
    pub expired: u64,
    /// Jobs cancelled before they started; for `AsyncPool`, also jobs
    /// dropped at an await point because they were cancelled while running.
    pub cancelled: u64,
    /// Jobs discarded unrun by `shutdown_now` or `shutdown_timeout`.
    pub abandoned: u64,
    /// Worker threads alive.
    pub workers: usize,
    /// Workers running a job.
    pub busy: usize,
    /// Workers waiting for a job.
    pub idle: usize,
    /// Jobs accepted and not yet started (including jobs waiting behind
    /// their key's lane).
    pub queued: usize,
    /// Queue bound; `None` for an unbounded queue.
    pub queue_capacity: Option<usize>,
    /// Keys with a job queued or running.
    pub lanes: usize,
    /// Time from submission to the start of the job.
    pub queue_wait: Histogram,
    /// Time the job ran.
    pub run_time: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order_and_bound_them() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, (1 << 39) + 5, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last || v < 100_000, "buckets go up with values");
            assert!(b < BUCKETS);
            if v < 1 << MAX_EXP {
                assert!(upper_bound_of(b) >= v, "{v} above its bucket's bound");
                assert!(upper_bound_of(b) - v <= v / 8 + 1, "bucket too wide at {v}");
            }
            last = b;
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let local = LocalHistogram::new();
        for v in 1..=1000u64 {
            local.record(v * 1000);
        }
        let mut h = Histogram::default();
        local.add_to(&mut h);
        assert_eq!(h.count(), 1000);
        let p50 = h.p50().as_nanos() as f64;
        assert!((500_000.0..=562_500.0).contains(&p50), "p50 {p50}");
        let p99 = h.p99().as_nanos() as f64;
        assert!((990_000.0..=1_000_000.0).contains(&p99), "p99 {p99}");
        assert_eq!(h.max(), Duration::from_micros(1000));
        assert_eq!(h.count_at_or_below(Duration::from_secs(1)), 1000);
    }

    #[test]
    fn empty_histogram_reads_zero() {
        let h = Histogram::default();
        assert_eq!(h.p99(), Duration::ZERO);
        assert_eq!(h.mean(), Duration::ZERO);
    }
}
