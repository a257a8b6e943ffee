//! Shutdown: a graceful `shutdown()` from another thread, the drain
//! deadline, `shutdown_now()`, and what each commits. Every test checks the
//! report invariant `read == delivered + dropped + dead_lettered +
//! abandoned`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc;
use std::time::Duration;

use common::{
    check_invariant, committed_map, lock, random_work, settings, start, CollectingSink,
    DeadLetterSink, Gate, GenSource, MemSource, Spec, GUARD,
};
use crew_pipeline::{
    Event, Offset, Ordering, Origin, Outcome, Partition, Pipeline, StageError, StopCause,
};

fn event(partition: Partition, offset: Offset) -> Event {
    Event::new(
        Origin { partition, offset },
        format!("{{\"p\":{partition},\"o\":{offset}}}"),
    )
}

/// Asserts that every committed offset covers only delivered events, with
/// offsets 0, 1, 2, ... per partition (a [`GenSource`] of stride 1).
#[track_caller]
fn assert_commits_delivered(committed: &BTreeMap<Partition, Offset>, delivered: &HashSet<Origin>) {
    for (&partition, &through) in committed {
        for offset in 0..=through {
            assert!(
                delivered.contains(&Origin { partition, offset }),
                "partition {partition} committed through {through}, but {offset} was never delivered"
            );
        }
    }
}

/// `shutdown()` from the test thread while an endless source runs on the
/// pipeline's thread: the run drains, abandons nothing, and commits the
/// last offset read of every partition.
#[test]
fn shutdown_from_another_thread_drains_and_commits_everything_read() {
    let source = GenSource::new(3, None, event);
    let log = source.log();
    let (progress_tx, progress_rx) = mpsc::channel();
    let (sink, store) = CollectingSink::new();
    let sink = sink.with_hook(move |collected| {
        if collected.records.len() >= 3_000 {
            let _ = progress_tx.send(());
        }
    });
    let (dead, _) = DeadLetterSink::new();
    let stage = |event: &mut Event| -> Result<Outcome, StageError> {
        random_work(1, event.origin(), 50);
        Ok(Outcome::Keep)
    };
    let pipeline = common::one_stage_pipeline(settings(2), source, "work", stage, sink, dead);
    let running = start(pipeline);
    progress_rx
        .recv_timeout(GUARD)
        .expect("the pipeline delivers 3000 events");
    running.handle.shutdown();
    let report = running.wait();

    check_invariant(&report);
    assert_eq!(report.stopped_by, StopCause::Requested);
    assert_eq!(
        report.abandoned, 0,
        "a graceful shutdown drains: {report:#?}"
    );
    assert!(report.is_clean());
    let log = lock(&log);
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert_eq!(report.read, log.total_pushed());
    assert_eq!(report.delivered, report.read);
    assert_eq!(
        committed_map(&report),
        log.last,
        "the committed offsets are the last ones read"
    );
    assert_eq!(log.committed(), log.last, "and the source got them");

    let store = lock(&store);
    let delivered: HashSet<Origin> = store.origins().into_iter().collect();
    assert_eq!(
        delivered.len(),
        store.records.len(),
        "nothing delivered twice"
    );
    assert_eq!(delivered.len() as u64, report.read);
    assert_commits_delivered(&log.last, &delivered);
}

/// A stage blocked on a gate past the drain deadline: its events (and the
/// ones queued behind them in their partition's lane) are abandoned, the
/// committed offset of that partition stops right before them, and the
/// other partitions commit everything.
#[test]
fn drain_deadline_abandons_stuck_events_and_commits_the_finished_prefix() {
    const STUCK: Offset = 50;
    const P0_EVENTS: u64 = 60;
    const OTHERS: u64 = 200;
    // Read in rounds of 5 offsets per partition: read k holds offsets
    // 5k..5k+5 of every partition, so partition 0's offsets 50..55 form one
    // job and 55..60 the one queued behind it in the lane.
    let mut specs = Vec::new();
    for offset in 0..OTHERS {
        for partition in 0..3 {
            if partition == 0 && offset >= P0_EVENTS {
                continue;
            }
            specs.push(Spec::new(partition, offset, format!("{{\"o\":{offset}}}")));
        }
    }
    // End only once everything but the stuck job is committed, so the drain
    // starts with exactly the stuck events in flight.
    let source = MemSource::new(specs).per_read(15).end_when(|log| {
        let c = log.committed();
        c.get(&0) == Some(&(STUCK - 1))
            && c.get(&1) == Some(&(OTHERS - 1))
            && c.get(&2) == Some(&(OTHERS - 1))
    });
    let log = source.log();
    let gate = Gate::new();
    let _release = gate.open_on_drop();
    let (reached_tx, reached_rx) = mpsc::channel();
    let stage = {
        let gate = gate.clone();
        let reached_tx = std::sync::Mutex::new(reached_tx);
        move |event: &mut Event| -> Result<Outcome, StageError> {
            if event.origin()
                == (Origin {
                    partition: 0,
                    offset: STUCK,
                })
            {
                let _ = lock(&reached_tx).send(());
                gate.wait();
            }
            Ok(Outcome::Keep)
        }
    };
    let (sink, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(2);
    s.ordering = Ordering::Partition;
    s.drain_timeout = Duration::from_millis(200);
    let pipeline = common::one_stage_pipeline(s, source, "gated", stage, sink, dead);
    let report = start(pipeline).wait();
    assert!(
        !gate.is_open(),
        "the gate opens only after the run returned"
    );
    reached_rx
        .try_recv()
        .expect("the stage reached the stuck event");
    gate.open();

    check_invariant(&report);
    assert_eq!(report.stopped_by, StopCause::SourceEnded);
    assert_eq!(
        report.abandoned,
        P0_EVENTS - STUCK,
        "offsets 50..60 of partition 0: {report:#?}"
    );
    assert!(!report.is_clean());
    let expected = BTreeMap::from([(0, STUCK - 1), (1, OTHERS - 1), (2, OTHERS - 1)]);
    assert_eq!(committed_map(&report), expected);
    let log = lock(&log);
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert_eq!(log.committed(), expected);
    let store = lock(&store);
    assert!(
        store
            .records
            .iter()
            .all(|r| r.origin.partition != 0 || r.origin.offset < STUCK),
        "nothing at or after the stuck event of partition 0 was delivered"
    );
    assert_eq!(report.delivered, store.records.len() as u64);
}

/// `shutdown_now()` skips the drain (here an hour long): the run returns
/// while a stage is still blocked, abandons what is in flight, and commits
/// only finished prefixes.
#[test]
fn shutdown_now_abandons_in_flight_events_and_commits_only_finished_ones() {
    const STUCK: Offset = 500;
    let source = GenSource::new(2, None, event);
    let log = source.log();
    let gate = Gate::new();
    let _release = gate.open_on_drop();
    let (reached_tx, reached_rx) = mpsc::channel();
    let stage = {
        let gate = gate.clone();
        let reached_tx = std::sync::Mutex::new(reached_tx);
        move |event: &mut Event| -> Result<Outcome, StageError> {
            if event.origin()
                == (Origin {
                    partition: 0,
                    offset: STUCK,
                })
            {
                let _ = lock(&reached_tx).send(());
                gate.wait();
            }
            Ok(Outcome::Keep)
        }
    };
    let (sink, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(2);
    s.drain_timeout = Duration::from_secs(3600);
    let pipeline = common::one_stage_pipeline(s, source, "gated", stage, sink, dead);
    let running = start(pipeline);
    reached_rx
        .recv_timeout(GUARD)
        .expect("the stage reaches the stuck event");
    running.handle.shutdown_now();
    // Returns although the gate is closed and the drain timeout is an hour.
    let report = running.wait();
    assert!(!gate.is_open());
    gate.open();

    check_invariant(&report);
    assert_eq!(report.stopped_by, StopCause::Requested);
    assert!(
        report.abandoned >= 1,
        "the stuck event is abandoned: {report:#?}"
    );
    let committed = committed_map(&report);
    assert!(
        committed.get(&0).is_none_or(|&c| c < STUCK),
        "committed past the stuck event: {committed:?}"
    );
    let log = lock(&log);
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert_eq!(log.committed(), committed);
    assert_eq!(report.read, log.total_pushed());
    let delivered: HashSet<Origin> = lock(&store).origins().into_iter().collect();
    assert_commits_delivered(&committed, &delivered);
    assert!(report.delivered <= delivered.len() as u64);
}

/// A source with nothing more to read (it waits for data that never comes):
/// `shutdown()` ends the run cleanly and everything read is committed.
#[test]
fn shutdown_of_an_idle_source_is_clean() {
    let specs: Vec<Spec> = (0..10).map(|o| Spec::new(0, o * 3, "{}")).collect();
    let (_never, hold) = mpsc::channel();
    let source = MemSource::new(specs).hold_until(hold);
    let log = source.log();
    let (all_tx, all_rx) = mpsc::channel();
    let (sink, _) = CollectingSink::new();
    let sink = sink.with_hook(move |c| {
        if c.records.len() == 10 {
            let _ = all_tx.send(());
        }
    });
    let (dead, _) = DeadLetterSink::new();
    let pipeline = Pipeline::builder()
        .settings(settings(1))
        .source(source)
        .sink(sink)
        .dead_letter(dead)
        .build()
        .unwrap();
    let running = start(pipeline);
    all_rx.recv_timeout(GUARD).expect("all 10 events delivered");
    running.handle.shutdown();
    let report = running.wait();
    check_invariant(&report);
    assert_eq!(report.stopped_by, StopCause::Requested);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!((report.read, report.delivered), (10, 10));
    assert_eq!(committed_map(&report), BTreeMap::from([(0, 27)]));
    assert_eq!(lock(&log).committed(), BTreeMap::from([(0, 27)]));
}

/// One key stuck in a stage, `key` ordering, and the pool's queue full of
/// jobs waiting behind the stuck key's lane, so that the source thread may
/// be blocked handing over a batch: `shutdown()` must still end the run at
/// the 300 ms drain deadline, with the stuck key's events abandoned.
#[test]
fn shutdown_returns_while_a_stuck_key_fills_the_pool_queue() {
    const STUCK: Offset = 100;
    const PAST: Offset = STUCK + 2_000;
    let source = GenSource::new(1, None, |p, o| event(p, o).with_key(format!("k{}", o % 8)));
    let log = source.log();
    let gate = Gate::new();
    let _release = gate.open_on_drop();
    let (reached_tx, reached_rx) = mpsc::channel();
    let stage = {
        let gate = gate.clone();
        let reached_tx = std::sync::Mutex::new(reached_tx);
        move |event: &mut Event| -> Result<Outcome, StageError> {
            if event.origin().offset == STUCK {
                let _ = lock(&reached_tx).send(());
                gate.wait();
            }
            Ok(Outcome::Keep)
        }
    };
    let (past_tx, past_rx) = mpsc::channel();
    let (sink, store) = CollectingSink::new();
    let sink = sink.with_hook(move |c| {
        if c.records.last().is_some_and(|r| r.origin.offset >= PAST) {
            let _ = past_tx.send(());
        }
    });
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(2);
    s.ordering = Ordering::Key;
    s.drain_timeout = Duration::from_millis(300);
    let pipeline = common::one_stage_pipeline(s, source, "gated", stage, sink, dead);
    let running = start(pipeline);
    reached_rx
        .recv_timeout(GUARD)
        .expect("the stage reaches the stuck event");
    // Wait until either the other keys got far past the stuck one, or the
    // pool's queue is full while a worker idles (every queued job waits
    // behind the stuck lane): the state in which the source cannot hand
    // over its next batch.
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        match past_rx.recv_timeout(Duration::from_millis(1)) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the sink is gone"),
        }
        let snapshot = running.handle.snapshot();
        let (_, pool) = &snapshot.pools[0];
        if pool.queue_capacity.is_some_and(|c| pool.queued >= c) && pool.idle >= 1 {
            eprintln!("the pool's queue is full of jobs parked behind the stuck lane: {pool:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither progress nor a full queue: {snapshot:?}"
        );
    }
    running.handle.shutdown();
    // A failure guard only: the drain deadline is 300 ms.
    let report = running.wait_for(Duration::from_secs(60));
    gate.open();

    check_invariant(&report);
    assert_eq!(report.stopped_by, StopCause::Requested);
    assert!(report.abandoned >= 1);
    let committed = committed_map(&report);
    assert!(
        committed.get(&0).is_none_or(|&c| c < STUCK),
        "{committed:?}"
    );
    let delivered: HashSet<Origin> = lock(&store).origins().into_iter().collect();
    assert_commits_delivered(&committed, &delivered);
    assert!(lock(&log).violations.is_empty());
}

/// A shutdown requested before the run starts (a signal that came early):
/// the run reads nothing and returns at once, cleanly.
#[test]
fn shutdown_before_run_reads_nothing() {
    let source = GenSource::new(1, None, event);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let pipeline = Pipeline::builder()
        .settings(settings(1))
        .source(source)
        .sink(sink)
        .dead_letter(dead)
        .build()
        .unwrap();
    pipeline.handle().shutdown();
    let report = start(pipeline).wait();
    check_invariant(&report);
    assert_eq!(report.stopped_by, StopCause::Requested);
    assert_eq!((report.read, report.abandoned), (0, 0));
    assert!(report.committed.is_empty());
    assert_eq!(lock(&log).total_pushed(), 0);
    assert!(lock(&store).records.is_empty());
}

/// A sink stuck for good (a hung write) backs everything up to the source:
/// the workers wait to hand batches to the sink thread, the source waits for
/// room in the pool's queue. A stop must still end the run: the blocked
/// hand-offs give up at the drain deadline, and their events are abandoned.
#[test]
fn a_sink_stuck_for_good_does_not_keep_a_stop_from_ending_the_run() {
    let source = GenSource::new(2, None, event);
    let gate = Gate::new();
    let _release = gate.open_on_drop();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (sink, _store) = CollectingSink::new();
    let sink = sink.with_hook({
        let gate = gate.clone();
        let entered_tx = std::sync::Mutex::new(entered_tx);
        move |_| {
            let _ = lock(&entered_tx).send(());
            gate.wait();
        }
    });
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(2);
    s.drain_timeout = Duration::from_secs(3600);
    let keep = |_: &mut Event| -> Result<Outcome, StageError> { Ok(Outcome::Keep) };
    let pipeline = common::one_stage_pipeline(s, source, "keep", keep, sink, dead);
    let running = start(pipeline);
    entered_rx
        .recv_timeout(GUARD)
        .expect("the sink gets its first batch");
    // Wait until the backpressure reaches the source: the pool's queue is
    // full, so the source's next submit blocks.
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let snapshot = running.handle.snapshot();
        let stats = &snapshot.pools[0].1;
        if Some(stats.queued) == stats.queue_capacity {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "HANG: the queue never filled: {stats:?}"
        );
        // A condition poll, not a timed wait: the loop ends on the gauge.
        std::thread::sleep(Duration::from_millis(5));
    }
    running.handle.shutdown();
    running.handle.shutdown_now();
    let report = running.wait();
    assert!(!gate.is_open(), "the sink was stuck the whole time");
    gate.open();
    check_invariant(&report);
    assert_eq!(report.stopped_by, StopCause::Requested);
    assert!(report.abandoned > 0, "{report:#?}");
    // Nothing was acked after the stuck write, so nothing past it committed.
    assert_eq!(report.delivered, 0, "{report:#?}");
}

/// Settings built in code are not bounded like the config file's: a drain
/// timeout, commit interval and linger of "forever" must not overflow the
/// clock.
#[test]
fn durations_too_long_for_the_clock_do_not_panic() {
    let mut s = settings(2);
    s.drain_timeout = Duration::MAX;
    s.commit_interval = Duration::MAX;
    s.batch.linger = Duration::MAX;
    s.flush_interval = Duration::from_millis(1);
    // Never ends by itself, so the run ends by the shutdown whenever it
    // lands (a source that ended first would make this a race).
    let source = MemSource::new((0..100).map(|o| Spec::new(0, o, format!("{{\"n\":{o}}}"))))
        .end_when(|_| false);
    let (sink, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let keep = |_: &mut Event| -> Result<Outcome, StageError> { Ok(Outcome::Keep) };
    let pipeline = common::one_stage_pipeline(s, source, "keep", keep, sink, dead);
    let running = start(pipeline);
    running.handle.shutdown();
    let report = running.wait();
    check_invariant(&report);
    assert_eq!(report.stopped_by, StopCause::Requested);
    assert!(lock(&store).origins().len() as u64 >= report.delivered);
}
