//! The [`Source`] trait: where events come from, and where their offsets are
//! committed once they are done.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use crate::event::{Event, Offset, Partition};
use crate::runtime::PartitionHandoff;

/// What a [`Source::read`] call ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// The source may have more: call `read` again.
    More,
    /// Every partition the source wants to read has no room: the pipeline
    /// waits until acks free some, then calls `read` again.
    Blocked,
    /// The source is exhausted (end of file, generator count reached).
    End,
}

crate::component_error::component_error! {
    /// A source's failure: `retriable` when reading again may succeed (a
    /// broker hiccup), not when the pipeline should stop reading (a corrupt
    /// file, bad credentials).
    SourceError
}

/// Where events come from.
///
/// The pipeline calls `read` from one thread, again and again, each time with
/// an empty [`ReadBatch`] to fill; it calls `commit` from the same thread with,
/// for each partition, the highest offset below which every event is done
/// (delivered, dropped on purpose, or dead-lettered). A source that persists
/// positions (a Kafka group offset, a checkpoint file) resumes from there after
/// a restart; events after it may be read twice, never lost.
///
/// A source must not push more events of a partition than
/// [`ReadBatch::room`] allows: that is how a partition with too many
/// unfinished events is paused instead of growing memory.
pub trait Source: Send {
    /// Reads what is available into `batch`, waiting at most until
    /// [`ReadBatch::linger_until`] for more.
    fn read(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, SourceError>;

    /// Persists `done_through`: for each listed partition, every event at or
    /// below that offset is done. (Kafka's committed offset is that plus one.)
    fn commit(&mut self, done_through: &[(Partition, Offset)]) -> Result<(), SourceError>;

    /// Connects (joins a consumer group, opens a file) before the first
    /// read. The pipeline reports itself ready once this returns; a
    /// retriable error is retried with the sink retry policy's backoff until
    /// a shutdown is asked for. The default does nothing.
    fn connect(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// Gives the source the pipeline's [`PartitionHandoff`], once, before
    /// [`connect`](Self::connect). A source whose partitions can be taken
    /// away while it runs (a Kafka consumer group) keeps it and calls
    /// [`PartitionHandoff::release`] before it gives partitions up. The
    /// default ignores it.
    fn attach(&mut self, handoff: PartitionHandoff) {
        let _ = handoff;
    }

    /// Called instead of `read`, at least every commit interval, while the
    /// pipeline's in-flight budget is used up. A source that must keep a
    /// session alive (a Kafka consumer polls, or its group counts it gone)
    /// does so here without producing events. The default does nothing.
    fn idle(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// For each partition, the offset after the last event available to read
    /// (Kafka's high watermark), if the source knows it: the pipeline's lag
    /// is this minus the committed position. Called on the commit interval,
    /// from the reading thread. The default knows nothing.
    fn end_offsets(&mut self) -> Vec<(Partition, Offset)> {
        Vec::new()
    }
}

/// The batch a [`Source::read`] call fills, with the limits it must respect.
pub struct ReadBatch {
    pub(crate) events: Vec<Event>,
    pub(crate) bytes: usize,
    pub(crate) max_events: usize,
    pub(crate) max_bytes: usize,
    pub(crate) linger_until: Instant,
    /// Room per partition at the start of the read, less what was pushed.
    /// Room only grows while a read runs (acks free it), so a snapshot is safe.
    pub(crate) room: HashMap<Partition, usize>,
    pub(crate) room_of: Box<dyn Fn(Partition) -> usize + Send>,
}

impl fmt::Debug for ReadBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBatch")
            .field("events", &self.events.len())
            .field("bytes", &self.bytes)
            .field("max_events", &self.max_events)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// A push beyond a partition's room or the batch's limits; the event comes
/// back so the source can keep it for the next read.
#[derive(Debug)]
pub struct Full(pub Event);

impl ReadBatch {
    pub(crate) fn new(
        max_events: usize,
        max_bytes: usize,
        linger_until: Instant,
        room_of: Box<dyn Fn(Partition) -> usize + Send>,
    ) -> ReadBatch {
        ReadBatch {
            events: Vec::with_capacity(max_events.min(4096)),
            bytes: 0,
            max_events,
            max_bytes,
            linger_until,
            room: HashMap::new(),
            room_of,
        }
    }

    /// How many more events of `partition` may be pushed in this read.
    pub fn room(&mut self, partition: Partition) -> usize {
        let batch_room = self.max_events - self.events.len();
        let room_of = &self.room_of;
        let partition_room = *self
            .room
            .entry(partition)
            .or_insert_with(|| room_of(partition));
        partition_room.min(batch_room)
    }

    /// Whether the batch has reached its event or byte limit.
    pub fn is_full(&self) -> bool {
        self.events.len() >= self.max_events || self.bytes >= self.max_bytes
    }

    /// When the read should return even if the batch is not full.
    pub fn linger_until(&self) -> Instant {
        self.linger_until
    }

    /// How many events were pushed so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Adds an event. Fails, giving the event back, when the batch is full or
    /// the event's partition has no room.
    pub fn push(&mut self, event: Event) -> Result<(), Full> {
        if self.is_full() {
            return Err(Full(event));
        }
        let room_of = &self.room_of;
        let partition = event.origin().partition;
        let room = self
            .room
            .entry(partition)
            .or_insert_with(|| room_of(partition));
        if *room == 0 {
            return Err(Full(event));
        }
        *room -= 1;
        self.bytes += event.budget_bytes();
        self.events.push(event);
        Ok(())
    }
}
