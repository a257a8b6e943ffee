//! Proves B4's wiring with a small file: crew-pipeline, the single-thread
//! loop and (when a Go toolchain is found) go-pixels read the same events
//! and end them the same way, and the report renders. Counts events, never
//! times (benchmarks are not tests).
//!
//! Without a Go toolchain the Go row is missing and the report says why;
//! that path is checked whether or not Go is installed.

use std::time::Duration;

use crew_bench::b4::{self, CountCheck, GoReference};
use crew_bench::{run_suite, Impl, SuiteOptions, Verdict, Workload};

fn small() -> SuiteOptions {
    let mut o = SuiteOptions::quick();
    o.workloads = vec![Workload::B4];
    o.repeat = 2;
    o.b4_events = 600;
    // 10% malformed: every kind but oversize (one in a hundred malformed
    // lines, so none among 60).
    o.b4_malformed = 0.1;
    o.b4_batch = 50;
    o.cell_timeout = Duration::from_secs(120);
    o
}

#[test]
fn b4_rows_agree_on_every_event() {
    let report = run_suite(&small());
    assert_eq!(report.failures(), Vec::<String>::new());
    let b = report.b4.as_ref().expect("B4 ran");
    let input = b.input.expect("the input was written");
    assert_eq!(input.events, 600);
    assert_eq!(input.malformed, 60);

    let mut expected = vec![Impl::Pipeline];
    match &b.go {
        GoReference::Ready { .. } => expected.push(Impl::GoPixels),
        GoReference::Missing(why) => {
            // Only a missing toolchain or source may leave the row out here;
            // a broken build is a failure.
            let source = SuiteOptions::full().b4_go_source.join("main.go");
            assert!(
                b4::find_go().is_err() || !source.is_file(),
                "the Go row is missing: {why}"
            );
        }
    }
    expected.push(Impl::SingleThread);
    let rows: Vec<Impl> = b.table.rows.iter().map(|r| r.implementation).collect();
    assert_eq!(rows, expected);
    for row in &b.table.rows {
        assert_eq!(row.runs.len(), 2, "{}", row.implementation.name());
    }
    for (imp, runs) in &b.counts {
        assert_eq!(runs.len(), 2, "{}", imp.name());
    }
    match b.count_check() {
        CountCheck::Agree(c) => {
            assert_eq!(c.total(), 600);
            assert_eq!(c.failed, 60);
        }
        other => panic!("counts: {other:?}"),
    }
    assert!(b.efficiency().is_some());

    let names: Vec<String> = report.targets().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["B4 vs Go", "B4 rate"]);
    let md = report.to_markdown();
    assert!(md.contains("## B4: Server Pixels, 600 events"), "{md}");
    assert!(md.contains("Counts agree in every recorded run"), "{md}");
}

#[test]
fn without_go_crew_is_still_measured() {
    let mut opts = small();
    opts.repeat = 1;
    opts.warmup = false;
    opts.b4_go_source = std::env::temp_dir().join("crew-bench-no-such-go-pixels");
    let report = run_suite(&opts);
    let b = report.b4.as_ref().expect("B4 ran");
    let GoReference::Missing(why) = &b.go else {
        panic!("expected no Go row, got {:?}", b.go);
    };
    assert!(!why.is_empty());
    let rows: Vec<Impl> = b.table.rows.iter().map(|r| r.implementation).collect();
    assert_eq!(rows, [Impl::Pipeline, Impl::SingleThread]);
    assert!(matches!(b.count_check(), CountCheck::Agree(_)));
    let vs_go = &report.targets()[0];
    assert!(matches!(vs_go.verdict, Verdict::NotMeasured(_)));
    assert!(report.to_markdown().contains("**go-pixels row missing**"));
}
