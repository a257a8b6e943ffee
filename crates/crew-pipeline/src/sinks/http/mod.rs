//! The HTTP sink: batches of records as request bodies, sent concurrently
//! under an adaptive limit; an event counts as delivered only once the
//! service answered 2xx to the request that carried it.
//!
//! `write` splits a batch into requests (`max_events`, `max_bytes`), waits
//! for a concurrency permit for each and starts it on the sink's own small
//! tokio runtime; `flush` waits for every request started. The pipeline
//! acks after `flush`, so its committed offsets never cover an event the
//! service has not accepted.
//!
//! What an answer means:
//!
//! | answer | the request | the concurrency limit |
//! |---|---|---|
//! | 2xx | delivered | its time is a sample |
//! | 429, 503, 408, a timeout, a refused connection | retried with backoff | lowered (backpressure) |
//! | other 5xx, a broken connection | retried with backoff | unchanged |
//! | other 4xx, an unfollowed 3xx | its records are dead-lettered (`http_400`, ...) | unchanged |
//!
//! A request still failing after `retry.max_attempts` is sent again at the
//! next flush, which reports the sink failing; the pipeline's own sink
//! retry policy then decides whether to go on or stop (without acking those
//! events, which are read again on the next run).
//!
//! Requests run concurrently, so records of one key may reach the service
//! out of order across requests; `concurrency = 1` keeps the order (with a
//! fixed limit a request keeps its slot through its retries).

mod config;
mod request;
mod stats;

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use flate2::write::GzEncoder;

pub use config::{HttpCompression, HttpConfigError, HttpEncoding, HttpMethod, HttpSinkConfig};
pub use stats::HttpSinkStats;

use crate::concurrency::{Concurrency, Limiter};
use crate::event::Origin;
use crate::sink::{OutBatch, Refused, Sink, SinkError};
use request::{deliver, Outstanding, Request, Target};

/// Sends records to an HTTP endpoint; see the module docs.
pub struct HttpSink {
    config: HttpSinkConfig,
    target: Arc<Target>,
    outstanding: Arc<Outstanding>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("uri", &self.config.uri)
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    /// A sink for `config`. Nothing connects until the first request.
    pub fn new(config: HttpSinkConfig) -> Result<HttpSink, HttpConfigError> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("crew/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpConfigError(format!("building the HTTP client: {e}")))?;
        // One thread: it only waits on sockets; the records were encoded
        // by the stage workers, and bodies are built on the sink thread.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("crew-http")
            .enable_all()
            .build()
            .map_err(|e| HttpConfigError(format!("starting the HTTP sink's runtime: {e}")))?;
        let limiter = Limiter::new(config.concurrency, config.adaptive);
        let method = match config.method {
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
        };
        let target = Target {
            client,
            method,
            url: config.url()?,
            headers: config.header_map()?,
            retry: config.retry,
            limiter: limiter.clone(),
            keep_permit_for_retries: matches!(config.concurrency, Concurrency::Fixed(_)),
            stats: Arc::new(HttpSinkStats::new(limiter)),
        };
        Ok(HttpSink {
            config,
            target: Arc::new(target),
            outstanding: Arc::default(),
            runtime,
        })
    }

    /// The sink's counters and its concurrency limit, shared with
    /// exporters.
    pub fn stats(&self) -> Arc<HttpSinkStats> {
        Arc::clone(&self.target.stats)
    }

    /// Waits for a concurrency permit, then starts `request`.
    fn start(&self, request: Request) {
        let permit = self.runtime.block_on(self.target.limiter.acquire());
        self.outstanding.lock().running += 1;
        self.target
            .stats
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let target = Arc::clone(&self.target);
        let outstanding = Arc::clone(&self.outstanding);
        self.runtime.spawn(async move {
            deliver(target, outstanding, request, permit).await;
        });
    }

    /// The body of one request: `records` laid out as `encoding` says,
    /// compressed as `compression` says.
    fn body(&self, records: &[&[u8]]) -> Bytes {
        let mut body = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
        match self.config.encoding {
            HttpEncoding::Ndjson => {
                for record in records {
                    body.extend_from_slice(record);
                    body.push(b'\n');
                }
            }
            HttpEncoding::JsonArray => {
                body.push(b'[');
                for (index, record) in records.iter().enumerate() {
                    if index > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(record);
                }
                body.push(b']');
            }
        }
        match self.config.compression {
            HttpCompression::None => Bytes::from(body),
            HttpCompression::Gzip => {
                let mut encoder = GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                // Writing to a Vec cannot fail.
                let _ = encoder.write_all(&body);
                Bytes::from(encoder.finish().unwrap_or_default())
            }
        }
    }
}

impl Sink for HttpSink {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        let mut records: Vec<&[u8]> = Vec::new();
        let mut origins: Vec<Origin> = Vec::new();
        let mut bytes = 0;
        for (record, _key, origin) in batch.records() {
            let over = records.len() >= self.config.max_events
                || (bytes + record.len() > self.config.max_bytes && !records.is_empty());
            if over {
                let body = self.body(&records);
                self.start(Request {
                    body,
                    origins: std::mem::take(&mut origins),
                    last_error: String::new(),
                });
                records.clear();
                bytes = 0;
            }
            bytes += record.len() + 1;
            records.push(record);
            origins.push(origin);
        }
        if !records.is_empty() {
            let body = self.body(&records);
            self.start(Request {
                body,
                origins,
                last_error: String::new(),
            });
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let failed = {
            let mut ledger = self.outstanding.lock();
            while ledger.running > 0 {
                ledger = self
                    .outstanding
                    .changed
                    .wait(ledger)
                    .unwrap_or_else(|p| p.into_inner());
            }
            std::mem::take(&mut ledger.failed)
        };
        let Some(first) = failed.first() else {
            return Ok(());
        };
        let error = SinkError::retriable(format!(
            "{} HTTP requests still failing after {} attempts each: {}",
            failed.len(),
            self.config.retry.max_attempts,
            first.last_error
        ));
        // Sent again now: the next flush waits for them.
        for request in failed {
            self.start(request);
        }
        Err(error)
    }

    fn take_refused(&mut self) -> Vec<Refused> {
        std::mem::take(&mut self.outstanding.lock().refused)
    }
}
