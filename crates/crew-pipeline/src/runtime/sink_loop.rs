//! The sink thread: writes delivered batches and dead letters, flushes, then
//! acks. Acks wait for the flush so a committed offset never covers an event
//! the sink could still lose.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{select, Receiver};

use crate::dead_letter::{push_record, Failure, SINK_STAGE};
use crate::event::Origin;
use crate::retry::RetryPolicy;
use crate::runtime::chain::Outgoing;
use crate::runtime::flow::{Done, Flow, Outcomes};
use crate::runtime::report::RunMetrics;
use crate::sink::{OutBatch, Sink, SinkError};

/// Acks are applied at least this often, in events, even while batches keep
/// coming (a busy sink thread would otherwise flush only on the interval).
const FLUSH_EVERY_EVENTS: usize = 16_384;

pub(crate) struct SinkLoop {
    pub sink: Box<dyn Sink>,
    pub dead_letter: Box<dyn Sink>,
    pub flow: Arc<Flow>,
    pub retry: RetryPolicy,
    pub flush_interval: Duration,
    metrics: Arc<RunMetrics>,
    pending: Vec<Done>,
    /// When each pending batch was read, and how many of its events it
    /// finishes: the read-to-ack latency is recorded once they are acked.
    pending_reads: Vec<(Instant, u64)>,
    pending_outcomes: Outcomes,
    /// Origin and raw bytes of each record written since the last flush, so
    /// a record the sink refuses at flush time can be dead-lettered with
    /// the bytes it was read with.
    pending_written: Vec<(Origin, Bytes)>,
    last_flush: Instant,
    failed: bool,
}

impl SinkLoop {
    pub fn new(
        sink: Box<dyn Sink>,
        dead_letter: Box<dyn Sink>,
        flow: Arc<Flow>,
        retry: RetryPolicy,
        flush_interval: Duration,
        metrics: Arc<RunMetrics>,
    ) -> Self {
        SinkLoop {
            sink,
            dead_letter,
            flow,
            retry,
            flush_interval,
            metrics,
            pending: Vec::new(),
            pending_reads: Vec::new(),
            pending_outcomes: Outcomes::default(),
            pending_written: Vec::new(),
            last_flush: Instant::now(),
            failed: false,
        }
    }

    /// Runs until `stop` fires or every sender of `batches` is gone.
    pub fn run(mut self, batches: Receiver<Outgoing>, stop: Receiver<()>) {
        loop {
            let wait = self
                .flush_interval
                .saturating_sub(self.last_flush.elapsed());
            select! {
                recv(batches) -> message => match message {
                    Ok(out) => {
                        self.handle(out);
                        if self.pending.len() >= FLUSH_EVERY_EVENTS
                            || batches.is_empty()
                            || self.last_flush.elapsed() >= self.flush_interval
                        {
                            self.flush_and_ack();
                        }
                    }
                    Err(_) => break,
                },
                recv(stop) -> _ => break,
                default(wait) => self.flush_and_ack(),
            }
        }
        self.flush_and_ack();
    }

    fn handle(&mut self, mut out: Outgoing) {
        if self.failed {
            // After a failure nothing more is acked: these events stay
            // unfinished and are read again on the next run.
            return;
        }
        if !out.delivered.is_empty() {
            match with_retry(&self.retry, &self.metrics.sink_retries, || {
                self.sink.write(&out.delivered)
            }) {
                Ok(()) => {
                    out.outcomes.delivered += out.delivered.len() as u64;
                    self.pending_written.extend(
                        out.delivered
                            .records()
                            .map(|(_, _, origin)| origin)
                            .zip(out.delivered_raw.drain(..)),
                    );
                }
                Err((error, attempts)) => {
                    let failure = Failure {
                        reason: "sink".to_owned(),
                        stage: SINK_STAGE.to_owned(),
                        attempts,
                        message: error.message,
                    };
                    for ((_, _, origin), raw) in out.delivered.records().zip(&out.delivered_raw) {
                        push_record(&mut out.dead, origin, raw, &failure);
                    }
                    *out.outcomes
                        .dead_lettered
                        .entry(failure.reason)
                        .or_default() += out.delivered.len() as u64;
                }
            }
        }
        if !out.dead.is_empty() {
            if let Err((error, attempts)) =
                with_retry(&self.retry, &self.metrics.dead_letter_retries, || {
                    self.dead_letter.write(&out.dead)
                })
            {
                self.fail(format!(
                    "the dead-letter sink failed after {attempts} attempts: {}",
                    error.message
                ));
                return;
            }
        }
        if let Some(read_at) = out.read_at {
            self.pending_reads.push((read_at, out.done.len() as u64));
        }
        self.pending.append(&mut out.done);
        self.pending_outcomes.merge(out.outcomes);
    }

    fn flush_and_ack(&mut self) {
        self.last_flush = Instant::now();
        if self.failed || self.pending.is_empty() {
            return;
        }
        if let Err((error, attempts)) = with_retry(&self.retry, &self.metrics.sink_retries, || {
            self.sink.flush()
        }) {
            self.fail(format!(
                "the sink failed to flush after {attempts} attempts: {}",
                error.message
            ));
            return;
        }
        if !self.dead_letter_refused() {
            return;
        }
        if let Err((error, attempts)) =
            with_retry(&self.retry, &self.metrics.dead_letter_retries, || {
                self.dead_letter.flush()
            })
        {
            self.fail(format!(
                "the dead-letter sink failed to flush after {attempts} attempts: {}",
                error.message
            ));
            return;
        }
        let outcomes = std::mem::take(&mut self.pending_outcomes);
        if self.flow.finish(&self.pending, outcomes) {
            let acked = Instant::now();
            for (read_at, events) in self.pending_reads.drain(..) {
                self.metrics
                    .event_latency
                    .record_n(acked.saturating_duration_since(read_at), events);
            }
        } else {
            self.failed = true;
        }
        self.pending.clear();
        self.pending_reads.clear();
    }

    /// Moves the records the sink refused at flush time from delivered to
    /// the dead-letter output. Returns `false` if that output failed (the
    /// pipeline then fails, as for any dead-letter failure).
    fn dead_letter_refused(&mut self) -> bool {
        let written = std::mem::take(&mut self.pending_written);
        let refused = self.sink.take_refused();
        if refused.is_empty() {
            return true;
        }
        let raw_of: HashMap<Origin, &Bytes> = written.iter().map(|(o, raw)| (*o, raw)).collect();
        let mut dead = OutBatch::default();
        for record in &refused {
            let failure = Failure {
                reason: record.reason.clone(),
                stage: SINK_STAGE.to_owned(),
                attempts: 1,
                message: record.message.clone(),
            };
            let raw = raw_of.get(&record.origin).map_or(&[][..], |raw| &raw[..]);
            push_record(&mut dead, record.origin, raw, &failure);
            self.pending_outcomes.delivered = self.pending_outcomes.delivered.saturating_sub(1);
            *self
                .pending_outcomes
                .dead_lettered
                .entry(record.reason.clone())
                .or_default() += 1;
        }
        if let Err((error, attempts)) =
            with_retry(&self.retry, &self.metrics.dead_letter_retries, || {
                self.dead_letter.write(&dead)
            })
        {
            self.fail(format!(
                "the dead-letter sink failed after {attempts} attempts: {}",
                error.message
            ));
            return false;
        }
        true
    }

    fn fail(&mut self, message: String) {
        tracing::error!(%message, "pipeline stops reading");
        self.failed = true;
        self.pending.clear();
        self.pending_reads.clear();
        self.pending_written.clear();
        self.flow.fail(message);
    }
}

/// Calls `attempt` until it succeeds, fails with a non-retriable error, or the
/// policy's attempts are used up; panics in the sink count as non-retriable
/// failures.
fn with_retry(
    retry: &RetryPolicy,
    retries: &AtomicU64,
    mut attempt: impl FnMut() -> Result<(), SinkError>,
) -> Result<(), (SinkError, u32)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut attempt))
            .unwrap_or_else(|panic| {
                Err(SinkError::fatal(format!(
                    "the sink panicked: {}",
                    crate::runtime::chain::panic_message(&*panic)
                )))
            });
        match result {
            Ok(()) => return Ok(()),
            Err(error) if error.retriable && retry.allows_retry(attempts) => {
                tracing::warn!(error = %error.message, attempts, "sink write failed; retrying");
                retries.fetch_add(1, AtomicOrdering::Relaxed);
                std::thread::sleep(retry.backoff(attempts));
            }
            Err(error) => return Err((error, attempts)),
        }
    }
}
