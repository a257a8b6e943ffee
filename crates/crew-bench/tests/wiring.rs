//! Proves the harness wiring with tiny counts: every workload runs on every
//! implementation, every job runs, and the report renders. Counts jobs, never
//! times (benchmarks are not tests).

use std::ffi::OsString;
use std::time::Duration;

use crew_bench::{run_suite, Impl, SuiteOptions, Verdict, Workload};

fn tiny() -> SuiteOptions {
    let mut o = SuiteOptions::quick();
    o.repeat = 2;
    o.b1_jobs = 500;
    o.b1_workers = vec![2, 3];
    o.b2_jobs = 50;
    o.b2_rounds = 100;
    o.b3_jobs = 40;
    o.b3_workers = 8;
    o.b3_sleep = Duration::from_micros(100);
    o.b5_jobs = 1_000;
    o.cell_timeout = Duration::from_secs(60);
    // B4 (it builds and runs the Go reference) has tests/b4_wiring.rs.
    o.workloads.retain(|w| *w != Workload::B4);
    // The async workloads (checked in detail by tests/async_wiring.rs).
    o.b1_async_jobs = 500;
    o.b3_async_jobs = 40;
    o.b3_async_workers = 8;
    o.b6_duration = Duration::from_millis(200);
    o.offload_jobs = 500;
    o.offload_tasks = 4;
    o
}

#[test]
fn every_workload_runs_every_job() {
    let mut opts = tiny();
    // B5 through the real re-exec path: the binary's hidden subcommand.
    opts.b5_child = Some(vec![
        OsString::from(env!("CARGO_BIN_EXE_crew-bench")),
        OsString::from("__b5-child"),
    ]);
    let report = run_suite(&opts);

    assert_eq!(report.failures(), Vec::<String>::new());
    assert_eq!(report.b1.len(), 2);
    let throughput = report
        .b1
        .iter()
        .chain(report.b2.as_ref())
        .chain(report.b3.as_ref());
    for table in throughput {
        let mut expected: Vec<Impl> = Impl::POOLS.to_vec();
        if table.workload == Workload::B2 {
            expected.extend([Impl::SingleThread, Impl::BareThreads]);
        }
        let got: Vec<Impl> = table.rows.iter().map(|r| r.implementation).collect();
        assert_eq!(got, expected, "{} rows", table.workload);
        for row in &table.rows {
            // A run is only recorded once its job counter reached `jobs`.
            assert_eq!(
                row.runs.len(),
                2,
                "{} {}",
                table.workload,
                row.implementation.name()
            );
        }
    }
    assert!(report
        .b2
        .as_ref()
        .unwrap()
        .row(Impl::SingleThread)
        .is_some());

    let b5 = report.b5.as_ref().expect("B5 ran");
    assert_eq!(b5.rows.len(), 3);
    for row in &b5.rows {
        assert!(row.isolated);
        assert_eq!(row.samples.len(), 2);
        for s in &row.samples {
            assert_eq!(s.jobs, 1_000);
            assert_eq!(s.completed, 1_000, "{}", row.implementation.name());
            assert!(s.closure_size > 0);
        }
    }

    // Every target is evaluated (met or missed), none left unmeasured.
    let targets = report.targets();
    let unmeasured: Vec<_> = targets
        .iter()
        .filter(|t| matches!(t.verdict, Verdict::NotMeasured(_)))
        .map(|t| &t.name)
        .collect();
    // B1 ran at 2 and 3 workers, so only the 40-worker target is unmeasured.
    assert_eq!(unmeasured, vec!["B1, 40 workers"]);

    let md = report.to_markdown();
    for heading in [
        "# crew benchmarks",
        "## Targets",
        "## B1:",
        "## B2:",
        "## B3:",
        "## B5:",
    ] {
        assert!(md.contains(heading), "missing {heading:?} in\n{md}");
    }
}

#[test]
fn b5_in_process_and_only() {
    let mut opts = tiny();
    opts.workloads = vec![Workload::B5];
    opts.repeat = 1;
    opts.b5_child = None;
    let report = run_suite(&opts);
    assert!(report.b1.is_empty() && report.b2.is_none() && report.b3.is_none());
    let b5 = report.b5.expect("B5 ran");
    for row in &b5.rows {
        assert!(!row.isolated);
        assert_eq!(row.error, None);
        assert_eq!(row.samples[0].completed, 1_000);
    }
}
