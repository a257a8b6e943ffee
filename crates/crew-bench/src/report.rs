//! The report: figures of one run, the targets, and the markdown rendering.

use std::fmt::Write as _;

use crate::b4::{CountCheck, GoReference, PixelsTable};
use crate::b5::MemoryTable;
use crate::b6::LatencyTable;
use crate::machine::Machine;
use crate::measure::{format_duration, format_rate, Statistic, ThroughputTable};
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
    /// B4: crew-pipeline beside the Go reference and the single-thread loop.
    pub b4: Option<PixelsTable>,
    /// B5.
    pub b5: Option<MemoryTable>,
    /// B1-async, one table per worker count.
    pub b1_async: Vec<ThroughputTable>,
    /// B3-async, with the bare-tasks ceiling as its last row.
    pub b3_async: Option<ThroughputTable>,
    /// B6.
    pub b6: Option<LatencyTable>,
    /// `Pool::run` beside `spawn_blocking`.
    pub offload: Option<ThroughputTable>,
    /// B7: Kafka → Server Pixels → Kafka beside a bare consumer.
    pub b7: Option<crate::b7_kafka::KafkaTable>,
    /// B8: the HTTP sink's adaptive limit beside fixed ones.
    pub b8: Option<crate::b8_http::HttpTable>,
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
            b4: None,
            b5: None,
            b1_async: Vec::new(),
            b3_async: None,
            b6: None,
            offload: None,
            b7: None,
            b8: None,
        }
    }

    /// The B1 table for `workers` workers, if measured.
    pub fn b1_at(&self, workers: usize) -> Option<&ThroughputTable> {
        self.b1.iter().find(|t| t.workers == workers)
    }

    /// The B1-async table for `workers` workers, if measured.
    pub fn b1_async_at(&self, workers: usize) -> Option<&ThroughputTable> {
        self.b1_async.iter().find(|t| t.workers == workers)
    }

    /// Every throughput table of the report, in report order.
    pub fn throughput_tables(&self) -> impl Iterator<Item = &ThroughputTable> {
        self.b1
            .iter()
            .chain(self.b2.as_ref())
            .chain(self.b3.as_ref())
            .chain(self.b4.as_ref().map(|b| &b.table))
            .chain(self.b1_async.iter())
            .chain(self.b3_async.as_ref())
            .chain(self.offload.as_ref())
    }

    /// The targets, checked against this run's figures: those of
    /// the workloads the run selected (all four thread-pool targets when
    /// neither an async workload nor a pipeline one ran, as before; the
    /// async ones when one did; B4's and B7's when they ran).
    pub fn targets(&self) -> Vec<TargetCheck> {
        let w = &self.options.workloads;
        let any = |set: &[Workload]| set.iter().any(|x| w.contains(x));
        let mut out = Vec::new();
        if any(&Workload::THREAD) || !(any(&Workload::ASYNC) || any(&Workload::PIPELINE)) {
            out.extend([
                b1_target(self.b1_at(40), 40, 2.5),
                b1_target(self.b1_at(2), 2, 2.0),
                b2_target(self.b2.as_ref(), 0.95),
                b5_target(self.b5.as_ref(), 64.0),
            ]);
        }
        if any(&Workload::ASYNC) {
            out.extend([
                b1_async_target(self.b1_async_at(40), 40, 3.0),
                b3_async_target(self.b3_async.as_ref(), 0.9),
            ]);
        }
        if w.contains(&Workload::B4) {
            out.extend([
                b4_go_target(self.b4.as_ref(), crate::b4::GOAL_VS_GO),
                b4_rate_target(self.b4.as_ref(), crate::b4::GOAL_RATE),
            ]);
        }
        if w.contains(&Workload::B7) {
            out.push(crate::b7_kafka::target(self.b7.as_ref()));
        }
        out
    }

    /// Whether any cell failed (hung, panicked or lost jobs).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in self.throughput_tables() {
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
        if let Some(e) = self.b4.as_ref().and_then(|b| b.error.as_ref()) {
            out.push(format!("B4: {e}"));
        }
        out.extend(self.b7.iter().flat_map(|t| t.failures()));
        out.extend(self.b8.iter().flat_map(|t| t.failures()));
        if let Some(t) = &self.b5 {
            for r in &t.rows {
                if let Some(e) = &r.error {
                    out.push(format!("B5 {}: {e}", r.implementation.name()));
                }
            }
        }
        if let Some(t) = &self.b6 {
            for r in &t.rows {
                if let Some(e) = &r.error {
                    out.push(format!(
                        "B6 {} ({} workers): {e}",
                        r.implementation.name(),
                        r.workers
                    ));
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
        if let Some(t) = &self.b4 {
            write_pixels(&mut s, t, &self.options);
        }
        if let Some(t) = &self.b7 {
            crate::b7_kafka::write_markdown(&mut s, t);
        }
        if let Some(t) = &self.b8 {
            crate::b8_http::write_markdown(&mut s, t);
        }
        if let Some(t) = &self.b5 {
            write_memory(&mut s, t, self.options.repeat);
        }
        let threads = self.options.runtime_threads;
        for t in &self.b1_async {
            let title = format!(
                "B1-async: {} async jobs, one `fetch_add` each, {} workers, {threads} runtime threads",
                thousands(t.jobs),
                t.workers
            );
            write_throughput(&mut s, &title, t, &self.options, Extra::None);
        }
        if let Some(t) = &self.b3_async {
            let sleep = self.options.b3_async_sleep;
            let title = format!(
                "B3-async: {} jobs, each a {} ms `tokio::time::sleep`, {} workers, {threads} runtime threads",
                thousands(t.jobs),
                sleep.as_secs_f64() * 1e3,
                t.workers
            );
            let extra = Extra::OfCeilingAndIdeal {
                ceiling: t.row(Impl::BareTasks).and_then(|r| r.rate()),
                ideal: b3::ideal_rate(t.workers, sleep),
            };
            write_throughput(&mut s, &title, t, &self.options, extra);
        }
        if let Some(t) = &self.b6 {
            write_latency(&mut s, t, &self.options);
        }
        if let Some(t) = &self.offload {
            let title = format!(
                "Offload: {} tiny CPU jobs awaited from {} tokio tasks, {threads} runtime threads",
                thousands(t.jobs),
                self.options.offload_tasks
            );
            write_throughput(&mut s, &title, t, &self.options, Extra::None);
            let _ = writeln!(
                s,
                "Each of the {} tasks awaits one job at a time (B1's job: one `fetch_add`): \
                 crew-run through a `crew::Pool` of {} threads, spawn-blocking through tokio's \
                 blocking pool (up to 512 threads, its default). The figure is the cost of the \
                 round trip: queue the job, wake a thread, run it, deliver the result, wake the \
                 task.\n",
                self.options.offload_tasks, t.workers
            );
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
            match (o.quick, o.runs(Workload::B6)) {
                (true, false) =>
                    " at **quick** counts (÷10): a smoke run, not the figures of record",
                (true, true) => {
                    " at **quick** counts (÷10, and B6's duration ÷10): a smoke run, not the \
                     figures of record"
                }
                (false, _) => "",
            },
        );
        if self.throughput_tables().next().is_none() && self.b5.is_none() && self.b6.is_none() {
            // B7 or B8 alone: their sections say how they are run and timed.
            s.push('\n');
            return;
        }
        let _ = writeln!(
            s,
            "- Throughput cells show the **{} of {} runs**{}{}; implementations run interleaved, \
             each round starting one further along.{}{}",
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
            if self.b5.is_some()
                || !o
                    .workloads
                    .iter()
                    .any(|w| Workload::ASYNC.contains(w) || Workload::PIPELINE.contains(w))
            {
                format!(" B5 shows the median of {} runs.", o.repeat.max(1))
            } else {
                String::new()
            },
            if self.b6.is_some() {
                " B6 is one run per pool."
            } else {
                ""
            }
        );
        if self.throughput_tables().any(|t| t.workload != Workload::B4) {
            s.push_str(
                "- Timed: from the first submit until every job has run (pool built before, torn down \
                 after, neither timed). `crew ÷ this` is crew's `submit` rate over that row's rate, \
                 from the same run: above 1, crew is faster.\n",
            );
        }
        if self.b4.is_some() {
            s.push_str(
                "- B4 is timed as its section says; there `crew ÷ this` is crew-pipeline's rate over \
                 that row's.\n",
            );
        }
        let any_async =
            !self.b1_async.is_empty() || self.b3_async.is_some() || self.offload.is_some();
        if any_async {
            let _ = writeln!(
                s,
                "- Async tables: every run gets a fresh tokio multi-thread runtime with {} worker \
                 threads (built before, dropped after, neither timed); the producer is a task spawned \
                 on it, sharing those threads with the jobs. There `crew ÷ this` divides by the \
                 table's crew row (`crew-async`, or `crew-run` for offload).",
                o.runtime_threads
            );
        }
        s.push_str(
            "- CPU cores busy: process CPU time (user + system, including pool start and stop) over \
             the timed wall time, median over the runs. Well above what the jobs need, it is CPU the \
             pool burns itself (spinning, contention).\n",
        );
        s.push_str("- How each implementation is driven:\n");
        for imp in self.listed_impls() {
            let _ = writeln!(s, "  - {}: {}", imp.name(), imp.describe());
        }
        s.push('\n');
    }

    /// The implementations the header describes: the pools of every table
    /// in the report (the thread pools if it has none), in [`Impl::ALL`]
    /// order. The single-thread loop and bare threads are explained under
    /// B2 instead.
    fn listed_impls(&self) -> Vec<Impl> {
        let mut seen: Vec<Impl> = self
            .throughput_tables()
            .flat_map(|t| t.rows.iter().map(|r| r.implementation))
            .chain(
                self.b5
                    .iter()
                    .flat_map(|t| t.rows.iter().map(|r| r.implementation)),
            )
            .chain(
                self.b6
                    .iter()
                    .flat_map(|t| t.rows.iter().map(|r| r.implementation)),
            )
            .collect();
        if seen.is_empty() {
            seen = Impl::POOLS.to_vec();
        }
        Impl::ALL
            .into_iter()
            .filter(|i| !matches!(i, Impl::SingleThread | Impl::BareThreads))
            .filter(|i| seen.contains(i))
            .collect()
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

fn b1_async_target(t: Option<&ThroughputTable>, workers: usize, goal: f64) -> TargetCheck {
    let name = format!("B1-async, {workers} workers");
    let goal_text = format!("crew-async ≥ {goal} × tokio-mpsc (mpsc-fed worker tasks)");
    let Some(t) = t else {
        return not_measured(
            name,
            goal_text,
            format!("B1-async at {workers} workers was not run"),
        );
    };
    let Some(r) = t.ratio(Impl::AsyncCrew, Impl::TokioMpsc) else {
        return not_measured(name, goal_text, "crew-async or tokio-mpsc failed".into());
    };
    let others: Vec<String> = [Impl::TokioSemaphore, Impl::BufferUnordered]
        .into_iter()
        .filter_map(|p| Some(format!("{} {:.2}×", p.name(), t.ratio(Impl::AsyncCrew, p)?)))
        .collect();
    let others = if others.is_empty() {
        String::new()
    } else {
        format!("; vs {}", others.join(", "))
    };
    let measured = format!(
        "{r:.2}× ({} vs {}){others}",
        rate_text(t, Impl::AsyncCrew),
        rate_text(t, Impl::TokioMpsc)
    );
    let verdict = if r >= goal {
        Verdict::Met(format!("{:.0}% above the goal", (r / goal - 1.0) * 100.0))
    } else {
        Verdict::Missed(format!(
            "by {:.2}×: crew-async needs {:.0}% more throughput",
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

fn b3_async_target(t: Option<&ThroughputTable>, goal: f64) -> TargetCheck {
    let name = "B3-async ceiling".to_string();
    let goal_text = format!(
        "crew-async ≥ {:.0}% of bare tokio tasks looping the same sleep",
        goal * 100.0
    );
    let Some(t) = t else {
        return not_measured(name, goal_text, "B3-async was not run".into());
    };
    let Some(r) = t.ratio(Impl::AsyncCrew, Impl::BareTasks) else {
        return not_measured(
            name,
            goal_text,
            "crew-async or the bare tasks failed".into(),
        );
    };
    let measured = format!(
        "{:.1}% ({} vs {})",
        r * 100.0,
        rate_text(t, Impl::AsyncCrew),
        rate_text(t, Impl::BareTasks)
    );
    let verdict = if r >= goal {
        Verdict::Met(format!("by {:.1} points", (r - goal) * 100.0))
    } else {
        Verdict::Missed(format!("by {:.1} points", (goal - r) * 100.0))
    };
    TargetCheck {
        name,
        goal: goal_text,
        measured: Some(measured),
        verdict,
    }
}

fn b4_go_target(t: Option<&PixelsTable>, goal: f64) -> TargetCheck {
    let name = "B4 vs Go".to_string();
    let goal_text = format!("crew-pipeline ≥ {goal} × go-pixels on the same file");
    let Some(b) = t else {
        return not_measured(name, goal_text, "B4 was not run".into());
    };
    if let GoReference::Missing(why) = &b.go {
        return not_measured(name, goal_text, format!("no Go row: {why}"));
    }
    let Some(r) = b.ratio_to_go() else {
        return not_measured(name, goal_text, "crew-pipeline or go-pixels failed".into());
    };
    let per_cpu = b
        .cpu_ratio_to_go()
        .map(|c| format!("; per CPU-second {c:.2}×"))
        .unwrap_or_default();
    let measured = format!(
        "{r:.2}× ({} vs {}){per_cpu}",
        rate_text(&b.table, Impl::Pipeline),
        rate_text(&b.table, Impl::GoPixels)
    );
    let verdict = if r >= goal {
        Verdict::Met(format!("{:.0}% above the goal", (r / goal - 1.0) * 100.0))
    } else {
        Verdict::Missed(format!(
            "by {:.2}×: crew-pipeline needs {:.0}% more throughput",
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

fn b4_rate_target(t: Option<&PixelsTable>, goal: f64) -> TargetCheck {
    let name = "B4 rate".to_string();
    let goal_text = format!("crew-pipeline ≥ {} events/s", thousands(goal as u64));
    let Some(b) = t else {
        return not_measured(name, goal_text, "B4 was not run".into());
    };
    let Some(rate) = b.table.row(Impl::Pipeline).and_then(|r| r.rate()) else {
        return not_measured(name, goal_text, "crew-pipeline failed".into());
    };
    let efficiency = b
        .efficiency()
        .map(|e| {
            format!(
                "; efficiency {e:.3} against {} single-thread × {}",
                rate_text(&b.table, Impl::SingleThread),
                b.table.workers
            )
        })
        .unwrap_or_default();
    let measured = format!("{}{efficiency}", format_rate(rate));
    let verdict = if rate >= goal {
        Verdict::Met(format!(
            "{:.0}% above the goal",
            (rate / goal - 1.0) * 100.0
        ))
    } else {
        Verdict::Missed(format!(
            "by {}: crew-pipeline needs {:.0}% more throughput",
            format_rate(goal - rate),
            (goal / rate - 1.0) * 100.0
        ))
    };
    TargetCheck {
        name,
        goal: goal_text,
        measured: Some(measured),
        verdict,
    }
}

fn write_pixels(s: &mut String, b: &PixelsTable, opts: &SuiteOptions) {
    let t = &b.table;
    let _ = writeln!(
        s,
        "## B4: Server Pixels, {} events, NDJSON file → NDJSON file, {} workers\n",
        thousands(t.jobs),
        t.workers
    );
    if let Some(e) = &b.error {
        let _ = writeln!(s, "Not measured: {e}\n");
        return;
    }
    if let Some(i) = &b.input {
        let _ = writeln!(
            s,
            "- Input: {} events, {:.1} MB, generator seed {}, malformed share {} ({} malformed and {} \
             invalid lines); written once, read by every run.",
            thousands(i.events),
            i.bytes as f64 / 1e6,
            i.seed,
            i.malformed_share,
            thousands(i.malformed),
            thousands(i.invalid)
        );
    }
    let _ = writeln!(
        s,
        "- crew-pipeline: batches of {} events, unordered, otherwise crew-pipeline's default \
         settings.",
        b.batch
    );
    match &b.go {
        GoReference::Ready { version, built, .. } => {
            let _ = writeln!(
                s,
                "- go-pixels: `-workers {}`, its default `-batch 100`; {version}{}.",
                t.workers,
                if *built {
                    ", built by this run"
                } else {
                    ", binary up to date"
                }
            );
        }
        GoReference::Missing(why) => {
            let _ = writeln!(s, "- **go-pixels row missing**: {why}.");
        }
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "| implementation | events/s ({} of {}) | min – max | crew ÷ this | CPU cores busy | events per CPU-second | crew ÷ this, per CPU-second | efficiency |",
        opts.statistic.name(),
        opts.repeat.max(1)
    );
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    let crew_cpu = b.cpu_rate(Impl::Pipeline);
    let crew = t.row(Impl::Pipeline).and_then(|r| r.rate());
    for row in &t.rows {
        let imp = row.implementation;
        let name = if imp.is_crew() {
            format!("**{}**", imp.name())
        } else {
            imp.name().to_string()
        };
        let Some(rate) = row.rate() else {
            let e = row.error.as_deref().unwrap_or("no run").replace('|', "\\|");
            let _ = writeln!(s, "| {name} | FAILED: {e} | | | | | | |");
            continue;
        };
        let range = row
            .rate_range()
            .map(|(lo, hi)| format!("{} – {}", format_rate(lo), format_rate(hi)))
            .unwrap_or_default();
        let ratio = crew.map_or_else(|| "—".into(), |c| format!("{:.2}", c / rate));
        let busy = row
            .cores_busy()
            .map_or_else(|| "—".into(), |b| format!("{b:.2}"));
        let efficiency = match imp {
            Impl::Pipeline => b
                .efficiency()
                .map_or_else(|| "—".into(), |e| format!("{e:.3}")),
            _ => "—".into(),
        };
        let cpu_rate = b.cpu_rate(imp);
        let cpu_ratio = match (crew_cpu, cpu_rate) {
            (Some(c), Some(r)) => format!("{:.2}", c / r),
            _ => "—".into(),
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {range} | {ratio} | {busy} | {} | {cpu_ratio} | {efficiency} |",
            format_rate(rate),
            cpu_rate.map_or_else(|| "—".into(), format_rate)
        );
    }
    s.push('\n');
    match b.count_check() {
        CountCheck::Agree(c) => {
            let runs: Vec<String> = b
                .counts
                .iter()
                .map(|(imp, v)| format!("{} ×{}", imp.name(), v.len()))
                .collect();
            let _ = writeln!(
                s,
                "Counts agree in every recorded run ({}): {c}; the failures are exactly the \
                 generator's broken lines.\n",
                runs.join(", ")
            );
        }
        CountCheck::Differ(lines) => {
            s.push_str("**Counts differ:**\n\n");
            for l in lines {
                let _ = writeln!(s, "- {l}");
            }
            s.push('\n');
        }
        CountCheck::NotChecked(why) => {
            let _ = writeln!(s, "Counts not checked: {why}.\n");
        }
    }
    let _ = writeln!(
        s,
        "Timed: crew-pipeline, `Pipeline::run` (first read until the sink flushed the last event; \
         opening the files and starting the pool are not timed); go-pixels, its own printed wall \
         time (after opening its files, until its writer flushed); single-thread, the loop (read a \
         line, call the four stages' `process`, `sonic_rs::to_writer` what is kept into a buffer \
         written to a file every 1 MiB). CPU cores busy for go-pixels is the child's CPU time over \
         its wall time. Events per CPU-second: events over the CPU time of the run that used the least \
         (for go-pixels the child's); on a shared machine the best wall-clock run favours the row \
         whose runs are short enough to fit in a quiet moment, while CPU time per event hardly \
         moves with the load, so compare the two ratios. efficiency = crew-pipeline rate / ({} × \
         single-thread rate).\n",
        t.workers
    );
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

/// Extra columns for a throughput table.
enum Extra {
    None,
    /// rate / (workers × single-thread rate)
    Efficiency,
    /// rate / ideal rate
    OfIdeal(f64),
    /// rate / the ceiling row's rate, and rate / ideal rate
    OfCeilingAndIdeal {
        ceiling: Option<f64>,
        ideal: f64,
    },
}

impl Extra {
    fn heads(&self) -> &'static [&'static str] {
        match self {
            Extra::None => &[],
            Extra::Efficiency => &["efficiency"],
            Extra::OfIdeal(_) => &["of ideal"],
            Extra::OfCeilingAndIdeal { .. } => &["of ceiling", "of ideal"],
        }
    }

    fn cells(&self, t: &ThroughputTable, imp: Impl, rate: f64) -> Vec<String> {
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        match *self {
            Extra::None => Vec::new(),
            Extra::Efficiency => vec![t
                .efficiency(imp)
                .map_or_else(|| "—".into(), |e| format!("{e:.3}"))],
            Extra::OfIdeal(ideal) => vec![pct(rate / ideal)],
            Extra::OfCeilingAndIdeal { ceiling, ideal } => vec![
                ceiling.map_or_else(|| "—".into(), |c| pct(rate / c)),
                pct(rate / ideal),
            ],
        }
    }
}

fn write_throughput(
    s: &mut String,
    title: &str,
    t: &ThroughputTable,
    opts: &SuiteOptions,
    extra: Extra,
) {
    let _ = writeln!(s, "## {title}\n");
    let heads = extra.heads();
    let extra_head: String = heads.iter().map(|h| format!(" {h} |")).collect();
    let _ = writeln!(
        s,
        "| implementation | jobs/s ({} of {}) | min – max | crew ÷ this | CPU cores busy |{extra_head}",
        opts.statistic.name(),
        opts.repeat.max(1)
    );
    let _ = writeln!(s, "|---|---|---|---|---|{}", "---|".repeat(heads.len()));
    let crew = t.crew_row().and_then(|r| r.rate());
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
                " |".repeat(heads.len())
            );
            continue;
        };
        let range = row
            .rate_range()
            .map(|(lo, hi)| format!("{} – {}", format_rate(lo), format_rate(hi)))
            .unwrap_or_default();
        let ratio = crew.map_or_else(|| "—".into(), |c| format!("{:.2}", c / rate));
        let extra_cells: String = extra
            .cells(t, row.implementation, rate)
            .iter()
            .map(|c| format!(" {c} |"))
            .collect();
        let busy = row
            .cores_busy()
            .map_or_else(|| "—".into(), |b| format!("{b:.2}"));
        let _ = writeln!(
            s,
            "| {name} | {} | {range} | {ratio} | {busy} |{extra_cells}",
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
        Extra::OfCeilingAndIdeal { ideal, .. } => {
            let _ = writeln!(
                s,
                "\nceiling = bare-tasks: {} tokio tasks, no pool and no queue, each looping the same \
                 sleep until all jobs ran (what this runtime's timer allows). ideal = workers / sleep \
                 = {} (Little's law); tokio's timer has a 1 ms resolution and rounds a sleep up to the \
                 next tick, so a 1 ms sleep lasts 1–2 ms and nothing reaches it.",
                t.workers,
                format_rate(ideal)
            );
        }
    }
    s.push('\n');
}

fn write_latency(s: &mut String, t: &LatencyTable, opts: &SuiteOptions) {
    let _ = writeln!(
        s,
        "## B6: B3-style jobs offered at {:.0}% of the measured capacity for {:.0} s\n",
        t.load * 100.0,
        t.duration.as_secs_f64()
    );
    s.push_str(
        "| pool | workers, job | capacity (from) | offered: aimed | offered: achieved | jobs | \
         queue wait p50 | p99 | max | mean | submits that waited for room |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in &t.rows {
        let job = if row.implementation == Impl::Crew {
            "thread sleep"
        } else {
            "`tokio::time::sleep`"
        };
        let what = format!(
            "{}, {} ms {job}",
            row.workers,
            row.sleep.as_secs_f64() * 1e3
        );
        let capacity = row.capacity.map_or_else(
            || "—".into(),
            |c| format!("{} ({})", format_rate(c), row.capacity_source),
        );
        let aimed = row.target_rate.map_or_else(|| "—".into(), format_rate);
        let name = format!("**{}**", row.implementation.name());
        let Some(o) = &row.offered else {
            let e = row.error.as_deref().unwrap_or("no run").replace('|', "\\|");
            let _ = writeln!(
                s,
                "| {name} | {what} | {capacity} | {aimed} | FAILED: {e} | | | | | | |"
            );
            continue;
        };
        let q = &o.queue_wait;
        let _ = writeln!(
            s,
            "| {name} | {what} | {capacity} | {aimed} | {} | {} | {} | {} | {} | {} | {} |",
            format_rate(o.rate()),
            thousands(o.submitted),
            format_duration(q.p50),
            format_duration(q.p99),
            format_duration(q.max),
            format_duration(q.mean),
            thousands(o.producer_waits)
        );
    }
    let _ = writeln!(
        s,
        "\nOne run per pool. The capacity is crew's {} rate in B3-async (`AsyncPool`) or B3 (`Pool`); \
         the producer offers {:.0}% of it through a token bucket refilled every {} ms (a \
         `tokio::time::interval` task for `AsyncPool`, a thread for `Pool`), with `try_submit`, \
         waiting in `submit` only when the queue (capacity {}) is full. Queue wait is crew's own \
         `stats().queue_wait`, from submit to start; quantiles are a histogram bucket's upper bound \
         (at most 12.5% above the true value). Jobs arrive in per-tick bursts, so queue wait includes \
         waiting behind the rest of a burst.\n",
        opts.statistic.name(),
        t.load * 100.0,
        crate::b6::TICK.as_millis(),
        crate::peers::QUEUE_CAPACITY
    );
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
