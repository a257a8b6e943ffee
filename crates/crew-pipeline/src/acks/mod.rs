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
    /// The next ticket of each released partition: tracking it again starts
    /// there, so a late ack from before the release matches no new event.
    released_tickets: HashMap<Partition, u64>,
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
            released_tickets: HashMap::new(),
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
        let released_tickets = &self.released_tickets;
        self.partitions
            .entry(partition)
            .or_insert_with(|| {
                let first = released_tickets.get(&partition).copied().unwrap_or(0);
                PartitionWatermark::with_first_ticket(per_partition, first)
            })
            .register(offset)
    }

    /// Events of `partitions` registered and not yet done.
    pub fn unfinished_in(&self, partitions: &[Partition]) -> usize {
        partitions
            .iter()
            .filter_map(|p| self.partitions.get(p))
            .map(PartitionWatermark::unfinished)
            .sum()
    }

    /// Stops tracking `partitions` (a source lost them): returns their
    /// done-through offsets not handed out yet, for a last commit, and
    /// forgets them. Acks of their events still in flight are ignored from
    /// now on, and a partition read again later (from an older offset,
    /// after a rebalance) starts afresh.
    ///
    /// ```
    /// use crew_pipeline::acks::Watermarks;
    ///
    /// let mut marks = Watermarks::new(10);
    /// let a = marks.register(3, 40).unwrap();
    /// let _b = marks.register(3, 41).unwrap();
    /// marks.done(3, a);
    /// assert_eq!(marks.release(&[3]), vec![(3, 40)]);
    /// // Read again from 41 after the partition comes back: allowed.
    /// let c = marks.register(3, 41).unwrap();
    /// marks.done(3, _b); // a late ack from before the release: ignored
    /// assert_eq!(marks.take_commits(), vec![]);
    /// marks.done(3, c);
    /// assert_eq!(marks.take_commits(), vec![(3, 41)]);
    /// ```
    pub fn release(&mut self, partitions: &[Partition]) -> Vec<(Partition, Offset)> {
        let mut last = Vec::new();
        for partition in partitions {
            let committed = self.committed.remove(partition);
            if let Some(watermark) = self.partitions.remove(partition) {
                self.released_tickets
                    .insert(*partition, watermark.next_ticket());
                if let Some(done) = watermark.done_through() {
                    if committed != Some(done) {
                        last.push((*partition, done));
                    }
                }
            }
        }
        self.before_last.retain(|(p, _)| !partitions.contains(p));
        last.sort_unstable();
        last
    }

    /// Records that `partition` is already committed through `done_through`
    /// (a Kafka group's offset, found when the partition is assigned), so
    /// lag counts from there before this run commits anything.
    pub fn resume_from(&mut self, partition: Partition, done_through: Offset) {
        self.committed.entry(partition).or_insert(done_through);
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
