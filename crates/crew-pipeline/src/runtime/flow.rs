//! The state the source thread and the sink thread share: watermarks, the
//! in-flight budget, the outcome counters and the stop flags, under one lock.
//!
//! One lock because every change that can unblock the source (an ack frees
//! budget and partition room; a stop request; a fatal error) must wake it,
//! and one condvar on one lock cannot miss such a wake-up. The lock is taken
//! once per read batch by the source and once per flush by the sink thread,
//! so it is never hot.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::acks::Watermarks;
use crate::event::Partition;

/// Why the source stopped reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// The source was exhausted (end of file, generator count reached).
    SourceEnded,
    /// A shutdown was requested.
    Requested,
    /// A fatal error: the source failed, or the sink or dead-letter sink
    /// could not write even after retries.
    Failed(String),
}

/// One finished event, acked by the sink thread after a flush.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Done {
    pub partition: Partition,
    pub ticket: u64,
    pub bytes: usize,
}

/// Counts of finished events, applied together with their acks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcomes {
    pub delivered: u64,
    pub dropped: BTreeMap<String, u64>,
    pub dead_lettered: BTreeMap<String, u64>,
}

impl Outcomes {
    pub fn merge(&mut self, other: Outcomes) {
        self.delivered += other.delivered;
        for (reason, n) in other.dropped {
            *self.dropped.entry(reason).or_default() += n;
        }
        for (reason, n) in other.dead_lettered {
            *self.dead_lettered.entry(reason).or_default() += n;
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    pub fn dead_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }
}

pub(crate) struct FlowState {
    pub marks: Watermarks,
    pub in_flight_events: usize,
    /// Events finished since the last commit was handed to the source: a
    /// crash now would read them again, so they count against the event
    /// budget until committed (duplicates stay within the budget).
    pub uncommitted: usize,
    pub in_flight_bytes: usize,
    pub read: u64,
    pub outcomes: Outcomes,
    pub stop_requested: bool,
    /// When the first stop was requested: the drain deadline counts from
    /// here.
    pub stop_requested_at: Option<Instant>,
    /// Set at the drain deadline: acks after it are not applied, so the
    /// final commit and report are one consistent snapshot.
    pub frozen: bool,
    pub failure: Option<String>,
    pub drain_deadline_override: Option<Instant>,
    /// An ordered lane freed up while batches of it wait: the dispatcher
    /// must run before the source thread waits again.
    pub lanes_ready: bool,
    /// The source's `connect` returned: the pipeline is reading.
    pub connected: bool,
    /// Reading stopped (for any reason) and the run is draining.
    pub draining: bool,
    /// The run has returned its report.
    pub finished: bool,
}

/// Where a run is, for readiness checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The source is connecting.
    Starting,
    /// Reading and processing.
    Running,
    /// A shutdown was asked for, or a failure stopped reading: in-flight
    /// events are finishing.
    Draining,
    /// The run is over.
    Stopped,
}

impl FlowState {
    pub fn phase(&self) -> Phase {
        if self.finished {
            Phase::Stopped
        } else if self.draining || self.stop_requested || self.failure.is_some() {
            Phase::Draining
        } else if self.connected {
            Phase::Running
        } else {
            Phase::Starting
        }
    }
}

pub(crate) struct Flow {
    state: Mutex<FlowState>,
    changed: Condvar,
    drain_timeout: Duration,
}

impl Flow {
    pub fn new(per_partition: usize, drain_timeout: Duration) -> Flow {
        Flow {
            state: Mutex::new(FlowState {
                marks: Watermarks::new(per_partition),
                in_flight_events: 0,
                uncommitted: 0,
                in_flight_bytes: 0,
                read: 0,
                outcomes: Outcomes::default(),
                stop_requested: false,
                stop_requested_at: None,
                frozen: false,
                failure: None,
                drain_deadline_override: None,
                lanes_ready: false,
                connected: false,
                draining: false,
                finished: false,
            }),
            changed: Condvar::new(),
            drain_timeout,
        }
    }

    /// When the drain must end, once a stop was requested: the request's
    /// time plus the drain timeout, or sooner for a stop that skips the
    /// drain.
    pub fn drain_deadline(&self, state: &FlowState) -> Option<Instant> {
        // A timeout too long for the clock means no deadline, not a panic.
        let requested = state
            .stop_requested_at
            .and_then(|at| at.checked_add(self.drain_timeout));
        match (requested, state.drain_deadline_override) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a blocked hand-off should give up: the drain deadline passed
    /// (or the flow froze). Its events are then abandoned, not committed.
    pub fn past_deadline(&self) -> bool {
        let state = self.lock();
        state.frozen
            || self
                .drain_deadline(&state)
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    pub fn lock(&self) -> MutexGuard<'_, FlowState> {
        // A panic while holding this lock is a bug in this crate (user code
        // never runs under it); the state is still consistent enough to
        // report, so a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a change, until `deadline` if one is given. Returns at once
    /// when a lane is ready, so the dispatcher runs first; the flag is set
    /// under this lock, so a lane freed just before the wait is not missed.
    pub fn wait<'a>(
        &self,
        guard: MutexGuard<'a, FlowState>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, FlowState> {
        if guard.lanes_ready {
            return guard;
        }
        match deadline {
            None => self.changed.wait(guard).unwrap_or_else(|p| p.into_inner()),
            Some(deadline) => {
                let timeout = deadline.saturating_duration_since(Instant::now());
                self.changed
                    .wait_timeout(guard, timeout)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        }
    }

    /// Tells the source thread that an ordered lane can take its next batch.
    pub fn lanes_ready(&self) {
        self.lock().lanes_ready = true;
        self.notify();
    }

    /// Clears the lanes-ready flag before the dispatcher looks at the lanes.
    pub fn take_lanes_ready(&self) -> bool {
        std::mem::take(&mut self.lock().lanes_ready)
    }

    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Applies finished events: acks, frees budget, counts outcomes.
    /// Returns `false` (and applies nothing) once the flow is frozen.
    pub fn finish(&self, done: &[Done], outcomes: Outcomes) -> bool {
        let mut state = self.lock();
        if state.frozen {
            return false;
        }
        for d in done {
            state.marks.done(d.partition, d.ticket);
            state.in_flight_events -= 1;
            state.uncommitted += 1;
            state.in_flight_bytes -= d.bytes;
        }
        state.outcomes.merge(outcomes);
        drop(state);
        self.notify();
        true
    }

    /// Records a fatal error and stops reading.
    pub fn fail(&self, message: String) {
        let mut state = self.lock();
        state.failure.get_or_insert(message);
        drop(state);
        self.notify();
    }

    pub fn request_stop(&self) {
        let mut state = self.lock();
        state.stop_requested = true;
        state.stop_requested_at.get_or_insert_with(Instant::now);
        drop(state);
        self.notify();
    }

    /// A stop that skips the drain: the deadline becomes now.
    pub fn request_stop_now(&self) {
        let mut state = self.lock();
        state.stop_requested = true;
        state.stop_requested_at.get_or_insert_with(Instant::now);
        state.drain_deadline_override = Some(Instant::now());
        drop(state);
        self.notify();
    }
}
