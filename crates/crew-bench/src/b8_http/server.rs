//! B8's simulated service: a loopback axum server with a fixed number of
//! workers, each taking a fixed service time per request, a bounded queue in
//! front of them, and 503 for whatever arrives while the queue is full.
//!
//! It also keeps the ledger that proves a run delivered every record exactly
//! once: the ids of the records in every body it answered 2xx.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tokio::sync::Semaphore;

/// The start of every B8 record, before its id.
pub(super) const RECORD_PREFIX: &str = "{\"id\":";

/// The service's shape.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    /// Requests served at once.
    pub workers: usize,
    /// How long each served request holds its worker.
    pub service_time: Duration,
    /// Requests that may wait for a worker; one more is answered 503.
    pub queue_bound: usize,
}

/// What the service saw during one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// Requests answered 2xx.
    pub accepted_requests: u64,
    /// Requests answered 503 because the queue was full.
    pub shed: u64,
    /// The most requests waiting for a worker at once.
    pub peak_queued: usize,
    /// Total time requests waited in the queue (accepted ones).
    pub queue_wait: Duration,
    /// Total time workers were held (accepted requests).
    pub service: Duration,
    /// Record lines in accepted bodies.
    pub lines: u64,
    /// Distinct record ids among them.
    pub distinct: u64,
    /// Lines whose id had been accepted before in this run.
    pub duplicates: u64,
    /// Lines that are not a record of this run (unparsable or out of range).
    pub stray: u64,
}

impl ServerCounts {
    /// Why the run did not deliver exactly `records` records once each, if
    /// it did not.
    pub fn exactly_once(&self, records: u64) -> Result<(), String> {
        if self.lines == records
            && self.distinct == records
            && self.duplicates == 0
            && self.stray == 0
        {
            return Ok(());
        }
        Err(format!(
            "the service did not accept every record exactly once: {} records sent, {} lines \
             accepted, {} distinct, {} duplicates, {} not records of this run, {} missing",
            records,
            self.lines,
            self.distinct,
            self.duplicates,
            self.stray,
            records.saturating_sub(self.distinct)
        ))
    }
}

/// Which records of the run have been accepted.
#[derive(Debug, Default)]
struct Ledger {
    seen: Vec<bool>,
    lines: u64,
    distinct: u64,
    duplicates: u64,
    stray: u64,
}

impl Ledger {
    fn for_records(records: u64) -> Ledger {
        Ledger {
            seen: vec![false; usize::try_from(records).unwrap_or(usize::MAX)],
            ..Ledger::default()
        }
    }

    /// Notes the records of one accepted NDJSON body.
    fn accept(&mut self, body: &[u8]) {
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.lines += 1;
            match record_id(line)
                .and_then(|id| usize::try_from(id).ok())
                .and_then(|id| self.seen.get_mut(id))
            {
                Some(seen) if *seen => self.duplicates += 1,
                Some(seen) => {
                    *seen = true;
                    self.distinct += 1;
                }
                None => self.stray += 1,
            }
        }
    }
}

/// The id of a record `{"id":N,...}`.
pub(super) fn record_id(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(RECORD_PREFIX.as_bytes())?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

struct Service {
    shape: Shape,
    workers: Semaphore,
    waiting: AtomicUsize,
    peak_waiting: AtomicUsize,
    shed: AtomicU64,
    accepted: AtomicU64,
    queue_wait_nanos: AtomicU64,
    service_nanos: AtomicU64,
    ledger: Mutex<Ledger>,
}

impl Service {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Nothing panics while the lock is held.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The service, listening on a free loopback port, on its own runtime.
pub(super) struct Server {
    service: Arc<Service>,
    url: String,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    /// Starts the service on its own one-thread runtime.
    pub fn start(shape: Shape) -> Result<Server, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("b8-service")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the service's runtime: {e}"))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("binding the service to a loopback port: {e}"))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("the service's address: {e}"))?;
        let service = Arc::new(Service {
            shape,
            workers: Semaphore::new(shape.workers.max(1)),
            waiting: AtomicUsize::new(0),
            peak_waiting: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            queue_wait_nanos: AtomicU64::new(0),
            service_nanos: AtomicU64::new(0),
            ledger: Mutex::new(Ledger::default()),
        });
        let app = Router::new()
            .route("/events", post(handle))
            .with_state(Arc::clone(&service));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Ok(Server {
            service,
            url: format!("http://{address}/events"),
            _runtime: runtime,
        })
    }

    /// Where the sink sends its requests.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Forgets the previous run: counters to zero, a fresh ledger for
    /// record ids `0..records`.
    pub fn begin_run(&self, records: u64) {
        let s = &self.service;
        *s.ledger() = Ledger::for_records(records);
        for counter in [&s.shed, &s.accepted, &s.queue_wait_nanos, &s.service_nanos] {
            counter.store(0, Ordering::Relaxed);
        }
        s.peak_waiting.store(0, Ordering::Relaxed);
    }

    /// What the service saw since [`begin_run`](Self::begin_run). Call it
    /// once the sink has flushed: every request has been answered by then.
    pub fn end_run(&self) -> ServerCounts {
        let s = &self.service;
        let ledger = s.ledger();
        ServerCounts {
            accepted_requests: s.accepted.load(Ordering::Relaxed),
            shed: s.shed.load(Ordering::Relaxed),
            peak_queued: s.peak_waiting.load(Ordering::Relaxed),
            queue_wait: Duration::from_nanos(s.queue_wait_nanos.load(Ordering::Relaxed)),
            service: Duration::from_nanos(s.service_nanos.load(Ordering::Relaxed)),
            lines: ledger.lines,
            distinct: ledger.distinct,
            duplicates: ledger.duplicates,
            stray: ledger.stray,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

async fn handle(State(s): State<Arc<Service>>, body: Bytes) -> StatusCode {
    let arrived = Instant::now();
    // A free worker takes the request at once. Otherwise it queues, unless
    // the queue is full. `try_acquire` cannot jump the queue: tokio hands a
    // released permit to the oldest waiter first.
    let worker = match s.workers.try_acquire() {
        Ok(worker) => worker,
        Err(_) => {
            let queued = s.waiting.fetch_add(1, Ordering::AcqRel) + 1;
            if queued > s.shape.queue_bound {
                s.waiting.fetch_sub(1, Ordering::AcqRel);
                s.shed.fetch_add(1, Ordering::Relaxed);
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            s.peak_waiting.fetch_max(queued, Ordering::Relaxed);
            let worker = s.workers.acquire().await;
            s.waiting.fetch_sub(1, Ordering::AcqRel);
            match worker {
                Ok(worker) => worker,
                // The semaphore is never closed.
                Err(_) => return StatusCode::INTERNAL_SERVER_ERROR,
            }
        }
    };
    let started = Instant::now();
    s.queue_wait_nanos
        .fetch_add(nanos(started - arrived), Ordering::Relaxed);
    tokio::time::sleep(s.shape.service_time).await;
    s.ledger().accept(&body);
    s.accepted.fetch_add(1, Ordering::Relaxed);
    s.service_nanos
        .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
    drop(worker);
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_read_from_the_line_prefix() {
        assert_eq!(record_id(b"{\"id\":0,\"b8\":\"x\"}"), Some(0));
        assert_eq!(record_id(b"{\"id\":123456,\"b8\":\"x\"}"), Some(123_456));
        assert_eq!(record_id(b"{\"n\":1}"), None);
        assert_eq!(record_id(b"{\"id\":,}"), None);
    }

    #[test]
    fn the_ledger_catches_duplicates_strays_and_missing_records() {
        let mut ledger = Ledger::for_records(3);
        ledger.accept(b"{\"id\":0}\n{\"id\":1}\n");
        ledger.accept(b"{\"id\":1}\n{\"id\":7}\ngarbage\n");
        let counts = ServerCounts {
            lines: ledger.lines,
            distinct: ledger.distinct,
            duplicates: ledger.duplicates,
            stray: ledger.stray,
            ..ServerCounts::default()
        };
        assert_eq!(
            (
                counts.lines,
                counts.distinct,
                counts.duplicates,
                counts.stray
            ),
            (5, 2, 1, 2)
        );
        let error = counts.exactly_once(3).unwrap_err();
        assert!(error.contains("1 duplicates"), "{error}");
        assert!(error.contains("1 missing"), "{error}");

        let mut clean = Ledger::for_records(2);
        clean.accept(b"{\"id\":1}\n{\"id\":0}\n");
        let counts = ServerCounts {
            lines: clean.lines,
            distinct: clean.distinct,
            ..ServerCounts::default()
        };
        assert_eq!(counts.exactly_once(2), Ok(()));
    }
}
