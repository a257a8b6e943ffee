//! The crew rows: one pipeline run per round, to Kafka or to blackholes,
//! timed by a watcher thread that polls the pipeline's snapshot.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crew_pipeline::sinks::{Blackhole, KafkaSink, KafkaSinkConfig};
use crew_pipeline::sources::{KafkaSource, KafkaSourceConfig};
use crew_pipeline::{
    pixels, Batching, Pipeline, PipelineBuilder, PipelineHandle, Settings, Snapshot,
};
use crew_testbroker::FAST_GROUP;

use super::broker::quietly;
use super::check::check;
use super::cpu::CpuSample;
use super::{Context, CrewRun, KafkaOptions, Run, StageTime, INPUT_TOPIC};
use crate::measure;

/// Where crew's delivered events and dead letters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SinkKind {
    Kafka,
    Blackhole,
}

/// One crew run with its fresh topics, then the checks of its counts
/// against the topics and the generator.
pub(super) fn crew_round(c: &Context<'_>, round: usize, kind: SinkKind) -> Result<Run, String> {
    let topics = match kind {
        SinkKind::Kafka => {
            let (out, dead) = (format!("b7-out-{round}"), format!("b7-dead-{round}"));
            for topic in [&out, &dead] {
                quietly(|| c.broker.create_topic(topic, c.options.partitions))
                    .map_err(|e| format!("creating {topic}: {e}"))?;
            }
            Some((out, dead))
        }
        SinkKind::Blackhole => None,
    };
    let spec = CrewSpec {
        bootstrap: c.broker.bootstrap(),
        topics: topics.clone(),
        group: format!(
            "b7-{}-{round}",
            if topics.is_some() {
                "crew"
            } else {
                "blackhole"
            }
        ),
        options: c.options.clone(),
        expected: c.input.events,
        timeout: c.timeout,
        broker_pid: c.broker_pid,
    };
    let mut run = measure::isolated(c.timeout + Duration::from_secs(10), move || run_crew(&spec))?;
    let detail = run.crew.as_mut().ok_or("no crew figures")?;
    if let Some((out, dead)) = &topics {
        let output =
            quietly(|| c.broker.read_topic(out)).map_err(|e| format!("reading {out}: {e}"))?;
        detail.output_records = Some(output.len() as u64);
        detail.output_ids = Some(
            output
                .iter()
                .filter_map(|m| {
                    let id = sonic_rs::get_from_slice(&m.payload, ["event_id"]).ok()?;
                    Some(id.as_raw_str().to_owned())
                })
                .collect::<HashSet<String>>()
                .len() as u64,
        );
        drop(output);
        detail.dead_records = Some(
            quietly(|| c.broker.read_topic(dead).len() as u64)
                .map_err(|e| format!("reading {dead}: {e}"))?,
        );
    }
    check(detail, c.input)?;
    Ok(run)
}

/// What one crew run needs (owned: it runs on a thread of its own).
struct CrewSpec {
    bootstrap: String,
    /// Output and dead-letter topics; `None` for the blackhole row.
    topics: Option<(String, String)>,
    group: String,
    options: KafkaOptions,
    expected: u64,
    timeout: Duration,
    broker_pid: Option<i32>,
}

fn sink_config(spec: &CrewSpec, topic: &str) -> KafkaSinkConfig {
    KafkaSinkConfig {
        brokers: spec.bootstrap.clone(),
        topic: topic.to_owned(),
        topic_field: None,
        delivery_attempts: 5,
        flush_timeout: Duration::from_secs(60),
        options: spec.options.sink_options.clone(),
    }
}

/// One crew run: builds the pipeline, runs it until the watcher has seen
/// every event done, and returns its figures (the topics are checked by the
/// caller).
fn run_crew(spec: &CrewSpec) -> Result<Run, String> {
    let o = &spec.options;
    let mut source_options: BTreeMap<String, String> = FAST_GROUP
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    source_options.extend(o.source_options.clone());
    let source = KafkaSource::new(KafkaSourceConfig {
        brokers: spec.bootstrap.clone(),
        topic: INPUT_TOPIC.to_owned(),
        group: spec.group.clone(),
        revoke_timeout: Duration::from_secs(10),
        options: source_options,
    })
    .map_err(|e| format!("the Kafka source: {e}"))?;
    let source_stats = source.stats();
    let settings = Settings {
        workers: o.workers,
        ordering: o.ordering,
        batch: Batching {
            max_events: o.batch,
            ..Batching::default()
        },
        ..Settings::default()
    };
    let mut builder: PipelineBuilder = Pipeline::builder().settings(settings).source(source);
    for (name, stage) in pixels::stages() {
        builder = builder.arc_stage(name, stage, None);
    }
    let (builder, sink_stats) = match &spec.topics {
        Some((out, dead)) => {
            let sink = KafkaSink::new(sink_config(spec, out))
                .map_err(|e| format!("the Kafka sink: {e}"))?;
            let stats = sink.stats();
            let dead_letter = KafkaSink::new(sink_config(spec, dead))
                .map_err(|e| format!("the dead-letter sink: {e}"))?;
            (builder.sink(sink).dead_letter(dead_letter), Some(stats))
        }
        None => (
            builder
                .sink(Blackhole::default())
                .dead_letter(Blackhole::default()),
            None,
        ),
    };
    let pipeline = builder.build().map_err(|e| e.to_string())?;
    let handle = pipeline.handle();
    let ended = Arc::new(AtomicBool::new(false));
    let watcher = {
        let ended = Arc::clone(&ended);
        let (expected, deadline, pid) = (
            spec.expected,
            Instant::now() + spec.timeout,
            spec.broker_pid,
        );
        thread::Builder::new()
            .name("crew-bench-b7-watch".into())
            .spawn(move || watch(&handle, expected, deadline, &ended, pid))
            .map_err(|e| format!("spawning the watcher: {e}"))?
    };
    let started = Instant::now();
    let report = {
        // Tells the watcher the run is over however it ends (a panic too),
        // so it never outlives the pipeline waiting for events.
        let _ended = SetOnDrop(Arc::clone(&ended));
        pipeline.run()
    };
    let seen = watcher
        .join()
        .map_err(|_| "the watcher thread panicked".to_owned())?;
    if !report.is_clean() {
        return Err(format!(
            "the run was not clean: stopped by {:?}, {} abandoned, commit error {:?}",
            report.stopped_by, report.abandoned, report.commit_error
        ));
    }
    let (Some((first, first_cpu)), Some((done, done_cpu, snapshot))) = (seen.first, seen.done)
    else {
        return Err(format!(
            "the run ended before every event was done: read {}, delivered {}, dropped {}, \
             dead-lettered {} of {}",
            report.read, report.delivered, report.dropped, report.dead_lettered, spec.expected
        ));
    };
    let stage_pool = snapshot.pools.first().map(|(_, s)| s);
    let detail = CrewRun {
        read: report.read,
        delivered: report.delivered,
        dropped: report.dropped_by_reason.clone(),
        dead_lettered: report.dead_lettered_by_reason.clone(),
        committed: report
            .committed
            .iter()
            .map(|&(p, o)| (p as i32, o as i64))
            .collect(),
        stages: snapshot
            .stages
            .iter()
            .map(|s| StageTime {
                name: s.name.clone(),
                processed: s.processed,
                total: s.duration.sum(),
            })
            .collect(),
        pool_busy: stage_pool.map_or(Duration::ZERO, |s| s.run_time.sum()),
        pool_queue_wait: stage_pool.map_or(Duration::ZERO, |s| s.queue_wait.mean()),
        delivery_latency: sink_stats.map(|s| {
            let h = s.delivery_latency();
            (h.p50(), h.p99())
        }),
        event_latency: (report.event_latency.p50(), report.event_latency.p99()),
        pauses: source_stats.pauses(),
        ..CrewRun::default()
    };
    Ok(Run {
        join: first.saturating_duration_since(started),
        elapsed: done.saturating_duration_since(first),
        events: report.read,
        cpu: done_cpu.since(&first_cpu),
        crew: Some(Box::new(detail)),
    })
}

/// Sets the flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, AtomicOrdering::SeqCst);
    }
}

/// What the watcher saw: when the first event was read, and when every
/// event was done (with the snapshot of that moment).
struct Seen {
    first: Option<(Instant, CpuSample)>,
    done: Option<(Instant, CpuSample, Box<Snapshot>)>,
}

/// Polls the pipeline's snapshot until every expected event is done, then
/// asks for a shutdown. Gives up when the run ends by itself (a failure) or
/// at the deadline (then stops it at once).
fn watch(
    handle: &PipelineHandle,
    expected: u64,
    deadline: Instant,
    ended: &AtomicBool,
    broker_pid: Option<i32>,
) -> Seen {
    let mut seen = Seen {
        first: None,
        done: None,
    };
    loop {
        let snapshot = handle.snapshot();
        let now = Instant::now();
        if seen.first.is_none() && snapshot.read > 0 {
            seen.first = Some((now, CpuSample::take(broker_pid)));
        }
        let finished = snapshot.delivered
            + snapshot.dropped_by_reason.values().sum::<u64>()
            + snapshot.dead_lettered_by_reason.values().sum::<u64>();
        // Finished counts every event done, re-reads too: a run that read
        // some twice stops early here, and its check then fails it.
        if finished >= expected {
            seen.done = Some((now, CpuSample::take(broker_pid), Box::new(snapshot)));
            handle.shutdown();
            return seen;
        }
        if ended.load(AtomicOrdering::SeqCst) {
            return seen;
        }
        if now >= deadline {
            handle.shutdown_now();
            return seen;
        }
        // A poll of counters, not a synchronization: finer before the first
        // read, whose moment starts the clock.
        thread::sleep(if seen.first.is_none() {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(2)
        });
    }
}
