//! The report: figures of one run, the targets, and the markdown rendering.

use std::fmt::Write as _;

use crate::b5::MemoryTable;
use crate::machine::Machine;
use crate::measure::{format_rate, Statistic, ThroughputTable};
use crate::peers::Impl;
use crate::{b3, SuiteOptions, Workload};

/// Everything one run of the suite measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options the suite ran with.
    pub options: SuiteOptions,
    /// The machine, toolchain and date.
    pub machine: Machine,
    /// The command line that produced the report, if the caller sets it.
    pub command: Option<String>,
    /// B1, one table per worker count.
    pub b1: Vec<ThroughputTable>,
    /// B2, with the single-thread loop as one of its rows.
    pub b2: Option<ThroughputTable>,
    /// B3.
    pub b3: Option<ThroughputTable>,
    /// B5.
    pub b5: Option<MemoryTable>,
}

/// Whether a target was met.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Met; the text says by how much.
    Met(String),
    /// Missed; the text says by how much.
    Missed(String),
    /// Measured, but this run cannot tell: e.g. the machine itself did not
    /// allow the goal (another process held a core); the text says why.
    Inconclusive(String),
    /// Not measured in this run; the text says why.
    NotMeasured(String),
}

/// One of the targets, checked against this run.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetCheck {
    /// What is measured, e.g. `"B1, 40 workers"`.
    pub name: String,
    /// The goal, e.g. `"crew ≥ 2.5 × threadpool"`.
    pub goal: String,
    /// The measured figure, if any.
    pub measured: Option<String>,
    /// Met or missed, and by how much.
    pub verdict: Verdict,
}

impl Report {
    /// An empty report for `options` on `machine`.
    pub fn new(options: SuiteOptions, machine: Machine) -> Self {
        Report {
            options,
            machine,
            command: None,
            b1: Vec::new(),
            b2: None,
            b3: None,
            b5: None,
        }
    }

    /// The B1 table for `workers` workers, if measured.
    pub fn b1_at(&self, workers: usize) -> Option<&ThroughputTable> {
        self.b1.iter().find(|t| t.workers == workers)
    }

    /// The targets, checked against this run's figures.
    pub fn targets(&self) -> Vec<TargetCheck> {
        vec![
            b1_target(self.b1_at(40), 40, 2.5),
            b1_target(self.b1_at(2), 2, 2.0),
            b2_target(self.b2.as_ref(), 0.95),
            b5_target(self.b5.as_ref(), 64.0),
        ]
    }

    /// Whether any cell failed (hung, panicked or lost jobs).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let tables = self
            .b1
            .iter()
            .chain(self.b2.as_ref())
            .chain(self.b3.as_ref());
        for t in tables {
            for r in &t.rows {
                if let Some(e) = &r.error {
                    out.push(format!(
                        "{} {} ({} workers): {e}",
                        t.workload,
                        r.implementation.name(),
                        t.workers
                    ));
                }
            }
        }
        if let Some(t) = &self.b5 {
            for r in &t.rows {
                if let Some(e) = &r.error {
                    out.push(format!("B5 {}: {e}", r.implementation.name()));
                }
            }
        }
        out
    }

    /// Renders the report as a markdown document.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        self.write_header(&mut s);
        self.write_targets(&mut s);
        for t in &self.b1 {
            let title = format!(
                "B1: {} jobs, one `fetch_add` each, {} workers",
                thousands(t.jobs),
                t.workers
            );
            write_throughput(&mut s, &title, t, &self.options, Extra::None);
        }
        if let Some(t) = &self.b2 {
            let title = format!(
                "B2: {} jobs of {} xorshift64 rounds, {} workers",
                thousands(t.jobs),
                thousands(u64::from(self.options.b2_rounds)),
                t.workers
            );
            write_throughput(&mut s, &title, t, &self.options, Extra::Efficiency);
        }
        if let Some(t) = &self.b3 {
            let sleep = self.options.b3_sleep;
            let title = format!(
                "B3: {} jobs, each a {} ms thread sleep, {} workers",
                thousands(t.jobs),
                sleep.as_secs_f64() * 1e3,
                t.workers
            );
            let ideal = b3::ideal_rate(t.workers, sleep);
            write_throughput(&mut s, &title, t, &self.options, Extra::OfIdeal(ideal));
        }
        if let Some(t) = &self.b5 {
            write_memory(&mut s, t, self.options.repeat);
        }
        let failures = self.failures();
        if !failures.is_empty() {
            s.push_str("## Failures\n\n");
            for f in failures {
                let _ = writeln!(s, "- {f}");
            }
            s.push('\n');
        }
        s
    }

    fn write_header(&self, s: &mut String) {
        let m = &self.machine;
        s.push_str("# crew benchmarks\n\n");
        let _ = writeln!(s, "- Date: {} UTC", m.date_utc);
        let kernel = m
            .kernel
            .as_deref()
            .map(|k| format!(", Linux {k}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "- Machine: {}, {} logical CPUs{kernel}",
            m.cpu_model, m.cpus
        );
        if let Some(load) = &m.load_average {
            let _ = writeln!(s, "- Load average at start (1, 5, 15 min): {load}");
        }
        let _ = writeln!(
            s,
            "- rustc: {}",
            m.rustc.as_deref().unwrap_or("unknown (rustc not on PATH)")
        );
        if let Some(c) = &self.command {
            let _ = writeln!(s, "- Command: `{c}`");
        }
        let workloads: Vec<String> = self
            .options
            .workloads
            .iter()
            .map(Workload::to_string)
            .collect();
        let o = &self.options;
        let _ = writeln!(
            s,
            "- Workloads: {} from `spec/bench.md`{}",
            workloads.join(", "),
            if o.quick {
                " at **quick** counts (÷10): a smoke run, not the figures of record"
            } else {
                ""
            },
        );
        let _ = writeln!(
            s,
            "- Throughput cells show the **{} of {} runs**{}{}; implementations run interleaved, \
             each round starting one further along. B5 shows the median of {} runs.",
            o.statistic.name(),
            o.repeat.max(1),
            match o.statistic {
                Statistic::Best =>
                    " (on a shared machine other work only slows a run down, so the \
                                     fastest run is the least disturbed)",
                Statistic::Median => "",
            },
            if o.warmup {
                ", after one unrecorded warm-up run of a tenth of the jobs"
            } else {
                ""
            },
            o.repeat.max(1)
        );
        s.push_str(
            "- Timed: from the first submit until every job has run (pool built before, torn down after, \
             neither timed). `crew ÷ this` is crew's `submit` rate over that row's rate, from the same \
             run: above 1, crew is faster.\n",
        );
        s.push_str(
            "- CPU cores busy: process CPU time (user + system, including pool start and stop) over \
             the timed wall time, median over the runs. Well above what the jobs need, it is CPU the \
             pool burns itself (spinning, contention).\n",
        );
        s.push_str("- How each implementation is driven:\n");
        for imp in Impl::POOLS {
            let _ = writeln!(s, "  - {}: {}", imp.name(), imp.describe());
        }
        s.push('\n');
    }

    fn write_targets(&self, s: &mut String) {
        s.push_str("## Targets\n\n| target | goal | measured | verdict |\n|---|---|---|---|\n");
        for t in self.targets() {
            let verdict = match &t.verdict {
                Verdict::Met(x) => format!("**met** ({x})"),
                Verdict::Missed(x) => format!("**missed** ({x})"),
                Verdict::Inconclusive(x) => format!("**inconclusive** ({x})"),
                Verdict::NotMeasured(x) => format!("not measured ({x})"),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {verdict} |",
                t.name,
                t.goal,
                t.measured.as_deref().unwrap_or("—")
            );
        }
        if self.options.quick {
            s.push_str("\nThe targets are for the full counts; this is a quick run.\n");
        }
        s.push('\n');
    }
}

fn b1_target(t: Option<&ThroughputTable>, workers: usize, goal: f64) -> TargetCheck {
    let name = format!("B1, {workers} workers");
    let goal_text = format!("crew ≥ {goal} × threadpool");
    let Some(t) = t else {
        return not_measured(
            name,
            goal_text,
            format!("B1 at {workers} workers was not run"),
        );
    };
    let Some(r) = t.ratio(Impl::Crew, Impl::Threadpool) else {
        return not_measured(name, goal_text, "crew or threadpool failed".into());
    };
    let batch = t
        .ratio(Impl::CrewBatch, Impl::Threadpool)
        .map(|b| format!("; `submit_batch` {b:.2}×"))
        .unwrap_or_default();
    let measured = format!(
        "{r:.2}× ({} vs {}){batch}",
        rate_text(t, Impl::Crew),
        rate_text(t, Impl::Threadpool)
    );
    let verdict = if r >= goal {
        Verdict::Met(format!("{:.0}% above the goal", (r / goal - 1.0) * 100.0))
    } else {
        Verdict::Missed(format!(
            "by {:.2}×: crew needs {:.0}% more throughput",
            goal - r,
            (goal / r - 1.0) * 100.0
        ))
    };
    TargetCheck {
        name,
        goal: goal_text,
        measured: Some(measured),
        verdict,
    }
}

fn b2_target(t: Option<&ThroughputTable>, goal: f64) -> TargetCheck {
    let name = "B2 efficiency".to_string();
    let goal_text = format!("crew rate ≥ {goal} × (workers × single-thread rate)");
    let Some(t) = t else {
        return not_measured(name, goal_text, "B2 was not run".into());
    };
    let Some(e) = t.efficiency(Impl::Crew) else {
        return not_measured(
            name,
            goal_text,
            "crew or the single-thread loop failed".into(),
        );
    };
    let ceiling = t
        .efficiency(Impl::BareThreads)
        .map(|b| format!("; bare threads, no queue: {b:.3}"))
        .unwrap_or_default();
    let measured = format!(
        "{e:.3} ({} vs {} single-thread × {}){ceiling}",
        rate_text(t, Impl::Crew),
        rate_text(t, Impl::SingleThread),
        t.workers
    );
    let verdict = match t.efficiency(Impl::BareThreads) {
        _ if e >= goal => Verdict::Met(format!("by {:.3}", e - goal)),
        Some(ceiling) if ceiling < goal => Verdict::Inconclusive(format!(
            "crew {e:.3} is {:.3} short, but plain threads with no queue reached only {ceiling:.3} \
             on this machine in this run (another process held CPU), so the goal was out of reach for \
             any pool; crew reached {:.0}% of that ceiling",
            goal - e,
            e / ceiling * 100.0
        )),
        _ => Verdict::Missed(format!("by {:.3}", goal - e)),
    };
    TargetCheck {
        name,
        goal: goal_text,
        measured: Some(measured),
        verdict,
    }
}

fn b5_target(t: Option<&MemoryTable>, goal: f64) -> TargetCheck {
    let name = "B5 memory".to_string();
    let goal_text = format!("≤ {goal} bytes per queued job beyond the closure");
    let Some(t) = t else {
        return not_measured(name, goal_text, "B5 was not run".into());
    };
    let Some(row) = t.row(Impl::Crew) else {
        return not_measured(name, goal_text, "crew was not measured".into());
    };
    let (Some(total), Some(beyond), Some(closure)) = (
        row.bytes_per_job(),
        row.beyond_closure(),
        row.closure_size(),
    ) else {
        return not_measured(name, goal_text, "crew's B5 run failed".into());
    };
    let measured =
        format!("{beyond:.1} B beyond the closure ({total:.1} B per job, closure {closure} B)");
    let verdict = if beyond <= goal {
        Verdict::Met(format!("{:.1} B under", goal - beyond))
    } else {
        Verdict::Missed(format!("by {:.1} B", beyond - goal))
    };
    TargetCheck {
        name,
        goal: goal_text,
        measured: Some(measured),
        verdict,
    }
}

fn not_measured(name: String, goal: String, why: String) -> TargetCheck {
    TargetCheck {
        name,
        goal,
        measured: None,
        verdict: Verdict::NotMeasured(why),
    }
}

fn rate_text(t: &ThroughputTable, imp: Impl) -> String {
    t.row(imp)
        .and_then(|r| r.rate())
        .map_or_else(|| "—".into(), format_rate)
}

/// An extra column for a throughput table.
enum Extra {
    None,
    /// rate / (workers × single-thread rate)
    Efficiency,
    /// rate / ideal rate
    OfIdeal(f64),
}

fn write_throughput(
    s: &mut String,
    title: &str,
    t: &ThroughputTable,
    opts: &SuiteOptions,
    extra: Extra,
) {
    let _ = writeln!(s, "## {title}\n");
    let extra_head = match extra {
        Extra::None => "",
        Extra::Efficiency => " efficiency |",
        Extra::OfIdeal(_) => " of ideal |",
    };
    let _ = writeln!(
        s,
        "| implementation | jobs/s ({} of {}) | min – max | crew ÷ this | CPU cores busy |{extra_head}",
        opts.statistic.name(),
        opts.repeat.max(1)
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|{}",
        if extra_head.is_empty() { "" } else { "---|" }
    );
    let crew = t.row(Impl::Crew).and_then(|r| r.rate());
    for row in &t.rows {
        let name = if row.implementation.is_crew() {
            format!("**{}**", row.implementation.name())
        } else {
            row.implementation.name().to_string()
        };
        let Some(rate) = row.rate() else {
            let e = row.error.as_deref().unwrap_or("no run").replace('|', "\\|");
            let _ = writeln!(
                s,
                "| {name} | FAILED: {e} | | | |{}",
                if extra_head.is_empty() { "" } else { " |" }
            );
            continue;
        };
        let range = row
            .rate_range()
            .map(|(lo, hi)| format!("{} – {}", format_rate(lo), format_rate(hi)))
            .unwrap_or_default();
        let ratio = crew.map_or_else(|| "—".into(), |c| format!("{:.2}", c / rate));
        let extra_cell = match extra {
            Extra::None => String::new(),
            Extra::Efficiency => t
                .efficiency(row.implementation)
                .map_or_else(|| " — |".into(), |e| format!(" {e:.3} |")),
            Extra::OfIdeal(ideal) => format!(" {:.1}% |", rate / ideal * 100.0),
        };
        let busy = row
            .cores_busy()
            .map_or_else(|| "—".into(), |b| format!("{b:.2}"));
        let _ = writeln!(
            s,
            "| {name} | {} | {range} | {ratio} | {busy} |{extra_cell}",
            format_rate(rate)
        );
    }
    for row in &t.rows {
        if row.jobs != t.jobs {
            let _ = writeln!(
                s,
                "\n**Note, {}:** ran {} jobs per run instead of {}, to keep the run short at its rate; \
                 its jobs/s is still comparable.",
                row.implementation.name(),
                thousands(row.jobs),
                thousands(t.jobs)
            );
        }
        for n in &row.notes {
            let _ = writeln!(s, "\n**Note, {}:** {n}", row.implementation.name());
        }
    }
    match extra {
        Extra::None => {}
        Extra::Efficiency => {
            let _ = writeln!(
                s,
                "\nefficiency = rate / ({} × single-thread loop rate); the single-thread loop runs the \
                 same jobs inline, with no pool. bare-threads deals the jobs out beforehand to plain \
                 threads with no queue at all: its efficiency is the most this machine allows any pool.",
                t.workers
            );
        }
        Extra::OfIdeal(ideal) => {
            let _ = writeln!(
                s,
                "\nideal = workers / sleep = {} (Little's law); a 1 ms thread sleep lasts a little \
                 longer than 1 ms on Linux, so no pool reaches it.",
                format_rate(ideal)
            );
        }
    }
    s.push('\n');
}

fn write_memory(s: &mut String, t: &MemoryTable, repeat: usize) {
    let _ = writeln!(
        s,
        "## B5: {} jobs queued into a paused pool, {} workers, unbounded queue\n",
        thousands(t.jobs),
        t.workers
    );
    let _ = writeln!(
        s,
        "| implementation | bytes per queued job (median of {}) | closure size | beyond the closure | crew ÷ this | measured in |",
        repeat.max(1)
    );
    s.push_str("|---|---|---|---|---|---|\n");
    let crew = t.row(Impl::Crew).and_then(|r| r.bytes_per_job());
    for row in &t.rows {
        let name = if row.implementation.is_crew() {
            format!("**{}**", row.implementation.name())
        } else {
            row.implementation.name().to_string()
        };
        let place = if row.isolated {
            "fresh child process"
        } else {
            "this process"
        };
        let (Some(total), Some(closure), Some(beyond)) = (
            row.bytes_per_job(),
            row.closure_size(),
            row.beyond_closure(),
        ) else {
            let e = row.error.as_deref().unwrap_or("no run").replace('|', "\\|");
            let _ = writeln!(s, "| {name} | FAILED: {e} | | | | {place} |");
            continue;
        };
        let ratio = crew.map_or_else(|| "—".into(), |c| format!("{:.2}", c / total));
        let _ = writeln!(
            s,
            "| {name} | {total:.1} B | {closure} B | {beyond:.1} B | {ratio} | {place} |"
        );
    }
    s.push_str(
        "\nbytes per queued job = RSS delta (`/proc/self/statm`) / jobs, taken with every job queued \
         and none run (crew: `pause()`; the peers: every worker parked in a gate). Here `crew ÷ this` \
         is crew's bytes over that row's: below 1, crew uses less. Each job captures one \
         `Arc<AtomicU64>` clone; \"closure size\" is `size_of_val` of that closure, and peers that \
         box it pay a heap allocation on top.\n\n",
    );
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
