//! The HTTP sink against a real HTTP server on a loopback socket: bodies,
//! splitting, headers, compression, retries, refusals to dead letters, a
//! service that stays down, and the adaptive limit backing off from an
//! overloaded service, both through the `Sink` trait and in a pipeline.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{lock, run, settings, DeadLetterSink, MemSource, Spec};
use crew_pipeline::sinks::{HttpSink, HttpSinkConfig};
use crew_pipeline::{Event, Origin, OutBatch, Outcome, Sink, StageError};

/// What the test service answers to a request, given its body and how many
/// requests it is serving at that moment (this one included).
type Answer = dyn Fn(&[u8], usize) -> (StatusCode, String) + Send + Sync;

struct Service {
    answer: Mutex<Arc<Answer>>,
    /// Every request: its headers and body, whatever the answer.
    seen: Mutex<Vec<(HeaderMap, Vec<u8>)>>,
    /// Bodies answered 2xx.
    accepted: Mutex<Vec<Vec<u8>>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// A real HTTP server on a free loopback port, on its own runtime thread.
struct Server {
    service: Arc<Service>,
    url: String,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start(
        answer: impl Fn(&[u8], usize) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> Server {
        let service = Arc::new(Service {
            answer: Mutex::new(Arc::new(answer)),
            seen: Mutex::default(),
            accepted: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/events", post(handle))
            .with_state(Arc::clone(&service));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Server {
            service,
            url,
            _runtime: runtime,
        }
    }

    fn answer_with(
        &self,
        answer: impl Fn(&[u8], usize) -> (StatusCode, String) + Send + Sync + 'static,
    ) {
        *lock(&self.service.answer) = Arc::new(answer);
    }

    /// Records of every accepted body (NDJSON lines).
    fn accepted_records(&self) -> Vec<String> {
        lock(&self.service.accepted)
            .iter()
            .flat_map(|body| lines(body))
            .collect()
    }

    fn requests(&self) -> usize {
        lock(&self.service.seen).len()
    }
}

async fn handle(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let now = service.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    service.peak.fetch_max(now, Ordering::SeqCst);
    let answer = Arc::clone(&lock(&service.answer));
    // Overload is only visible if requests overlap: hold each one a moment
    // (an answer's latency, not a synchronization).
    tokio::time::sleep(Duration::from_millis(2)).await;
    let (status, text) = answer(&body, now);
    lock(&service.seen).push((headers, body.to_vec()));
    if status.is_success() {
        lock(&service.accepted).push(body.to_vec());
    }
    service.in_flight.fetch_sub(1, Ordering::SeqCst);
    (status, text)
}

fn ok(_: &[u8], _: usize) -> (StatusCode, String) {
    (StatusCode::OK, String::new())
}

fn lines(body: &[u8]) -> Vec<String> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn config(server: &Server, extra: &str) -> HttpSinkConfig {
    // Fast retries unless the test sets its own.
    let retry = if extra.contains("retry") {
        ""
    } else {
        "retry = { max_attempts = 3, initial_backoff = \"1ms\", max_backoff = \"5ms\" }"
    };
    let text = format!("uri = {:?}\n{retry}\n{extra}", server.url);
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `n` records `{"n":i}` at offsets 0.. of partition 0.
fn batch(range: std::ops::Range<u64>) -> OutBatch {
    let mut batch = OutBatch::default();
    for i in range {
        batch.push(
            Origin {
                partition: 0,
                offset: i,
            },
            None,
            |buf| buf.extend_from_slice(format!("{{\"n\":{i}}}").as_bytes()),
        );
    }
    batch
}

fn expected(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| format!("{{\"n\":{i}}}")).collect()
}

fn sorted(mut records: Vec<String>) -> Vec<String> {
    records.sort();
    records
}

#[test]
fn every_record_arrives_once_in_ndjson_bodies_split_by_max_events() {
    let server = Server::start(ok);
    let mut sink = HttpSink::new(config(
        &server,
        "max_events = 1000\nheaders = { authorization = \"Bearer t0ken\" }",
    ))
    .unwrap();
    sink.write(&batch(0..2_500)).unwrap();
    sink.flush().unwrap();
    assert!(sink.take_refused().is_empty());
    assert_eq!(
        sorted(server.accepted_records()),
        sorted(expected(0..2_500))
    );
    assert_eq!(server.requests(), 3, "2,500 records at 1,000 a request");
    for (headers, _) in lock(&server.service.seen).iter() {
        assert_eq!(headers["content-type"], "application/x-ndjson");
        assert_eq!(headers["authorization"], "Bearer t0ken");
        assert!(headers["user-agent"].to_str().unwrap().starts_with("crew/"));
    }
    let stats = sink.stats();
    assert_eq!(
        (stats.delivered(), stats.succeeded(), stats.retries()),
        (2_500, 3, 0)
    );
    assert_eq!(stats.in_flight_requests(), 0);
}

#[test]
fn max_bytes_splits_requests_and_an_oversized_record_goes_alone() {
    let server = Server::start(ok);
    // Each `{"n":i}` line is 8 to 9 bytes with its newline.
    let mut sink = HttpSink::new(config(&server, "max_bytes = 40")).unwrap();
    let mut big = batch(10..30);
    big.push(
        Origin {
            partition: 0,
            offset: 30,
        },
        None,
        |buf| buf.extend_from_slice(format!("{{\"big\":\"{}\"}}", "x".repeat(100)).as_bytes()),
    );
    sink.write(&big).unwrap();
    sink.flush().unwrap();
    let seen = lock(&server.service.seen);
    for (_, body) in seen.iter() {
        let records = lines(body);
        assert!(
            body.len() <= 40 || records.len() == 1,
            "a {}-byte body of {} records",
            body.len(),
            records.len()
        );
    }
    assert_eq!(server.accepted_records().len(), 21);
}

#[test]
fn json_array_bodies_can_be_gzipped() {
    let server = Server::start(ok);
    let mut sink = HttpSink::new(config(
        &server,
        "encoding = \"json_array\"\ncompression = \"gzip\"\nmethod = \"post\"",
    ))
    .unwrap();
    sink.write(&batch(0..50)).unwrap();
    sink.flush().unwrap();
    let seen = lock(&server.service.seen);
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["content-encoding"], "gzip");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut json)
        .unwrap();
    let values: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let numbers: Vec<u64> = values.iter().map(|v| v["n"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..50).collect::<Vec<_>>());
}

#[test]
fn server_errors_and_overload_answers_are_retried_until_accepted() {
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    // The first three answers are 503, 500 and 429; then the service works.
    let server = Server::start(move |_, _| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => (StatusCode::SERVICE_UNAVAILABLE, "warming up".to_owned()),
        1 => (StatusCode::INTERNAL_SERVER_ERROR, "oops".to_owned()),
        2 => (StatusCode::TOO_MANY_REQUESTS, "slow down".to_owned()),
        _ => (StatusCode::OK, String::new()),
    });
    let mut sink = HttpSink::new(config(&server, "max_events = 10\nconcurrency = 1\nretry = { max_attempts = 5, initial_backoff = \"1ms\", max_backoff = \"5ms\" }")).unwrap();
    sink.write(&batch(0..30)).unwrap();
    sink.flush().unwrap();
    assert!(sink.take_refused().is_empty());
    assert_eq!(sorted(server.accepted_records()), sorted(expected(0..30)));
    let stats = sink.stats();
    assert_eq!(stats.retries(), 3);
    assert_eq!((stats.server_errors(), stats.client_errors()), (2, 1));
    assert!(
        stats.concurrency().backpressure >= 2,
        "{:?}",
        stats.concurrency()
    );
}

#[test]
fn a_client_error_refuses_the_records_of_that_request_with_the_reason() {
    let server = Server::start(|body, _| {
        if String::from_utf8_lossy(body).contains("\"n\":13}") {
            (
                StatusCode::BAD_REQUEST,
                "field `n` must not be 13".to_owned(),
            )
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let mut sink = HttpSink::new(config(&server, "max_events = 5")).unwrap();
    sink.write(&batch(0..20)).unwrap();
    sink.flush().unwrap();
    let refused = sink.take_refused();
    let offsets: Vec<u64> = refused.iter().map(|r| r.origin.offset).collect();
    assert_eq!(offsets, vec![10, 11, 12, 13, 14], "the request holding 13");
    for refusal in &refused {
        assert_eq!(refusal.reason, "http_400");
        assert!(
            refusal
                .message
                .contains("400 Bad Request: field `n` must not be 13"),
            "{}",
            refusal.message
        );
    }
    let mut kept = expected(0..10);
    kept.extend(expected(15..20));
    assert_eq!(sorted(server.accepted_records()), sorted(kept));
    assert_eq!(sink.stats().refused(), 5);
    assert_eq!(sink.stats().retries(), 0, "a 400 is not retried");
}

#[test]
fn a_service_that_stays_down_fails_the_flush_and_the_next_flush_sends_again() {
    let server = Server::start(|_, _| (StatusCode::BAD_GATEWAY, "no upstream".to_owned()));
    let mut sink = HttpSink::new(config(&server, "")).unwrap();
    sink.write(&batch(0..10)).unwrap();
    let error = sink.flush().expect_err("the service is down");
    assert!(error.retriable);
    assert!(
        error
            .message
            .contains("1 HTTP requests still failing after 3 attempts each")
            && error.message.contains("HTTP 502 Bad Gateway: no upstream"),
        "{}",
        error.message
    );
    assert!(server.accepted_records().is_empty());
    server.answer_with(ok);
    // The flush that failed sent the request again; this one waits for it.
    sink.flush().unwrap();
    assert!(sink.take_refused().is_empty());
    assert_eq!(sorted(server.accepted_records()), sorted(expected(0..10)));
}

#[test]
fn a_refused_connection_is_retried_and_reported() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config: HttpSinkConfig = toml::from_str(&format!(
        "uri = \"http://127.0.0.1:{port}/\"\nretry = {{ max_attempts = 2, initial_backoff = \"1ms\", max_backoff = \"1ms\" }}"
    ))
    .unwrap();
    let mut sink = HttpSink::new(config).unwrap();
    sink.write(&batch(0..3)).unwrap();
    let error = sink.flush().expect_err("nothing listens");
    assert!(
        error.message.contains("after 2 attempts"),
        "{}",
        error.message
    );
    let stats = sink.stats();
    assert!(
        stats.transport_errors() >= 2,
        "{}",
        stats.transport_errors()
    );
    assert!(stats.concurrency().backpressure >= 2);
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let refused = |text: &str| -> String {
        match toml::from_str::<HttpSinkConfig>(text) {
            Err(error) => error.to_string(),
            Ok(config) => match HttpSink::new(config) {
                Err(error) => error.to_string(),
                Ok(_) => panic!("accepted: {text}"),
            },
        }
    };
    let cases = [
        (
            "uri = \"ftp://example.com/\"",
            "the scheme must be http or https, not ftp",
        ),
        ("uri = \"not a url\"", "`uri` is not a URL"),
        (
            "uri = \"http://h/\"\nmax_events = 0",
            "`max_events` must be at least 1",
        ),
        (
            "uri = \"http://h/\"\nheaders = { \"bad header\" = \"x\" }",
            "\"bad header\" is not a header name",
        ),
        (
            "uri = \"http://h/\"\nheaders = { x = \"a\\nb\" }",
            "`headers.x`",
        ),
        (
            "uri = \"http://h/\"\nmethod = \"get\"",
            "unknown variant `get`",
        ),
        ("uri = \"http://h/\"\nconcurrency = 0", "\"adaptive\""),
        (
            "uri = \"http://h/\"\ntimeout = \"0s\"",
            "`timeout` must be more than zero",
        ),
    ];
    for (text, expected) in cases {
        let message = refused(text);
        assert!(message.contains(expected), "{text:?}: {message}");
    }
}

/// An overloaded service (more than 4 requests at once get 503): the
/// adaptive limit backs off, every record is still accepted exactly once,
/// and the limit ends near the service's capacity instead of climbing on.
#[test]
fn the_adaptive_limit_backs_off_from_an_overloaded_service() {
    const CAPACITY: usize = 4;
    let server = Server::start(|_, in_flight| {
        if in_flight > CAPACITY {
            (StatusCode::SERVICE_UNAVAILABLE, "over capacity".to_owned())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let mut sink = HttpSink::new(config(
        &server,
        "max_events = 5\nretry = { max_attempts = 50, initial_backoff = \"1ms\", max_backoff = \"20ms\" }\nadaptive = { initial_limit = 16, max_limit = 64 }",
    ))
    .unwrap();
    for round in 0..40 {
        sink.write(&batch(round * 50..(round + 1) * 50)).unwrap();
    }
    sink.flush().unwrap();
    assert_eq!(
        sorted(server.accepted_records()),
        sorted(expected(0..2_000))
    );
    let limit = sink.stats().concurrency();
    eprintln!(
        "{limit:?}; peak at the service {}",
        server.service.peak.load(Ordering::SeqCst)
    );
    // Starting at 16 with 400 requests to send, the first ones overload the
    // service: the limit must have come down.
    assert!(limit.decreases > 0 && limit.backpressure > 0, "{limit:?}");
    assert!(
        limit.limit < 16,
        "the limit stays below where it started: {limit:?}"
    );
}

/// A pipeline whose sink is the HTTP sink: each event is delivered once,
/// events the service refuses end in the dead-letter output with the
/// status as the reason, and the committed offsets cover everything.
#[test]
fn in_a_pipeline_refused_events_are_dead_lettered_and_the_rest_delivered() {
    let server = Server::start(|body, _| {
        if String::from_utf8_lossy(body).contains("\"poison\":true") {
            (StatusCode::UNPROCESSABLE_ENTITY, "poison".to_owned())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    // Every 50th event is poison, which the service refuses.
    let specs: Vec<Spec> = (0..600u64)
        .map(|i| {
            let payload = format!("{{\"i\":{i},\"poison\":{}}}", i % 50 == 0);
            Spec::new((i % 3) as u32, i / 3, payload)
        })
        .collect();
    let source = MemSource::new(specs.clone());
    let (dead, letters) = DeadLetterSink::new();
    let sink = HttpSink::new(config(&server, "max_events = 1")).unwrap();
    let stage = |_: &mut Event| -> Result<Outcome, StageError> { Ok(Outcome::Keep) };
    let pipeline = common::one_stage_pipeline(settings(2), source, "mark", stage, sink, dead);
    let report = run(pipeline);
    common::check_invariant(&report);
    let letters = lock(&letters);
    let dead_origins: HashSet<Origin> = letters.iter().map(|l| l.origin).collect();
    let poison: HashSet<Origin> = specs
        .iter()
        .filter(|s| String::from_utf8_lossy(&s.payload).contains("\"poison\":true"))
        .map(Spec::origin)
        .collect();
    assert_eq!(poison.len(), 12);
    assert_eq!(
        dead_origins,
        poison,
        "first dead letter: {:?}",
        letters.first()
    );
    for letter in letters.iter() {
        assert_eq!(letter.reason, "http_422", "{letter:?}");
        assert!(
            letter.message.contains("422 Unprocessable Entity: poison"),
            "{letter:?}"
        );
    }
    let accepted = server.accepted_records();
    assert_eq!(
        accepted.len() + poison.len(),
        specs.len(),
        "each event delivered once"
    );
    let unique: HashSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), accepted.len(), "no event delivered twice");
    let committed = common::committed_map(&report);
    let ends: BTreeMap<_, _> =
        common::by_partition(&specs.iter().map(|s| s.origin()).collect::<Vec<_>>())
            .into_iter()
            .map(|(partition, offsets)| (partition, *offsets.iter().max().unwrap()))
            .collect();
    assert_eq!(committed, ends);
}

/// With `concurrency = 1` a retried request keeps its slot through its
/// backoff, so the next request cannot overtake it: records arrive in the
/// order they were written.
#[test]
fn a_fixed_limit_of_one_keeps_the_order_through_retries() {
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    // Every third answer is a 503: most requests are retried once.
    let server = Server::start(move |_, _| {
        if counter.fetch_add(1, Ordering::SeqCst) % 3 == 0 {
            (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let mut sink = HttpSink::new(config(
        &server,
        "max_events = 10\nconcurrency = 1\nretry = { max_attempts = 5, initial_backoff = \"20ms\", max_backoff = \"20ms\" }",
    ))
    .unwrap();
    for round in 0..5 {
        sink.write(&batch(round * 20..(round + 1) * 20)).unwrap();
    }
    sink.flush().unwrap();
    assert!(sink.stats().retries() > 0);
    assert_eq!(
        server.accepted_records(),
        expected(0..100),
        "in write order"
    );
}
