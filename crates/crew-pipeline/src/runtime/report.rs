//! What a run reports at its end ([`Report`]) and while it runs ([`Snapshot`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crew::{Histogram, SharedHistogram};

use crate::event::{Offset, Partition};
use crate::runtime::chain::Chain;
use crate::runtime::flow::{Flow, Phase, StopCause};
use crate::settings::Budget;

/// The end of a run: how every event read ended, what was committed, and why
/// the run stopped.
///
/// `read == delivered + dropped + dead_lettered + abandoned`, always.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Events read from the source.
    pub read: u64,
    /// Events the sink wrote.
    pub delivered: u64,
    /// Events dropped on purpose, in all.
    pub dropped: u64,
    /// Events dropped on purpose, by reason.
    pub dropped_by_reason: BTreeMap<String, u64>,
    /// Events written to the dead-letter sink, in all.
    pub dead_lettered: u64,
    /// Events written to the dead-letter sink, by reason.
    pub dead_lettered_by_reason: BTreeMap<String, u64>,
    /// Events still unfinished when the run ended (the drain deadline
    /// passed, or a sink failed). They were not committed: the next run reads
    /// them again.
    pub abandoned: u64,
    /// The last committed done-through offset of each partition.
    pub committed: Vec<(Partition, Offset)>,
    /// Why reading stopped.
    pub stopped_by: StopCause,
    /// The last commit's error, if the source could not commit.
    pub commit_error: Option<String>,
    /// How long the run took.
    pub elapsed: Duration,
    /// From read to acked (written, flushed, watermark moved), per finished
    /// event.
    pub event_latency: Histogram,
}

impl Report {
    /// Whether the run ended without a failure and abandoned nothing.
    pub fn is_clean(&self) -> bool {
        !matches!(self.stopped_by, StopCause::Failed(_))
            && self.abandoned == 0
            && self.commit_error.is_none()
    }
}

/// One stage's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSnapshot {
    /// The stage's name.
    pub name: String,
    /// Events the stage was called for (once per event, retries aside).
    pub processed: u64,
    /// Events it passed on.
    pub passed: u64,
    /// Events it dropped on purpose.
    pub dropped: u64,
    /// Events it failed (they went to the dead-letter sink).
    pub failed: u64,
    /// Retried calls.
    pub retried: u64,
    /// Time of one call (with its retries), per event.
    pub duration: Histogram,
}

/// A running pipeline's counters and gauges, read by exporters at scrape
/// time.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Events read.
    pub read: u64,
    /// Events delivered (acked after the sink's flush).
    pub delivered: u64,
    /// Events dropped on purpose, by reason.
    pub dropped_by_reason: BTreeMap<String, u64>,
    /// Events dead-lettered, by reason.
    pub dead_lettered_by_reason: BTreeMap<String, u64>,
    /// Events read and not yet done.
    pub in_flight_events: usize,
    /// Raw bytes of those events.
    pub in_flight_bytes: usize,
    /// Per stage, in pipeline order.
    pub stages: Vec<StageSnapshot>,
    /// Each pool's stats, named after its first stage's pool.
    pub pools: Vec<(String, crew::Stats)>,
    /// Done-through offsets committed so far, by partition.
    pub committed: BTreeMap<Partition, Offset>,
    /// The offset after the last event each partition has available, as the
    /// source last said ([`Source::end_offsets`](crate::Source::end_offsets));
    /// empty for a source that does not know.
    pub end_offsets: BTreeMap<Partition, Offset>,
    /// Where the run is.
    pub phase: Phase,
    /// The in-flight limits.
    pub budget: Budget,
    /// From read to acked, per finished event.
    pub event_latency: Histogram,
    /// Retried sink writes and flushes.
    pub sink_retries: u64,
    /// Retried dead-letter writes and flushes.
    pub dead_letter_retries: u64,
    /// Commits the source refused.
    pub commit_errors: u64,
    /// Time since the run started.
    pub uptime: Duration,
}

impl Snapshot {
    /// Events of `partition` available and not yet committed: the end
    /// offset minus the committed position (the committed done-through
    /// offset plus one, or 0 before the first commit). `None` when the
    /// source gives no end offset for it.
    pub fn lag(&self, partition: Partition) -> Option<u64> {
        let end = *self.end_offsets.get(&partition)?;
        let position = self.committed.get(&partition).map_or(0, |done| done + 1);
        Some(end.saturating_sub(position))
    }
}

/// Counters the run keeps beside the flow's, all read at snapshot time.
#[derive(Debug, Default)]
pub(crate) struct RunMetrics {
    pub event_latency: SharedHistogram,
    pub sink_retries: AtomicU64,
    pub dead_letter_retries: AtomicU64,
    pub commit_errors: AtomicU64,
    pub end_offsets: Mutex<BTreeMap<Partition, Offset>>,
}

/// What a handle needs to read a live snapshot.
pub(crate) struct Live {
    pub chain: Arc<Chain>,
    pub metrics: Arc<RunMetrics>,
    pub budget: Budget,
    pub started: Instant,
}

impl Live {
    pub fn snapshot(&self, flow: &Flow) -> Snapshot {
        let (read, outcomes, in_flight_events, in_flight_bytes, committed, phase) = {
            let state = flow.lock();
            (
                state.read,
                state.outcomes.clone(),
                state.in_flight_events,
                state.in_flight_bytes,
                state
                    .marks
                    .committed()
                    .iter()
                    .map(|(p, o)| (*p, *o))
                    .collect(),
                state.phase(),
            )
        };
        let mut stages = Vec::new();
        let mut pools = Vec::new();
        for segment in &self.chain.segments {
            if let Some(first) = segment.stages.first() {
                pools.push((first.name.to_string(), segment.pool.stats()));
            }
            for stage in &segment.stages {
                let c = &stage.counters;
                stages.push(StageSnapshot {
                    name: stage.name.to_string(),
                    processed: c.processed.load(AtomicOrdering::Relaxed),
                    passed: c.passed.load(AtomicOrdering::Relaxed),
                    dropped: c.dropped.load(AtomicOrdering::Relaxed),
                    failed: c.failed.load(AtomicOrdering::Relaxed),
                    retried: c.retried.load(AtomicOrdering::Relaxed),
                    duration: c.duration.snapshot(),
                });
            }
        }
        Snapshot {
            read,
            delivered: outcomes.delivered,
            dropped_by_reason: outcomes.dropped,
            dead_lettered_by_reason: outcomes.dead_lettered,
            in_flight_events,
            in_flight_bytes,
            stages,
            pools,
            committed,
            end_offsets: self
                .metrics
                .end_offsets
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
            phase,
            budget: self.budget,
            event_latency: self.metrics.event_latency.snapshot(),
            sink_retries: self.metrics.sink_retries.load(AtomicOrdering::Relaxed),
            dead_letter_retries: self
                .metrics
                .dead_letter_retries
                .load(AtomicOrdering::Relaxed),
            commit_errors: self.metrics.commit_errors.load(AtomicOrdering::Relaxed),
            uptime: self.started.elapsed(),
        }
    }
}
