//! The runtime: builds the pools, runs the source loop on the caller's thread
//! and the sink loop on its own, and shuts down.

mod chain;
mod dispatch;
mod flow;
mod handoff;
mod lane_gate;
mod report;
mod sink_loop;
mod source_loop;

use std::sync::Arc;

use crew::Pool;

use crate::settings::Settings;
use crate::sink::Sink;
use crate::source::Source;
use crate::stage::Stage;

pub use flow::{Phase, StopCause};
pub use handoff::{PartitionHandoff, Released};
pub use report::{Report, Snapshot, StageSnapshot};

use chain::{NamedStage, Segment, StageCounters};

/// Stack of each stage worker thread.
const STAGE_STACK_BYTES: usize = 16 << 20;

/// What [`PipelineBuilder::build`] can refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// No source was given.
    #[error("the pipeline has no source")]
    MissingSource,
    /// No sink was given.
    #[error("the pipeline has no sink")]
    MissingSink,
    /// No dead-letter sink was given; the pipeline never drops a failed event
    /// silently, so it needs one.
    #[error("the pipeline has no dead-letter sink")]
    MissingDeadLetter,
    /// A pool would have no workers.
    #[error("`{0}` has 0 workers")]
    NoWorkers(String),
    /// A limit is 0.
    #[error("`{0}` must be at least 1")]
    ZeroLimit(&'static str),
    /// A pool would have more workers than [`MAX_WORKERS`].
    #[error("`{0}` has {1} workers; at most {MAX_WORKERS} are allowed")]
    TooManyWorkers(String, usize),
    /// More ordered lanes than [`MAX_LANES`].
    #[error("`lanes` is {0}; at most {MAX_LANES} are allowed")]
    TooManyLanes(usize),
}

/// The most ordered lanes a pipeline may have (each is a slot in the lane
/// gate, allocated up front).
pub const MAX_LANES: usize = 65_536;

/// The most workers one pool of a pipeline may have: far beyond what a
/// machine runs usefully, low enough that the queues sized from it cannot
/// overflow.
pub const MAX_WORKERS: usize = 4096;

/// A stage as declared: a name, the stage, and its own worker count if it
/// starts a new pool.
struct StageDecl {
    name: String,
    stage: Arc<dyn Stage>,
    own_workers: Option<usize>,
}

/// Wires a source, stages and sinks into a [`Pipeline`].
///
/// ```
/// use crew_pipeline::sinks::Blackhole;
/// use crew_pipeline::sources::{Generator, GeneratorConfig};
/// use crew_pipeline::transforms::ParseJson;
/// use crew_pipeline::{Pipeline, Settings};
///
/// let source = Generator::new(GeneratorConfig { count: Some(1_000), ..Default::default() }).unwrap();
/// let pipeline = Pipeline::builder()
///     .settings(Settings { workers: 2, ..Settings::default() })
///     .source(source)
///     .stage("parse", ParseJson::default())
///     .sink(Blackhole::default())
///     .dead_letter(Blackhole::default())
///     .build()
///     .unwrap();
/// let report = pipeline.run();
/// assert_eq!(report.read, 1_000);
/// assert_eq!(report.delivered, 1_000);
/// ```
#[derive(Default)]
pub struct PipelineBuilder {
    settings: Settings,
    source: Option<Box<dyn Source>>,
    stages: Vec<StageDecl>,
    sink: Option<Box<dyn Sink>>,
    dead_letter: Option<Box<dyn Sink>>,
}

impl PipelineBuilder {
    /// Sets the runtime settings (workers, ordering, batching, budget, ...).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Sets the source.
    pub fn source(mut self, source: impl Source + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Sets the source, boxed.
    pub fn boxed_source(mut self, source: Box<dyn Source>) -> Self {
        self.source = Some(source);
        self
    }

    /// Appends a stage that runs on the current pool, in the same job as the
    /// stages before it.
    pub fn stage(self, name: impl Into<String>, stage: impl Stage) -> Self {
        self.arc_stage(name, Arc::new(stage), None)
    }

    /// Appends a stage that starts its own pool of `workers`: it and the
    /// stages after it (up to the next such stage) run there, so that part
    /// of the pipeline scales on its own.
    pub fn stage_with_workers(
        self,
        name: impl Into<String>,
        stage: impl Stage,
        workers: usize,
    ) -> Self {
        self.arc_stage(name, Arc::new(stage), Some(workers))
    }

    /// Appends a shared stage; `own_workers` as in
    /// [`stage_with_workers`](Self::stage_with_workers).
    pub fn arc_stage(
        mut self,
        name: impl Into<String>,
        stage: Arc<dyn Stage>,
        own_workers: Option<usize>,
    ) -> Self {
        self.stages.push(StageDecl {
            name: name.into(),
            stage,
            own_workers,
        });
        self
    }

    /// Sets the sink.
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// Sets the sink, boxed.
    pub fn boxed_sink(mut self, sink: Box<dyn Sink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Sets the dead-letter sink: failed events go there as JSON records.
    pub fn dead_letter(mut self, sink: impl Sink + 'static) -> Self {
        self.dead_letter = Some(Box::new(sink));
        self
    }

    /// Sets the dead-letter sink, boxed.
    pub fn boxed_dead_letter(mut self, sink: Box<dyn Sink>) -> Self {
        self.dead_letter = Some(sink);
        self
    }

    /// Checks the wiring and starts the pools.
    pub fn build(self) -> Result<Pipeline, BuildError> {
        let settings = self.settings;
        let source = self.source.ok_or(BuildError::MissingSource)?;
        let sink = self.sink.ok_or(BuildError::MissingSink)?;
        let dead_letter = self.dead_letter.ok_or(BuildError::MissingDeadLetter)?;
        if settings.workers == 0 {
            return Err(BuildError::NoWorkers("workers".to_owned()));
        }
        if let Some(lanes) = settings.lanes.filter(|lanes| *lanes > MAX_LANES) {
            return Err(BuildError::TooManyLanes(lanes));
        }
        if settings.workers > MAX_WORKERS {
            return Err(BuildError::TooManyWorkers(
                "workers".to_owned(),
                settings.workers,
            ));
        }
        for (value, name) in [
            (settings.batch.max_events, "batch.max_events"),
            (settings.batch.max_bytes, "batch.max_bytes"),
            (settings.budget.max_events, "budget.max_events"),
            (settings.budget.max_bytes, "budget.max_bytes"),
            (
                settings.budget.max_per_partition,
                "budget.max_per_partition",
            ),
            (settings.lanes.unwrap_or(1), "lanes"),
        ] {
            if value == 0 {
                return Err(BuildError::ZeroLimit(name));
            }
        }
        let mut segments: Vec<(Vec<NamedStage>, usize, String)> =
            vec![(Vec::new(), settings.workers, "crew-stages".to_owned())];
        for decl in self.stages {
            if let Some(workers) = decl.own_workers {
                if workers == 0 {
                    return Err(BuildError::NoWorkers(decl.name));
                }
                if workers > MAX_WORKERS {
                    return Err(BuildError::TooManyWorkers(decl.name, workers));
                }
                segments.push((Vec::new(), workers, format!("crew-{}", decl.name)));
            }
            let last = segments
                .last_mut()
                .expect("there is always a first segment");
            last.0.push(NamedStage {
                name: decl.name.into(),
                stage: decl.stage,
                counters: StageCounters::default(),
            });
        }
        // A first segment left empty by a first stage with its own workers
        // would only add a hand-off.
        if segments.len() > 1 && segments[0].0.is_empty() {
            segments.remove(0);
        }
        let segments = segments
            .into_iter()
            .map(|(stages, workers, thread_name)| Segment {
                stages,
                pool: Pool::builder()
                    .workers(workers)
                    .queue_capacity(workers * 2)
                    .thread_name(thread_name)
                    // Parsing recurses per nesting level; ParseJson caps the
                    // depth, and this stack holds that cap even in a debug
                    // build. Untouched stack pages cost no memory.
                    .stack_size(STAGE_STACK_BYTES)
                    .build(),
            })
            .collect();
        Ok(Pipeline::new(settings, source, segments, sink, dead_letter))
    }
}

pub use source_loop::Pipeline;

/// Stops a running [`Pipeline`] from another thread, and reads its progress.
#[derive(Clone)]
pub struct PipelineHandle {
    flow: Arc<flow::Flow>,
    shared: Arc<report::Live>,
}

impl PipelineHandle {
    /// Stops reading; in-flight events drain until the settings'
    /// `drain_timeout`, then the run returns its [`Report`].
    pub fn shutdown(&self) {
        self.flow.request_stop();
    }

    /// Stops reading and abandons what is in flight at once; finished events
    /// are still committed.
    pub fn shutdown_now(&self) {
        self.flow.request_stop_now();
    }

    /// Counters and gauges of the run so far.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot(&self.flow)
    }

    /// Where the run is: cheaper than a snapshot, for readiness probes.
    pub fn phase(&self) -> Phase {
        self.flow.lock().phase()
    }
}

impl std::fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineHandle").finish_non_exhaustive()
    }
}
