//! What exporters read: the run's phase (for readiness), the source's
//! connect step, per-stage call times, read-to-ack latency, end offsets and
//! lag. Each count is checked against the report, so a histogram that misses
//! or double-counts events fails here.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use common::{check_invariant, lock, run, settings, start, Gate};
use crew_pipeline::pixels::PixelsConfig;
use crew_pipeline::sinks::Blackhole;
use crew_pipeline::sources::{Generator, GeneratorConfig};
use crew_pipeline::{
    Event, Offset, Outcome, Partition, Phase, Pipeline, PipelineHandle, ReadBatch, ReadStatus,
    Source, SourceError, Stage, StageError, StopCause,
};

fn generator(count: u64, malformed: f64) -> Generator {
    Generator::new(GeneratorConfig {
        count: Some(count),
        malformed,
        invalid: malformed,
        partitions: 4,
        ..GeneratorConfig::default()
    })
    .expect("a valid generator config")
}

fn pixels_pipeline(source: impl Source + 'static) -> Pipeline {
    let mut builder = Pipeline::builder()
        .settings(settings(2))
        .source(source)
        .sink(Blackhole::default())
        .dead_letter(Blackhole::default());
    for (name, stage) in PixelsConfig::default()
        .stages()
        .expect("the default pixels config builds")
    {
        builder = builder.arc_stage(name, stage, None);
    }
    builder.build().expect("the pixels pipeline builds")
}

#[test]
fn every_finished_event_has_one_latency_and_one_time_per_stage_it_entered() {
    let pipeline = pixels_pipeline(generator(5_000, 0.05));
    let handle = pipeline.handle();
    let report = run(pipeline);
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert!(
        report.dead_lettered > 0 && report.dropped > 0,
        "{report:#?}"
    );

    // Dropped and dead-lettered events are finished too: each has a latency.
    assert_eq!(report.event_latency.count(), report.read);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.event_latency, report.event_latency);
    assert_eq!(snapshot.phase, Phase::Stopped);

    let mut entering = report.read;
    for stage in &snapshot.stages {
        assert_eq!(stage.processed, entering, "stage {}", stage.name);
        assert_eq!(
            stage.duration.count(),
            stage.processed,
            "stage {}",
            stage.name
        );
        assert_eq!(
            stage.passed,
            stage.processed - stage.dropped - stage.failed,
            "stage {}",
            stage.name
        );
        entering = stage.passed;
    }
    assert_eq!(entering, report.delivered);
}

#[test]
fn a_generator_reports_end_offsets_and_no_lag_once_everything_is_committed() {
    let pipeline = pixels_pipeline(generator(2_000, 0.0));
    let handle = pipeline.handle();
    let report = run(pipeline);
    assert!(report.is_clean(), "{report:#?}");
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.end_offsets.values().sum::<u64>(), 2_000);
    for (partition, end) in &snapshot.end_offsets {
        assert_eq!(snapshot.committed.get(partition), Some(&(end - 1)));
        assert_eq!(snapshot.lag(*partition), Some(0));
    }
    assert_eq!(snapshot.lag(99), None);
}

/// Records the phase the first time it runs, then asks for a shutdown and
/// records the phase again.
#[derive(Clone, Default)]
struct PhaseProbe {
    handle: Arc<OnceLock<PipelineHandle>>,
    seen: Arc<Mutex<Vec<Phase>>>,
}

impl Stage for PhaseProbe {
    fn process(&self, _event: &mut Event) -> Result<Outcome, StageError> {
        let mut seen = lock(&self.seen);
        if seen.is_empty() {
            let handle = self.handle.get().expect("set before the run");
            seen.push(handle.phase());
            handle.shutdown();
            seen.push(handle.phase());
        }
        Ok(Outcome::Keep)
    }
}

/// A source whose `connect` waits for a gate, then fails `failures` times
/// (retriably or not) before it succeeds.
struct SlowToConnect {
    gate: Gate,
    failures: usize,
    retriable: bool,
    connects: Arc<Mutex<usize>>,
    inner: Generator,
}

impl Source for SlowToConnect {
    fn connect(&mut self) -> Result<(), SourceError> {
        self.gate.wait();
        let mut connects = lock(&self.connects);
        *connects += 1;
        if *connects <= self.failures {
            let message = format!("connect attempt {} refused", *connects);
            return Err(if self.retriable {
                SourceError::retriable(message)
            } else {
                SourceError::fatal(message)
            });
        }
        Ok(())
    }

    fn read(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, SourceError> {
        self.inner.read(batch)
    }

    fn commit(&mut self, done_through: &[(Partition, Offset)]) -> Result<(), SourceError> {
        self.inner.commit(done_through)
    }
}

#[test]
fn the_phase_goes_starting_running_draining_stopped() {
    let gate = Gate::new();
    let _open = gate.open_on_drop();
    let connects = Arc::new(Mutex::new(0));
    let probe = PhaseProbe::default();
    let pipeline = Pipeline::builder()
        .settings(settings(2))
        .source(SlowToConnect {
            gate: gate.clone(),
            failures: 2,
            retriable: true,
            connects: Arc::clone(&connects),
            inner: generator(100_000, 0.0),
        })
        .stage("probe", probe.clone())
        .sink(Blackhole::default())
        .dead_letter(Blackhole::default())
        .build()
        .expect("builds");
    let handle = pipeline.handle();
    probe
        .handle
        .set(handle.clone())
        .unwrap_or_else(|_| unreachable!("set once"));
    assert_eq!(handle.phase(), Phase::Starting);
    let running = start(pipeline);
    // The source cannot connect until the gate opens: still starting.
    assert_eq!(handle.phase(), Phase::Starting);
    gate.open();
    let report = running.wait();

    assert_eq!(
        *lock(&connects),
        3,
        "two refused connects, then one that worked"
    );
    assert_eq!(*lock(&probe.seen), [Phase::Running, Phase::Draining]);
    assert_eq!(report.stopped_by, StopCause::Requested);
    assert_eq!(handle.phase(), Phase::Stopped);
    check_invariant(&report);
}

#[test]
fn a_source_that_cannot_connect_fails_the_run_before_reading() {
    let gate = Gate::new();
    gate.open();
    let pipeline = Pipeline::builder()
        .settings(settings(1))
        .source(SlowToConnect {
            gate,
            failures: 1,
            retriable: false,
            connects: Arc::default(),
            inner: generator(10, 0.0),
        })
        .stage("probe", PhaseProbe::default())
        .sink(Blackhole::default())
        .dead_letter(Blackhole::default())
        .build()
        .expect("builds");
    let report = run(pipeline);
    assert_eq!(report.read, 0);
    match &report.stopped_by {
        StopCause::Failed(message) => {
            assert!(
                message.contains("could not connect") && message.contains("attempt 1 refused"),
                "{message}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_stop_while_the_source_cannot_connect_ends_the_run_as_requested() {
    let gate = Gate::new();
    let _open = gate.open_on_drop();
    let connects = Arc::new(Mutex::new(0));
    let pipeline = Pipeline::builder()
        .settings(settings(1))
        .source(SlowToConnect {
            gate: gate.clone(),
            failures: usize::MAX,
            retriable: true,
            connects: Arc::clone(&connects),
            inner: generator(10, 0.0),
        })
        .stage("probe", PhaseProbe::default())
        .sink(Blackhole::default())
        .dead_letter(Blackhole::default())
        .build()
        .expect("builds");
    let handle = pipeline.handle();
    let running = start(pipeline);
    // Asked while the first connect is still held at the gate: the refusal
    // that follows is retriable, and the run must end as requested.
    handle.shutdown();
    gate.open();
    let report = running.wait();
    assert_eq!(report.stopped_by, StopCause::Requested);
    assert_eq!(report.read, 0);
    assert!(*lock(&connects) <= 1, "no retry after the stop");
}
