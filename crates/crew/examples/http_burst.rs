//! # An HTTP service under a burst: a bounded `AsyncPool` against `tokio::spawn`
//!
//! The incident this example replays: an `Invoke` handler answered `202
//! Accepted` at once and started the request's background work with
//! `go doWork(payload)`, one goroutine per request. The work calls a partner
//! API that takes a fixed number of calls at a time. When a burst came, the
//! handler kept accepting far faster than the partner could serve, and every
//! accepted request pinned its payload and buffers in memory while it waited:
//! memory grew with the burst until the process was killed, and every `202`
//! still queued was lost with it.
//!
//! The service here is a real axum server on 127.0.0.1 (a free port). Its
//! `POST /invoke` handler hands `background_work(body)` off in one of two ways:
//! - `--mode crew` (the default): `AsyncPool::try_submit` on a pool of 64
//!   workers with a queue of 1024. Queued → `202 Accepted`; queue full → `503
//!   Service Unavailable` with `Retry-After: 1` and a plain-text body saying
//!   why. The handler never waits and never starts a task of its own.
//! - `--mode spawn`: `tokio::spawn(background_work(body))` and always `202`,
//!   the Go handler's `go doWork(payload)`.
//!
//! Each background job holds a 32 KiB buffer from the moment it is created
//! (filled, so the memory is really resident), hashes the body on a shared
//! 2-thread `crew::Pool` through `Pool::run` (the CPU part stays off the
//! runtime threads), then calls the partner: at most 64 calls at once
//! (`PARTNER_CONCURRENCY`), 20 ms each, so the partner serves at most about
//! 3200 jobs/s, whatever the handler does. A load generator in the same process
//! sends a burst of 50,000 requests over 256 keep-alive HTTP/1.1 connections
//! (hyper's client), stopped after 20 s at the latest.
//!
//! What to look at in the output:
//! - `peak live jobs`: background jobs alive at once (created and not yet
//!   dropped). In crew mode it stays within workers + queue capacity + the
//!   few jobs being handed over (the handoff is synchronous, so at most one
//!   per runtime thread); in spawn mode it is most of the burst;
//! - `peak RSS`: tens of MiB against more than a GiB for the same requests;
//! - `503`: the overload is an answer the client can act on (retry later),
//!   not a backlog nobody sees; every request got a `202` or a `503`;
//! - `background work done`: in crew mode every accepted job has run shortly
//!   after the burst; in spawn mode the last `202` is honoured many seconds
//!   after it was sent (the partner did not get faster).
//!
//! Crew mode checks its claims (bounded live jobs, every request answered
//! 202 or 503, some 503s, every 202 ran) and exits non-zero if one fails;
//! spawn mode checks only that every request got a 202. No claim depends on
//! how fast the machine is.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release -p crew --example http_burst
//! cargo run --release -p crew --example http_burst -- --mode spawn
//! ```

use std::error::Error;
use std::future::{Future, IntoFuture};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use crew::{AsyncPool, Pool, SubmitError};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};

/// Worker tasks running background jobs in crew mode: as many as the
/// partner takes calls at once (more would only wait on the partner).
const WORKERS: usize = 64;
/// Background jobs allowed to wait for a worker; beyond this, 503.
const QUEUE_CAPACITY: usize = 1024;
/// The partner API takes this many calls at once (its connection limit)...
const PARTNER_CONCURRENCY: usize = 64;
/// ...and each call takes this long: about 3200 calls/s at best.
const PARTNER_LATENCY: Duration = Duration::from_millis(20);
/// Memory each background job pins from its creation to its end.
const JOB_BUFFER_BYTES: usize = 32 * 1024;
/// Threads of the shared CPU pool (the hashing), and its queue.
const CPU_THREADS: usize = 2;
const CPU_QUEUE_CAPACITY: usize = 256;
/// Passes of the hash over the body: a few microseconds of CPU per job.
const HASH_PASSES: usize = 32;
/// The burst: this many requests over this many keep-alive connections...
const REQUESTS: usize = 50_000;
const CONNECTIONS: usize = 256;
/// ...and no new request after this, whatever is left: bounded in time too.
const LOAD_DEADLINE: Duration = Duration::from_secs(20);
/// No single request (connect, send, read the answer) may hang the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Spawn mode waits at most this long for its backlog after the burst.
const SPAWN_DRAIN_LIMIT: Duration = Duration::from_secs(25);
/// What a 503 tells the client to wait before retrying, in seconds.
const RETRY_AFTER: &str = "1";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Crew,
    Spawn,
}

fn main() {
    let mode = parse_mode();
    let runtime_threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(runtime_threads)
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    let cpu = Pool::builder()
        .workers(CPU_THREADS)
        .queue_capacity(CPU_QUEUE_CAPACITY)
        .thread_name("cpu")
        .build();
    let work = Arc::new(Work {
        cpu: cpu.clone(),
        partner: Partner {
            slots: Semaphore::new(PARTNER_CONCURRENCY),
            latency: PARTNER_LATENCY,
        },
        probe: Probe::default(),
    });

    let outcome = runtime.block_on(run(mode, work.clone()));
    // Spawn mode may leave background tasks behind (if its drain limit ran
    // out): dropping the runtime drops them, and then the CPU pool can stop.
    drop(runtime);
    cpu.shutdown();

    report_and_check(mode, runtime_threads, &work.probe, &outcome);
}

/// What one run measured, besides the probe's counters.
struct Outcome {
    tally: Tally,
    /// The crew pool's counters after its shutdown (crew mode).
    pool_stats: Option<crew::Stats>,
    rss_before_kib: Option<u64>,
    burst: Duration,
    /// From the start of the burst until no background job was left (None:
    /// spawn mode gave up waiting).
    work_done: Option<Duration>,
}

async fn run(mode: Mode, work: Arc<Work>) -> Outcome {
    let pool = (mode == Mode::Crew).then(|| {
        AsyncPool::builder()
            .workers(WORKERS)
            .queue_capacity(QUEUE_CAPACITY)
            .build()
    });
    let app = Arc::new(App {
        pool: pool.clone(),
        work: work.clone(),
        busy_body: Bytes::from(format!(
            "busy: background queue full ({QUEUE_CAPACITY} queued, {WORKERS} workers); retry later\n"
        )),
    });
    let router = Router::new().route("/invoke", post(invoke)).with_state(app);

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );

    match mode {
        Mode::Crew => println!(
            "mode crew: POST /invoke on http://{addr} hands background work to AsyncPool::try_submit \
             ({WORKERS} workers, queue capacity {QUEUE_CAPACITY}); queue full -> 503"
        ),
        Mode::Spawn => println!(
            "mode spawn: POST /invoke on http://{addr} starts background work with tokio::spawn, \
             always 202"
        ),
    }
    println!(
        "each job: {} KiB buffer, hash on a {CPU_THREADS}-thread crew::Pool, then a partner call \
         ({PARTNER_LATENCY:?}, at most {PARTNER_CONCURRENCY} at once)",
        JOB_BUFFER_BYTES / 1024
    );
    println!("burst: {REQUESTS} requests over {CONNECTIONS} keep-alive connections\n");

    let rss_before_kib = proc_status_kib("VmRSS:");
    let started = Instant::now();
    let tally = run_load(addr).await;
    let burst = started.elapsed();

    // The clients have closed their connections: stop the server.
    let _ = stop.send(());
    server
        .await
        .expect("the server task does not panic")
        .expect("axum::serve does not fail");

    let (pool_stats, work_done) = match &pool {
        Some(pool) => {
            // Runs what is still queued, then stops the workers.
            pool.shutdown().await;
            (Some(pool.stats()), Some(started.elapsed()))
        }
        None => {
            let limit = Instant::now() + SPAWN_DRAIN_LIMIT;
            let drained = loop {
                if work.probe.live.load(Ordering::SeqCst) == 0 {
                    break true;
                }
                if Instant::now() >= limit {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            (None, drained.then(|| started.elapsed()))
        }
    };
    Outcome {
        tally,
        pool_stats,
        rss_before_kib,
        burst,
        work_done,
    }
}

/// The server's state.
struct App {
    /// Crew mode's pool; `None` in spawn mode.
    pool: Option<AsyncPool>,
    work: Arc<Work>,
    busy_body: Bytes,
}

/// `POST /invoke`: start the request's background work, answer at once.
async fn invoke(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let Some(pool) = &app.pool else {
        // The unbounded version: one task per request, whatever the load.
        tokio::spawn(background_work(body, &app.work));
        return accepted();
    };
    // Counts the jobs between their creation and the pool taking them (or
    // their drop, if refused): the only live jobs the pool does not hold.
    let handoff = Handoff::enter(&app.work.probe);
    let submitted = pool.try_submit(background_work(body, &app.work));
    let response = match submitted {
        Ok(()) => accepted(),
        Err(SubmitError::Full(job)) => {
            drop(job); // frees its buffer now, not after a wait
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::RETRY_AFTER, RETRY_AFTER),
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                ],
                app.busy_body.clone(),
            )
                .into_response()
        }
        Err(refused) => {
            drop(refused.into_inner());
            (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
        }
    };
    drop(handoff);
    response
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, "accepted\n").into_response()
}

/// What the background jobs share.
struct Work {
    cpu: Pool,
    partner: Partner,
    probe: Probe,
}

/// The request's background work. The job's memory is taken when the job
/// is created, here, not when it first runs: a queued or parked job pins it.
fn background_work(body: Bytes, work: &Arc<Work>) -> impl Future<Output = ()> + Send + 'static {
    let mut memory = JobMemory::new(work, body.len() as u8 | 1);
    let work = work.clone();
    async move {
        // The CPU part on the thread pool: the runtime threads keep serving.
        let digest = work
            .cpu
            .run(move || hash(&body))
            .await
            .expect("the CPU pool outlives the background jobs");
        memory.buffer[..8].copy_from_slice(&digest.to_le_bytes());
        work.partner.call(&memory.buffer).await;
        work.probe.completed.fetch_add(1, Ordering::Relaxed);
    }
}

/// FNV-1a over the body, a few passes: a stand-in for parsing or signing it.
fn hash(body: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..HASH_PASSES {
        for &byte in body {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A partner API that takes a limited number of calls at once, each slow.
struct Partner {
    slots: Semaphore,
    latency: Duration,
}

impl Partner {
    async fn call(&self, request: &[u8]) {
        let _slot = self.slots.acquire().await.expect("never closed");
        tokio::time::sleep(self.latency).await;
        black_box(request);
    }
}

/// Counters about the background jobs.
#[derive(Default)]
struct Probe {
    /// Jobs created and not yet dropped (run to the end or not).
    live: AtomicUsize,
    peak_live: AtomicUsize,
    /// Handlers between creating a job and the pool's answer.
    handoff: AtomicUsize,
    peak_handoff: AtomicUsize,
    completed: AtomicU64,
}

/// A job's memory, and its place in the live count: counted before the
/// buffer exists, uncounted before it is freed.
struct JobMemory {
    buffer: Vec<u8>,
    work: Arc<Work>,
}

impl JobMemory {
    fn new(work: &Arc<Work>, fill: u8) -> JobMemory {
        let probe = &work.probe;
        let live = probe.live.fetch_add(1, Ordering::SeqCst) + 1;
        probe.peak_live.fetch_max(live, Ordering::SeqCst);
        JobMemory {
            // Non-zero, so every page is written and resident.
            buffer: vec![fill; JOB_BUFFER_BYTES],
            work: work.clone(),
        }
    }
}

impl Drop for JobMemory {
    fn drop(&mut self) {
        self.work.probe.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks a handler between creating a job and the pool's answer. Entered
/// before the job exists, left after a refused job was dropped.
struct Handoff<'a>(&'a Probe);

impl<'a> Handoff<'a> {
    fn enter(probe: &'a Probe) -> Handoff<'a> {
        let now = probe.handoff.fetch_add(1, Ordering::SeqCst) + 1;
        probe.peak_handoff.fetch_max(now, Ordering::SeqCst);
        Handoff(probe)
    }
}

impl Drop for Handoff<'_> {
    fn drop(&mut self) {
        self.0.handoff.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Client-side counts, by answer.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    accepted: AtomicU64,
    /// 503s with a `Retry-After` and the "busy:" body.
    busy: AtomicU64,
    /// Any other status, or a 503 missing its header or body.
    other: AtomicU64,
    /// Connection errors and timeouts.
    errors: AtomicU64,
}

type BoxError = Box<dyn Error + Send + Sync>;

/// Runs the burst to completion (or to its deadline).
async fn run_load(addr: SocketAddr) -> Tally {
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + LOAD_DEADLINE;
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(client(addr, next.clone(), tally.clone(), deadline)))
        .collect();
    for client in clients {
        client.await.expect("client tasks do not panic");
    }
    Arc::try_unwrap(tally).unwrap_or_else(|_| unreachable!("all clients joined"))
}

/// One keep-alive connection sending requests until the burst is used up.
async fn client(addr: SocketAddr, next: Arc<AtomicUsize>, tally: Arc<Tally>, deadline: Instant) {
    let mut connection = None;
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= REQUESTS || Instant::now() >= deadline {
            return;
        }
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, invoke_once(&mut connection, addr, seq));
        let counter = match answer.await {
            Ok(Ok((StatusCode::ACCEPTED, _))) => &tally.accepted,
            Ok(Ok((StatusCode::SERVICE_UNAVAILABLE, true))) => &tally.busy,
            Ok(Ok(_)) => &tally.other,
            Ok(Err(_)) | Err(_) => {
                connection = None; // reconnect for the next request
                &tally.errors
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends one `POST /invoke` (connecting first if needed); returns the status
/// and, for a 503, whether it carried `Retry-After` and the "busy:" body.
async fn invoke_once(
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
    seq: usize,
) -> Result<(StatusCode, bool), BoxError> {
    let sender = match connection {
        Some(sender) => sender,
        None => connection.insert(connect(addr).await?),
    };
    sender.ready().await?;
    let body = format!(r#"{{"tenant":{},"seq":{seq},"event":"invoke"}}"#, seq % 97);
    let request = Request::post("/invoke")
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).is_some();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, retry_after && body.starts_with(b"busy: ")))
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Drives the connection; ends when `sender` is dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn report_and_check(mode: Mode, runtime_threads: usize, probe: &Probe, outcome: &Outcome) {
    let tally = &outcome.tally;
    let sent = tally.sent.load(Ordering::Relaxed);
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let busy = tally.busy.load(Ordering::Relaxed);
    let other = tally.other.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    let completed = probe.completed.load(Ordering::Relaxed);
    let peak_live = probe.peak_live.load(Ordering::SeqCst);
    let peak_handoff = probe.peak_handoff.load(Ordering::SeqCst);
    let peak_rss = proc_status_kib("VmHWM:");

    let mib = |kib: Option<u64>| {
        kib.map_or("n/a".to_owned(), |k| {
            format!("{:.0} MiB", k as f64 / 1024.0)
        })
    };
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let live_bound = match mode {
        Mode::Crew => format!(
            " (bound: {WORKERS} workers + {QUEUE_CAPACITY} queued + {peak_handoff} in handoff)"
        ),
        Mode::Spawn => format!(" (of {accepted} accepted)"),
    };
    let rows = [
        ("requests sent", format!("{sent} of {REQUESTS}")),
        ("202 Accepted", accepted.to_string()),
        ("503 busy, retry later", busy.to_string()),
        ("other answers / errors", format!("{other} / {errors}")),
        (
            "peak live background jobs",
            format!("{peak_live}{live_bound}"),
        ),
        (
            "peak RSS",
            format!(
                "{} (before the burst: {})",
                mib(peak_rss),
                mib(outcome.rss_before_kib)
            ),
        ),
        (
            "burst elapsed",
            format!(
                "{} ({:.0} requests/s)",
                secs(outcome.burst),
                sent as f64 / outcome.burst.as_secs_f64()
            ),
        ),
        (
            "background work done",
            match outcome.work_done {
                Some(done) => format!("{} after the burst began; {completed} jobs ran", secs(done)),
                None => format!(
                    "not within {SPAWN_DRAIN_LIMIT:?} after the burst; {completed} jobs ran"
                ),
            },
        ),
    ];
    println!("{:<28}| value", format!("{mode:?} mode").to_lowercase());
    println!("{:-<28}|{:-<50}", "", "");
    for (name, value) in rows {
        println!("{name:<28}| {value}");
    }

    // The example's claims, checked: if one fails, it is a bug worth a report.
    assert_eq!(errors, 0, "no connection errors or timeouts");
    match mode {
        Mode::Crew => {
            let stats = outcome.pool_stats.as_ref().expect("crew mode has a pool");
            assert_eq!(other, 0, "every answer is a 202 or a well-formed 503");
            assert_eq!(accepted + busy, sent, "every request got a 202 or a 503");
            assert!(busy > 0, "the burst outran the pool: some requests got 503");
            assert!(
                peak_handoff <= runtime_threads,
                "the handoff is synchronous: at most one per runtime thread"
            );
            assert!(
                peak_live <= WORKERS + QUEUE_CAPACITY + peak_handoff,
                "live jobs: at most one per worker, the queue's, and those being handed over"
            );
            assert_eq!(
                stats.submitted, accepted,
                "every 202 is a job the pool took"
            );
            assert_eq!(stats.rejected, busy, "every 503 is a job the pool refused");
            assert_eq!(completed, accepted, "every accepted job ran");
            assert_eq!(stats.completed, accepted);
            assert_eq!(probe.live.load(Ordering::SeqCst), 0, "no job left behind");
        }
        Mode::Spawn => {
            assert_eq!(accepted, sent, "spawn mode answers every request 202");
        }
    }
}

/// A `kB` line of `/proc/self/status` (Linux), in KiB.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn parse_mode() -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = match args.as_slice() {
        [] => "crew",
        [flag, value] if flag == "--mode" => value.as_str(),
        [arg] if arg.starts_with("--mode=") => &arg["--mode=".len()..],
        _ => "",
    };
    match value {
        "crew" => Mode::Crew,
        "spawn" => Mode::Spawn,
        _ => {
            eprintln!("usage: http_burst [--mode crew|spawn]");
            std::process::exit(2);
        }
    }
}
