//! `crew bench` end to end: the real binary runs a tiny worker sweep and
//! writes its files. Nothing here compares speeds: the points' counts are
//! checked (every event accounted for), not which point was faster.

use std::path::Path;
use std::process::{Command, Output};

const BATCH: u64 = 10;

fn crew_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crew"))
        .arg("bench")
        .args(args)
        .output()
        .expect("running crew")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The CSV's rows as maps from column name to cell.
fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let csv = std::fs::read_to_string(path).expect("reading sweep.csv");
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .expect("a header line")
        .split(',')
        .map(str::to_owned)
        .collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "row {line:?}");
            header
                .iter()
                .cloned()
                .zip(cells.into_iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn num(row: &std::collections::HashMap<String, String>, column: &str) -> u64 {
    row.get(column)
        .unwrap_or_else(|| panic!("no column {column}"))
        .parse()
        .unwrap_or_else(|e| panic!("{column}: {e}"))
}

#[test]
fn a_tiny_sweep_writes_its_table_csv_and_charts() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("out");
    let batch = BATCH.to_string();
    let output = crew_bench(&[
        "--sweep-only",
        "--quick",
        "--workers",
        "4,1",
        "--latency",
        "1ms",
        "--batch",
        &batch,
        "--out",
        out.to_str().expect("a UTF-8 temp path"),
    ]);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("| workers | events/s |"), "{stdout}");

    for file in ["sweep.csv", "sweep.md", "sweep.svg", "sweep.png"] {
        assert!(
            out.join(file).is_file(),
            "{file} is missing; stderr:\n{stderr}"
        );
    }
    assert!(
        !out.join("report.md").exists(),
        "--sweep-only ran the suite"
    );

    // One row per worker count, in ascending order, each balanced.
    let rows = csv_rows(&out.join("sweep.csv"));
    let workers: Vec<u64> = rows.iter().map(|r| num(r, "workers")).collect();
    assert_eq!(workers, [1, 4]);
    for row in &rows {
        let read = num(row, "read");
        let delivered = num(row, "delivered");
        let dropped = num(row, "dropped");
        let dead = num(row, "dead_lettered");
        let abandoned = num(row, "abandoned");
        assert_eq!(read, delivered + dropped + dead + abandoned, "{row:?}");
        assert_eq!((dropped, dead, abandoned), (0, 0, 0), "{row:?}");
        assert!(num(row, "window_events") > 0, "{row:?}");
        assert!(num(row, "window_events") <= delivered, "{row:?}");
        // Every event read went through the partner stage: one call per
        // started group of BATCH offsets (offsets count from 0).
        assert_eq!(num(row, "partner_calls"), read.div_ceil(BATCH), "{row:?}");
        let rate: f64 = row["events_per_sec"].parse().expect("a rate");
        assert!(rate.is_finite() && rate > 0.0, "{row:?}");
    }

    // The SVG is well-formed and holds one point marker per row.
    let svg = std::fs::read_to_string(out.join("sweep.svg")).expect("reading sweep.svg");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let c = crew_bench::chart::POINT_COLOR;
    let fill = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
    let markers = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.attribute("fill") == Some(fill.as_str()))
        .count();
    assert_eq!(markers, rows.len());
    let labels: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for w in ["1", "4"] {
        assert!(labels.contains(&w), "no x label {w}: {labels:?}");
    }

    let png = std::fs::read(out.join("sweep.png")).expect("reading sweep.png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let md = std::fs::read_to_string(out.join("sweep.md")).expect("reading sweep.md");
    assert!(
        md.contains("--sweep-only"),
        "the command line is recorded:\n{md}"
    );
}

#[test]
fn bad_sweep_arguments_are_usage_errors() {
    for args in [
        &["--sweep-only", "--latency", "0ms"][..],
        &["--sweep-only", "--latency", "soon"],
        &["--sweep-only", "--workers", "0"],
        &["--sweep-only", "--workers", "1,x"],
        &["--sweep-only", "--no-sweep"],
        &["--sweep-only", "--only", "B1"],
        &["--only", "B9"],
    ] {
        let output = crew_bench(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: stderr:\n{}",
            text(&output.stderr)
        );
    }
}
