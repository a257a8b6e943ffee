//! Proves the wiring of the async workloads (B1-async, B3-async, B6,
//! offload) with tiny counts: every implementation runs every job, B6 offers
//! jobs and every offered job runs, and the report renders. Counts jobs,
//! never times (benchmarks are not tests).

use std::time::Duration;

use crew_bench::{b3_async, offload};
use crew_bench::{run_suite, Impl, SuiteOptions, Verdict, Workload};

fn tiny_async() -> SuiteOptions {
    let mut o = SuiteOptions::quick();
    o.workloads = Workload::ASYNC.to_vec();
    o.repeat = 2;
    o.b1_async_jobs = 2_000;
    o.b1_async_workers = vec![2, 40];
    o.b3_async_jobs = 300;
    o.b3_async_workers = 50;
    o.b3_async_sleep = Duration::from_millis(1);
    // B6's thread pool takes its capacity from B3, measured for B6 here.
    o.b3_jobs = 200;
    o.b3_workers = 20;
    o.b3_sleep = Duration::from_micros(200);
    o.b6_duration = Duration::from_millis(300);
    o.offload_jobs = 2_000;
    o.offload_tasks = 8;
    o.cell_timeout = Duration::from_secs(60);
    o
}

#[test]
fn async_workloads_run_every_job() {
    let opts = tiny_async();
    let report = run_suite(&opts);
    assert_eq!(report.failures(), Vec::<String>::new());
    assert!(report.b1.is_empty() && report.b2.is_none() && report.b3.is_none());
    assert!(report.b5.is_none());

    assert_eq!(report.b1_async.len(), 2);
    let b3 = report.b3_async.as_ref().expect("B3-async ran");
    let offload = report.offload.as_ref().expect("offload ran");
    let tables = report
        .b1_async
        .iter()
        .map(|t| (t, Impl::ASYNC_POOLS.to_vec()))
        .chain([(b3, b3_async::IMPLS.to_vec())])
        .chain([(offload, Impl::OFFLOAD.to_vec())]);
    for (table, expected) in tables {
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
            if row.implementation == Impl::SpawnBlocking {
                assert_eq!(row.jobs, table.jobs / offload::SPAWN_BLOCKING_DIVISOR);
            } else {
                assert_eq!(row.jobs, table.jobs);
            }
            assert!(row.notes.is_empty(), "{:?}", row.notes);
        }
    }

    let b6 = report.b6.as_ref().expect("B6 ran");
    let got: Vec<Impl> = b6.rows.iter().map(|r| r.implementation).collect();
    assert_eq!(got, vec![Impl::AsyncCrew, Impl::Crew]);
    for row in &b6.rows {
        let o = row.offered.as_ref().expect("B6 row measured");
        assert!(
            o.submitted > 0,
            "{} offered nothing",
            row.implementation.name()
        );
        assert_eq!(o.completed, o.submitted, "{}", row.implementation.name());
        assert_eq!(o.queue_wait.count, o.submitted);
        assert!(row.capacity.is_some() && row.target_rate.is_some());
    }
    // AsyncPool's capacity comes from this run's B3-async; the thread
    // pool's was measured for B6, as B3 did not run.
    assert!(b6.rows[0].capacity_source.contains("B3-async in this run"));
    assert!(b6.rows[1].capacity_source.contains("measured for B6"));

    // Only the async targets, and both evaluated.
    let targets = report.targets();
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["B1-async, 40 workers", "B3-async ceiling"]);
    for t in &targets {
        assert!(!matches!(t.verdict, Verdict::NotMeasured(_)), "{t:?}");
    }

    let md = report.to_markdown();
    for heading in [
        "# crew benchmarks",
        "## Targets",
        "## B1-async:",
        "## B3-async:",
        "## B6:",
        "## Offload:",
    ] {
        assert!(md.contains(heading), "missing {heading:?} in\n{md}");
    }
    assert!(!md.contains("## B1:") && !md.contains("## B5:"));
}

#[test]
fn b6_alone_measures_its_own_capacity() {
    let mut opts = tiny_async();
    opts.workloads = vec![Workload::B6];
    opts.repeat = 1;
    opts.b6_thread_pool = false;
    let report = run_suite(&opts);
    assert_eq!(report.failures(), Vec::<String>::new());
    let b6 = report.b6.expect("B6 ran");
    assert_eq!(b6.rows.len(), 1);
    let row = &b6.rows[0];
    assert_eq!(row.implementation, Impl::AsyncCrew);
    assert!(row.capacity_source.contains("measured for B6"));
    let o = row.offered.expect("measured");
    assert_eq!(o.completed, o.submitted);
}

#[test]
fn workload_names_parse() {
    for (text, w) in [
        ("B1-async", Workload::B1Async),
        ("b3_async", Workload::B3Async),
        ("B6", Workload::B6),
        ("offload", Workload::Offload),
        ("b4", Workload::B4),
        ("b7", Workload::B7),
        ("b8", Workload::B8),
    ] {
        assert_eq!(text.parse::<Workload>(), Ok(w));
        assert_eq!(w.to_string().parse::<Workload>(), Ok(w));
    }
    assert!("B9".parse::<Workload>().is_err());
}
