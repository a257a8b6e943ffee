//! One request's life on the sink's runtime: attempts, retries with
//! backoff, and what the answer means for the events and for the
//! concurrency limit.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode, Url};

use super::stats::{AttemptEnd, HttpSinkStats};
use crate::concurrency::{Limiter, Permit, Signal};
use crate::event::Origin;
use crate::retry::RetryPolicy;
use crate::sink::Refused;

/// How much of an error answer's body is kept for the dead-letter reason.
const ERROR_BODY_LIMIT: usize = 512;

/// A request body and the events it carries.
pub(super) struct Request {
    pub body: Bytes,
    pub origins: Vec<Origin>,
    /// What the last failed attempt said (for the flush's error).
    pub last_error: String,
}

/// Where every request goes, and how.
pub(super) struct Target {
    pub client: Client,
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub retry: RetryPolicy,
    pub limiter: Limiter,
    /// With a fixed limit a request keeps its slot through its retries'
    /// backoffs, so that `concurrency = 1` keeps the records' order. (An
    /// adaptive limit gets the slot back: a service pushing back should see
    /// fewer requests, not slots held by sleepers.)
    pub keep_permit_for_retries: bool,
    pub stats: Arc<HttpSinkStats>,
}

/// Requests not finished yet, and what the finished ones left for the sink.
#[derive(Default)]
pub(super) struct Ledger {
    pub running: usize,
    /// Requests that used up their attempts on retriable failures; the next
    /// flush sends them again.
    pub failed: Vec<Request>,
    /// Records the service refused for good.
    pub refused: Vec<Refused>,
}

/// The ledger, and the condition the flush waits on.
#[derive(Default)]
pub(super) struct Outstanding {
    pub ledger: Mutex<Ledger>,
    pub changed: Condvar,
}

impl Outstanding {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, update: impl FnOnce(&mut Ledger)) {
        let mut ledger = self.lock();
        update(&mut ledger);
        ledger.running -= 1;
        drop(ledger);
        self.changed.notify_all();
    }
}

/// What one attempt's ending means.
enum Verdict {
    Delivered,
    /// Try again after a backoff (the service is down, overloaded, or the
    /// network failed).
    Retry(String),
    /// The service will not take these records as they are.
    Refuse {
        reason: String,
        message: String,
    },
}

/// Sends `request` until it is delivered, refused, or out of attempts,
/// holding a concurrency permit during each attempt (and, with an adaptive
/// limit, none during the backoff in between).
pub(super) async fn deliver(
    target: Arc<Target>,
    outstanding: Arc<Outstanding>,
    mut request: Request,
    permit: Permit,
) {
    // Taken by `done`; held across a retry only with a fixed limit.
    let mut permit = Some(permit);
    let mut attempts = 0;
    let stats = &target.stats;
    let settle: Box<dyn FnOnce(&mut Ledger) + Send> = loop {
        attempts += 1;
        let started = Instant::now();
        let sent = target
            .client
            .request(target.method.clone(), target.url.clone())
            .headers(target.headers.clone())
            .body(request.body.clone())
            .send()
            .await;
        let (verdict, signal, end) = judge(sent).await;
        stats.attempt_ended(end, started.elapsed());
        let retrying = matches!(verdict, Verdict::Retry(_)) && target.retry.allows_retry(attempts);
        match permit.as_mut() {
            Some(held) if retrying && target.keep_permit_for_retries => held.retry(signal),
            _ => {
                if let Some(permit) = permit.take() {
                    permit.done(signal);
                }
            }
        }
        let records = request.origins.len() as u64;
        match verdict {
            Verdict::Delivered => {
                stats.delivered.fetch_add(records, Ordering::Relaxed);
                break Box::new(|_| ());
            }
            Verdict::Refuse { reason, message } => {
                stats.refused.fetch_add(records, Ordering::Relaxed);
                let origins = std::mem::take(&mut request.origins);
                break Box::new(move |ledger| {
                    ledger
                        .refused
                        .extend(origins.into_iter().map(|origin| Refused {
                            origin,
                            reason: reason.clone(),
                            message: message.clone(),
                        }));
                });
            }
            Verdict::Retry(message) if !target.retry.allows_retry(attempts) => {
                request.last_error = message;
                break Box::new(move |ledger| ledger.failed.push(request));
            }
            Verdict::Retry(message) => {
                tracing::debug!(attempts, error = %message, "HTTP request failed; retrying");
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(target.retry.backoff(attempts)).await;
                if permit.is_none() {
                    permit = Some(target.limiter.acquire().await);
                }
            }
        }
    };
    stats.finished.fetch_add(1, Ordering::Relaxed);
    outstanding.finish(settle);
}

/// Sorts an attempt's ending: what to do with the request, what it says
/// about the service's load, and which counter it goes to.
async fn judge(sent: Result<reqwest::Response, reqwest::Error>) -> (Verdict, Signal, AttemptEnd) {
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            let message = error_chain(&error);
            if error.is_builder() || error.is_redirect() {
                // The same request would fail the same way.
                let verdict = Verdict::Refuse {
                    reason: "http_request".to_owned(),
                    message,
                };
                return (verdict, Signal::Failed, AttemptEnd::Transport);
            }
            // A timeout or a refused connection is what an overloaded
            // service looks like from here.
            let signal = if error.is_timeout() || error.is_connect() {
                Signal::Backpressure
            } else {
                Signal::Failed
            };
            return (Verdict::Retry(message), signal, AttemptEnd::Transport);
        }
    };
    let status = response.status();
    let body = read_some(response).await;
    if status.is_success() {
        return (Verdict::Delivered, Signal::Ok, AttemptEnd::Success);
    }
    let message = match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}: {body}", status.as_u16()),
        None => format!("HTTP {}: {body}", status.as_u16()),
    };
    let end = if status.is_server_error() {
        AttemptEnd::ServerError
    } else {
        AttemptEnd::ClientError
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::REQUEST_TIMEOUT => (Verdict::Retry(message), Signal::Backpressure, end),
        status if status.is_server_error() => (Verdict::Retry(message), Signal::Failed, end),
        // A 3xx the client did not follow, or a 4xx: this body will not be
        // taken by retrying it.
        status => {
            let verdict = Verdict::Refuse {
                reason: format!("http_{}", status.as_u16()),
                message,
            };
            (verdict, Signal::Failed, end)
        }
    }
}

/// The start of an answer's body, as text (for error messages), reading
/// the rest so the connection can be reused.
async fn read_some(mut response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = ERROR_BODY_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}

/// An error with its causes ("error sending request: connection refused"),
/// since reqwest's own message leaves the cause out.
fn error_chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
