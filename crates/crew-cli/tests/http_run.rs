//! `crew run` with an HTTP sink as a real process, against a real HTTP
//! server on a loopback port of the test (axum, on a thread of its own):
//!
//! - `examples/pixels-http.toml` on 20,000 generated events: every event
//!   the stages pass arrives exactly once, and what crew reports delivered
//!   is what the service accepted.
//! - A service that answers 503 when more than a few requests overlap: the
//!   adaptive limit comes down, and `/metrics` (and `crew top`) show it
//!   while the run goes on; SIGTERM then drains, nothing delivered twice.
//! - A service that answers 400 to some bodies: exactly the events of those
//!   bodies end in the dead-letter file, with reason `http_400`.
//! - `crew validate` names a wrong `uri` and its line; `crew test` runs the
//!   example's tests, which are examples/pixels.tests.toml's.
//!
//! No test sleeps to let something happen: each waits for what it needs (a
//! counter on `/metrics`, the process's exit) under a guard that fails the
//! test instead of hanging. The service holds each request for a few
//! milliseconds in the overload test only: that is its latency, which is
//! what lets requests overlap, not a synchronization.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use crew_pipeline::sources::{GeneratorConfig, PixelsEvents};
use crew_pipeline::{Event, Origin, Outcome};

mod common;

use common::{crew, get, samples_of, summary, Running};

/// The longest any wait may take before it fails the test: generous, for a
/// loaded 2-core machine running a debug build.
const GUARD: Duration = Duration::from_secs(180);

/// Events of the runs that end on their own.
const EVENTS: u64 = 20_000;

/// [`common::poll_until`] with this file's [`GUARD`].
#[track_caller]
fn poll_until<T>(probe: impl FnMut() -> Result<T, String>) -> T {
    common::poll_until(GUARD, probe)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> PathBuf {
    workspace().join("examples/pixels-http.toml")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

// --- The service ---

/// What the service answers to a body, given how many requests it is
/// serving at that moment (this one included).
type Answer = dyn Fn(&[u8], usize) -> (StatusCode, String) + Send + Sync;

struct Service {
    answer: Box<Answer>,
    /// How long each request is held before it is answered.
    latency: Duration,
    /// The records (NDJSON lines) of every body answered 2xx.
    accepted: Mutex<Vec<String>>,
    /// The records of every body answered 4xx.
    refused: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// A real HTTP server on a free loopback port, on a thread of its own; it
/// stops when dropped.
struct Server {
    service: Arc<Service>,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    fn start(
        latency: Duration,
        answer: impl Fn(&[u8], usize) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> Server {
        let service = Arc::new(Service {
            answer: Box::new(answer),
            latency,
            accepted: Mutex::default(),
            refused: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/events", post(handle))
            .with_state(Arc::clone(&service));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Server {
            service,
            url,
            stop: Some(stop),
        }
    }

    fn accepted(&self) -> Vec<String> {
        lock(&self.service.accepted).clone()
    }

    fn refused(&self) -> Vec<String> {
        lock(&self.service.refused).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn handle(State(service): State<Arc<Service>>, body: Bytes) -> (StatusCode, String) {
    let now = service.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    service.peak.fetch_max(now, Ordering::SeqCst);
    if !service.latency.is_zero() {
        tokio::time::sleep(service.latency).await;
    }
    let (status, text) = (service.answer)(&body, now);
    let records = || -> Vec<String> {
        String::from_utf8_lossy(&body)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    if status.is_success() {
        lock(&service.accepted).extend(records());
    } else if status.is_client_error() {
        lock(&service.refused).extend(records());
    }
    service.in_flight.fetch_sub(1, Ordering::SeqCst);
    (status, text)
}

fn ok(_: &[u8], _: usize) -> (StatusCode, String) {
    (StatusCode::OK, String::new())
}

// --- crew ---

/// `crew run FILE` in `dir` under this file's [`GUARD`].
fn start_crew(dir: &Path, file: &Path, env: &[(&str, &str)]) -> Running {
    Running::start(dir, file, env, Stdio::null(), GUARD)
}

/// The example with its `[sink]` replaced by an HTTP sink to `url` with
/// `extra` settings, and dead letters to `dead.ndjson`; written in `dir`.
fn pipeline(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let text = fs::read_to_string(example()).unwrap();
    let head = &text[..text.find("\n[sink]\n").expect("the example has a [sink]") + 1];
    let path = dir.join("pipeline.toml");
    fs::write(
        &path,
        format!(
            "{head}[sink]\ntype = \"http\"\nuri = \"{url}\"\n{extra}\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n"
        ),
    )
    .unwrap();
    path
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn event_id(value: &serde_json::Value) -> String {
    value["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id in {value}"))
        .to_owned()
}

/// The event ids of `records`, checking that none comes twice.
fn ids_once(records: &[String], what: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for record in records {
        let id = event_id(&json(record));
        assert!(ids.insert(id.clone()), "{what}: {id} came twice");
    }
    ids
}

/// The event ids the example's stages pass for its first `count` generated
/// events (seed 1, 1% malformed, 1% invalid), found in this process with
/// `crew_pipeline::pixels::stages()` (which a unit test of crew-cli checks
/// against the example's stages).
fn expected_delivered(count: u64) -> BTreeSet<String> {
    let mut events = PixelsEvents::new(&GeneratorConfig {
        malformed: 0.01,
        invalid: 0.01,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let stages = crew_pipeline::pixels::stages();
    let mut delivered = BTreeSet::new();
    let mut line = Vec::new();
    for offset in 0..count {
        line.clear();
        events.next_line(&mut line);
        let mut event = Event::new(
            Origin {
                partition: 0,
                offset,
            },
            line.clone(),
        );
        let kept = stages
            .iter()
            .all(|(_, stage)| matches!(stage.process(&mut event), Ok(Outcome::Keep)));
        if kept {
            delivered.insert(event_id(&json(&String::from_utf8_lossy(&line))));
        }
    }
    delivered
}

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

// --- The tests ---

#[test]
fn every_delivered_event_reaches_the_service_exactly_once() {
    let server = Server::start(Duration::ZERO, ok);
    let dir = tempfile::tempdir().unwrap();
    let events = EVENTS.to_string();
    let run = start_crew(
        dir.path(),
        &example(),
        &[("CREW_EVENTS", &events), ("CREW_HTTP_URI", &server.url)],
    );
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    let s = summary(&stdout);
    assert_eq!(s["read"], EVENTS, "{stdout}");
    assert_eq!(
        s["read"],
        s["delivered"] + s["dropped"] + s["dead-lettered"],
        "{stdout}"
    );
    assert_eq!(s["abandoned"], 0, "{stdout}");
    assert!(
        stdout.contains(&format!("→ http POST {}", server.url)),
        "{stdout}"
    );

    let accepted = server.accepted();
    let ids = ids_once(&accepted, "accepted");
    assert_eq!(ids.len() as u64, s["delivered"], "{stdout}");
    assert_same_ids(&ids, &expected_delivered(EVENTS));
    assert!(server.refused().is_empty());
    // What the service got is the stages' output: partner fields added.
    let first = json(&accepted[0]);
    assert!(
        first["partner"].is_string() && first["processed_at"].is_string(),
        "{first}"
    );

    let dead = fs::read_to_string(dir.path().join("out/dead-letters.ndjson")).unwrap();
    assert_eq!(dead.lines().count() as u64, s["dead-lettered"]);
}

#[test]
fn an_overloaded_service_brings_the_limit_down_and_metrics_show_it() {
    /// More requests at once than this get a 503.
    const CAPACITY: usize = 4;
    /// The limit the sink starts from (and cannot exceed).
    const START: f64 = 16.0;
    let server = Server::start(Duration::from_millis(5), |_, in_flight| {
        if in_flight > CAPACITY {
            (StatusCode::SERVICE_UNAVAILABLE, "over capacity".to_owned())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(
        dir.path(),
        &server.url,
        "max_events = 50\n\
         adaptive = { initial_limit = 16, max_limit = 16 }\n\
         retry = { max_attempts = 100, initial_backoff = \"1ms\", max_backoff = \"20ms\" }",
    );
    // Endless for this test: it stops the run once it has seen what it
    // looks for.
    let run = start_crew(dir.path(), &file, &[("CREW_EVENTS", "100000000")]);

    let seen = poll_until(|| {
        let (status, body) = get(run.admin(), "/metrics", GUARD);
        assert_eq!(status, 200, "{body}");
        let samples = samples_of(&body);
        let value = |key: &str| samples.get(key).copied();
        let limit = value("crew_http_sink_concurrency_limit{sink=sink}");
        let decreases = value("crew_http_sink_limit_changes_total{direction=decrease,sink=sink}");
        let backpressure = value("crew_http_sink_backpressure_total{sink=sink}");
        let overloaded = value("crew_http_sink_attempts_total{result=server_error,sink=sink}");
        let retries = value("crew_http_sink_retries_total{sink=sink}");
        let delivered = value("crew_http_sink_records_total{outcome=delivered,sink=sink}");
        let rtt = value("crew_http_sink_rtt_mean_seconds{sink=sink}");
        let came_down = limit.is_some_and(|l| l < START)
            && decreases.is_some_and(|n| n > 0.0)
            && backpressure.is_some_and(|n| n > 0.0)
            && overloaded.is_some_and(|n| n > 0.0)
            && retries.is_some_and(|n| n > 0.0)
            && delivered.is_some_and(|n| n > 0.0)
            && rtt.is_some_and(|s| s > 0.0);
        let http: Vec<String> = samples
            .iter()
            .filter(|(key, _)| key.starts_with("crew_http_sink_"))
            .map(|(key, value)| format!("{key} {value}"))
            .collect();
        if came_down {
            Ok(http)
        } else {
            Err(format!(
                "the limit has not come down yet:\n{}",
                http.join("\n")
            ))
        }
    });
    // The dead-letter sink is a file: no HTTP series of its own.
    assert!(
        seen.iter().all(|line| !line.contains("sink=dead_letter")),
        "{seen:#?}"
    );

    // `crew top` reads the same families: one line for the sink.
    let top = crew()
        .args(["top", "--once", "--interval", "100ms"])
        .arg(run.admin().to_string())
        .output()
        .expect("crew top runs");
    let shown = text(&top.stdout);
    assert_eq!(top.status.code(), Some(0), "{shown}{}", text(&top.stderr));
    let line = shown
        .lines()
        .find(|l| l.starts_with("http "))
        .unwrap_or_else(|| panic!("no http line in\n{shown}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&words[..3], ["http", "sink", "limit"], "{line}");
    let limit: f64 = words[3].parse().unwrap_or_else(|_| panic!("{line}"));
    assert!((1.0..=START).contains(&limit), "{line}");
    assert!(
        line.contains(" req/s · ") && line.contains(" retries · ") && line.ends_with(" refused"),
        "{line}"
    );

    run.signal(libc::SIGTERM);
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("a shutdown was requested"), "{stdout}");
    let s = summary(&stdout);
    assert_eq!(s["abandoned"], 0, "{stdout}");
    // Retried 503s and all, each event the service took, it took once, and
    // crew counted exactly those.
    let ids = ids_once(&server.accepted(), "accepted");
    assert_eq!(ids.len() as u64, s["delivered"], "{stdout}");
    assert!(
        server.service.peak.load(Ordering::SeqCst) > CAPACITY,
        "the service was overloaded at some point"
    );
}

#[test]
fn bodies_the_service_refuses_are_dead_lettered_as_http_400() {
    /// Bodies holding an event whose `seq` is a multiple of this get a 400.
    const EVERY: u64 = 250;
    let server = Server::start(Duration::ZERO, |body, _| {
        let poisoned = String::from_utf8_lossy(body).lines().find_map(|line| {
            let seq = json(line)["seq"].as_u64()?;
            (seq % EVERY == 0).then_some(seq)
        });
        match poisoned {
            Some(seq) => (StatusCode::BAD_REQUEST, format!("seq {seq} is not welcome")),
            None => (StatusCode::OK, String::new()),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &server.url, "max_events = 10");
    let events = EVENTS.to_string();
    let run = start_crew(dir.path(), &file, &[("CREW_EVENTS", &events)]);
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    let s = summary(&stdout);

    let refused = ids_once(&server.refused(), "refused");
    assert!(
        !refused.is_empty(),
        "some delivered event has a seq divisible by {EVERY}"
    );
    let dead = fs::read_to_string(dir.path().join("dead.ndjson")).unwrap();
    let mut http_400 = BTreeSet::new();
    for line in dead.lines() {
        let letter = json(line);
        if letter["reason"] != "http_400" {
            continue;
        }
        let message = letter["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("400 Bad Request: seq ") && message.contains(" is not welcome"),
            "{letter}"
        );
        let original = json(letter["original"].as_str().expect("the event as read"));
        assert!(
            http_400.insert(event_id(&original)),
            "dead-lettered twice: {letter}"
        );
    }
    assert_same_ids(&http_400, &refused);
    assert_eq!(
        s["dead-lettered/http_400"],
        refused.len() as u64,
        "{stdout}"
    );

    // The rest was delivered, once: refused and accepted are the stages'
    // output between them.
    let accepted = ids_once(&server.accepted(), "accepted");
    assert_eq!(accepted.len() as u64, s["delivered"], "{stdout}");
    assert!(accepted.is_disjoint(&refused));
    let both: BTreeSet<String> = accepted.union(&refused).cloned().collect();
    assert_same_ids(&both, &expected_delivered(EVENTS));
}

fn run_crew(args: &[&str], file: &Path, dir: &Path) -> Output {
    crew()
        .args(args)
        .arg(file)
        .current_dir(dir)
        .output()
        .expect("the crew binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_names_a_uri_that_is_not_http_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_crew(&["validate"], &example(), dir.path());
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        text(&output.stdout).contains("sink http POST http://127.0.0.1:8080/events,"),
        "{}",
        text(&output.stdout)
    );

    let original = fs::read_to_string(example()).unwrap();
    let written = "uri = \"${CREW_HTTP_URI:-http://127.0.0.1:8080/events}\"";
    assert!(original.contains(written));
    let broken = original.replace(written, "uri = \"ftp://x\"");
    let line = broken
        .lines()
        .position(|l| l == "uri = \"ftp://x\"")
        .expect("the uri line")
        + 1;
    let file = dir.path().join("ftp.toml");
    fs::write(&file, broken).unwrap();
    let output = run_crew(&["validate"], &file, dir.path());
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!("{}:{line}:1: key `sink.uri`: ", file.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("the scheme must be http or https, not ftp"),
        "{stderr}"
    );
    // Validating connected nowhere and created nothing but the file.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn the_http_examples_tests_pass_and_are_the_pixels_ones() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_crew(&["test"], &example(), dir.path());
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("pixels-http.tests.toml\n"), "{stdout}");

    // The same tests as the file pipeline's, below each file's header.
    let body = |name: &str| {
        let text = fs::read_to_string(workspace().join("examples").join(name)).unwrap();
        let start = text.find("[[tests]]").expect("tests");
        text[start..].to_owned()
    };
    let tests = body("pixels.tests.toml");
    assert!(
        body("pixels-http.tests.toml") == tests,
        "examples/pixels-http.tests.toml has drifted from examples/pixels.tests.toml"
    );
    let count = tests.matches("[[tests]]").count();
    assert!(
        stdout.ends_with(&format!("\n{count} passed, 0 failed\n")),
        "{stdout}"
    );
}
