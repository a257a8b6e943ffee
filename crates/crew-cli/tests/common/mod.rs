//! What more than one test file of crew-cli reads the same way.

// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One HTTP/1.1 GET on a fresh connection, reading until the server closes
/// it (at most `timeout` per read): the status and the body.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("the admin server accepts");
    stream.set_read_timeout(Some(timeout)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The samples of a `/metrics` body with the parser Prometheus users know:
/// `name{labels}` → value, label pairs sorted, the `pipeline` label left
/// out. Histograms are left out too (their `_count` series stand for them).
pub fn samples_of(body: &str) -> BTreeMap<String, f64> {
    let lines = body.lines().map(|line| Ok(line.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let mut samples = BTreeMap::new();
    for sample in parsed.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .filter(|(name, _)| name.as_str() != "pipeline")
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        labels.sort();
        samples.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    samples
}

/// The metric table rows of a docs/metrics.md text, name to type (rows
/// whose first cell is a `` `crew_…` `` name): what deploy/check.sh's awk
/// reads too.
pub fn documented_in(docs: &str) -> BTreeMap<String, String> {
    docs.lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix('|')?.split('|');
            let name = cells.next()?.trim().strip_prefix('`')?.strip_suffix('`')?;
            let kind = cells.next()?.trim();
            let valid = name.starts_with("crew_")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            valid.then(|| (name.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// Asks `probe` until it answers `Ok`, failing with its last `Err` (what it
/// saw) after `guard`. A condition poll, not a timed wait: it ends on the
/// answer, whatever the machine's load; the pause between looks only spares
/// the CPU.
#[track_caller]
pub fn poll_until<T>(guard: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + guard;
    loop {
        match probe() {
            Ok(answer) => return answer,
            Err(seen) if Instant::now() >= deadline => panic!("HANG after {guard:?}: {seen}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
