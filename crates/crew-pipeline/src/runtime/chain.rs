//! The worker side: a batch runs through a segment's stages in one job, then
//! moves to the next segment's pool or, after the last, to the sink thread.

use std::any::Any;
use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crew::SubmitError;
use crew::{Pool, SharedHistogram, Tally};
use crossbeam_channel::Sender;

use crate::dead_letter::{push_dead_letter, Failure};
use crate::event::Event;
use crate::retry::RetryPolicy;
use crate::runtime::flow::{Done, Flow, Outcomes};
use crate::runtime::lane_gate::LaneGate;
use crate::sink::OutBatch;
use crate::stage::{Outcome, Stage, StageError};

/// How often a hand-off blocked by backpressure looks at the drain deadline:
/// a sink stuck for good must not keep a stop from ending the run.
const HAND_OFF_TICK: Duration = Duration::from_millis(50);

/// Counters of one stage, updated once per batch.
#[derive(Debug, Default)]
pub(crate) struct StageCounters {
    pub processed: AtomicU64,
    /// Counted on its own, not derived from the others: the counters are
    /// added one after another, so a reader between two additions would see
    /// `processed - dropped - failed` go backwards or below zero.
    pub passed: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    /// Time of one call (with its retries), per event.
    pub duration: SharedHistogram,
}

/// One stage's counts within one batch, added to its [`StageCounters`] when
/// the batch is done so workers touch the shared counters once per batch.
#[derive(Default)]
struct BatchCounts {
    processed: u64,
    passed: u64,
    dropped: u64,
    failed: u64,
    retried: u64,
    duration: Tally,
}

pub(crate) struct NamedStage {
    pub name: Arc<str>,
    pub stage: Arc<dyn Stage>,
    pub counters: StageCounters,
}

/// Consecutive stages that run in one job on one pool.
pub(crate) struct Segment {
    pub stages: Vec<NamedStage>,
    pub pool: Pool,
}

/// What a batch produced, on its way to the sink thread.
#[derive(Default)]
pub(crate) struct Outgoing {
    /// Encoded events for the sink.
    pub delivered: OutBatch,
    /// The raw bytes of each delivered event, in case the sink fails and they
    /// must be dead-lettered.
    pub delivered_raw: Vec<Bytes>,
    /// Encoded dead-letter records.
    pub dead: OutBatch,
    /// Every event of the batch that is finished once this is written.
    pub done: Vec<Done>,
    /// When the batch was read, for the read-to-ack latency.
    pub read_at: Option<Instant>,
    /// Drops and stage dead letters, by reason.
    pub outcomes: Outcomes,
}

/// A batch between segments.
pub(crate) struct Work {
    pub events: Vec<Event>,
    /// The ordering lane, when the pipeline keeps an order.
    pub lane: Option<usize>,
    pub out: Outgoing,
}

pub(crate) struct Chain {
    pub segments: Vec<Segment>,
    pub sink: Sender<Outgoing>,
    pub retry: RetryPolicy,
    /// Ordered lanes' batches waiting for their lane (unused when unordered).
    pub lanes: LaneGate,
    /// To wake the dispatcher when a lane with waiting batches frees up.
    pub flow: Arc<Flow>,
    /// Times stage calls: a TSC read where there is one, a few nanoseconds.
    pub clock: quanta::Clock,
}

/// How one event left a segment.
enum Fate {
    Keep,
    Drop(Cow<'static, str>),
    Dead(Failure),
}

impl Chain {
    /// Submits `work` to segment `index`, waiting while its queue is full
    /// (backpressure). Returns `false` if the pool is closed or the drain
    /// deadline passes while waiting (a hard stop): the events are
    /// abandoned, never acked.
    pub fn submit(self: &Arc<Self>, index: usize, work: Work) -> bool {
        let chain = Arc::clone(self);
        let pool = &self.segments[index].pool;
        // Plain submits even for ordered lanes: the lane gate lets at most
        // one batch per lane into the pools, so the order needs nothing more.
        let mut job = match pool.try_submit(move || chain.run(index, work)) {
            Ok(()) => return true,
            Err(SubmitError::Full(job)) => job,
            Err(_) => return false,
        };
        loop {
            job = match pool.submit_timeout(job, HAND_OFF_TICK) {
                Ok(()) => return true,
                Err(SubmitError::Timeout(job)) if !self.flow.past_deadline() => job,
                Err(_) => return false,
            };
        }
    }

    /// Hands a finished batch to the sink thread. Never waits: the channel
    /// is unbounded, and the in-flight budget bounds what is in it. If the
    /// sink thread is gone the events are abandoned (never acked).
    fn send_to_sink(&self, out: Outgoing) {
        let _ = self.sink.send(out);
    }

    fn run(self: &Arc<Self>, index: usize, mut work: Work) {
        let segment = &self.segments[index];
        let mut kept = Vec::with_capacity(work.events.len());
        let mut local: Vec<BatchCounts> = std::iter::repeat_with(BatchCounts::default)
            .take(segment.stages.len())
            .collect();
        for mut event in work.events.drain(..) {
            match self.run_stages(segment, &mut event, &mut local) {
                Fate::Keep => kept.push(event),
                Fate::Drop(reason) => {
                    *work
                        .out
                        .outcomes
                        .dropped
                        .entry(reason.into_owned())
                        .or_default() += 1;
                    work.out.done.push(done_of(&event));
                }
                Fate::Dead(failure) => {
                    push_dead_letter(&mut work.out.dead, &event, &failure);
                    *work
                        .out
                        .outcomes
                        .dead_lettered
                        .entry(failure.reason)
                        .or_default() += 1;
                    work.out.done.push(done_of(&event));
                }
            }
        }
        for (stage, counts) in segment.stages.iter().zip(local) {
            let c = &stage.counters;
            c.processed
                .fetch_add(counts.processed, AtomicOrdering::Relaxed);
            c.passed.fetch_add(counts.passed, AtomicOrdering::Relaxed);
            c.dropped.fetch_add(counts.dropped, AtomicOrdering::Relaxed);
            c.failed.fetch_add(counts.failed, AtomicOrdering::Relaxed);
            c.retried.fetch_add(counts.retried, AtomicOrdering::Relaxed);
            c.duration.add(&counts.duration);
        }
        work.events = kept;
        let lane = work.lane;
        if index + 1 < self.segments.len() {
            // Blocks while the next pool's queue is full: backpressure.
            if self.submit(index + 1, work) {
                return;
            }
        } else {
            self.send_to_sink(encode(work));
        }
        // The batch has left the pools (sent to the sink thread, whose
        // channel keeps the order): the lane's next batch may go in.
        if let Some(lane) = lane {
            if self.lanes.finish(lane) {
                self.flow.lanes_ready();
            }
        }
    }

    fn run_stages(&self, segment: &Segment, event: &mut Event, local: &mut [BatchCounts]) -> Fate {
        let mut started = self.clock.raw();
        for (stage, counts) in segment.stages.iter().zip(local.iter_mut()) {
            counts.processed += 1;
            let mut attempts = 0;
            let fate = loop {
                attempts += 1;
                let result = catch_unwind(AssertUnwindSafe(|| stage.stage.process(event)));
                match result {
                    Ok(Ok(Outcome::Keep)) => {
                        counts.passed += 1;
                        break None;
                    }
                    Ok(Ok(Outcome::Drop(reason))) => {
                        counts.dropped += 1;
                        break Some(Fate::Drop(reason));
                    }
                    Ok(Err(error)) if error.retriable && self.retry.allows_retry(attempts) => {
                        counts.retried += 1;
                        std::thread::sleep(self.retry.backoff(attempts));
                    }
                    Ok(Err(StageError {
                        reason, message, ..
                    })) => {
                        counts.failed += 1;
                        break Some(Fate::Dead(Failure {
                            reason: reason.into_owned(),
                            stage: stage.name.to_string(),
                            attempts,
                            message,
                        }));
                    }
                    Err(panic) => {
                        counts.failed += 1;
                        break Some(Fate::Dead(Failure {
                            reason: "panic".to_owned(),
                            stage: stage.name.to_string(),
                            attempts,
                            message: panic_message(&*panic),
                        }));
                    }
                }
            };
            let finished = self.clock.raw();
            counts
                .duration
                .record_nanos(self.clock.delta_as_nanos(started, finished));
            started = finished;
            if let Some(fate) = fate {
                return fate;
            }
        }
        Fate::Keep
    }
}

fn done_of(event: &Event) -> Done {
    Done {
        partition: event.origin().partition,
        ticket: event.ticket,
        bytes: event.budget_bytes(),
    }
}

/// Encodes the kept events of the last segment for the sink.
fn encode(mut work: Work) -> Outgoing {
    let mut out = work.out;
    for mut event in work.events.drain(..) {
        let origin = event.origin();
        let key = event.key_bytes().cloned();
        let headers = event.take_headers();
        let encoded = match event.value() {
            Some(value) => out
                .delivered
                .try_push_with_headers(origin, key, headers, |buf| {
                    sonic_rs::to_writer(&mut *buf, value)
                }),
            None => out
                .delivered
                .try_push_with_headers(origin, key, headers, |buf| {
                    buf.extend_from_slice(event.raw());
                    Ok(())
                }),
        };
        match encoded {
            Ok(()) => out.delivered_raw.push(event.raw_bytes().clone()),
            Err(error) => {
                let failure = Failure {
                    reason: "encode".to_owned(),
                    stage: "encode".to_owned(),
                    attempts: 1,
                    message: error.to_string(),
                };
                push_dead_letter(&mut out.dead, &event, &failure);
                *out.outcomes
                    .dead_lettered
                    .entry(failure.reason)
                    .or_default() += 1;
            }
        }
        out.done.push(done_of(&event));
    }
    out
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
