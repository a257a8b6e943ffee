//! Keyed lanes: jobs with the same key run one at a time, in submission
//! order, on whichever worker is free.
//!
//! A lane exists only while its key has a job queued or running. The first
//! job of an idle key goes to the shared queue like any other job and marks
//! the lane busy; later jobs with that key wait in the lane. When a lane's job
//! ends, the worker moves the lane's next job to the back of the shared queue
//! (fair to other keys and plain jobs) or, if there is none, removes the lane.
//! No key is pinned to a worker, so a slow key never holds up another key.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use crossbeam_utils::CachePadded;

use crate::job::LaneId;
use crate::sync::{lock, AtomicUsize, Mutex, Ordering};

const SHARDS: usize = 64;

/// Lane ids are already hashes; hashing them again would waste time.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type LaneMap<T> = HashMap<LaneId, VecDeque<T>, BuildHasherDefault<IdentityHasher>>;

pub(crate) struct Lanes<T> {
    shards: Box<[CachePadded<Mutex<LaneMap<T>>>]>,
    active: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
}

impl<T> Lanes<T> {
    pub(crate) fn new() -> Self {
        Lanes {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(LaneMap::default())))
                .collect(),
            active: AtomicUsize::new(0),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The lane a key maps to.
    pub(crate) fn lane_of<K: Hash + ?Sized>(&self, key: &K) -> LaneId {
        self.hasher.hash_one(key)
    }

    fn shard(&self, lane: LaneId) -> &Mutex<LaneMap<T>> {
        // The low bits pick the bucket inside the map; use high bits here so
        // shards and buckets do not correlate.
        &self.shards[(lane >> 58) as usize % SHARDS]
    }

    /// Keys with a job queued or running.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Admits a keyed task. Returns it back when its lane was idle (the
    /// caller pushes it to the shared queue); otherwise it waits in the lane.
    pub(crate) fn admit(&self, lane: LaneId, task: T) -> Option<T> {
        let mut map = lock(self.shard(lane));
        match map.get_mut(&lane) {
            Some(waiting) => {
                waiting.push_back(task);
                None
            }
            None => {
                map.insert(lane, VecDeque::new());
                self.active.fetch_add(1, Ordering::Relaxed);
                Some(task)
            }
        }
    }

    /// The lane's current job ended (ran, or was skipped). Returns the lane's
    /// next job, which the caller pushes to the shared queue, or `None` after
    /// removing the now idle lane.
    pub(crate) fn finish(&self, lane: LaneId) -> Option<T> {
        let mut map = lock(self.shard(lane));
        let waiting = map.get_mut(&lane)?;
        if let Some(next) = waiting.pop_front() {
            return Some(next);
        }
        map.remove(&lane);
        self.active.fetch_sub(1, Ordering::Relaxed);
        // An idle key costs no memory: give back what a burst grew.
        if map.capacity() > 64 && map.len() < map.capacity() / 8 {
            map.shrink_to_fit();
        }
        None
    }

    /// Removes every job waiting behind a busy lane (shutdown without drain).
    /// The lanes stay marked busy until their running job ends.
    pub(crate) fn take_waiting(&self) -> Vec<T> {
        let mut taken = Vec::new();
        for shard in self.shards.iter() {
            for waiting in lock(shard).values_mut() {
                taken.extend(waiting.drain(..));
            }
        }
        taken
    }
}
