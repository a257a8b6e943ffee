//! The summary `crew run` prints when a run ends.

use std::fmt;
use std::time::Duration;

use crew_bench::report::thousands as grouped;
use crew_pipeline::{Report, StopCause};

/// A finished run, as a person reads it.
pub struct Summary<'a> {
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The run's report.
    pub report: &'a Report,
    /// Where the output and the dead letters went.
    pub outputs: &'a [(&'static str, String)],
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.report;
        let why = match &r.stopped_by {
            StopCause::SourceEnded => "the source ended".to_owned(),
            StopCause::Requested => "a shutdown was requested".to_owned(),
            StopCause::Failed(message) => format!("it failed: {message}"),
        };
        writeln!(
            f,
            "\npipeline `{}` stopped after {:.2} s: {why}",
            self.pipeline,
            r.elapsed.as_secs_f64()
        )?;
        let output_of = |role: &str| {
            self.outputs
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, place)| format!("  → {place}"))
                .unwrap_or_default()
        };
        row(f, "read", r.read, "")?;
        row(f, "delivered", r.delivered, &output_of("output"))?;
        row(f, "dropped", r.dropped, "")?;
        for (reason, n) in &r.dropped_by_reason {
            row(f, &format!("  {reason}"), *n, "")?;
        }
        row(
            f,
            "dead-lettered",
            r.dead_lettered,
            &output_of("dead letters"),
        )?;
        for (reason, n) in &r.dead_lettered_by_reason {
            row(f, &format!("  {reason}"), *n, "")?;
        }
        let abandoned_note = if r.abandoned > 0 {
            "  not committed: the next run reads them again"
        } else {
            ""
        };
        row(f, "abandoned", r.abandoned, abandoned_note)?;
        let seconds = r.elapsed.as_secs_f64();
        if seconds > 0.0 {
            writeln!(
                f,
                "  {:<16}{:>12} events/s",
                "throughput",
                grouped((r.read as f64 / seconds) as u64)
            )?;
        }
        if r.event_latency.count() > 0 {
            writeln!(
                f,
                "  {:<16}{:>12}   p50 {}, max {} (read → acked)",
                "latency p99",
                millis(r.event_latency.p99()),
                millis(r.event_latency.p50()),
                millis(r.event_latency.max()),
            )?;
        }
        let partitions = r.committed.len();
        writeln!(
            f,
            "  {:<16}{:>12} {}",
            "committed",
            partitions,
            if partitions == 1 {
                "partition"
            } else {
                "partitions"
            }
        )?;
        if let Some(error) = &r.commit_error {
            writeln!(f, "  the last commit failed: {error}")?;
        }
        Ok(())
    }
}

fn row(f: &mut fmt::Formatter<'_>, label: &str, n: u64, note: &str) -> fmt::Result {
    writeln!(f, "  {label:<16}{:>12}{note}", grouped(n))
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}
