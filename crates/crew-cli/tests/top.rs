//! `crew top --once` against a canned `/metrics` served on a loopback port:
//! the real binary, a real HTTP exchange, the printed table checked.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;

/// A crew's `/metrics` the way the admin server encodes it (OpenMetrics
/// text from prometheus-client: counters declared without `_total`, `# EOF`
/// at the end), with the names and labels of docs/metrics.md. `k` scales
/// every counter and histogram, so two calls make two scrapes of a moving
/// pipeline.
fn exposition(k: u64) -> String {
    let p = r#"pipeline="pixels""#;
    let mut t = String::new();
    let mut counter = |name: &str, series: &[(&str, u64)]| {
        t.push_str(&format!("# HELP {name} {name}.\n# TYPE {name} counter\n"));
        for (labels, value) in series {
            let sep = if labels.is_empty() { "" } else { "," };
            t.push_str(&format!("{name}_total{{{p}{sep}{labels}}} {}\n", value * k));
        }
    };
    counter("crew_events_read", &[("", 1000)]);
    counter("crew_events_delivered", &[("", 800)]);
    counter("crew_events_dropped", &[(r#"reason="consent""#, 150)]);
    counter(
        "crew_events_dead_lettered",
        &[(r#"reason="parse""#, 30), (r#"reason="invalid""#, 20)],
    );
    let stages = [
        ("parse_json", 1000, 970, 0, 30),
        ("validate", 970, 950, 0, 20),
        ("consent", 950, 800, 150, 0),
    ];
    for (metric, pick) in [
        ("crew_stage_events_in", 0),
        ("crew_stage_events_out", 1),
        ("crew_stage_events_dropped", 2),
        ("crew_stage_errors", 3),
    ] {
        let series: Vec<(String, u64)> = stages
            .iter()
            .map(|s| {
                let values = [s.1, s.2, s.3, s.4];
                (format!(r#"stage="{}""#, s.0), values[pick])
            })
            .collect();
        let series: Vec<(&str, u64)> = series.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(metric, &series);
    }
    counter(
        "crew_jobs_processed",
        &[(r#"pool="parse_json""#, 40), (r#"pool="sink""#, 40)],
    );
    let mut gauge = |name: &str, series: &[(&str, u64)]| {
        t.push_str(&format!("# HELP {name} {name}.\n# TYPE {name} gauge\n"));
        for (labels, value) in series {
            let sep = if labels.is_empty() { "" } else { "," };
            t.push_str(&format!("{name}{{{p}{sep}{labels}}} {value}\n"));
        }
    };
    gauge("crew_events_in_flight", &[("", 30)]);
    gauge("crew_budget_events", &[("", 40)]);
    gauge("crew_events_in_flight_bytes", &[("", 19_200)]);
    gauge("crew_budget_bytes", &[("", 1 << 20)]);
    gauge("crew_pipeline_ready", &[("", 1)]);
    gauge("crew_pipeline_draining", &[("", 0)]);
    gauge("crew_pipeline_uptime_seconds", &[("", 7322)]);
    gauge("crew_build_info", &[(r#"version="9.9.9""#, 1)]);
    gauge(
        "crew_pool_workers",
        &[(r#"pool="parse_json""#, 4), (r#"pool="sink""#, 2)],
    );
    gauge(
        "crew_pool_workers_busy",
        &[(r#"pool="parse_json""#, 3), (r#"pool="sink""#, 1)],
    );
    gauge(
        "crew_pool_queue_depth",
        &[(r#"pool="parse_json""#, 61), (r#"pool="sink""#, 2)],
    );
    gauge(
        "crew_pool_queue_capacity",
        &[(r#"pool="parse_json""#, 64), (r#"pool="sink""#, 16)],
    );
    gauge(
        "crew_source_end_offset",
        &[(r#"partition="0""#, 700 * k), (r#"partition="1""#, 300 * k)],
    );
    gauge(
        "crew_source_committed_offset",
        &[(r#"partition="0""#, 600 * k), (r#"partition="1""#, 290 * k)],
    );
    gauge(
        "crew_source_lag_events",
        &[(r#"partition="0""#, 100 * k), (r#"partition="1""#, 10 * k)],
    );
    // Cumulative bucket counts per `le`; the last is +Inf.
    let mut histogram = |name: &str, labels: &str, buckets: &[(&str, u64)]| {
        if !t.contains(&format!("# TYPE {name} histogram")) {
            t.push_str(&format!("# HELP {name} {name}.\n# TYPE {name} histogram\n"));
        }
        let sep = if labels.is_empty() { "" } else { "," };
        for (le, count) in buckets {
            t.push_str(&format!(
                "{name}_bucket{{{p}{sep}{labels},le=\"{le}\"}} {}\n",
                count * k
            ));
        }
        let total = buckets.last().map_or(0, |b| b.1) * k;
        t.push_str(&format!("{name}_sum{{{p}{sep}{labels}}} 1.0\n"));
        t.push_str(&format!("{name}_count{{{p}{sep}{labels}}} {total}\n"));
    };
    // 100 events: 50 within 2 ms, 100 within 4 ms.
    histogram(
        "crew_event_latency_seconds",
        "",
        &[("0.002", 50), ("0.004", 100), ("+Inf", 100)],
    );
    for (stage, _, _, _, _) in stages {
        histogram(
            "crew_stage_duration_seconds",
            &format!(r#"stage="{stage}""#),
            &[("0.00001", 0), ("0.00002", 1000), ("+Inf", 1000)],
        );
    }
    for pool in ["parse_json", "sink"] {
        // 40 jobs: 20 waited at most 1 ms, all at most 3 ms.
        histogram(
            "crew_pool_queue_wait_seconds",
            &format!(r#"pool="{pool}""#),
            &[("0.001", 20), ("0.003", 40), ("+Inf", 40)],
        );
        histogram(
            "crew_job_processing_duration_seconds",
            &format!(r#"pool="{pool}""#),
            &[("0.01", 40), ("+Inf", 40)],
        );
    }
    t.push_str("# EOF\n");
    t
}

/// A request as the test server received it.
#[derive(Debug)]
struct Request {
    /// `GET /metrics HTTP/1.1`.
    line: String,
    /// The `Accept` header's value, if any.
    accept: Option<String>,
}

/// Serves `bodies` in turn, one a connection (the last one again after
/// that), with `status`; sends each request it receives to the returned
/// channel. The thread ends with the test process.
fn serve(status: &'static str, bodies: Vec<String>) -> (String, mpsc::Receiver<Request>) {
    let responses = bodies
        .into_iter()
        .map(|body| {
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    serve_raw(responses)
}

/// Like [`serve`], with whole responses as the server writes them (head
/// and body), for responses no real server sends. Each connection is
/// closed after its response.
fn serve_raw(responses: Vec<Vec<u8>>) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let (requests, received) = mpsc::channel();
    thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // The rest of the head, up to the blank line.
            let mut accept = None;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("accept") {
                        accept = Some(value.trim().to_owned());
                    }
                }
                line.clear();
            }
            let _ = requests.send(Request {
                line: request_line.trim_end().to_owned(),
                accept,
            });
            let _ = stream.write_all(&responses[n.min(responses.len() - 1)]);
        }
    });
    (url, received)
}

fn crew(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crew"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("crew runs")
}

/// The whitespace-separated cells of the first line whose first cell is
/// `first` after the line holding `header`.
fn row(text: &str, header: &str, first: &str) -> Vec<String> {
    let start = text
        .find(header)
        .unwrap_or_else(|| panic!("no `{header}` in\n{text}"));
    text[start..]
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no `{first}` row after `{header}` in\n{text}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn number(cell: &str) -> f64 {
    cell.parse()
        .unwrap_or_else(|_| panic!("`{cell}` is not a number"))
}

#[test]
fn once_prints_a_table_of_two_scrapes() {
    // The counters move by 2 × their k=1 values between the scrapes.
    let (url, requests) = serve("200 OK", vec![exposition(1), exposition(3)]);
    let interval = 0.2;
    let output = crew(&["top", "--once", "--interval", "200ms", &url]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    for _ in 0..2 {
        let request = requests.recv().unwrap();
        assert_eq!(request.line, "GET /metrics HTTP/1.1");
        // What the admin server serves, and what `crew top` parses.
        let accept = request.accept.expect("an Accept header");
        assert!(
            accept.starts_with("application/openmetrics-text;version=1.0.0"),
            "{accept}"
        );
    }

    assert!(stdout.contains(&url), "{stdout}");
    assert!(
        stdout.contains("pipeline pixels · crew 9.9.9 · ready · up 2h 02m"),
        "{stdout}"
    );

    // Totals from the second scrape; rates = increase / time between the
    // scrapes, which is at least the interval.
    let read = row(&stdout, "EVENTS", "read");
    assert_eq!(read[1], "3000");
    let rate = number(&read[2]);
    assert!(rate > 0.0 && rate <= 2000.0 / interval, "{rate}");
    let dead = row(&stdout, "EVENTS", "dead-lettered");
    assert_eq!(dead[1], "150");
    // The rates keep the counters' proportions.
    let dead_rate = number(&dead[2]);
    assert!(
        (dead_rate / rate - 50.0 / 1000.0).abs() < 0.01,
        "{dead_rate} vs {rate}"
    );

    assert!(
        stdout.contains("in flight  30 of 40 events (75%) · 18.8 KiB of 1.0 MiB"),
        "{stdout}"
    );
    // Latency over the window: 100 events, 50 within 2 ms, the rest within
    // 4 ms; p95 is 90% into (2, 4] ms.
    assert!(
        stdout.contains("latency    p50 2.00ms · p95 3.80ms · p99 3.96ms"),
        "{stdout}"
    );

    assert!(
        stdout.contains("lag        330 events over 2 partitions · most 300 on partition 0"),
        "{stdout}"
    );

    let consent = row(&stdout, "STAGE", "consent");
    assert_eq!(consent[3..8], ["2850", "2400", "450", "0", "-"]);
    // 1000 calls a scrape, each in (10, 20] µs: p99 is 99% into the bucket.
    assert_eq!(consent[8], "20µs");
    let parse = row(&stdout, "STAGE", "parse_json");
    assert_eq!(parse[6], "90", "parse_json errors");

    let pool = row(&stdout, "POOL", "parse_json");
    assert_eq!(pool[1..3], ["3/4", "61/64"]);
    // Queue wait: 80 jobs in the window, half within 1 ms.
    assert_eq!(pool[5..8], ["1.00ms", "2.80ms", "2.96ms"]);
    let sink = row(&stdout, "POOL", "sink");
    assert_eq!(sink[1..3], ["1/2", "2/16"]);

    // The rate of offsets, named for what it is and explained.
    let header = row(&stdout, "PARTITION", "PARTITION");
    assert_eq!(header.last().map(String::as_str), Some("COMMITTED/S"));
    assert!(
        stdout.contains("COMMITTED/S: offsets committed per second"),
        "{stdout}"
    );
    let partition = row(&stdout, "PARTITION", "0");
    assert_eq!(partition[1..4], ["2100", "1800", "300"]);
    let partition = row(&stdout, "PARTITION", "1");
    assert_eq!(partition[1..4], ["900", "870", "30"]);

    let consent = row(&stdout, "OUTCOME", "dropped");
    assert_eq!(consent[1..3], ["consent", "450"]);
    let parse = row(&stdout, "OUTCOME", "dead-lettered");
    assert_eq!(parse[1..3], ["invalid", "60"]);
}

#[test]
fn an_error_status_fails_with_the_status() {
    let (url, _requests) = serve("404 Not Found", vec![String::new()]);
    let output = crew(&["top", "--once", "--interval", "10ms", &url]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("404 Not Found"), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    assert!(output.stdout.is_empty());
}

/// Runs `crew top --once` against a server answering `response`, and
/// returns its standard error after checking it failed the way a user
/// error fails (exit code 1, no panic) and named the URL.
fn fails_on(response: Vec<u8>) -> String {
    let (url, _requests) = serve_raw(vec![response]);
    let output = crew(&["top", "--once", "--interval", "10ms", &url]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    assert!(output.stdout.is_empty());
    stderr
}

#[test]
fn a_chunk_size_near_the_largest_integer_is_an_error_not_a_panic() {
    let stderr = fails_on(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\ncrew_x 1\n\r\n0\r\n\r\n"
            .to_vec(),
    );
    assert!(stderr.contains("a chunked body cut short"), "{stderr}");
}

#[test]
fn a_content_length_of_the_largest_integer_is_an_error_not_a_panic() {
    let stderr = fails_on(
        b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\ncrew_x 1\n".to_vec(),
    );
    assert!(
        stderr.contains("a Content-Length of 18446744073709551615 bytes, over the 64 MiB"),
        "{stderr}"
    );
}

#[test]
fn a_silent_server_times_out_with_a_plain_message() {
    // Accepts and never answers; the connections stay open until the test
    // process ends.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming() {
            open.push(stream);
        }
    });
    let output = crew(&["top", "--once", "--interval", "10ms", &url]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no response within 5s"), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
}

#[test]
fn another_exporter_is_not_mistaken_for_crew() {
    let (url, _requests) = serve("200 OK", vec!["# TYPE up gauge\nup 1\n".to_owned()]);
    let output = crew(&["top", "--once", "--interval", "10ms", &url]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no crew_ metrics"), "{stderr}");
}

#[test]
fn an_unknown_pipeline_names_the_ones_there() {
    let (url, _requests) = serve("200 OK", vec![exposition(1)]);
    let output = crew(&[
        "top",
        "--once",
        "--interval",
        "10ms",
        "--pipeline",
        "other",
        &url,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no pipeline `other`") && stderr.contains("pixels"),
        "{stderr}"
    );
}

#[test]
fn the_dashboard_needs_a_terminal() {
    // stdout is a pipe here: no TUI, and a pointer to --once instead.
    let output = crew(&["top", "http://127.0.0.1:9/metrics"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--once"), "{stderr}");
}

#[test]
fn bad_urls_and_intervals_are_refused() {
    let output = crew(&["top", "--once", "https://127.0.0.1:9598/metrics"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("only http://"));
    let output = crew(&["top", "--once", "--interval", "soon"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
}
