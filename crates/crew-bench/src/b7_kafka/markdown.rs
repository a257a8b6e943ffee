//! B7's section of the report: the setup, the rates, the counts and where
//! crew's time went.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::{
    CrewRun, KafkaInput, KafkaOptions, KafkaTable, Row, Run, GOAL_RATIO, OVERSIZE_BYTES, SEED,
};
use crate::measure::{self, format_duration, format_rate};
use crate::report::thousands;

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
         were running jobs {:.0}% of the time (jobs waited {} in the pool's queue on average); \
         this process used {:.2} cores, the broker {}; the source paused a partition {} times; \
         the output sink's delivery latency {delivery}; read → acked p50 {}, p99 {}.\n",
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
         the rest of a job is encoding its output and handing it to the sink thread.\n",
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
