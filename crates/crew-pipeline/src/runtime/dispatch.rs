//! Hands a read batch to the first pool: whole, or split into ordered lanes.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::time::Instant;

use sonic_rs::JsonValueTrait;

use crate::event::Event;
use crate::runtime::chain::{Chain, Outgoing, Work};
use crate::settings::{Ordering, Settings};

pub(crate) struct Dispatch {
    ordering: Ordering,
    lanes: usize,
    key_path: Vec<String>,
}

impl Dispatch {
    pub fn new(settings: &Settings) -> Dispatch {
        Dispatch {
            ordering: settings.ordering,
            lanes: settings.lanes.unwrap_or(settings.workers * 8).max(1),
            key_path: settings
                .key_field
                .as_deref()
                .map(|field| field.split('/').map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    /// Hands `events` to the first segment. In an ordered mode the batch is
    /// split by lane and each part waits in the chain's [`LaneGate`] until
    /// its lane has nothing inside the pools, which keeps per-key and
    /// per-partition order through every segment. Returns `false` if the
    /// pool refused (a hard stop).
    ///
    /// [`LaneGate`]: crate::runtime::lane_gate::LaneGate
    pub fn dispatch(&self, chain: &Arc<Chain>, mut events: Vec<Event>, read_at: Instant) -> bool {
        if self.ordering == Ordering::Unordered {
            return chain.submit(0, work(events, None, read_at));
        }
        if self.ordering == Ordering::Key && !self.key_path.is_empty() {
            for event in &mut events {
                self.fill_key(event);
            }
        }
        let mut lanes: Vec<Vec<Event>> =
            std::iter::repeat_with(Vec::new).take(self.lanes).collect();
        for event in events {
            let lane = self.lane_of(&event);
            lanes[lane as usize].push(event);
        }
        for (lane, lane_events) in lanes.into_iter().enumerate() {
            if !lane_events.is_empty() {
                chain.lanes.enqueue(lane, lane_events, read_at);
            }
        }
        Self::pump(chain)
    }

    /// Submits the waiting batches of every lane that has nothing inside the
    /// pools. Returns `false` if the pool refused (a hard stop).
    pub fn pump(chain: &Arc<Chain>) -> bool {
        chain
            .lanes
            .take_ready()
            .into_iter()
            .all(|(lane, events, read_at)| chain.submit(0, work(events, Some(lane), read_at)))
    }

    /// How many lanes an ordered pipeline spreads its events over.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    fn lane_of(&self, event: &Event) -> u64 {
        match (self.ordering, event.key()) {
            (Ordering::Key, Some(key)) => {
                BuildHasherDefault::<DefaultHasher>::default().hash_one(key) % self.lanes as u64
            }
            // Keyless events and partition ordering follow their partition.
            _ => u64::from(event.origin().partition) % self.lanes as u64,
        }
    }

    /// Reads the key field out of the raw JSON without parsing the rest; an
    /// event that has no such field (or is not JSON) keeps no key.
    fn fill_key(&self, event: &mut Event) {
        if event.key().is_some() {
            return;
        }
        let Ok(found) = sonic_rs::get_from_slice(event.raw(), &self.key_path) else {
            return;
        };
        let key = match found.as_str() {
            Some(text) => bytes::Bytes::copy_from_slice(text.as_bytes()),
            None => bytes::Bytes::copy_from_slice(found.as_raw_str().as_bytes()),
        };
        event.set_key(key);
    }
}

fn work(events: Vec<Event>, lane: Option<usize>, read_at: Instant) -> Work {
    Work {
        events,
        lane,
        out: Outgoing {
            read_at: Some(read_at),
            ..Outgoing::default()
        },
    }
}
