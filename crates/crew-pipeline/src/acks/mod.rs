//! Acks and offset watermarks: which offsets a source may commit.
//!
//! Events finish in any order (workers run in parallel, some are retried,
//! some dropped, some dead-lettered). A source may only commit an offset once
//! every event at or below it is done, or a crash would lose the unfinished
//! ones. [`Watermarks`] keeps one [`PartitionWatermark`] per partition and
//! tells the source what to commit.

mod watermark;

use std::collections::HashMap;

pub use watermark::{PartitionWatermark, RegisterError};

use crate::event::{Offset, Partition};

/// The watermarks of every partition a source has read from.
///
/// ```
/// use crew_pipeline::acks::Watermarks;
///
/// let mut marks = Watermarks::new(1_000);
/// let t0 = marks.register(0, 100).unwrap();
/// let t1 = marks.register(1, 7).unwrap();
/// marks.done(1, t1);
/// assert_eq!(marks.take_commits(), vec![(1, 7)]);
/// assert_eq!(marks.take_commits(), vec![]); // nothing new
/// marks.done(0, t0);
/// assert_eq!(marks.take_commits(), vec![(0, 100)]);
/// ```
#[derive(Debug)]
pub struct Watermarks {
    per_partition: usize,
    partitions: HashMap<Partition, PartitionWatermark>,
    committed: HashMap<Partition, Offset>,
    /// What `committed` held for the partitions of the last hand-out, so a
    /// failed commit can be taken back to the last one that succeeded.
    before_last: Vec<(Partition, Option<Offset>)>,
}

impl Watermarks {
    /// Watermarks that allow at most `per_partition` unfinished events in
    /// each partition.
    pub fn new(per_partition: usize) -> Self {
        Watermarks {
            per_partition,
            partitions: HashMap::new(),
            committed: HashMap::new(),
            before_last: Vec::new(),
        }
    }

    /// How many more events of `partition` may be registered now.
    pub fn room(&self, partition: Partition) -> usize {
        self.partitions
            .get(&partition)
            .map_or(self.per_partition, PartitionWatermark::room)
    }

    /// Registers an event read at `offset` of `partition`; returns its ticket.
    pub fn register(&mut self, partition: Partition, offset: Offset) -> Result<u64, RegisterError> {
        let per_partition = self.per_partition;
        self.partitions
            .entry(partition)
            .or_insert_with(|| PartitionWatermark::new(per_partition))
            .register(offset)
    }

    /// Marks an event done.
    pub fn done(&mut self, partition: Partition, ticket: u64) {
        if let Some(watermark) = self.partitions.get_mut(&partition) {
            watermark.done(ticket);
        }
    }

    /// Events registered and not yet done, over all partitions.
    pub fn unfinished(&self) -> usize {
        self.partitions
            .values()
            .map(PartitionWatermark::unfinished)
            .sum()
    }

    /// Partitions whose done-through offset moved since the last call, with
    /// that offset, sorted by partition.
    pub fn take_commits(&mut self) -> Vec<(Partition, Offset)> {
        let mut commits = Vec::new();
        for (&partition, watermark) in &self.partitions {
            if let Some(offset) = watermark.done_through() {
                if self.committed.get(&partition) != Some(&offset) {
                    commits.push((partition, offset));
                }
            }
        }
        self.before_last.clear();
        for &(partition, offset) in &commits {
            let before = self.committed.insert(partition, offset);
            self.before_last.push((partition, before));
        }
        commits.sort_unstable();
        commits
    }

    /// Takes back commits that the source failed to make, so the next
    /// [`take_commits`](Self::take_commits) hands them out again.
    pub fn retract(&mut self, commits: &[(Partition, Offset)]) {
        for (partition, offset) in commits {
            if self.committed.get(partition) != Some(offset) {
                continue;
            }
            let before = self
                .before_last
                .iter()
                .find(|(p, _)| p == partition)
                .and_then(|(_, before)| *before);
            match before {
                Some(previous) => self.committed.insert(*partition, previous),
                None => self.committed.remove(partition),
            };
        }
    }

    /// The last done-through offset handed out by
    /// [`take_commits`](Self::take_commits), per partition.
    pub fn committed(&self) -> &HashMap<Partition, Offset> {
        &self.committed
    }
}
