//! Ordered lanes: at most one batch per lane inside the stage pools at a
//! time; the lane's later batches wait here, not in a pool's queue.
//!
//! Why not crew's keyed lanes alone: a keyed job parked behind a busy lane
//! still holds a slot of the pool's bounded queue. One slow or stuck key would
//! fill the queue with its parked batches, and then every other key, the
//! commits and the shutdown would wait behind it. Holding a lane's later
//! batches here keeps the queue for lanes that can run; their events are
//! already counted in the in-flight budget, so this costs no unbounded
//! memory.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::event::Event;

#[derive(Default)]
struct Lane {
    /// A batch of this lane is inside the pools.
    running: bool,
    /// Batches read after it, in read order, with when they were read.
    waiting: VecDeque<(Vec<Event>, Instant)>,
}

pub(crate) struct LaneGate {
    lanes: Mutex<Vec<Lane>>,
}

impl LaneGate {
    pub fn new(lanes: usize) -> LaneGate {
        LaneGate {
            lanes: Mutex::new(std::iter::repeat_with(Lane::default).take(lanes).collect()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Lane>> {
        // Only this module's short critical sections run under the lock; none
        // can panic half-way, so a poisoned lock holds consistent lanes.
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a batch behind its lane's earlier ones.
    pub fn enqueue(&self, lane: usize, events: Vec<Event>, read_at: Instant) {
        self.lock()[lane].waiting.push_back((events, read_at));
    }

    /// Takes, for every lane with nothing inside the pools, its oldest
    /// waiting batch, and marks the lane running.
    pub fn take_ready(&self) -> Vec<(usize, Vec<Event>, Instant)> {
        let mut lanes = self.lock();
        let mut ready = Vec::new();
        for (index, lane) in lanes.iter_mut().enumerate() {
            if lane.running || lane.waiting.is_empty() {
                continue;
            }
            // One read batch at a time, not all that wait merged: a batch
            // that gets stuck then holds back only the events read with it.
            if let Some((events, read_at)) = lane.waiting.pop_front() {
                lane.running = true;
                ready.push((index, events, read_at));
            }
        }
        ready
    }

    /// Marks the lane's batch out of the pools. Returns whether the lane has
    /// batches waiting (the dispatcher should run again).
    pub fn finish(&self, lane: usize) -> bool {
        let mut lanes = self.lock();
        lanes[lane].running = false;
        !lanes[lane].waiting.is_empty()
    }
}
