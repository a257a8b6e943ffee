//! `crew run` as a real process: the example's summary adds up, `/metrics`
//! scraped mid-run matches the summary, and signals drain (one) or stop at
//! once (two) with a second run resuming from the file source's checkpoint.
//!
//! No test sleeps to let something happen: each waits for what it needs (a
//! line on a pipe, a counter on `/metrics`, the process's exit), under a
//! guard that fails the test instead of hanging.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crew_pipeline::sources::{GeneratorConfig, PixelsEvents};

mod common;

use common::{crew, get, samples_of, summary, Running};

/// The longest any wait in these tests may take before it fails.
const GUARD: Duration = Duration::from_secs(120);

/// [`common::poll_until`] with this file's [`GUARD`].
#[track_caller]
fn poll_until<T>(probe: impl FnMut() -> Result<T, String>) -> T {
    common::poll_until(GUARD, probe)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `crew run FILE` in `dir` under this file's [`GUARD`].
fn start_crew(dir: &Path, file: &Path, env: &[(&str, &str)], stdin: Stdio) -> Running {
    Running::start(dir, file, env, stdin, GUARD)
}

/// Parses a `/metrics` body into `name{labels}` → value, the label pairs
/// sorted, with the parser Prometheus users know.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, body) = get(addr, "/metrics", GUARD);
    assert_eq!(status, 200, "{body}");
    samples_of(&body)
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> u64 {
    samples
        .get(key)
        .map(|v| *v as u64)
        .unwrap_or_else(|| panic!("no {key} in {samples:#?}"))
}

fn lines_of(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn event_ids<'a>(lines: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("output is JSON");
            value["event_id"]
                .as_str()
                .expect("every output event has an event_id")
                .to_owned()
        })
        .collect()
}

#[test]
fn the_example_accounts_for_every_event_and_writes_where_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let run = start_crew(
        dir.path(),
        &workspace().join("examples/pixels.toml"),
        &[("CREW_EVENTS", "20000")],
        Stdio::null(),
    );
    let (status, stdout, stderr) = run.finish();
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    let s = summary(&stdout);
    assert_eq!(s["read"], 20_000, "{stdout}");
    assert_eq!(
        s["read"],
        s["delivered"] + s["dropped"] + s["dead-lettered"],
        "{stdout}"
    );
    assert_eq!(s["abandoned"], 0, "{stdout}");
    assert_eq!(
        s["dropped"],
        s["dropped/consent"] + s["dropped/region_opt_out"]
    );
    // 1% malformed and 1% invalid, exactly (the generator's shares are exact).
    assert_eq!(s["dead-lettered/parse"], 200, "{stdout}");
    // Invalid lines are floor(n × share) or one less (see GeneratorConfig).
    assert!(
        (199..=200).contains(&s["dead-lettered/invalid"]),
        "{stdout}"
    );
    assert!(stdout.contains("→ out/partners.ndjson"), "{stdout}");
    assert!(stdout.contains("events/s") && stdout.contains("latency p99"));

    let delivered = lines_of(&dir.path().join("out/partners.ndjson"));
    assert_eq!(delivered.len() as u64, s["delivered"]);
    let ids = event_ids(&delivered);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "no event twice"
    );
    let dead = lines_of(&dir.path().join("out/dead-letters.ndjson"));
    assert_eq!(dead.len() as u64, s["dead-lettered"]);
    for line in &dead {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let reason = record["reason"].as_str().unwrap();
        assert!(reason == "parse" || reason == "invalid", "{line}");
    }
}

/// A pipeline on stdin: the test decides how many events there are and when
/// the source ends.
const STDIN_PIPELINE: &str = r#"
[pipeline]
name = "scraped"
workers = 2
commit_interval = "20ms"
flush_interval = "10ms"

[source]
type = "stdin"

[[stages]]
name = "parse"
type = "parse_json"

[[stages]]
name = "consent"
type = "filter"
rules = [{ reason = "consent", when = { op = "not_true", field = "consent.marketing" } }]

[sink]
type = "file"
path = "out.ndjson"

[dead_letter]
type = "file"
path = "dead.ndjson"
"#;

#[test]
fn metrics_scraped_mid_run_parse_and_match_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scraped.toml");
    fs::write(&config, STDIN_PIPELINE).unwrap();
    let mut run = start_crew(dir.path(), &config, &[], Stdio::piped());
    let admin = run.admin();
    assert_eq!(get(admin, "/health", GUARD), (200, "ok\n".to_owned()));

    let mut input = Vec::new();
    let summary_of_input = PixelsEvents::new(&GeneratorConfig {
        malformed: 0.1,
        ..GeneratorConfig::default()
    })
    .unwrap()
    .write_ndjson(&mut input, 3_000)
    .unwrap();
    let mut stdin = run.child.stdin.take().expect("piped");
    stdin.write_all(&input).unwrap();
    stdin.flush().unwrap();

    // Wait until every line written is finished, as /metrics tells it. Each
    // scrape on the way must see every counter at or above the last one's.
    let mut previous: BTreeMap<String, f64> = BTreeMap::new();
    let samples = poll_until(|| {
        let samples = scrape(admin);
        for (key, value) in &samples {
            let counter = key.contains("_total{") || key.contains("_count{");
            if let Some(before) = previous.get(key).filter(|_| counter) {
                assert!(value >= before, "{key} went from {before} to {value}");
            }
        }
        previous.clone_from(&samples);
        let finished = value(&samples, "crew_events_delivered_total{}")
            + samples
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("crew_events_dropped_total")
                        || k.starts_with("crew_events_dead_lettered_total")
                })
                .map(|(_, v)| *v as u64)
                .sum::<u64>();
        if finished == 3_000 {
            Ok(samples)
        } else {
            Err(format!("{finished} of 3000 finished: {samples:#?}"))
        }
    });
    // The stdin source is connected and reading: ready.
    assert_eq!(get(admin, "/ready", GUARD).0, 200);
    assert_eq!(value(&samples, "crew_events_read_total{}"), 3_000);
    assert_eq!(value(&samples, "crew_events_in_flight{}"), 0);
    assert_eq!(value(&samples, "crew_pipeline_ready{}"), 1);
    assert_eq!(
        value(&samples, "crew_stage_events_in_total{stage=parse}"),
        3_000
    );
    assert_eq!(
        value(&samples, "crew_stage_errors_total{stage=parse}"),
        value(&samples, "crew_events_dead_lettered_total{reason=parse}")
    );
    assert_eq!(
        value(&samples, "crew_stage_events_out_total{stage=parse}"),
        value(&samples, "crew_stage_events_in_total{stage=consent}")
    );
    assert_eq!(
        value(&samples, "crew_events_dead_lettered_total{reason=parse}"),
        summary_of_input.malformed
    );
    assert_eq!(value(&samples, "crew_pool_workers{pool=parse}"), 2);
    // Histograms: one latency per finished event, one call time per event
    // a stage saw.
    assert_eq!(value(&samples, "crew_event_latency_seconds_count{}"), 3_000);
    assert_eq!(
        value(&samples, "crew_stage_duration_seconds_count{stage=consent}"),
        value(&samples, "crew_stage_events_in_total{stage=consent}")
    );

    drop(stdin); // end of input: the source ends, the run finishes.
    let (status, stdout, stderr) = run.finish();
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    let s = summary(&stdout);
    assert_eq!(s["read"], value(&samples, "crew_events_read_total{}"));
    assert_eq!(
        s["delivered"],
        value(&samples, "crew_events_delivered_total{}")
    );
    assert_eq!(
        s["dropped/consent"],
        value(&samples, "crew_events_dropped_total{reason=consent}")
    );
    assert_eq!(
        s["dead-lettered/parse"],
        value(&samples, "crew_events_dead_lettered_total{reason=parse}")
    );
    assert_eq!(
        lines_of(&dir.path().join("out.ndjson")).len() as u64,
        s["delivered"]
    );
}

/// A file source with a checkpoint, writing to `sink_path` (a FIFO in the
/// first run, so the test holds the sink still by not reading).
fn file_pipeline(dir: &Path, sink_path: &Path, drain: &str) -> PathBuf {
    let config = dir.join(format!("file-{drain}.toml"));
    fs::write(
        &config,
        format!(
            r#"
[pipeline]
name = "resume"
workers = 2
drain_timeout = "{drain}"
commit_interval = "20ms"
flush_interval = "10ms"
# A budget the bounded hand-offs between source, pools and sink can fill
# (they hold about a dozen batches), so a stuck sink fills it.
[pipeline.batch]
max_events = 20
[pipeline.budget]
max_events = 200

[source]
type = "file"
path = "input.ndjson"
checkpoint = "input.checkpoint"

[[stages]]
name = "parse"
type = "parse_json"

[sink]
type = "file"
path = "{}"
mode = "append"
fsync = "never"

[dead_letter]
type = "file"
path = "dead.ndjson"
mode = "append"
fsync = "never"
"#,
            sink_path.display()
        ),
    )
    .unwrap();
    config
}

const INPUT_EVENTS: u64 = 20_000;

/// Writes the input file; returns every event_id in it.
fn write_input(dir: &Path) -> BTreeSet<String> {
    let mut input = Vec::new();
    PixelsEvents::new(&GeneratorConfig::default())
        .unwrap()
        .write_ndjson(&mut input, INPUT_EVENTS)
        .unwrap();
    fs::write(dir.join("input.ndjson"), &input).unwrap();
    let lines: Vec<String> = String::from_utf8(input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    event_ids(&lines).into_iter().collect()
}

/// The two sets are equal; on failure, says how many differ and shows a few.
#[track_caller]
fn assert_same_ids(got: &BTreeSet<String>, expected: &BTreeSet<String>) {
    let missing: Vec<_> = expected.difference(got).collect();
    let extra: Vec<_> = got.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} event_ids missing (first: {:?}), {} unexpected (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)],
    );
}

fn mkfifo(path: &Path) {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path this test owns.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo failed");
}

/// Opens the FIFO for reading on a thread (the open waits for crew's sink to
/// open it for writing) and hands over each line it reads. The hand-over is
/// a rendezvous: while the test takes no line, the thread reads no more, the
/// pipe fills and crew's sink blocks.
fn read_fifo(path: PathBuf) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::sync_channel(0);
    thread::spawn(move || {
        let fifo = fs::File::open(&path).expect("the FIFO opens");
        for line in BufReader::new(fifo).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Takes `n` lines, failing instead of hanging.
fn take_lines(lines: &mpsc::Receiver<String>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            lines
                .recv_timeout(GUARD)
                .expect("HANG: the sink wrote no more")
        })
        .collect()
}

#[test]
fn sigterm_drains_then_a_second_run_resumes_from_the_checkpoint_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_input(dir.path());
    let fifo = dir.path().join("first.fifo");
    mkfifo(&fifo);
    let lines = read_fifo(fifo.clone());
    let run = start_crew(
        dir.path(),
        &file_pipeline(dir.path(), &fifo, "60s"),
        &[],
        Stdio::null(),
    );
    // The sink is writing; the source is far from the end, held back by the
    // budget behind a FIFO nobody reads now.
    let mut first = take_lines(&lines, 100);
    run.signal(libc::SIGTERM);
    // Draining needs the sink: read everything it writes until it closes.
    let (status, stdout, stderr) = {
        let drained = thread::spawn(move || lines.iter().collect::<Vec<_>>());
        let finished = run.finish();
        first.extend(drained.join().unwrap());
        finished
    };
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    let s = summary(&stdout);
    assert!(stdout.contains("a shutdown was requested"), "{stdout}");
    assert_eq!(s["abandoned"], 0, "{stdout}");
    assert!(s["read"] < INPUT_EVENTS, "stopped mid-file: {stdout}");
    assert_eq!(s["delivered"], first.len() as u64);

    let second_out = dir.path().join("second.ndjson");
    let run = start_crew(
        dir.path(),
        &file_pipeline(dir.path(), &second_out, "60s"),
        &[],
        Stdio::null(),
    );
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    let s2 = summary(&stdout);
    // Resumed where the first run's commit left off: together, exactly the
    // file, nothing twice.
    assert_eq!(s["read"] + s2["read"], INPUT_EVENTS, "{stdout}");
    let mut ids = event_ids(&first);
    ids.extend(event_ids(&lines_of(&second_out)));
    assert_eq!(ids.len() as u64, INPUT_EVENTS, "no duplicates");
    assert_same_ids(&ids.into_iter().collect(), &expected);
}

#[test]
fn a_second_signal_stops_at_once_and_abandoned_events_are_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_input(dir.path());
    let fifo = dir.path().join("first.fifo");
    mkfifo(&fifo);
    let lines = read_fifo(fifo.clone());
    let run = start_crew(
        dir.path(),
        &file_pipeline(dir.path(), &fifo, "10m"),
        &[],
        Stdio::null(),
    );
    let first = take_lines(&lines, 100);
    // Nobody reads the FIFO from here on: the sink blocks once the pipe is
    // full. Wait until the budget is full too (200 events in flight): the
    // source is then held back, and as none of those events can be flushed,
    // the drain cannot finish; only the second signal ends the run.
    poll_until(
        || match value(&scrape(run.admin()), "crew_events_in_flight{}") {
            200.. => Ok(()),
            in_flight => Err(format!("the budget never filled: {in_flight} in flight")),
        },
    );
    run.signal(libc::SIGTERM);
    // Pending signals of one kind merge into one, so the second is sent only
    // once the first has been handled: the pipeline says it is draining.
    let status = poll_until(|| match get(run.admin(), "/ready", GUARD) {
        (status, body) if body == "draining\n" => Ok(status),
        (_, body) => Err(format!("never draining: {body}")),
    });
    assert_eq!(status, 503);
    assert_eq!(value(&scrape(run.admin()), "crew_pipeline_draining{}"), 1);
    run.signal(libc::SIGTERM);
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(3), "{stdout}\n{stderr}");
    let s = summary(&stdout);
    assert!(s["abandoned"] > 0, "{stdout}");
    // Everything the FIFO holds was written, some of it acked: read it to
    // the end (crew has exited, so the writing end is closed). The last line
    // may be cut where the stuck write stopped; such an event was not acked.
    let mut written = first;
    written.extend(lines.iter());
    if written
        .last()
        .is_some_and(|line| serde_json::from_str::<serde_json::Value>(line).is_err())
    {
        written.pop();
    }

    let second_out = dir.path().join("second.ndjson");
    let run = start_crew(
        dir.path(),
        &file_pipeline(dir.path(), &second_out, "60s"),
        &[],
        Stdio::null(),
    );
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    let mut ids: BTreeSet<String> = event_ids(&written).into_iter().collect();
    ids.extend(event_ids(&lines_of(&second_out)));
    assert_same_ids(&ids, &expected);
}

/// The metric names docs/metrics.md lists (the first column of its tables)
/// that a pipeline without Kafka or HTTP serves: all but the `crew_kafka_`
/// and `crew_http_sink_` ones, which come only with such a component (so
/// serving one here fails the comparison; the exporter's unit tests check
/// those families).
fn documented_metrics() -> BTreeSet<String> {
    let docs = fs::read_to_string(workspace().join("docs/metrics.md")).unwrap();
    common::documented_in(&docs)
        .into_keys()
        .filter(|name| !name.starts_with("crew_kafka_") && !name.starts_with("crew_http_sink_"))
        .collect()
}

/// The metric names a scrape holds, histograms by their family name.
fn exported_metrics(samples: &BTreeMap<String, f64>, histograms: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = samples
        .keys()
        .map(|key| key.split('{').next().unwrap_or_default().to_owned())
        .map(|name| {
            ["_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).map(str::to_owned))
                .unwrap_or(name)
        })
        .collect();
    // prometheus-parse folds a histogram's buckets into one sample under the
    // family name; the body still has the `# TYPE … histogram` lines.
    names.extend(
        histograms
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.strip_suffix(" histogram"))
            .map(str::to_owned),
    );
    names
}

#[test]
fn the_exporter_serves_exactly_the_metrics_docs_metrics_md_lists() {
    let dir = tempfile::tempdir().unwrap();
    let run = start_crew(
        dir.path(),
        &workspace().join("examples/pixels.toml"),
        &[("CREW_EVENTS", "100000000")],
        Stdio::null(),
    );
    let documented = documented_metrics();
    assert!(
        documented.len() > 30,
        "the docs' tables parse: {documented:?}"
    );
    // Some series appear only once there is something to say (a drop reason,
    // a commit): wait for every documented name, then compare both ways.
    let exported = poll_until(|| {
        let (status, body) = get(run.admin(), "/metrics", GUARD);
        assert_eq!(status, 200, "{body}");
        let exported = exported_metrics(&samples_of(&body), &body);
        if documented.is_subset(&exported) {
            Ok(exported)
        } else {
            Err(format!(
                "documented, never exported: {:?}",
                documented.difference(&exported).collect::<Vec<_>>()
            ))
        }
    });
    assert_eq!(
        exported.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "exported but not in docs/metrics.md"
    );
    run.signal(libc::SIGTERM);
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("a shutdown was requested"), "{stdout}");
}

/// A pipeline from generated events to stdout, its admin on `listen`.
fn stdout_pipeline(dir: &Path, listen: &str, events: u64) -> PathBuf {
    let config = dir.join("stdout.toml");
    fs::write(
        &config,
        format!(
            r#"
[pipeline]
name = "to-stdout"
[admin]
listen = "{listen}"
[source]
type = "generator"
count = {events}
[[stages]]
name = "parse"
type = "parse_json"
[sink]
type = "stdout"
[dead_letter]
type = "file"
path = "dead.ndjson"
mode = "truncate"
"#
        ),
    )
    .unwrap();
    config
}

#[test]
fn with_a_stdout_sink_stdout_holds_only_events_and_the_summary_goes_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let config = stdout_pipeline(dir.path(), "127.0.0.1:0", 500);
    let output = crew()
        .arg("run")
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .expect("crew runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 500, "{stdout}");
    assert_eq!(event_ids(&lines).len(), 500);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(summary(&stderr)["delivered"], 500, "{stderr}");
}

#[test]
fn a_second_instance_on_a_taken_port_fails_before_touching_the_outputs() {
    let dir = tempfile::tempdir().unwrap();
    // The port is held by this test; the outputs hold an earlier run's data.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = dir.path().join("dead.ndjson");
    fs::write(&dead, "an earlier run's dead letter\n").unwrap();
    let config = stdout_pipeline(dir.path(), &taken.local_addr().unwrap().to_string(), 500);
    let output = crew()
        .arg("run")
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .expect("crew runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("binding the admin server"), "{stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(
        fs::read_to_string(&dead).unwrap(),
        "an earlier run's dead letter\n",
        "the truncating output was not opened"
    );
}

#[test]
fn an_admin_client_that_never_finishes_its_request_does_not_keep_crew_alive() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    PixelsEvents::new(&GeneratorConfig::default())
        .unwrap()
        .write_ndjson(&mut input, 100)
        .unwrap();
    let config = dir.path().join("scraped.toml");
    fs::write(&config, STDIN_PIPELINE).unwrap();
    let mut run = start_crew(dir.path(), &config, &[], Stdio::piped());
    // Half a request, and the connection held open until the test ends.
    let mut stuck = TcpStream::connect(run.admin()).unwrap();
    stuck.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let mut stdin = run.child.stdin.take().expect("piped");
    stdin.write_all(&input).unwrap();
    drop(stdin); // the source ends; the run finishes and crew must exit
    let (status, stdout, stderr) = run.finish();
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    assert_eq!(summary(&stdout)["read"], 100, "{stdout}");
    drop(stuck);
}
