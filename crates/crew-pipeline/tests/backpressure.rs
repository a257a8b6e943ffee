//! Backpressure: the in-flight budget (events and bytes) holds while a slow
//! sink writes, acks come only after the flush, the heap stays bounded by
//! the budget while the input is many times larger, and a partition at its
//! room limit pauses alone while the others flow.
//!
//! The heap is measured with a counting global allocator, so the tests of
//! this binary run one at a time (see [`serial`]).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use common::{
    check_invariant, committed_map, lock, run, settings, start, CollectingSink, DeadLetterSink,
    Gate, GenSource, MemSource, Spec,
};
use crew_pipeline::{
    Budget, Event, Offset, Ordering, Origin, OutBatch, Outcome, Partition, Pipeline,
    PipelineHandle, Sink, SinkError, StageError, StopCause,
};

// ---------------------------------------------------------------------------
// A counting allocator: current and peak bytes allocated by the process.
// ---------------------------------------------------------------------------

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, AtomicOrdering::Relaxed) + n;
    PEAK.fetch_max(now, AtomicOrdering::Relaxed);
}

fn shrank(n: usize) {
    CURRENT.fetch_sub(n, AtomicOrdering::Relaxed);
}

// SAFETY: every call forwards to the system allocator with the same
// arguments; the counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this binary run one at a time: the heap test measures the
/// whole process.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    lock(&SERIAL)
}

// ---------------------------------------------------------------------------
// The in-flight budget, seen from inside a slow sink.
// ---------------------------------------------------------------------------

/// What the sink saw of the pipeline while writing.
#[derive(Debug, Default)]
struct Seen {
    max_events: usize,
    max_bytes: usize,
    writes: usize,
    records: usize,
    problems: Vec<String>,
}

/// A slow sink that reads the pipeline's snapshot in every write and checks
/// the budget, and that the batch it is writing is neither acked nor
/// committed yet.
struct WatchingSink {
    handle: Arc<OnceLock<PipelineHandle>>,
    budget: Budget,
    max_event_bytes: usize,
    seen: Arc<Mutex<Seen>>,
    delay: Duration,
}

impl Sink for WatchingSink {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        // The sink's own slowness (a workload, not synchronization).
        std::thread::sleep(self.delay);
        let snapshot = self
            .handle
            .get()
            .expect("the handle is set before the run")
            .snapshot();
        let mut seen = lock(&self.seen);
        seen.writes += 1;
        seen.records += batch.len();
        seen.max_events = seen.max_events.max(snapshot.in_flight_events);
        seen.max_bytes = seen.max_bytes.max(snapshot.in_flight_bytes);
        if snapshot.in_flight_events > self.budget.max_events {
            seen.problems.push(format!(
                "{} events in flight > {}",
                snapshot.in_flight_events, self.budget.max_events
            ));
        }
        if snapshot.in_flight_bytes > self.budget.max_bytes + self.max_event_bytes {
            seen.problems.push(format!(
                "{} bytes in flight > {} + one event",
                snapshot.in_flight_bytes, self.budget.max_bytes
            ));
        }
        if snapshot.in_flight_events < batch.len() {
            seen.problems.push(format!(
                "writing {} events but only {} in flight: acked before the write",
                batch.len(),
                snapshot.in_flight_events
            ));
        }
        for (_, _, origin) in batch.records() {
            if snapshot
                .committed
                .get(&origin.partition)
                .is_some_and(|&c| c >= origin.offset)
            {
                seen.problems.push(format!(
                    "{origin:?} committed ({:?}) before the sink wrote it",
                    snapshot.committed
                ));
            }
        }
        Ok(())
    }
}

/// A payload of `len` bytes or a little more, JSON.
fn payload(offset: Offset, len: usize) -> String {
    let head = format!("{{\"offset\":{offset},\"text\":\"");
    let fill = len.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(fill))
}

#[test]
fn in_flight_never_exceeds_the_budget_and_acks_wait_for_the_sink() {
    let _serial = serial();
    const EVENTS: u64 = 1_500;
    const MAX_EVENT: usize = 400;
    let budget = Budget {
        max_events: 300,
        max_bytes: 48 << 10,
        max_per_partition: 1_000,
    };
    let source = GenSource::new(3, Some(EVENTS), |p, o| {
        let len = 100 + (common::mix(o ^ u64::from(p)) % 300) as usize;
        Event::new(
            Origin {
                partition: p,
                offset: o,
            },
            payload(o, len),
        )
    });
    let log = source.log();
    let handle = Arc::new(OnceLock::new());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = WatchingSink {
        handle: Arc::clone(&handle),
        budget,
        max_event_bytes: MAX_EVENT,
        seen: Arc::clone(&seen),
        delay: Duration::from_millis(10),
    };
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(2);
    s.budget = budget;
    s.batch.max_events = 100;
    let pipeline = common::one_stage_pipeline(
        s,
        source,
        "noop",
        |_: &mut Event| -> Result<Outcome, StageError> { Ok(Outcome::Keep) },
        sink,
        dead,
    );
    handle.set(pipeline.handle()).expect("set once");
    let report = run(pipeline);
    let seen = lock(&seen);
    eprintln!(
        "in flight at most {} events / {} bytes over {} writes (budget {} / {})",
        seen.max_events, seen.max_bytes, seen.writes, budget.max_events, budget.max_bytes
    );
    assert!(seen.problems.is_empty(), "{:#?}", seen.problems);
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.delivered, 3 * EVENTS);
    assert_eq!(committed_map(&report), lock(&log).last);
    assert_eq!(seen.records as u64, 3 * EVENTS);
    let after = handle.get().unwrap().snapshot();
    assert_eq!((after.in_flight_events, after.in_flight_bytes), (0, 0));
}

// ---------------------------------------------------------------------------
// Peak heap.
// ---------------------------------------------------------------------------

/// Counts records and bytes; keeps nothing. Works a little per write so that
/// the sink, not the source, sets the pace and the budget fills up.
struct CountingSink {
    records: Arc<AtomicUsize>,
}

impl Sink for CountingSink {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        common::spin_for(Duration::from_micros(500));
        self.records.fetch_add(batch.len(), AtomicOrdering::Relaxed);
        Ok(())
    }
}

/// An event of about 600 bytes of JSON: numbers, strings, a nested object
/// and an array, like a typical log or click event.
fn json_event(partition: Partition, offset: Offset) -> Event {
    let text = "lorem ipsum dolor sit amet consectetur adipiscing elit ".repeat(8);
    let raw = format!(
        "{{\"event_id\":\"{partition}-{offset:012}\",\"ts\":{},\"user\":{{\"id\":{},\"name\":\"user-{}\",\
         \"plan\":\"pro\"}},\"tags\":[\"a\",\"bb\",\"ccc\",\"dddd\"],\"scores\":[1,2,3,4,5,6,7,8],\
         \"text\":\"{text}\",\"ok\":true}}",
        1_700_000_000_000u64 + offset,
        offset % 9_973,
        offset % 101,
    );
    Event::new(Origin { partition, offset }, raw)
}

/// 160k events of ~600 bytes (~94 MiB) through a parsing stage with a 2 MiB
/// budget: the peak heap during the run stays under 8 × the budget plus
/// 4 MiB (20 MiB), less than a fourth of the input.
///
/// Where the factor 8 comes from, for the events in flight at most:
/// - raw bytes: 1 × the budget (the budget counts them; one more event may
///   cross it);
/// - parsed values: a `sonic_rs::Value` takes a few times its raw bytes
///   (about 3.7× for these events; the test measures it and checks ≤ 5×).
///   Batches here may be as large as the budget, so every event in flight
///   may be parsed at once: up to ~3.7 × the budget;
/// - encoded output: after the last stage each event is encoded (~1× its
///   raw bytes) and its value dropped: up to 1 × the budget;
/// - the rest (~2.3×): buffers grown by doubling (the encoded batch, the
///   read batch's vector), allocator rounding, `Bytes` and record headers.
///
/// The 4 MiB fixed part covers what does not scale with the budget: thread
/// and pool bookkeeping, the source's commit log, the test harness.
///
/// Measured: about 12 MiB. Without the budget (the source reading as fast
/// as the bounded queues let it, batches of up to 4 MiB) the same run peaks
/// at about 70 MiB, so the bound tells the two apart.
#[test]
fn peak_heap_is_bounded_by_the_budget_not_the_input() {
    let _serial = serial();
    const PARTITIONS: u32 = 4;
    const PER_PARTITION: u64 = 40_000;
    const BUDGET_BYTES: usize = 2 << 20;
    const FACTOR: usize = 8;
    const FIXED: usize = 4 << 20;
    const VALUE_FACTOR: usize = 5;

    // The assumption about parsed values, checked on 1000 events held at
    // once (a single small value overstates: its arena has a minimum size).
    let samples: Vec<Event> = (0..1_000).map(|o| json_event(0, o)).collect();
    let raw_bytes: usize = samples.iter().map(|e| e.raw().len()).sum();
    let before = CURRENT.load(AtomicOrdering::Relaxed);
    let values: Vec<crew_pipeline::Value> = samples
        .iter()
        .map(|e| sonic_rs::from_slice(e.raw()).unwrap())
        .collect();
    let value_bytes = CURRENT.load(AtomicOrdering::Relaxed) - before;
    drop(values);
    eprintln!(
        "parsed values take {value_bytes} bytes for {raw_bytes} raw bytes ({:.1}×)",
        value_bytes as f64 / raw_bytes as f64
    );
    assert!(value_bytes <= VALUE_FACTOR * raw_bytes);

    let input_bytes: usize = (0..PARTITIONS)
        .map(|p| {
            (0..PER_PARTITION)
                .map(|o| json_event(p, o).raw().len())
                .sum::<usize>()
        })
        .sum();
    let source = GenSource::new(PARTITIONS, Some(PER_PARTITION), json_event);
    let records = Arc::new(AtomicUsize::new(0));
    let sink = CountingSink {
        records: Arc::clone(&records),
    };
    let parse = |event: &mut Event| -> Result<Outcome, StageError> {
        let value: crew_pipeline::Value = sonic_rs::from_slice(event.raw())
            .map_err(|e| StageError::fatal("parse", e.to_string()))?;
        event.set_value(value);
        Ok(Outcome::Keep)
    };
    let (dead, dead_store) = DeadLetterSink::new();
    let mut s = settings(2);
    s.budget = Budget {
        max_events: 50_000,
        max_bytes: BUDGET_BYTES,
        max_per_partition: 50_000,
    };
    // Batches large enough that the budget, not the batch size times the
    // bounded queues, is what limits the bytes in flight.
    s.batch.max_events = 5_000;
    s.batch.max_bytes = 4 << 20;

    let baseline = CURRENT.load(AtomicOrdering::Relaxed);
    PEAK.store(baseline, AtomicOrdering::Relaxed);
    let pipeline = common::one_stage_pipeline(s, source, "parse", parse, sink, dead);
    let report = run(pipeline);
    let peak = PEAK.load(AtomicOrdering::Relaxed) - baseline;

    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert!(lock(&dead_store).is_empty());
    let total = u64::from(PARTITIONS) * PER_PARTITION;
    assert_eq!(report.delivered, total);
    assert_eq!(records.load(AtomicOrdering::Relaxed) as u64, total);
    let bound = FACTOR * BUDGET_BYTES + FIXED;
    eprintln!(
        "peak heap {:.1} MiB for {:.1} MiB of input, budget {} MiB, bound {} MiB",
        peak as f64 / (1 << 20) as f64,
        input_bytes as f64 / (1 << 20) as f64,
        BUDGET_BYTES >> 20,
        bound >> 20
    );
    assert!(
        input_bytes > 4 * bound,
        "the input must dwarf the bound for the test to mean anything"
    );
    assert!(
        peak <= bound,
        "peak heap {peak} bytes > bound {bound} bytes (input {input_bytes} bytes)"
    );
}

// ---------------------------------------------------------------------------
// Per-partition room.
// ---------------------------------------------------------------------------

/// How long the flow tests wait for the other partitions or keys to get
/// through: a failure guard (they need well under a second), not a bound.
const FLOW_GUARD: Duration = Duration::from_secs(60);

/// Specs: `stuck_events` of partition 0 and `others` of partitions 1 and 2,
/// interleaved by offset.
fn room_specs(stuck_events: u64, others: u64) -> Vec<Spec> {
    let mut specs = Vec::new();
    for offset in 0..others.max(stuck_events) {
        for partition in 0..3u32 {
            let limit = if partition == 0 { stuck_events } else { others };
            if offset < limit {
                specs.push(Spec::new(
                    partition,
                    offset,
                    format!("{{\"p\":{partition},\"o\":{offset}}}"),
                ));
            }
        }
    }
    specs
}

/// Runs the room scenario: partition 0's first event blocks in the stage
/// until partitions 1 and 2 are fully delivered; checks that the source was
/// never offered more than `max_per_partition` events of partition 0 while
/// it was stuck, and that everything arrives once released.
fn partition_room_scenario(max_per_partition: usize, per_read: usize) {
    const STUCK_EVENTS: u64 = 40;
    const OTHERS: u64 = 400;
    let source = MemSource::new(room_specs(STUCK_EVENTS, OTHERS)).per_read(per_read);
    let log = source.log();
    let gate = Gate::new();
    let _release = gate.open_on_drop();
    let stage = {
        let gate = gate.clone();
        move |event: &mut Event| -> Result<Outcome, StageError> {
            if event.origin()
                == (Origin {
                    partition: 0,
                    offset: 0,
                })
            {
                gate.wait();
            }
            Ok(Outcome::Keep)
        }
    };
    let (others_done_tx, others_done_rx) = mpsc::channel();
    let (sink, store) = CollectingSink::new();
    let sink = sink.with_hook(move |c| {
        let others = c.records.iter().filter(|r| r.origin.partition != 0).count() as u64;
        if others == 2 * OTHERS {
            let _ = others_done_tx.send(());
        }
    });
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(2);
    s.ordering = Ordering::Partition;
    s.budget.max_per_partition = max_per_partition;
    let pipeline = common::one_stage_pipeline(s, source, "gated", stage, sink, dead);
    let running = start(pipeline);
    // A failure guard only.
    if others_done_rx.recv_timeout(FLOW_GUARD).is_err() {
        let snapshot = running.handle.snapshot();
        let message = format!(
            "partitions 1 and 2 stopped flowing while partition 0 was stuck at its room limit: read {}, \
             delivered {}, in flight {}, partition 0 read {}, pools {:?}",
            snapshot.read,
            snapshot.delivered,
            snapshot.in_flight_events,
            lock(&log).pushed_of(0),
            snapshot.pools
        );
        // Let the run finish before failing, so it does not disturb the
        // next test of this binary.
        gate.open();
        let _ = running.wait();
        panic!("{message}");
    }
    {
        let log = lock(&log);
        assert_eq!(
            log.pushed_of(0),
            max_per_partition,
            "while stuck, partition 0 is read up to its room and no further"
        );
        assert_eq!(
            log.refused_with_room, 0,
            "push refused an event that room() allowed"
        );
        assert!(lock(&store).records.iter().all(|r| r.origin.partition != 0));
    }
    gate.open();
    let report = running.wait();
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.stopped_by, StopCause::SourceEnded);
    assert_eq!(report.delivered, STUCK_EVENTS + 2 * OTHERS);
    assert_eq!(
        committed_map(&report),
        BTreeMap::from([(0, STUCK_EVENTS - 1), (1, OTHERS - 1), (2, OTHERS - 1)])
    );
    // Partition order held, partition 0 included.
    let store = lock(&store);
    let mut last: HashMap<Partition, Offset> = HashMap::new();
    for r in &store.records {
        if let Some(&previous) = last.get(&r.origin.partition) {
            assert!(
                r.origin.offset > previous,
                "{:?} after {previous}",
                r.origin
            );
        }
        last.insert(r.origin.partition, r.origin.offset);
    }
    let unique: HashSet<Origin> = store.origins().into_iter().collect();
    assert_eq!(unique.len(), store.records.len());
}

/// Reads in batches of up to 32 events: partition 0's room (4) is used up
/// by the first read; the other partitions go on.
#[test]
fn a_partition_at_its_room_limit_pauses_alone() {
    let _serial = serial();
    partition_room_scenario(4, usize::MAX);
}

/// The same with a source that returns small reads (one event per
/// partition per read, like a consumer fetching as data trickles in) and a
/// room of 16: each of partition 0's events travels in its own job, and
/// those jobs wait behind the stuck one.
#[test]
fn a_partition_at_its_room_limit_pauses_alone_with_small_reads() {
    let _serial = serial();
    partition_room_scenario(16, 3);
}

/// Key ordering: one key stuck in a stage; the other keys keep flowing while
/// the budget is far from used up.
#[test]
fn other_keys_keep_flowing_while_one_key_is_stuck() {
    let _serial = serial();
    const STUCK: Offset = 100;
    const PAST: Offset = 2_000;
    let source = GenSource::new(1, Some(3_000), |p, o| {
        Event::new(
            Origin {
                partition: p,
                offset: o,
            },
            format!("{{\"o\":{o}}}"),
        )
        .with_key(format!("k{}", o % 8))
    });
    let gate = Gate::new();
    let _release = gate.open_on_drop();
    let stage = {
        let gate = gate.clone();
        move |event: &mut Event| -> Result<Outcome, StageError> {
            if event.origin().offset == STUCK {
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
    let pipeline = common::one_stage_pipeline(s, source, "gated", stage, sink, dead);
    let running = start(pipeline);
    if past_rx.recv_timeout(FLOW_GUARD).is_err() {
        let snapshot = running.handle.snapshot();
        let message = format!(
            "the other keys stopped flowing while key k{} was stuck: read {}, delivered {}, in flight {} \
             (budget {}), pools {:?}",
            STUCK % 8,
            snapshot.read,
            snapshot.delivered,
            snapshot.in_flight_events,
            crew_pipeline::Settings::default().budget.max_events,
            snapshot.pools
        );
        gate.open();
        let _ = running.wait();
        panic!("{message}");
    }
    assert!(
        lock(&store).records.iter().all(|r| r.key.as_deref()
            != Some(format!("k{}", STUCK % 8).as_bytes())
            || r.origin.offset < STUCK),
        "the stuck key's later events wait for it"
    );
    gate.open();
    let report = running.wait();
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.delivered, 3_000);
}

/// Events larger than the whole byte budget still get through, one at a
/// time: the budget pauses reading, it never deadlocks it.
#[test]
fn events_larger_than_the_byte_budget_still_flow() {
    let _serial = serial();
    let source = GenSource::new(2, Some(50), |p, o| {
        Event::new(
            Origin {
                partition: p,
                offset: o,
            },
            payload(o, 8 << 10),
        )
    });
    let log = source.log();
    let handle = Arc::new(OnceLock::new());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let budget = Budget {
        max_events: 100,
        max_bytes: 1 << 10,
        max_per_partition: 100,
    };
    let sink = WatchingSink {
        handle: Arc::clone(&handle),
        budget,
        max_event_bytes: 9 << 10,
        seen: Arc::clone(&seen),
        delay: Duration::ZERO,
    };
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(2);
    s.budget = budget;
    let pipeline = Pipeline::builder()
        .settings(s)
        .source(source)
        .sink(sink)
        .dead_letter(dead)
        .build()
        .unwrap();
    handle.set(pipeline.handle()).expect("set once");
    let report = run(pipeline);
    let seen = lock(&seen);
    assert!(seen.problems.is_empty(), "{:#?}", seen.problems);
    assert_eq!(
        seen.max_events, 1,
        "one oversized event in flight at a time"
    );
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.delivered, 100);
    assert_eq!(committed_map(&report), lock(&log).last);
}

/// Acks wait for the flush: while the sink's first flush is blocked, the
/// events it wrote are still in flight, not delivered, not committed.
#[test]
fn acks_wait_for_the_sinks_flush() {
    struct GatedFlush {
        inner: CollectingSink,
        entered: mpsc::Sender<usize>,
        gate: Gate,
        written: usize,
        first: bool,
    }
    impl Sink for GatedFlush {
        fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
            self.written += batch.len();
            self.inner.write(batch)
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            if std::mem::take(&mut self.first) {
                let _ = self.entered.send(self.written);
                self.gate.wait();
            }
            self.inner.flush()
        }
    }
    let _serial = serial();
    let specs: Vec<Spec> = (0..200u64)
        .map(|o| Spec::new((o % 2) as Partition, o / 2, "{}"))
        .collect();
    let source = MemSource::new(specs).per_read(10);
    let log = source.log();
    let gate = Gate::new();
    let _release = gate.open_on_drop();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (inner, store) = CollectingSink::new();
    let sink = GatedFlush {
        inner,
        entered: entered_tx,
        gate: gate.clone(),
        written: 0,
        first: true,
    };
    let (dead, _) = DeadLetterSink::new();
    let pipeline = Pipeline::builder()
        .settings(settings(2))
        .source(source)
        .sink(sink)
        .dead_letter(dead)
        .build()
        .unwrap();
    let running = start(pipeline);
    let written = entered_rx
        .recv_timeout(FLOW_GUARD)
        .expect("the sink flushes");
    assert!(written > 0);
    let snapshot = running.handle.snapshot();
    assert_eq!(
        snapshot.delivered, 0,
        "delivered before the flush: {snapshot:?}"
    );
    assert!(
        snapshot.committed.is_empty(),
        "committed before the flush: {snapshot:?}"
    );
    assert!(
        snapshot.in_flight_events >= written,
        "{written} written events must still be in flight: {snapshot:?}"
    );
    assert!(lock(&log).commits.is_empty());
    gate.open();
    let report = running.wait();
    check_invariant(&report);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.delivered, 200);
    assert_eq!(lock(&store).records.len(), 200);
    assert_eq!(committed_map(&report), BTreeMap::from([(0, 99), (1, 99)]));
}
