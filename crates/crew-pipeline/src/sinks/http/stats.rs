//! The HTTP sink's counters, read by exporters at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use crew::{Histogram, SharedHistogram};

use crate::concurrency::{Limiter, LimiterSnapshot};

/// Counters and gauges of an [`HttpSink`](super::HttpSink), shared with
/// exporters.
#[derive(Debug)]
pub struct HttpSinkStats {
    pub(super) limiter: Limiter,
    pub(super) requests: AtomicU64,
    pub(super) finished: AtomicU64,
    pub(super) succeeded: AtomicU64,
    pub(super) client_errors: AtomicU64,
    pub(super) server_errors: AtomicU64,
    pub(super) transport_errors: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) latency: SharedHistogram,
}

/// How an attempt ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AttemptEnd {
    /// A 2xx answer.
    Success,
    /// A 4xx answer.
    ClientError,
    /// A 5xx answer.
    ServerError,
    /// No answer: a timeout, a refused or broken connection.
    Transport,
}

impl HttpSinkStats {
    pub(super) fn new(limiter: Limiter) -> Self {
        HttpSinkStats {
            limiter,
            requests: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            transport_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            latency: SharedHistogram::default(),
        }
    }

    pub(super) fn attempt_ended(&self, end: AttemptEnd, took: std::time::Duration) {
        let counter = match end {
            AttemptEnd::Success => &self.succeeded,
            AttemptEnd::ClientError => &self.client_errors,
            AttemptEnd::ServerError => &self.server_errors,
            AttemptEnd::Transport => &self.transport_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.latency.record(took);
    }

    /// The concurrency limit now, requests in flight, and how the adaptive
    /// controller has moved the limit.
    pub fn concurrency(&self) -> LimiterSnapshot {
        self.limiter.snapshot()
    }

    /// Attempts that got a 2xx answer.
    pub fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }

    /// Attempts answered with a 4xx status.
    pub fn client_errors(&self) -> u64 {
        self.client_errors.load(Ordering::Relaxed)
    }

    /// Attempts answered with a 5xx status.
    pub fn server_errors(&self) -> u64 {
        self.server_errors.load(Ordering::Relaxed)
    }

    /// Attempts that got no answer (timeouts, refused or broken
    /// connections).
    pub fn transport_errors(&self) -> u64 {
        self.transport_errors.load(Ordering::Relaxed)
    }

    /// Attempts made again after a retriable failure.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Requests started and not finished (retries included).
    pub fn in_flight_requests(&self) -> u64 {
        let finished = self.finished.load(Ordering::Relaxed);
        self.requests
            .load(Ordering::Relaxed)
            .saturating_sub(finished)
    }

    /// Records the service accepted.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Records refused for good (dead-lettered).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Time of each attempt, from sending to the answer (or the error).
    pub fn latency(&self) -> Histogram {
        self.latency.snapshot()
    }
}
