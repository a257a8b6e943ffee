//! The consumer context: what happens when the group moves partitions.
//!
//! librdkafka runs these callbacks inside `poll`, on the pipeline's reading
//! thread, so a revoke can wait for the pipeline (through the
//! [`PartitionHandoff`]) without any other thread reading meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};

use crate::event::Partition;
use crate::runtime::PartitionHandoff;
use crate::sources::kafka::stats::KafkaSourceStats;

/// How long an assignment waits for the group's committed offsets (used
/// only to report lag from the right place).
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

/// A rebalance, as the source must hear of it after `poll` returns.
#[derive(Debug)]
pub(super) enum Notice {
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
}

pub(super) struct Rebalancer {
    topic: String,
    revoke_timeout: Duration,
    handoff: Option<PartitionHandoff>,
    stats: Arc<KafkaSourceStats>,
    notices: Mutex<Vec<Notice>>,
}

impl Rebalancer {
    pub(super) fn new(
        topic: String,
        revoke_timeout: Duration,
        handoff: Option<PartitionHandoff>,
        stats: Arc<KafkaSourceStats>,
    ) -> Self {
        Rebalancer {
            topic,
            revoke_timeout,
            handoff,
            stats,
            notices: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn take_notices(&self) -> Vec<Notice> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn notice(&self, notice: Notice) {
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(notice);
    }

    fn ours(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }

    /// Lets the pipeline finish what it holds of `partitions`, commits that,
    /// and forgets them. A lost assignment (the session expired: another
    /// member may own them already) commits nothing, since the group would
    /// refuse it or, worse, take it over the new owner's progress.
    fn revoke(&self, consumer: &BaseConsumer<Self>, partitions: &[i32]) {
        let Some(handoff) = &self.handoff else {
            return;
        };
        let ours: Vec<Partition> = partitions.iter().map(|p| *p as Partition).collect();
        let lost = consumer.assignment_lost();
        let timeout = if lost {
            Duration::ZERO
        } else {
            self.revoke_timeout
        };
        let released = handoff.release(&ours, timeout);
        self.stats.add_revoked_unfinished(released.unfinished);
        if released.unfinished > 0 {
            tracing::warn!(
                unfinished = released.unfinished,
                ?partitions,
                lost,
                "partitions revoked with events still in flight; their next owner reads them again"
            );
        }
        if lost || released.done_through.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in &released.done_through {
            if let Err(error) = list.add_partition_offset(
                &self.topic,
                partition as i32,
                KafkaOffset::Offset(offset as i64 + 1),
            ) {
                tracing::warn!(%error, "building the commit of revoked partitions");
                return;
            }
        }
        match consumer.commit(&list, CommitMode::Sync) {
            Ok(()) => self.stats.committed(&released.done_through),
            // At least once still holds: the next owner starts from the
            // previous commit and reads these events again.
            Err(error) => tracing::warn!(%error, "committing revoked partitions failed"),
        }
    }

    /// Tells the pipeline where each assigned partition's group offset is,
    /// so its lag counts from there.
    fn assigned(&self, consumer: &BaseConsumer<Self>, partitions: &[i32]) {
        let Some(handoff) = &self.handoff else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            list.add_partition(&self.topic, partition);
        }
        match consumer.committed_offsets(list, COMMITTED_TIMEOUT) {
            Ok(committed) => {
                for element in committed.elements_for_topic(&self.topic) {
                    if let KafkaOffset::Offset(next) = element.offset() {
                        if next > 0 {
                            let done_through = (next - 1) as u64;
                            handoff.resume_from(element.partition() as Partition, done_through);
                            self.stats
                                .committed(&[(element.partition() as Partition, done_through)]);
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "reading the group's committed offsets"),
        }
    }
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions = self.ours(list);
            self.stats.revoked(&partitions);
            tracing::info!(?partitions, "partitions revoked");
            self.revoke(consumer, &partitions);
            self.notice(Notice::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = self.ours(list);
                self.stats.assigned(&partitions);
                tracing::info!(?partitions, "partitions assigned");
                self.assigned(consumer, &partitions);
                self.notice(Notice::Assigned(partitions));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                self.stats.error();
                tracing::warn!(%error, "rebalance error");
            }
        }
    }
}
