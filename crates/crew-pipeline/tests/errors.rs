//! Errors: stage retries, dead letters (retries exhausted, fatal, panics),
//! a flaky sink, a failing sink, a failing dead-letter sink, failing commits.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Mutex};

use common::{
    base64, by_partition, check_commits_increase, check_invariant, committed_map, fast_retry, lock,
    quiet_intentional_panics, run, settings, unsafe_commits, CollectingSink, DeadLetterSink,
    FailingSink, FlakySink, GenSource, MemSource, Spec, INTENTIONAL,
};
use crew_pipeline::{Event, Offset, Origin, Outcome, Partition, Pipeline, StageError, StopCause};
use sonic_rs::{JsonValueMutTrait, JsonValueTrait};

/// `n` events over `partitions` partitions, offsets 0.. per partition.
fn specs(n: u64, partitions: u32) -> Vec<Spec> {
    (0..n)
        .map(|i| {
            let p = (i % u64::from(partitions)) as Partition;
            Spec::new(p, i / u64::from(partitions), format!("{{\"n\":{i}}}"))
        })
        .collect()
}

type Calls = Arc<Mutex<HashMap<Origin, u32>>>;

/// Counts a call for `origin`; returns the attempt number (from 1).
fn count(calls: &Calls, origin: Origin) -> u32 {
    let mut calls = lock(calls);
    let n = calls.entry(origin).or_default();
    *n += 1;
    *n
}

#[test]
fn retriable_errors_are_retried_until_they_pass() {
    let specs = specs(300, 3);
    let source = MemSource::new(specs.clone()).per_read(16);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, dead_store) = DeadLetterSink::new();
    let calls: Calls = Arc::default();
    // Every third event fails twice, then passes.
    let flaky = |o: Origin| o.offset % 3 == 0;
    let stage = {
        let calls = Arc::clone(&calls);
        move |event: &mut Event| -> Result<Outcome, StageError> {
            let attempt = count(&calls, event.origin());
            if flaky(event.origin()) && attempt <= 2 {
                return Err(StageError::retriable("busy", format!("attempt {attempt}")));
            }
            Ok(Outcome::Keep)
        }
    };
    let mut s = settings(3);
    s.stage_retry = fast_retry(3);
    let pipeline = common::one_stage_pipeline(s, source, "flaky", stage, sink, dead);
    let handle = pipeline.handle();
    let report = run(pipeline);
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!((report.delivered, report.dead_lettered), (300, 0));
    assert!(lock(&dead_store).is_empty());
    assert_eq!(lock(&store).records.len(), 300);

    let calls = lock(&calls);
    let mut flaky_count = 0;
    for spec in &specs {
        let expected = if flaky(spec.origin()) { 3 } else { 1 };
        flaky_count += u64::from(flaky(spec.origin()));
        assert_eq!(
            calls[&spec.origin()],
            expected,
            "calls for {:?}",
            spec.origin()
        );
    }
    let stage = &handle.snapshot().stages[0];
    assert_eq!(stage.processed, 300);
    assert_eq!(stage.retried, 2 * flaky_count);
    assert_eq!((stage.failed, stage.dropped), (0, 0));
    assert_eq!(committed_map(&report), lock(&log).last_pushed());
}

#[test]
fn exhausted_retries_dead_letter_with_reason_stage_attempts_and_bytes() {
    let specs = specs(200, 2);
    let payload: HashMap<Origin, Vec<u8>> = specs
        .iter()
        .map(|s| (s.origin(), s.payload.clone()))
        .collect();
    let source = MemSource::new(specs.clone()).per_read(16);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, dead_store) = DeadLetterSink::new();
    let calls: Calls = Arc::default();
    let failing = |o: Origin| o.offset % 10 == 3;
    let stage = {
        let calls = Arc::clone(&calls);
        move |event: &mut Event| -> Result<Outcome, StageError> {
            count(&calls, event.origin());
            if failing(event.origin()) {
                return Err(StageError::retriable("timeout", "the peer did not answer"));
            }
            Ok(Outcome::Keep)
        }
    };
    let mut s = settings(2);
    s.stage_retry = fast_retry(4);
    let pipeline = common::one_stage_pipeline(s, source, "lookup", stage, sink, dead);
    let handle = pipeline.handle();
    let report = run(pipeline);
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");

    let failed: HashSet<Origin> = specs
        .iter()
        .map(Spec::origin)
        .filter(|&o| failing(o))
        .collect();
    assert_eq!(failed.len(), 20);
    assert_eq!(report.dead_lettered, 20);
    assert_eq!(
        report.dead_lettered_by_reason,
        BTreeMap::from([("timeout".to_owned(), 20)])
    );
    assert_eq!(report.delivered, 180);

    let letters = lock(&dead_store);
    assert_eq!(letters.len(), 20);
    for letter in letters.iter() {
        assert!(failed.contains(&letter.origin), "{letter:?}");
        assert_eq!(letter.reason, "timeout");
        assert_eq!(letter.stage, "lookup");
        assert_eq!(letter.attempts, 4);
        assert_eq!(letter.message, "the peer did not answer");
        assert_eq!(
            letter.original.as_deref().map(str::as_bytes),
            Some(&payload[&letter.origin][..])
        );
        assert_eq!(letter.original_base64, None);
    }
    let calls = lock(&calls);
    for o in &failed {
        assert_eq!(
            calls[o], 4,
            "a retriable failure is tried max_attempts times"
        );
    }
    let delivered: HashSet<Origin> = lock(&store).origins().into_iter().collect();
    assert!(delivered.is_disjoint(&failed));
    assert_eq!(delivered.len(), 180);
    let stage = &handle.snapshot().stages[0];
    assert_eq!(
        (stage.processed, stage.failed, stage.retried),
        (200, 20, 60)
    );
    // Dead letters are done: everything is committed.
    assert_eq!(committed_map(&report), lock(&log).last_pushed());
}

#[test]
fn fatal_errors_dead_letter_at_once_and_keep_non_utf8_bytes() {
    let mut specs = specs(100, 1);
    // A payload that is not UTF-8.
    specs[42].payload = vec![0xff, 0xfe, b'{', 0x00, 0x80];
    let source = MemSource::new(specs.clone()).per_read(10);
    let (sink, _) = CollectingSink::new();
    let (dead, dead_store) = DeadLetterSink::new();
    let calls: Calls = Arc::default();
    let stage = {
        let calls = Arc::clone(&calls);
        move |event: &mut Event| -> Result<Outcome, StageError> {
            count(&calls, event.origin());
            if event.origin().offset % 7 == 0 {
                return Err(StageError::fatal(
                    "invalid",
                    format!("bad event {}", event.origin().offset),
                ));
            }
            Ok(Outcome::Keep)
        }
    };
    let mut s = settings(2);
    s.stage_retry = fast_retry(5);
    let pipeline = common::one_stage_pipeline(s, source, "validate", stage, sink, dead);
    let report = run(pipeline);
    check_invariant(&report);
    assert_eq!(report.dead_lettered, 15);
    assert_eq!(report.delivered, 85);
    let letters = lock(&dead_store);
    let calls = lock(&calls);
    for letter in letters.iter() {
        assert_eq!(letter.origin.offset % 7, 0);
        assert_eq!(
            (letter.reason.as_str(), letter.stage.as_str()),
            ("invalid", "validate")
        );
        assert_eq!(letter.attempts, 1);
        assert_eq!(
            letter.message,
            format!("bad event {}", letter.origin.offset)
        );
        assert_eq!(calls[&letter.origin], 1, "a fatal error is not retried");
        let raw = &specs[letter.origin.offset as usize].payload;
        if letter.origin.offset == 42 {
            assert_eq!(letter.original, None);
            assert_eq!(
                letter.original_base64.as_deref(),
                Some(base64(raw).as_str())
            );
        } else {
            assert_eq!(
                letter.original.as_deref().map(str::as_bytes),
                Some(&raw[..])
            );
        }
    }
    assert!(letters.iter().any(|l| l.origin.offset == 42));
    assert_eq!(committed_map(&report), BTreeMap::from([(0, 99)]));
}

/// A stage that panics: the event is dead-lettered with reason `panic`, no
/// other event is lost, and the single worker goes on.
#[test]
fn a_panicking_stage_dead_letters_the_event_and_the_pool_goes_on() {
    quiet_intentional_panics();
    let specs = specs(400, 2);
    let source = MemSource::new(specs.clone()).per_read(8);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, dead_store) = DeadLetterSink::new();
    let panics = |o: Origin| o.offset % 25 == 11;
    let stage = move |event: &mut Event| -> Result<Outcome, StageError> {
        if panics(event.origin()) {
            panic!("{INTENTIONAL} at offset {}", event.origin().offset);
        }
        Ok(Outcome::Keep)
    };
    let pipeline = Pipeline::builder()
        .settings(settings(1))
        .source(source)
        .stage("parse", |_: &mut Event| -> Result<Outcome, StageError> {
            Ok(Outcome::Keep)
        })
        .stage("explode", stage)
        .sink(sink)
        .dead_letter(dead)
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let report = run(pipeline);
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");

    let panicked: HashSet<Origin> = specs
        .iter()
        .map(Spec::origin)
        .filter(|&o| panics(o))
        .collect();
    assert_eq!(panicked.len(), 16);
    assert_eq!(
        report.dead_lettered_by_reason,
        BTreeMap::from([("panic".to_owned(), 16)])
    );
    assert_eq!(report.delivered, 400 - 16);
    let letters = lock(&dead_store);
    assert_eq!(
        letters.iter().map(|l| l.origin).collect::<HashSet<_>>(),
        panicked
    );
    for letter in letters.iter() {
        assert_eq!(
            (
                letter.reason.as_str(),
                letter.stage.as_str(),
                letter.attempts
            ),
            ("panic", "explode", 1)
        );
        assert!(letter.message.contains(INTENTIONAL), "{letter:?}");
        assert!(letter
            .message
            .contains(&format!("at offset {}", letter.origin.offset)));
    }
    let delivered: HashSet<Origin> = lock(&store).origins().into_iter().collect();
    let expected: HashSet<Origin> = specs
        .iter()
        .map(Spec::origin)
        .filter(|o| !panicked.contains(o))
        .collect();
    assert_eq!(delivered, expected, "no other event is lost");

    let snapshot = handle.snapshot();
    assert_eq!(snapshot.stages[1].failed, 16);
    // One worker ran every job, the ones after the panics included.
    let (_, pool) = &snapshot.pools[0];
    assert_eq!(pool.panicked, 0, "panics are caught inside the job");
    assert_eq!(committed_map(&report), lock(&log).last_pushed());
}

#[test]
fn a_sink_failing_retriably_then_succeeding_delivers() {
    let specs = specs(500, 2);
    let source = MemSource::new(specs.clone()).per_read(25);
    let log = source.log();
    let (sink, store, calls) = FlakySink::new(3);
    let (dead, dead_store) = DeadLetterSink::new();
    let mut s = settings(2);
    s.sink_retry = fast_retry(4);
    let pipeline = common::one_stage_pipeline(
        s,
        source,
        "noop",
        |_: &mut Event| -> Result<Outcome, StageError> { Ok(Outcome::Keep) },
        sink,
        dead,
    );
    let report = run(pipeline);
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!((report.delivered, report.dead_lettered), (500, 0));
    assert!(lock(&dead_store).is_empty());
    let store = lock(&store);
    let delivered: HashSet<Origin> = store.origins().into_iter().collect();
    assert_eq!(delivered, specs.iter().map(Spec::origin).collect());
    assert_eq!(store.records.len(), 500, "each batch written once");
    assert_eq!(calls.load(AtomicOrdering::SeqCst), store.writes + 3);
    assert_eq!(committed_map(&report), lock(&log).last_pushed());
}

#[test]
fn a_sink_that_always_fails_dead_letters_its_events() {
    let specs = specs(120, 3);
    let payload: HashMap<Origin, Vec<u8>> = specs
        .iter()
        .map(|s| (s.origin(), s.payload.clone()))
        .collect();
    let source = MemSource::new(specs.clone()).per_read(10);
    let log = source.log();
    let (sink, calls) = FailingSink::new(true, "the broker is down");
    let (dead, dead_store) = DeadLetterSink::new();
    let mut s = settings(2);
    s.sink_retry = fast_retry(3);
    let pipeline = common::one_stage_pipeline(
        s,
        source,
        "noop",
        |_: &mut Event| -> Result<Outcome, StageError> { Ok(Outcome::Keep) },
        sink,
        dead,
    );
    let report = run(pipeline);
    check_invariant(&report);
    assert!(
        report.is_clean(),
        "dead-lettering is not a failure of the run: {report:#?}"
    );
    assert_eq!(report.delivered, 0);
    assert_eq!(
        report.dead_lettered_by_reason,
        BTreeMap::from([("sink".to_owned(), 120)])
    );
    let letters = lock(&dead_store);
    assert_eq!(letters.len(), 120);
    assert_eq!(
        letters.iter().map(|l| l.origin).collect::<HashSet<_>>(),
        payload.keys().copied().collect()
    );
    for letter in letters.iter() {
        assert_eq!(
            (
                letter.reason.as_str(),
                letter.stage.as_str(),
                letter.attempts
            ),
            ("sink", "sink", 3)
        );
        assert!(letter.message.contains("the broker is down"), "{letter:?}");
        assert_eq!(
            letter.original.as_deref().map(str::as_bytes),
            Some(&payload[&letter.origin][..])
        );
    }
    assert_eq!(
        calls.load(AtomicOrdering::SeqCst) % 3,
        0,
        "every write tried 3 times"
    );
    assert_eq!(committed_map(&report), lock(&log).last_pushed());
}

/// The dead-letter sink fails: the run stops with a failure that names it,
/// and the events it could not take are neither counted done nor committed.
#[test]
fn a_failing_dead_letter_sink_stops_the_run_without_committing_its_events() {
    const POISON: Offset = 300;
    // Endless: only the failure can end the run.
    let source = GenSource::new(1, None, |p, o| {
        Event::new(
            Origin {
                partition: p,
                offset: o,
            },
            format!("{{\"o\":{o}}}"),
        )
    });
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, dead_calls) = FailingSink::new(false, "the dead-letter disk is full");
    let stage = |event: &mut Event| -> Result<Outcome, StageError> {
        if event.origin().offset == POISON {
            return Err(StageError::fatal("invalid", "poison"));
        }
        Ok(Outcome::Keep)
    };
    let pipeline = common::one_stage_pipeline(settings(2), source, "validate", stage, sink, dead);
    let report = run(pipeline);
    check_invariant(&report);
    match &report.stopped_by {
        StopCause::Failed(message) => assert!(message.contains("dead-letter"), "{message}"),
        other => panic!("expected a failure, got {other:?}: {report:#?}"),
    }
    assert!(!report.is_clean());
    assert!(dead_calls.load(AtomicOrdering::SeqCst) >= 1);
    assert!(
        report.abandoned > 0,
        "the poison event is not done: {report:#?}"
    );
    assert_eq!(
        report.dead_lettered, 0,
        "nothing reached the dead-letter sink"
    );
    let committed = committed_map(&report);
    assert!(
        committed.get(&0).is_none_or(|&c| c < POISON),
        "the committed offset passed the event the dead-letter sink lost: {committed:?}"
    );
    let log = lock(&log);
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert_eq!(
        log.committed(),
        committed,
        "the source got what the report says"
    );
    assert_eq!(report.read, log.total_pushed());
    // Whatever is committed was delivered.
    let delivered: HashSet<Origin> = lock(&store).origins().into_iter().collect();
    if let Some(&c) = committed.get(&0) {
        for offset in 0..=c {
            assert!(
                delivered.contains(&Origin {
                    partition: 0,
                    offset
                }),
                "committed {c} but {offset} missing"
            );
        }
    }
}

/// A source whose first commits fail: they are retried with later commits,
/// and the report's `commit_error` is about the last commit only.
#[test]
fn failed_commits_are_retried_and_only_the_last_one_is_reported() {
    let specs = specs(400, 2);
    let source = MemSource::new(specs.clone())
        .per_read(4)
        .fail_first_commits(2);
    let log = source.log();
    let (sink, _) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    // Some work per event, so that the run spans many commit intervals.
    let stage = |_: &mut Event| -> Result<Outcome, StageError> {
        common::spin_for(std::time::Duration::from_micros(300));
        Ok(Outcome::Keep)
    };
    let pipeline = common::one_stage_pipeline(settings(2), source, "work", stage, sink, dead);
    let report = run(pipeline);
    check_invariant(&report);
    let log = lock(&log);
    eprintln!(
        "{} failed commits, then {} successful ones",
        log.failed_commits.len(),
        log.commits.len()
    );
    check_commits_increase(&log.commits);
    if log.commits.is_empty() {
        assert!(log.failed_commits.len() <= 2);
        // Every commit attempt failed (a very short run): the error stands.
        assert!(report.commit_error.is_some(), "{report:#?}");
    } else {
        // The last commit succeeded and covered everything.
        assert_eq!(log.failed_commits.len(), 2);
        assert_eq!(
            report.commit_error, None,
            "a stale commit error: {report:#?}"
        );
        assert!(report.is_clean());
        assert_eq!(committed_map(&report), log.last_pushed());
        assert_eq!(log.committed(), log.last_pushed());
    }
}

/// Drops, dead letters and deliveries mixed over several partitions: the
/// commits the source gets never pass an unfinished event.
#[test]
fn commits_cover_dropped_and_dead_lettered_events() {
    let specs = specs(600, 3);
    let (sink, store) = CollectingSink::new();
    let (dead, dead_store) = DeadLetterSink::new();
    let dropped: Arc<Mutex<HashSet<Origin>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let source = MemSource::new(specs.clone()).per_read(7).on_commit({
        let (store, dead_store, dropped, violations) = (
            Arc::clone(&store),
            Arc::clone(&dead_store),
            Arc::clone(&dropped),
            Arc::clone(&violations),
        );
        move |log, commits| {
            let mut finished: HashSet<Origin> = lock(&store).origins().into_iter().collect();
            finished.extend(lock(&dead_store).iter().map(|d| d.origin));
            finished.extend(lock(&dropped).iter().copied());
            lock(&violations).extend(unsafe_commits(&log.pushed, commits, &finished));
        }
    });
    let log = source.log();
    let stage = {
        let dropped = Arc::clone(&dropped);
        move |event: &mut Event| -> Result<Outcome, StageError> {
            let o = event.origin();
            common::random_work(7, o, 100);
            match (o.offset + u64::from(o.partition)) % 5 {
                0 => {
                    lock(&dropped).insert(o);
                    Ok(Outcome::Drop("filtered".into()))
                }
                1 => Err(StageError::fatal("invalid", "nope")),
                _ => Ok(Outcome::Keep),
            }
        }
    };
    let pipeline = common::one_stage_pipeline(settings(3), source, "mixed", stage, sink, dead);
    let report = run(pipeline);
    check_invariant(&report);
    assert_eq!(
        (report.delivered, report.dropped, report.dead_lettered),
        (360, 120, 120)
    );
    assert!(lock(&violations).is_empty(), "{:?}", lock(&violations));
    let log = lock(&log);
    check_commits_increase(&log.commits);
    let last: BTreeMap<Partition, Offset> = by_partition(&log.pushed)
        .into_iter()
        .map(|(p, o)| (p, *o.last().unwrap()))
        .collect();
    assert_eq!(committed_map(&report), last);
}

/// A sink that panics: the panic is caught like a fatal write error, and
/// the batch is dead-lettered with reason `sink`.
#[test]
fn a_panicking_sink_dead_letters_its_batch() {
    struct PanickingSink;
    impl crew_pipeline::Sink for PanickingSink {
        fn write(&mut self, _: &crew_pipeline::OutBatch) -> Result<(), crew_pipeline::SinkError> {
            panic!("{INTENTIONAL}: the sink exploded");
        }
    }
    quiet_intentional_panics();
    let specs = specs(50, 1);
    let source = MemSource::new(specs).per_read(10);
    let log = source.log();
    let (dead, dead_store) = DeadLetterSink::new();
    let pipeline = Pipeline::builder()
        .settings(settings(2))
        .source(source)
        .sink(PanickingSink)
        .dead_letter(dead)
        .build()
        .unwrap();
    let report = run(pipeline);
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(
        report.dead_lettered_by_reason,
        BTreeMap::from([("sink".to_owned(), 50)])
    );
    let letters = lock(&dead_store);
    assert_eq!(letters.len(), 50);
    for letter in letters.iter() {
        assert_eq!(
            (
                letter.reason.as_str(),
                letter.stage.as_str(),
                letter.attempts
            ),
            ("sink", "sink", 1)
        );
        assert!(letter.message.contains("the sink exploded"), "{letter:?}");
    }
    assert_eq!(committed_map(&report), lock(&log).last_pushed());
}

/// A sink whose flush fails: nothing it took is acked, so nothing is
/// committed, and the run stops with a failure that says so.
#[test]
fn a_sink_whose_flush_fails_stops_the_run_and_commits_nothing() {
    struct NoFlush(CollectingSink);
    impl crew_pipeline::Sink for NoFlush {
        fn write(
            &mut self,
            batch: &crew_pipeline::OutBatch,
        ) -> Result<(), crew_pipeline::SinkError> {
            self.0.write(batch)
        }
        fn flush(&mut self) -> Result<(), crew_pipeline::SinkError> {
            Err(crew_pipeline::SinkError::fatal("fsync failed"))
        }
    }
    let source = GenSource::new(2, None, |p, o| {
        Event::new(
            Origin {
                partition: p,
                offset: o,
            },
            "{}",
        )
    });
    let log = source.log();
    let (inner, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let pipeline = Pipeline::builder()
        .settings(settings(2))
        .source(source)
        .sink(NoFlush(inner))
        .dead_letter(dead)
        .build()
        .unwrap();
    let report = run(pipeline);
    check_invariant(&report);
    match &report.stopped_by {
        StopCause::Failed(message) => assert!(
            message.contains("flush") && message.contains("fsync failed"),
            "{message}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(!lock(&store).records.is_empty(), "the sink was written to");
    assert_eq!(
        report.delivered, 0,
        "nothing flushed, nothing delivered: {report:#?}"
    );
    assert_eq!(report.abandoned, report.read);
    assert!(report.committed.is_empty(), "{report:#?}");
    assert!(lock(&log).commits.is_empty());
}

/// A source whose reads fail retriably a few times: the pipeline retries
/// and reads everything.
#[test]
fn retriable_source_errors_are_retried() {
    let specs = specs(200, 2);
    let source = MemSource::new(specs).per_read(20).fail_reads(100, 2, true);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(2);
    s.sink_retry = fast_retry(3);
    let pipeline = Pipeline::builder()
        .settings(s)
        .source(source)
        .sink(sink)
        .dead_letter(dead)
        .build()
        .unwrap();
    let report = run(pipeline);
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.delivered, 200);
    assert_eq!(lock(&store).records.len(), 200);
    let log = lock(&log);
    assert_eq!(log.failed_reads, 2);
    assert_eq!(committed_map(&report), log.last_pushed());
}

/// A source that fails for good: the run stops with the source's error,
/// and whatever is committed was delivered.
#[test]
fn a_fatal_source_error_stops_the_run_safely() {
    let specs = specs(300, 2);
    let source = MemSource::new(specs)
        .per_read(20)
        .fail_reads(120, usize::MAX, false);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let pipeline = common::one_stage_pipeline(
        settings(2),
        source,
        "work",
        |e: &mut Event| -> Result<Outcome, StageError> {
            common::random_work(3, e.origin(), 100);
            Ok(Outcome::Keep)
        },
        sink,
        dead,
    );
    let report = run(pipeline);
    check_invariant(&report);
    match &report.stopped_by {
        StopCause::Failed(message) => {
            assert!(message.contains("injected read failure"), "{message}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let log = lock(&log);
    assert_eq!(log.pushed.len(), 120);
    assert_eq!(report.read, 120);
    let delivered: HashSet<Origin> = lock(&store).origins().into_iter().collect();
    let finished: HashSet<Origin> = delivered.clone();
    assert!(unsafe_commits(&log.pushed, &report.committed, &finished).is_empty());
    assert!(log.violations.is_empty(), "{:?}", log.violations);
}

/// A source that breaks its contract (an offset that does not increase):
/// the run stops with a failure naming the contract, nothing is lost from
/// the report's accounting, and the refused event is never committed.
#[test]
fn a_source_breaking_offset_order_stops_the_run() {
    let specs = vec![
        Spec::new(0, 0, "{}"),
        Spec::new(0, 1, "{}"),
        Spec::new(0, 2, "{}"),
        Spec::new(0, 2, "{\"again\":true}"),
        Spec::new(0, 3, "{}"),
    ];
    let source = MemSource::new(specs).per_read(1);
    let (sink, _) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let pipeline = Pipeline::builder()
        .settings(settings(1))
        .source(source)
        .sink(sink)
        .dead_letter(dead)
        .build()
        .unwrap();
    let report = run(pipeline);
    check_invariant(&report);
    match &report.stopped_by {
        StopCause::Failed(message) => assert!(message.contains("contract"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        report.read, 3,
        "the refused event is not counted as read: {report:#?}"
    );
    assert!(committed_map(&report).get(&0).is_none_or(|&c| c <= 2));
}

/// The first commit succeeds, every later one fails: the report (and the
/// snapshot) must still say what the source did persist, the first commit,
/// not forget the partition.
#[test]
fn the_report_keeps_the_last_successful_commit_when_later_ones_fail() {
    let specs = specs(400, 2);
    let source = MemSource::new(specs)
        .per_read(4)
        .fail_commit_if(|call| call > 0);
    let log = source.log();
    let (sink, _) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let stage = |_: &mut Event| -> Result<Outcome, StageError> {
        common::spin_for(std::time::Duration::from_micros(300));
        Ok(Outcome::Keep)
    };
    let pipeline = common::one_stage_pipeline(settings(2), source, "work", stage, sink, dead);
    let handle = pipeline.handle();
    let report = run(pipeline);
    check_invariant(&report);
    let log = lock(&log);
    eprintln!(
        "{} successful commits, then {} failed ones",
        log.commits.len(),
        log.failed_commits.len()
    );
    assert_eq!(log.commits.len(), 1, "only the first commit succeeds");
    if !log.failed_commits.is_empty() {
        assert!(
            report.commit_error.is_some(),
            "the last commit failed: {report:#?}"
        );
    }
    assert_eq!(
        committed_map(&report),
        log.committed(),
        "the report's committed offsets are not what the source persisted"
    );
    let snapshot: BTreeMap<Partition, Offset> = handle.snapshot().committed.into_iter().collect();
    assert_eq!(
        snapshot,
        log.committed(),
        "the snapshot's committed offsets"
    );
}

/// A stage rewrites the parsed value: the sink gets the new value encoded,
/// while a later stage's dead letter still carries the original bytes; drop
/// reasons are counted by label.
#[test]
fn the_sink_gets_the_value_and_dead_letters_the_original_bytes() {
    let specs: Vec<Spec> = (0..60u64)
        .map(|o| Spec::new(0, o, format!("{{\"n\":{o},\"secret\":\"s{o}\"}}")))
        .collect();
    let source = MemSource::new(specs.clone()).per_read(8);
    let (sink, store) = CollectingSink::new();
    let (dead, dead_store) = DeadLetterSink::new();
    let rewrite = |event: &mut Event| -> Result<Outcome, StageError> {
        let mut value: crew_pipeline::Value = sonic_rs::from_slice(event.raw())
            .map_err(|e| StageError::fatal("parse", e.to_string()))?;
        let n = value.get("n").and_then(|v| v.as_u64()).unwrap();
        let object = value.as_object_mut().unwrap();
        object.remove(&"secret");
        object.insert(&"doubled", n * 2);
        event.set_value(value);
        Ok(Outcome::Keep)
    };
    let route = |event: &mut Event| -> Result<Outcome, StageError> {
        match event.origin().offset % 6 {
            0 => Ok(Outcome::Drop("consent".into())),
            1 => Ok(Outcome::Drop("sampled".into())),
            2 => Err(StageError::fatal("invalid", "rejected after the rewrite")),
            _ => Ok(Outcome::Keep),
        }
    };
    let pipeline = Pipeline::builder()
        .settings(settings(2))
        .source(source)
        .stage("rewrite", rewrite)
        .stage("route", route)
        .sink(sink)
        .dead_letter(dead)
        .build()
        .unwrap();
    let report = run(pipeline);
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(
        report.dropped_by_reason,
        BTreeMap::from([("consent".to_owned(), 10), ("sampled".to_owned(), 10)])
    );
    assert_eq!((report.delivered, report.dead_lettered), (30, 10));
    for record in lock(&store).records.iter() {
        let value: sonic_rs::Value = sonic_rs::from_slice(&record.bytes).unwrap();
        let o = record.origin.offset;
        assert_eq!(value.get("doubled").and_then(|v| v.as_u64()), Some(2 * o));
        assert!(
            value.get("secret").is_none(),
            "the sink got the raw bytes, not the value"
        );
    }
    let letters = lock(&dead_store);
    assert_eq!(letters.len(), 10);
    for letter in letters.iter() {
        let raw = &specs[letter.origin.offset as usize].payload;
        assert_eq!(
            letter.original.as_deref().map(str::as_bytes),
            Some(&raw[..]),
            "{letter:?}"
        );
        assert_eq!(
            (letter.reason.as_str(), letter.stage.as_str()),
            ("invalid", "route")
        );
    }
}

/// The builder refuses a pipeline without a source, a sink or a dead-letter
/// sink, and zero workers or limits.
#[test]
fn the_builder_refuses_incomplete_wiring_and_zero_limits() {
    use crew_pipeline::BuildError;
    let source = || MemSource::new(Vec::new());
    let sink = || CollectingSink::new().0;
    let dead = || DeadLetterSink::new().0;
    let refused = |builder: crew_pipeline::PipelineBuilder| builder.build().expect_err("refused");
    assert_eq!(
        refused(Pipeline::builder().sink(sink()).dead_letter(dead())),
        BuildError::MissingSource
    );
    assert_eq!(
        refused(Pipeline::builder().source(source()).dead_letter(dead())),
        BuildError::MissingSink
    );
    assert_eq!(
        refused(Pipeline::builder().source(source()).sink(sink())),
        BuildError::MissingDeadLetter
    );
    let complete = |s: crew_pipeline::Settings| {
        Pipeline::builder()
            .settings(s)
            .source(source())
            .sink(sink())
            .dead_letter(dead())
    };
    let mut s = settings(1);
    s.workers = 0;
    assert!(matches!(refused(complete(s)), BuildError::NoWorkers(_)));
    let keep = |_: &mut Event| -> Result<Outcome, StageError> { Ok(Outcome::Keep) };
    assert_eq!(
        refused(complete(settings(1)).stage_with_workers("enrich", keep, 0)),
        BuildError::NoWorkers("enrich".to_owned())
    );
    // Counts so large that sizing the queues from them would overflow.
    let mut s = settings(1);
    s.workers = usize::MAX;
    assert_eq!(
        refused(complete(s)),
        BuildError::TooManyWorkers("workers".to_owned(), usize::MAX)
    );
    assert_eq!(
        refused(complete(settings(1)).stage_with_workers(
            "enrich",
            keep,
            crew_pipeline::MAX_WORKERS + 1
        )),
        BuildError::TooManyWorkers("enrich".to_owned(), crew_pipeline::MAX_WORKERS + 1)
    );
    let mut s = settings(1);
    s.lanes = Some(usize::MAX);
    assert_eq!(refused(complete(s)), BuildError::TooManyLanes(usize::MAX));
    type Zero = fn(&mut crew_pipeline::Settings);
    let zeroed: [(&str, Zero); 6] = [
        ("batch.max_events", |s| s.batch.max_events = 0),
        ("batch.max_bytes", |s| s.batch.max_bytes = 0),
        ("budget.max_events", |s| s.budget.max_events = 0),
        ("budget.max_bytes", |s| s.budget.max_bytes = 0),
        ("budget.max_per_partition", |s| {
            s.budget.max_per_partition = 0
        }),
        ("lanes", |s| s.lanes = Some(0)),
    ];
    for (name, zero) in zeroed {
        let mut s = settings(1);
        zero(&mut s);
        assert_eq!(refused(complete(s)), BuildError::ZeroLimit(name));
    }
    // And an empty source runs to a clean, empty report.
    let report = run(complete(settings(1)).build().unwrap());
    check_invariant(&report);
    assert!(report.is_clean());
    assert_eq!(
        (report.read, report.stopped_by),
        (0, StopCause::SourceEnded)
    );
}

/// A sink that accepts every write but, at flush, refuses the records whose
/// offset is a multiple of 7 (as Kafka's delivery reports can).
struct RefusingSink {
    written: Arc<Mutex<Vec<Origin>>>,
    unflushed: Vec<Origin>,
    refused: Vec<crew_pipeline::Refused>,
}

impl crew_pipeline::Sink for RefusingSink {
    fn write(&mut self, batch: &crew_pipeline::OutBatch) -> Result<(), crew_pipeline::SinkError> {
        self.unflushed
            .extend(batch.records().map(|(_, _, origin)| origin));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), crew_pipeline::SinkError> {
        for origin in self.unflushed.drain(..) {
            if origin.offset % 7 == 0 {
                self.refused.push(crew_pipeline::Refused {
                    origin,
                    reason: "too_large".to_owned(),
                    message: format!("record {} refused", origin.offset),
                });
            } else {
                lock(&self.written).push(origin);
            }
        }
        Ok(())
    }

    fn take_refused(&mut self) -> Vec<crew_pipeline::Refused> {
        std::mem::take(&mut self.refused)
    }
}

#[test]
fn records_a_sink_refuses_at_flush_are_dead_lettered_not_delivered() {
    let specs = specs(700, 2);
    let written = Arc::new(Mutex::new(Vec::new()));
    let (dead, letters) = DeadLetterSink::new();
    let source = MemSource::new(specs.clone());
    let log = source.log();
    let pipeline = Pipeline::builder()
        .settings(settings(2))
        .source(source)
        .sink(RefusingSink {
            written: Arc::clone(&written),
            unflushed: Vec::new(),
            refused: Vec::new(),
        })
        .dead_letter(dead)
        .build()
        .unwrap();
    let report = run(pipeline);
    check_invariant(&report);
    let refused: HashSet<Origin> = specs
        .iter()
        .map(Spec::origin)
        .filter(|o| o.offset % 7 == 0)
        .collect();
    assert_eq!(report.read, 700);
    assert_eq!(report.delivered, 700 - refused.len() as u64);
    assert_eq!(
        report.dead_lettered_by_reason,
        BTreeMap::from([("too_large".to_owned(), refused.len() as u64)])
    );
    let letters = lock(&letters);
    let dead_origins: HashSet<Origin> = letters.iter().map(|l| l.origin).collect();
    assert_eq!(dead_origins, refused);
    for letter in letters.iter() {
        assert_eq!(letter.stage, "sink");
        // The dead letter carries the bytes the event was read with.
        let spec = specs.iter().find(|s| s.origin() == letter.origin).unwrap();
        assert_eq!(
            letter.original.as_deref().map(str::as_bytes),
            Some(&spec.payload[..])
        );
    }
    assert_eq!(lock(&written).len(), 700 - refused.len());
    // Refused events are done: the commits cover every partition's end.
    assert_eq!(committed_map(&report), lock(&log).last_pushed());
}
