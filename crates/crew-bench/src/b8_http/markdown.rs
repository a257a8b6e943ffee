//! B8's section of the report: the setup, the rows, each round's ratio.

use std::fmt::Write as _;
use std::time::Duration;

use crew_pipeline::concurrency::AdaptiveSettings;
use crew_pipeline::RetryPolicy;

use super::{HttpTable, Row, Run};
use crate::measure::{format_duration, format_rate};
use crate::report::thousands;

/// B8's section of the report.
pub fn write_markdown(s: &mut String, t: &HttpTable) {
    let o = &t.options;
    let _ = writeln!(
        s,
        "## B8: HTTP sink, adaptive concurrency beside fixed limits, {} records\n",
        thousands(o.records)
    );
    if let Some(e) = &t.error {
        let _ = writeln!(s, "**Not measured**: {e}\n");
        return;
    }
    write_setup(s, t);
    write_rows(s, t);
    write_rounds(s, t);
}

/// Mean time a worker held an accepted request, over every run.
fn mean_service(t: &HttpTable) -> Option<Duration> {
    let runs = t.rows.iter().flat_map(|r| r.runs.iter().flatten());
    let (held, requests) = runs.fold((Duration::ZERO, 0u64), |(d, n), r| {
        (d + r.server.service, n + r.server.accepted_requests)
    });
    held.checked_div(u32::try_from(requests).ok().filter(|&n| n > 0)?)
}

fn write_setup(s: &mut String, t: &HttpTable) {
    let o = &t.options;
    let service = match mean_service(t) {
        Some(held) => format!(
            "; measured, a worker held a request {} on average (tokio's timer rounds a sleep up \
             to its 1 ms tick), so the service's real capacity is about {} requests/s = {} \
             records/s",
            format_duration(held),
            per_second(o.workers as f64 / held.as_secs_f64().max(1e-9)),
            per_second(o.workers as f64 * o.batch as f64 / held.as_secs_f64().max(1e-9)),
        ),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "- Service: an axum server on loopback in this process (its own tokio runtime, one \
         thread), {} workers each holding a request {} (a tokio sleep): nominally {} requests/s{service}. \
         Up to {} requests wait for a worker; one more is answered 503 at once.",
        o.workers,
        format_duration(o.service_time),
        per_second(o.nominal_capacity()),
        o.queue_bound,
    );
    let retry = RetryPolicy::default();
    let a = AdaptiveSettings::default();
    let _ = writeln!(
        s,
        "- Sink: a fresh `HttpSink` per run, driven through the `Sink` trait on one thread: \
         batches of {} small NDJSON records (one request each), a flush every {} batches and at \
         the end; a flush that reports failed requests is called again (it re-sends them). The \
         sink's defaults but for the URL and `concurrency`: {} attempts per request with backoff \
         from {}, adaptive from a limit of {} up to at most {}, decrease ×{}, EWMA weight {}, \
         {} deviations.",
        o.batch,
        o.flush_every,
        retry.max_attempts,
        format_duration(retry.initial_backoff),
        a.initial_limit,
        a.max_limit,
        a.decrease_ratio,
        a.ewma_alpha,
        a.rtt_deviation_scale,
    );
    let _ = writeln!(
        s,
        "- {} round{}, each one run of each row, each round starting one row further along. The \
         table shows each row's **{}** run; `÷ best fixed` divides by the fastest fixed row's. \
         Timed from the first write to the end of the last flush.",
        o.repeat,
        if o.repeat == 1 { "" } else { "s" },
        t.statistic.name()
    );
    s.push_str(
        "- Checked in every run: the service answered 2xx to bodies holding every record exactly \
         once (a ledger of record ids), the sink counts them all delivered and refused none.\n\n",
    );
}

/// A per-second figure as a whole number with thousands separators.
fn per_second(x: f64) -> String {
    thousands(x.round() as u64)
}

fn limit_cell(row: Row, run: &Run) -> String {
    match row {
        Row::Fixed(n) => n.to_string(),
        Row::Adaptive => format!(
            "{:.1} ({}–{}) / {}",
            run.limit_mean, run.limit_range.0, run.limit_range.1, run.limit_final
        ),
    }
}

fn write_rows(s: &mut String, t: &HttpTable) {
    let best = t
        .rows
        .iter()
        .filter(|r| matches!(r.row, Row::Fixed(_)))
        .filter_map(|r| r.of_record(t.statistic).map(Run::rate))
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    s.push_str(
        "| concurrency | records/s | min – max | ÷ best fixed | requests/s (all attempts) | attempt \
         p50 | attempt p99 | mean queue wait | peak queued | 503s | retries | in flight (mean) | \
         limit: mean (range) / final | cores busy |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for entry in &t.rows {
        let name = match entry.row {
            Row::Adaptive => format!("**{}**", entry.row.name()),
            Row::Fixed(_) => entry.row.name(),
        };
        if let Some(e) = &entry.error {
            let _ = writeln!(
                s,
                "| {name} | FAILED: {} |{}",
                e.replace('|', "\\|"),
                " |".repeat(12)
            );
            continue;
        }
        let Some(run) = entry.of_record(t.statistic) else {
            let _ = writeln!(s, "| {name} | no run |{}", " |".repeat(12));
            continue;
        };
        let rates: Vec<f64> = entry.runs.iter().flatten().map(Run::rate).collect();
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "| {name} | {} | {} – {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.2} |",
            format_rate(run.rate()),
            format_rate(lo),
            format_rate(hi),
            best.map_or_else(|| "—".into(), |b| format!("{:.2}", run.rate() / b)),
            per_second(run.attempt_rate()),
            format_duration(run.latency_p50),
            format_duration(run.latency_p99),
            format_duration(run.mean_queue_wait()),
            run.server.peak_queued,
            thousands(run.server.shed),
            thousands(run.retries),
            run.in_flight_mean,
            limit_cell(entry.row, run),
            run.cpu.as_secs_f64() / run.elapsed.as_secs_f64().max(1e-9),
        );
    }
    s.push('\n');
    let failed_flushes: Vec<String> = t
        .rows
        .iter()
        .filter_map(|r| {
            let n: u32 = r.runs.iter().flatten().map(|run| run.failed_flushes).sum();
            (n > 0).then(|| format!("{} {n}", r.row.name()))
        })
        .collect();
    if !failed_flushes.is_empty() {
        let _ = writeln!(
            s,
            "Flushes that found requests still failing after their attempts (and sent them \
             again), over all rounds: {}.\n",
            failed_flushes.join(", ")
        );
    }
    if let Some(run) = t.row(Row::Adaptive).and_then(|r| r.of_record(t.statistic)) {
        let _ = writeln!(
            s,
            "In adaptive's run of record the controller raised the limit {} times and lowered it \
             {} times.\n",
            thousands(run.increases),
            thousands(run.decreases)
        );
    }
    let _ = writeln!(
        s,
        "Attempt times are the sink's own histogram (`HttpSinkStats::latency`, a bucket's upper \
         bound), from sending to the answer, 503s included (they are answered at once, so they \
         pull the median down). Queue wait and peak queued are the service's, for accepted \
         requests. In flight and the limit are a sampler thread's readings every {}; cores busy \
         is this process's CPU (driver, sink, service) over the wall time.\n",
        format_duration(t.options.sample_every)
    );
}

fn write_rounds(s: &mut String, t: &HttpTable) {
    let rounds = t.rounds();
    if rounds == 0 {
        return;
    }
    let heads: Vec<String> = t.rows.iter().map(|r| r.row.name()).collect();
    let _ = writeln!(
        s,
        "| round | {} | best fixed | adaptive ÷ best fixed |\n|---|{}---|---|",
        heads.join(" | "),
        "---|".repeat(heads.len())
    );
    for i in 0..rounds {
        let cells: Vec<String> = t
            .rows
            .iter()
            .map(|r| {
                r.runs
                    .get(i)
                    .and_then(Option::as_ref)
                    .map_or_else(|| "—".into(), |run| format_rate(run.rate()))
            })
            .collect();
        let best = t
            .best_fixed(i)
            .map_or_else(|| "—".into(), |(row, _)| row.name());
        let ratio = t.ratio(i).map_or_else(|| "—".into(), |r| format!("{r:.2}"));
        let _ = writeln!(
            s,
            "| {} | {} | {best} | {ratio} |",
            i + 1,
            cells.join(" | ")
        );
    }
    s.push('\n');
    if let Some(r) = t.median_ratio() {
        let _ = writeln!(
            s,
            "adaptive ÷ the round's fastest fixed limit, median over {rounds} round{}: **{r:.2}**.\n",
            if rounds == 1 { "" } else { "s" }
        );
    }
}
