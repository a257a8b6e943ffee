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
//!   `FAST_GROUP`, crew's defaults) → the four
//!   [`pixels::stages`](crew_pipeline::pixels::stages) (B4's) on a crew pool
//!   → `KafkaSink` to a fresh output topic, dead letters to a
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

mod bare;
mod broker;
mod check;
mod cpu;
mod crew_row;
mod markdown;
mod produce;

use std::collections::BTreeMap;
use std::time::Duration;

use crew_pipeline::Ordering;
use crew_testbroker::Broker;

use crate::measure::{self, format_rate, Progress, Statistic};
use crate::report::{TargetCheck, Verdict};
use crate::{SuiteOptions, Workload};

use bare::run_bare;
use broker::{quietly, tansu_binary};
use cpu::broker_pid;
use crew_row::{crew_round, SinkKind};
pub use markdown::write_markdown;
use produce::produce;
pub use produce::KafkaInput;

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
        statistic.pick(&self.runs, |r| r.elapsed)
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

#[cfg(test)]
mod tests {
    use super::*;

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
