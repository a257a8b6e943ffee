//! # A session backlog drained by 40 workers, with memory that stays flat
//!
//! The incident this example replays: a nightly job loads user sessions and
//! processes each one (some CPU to parse it, some blocking I/O to store the
//! result). Loading is much faster than processing, so with one goroutine per
//! session, or an unbounded channel, the backlog piles up in memory until the
//! process is killed.
//!
//! Here the same backlog goes through `crew::Pool` with 40 workers and a queue
//! of 1000 slots. The producer loads sessions as fast as it can; once the
//! queue is full, `submit()` blocks it until a worker frees a slot, so the
//! backlog waits where it is cheap (not yet loaded) instead of on the heap.
//! Every session carries a 4 KiB payload, which makes the bound visible in the
//! process's peak memory.
//!
//! Sessions of the same customer are submitted with `submit_keyed`, so they
//! run one at a time and in order, while different customers run in parallel.
//! Each job checks that it is its customer's next session and that no other
//! session of that customer is running.
//!
//! What to look at in the output:
//! - the progress lines: `queued` pinned at the capacity and every worker
//!   busy, while the producer spends most of the run blocked in `submit()`;
//! - `peak queued` never above the capacity, and a peak RSS in the low MiB
//!   rather than the size of the whole backlog;
//! - `out of order` and `overlapping` both zero;
//! - the shutdown report: the jobs still queued when the producer finished
//!   were drained, none abandoned;
//! - the summary: throughput, and queue wait (long, it is a backlog) against
//!   run time (short, the work itself). Queue wait p50 is about capacity ÷
//!   throughput; p99 is higher because a customer's later sessions also wait
//!   their turn in that customer's lane. The progress lines' p99 is over the
//!   whole run so far (the histograms are cumulative).
//!
//! Run it with:
//!
//! ```text
//! cargo run --release -p crew --example sessions_backlog
//! cargo run --release -p crew --example sessions_backlog -- --sessions 50000 --workers 16
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crew::Pool;

/// Jobs the pool may hold beyond the ones running: the memory bound.
const QUEUE_CAPACITY: usize = 1000;
/// Sessions are spread over this many customers; each customer's sessions
/// must be processed in the order they were loaded.
const CUSTOMERS: usize = 200;
/// Bytes of session data each job carries.
const PAYLOAD_BYTES: usize = 4 * 1024;
/// How often the sampler thread reads `stats().queued` to find its peak.
const SAMPLE_EVERY: Duration = Duration::from_micros(500);

fn main() {
    let config = Config::from_args();
    let pool = Pool::builder()
        .workers(config.workers)
        .queue_capacity(QUEUE_CAPACITY)
        .thread_name("session")
        .build();

    println!(
        "processing {} sessions of {} customers with {} workers, queue capacity {}",
        config.sessions, CUSTOMERS, config.workers, QUEUE_CAPACITY
    );
    println!(
        "each session: {PAYLOAD_BYTES} B payload, 1-3 parse passes (~4 µs each) + 0.2-1 ms blocking I/O\n"
    );

    let checks = Arc::new(OrderChecks::new(CUSTOMERS));
    let sampler = QueueSampler::start(pool.clone());

    let started = Instant::now();
    let mut rng = XorShift64::new(0x5EED_CAFE_F00D_D00D);
    // The sequence number of the next session of each customer, in load
    // order: the order the jobs must run in.
    let mut next_seq = vec![0u64; CUSTOMERS];
    let mut blocked_in_submit = Duration::ZERO;
    let progress_every = (config.sessions / 10).max(1);

    for index in 0..config.sessions {
        let session = Session::load(index, &mut rng, &mut next_seq);
        let checks = checks.clone();
        let customer = session.customer;

        // The producer is faster than 40 workers: once the queue holds
        // QUEUE_CAPACITY sessions, this call waits for a free slot. That wait
        // is the backpressure; the time spent in it is measured to show it.
        let before = Instant::now();
        pool.submit_keyed(&customer, move || session.process(&checks))
            .expect("the pool is only shut down after the last submit");
        blocked_in_submit += before.elapsed();

        if (index + 1) % progress_every == 0 {
            print_progress(&pool, index + 1, config.sessions, started.elapsed());
        }
    }
    let submitted_in = started.elapsed();

    // Everything is queued; shutdown() closes the pool, runs the sessions
    // still queued, and joins the workers.
    let report = pool.shutdown();
    let elapsed = started.elapsed();
    let peak_queued = sampler.stop();
    let stats = pool.stats();

    println!(
        "\nall {} sessions submitted after {}; shutdown() drained the rest:",
        config.sessions,
        format_duration(submitted_in)
    );
    println!(
        "  ShutdownReport {{ completed: {}, abandoned: {}, cancelled: {} }}",
        report.completed, report.abandoned, report.cancelled
    );

    let processed = checks.processed.load(Ordering::Relaxed);
    let out_of_order = checks.out_of_order.load(Ordering::Relaxed);
    let overlapping = checks.overlapping.load(Ordering::Relaxed);
    let rows = [
        ("sessions processed", format!("{processed}")),
        ("workers", format!("{}", config.workers)),
        ("wall time", format_duration(elapsed)),
        (
            "throughput",
            format!("{:.0} sessions/s", processed as f64 / elapsed.as_secs_f64()),
        ),
        (
            "peak queued",
            format!("{peak_queued} (capacity {QUEUE_CAPACITY})"),
        ),
        (
            "producer blocked in submit",
            format!(
                "{} ({:.0}% of the submit phase)",
                format_duration(blocked_in_submit),
                100.0 * blocked_in_submit.as_secs_f64() / submitted_in.as_secs_f64()
            ),
        ),
        ("queue wait p50", format_duration(stats.queue_wait.p50())),
        ("queue wait p99", format_duration(stats.queue_wait.p99())),
        ("queue wait max", format_duration(stats.queue_wait.max())),
        ("run time p50", format_duration(stats.run_time.p50())),
        ("run time p99", format_duration(stats.run_time.p99())),
        (
            "customer order",
            format!("{out_of_order} out of order, {overlapping} overlapping"),
        ),
        ("peak RSS", peak_rss()),
        (
            "payload of the whole backlog",
            format!(
                "{:.1} MiB (what an unbounded queue would hold)",
                (config.sessions * PAYLOAD_BYTES) as f64 / (1024.0 * 1024.0)
            ),
        ),
    ];
    println!("\n{:<30}| value", "metric");
    println!("{:-<30}|{:-<40}", "", "");
    for (name, value) in rows {
        println!("{name:<30}| {value}");
    }

    // The example's claims, checked: if one fails, it is a bug worth a report.
    assert_eq!(processed, config.sessions as u64, "every session ran");
    assert_eq!(stats.completed, config.sessions as u64);
    assert!(peak_queued <= QUEUE_CAPACITY, "the queue bound held");
    assert_eq!(out_of_order, 0, "each customer's sessions ran in order");
    assert_eq!(overlapping, 0, "each customer's sessions ran one at a time");
    assert_eq!(report.abandoned, 0, "shutdown() drains, it does not drop");
}

/// One session to process: who it belongs to, its place in that customer's
/// history, its data, and how long its two phases take.
struct Session {
    customer: u32,
    seq: u64,
    payload: Vec<u8>,
    /// Passes of the parser over the payload: about 4 µs each.
    cpu_rounds: u32,
    io: Duration,
}

impl Session {
    /// "Loads" session `index`: cheap compared with processing it, which is
    /// why the producer outruns the workers.
    fn load(index: usize, rng: &mut XorShift64, next_seq: &mut [u64]) -> Session {
        let customer = rng.below(CUSTOMERS as u64) as u32;
        let seq = next_seq[customer as usize];
        next_seq[customer as usize] += 1;
        // Real bytes, not a zeroed allocation the OS could leave unmapped:
        // the payload must count in the process's memory.
        let payload = vec![index as u8 | 1; PAYLOAD_BYTES];
        Session {
            customer,
            seq,
            payload,
            cpu_rounds: 1 + rng.below(3) as u32,
            io: Duration::from_micros(200 + rng.below(801)),
        }
    }

    /// Parses the session (CPU), then stores the result (blocking I/O).
    fn process(self, checks: &OrderChecks) {
        let customer = self.customer as usize;
        // Keyed lanes promise one job per key at a time, in submission
        // order; verify both instead of taking them on faith.
        if checks.running[customer].swap(true, Ordering::SeqCst) {
            checks.overlapping.fetch_add(1, Ordering::Relaxed);
        }
        if checks.next_seq[customer].swap(self.seq + 1, Ordering::SeqCst) != self.seq {
            checks.out_of_order.fetch_add(1, Ordering::Relaxed);
        }

        // A fixed amount of computation, not a spin for some wall time: with
        // more workers than cores a spin would stretch with contention.
        let mut digest = 0xCBF2_9CE4_8422_2325u64;
        for _ in 0..self.cpu_rounds {
            digest = fnv1a(black_box(&self.payload), digest);
        }
        black_box(digest);
        // A database write or an upstream call: the worker blocks, which is
        // why there are 40 workers on a machine with far fewer cores.
        thread::sleep(self.io);

        checks.running[customer].store(false, Ordering::SeqCst);
        checks.processed.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the jobs record so the example can prove its ordering claims.
struct OrderChecks {
    /// Per customer: the sequence number expected next.
    next_seq: Vec<AtomicU64>,
    /// Per customer: a session of it is running right now.
    running: Vec<AtomicBool>,
    out_of_order: AtomicU64,
    overlapping: AtomicU64,
    processed: AtomicU64,
}

impl OrderChecks {
    fn new(customers: usize) -> Self {
        OrderChecks {
            next_seq: (0..customers).map(|_| AtomicU64::new(0)).collect(),
            running: (0..customers).map(|_| AtomicBool::new(false)).collect(),
            out_of_order: AtomicU64::new(0),
            overlapping: AtomicU64::new(0),
            processed: AtomicU64::new(0),
        }
    }
}

/// A thread that polls `stats().queued` and keeps the highest value seen,
/// to show the bound holds while the producer is pushing as hard as it can.
struct QueueSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicUsize>,
    thread: thread::JoinHandle<()>,
}

impl QueueSampler {
    fn start(pool: Pool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(pool.stats().queued, Ordering::Relaxed);
                    thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        QueueSampler { stop, peak, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler does not panic");
        self.peak.load(Ordering::Relaxed)
    }
}

fn print_progress(pool: &Pool, submitted: usize, total: usize, elapsed: Duration) {
    let stats = pool.stats();
    let capacity = stats.queue_capacity.unwrap_or(usize::MAX);
    println!(
        "[{:>8}] submitted {submitted:>6}/{total}  completed {:>6}  queued {:>4}/{capacity}  busy {:>2}/{}  queue-wait p99 {}",
        format_duration(elapsed),
        stats.completed,
        stats.queued,
        stats.busy,
        stats.workers,
        format_duration(stats.queue_wait.p99()),
    );
}

/// The example's settings, from `--sessions N` and `--workers N`.
struct Config {
    sessions: usize,
    workers: usize,
}

impl Config {
    fn from_args() -> Self {
        let mut config = Config {
            sessions: 20_000,
            workers: 40,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let slot = match name.as_str() {
                "--sessions" => &mut config.sessions,
                "--workers" => &mut config.workers,
                _ => usage(&format!("unknown argument {name:?}")),
            };
            let value = inline.or_else(|| args.next());
            *slot = match value.as_deref().map(str::parse) {
                Some(Ok(n)) if n > 0 => n,
                _ => usage(&format!("{name} needs a positive number")),
            };
        }
        config
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("error: {problem}");
    eprintln!("usage: sessions_backlog [--sessions N] [--workers N]");
    std::process::exit(2);
}

/// xorshift64: deterministic, dependency-free pseudo-random numbers, so every
/// run sees the same customers and durations.
struct XorShift64(u64);

impl XorShift64 {
    fn new(seed: u64) -> Self {
        XorShift64(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (the slight modulo bias does not matter here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

fn format_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.1} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// The process's peak resident memory (Linux `VmHWM`); "n/a" elsewhere.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} MiB", kib / 1024.0))
        })
        .unwrap_or_else(|| "n/a (needs /proc/self/status)".to_owned())
}
