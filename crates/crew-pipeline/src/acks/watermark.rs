//! One partition's watermark: which events are still unfinished, and the
//! highest offset below which everything is done.

use std::collections::VecDeque;

use crate::event::Offset;

/// Tracks the unfinished events of one partition, in read order.
///
/// Each registered event gets a ticket (its position in read order). Marking
/// tickets done in any order advances the watermark only across a prefix
/// that is entirely done, so the committed offset never passes an unfinished
/// event. Memory is bounded by `capacity`: the source must not register more
/// unfinished events than that ([`PartitionWatermark::room`]).
///
/// ```
/// use crew_pipeline::acks::PartitionWatermark;
///
/// let mut w = PartitionWatermark::new(8);
/// let a = w.register(10).unwrap();
/// let b = w.register(11).unwrap();
/// let c = w.register(15).unwrap(); // gaps between offsets are fine
/// w.done(c);
/// assert_eq!(w.done_through(), None); // 10 and 11 are still unfinished
/// w.done(a);
/// assert_eq!(w.done_through(), Some(10));
/// w.done(b);
/// assert_eq!(w.done_through(), Some(15));
/// ```
#[derive(Debug)]
pub struct PartitionWatermark {
    capacity: usize,
    /// Ticket of the oldest unfinished event (the front of `pending`).
    head_ticket: u64,
    /// Offsets and done flags of the events from `head_ticket` on.
    pending: VecDeque<(Offset, bool)>,
    done_through: Option<Offset>,
    last_registered: Option<Offset>,
}

/// Why [`PartitionWatermark::register`] refused an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The partition already has `capacity` unfinished events.
    #[error("the partition has no room for another unfinished event")]
    Full,
    /// The offset is not above the last registered one.
    #[error("offset {offset} is not above the previous offset {previous} of its partition")]
    NotIncreasing {
        /// The refused offset.
        offset: Offset,
        /// The partition's last registered offset.
        previous: Offset,
    },
}

impl PartitionWatermark {
    /// A tracker for at most `capacity` unfinished events.
    pub fn new(capacity: usize) -> Self {
        Self::with_first_ticket(capacity, 0)
    }

    /// A tracker whose tickets start at `first_ticket`: a partition tracked
    /// again after a [release](crate::acks::Watermarks::release) must not
    /// hand out tickets that events of its earlier tracking still hold.
    pub fn with_first_ticket(capacity: usize, first_ticket: u64) -> Self {
        PartitionWatermark {
            capacity: capacity.max(1),
            head_ticket: first_ticket,
            pending: VecDeque::new(),
            done_through: None,
            last_registered: None,
        }
    }

    /// How many more events may be registered now.
    pub fn room(&self) -> usize {
        self.capacity - self.pending.len()
    }

    /// Unfinished events (registered and not yet done), counting done ones
    /// stuck behind an unfinished one.
    pub fn unfinished(&self) -> usize {
        self.pending.len()
    }

    /// Registers the next event read from the partition; returns its ticket.
    pub fn register(&mut self, offset: Offset) -> Result<u64, RegisterError> {
        if self.pending.len() >= self.capacity {
            return Err(RegisterError::Full);
        }
        if let Some(previous) = self.last_registered.or(self.done_through) {
            if offset <= previous {
                return Err(RegisterError::NotIncreasing { offset, previous });
            }
        }
        let ticket = self.head_ticket + self.pending.len() as u64;
        self.pending.push_back((offset, false));
        self.last_registered = Some(offset);
        Ok(ticket)
    }

    /// Marks a ticket done. Returns `true` if the watermark moved. A ticket
    /// that is unknown or already done is ignored.
    pub fn done(&mut self, ticket: u64) -> bool {
        let Some(index) = ticket.checked_sub(self.head_ticket) else {
            return false;
        };
        match self.pending.get_mut(index as usize) {
            Some((_, done)) => *done = true,
            None => return false,
        }
        let mut moved = false;
        while let Some(&(offset, true)) = self.pending.front() {
            self.pending.pop_front();
            self.head_ticket += 1;
            self.done_through = Some(offset);
            moved = true;
        }
        moved
    }

    /// The ticket the next registered event gets.
    pub fn next_ticket(&self) -> u64 {
        self.head_ticket + self.pending.len() as u64
    }

    /// The highest offset at or below which every registered event is done.
    pub fn done_through(&self) -> Option<Offset> {
        self.done_through
    }
}
