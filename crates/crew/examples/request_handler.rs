//! # A request handler that sheds load instead of spawning a thread per request
//!
//! The incident this example replays: an HTTP handler answers quickly and
//! starts the request's background work (send the welcome email, write the
//! audit record) with `go work(req)`, one goroutine or thread per request.
//! When the downstream slows or traffic spikes, the background work piles up:
//! thread count, memory and latency grow until the process falls over.
//!
//! Here the handler hands the work to a `crew::Pool` of 8 workers with a queue
//! of 64 slots, using `try_submit`, which never blocks the handler:
//! - the job was queued → `202 Accepted`;
//! - the queue is full → `503 Service Unavailable`, `Retry-After: 1` and the
//!   body `queue full, retry later`: the overload becomes an explicit answer
//!   the client can act on, instead of a backlog nobody sees.
//!
//! The server is a tiny HTTP/1.1 server on `std::net::TcpListener`, bound to
//! 127.0.0.1 on a free port, served by a fixed set of 4 handler threads. The
//! example then runs a bounded load generator against it (16 client threads ×
//! 500 requests, a fresh connection each, stopped after 20 s at the latest),
//! shuts everything down, and prints what happened. It uses only std and
//! crew, and exits 0 by itself.
//!
//! What to look at in the output:
//! - `202` + `503` = requests sent: every request got an answer, none hung;
//! - `503` equals the pool's `rejected` counter, and every `202` is a job
//!   that ran (`jobs completed`): accepted work is never lost;
//! - `peak concurrent work` and `distinct work threads` are at most the
//!   worker count, against the thousands of threads a thread-per-request
//!   handler would have started for the same load;
//! - `peak process threads` (Linux): the whole process, clients included,
//!   stays at a fixed size.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release -p crew --example request_handler
//! ```

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crew::{Pool, SubmitError};

/// Threads that run background work: the fixed set.
const WORKERS: usize = 8;
/// Background jobs allowed to wait for a worker; beyond this, 503.
const QUEUE_CAPACITY: usize = 64;
/// Threads accepting and answering connections (also a fixed set).
const HANDLER_THREADS: usize = 4;
/// Load generator: client threads, and requests each sends.
const CLIENTS: usize = 16;
const REQUESTS_PER_CLIENT: usize = 500;
/// Clients stop sending after this, whatever is left: the run is bounded in
/// time as well as in count.
const LOAD_DEADLINE: Duration = Duration::from_secs(20);
/// No socket operation may hang the example.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// One background job: a call to a slow downstream (an SMTP relay, say).
const WORK_TIME: Duration = Duration::from_millis(2);

fn main() {
    let pool = Pool::builder()
        .workers(WORKERS)
        .queue_capacity(QUEUE_CAPACITY)
        .thread_name("bg-work")
        .build();
    let work = Arc::new(WorkProbe::default());

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    println!(
        "server on http://{addr}: {HANDLER_THREADS} handler threads, background work on {WORKERS} workers, queue capacity {QUEUE_CAPACITY}"
    );
    println!(
        "load: {CLIENTS} clients x {REQUESTS_PER_CLIENT} requests, one connection each; each job takes {WORK_TIME:?}\n"
    );

    let thread_sampler = ThreadSampler::start();
    let stopping = Arc::new(AtomicBool::new(false));
    let handlers: Vec<_> = (0..HANDLER_THREADS)
        .map(|_| {
            let listener = listener.try_clone().expect("clone the listener");
            let (pool, work, stopping) = (pool.clone(), work.clone(), stopping.clone());
            thread::spawn(move || serve(&listener, &pool, &work, &stopping))
        })
        .collect();

    let started = Instant::now();
    let totals = run_load(addr);
    let load_time = started.elapsed();

    // Stop the handler threads: each is blocked in accept(), so raise the
    // flag and then wake each one with a connection it will drop.
    stopping.store(true, Ordering::SeqCst);
    for _ in 0..HANDLER_THREADS {
        let _ = TcpStream::connect_timeout(&addr, IO_TIMEOUT);
    }
    for handler in handlers {
        handler.join().expect("handler threads do not panic");
    }

    // Run what was accepted and still queued, then join the workers.
    let report = pool.shutdown();
    let peak_process_threads = thread_sampler.stop();
    let stats = pool.stats();

    let sent = totals.sent.load(Ordering::Relaxed);
    let accepted = totals.accepted.load(Ordering::Relaxed);
    let shed = totals.shed.load(Ordering::Relaxed);
    let other = totals.other.load(Ordering::Relaxed);
    let errors = totals.errors.load(Ordering::Relaxed);
    let completed = work.completed.load(Ordering::Relaxed);
    let peak_concurrent = work.peak_concurrent.load(Ordering::Relaxed);
    let distinct_threads = work.threads.lock().expect("not poisoned").len();

    println!(
        "load finished in {:.2} s ({:.0} requests/s); shutdown(): {:?}\n",
        load_time.as_secs_f64(),
        sent as f64 / load_time.as_secs_f64(),
        report
    );
    let rows = [
        ("requests sent", sent.to_string()),
        ("202 Accepted", accepted.to_string()),
        ("503 queue full, retry later", shed.to_string()),
        ("other answers / errors", format!("{other} / {errors}")),
        (
            "pool: submitted / rejected",
            format!("{} / {}", stats.submitted, stats.rejected),
        ),
        ("jobs completed", completed.to_string()),
        (
            "peak concurrent work",
            format!("{peak_concurrent} (workers: {WORKERS})"),
        ),
        ("distinct work threads", distinct_threads.to_string()),
        ("queue wait p99", format_millis(stats.queue_wait.p99())),
        ("run time p99", format_millis(stats.run_time.p99())),
        (
            "peak process threads",
            match peak_process_threads {
                Some(n) => format!(
                    "{n} (main + sampler + {HANDLER_THREADS} handlers + {CLIENTS} clients + {WORKERS} workers = {})",
                    2 + HANDLER_THREADS + CLIENTS + WORKERS
                ),
                None => "n/a (needs /proc/self/status)".to_owned(),
            },
        ),
        (
            "thread per request instead",
            format!("{sent} threads spawned; alive at once = rate x job time, bounded only by {sent}"),
        ),
    ];
    println!("{:<30}| value", "metric");
    println!("{:-<30}|{:-<40}", "", "");
    for (name, value) in rows {
        println!("{name:<30}| {value}");
    }

    // The example's claims, checked: if one fails, it is a bug worth a report.
    assert_eq!(errors + other, 0, "every request got a 202 or a 503");
    assert_eq!(accepted + shed, sent);
    assert_eq!(accepted, completed, "every accepted job ran");
    assert_eq!(shed, stats.rejected, "every 503 is a job the pool refused");
    assert!(peak_concurrent <= WORKERS && distinct_threads <= WORKERS);
}

/// What the background jobs record about where and how many ran at once.
#[derive(Default)]
struct WorkProbe {
    running: AtomicUsize,
    peak_concurrent: AtomicUsize,
    completed: AtomicU64,
    threads: Mutex<HashSet<ThreadId>>,
}

/// The background part of a signup request.
fn send_welcome_email(user: u64, probe: &WorkProbe) {
    let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
    probe.peak_concurrent.fetch_max(now, Ordering::SeqCst);
    probe
        .threads
        .lock()
        .expect("not poisoned")
        .insert(thread::current().id());

    // Stands in for the slow downstream call; `user` would pick the address.
    std::hint::black_box(user);
    thread::sleep(WORK_TIME);

    probe.running.fetch_sub(1, Ordering::SeqCst);
    probe.completed.fetch_add(1, Ordering::Relaxed);
}

/// One handler thread: accept, answer, repeat, until told to stop.
fn serve(listener: &TcpListener, pool: &Pool, probe: &Arc<WorkProbe>, stopping: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, _)) = accepted else {
            // A failed accept (a client gave up, a file-descriptor limit)
            // costs one connection; back off briefly and keep serving.
            thread::sleep(Duration::from_millis(1));
            continue;
        };
        // A client that misbehaves costs this connection, not the server.
        let _ = handle_connection(stream, pool, probe);
    }
}

fn handle_connection(
    stream: TcpStream,
    pool: &Pool,
    probe: &Arc<WorkProbe>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(&stream);

    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read the headers up to the blank line; the requests here have no body.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }

    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let user = target
        .strip_prefix("/signup?user=")
        .and_then(|id| id.parse::<u64>().ok());

    let (status, extra_headers, body) = match (method, user) {
        ("POST", Some(user)) => {
            let probe = probe.clone();
            // The whole point: never block the handler, never start a thread.
            // A full queue is an answer, not a wait.
            match pool.try_submit(move || send_welcome_email(user, &probe)) {
                Ok(()) => ("202 Accepted", "", "queued\n"),
                Err(SubmitError::Full(_) | SubmitError::Timeout(_)) => (
                    "503 Service Unavailable",
                    "Retry-After: 1\r\n",
                    "queue full, retry later\n",
                ),
                Err(SubmitError::Closed(_)) => ("503 Service Unavailable", "", "shutting down\n"),
            }
        }
        _ => ("404 Not Found", "", "try POST /signup?user=N\n"),
    };
    let mut stream = &stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Client-side counts, by answer.
#[derive(Default)]
struct LoadTotals {
    sent: AtomicU64,
    accepted: AtomicU64,
    shed: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

/// Runs the load generator to completion (or to its deadline).
fn run_load(addr: SocketAddr) -> LoadTotals {
    let totals = Arc::new(LoadTotals::default());
    let deadline = Instant::now() + LOAD_DEADLINE;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let totals = totals.clone();
            thread::spawn(move || {
                for i in 0..REQUESTS_PER_CLIENT {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let user = (client * REQUESTS_PER_CLIENT + i) as u64;
                    totals.sent.fetch_add(1, Ordering::Relaxed);
                    let counter = match post_signup(addr, user) {
                        Ok(202) => &totals.accepted,
                        Ok(503) => &totals.shed,
                        Ok(_) => &totals.other,
                        Err(_) => &totals.errors,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client threads do not panic");
    }
    Arc::try_unwrap(totals).unwrap_or_else(|_| unreachable!("all clients joined"))
}

/// One request on a fresh connection; returns the status code.
fn post_signup(addr: SocketAddr, user: u64) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        stream,
        "POST /signup?user={user} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response {response:?}")))
}

/// Polls the process's thread count (Linux `/proc/self/status`) and keeps the
/// peak, to show the process stays a fixed size under load.
struct ThreadSampler {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Option<usize>>,
}

impl ThreadSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut peak = None;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(process_threads());
                    thread::sleep(Duration::from_millis(1));
                }
                peak
            })
        };
        ThreadSampler { stop, thread }
    }

    fn stop(self) -> Option<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler does not panic")
    }
}

fn format_millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn process_threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
