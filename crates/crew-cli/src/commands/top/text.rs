//! `crew top --once`: the view as plain text, one aligned table a section.

use std::fmt::Write;

use super::view::{Table, View};

/// The whole view: a headline, the event totals, then stages, pools,
/// partitions and reasons.
pub fn render(view: &View) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "crew top · {}", view.url);
    let _ = writeln!(out, "{}", view.headline(true));
    out.push('\n');
    table(&mut out, &view.events_table());
    let _ = writeln!(out, "in flight  {}", view.in_flight_line());
    let _ = writeln!(out, "latency    {}", view.latency_line());
    let _ = writeln!(out, "lag        {}", view.lag_line());
    if let Some(kafka) = view.kafka_line() {
        let _ = writeln!(out, "kafka      {kafka}");
    }
    if let Some(http) = view.http_line() {
        let _ = writeln!(out, "http       {http}");
    }
    for section in [
        view.stages_table(),
        view.pools_table(0),
        view.partitions_table(),
        view.reasons_table(),
    ] {
        out.push('\n');
        table(&mut out, &section);
    }
    out.push('\n');
    let _ = writeln!(out, "{}", view.problems_line());
    out
}

/// Appends `table` with its columns aligned: names to the left, numbers to
/// the right.
pub fn table(out: &mut String, table: &Table) {
    let columns = table.header.len();
    let mut widths: Vec<usize> = table.header.iter().map(|h| h.chars().count()).collect();
    for row in &table.rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.text.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            if i < table.left {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(table.header.clone());
    if table.rows.is_empty() {
        line(vec!["(none)"]);
    }
    for row in &table.rows {
        let cells: Vec<&str> = row.iter().take(columns).map(|c| c.text.as_str()).collect();
        line(cells);
    }
    if let Some(legend) = table.legend {
        out.push_str(legend);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::metrics::{tests::canned, Metrics};
    use super::super::view::{Cell, Scraped, COMMITTED_LEGEND};
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut out = String::new();
        table(
            &mut out,
            &Table {
                title: "T",
                left: 1,
                header: vec!["NAME", "N"],
                legend: Some("N: a number"),
                rows: vec![
                    vec![Cell::from("a".to_owned()), Cell::from("1234".to_owned())],
                    vec![Cell::from("µs-long".to_owned()), Cell::from("5".to_owned())],
                ],
            },
        );
        assert_eq!(
            out,
            "NAME        N\na        1234\nµs-long     5\nN: a number\n"
        );
    }

    #[test]
    fn the_whole_view_reads_as_a_report() {
        let t0 = Instant::now();
        let before = Scraped {
            at: t0,
            metrics: Metrics::parse(&canned(1.0)),
        };
        let now = Scraped {
            at: t0 + Duration::from_secs(2),
            metrics: Metrics::parse(&canned(2.0)),
        };
        let view = View::build("http://h:1/metrics", None, Some(&before), &now).unwrap();
        let text = render(&view);
        let row = |first: &str| -> Vec<String> {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(first))
                .unwrap_or_else(|| panic!("no `{first}` row in\n{text}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(row("read"), ["read", "2000", "500"]);
        assert_eq!(
            row("consent"),
            ["consent", "480", "405", "1920", "1620", "300", "0", "0", "91µs"]
        );
        assert_eq!(row("parse_json")[..4], ["parse_json", "500", "485", "2000"]);
        assert!(text.contains("in flight  10 of 40 events (25%)"), "{text}");
        assert!(
            text.contains("p50 1.00ms · p95 55.0ms · p99 91.0ms"),
            "{text}"
        );
        assert!(text.contains("sink retries 2"), "{text}");
        let header = row("PARTITION");
        assert_eq!(header.last().map(String::as_str), Some("COMMITTED/S"));
        assert!(text.contains(COMMITTED_LEGEND), "{text}");
    }
}
