//! The Kafka source's own counters, for exporters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::event::{Offset, Partition};

/// Counters and gauges of a [`KafkaSource`](super::KafkaSource), shared
/// with exporters through [`KafkaSource::stats`](super::KafkaSource::stats).
/// Per-partition lag and committed offsets are in the pipeline's
/// [`Snapshot`](crate::Snapshot), like every source's.
#[derive(Debug, Default)]
pub struct KafkaSourceStats {
    assigned: Mutex<BTreeSet<Partition>>,
    group_committed: Mutex<BTreeMap<Partition, Offset>>,
    assigns: AtomicU64,
    revokes: AtomicU64,
    revoked_unfinished: AtomicU64,
    errors: AtomicU64,
    paused: AtomicU64,
    pauses: AtomicU64,
}

impl KafkaSourceStats {
    /// The partitions this consumer owns now, sorted.
    pub fn assigned_partitions(&self) -> Vec<Partition> {
        lock(&self.assigned).iter().copied().collect()
    }

    /// Rebalance callbacks that assigned partitions to this consumer.
    pub fn assigns(&self) -> u64 {
        self.assigns.load(Ordering::Relaxed)
    }

    /// Rebalance callbacks that took partitions away.
    pub fn revokes(&self) -> u64 {
        self.revokes.load(Ordering::Relaxed)
    }

    /// Events still in flight when their partition was let go (the next
    /// owner reads them again): the duplicates rebalances cost.
    pub fn revoked_unfinished(&self) -> u64 {
        self.revoked_unfinished.load(Ordering::Relaxed)
    }

    /// Consumer and rebalance errors librdkafka reported and recovered
    /// from.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Partitions paused now because their in-flight budget is full.
    pub fn paused_partitions(&self) -> u64 {
        self.paused.load(Ordering::Relaxed)
    }

    /// Times a partition was paused because its in-flight budget was full.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }

    /// The last done-through offset committed to the group per owned
    /// partition (or found there on assignment).
    pub fn group_committed(&self) -> BTreeMap<Partition, Offset> {
        lock(&self.group_committed).clone()
    }

    pub(super) fn assigned(&self, partitions: &[i32]) {
        self.assigns.fetch_add(1, Ordering::Relaxed);
        lock(&self.assigned).extend(partitions.iter().map(|p| *p as Partition));
    }

    pub(super) fn revoked(&self, partitions: &[i32]) {
        self.revokes.fetch_add(1, Ordering::Relaxed);
        let mut assigned = lock(&self.assigned);
        let mut committed = lock(&self.group_committed);
        for partition in partitions {
            assigned.remove(&(*partition as Partition));
            committed.remove(&(*partition as Partition));
        }
    }

    pub(super) fn add_revoked_unfinished(&self, events: usize) {
        self.revoked_unfinished
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    pub(super) fn committed(&self, done_through: &[(Partition, Offset)]) {
        let assigned = lock(&self.assigned);
        let mut committed = lock(&self.group_committed);
        for &(partition, offset) in done_through {
            if assigned.contains(&partition) {
                committed.insert(partition, offset);
            }
        }
    }

    pub(super) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn paused_one(&self) {
        self.pauses.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn set_paused(&self, partitions: usize) {
        self.paused.store(partitions as u64, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
