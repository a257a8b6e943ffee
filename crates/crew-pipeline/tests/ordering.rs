//! Ordering: with random per-event work in the stages (so batches finish out
//! of order), `key` ordering keeps every key's events in read order,
//! `partition` ordering every partition's, and `unordered` delivers every
//! event exactly once. Also keys read from the raw JSON (`key_field`) and a
//! chain of two pools (`stage_with_workers`).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use common::{
    check_invariant, committed_map, lock, random_work, run, seed, settings, Collected,
    CollectingSink, DeadLetterSink, MemSource, Rng, SourceLog, Spec,
};
use crew_pipeline::{Event, Ordering, Origin, Outcome, Partition, Pipeline, StageError, StopCause};

const PARTITIONS: u32 = 4;
const KEYS: u64 = 64;
const EVENTS: usize = 4_000;

/// Events over [`PARTITIONS`] partitions (offsets with gaps), keyed with one
/// of [`KEYS`] keys when `keyed`.
fn specs(seed: u64, keyed: bool) -> Vec<Spec> {
    let mut rng = Rng::new(seed);
    let mut next = [0u64; PARTITIONS as usize];
    (0..EVENTS)
        .map(|i| {
            let p = rng.below(u64::from(PARTITIONS)) as usize;
            let offset = next[p];
            next[p] += 1 + rng.below(2);
            let spec = Spec::new(p as Partition, offset, format!("{{\"i\":{i}}}"));
            if keyed {
                spec.with_key(format!("key-{}", rng.below(KEYS)))
            } else {
                spec
            }
        })
        .collect()
}

/// A stage that works 0–200 µs per event.
fn busy(seed: u64) -> impl Fn(&mut Event) -> Result<Outcome, StageError> + Send + Sync + 'static {
    move |event: &mut Event| {
        random_work(seed, event.origin(), 200);
        Ok(Outcome::Keep)
    }
}

/// Runs `specs` through one busy stage with `ordering` and 4 workers;
/// returns what the sink got and the source's log.
fn run_ordered(
    seed: u64,
    specs: Vec<Spec>,
    ordering: Ordering,
) -> (Arc<Mutex<Collected>>, Arc<Mutex<SourceLog>>) {
    let n = specs.len() as u64;
    let source = MemSource::new(specs).per_read(50);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, dead_store) = DeadLetterSink::new();
    let mut s = settings(4);
    s.ordering = ordering;
    let pipeline = common::one_stage_pipeline(s, source, "busy", busy(seed), sink, dead);
    let report = run(pipeline);
    check_invariant(&report);
    assert_eq!(report.stopped_by, StopCause::SourceEnded);
    assert_eq!(
        (report.read, report.delivered, report.abandoned),
        (n, n, 0),
        "{report:#?}"
    );
    assert!(lock(&dead_store).is_empty());
    assert_eq!(committed_map(&report), lock(&log).last_pushed());
    (store, log)
}

/// Asserts every event pushed was delivered exactly once.
fn assert_exactly_once(store: &Collected, log: &SourceLog) {
    let mut counts: HashMap<Origin, usize> = HashMap::new();
    for record in &store.records {
        *counts.entry(record.origin).or_default() += 1;
    }
    for origin in &log.pushed {
        assert_eq!(
            counts.get(origin),
            Some(&1),
            "{origin:?} delivered {:?} times",
            counts.get(origin)
        );
    }
    assert_eq!(store.records.len(), log.pushed.len());
}

/// Positions of the events in the source's read order.
fn read_position(log: &SourceLog) -> HashMap<Origin, usize> {
    log.pushed
        .iter()
        .enumerate()
        .map(|(i, &o)| (o, i))
        .collect()
}

/// Asserts that, within each group, records reached the sink in read order.
/// Returns the number of groups and of inversions between groups (how much
/// the workload reordered across groups).
fn assert_in_read_order<G: Ord + std::fmt::Debug>(
    store: &Collected,
    log: &SourceLog,
    group: impl Fn(&common::Rec) -> G,
) -> usize {
    let position = read_position(log);
    let mut last: BTreeMap<G, usize> = BTreeMap::new();
    for record in &store.records {
        let pos = position[&record.origin];
        let g = group(record);
        if let Some(&previous) = last.get(&g) {
            assert!(
                pos > previous,
                "group {g:?}: the event read at #{pos} ({:?}) reached the sink after the one read at #{previous}",
                record.origin
            );
        }
        last.insert(g, pos);
    }
    last.len()
}

/// Inversions of the sink order against the read order: evidence that the
/// workload does reorder, so the ordered tests are not vacuous.
fn inversions(store: &Collected, log: &SourceLog) -> usize {
    let position = read_position(log);
    let order: Vec<usize> = store.records.iter().map(|r| position[&r.origin]).collect();
    let mut max = 0;
    let mut count = 0;
    for &p in &order {
        if p < max {
            count += 1;
        }
        max = max.max(p);
    }
    count
}

#[test]
fn key_ordering_keeps_each_keys_read_order() {
    let seed = seed("key_ordering_keeps_each_keys_read_order");
    let (store, log) = run_ordered(seed, specs(seed, true), Ordering::Key);
    let (store, log) = (lock(&store), lock(&log));
    assert_exactly_once(&store, &log);
    let keys = assert_in_read_order(&store, &log, |r| {
        r.key.clone().expect("keyed records keep their key")
    });
    assert_eq!(keys as u64, KEYS, "every key reached the sink");
    eprintln!(
        "key ordering: {} records out of global read order",
        inversions(&store, &log)
    );
}

#[test]
fn partition_ordering_keeps_each_partitions_read_order() {
    let seed = seed("partition_ordering_keeps_each_partitions_read_order");
    // Keyed events too: partition ordering must ignore the keys.
    let (store, log) = run_ordered(seed, specs(seed, true), Ordering::Partition);
    let (store, log) = (lock(&store), lock(&log));
    assert_exactly_once(&store, &log);
    let partitions = assert_in_read_order(&store, &log, |r| r.origin.partition);
    assert_eq!(partitions as u32, PARTITIONS);
}

#[test]
fn unordered_delivers_everything_exactly_once() {
    let seed = seed("unordered_delivers_everything_exactly_once");
    let (store, log) = run_ordered(seed, specs(seed, true), Ordering::Unordered);
    let (store, log) = (lock(&store), lock(&log));
    assert_exactly_once(&store, &log);
    eprintln!(
        "unordered: {} records out of global read order",
        inversions(&store, &log)
    );
}

/// Keyless events in key mode follow their partition.
#[test]
fn key_ordering_without_keys_keeps_partition_order() {
    let seed = seed("key_ordering_without_keys_keeps_partition_order");
    let (store, log) = run_ordered(seed, specs(seed, false), Ordering::Key);
    let (store, log) = (lock(&store), lock(&log));
    assert_exactly_once(&store, &log);
    assert_in_read_order(&store, &log, |r| r.origin.partition);
    assert!(store.records.iter().all(|r| r.key.is_none()));
}

/// The key is read from the raw JSON (`user/id`, a string or a number); an
/// event without the field keeps no key and follows its partition.
#[test]
fn key_field_reads_the_key_from_raw_json() {
    let seed = seed("key_field_reads_the_key_from_raw_json");
    let mut rng = Rng::new(seed);
    let mut next = [0u64; PARTITIONS as usize];
    let mut expected_key: HashMap<Origin, Option<Vec<u8>>> = HashMap::new();
    let specs: Vec<Spec> = (0..EVENTS)
        .map(|i| {
            let p = rng.below(u64::from(PARTITIONS)) as usize;
            let offset = next[p];
            next[p] += 1;
            let id = rng.below(40);
            let (payload, key) = match rng.below(10) {
                0 => (format!("{{\"i\":{i},\"user\":{{\"name\":\"x\"}}}}"), None),
                1..=3 => (
                    format!("{{\"i\":{i},\"user\":{{\"id\":{id},\"name\":\"n\"}}}}"),
                    Some(id.to_string().into_bytes()),
                ),
                _ => (
                    format!("{{\"user\":{{\"name\":\"n\",\"id\":\"u{id}\"}},\"i\":{i}}}"),
                    Some(format!("u{id}").into_bytes()),
                ),
            };
            let spec = Spec::new(p as Partition, offset, payload);
            expected_key.insert(spec.origin(), key);
            spec
        })
        .collect();

    let source = MemSource::new(specs).per_read(50);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(4);
    s.ordering = Ordering::Key;
    s.key_field = Some("user/id".to_owned());
    let pipeline = common::one_stage_pipeline(s, source, "busy", busy(seed), sink, dead);
    let report = run(pipeline);
    check_invariant(&report);
    assert_eq!(report.delivered, EVENTS as u64);

    let (store, log) = (lock(&store), lock(&log));
    assert_exactly_once(&store, &log);
    for record in &store.records {
        assert_eq!(
            record.key.as_deref(),
            expected_key[&record.origin].as_deref(),
            "the key of {:?} ({})",
            record.origin,
            String::from_utf8_lossy(&record.bytes)
        );
    }
    // Keyed events in key order; keyless ones in partition order.
    assert_in_read_order(&store, &log, |r| match &r.key {
        Some(key) => (0, key.clone()),
        None => (1, r.origin.partition.to_be_bytes().to_vec()),
    });
}

/// Two pools: the second stage runs on its own workers. Both reorder work
/// at random; each key's events still arrive in read order, and both stages
/// saw every event.
#[test]
fn two_segment_chain_keeps_key_order() {
    let seed = seed("two_segment_chain_keeps_key_order");
    let specs = specs(seed, true);
    let n = specs.len() as u64;
    let source = MemSource::new(specs).per_read(50);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(4);
    s.ordering = Ordering::Key;
    // The second stage checks, per key, that it sees events in read order
    // too (the hand-off between pools keeps lanes).
    let seen_second: Arc<Mutex<HashMap<Vec<u8>, Vec<Origin>>>> = Arc::default();
    let second = {
        let seen_second = Arc::clone(&seen_second);
        move |event: &mut Event| -> Result<Outcome, StageError> {
            random_work(seed ^ 0x55, event.origin(), 200);
            let key = event.key().expect("keyed").to_vec();
            lock(&seen_second)
                .entry(key)
                .or_default()
                .push(event.origin());
            Ok(Outcome::Keep)
        }
    };
    let pipeline = Pipeline::builder()
        .settings(s)
        .source(source)
        .stage("first", busy(seed))
        .stage_with_workers("second", second, 3)
        .sink(sink)
        .dead_letter(dead)
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let report = run(pipeline);
    check_invariant(&report);
    assert_eq!((report.read, report.delivered), (n, n));

    let snapshot = handle.snapshot();
    let names: Vec<&str> = snapshot.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["first", "second"]);
    assert!(
        snapshot.stages.iter().all(|s| s.processed == n),
        "{:?}",
        snapshot.stages
    );
    assert_eq!(snapshot.pools.len(), 2, "two pools: {:?}", snapshot.pools);

    let (store, log) = (lock(&store), lock(&log));
    assert_exactly_once(&store, &log);
    assert_in_read_order(&store, &log, |r| r.key.clone().unwrap());
    let position = read_position(&log);
    for (key, origins) in lock(&seen_second).iter() {
        let positions: Vec<usize> = origins.iter().map(|o| position[o]).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "the second stage saw key {} out of order: {positions:?}",
            String::from_utf8_lossy(key)
        );
    }
}

/// With a single lane, key ordering is a total order: the sink gets every
/// event in read order, keys or not.
#[test]
fn a_single_lane_keeps_the_total_read_order() {
    let seed = seed("a_single_lane_keeps_the_total_read_order");
    let specs = specs(seed, true);
    let n = specs.len() as u64;
    let source = MemSource::new(specs).per_read(50);
    let log = source.log();
    let (sink, store) = CollectingSink::new();
    let (dead, _) = DeadLetterSink::new();
    let mut s = settings(4);
    s.ordering = Ordering::Key;
    s.lanes = Some(1);
    let pipeline = common::one_stage_pipeline(s, source, "busy", busy(seed), sink, dead);
    let report = run(pipeline);
    check_invariant(&report);
    assert_eq!(report.delivered, n);
    let (store, log) = (lock(&store), lock(&log));
    assert_eq!(
        store.origins(),
        log.pushed,
        "the sink order is the read order"
    );
}
