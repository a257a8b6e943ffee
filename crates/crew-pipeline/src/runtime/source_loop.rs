//! [`Pipeline`] and its run: the source loop on the caller's thread, the
//! drain, the final commit.

use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Sender};

use crate::runtime::chain::{Chain, Segment};
use crate::runtime::dispatch::Dispatch;
use crate::runtime::flow::{Flow, FlowState, StopCause};
use crate::runtime::lane_gate::LaneGate;
use crate::runtime::report::{Live, Report, RunMetrics};
use crate::runtime::sink_loop::SinkLoop;
use crate::runtime::{PartitionHandoff, PipelineBuilder, PipelineHandle};
use crate::settings::Settings;
use crate::sink::Sink;
use crate::source::{ReadBatch, ReadStatus, Source};

/// How long the sink thread may take to notice a stop after the drain.
const SINK_STOP_GRACE: Duration = Duration::from_secs(5);

/// A wired pipeline, ready to [`run`](Pipeline::run).
pub struct Pipeline {
    settings: Settings,
    source: Box<dyn Source>,
    chain: Arc<Chain>,
    flow: Arc<Flow>,
    live: Arc<Live>,
    metrics: Arc<RunMetrics>,
    dispatch: Dispatch,
    sink_thread: Option<(thread::JoinHandle<()>, Sender<()>)>,
    sink_parts: Option<(
        SinkLoop,
        crossbeam_channel::Receiver<crate::runtime::chain::Outgoing>,
    )>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Where the source loop is.
enum Step {
    Read,
    Stop(StopCause),
}

impl Pipeline {
    /// A builder.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    pub(crate) fn new(
        settings: Settings,
        source: Box<dyn Source>,
        segments: Vec<Segment>,
        sink: Box<dyn Sink>,
        dead_letter: Box<dyn Sink>,
    ) -> Pipeline {
        // Unbounded in batches, bounded by the budget: every event in it is in
        // flight. A channel of a few batches made workers wait on each flush,
        // so a sink whose flush is a network round trip (Kafka's delivery
        // reports) was flushed every ~125 events; B7 went from 62 k to 100 k
        // events/s when the batches could pile up during a flush.
        let (sink_tx, sink_rx) = unbounded();
        let flow = Arc::new(Flow::new(
            settings.budget.max_per_partition,
            settings.drain_timeout,
        ));
        let dispatch = Dispatch::new(&settings);
        let chain = Arc::new(Chain {
            segments,
            sink: sink_tx,
            retry: settings.stage_retry,
            lanes: LaneGate::new(dispatch.lanes()),
            flow: Arc::clone(&flow),
            clock: quanta::Clock::new(),
        });
        let metrics = Arc::new(RunMetrics::default());
        let sink_loop = SinkLoop::new(
            sink,
            dead_letter,
            Arc::clone(&flow),
            settings.sink_retry,
            settings.flush_interval,
            Arc::clone(&metrics),
        );
        Pipeline {
            dispatch,
            live: Arc::new(Live {
                chain: Arc::clone(&chain),
                metrics: Arc::clone(&metrics),
                budget: settings.budget,
                started: Instant::now(),
            }),
            metrics,
            settings,
            source,
            chain,
            flow,
            sink_thread: None,
            sink_parts: Some((sink_loop, sink_rx)),
        }
    }

    /// A handle to stop the run from another thread (a signal handler) and
    /// to read its counters.
    pub fn handle(&self) -> PipelineHandle {
        PipelineHandle {
            flow: Arc::clone(&self.flow),
            shared: Arc::clone(&self.live),
        }
    }

    /// Runs until the source ends, a shutdown is requested through a
    /// [`PipelineHandle`], or a failure stops reading; then drains, commits
    /// what is done and reports. Blocks the calling thread, which reads the
    /// source.
    pub fn run(mut self) -> Report {
        let started = Instant::now();
        let (sink_loop, sink_rx) = self.sink_parts.take().expect("run is called once");
        let (stop_tx, stop_rx) = bounded(1);
        let sink_thread = thread::Builder::new()
            .name("crew-sink".to_owned())
            .spawn(move || sink_loop.run(sink_rx, stop_rx))
            .expect("spawning the sink thread");
        self.sink_thread = Some((sink_thread, stop_tx));

        self.source.attach(PartitionHandoff::new(
            Arc::clone(&self.flow),
            Arc::clone(&self.chain),
        ));
        let mut last_commit = Instant::now();
        let mut commit_error = None;
        let stopped_by = match self.connect() {
            Err(cause) => cause,
            Ok(()) => loop {
                match self.read_once() {
                    Step::Read => {}
                    Step::Stop(cause) => break cause,
                }
                if last_commit.elapsed() >= self.settings.commit_interval {
                    last_commit = Instant::now();
                    commit_error = self.commit();
                }
            },
        };
        self.flow.lock().draining = true;
        self.drain(&mut last_commit, &mut commit_error);

        let mut state = self.flow.lock();
        state.frozen = true;
        let report = report_of(&state, stopped_by, started);
        drop(state);
        // Commits that failed earlier were retracted and are retried here, so
        // this last result is the one that counts.
        let commit_error = self.commit();
        self.stop_workers(report.abandoned == 0);
        let mut committed: Vec<_> = self
            .flow
            .lock()
            .marks
            .committed()
            .iter()
            .map(|(p, o)| (*p, *o))
            .collect();
        committed.sort_unstable();
        self.flow.lock().finished = true;
        Report {
            committed,
            commit_error,
            event_latency: self.metrics.event_latency.snapshot(),
            ..report
        }
    }

    /// Connects the source, retrying retriable errors (with the sink retry
    /// policy's backoff) until a stop is asked for; marks the pipeline
    /// connected. A stop during the retries ends the run as requested, not
    /// as a failure.
    fn connect(&mut self) -> Result<(), StopCause> {
        let retry = self.settings.sink_retry;
        let mut attempts = 0u32;
        loop {
            if let Some(cause) = stop_cause(&self.flow.lock()) {
                return Err(cause);
            }
            attempts += 1;
            match self.source.connect() {
                Ok(()) => {
                    self.flow.lock().connected = true;
                    return Ok(());
                }
                Err(error) if error.retriable => {
                    tracing::warn!(%error, attempts, "the source could not connect; retrying");
                    // Retries go on until a shutdown: a broker that is down
                    // at start is not a reason to exit under a supervisor.
                    let state = self.flow.lock();
                    if stop_cause(&state).is_none() {
                        let wake = far_or(Instant::now(), retry.backoff(attempts));
                        drop(self.flow.wait(state, Some(wake)));
                    }
                }
                Err(error) => {
                    let message = format!("the source could not connect: {error}");
                    self.flow.fail(message.clone());
                    return Err(StopCause::Failed(message));
                }
            }
        }
    }

    /// Submits the batches of ordered lanes that freed up.
    fn pump_lanes(&self) {
        if self.flow.take_lanes_ready() && !Dispatch::pump(&self.chain) {
            self.dispatch_refused();
        }
    }

    /// A batch could not be handed to the pools. Past the drain deadline
    /// that is the hard stop working (its events are abandoned); otherwise
    /// a pool closed under a running pipeline, which is a failure.
    fn dispatch_refused(&self) {
        if !self.flow.past_deadline() {
            self.flow
                .fail("the stage pool closed while events were dispatched".to_owned());
        }
    }

    /// Waits for budget, reads one batch, registers and dispatches it.
    fn read_once(&mut self) -> Step {
        self.pump_lanes();
        let budget = self.settings.budget;
        let batch_limits = self.settings.batch;
        let (max_events, max_bytes) = {
            let state = self.flow.lock();
            if let Some(cause) = stop_cause(&state) {
                return Step::Stop(cause);
            }
            let events_left = budget
                .max_events
                .saturating_sub(state.in_flight_events + state.uncommitted);
            let bytes_left = budget.max_bytes.saturating_sub(state.in_flight_bytes);
            if events_left == 0 && state.uncommitted > 0 {
                // Finished events fill the budget: commit them now rather
                // than at the interval, which frees their share of it.
                // A failed commit is counted, taken back and retried by the
                // next one; the run reports the final commit's result.
                drop(state);
                let _ = self.commit();
                return Step::Read;
            }
            if events_left == 0 || bytes_left == 0 {
                // The budget is used up: an ack will free some and wake us.
                // Return after one wait either way, so commits go on while
                // the sink is slow.
                drop(self.flow.wait(
                    state,
                    Some(far_or(Instant::now(), self.settings.commit_interval)),
                ));
                if let Err(error) = self.source.idle() {
                    if !error.retriable {
                        let message = format!("the source failed: {error}");
                        self.flow.fail(message.clone());
                        return Step::Stop(StopCause::Failed(message));
                    }
                    tracing::warn!(%error, "the source failed while the budget was full");
                }
                return Step::Read;
            }
            (
                events_left.min(batch_limits.max_events),
                bytes_left.min(batch_limits.max_bytes),
            )
        };
        let flow = Arc::clone(&self.flow);
        let mut batch = ReadBatch::new(
            max_events,
            max_bytes,
            far_or(Instant::now(), batch_limits.linger),
            Box::new(move |partition| flow.lock().marks.room(partition)),
        );
        let status = match self.read_with_retry(&mut batch) {
            Ok(status) => status,
            Err(message) => {
                self.flow.fail(message.clone());
                self.register_and_dispatch(batch);
                return Step::Stop(StopCause::Failed(message));
            }
        };
        let read_any = !batch.is_empty();
        self.register_and_dispatch(batch);
        match status {
            ReadStatus::End => Step::Stop(StopCause::SourceEnded),
            ReadStatus::Blocked if !read_any => {
                // Wait for an ack to free partition room.
                let state = self.flow.lock();
                if stop_cause(&state).is_none() {
                    drop(self.flow.wait(
                        state,
                        Some(far_or(Instant::now(), self.settings.commit_interval)),
                    ));
                }
                Step::Read
            }
            _ => Step::Read,
        }
    }

    fn read_with_retry(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, String> {
        let retry = self.settings.sink_retry;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.source.read(batch) {
                Ok(status) => return Ok(status),
                Err(error) if error.retriable && retry.allows_retry(attempts) => {
                    tracing::warn!(error = %error, attempts, "source read failed; retrying");
                    let state = self.flow.lock();
                    if stop_cause(&state).is_some() {
                        return Err(format!("the source failed: {error}"));
                    }
                    drop(
                        self.flow
                            .wait(state, Some(far_or(Instant::now(), retry.backoff(attempts)))),
                    );
                }
                Err(error) => {
                    return Err(format!(
                        "the source failed after {attempts} attempts: {error}"
                    ))
                }
            }
        }
    }

    fn register_and_dispatch(&mut self, batch: ReadBatch) {
        if batch.events.is_empty() {
            return;
        }
        let read_at = Instant::now();
        let mut events = batch.events;
        {
            let mut state = self.flow.lock();
            let mut refused = None;
            events.retain_mut(|event| {
                let origin = event.origin();
                match state.marks.register(origin.partition, origin.offset) {
                    Ok(ticket) => {
                        event.ticket = ticket;
                        true
                    }
                    Err(error) => {
                        refused.get_or_insert(format!(
                            "the source broke its contract at partition {} offset {}: {error}",
                            origin.partition, origin.offset
                        ));
                        false
                    }
                }
            });
            state.read += events.len() as u64;
            state.in_flight_events += events.len();
            state.in_flight_bytes += events.iter().map(|e| e.budget_bytes()).sum::<usize>();
            if let Some(message) = refused {
                state.failure.get_or_insert(message);
            }
        }
        if !self.dispatch.dispatch(&self.chain, events, read_at) {
            self.dispatch_refused();
        }
    }

    /// Waits until nothing is in flight, a failure, or the drain deadline.
    fn drain(&mut self, last_commit: &mut Instant, commit_error: &mut Option<String>) {
        // A requested stop's deadline counts from the request (reading may
        // have been blocked a while before it got here); the drain's own from
        // now. Whichever comes first holds: a stop asked for during a drain
        // must not make it longer.
        let drain_deadline = far_or(Instant::now(), self.settings.drain_timeout);
        loop {
            self.pump_lanes();
            let state = self.flow.lock();
            let deadline = self
                .flow
                .drain_deadline(&state)
                .map_or(drain_deadline, |d| d.min(drain_deadline));
            if state.in_flight_events == 0 || state.failure.is_some() || Instant::now() >= deadline
            {
                return;
            }
            let next_commit = far_or(*last_commit, self.settings.commit_interval);
            drop(self.flow.wait(state, Some(deadline.min(next_commit))));
            if last_commit.elapsed() >= self.settings.commit_interval {
                *last_commit = Instant::now();
                if let Some(error) = self.commit() {
                    *commit_error = Some(error);
                }
            }
        }
    }

    /// Commits what moved since the last commit; returns the error if the
    /// source could not.
    fn commit(&mut self) -> Option<String> {
        // Replaced, not merged: a partition the source no longer reads (a
        // rebalance took it) must not keep reporting its old lag.
        let ends = self.source.end_offsets();
        *self
            .metrics
            .end_offsets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = ends.into_iter().collect();
        let commits = {
            let mut state = self.flow.lock();
            state.uncommitted = 0;
            state.marks.take_commits()
        };
        if commits.is_empty() {
            return None;
        }
        match self.source.commit(&commits) {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(%error, "commit failed; will retry with the next commit");
                self.metrics
                    .commit_errors
                    .fetch_add(1, AtomicOrdering::Relaxed);
                // `uncommitted` is not restored: a source that keeps
                // failing would otherwise be asked to commit on every
                // read. While commits fail, duplicates can exceed the
                // budget.
                self.flow.lock().marks.retract(&commits);
                Some(error.to_string())
            }
        }
    }

    /// Stops the pools and the sink thread.
    fn stop_workers(&mut self, drained: bool) {
        for segment in &self.chain.segments {
            if drained {
                segment.pool.shutdown();
            } else {
                segment.pool.shutdown_now();
            }
        }
        if let Some((sink_thread, stop)) = self.sink_thread.take() {
            let _ = stop.send(());
            let (done_tx, done_rx) = bounded::<()>(1);
            // The sink thread may be inside a slow write; give it a grace
            // period, then leave it (its events are already abandoned).
            let waiter = thread::spawn(move || {
                let _ = sink_thread.join();
                let _ = done_tx.send(());
            });
            if done_rx.recv_timeout(SINK_STOP_GRACE).is_ok() {
                let _ = waiter.join();
            } else {
                tracing::warn!("the sink did not stop within {SINK_STOP_GRACE:?}; leaving it");
            }
        }
    }
}

/// `from + after`, or a year from `from` when the sum is past what the clock
/// can hold: a drain timeout of "forever" must not panic.
fn far_or(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .or_else(|| from.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(from)
}

fn stop_cause(state: &FlowState) -> Option<StopCause> {
    if let Some(message) = &state.failure {
        return Some(StopCause::Failed(message.clone()));
    }
    state.stop_requested.then_some(StopCause::Requested)
}

fn report_of(state: &FlowState, stopped_by: StopCause, started: Instant) -> Report {
    let outcomes = &state.outcomes;
    let dropped = outcomes.dropped_total();
    let dead_lettered = outcomes.dead_total();
    // A failure seen during the drain (a dead-letter sink that broke) is the
    // reason the run ended, even if reading had stopped for another reason.
    let stopped_by = match (&state.failure, stopped_by) {
        (Some(message), StopCause::SourceEnded | StopCause::Requested) => {
            StopCause::Failed(message.clone())
        }
        (_, cause) => cause,
    };
    Report {
        read: state.read,
        delivered: outcomes.delivered,
        dropped,
        dropped_by_reason: outcomes.dropped.clone(),
        dead_lettered,
        dead_lettered_by_reason: outcomes.dead_lettered.clone(),
        abandoned: state.read - outcomes.delivered - dropped - dead_lettered,
        committed: Vec::new(),
        stopped_by,
        commit_error: None,
        elapsed: started.elapsed(),
        event_latency: crew::Histogram::default(),
    }
}
