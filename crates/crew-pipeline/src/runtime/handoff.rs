//! [`PartitionHandoff`]: how a source that loses partitions (a Kafka
//! rebalance) lets their in-flight events finish and commits them before
//! another consumer takes over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{Offset, Partition};
use crate::runtime::chain::Chain;
use crate::runtime::dispatch::Dispatch;
use crate::runtime::flow::Flow;

/// What [`PartitionHandoff::release`] ended with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Per released partition, the done-through offset not committed yet:
    /// the source commits these before it lets the partitions go.
    pub done_through: Vec<(Partition, Offset)>,
    /// Events of the released partitions still unfinished when the wait
    /// ended. They finish normally but are never committed by this
    /// consumer: the next owner reads them again (at least once).
    pub unfinished: usize,
}

/// Given to a source by [`Source::attach`](crate::Source::attach) before the
/// run starts. A source calls it from inside `read` (where a Kafka consumer
/// runs its rebalance callbacks), on the pipeline's reading thread.
///
/// Without it, a consumer that loses a partition either commits offsets of
/// events still in flight (losing them if it then crashes) or commits
/// nothing and makes the next owner redo everything since the last commit;
/// and a late commit for a partition that moved on overwrites the new
/// owner's progress. Releasing waits for the partition's in-flight events,
/// hands back what is done, and forgets the partition, so nothing about it
/// is ever committed again by this consumer.
#[derive(Clone)]
pub struct PartitionHandoff {
    flow: Arc<Flow>,
    chain: Arc<Chain>,
}

impl std::fmt::Debug for PartitionHandoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionHandoff").finish_non_exhaustive()
    }
}

impl PartitionHandoff {
    pub(crate) fn new(flow: Arc<Flow>, chain: Arc<Chain>) -> Self {
        PartitionHandoff { flow, chain }
    }

    /// Waits until every event read from `partitions` is done, at most
    /// `timeout` (and never past the run's own stop deadline), then stops
    /// tracking them and returns their uncommitted done-through offsets.
    ///
    /// While it waits, the reading thread keeps the ordered lanes moving
    /// (events of these partitions may queue behind others of their key).
    pub fn release(&self, partitions: &[Partition], timeout: Duration) -> Released {
        let until = Instant::now().checked_add(timeout);
        loop {
            if self.flow.take_lanes_ready() {
                // A refused submit means a hard stop: the wait ends below.
                Dispatch::pump(&self.chain);
            }
            let mut state = self.flow.lock();
            let unfinished = state.marks.unfinished_in(partitions);
            let stop_deadline = self.flow.drain_deadline(&state);
            let deadline = match (until, stop_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            if unfinished == 0 || out_of_time || state.frozen || state.failure.is_some() {
                let done_through = state.marks.release(partitions);
                return Released {
                    done_through,
                    unfinished,
                };
            }
            drop(self.flow.wait(state, deadline));
        }
    }

    /// Records that `partition` was already committed through
    /// `done_through` when it was assigned (its group offset minus one), so
    /// the lag the pipeline reports counts from there.
    pub fn resume_from(&self, partition: Partition, done_through: Offset) {
        self.flow.lock().marks.resume_from(partition, done_through);
    }
}
