//! Property tests of the offset watermarks: `PartitionWatermark` and
//! `Watermarks` against an independent model, and an end-to-end property: a
//! pipeline whose stage randomly keeps, drops, fails and delays events never
//! commits past an unfinished event, and commits the last offset at the end.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use common::{
    by_partition, check_commits_increase, check_invariant, committed_map, lock, rand_of,
    random_work, run, settings, unsafe_commits, CollectingSink, DeadLetterSink, MemSource, Spec,
};
use crew_pipeline::acks::{PartitionWatermark, RegisterError, Watermarks};
use crew_pipeline::{Event, Offset, Ordering, Origin, Outcome, Partition, StageError, StopCause};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// The model: a list of registered events in read order, with done flags.
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Model {
    capacity: usize,
    /// (offset, ticket, done), every event ever registered, in order.
    events: Vec<(Offset, u64, bool)>,
}

impl Model {
    fn new(capacity: usize) -> Model {
        Model {
            capacity: capacity.max(1),
            events: Vec::new(),
        }
    }

    /// Length of the fully done prefix.
    fn prefix(&self) -> usize {
        self.events.iter().take_while(|e| e.2).count()
    }

    fn done_through(&self) -> Option<Offset> {
        match self.prefix() {
            0 => None,
            n => Some(self.events[n - 1].0),
        }
    }

    fn unfinished(&self) -> usize {
        self.events.len() - self.prefix()
    }

    fn room(&self) -> usize {
        self.capacity - self.unfinished()
    }

    fn last_offset(&self) -> Option<Offset> {
        self.events.last().map(|e| e.0)
    }

    fn tickets(&self) -> HashSet<u64> {
        self.events.iter().map(|e| e.1).collect()
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Register the next offset: the last one plus this gap (1..).
    Register(u64),
    /// Register an offset at or below the last one (the last minus this).
    RegisterStale(u64),
    /// Mark done the n-th (mod count) not yet done event.
    Done(usize),
    /// Mark done again the n-th (mod count) already done event.
    DoneAgain(usize),
    /// Mark done a ticket never issued (beyond the last, by this much).
    DoneUnknown(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..5).prop_map(Op::Register),
        1 => (0u64..3).prop_map(Op::RegisterStale),
        4 => any::<usize>().prop_map(Op::Done),
        1 => any::<usize>().prop_map(Op::DoneAgain),
        1 => (0u64..4).prop_map(Op::DoneUnknown),
    ]
}

/// Applies `op` to both the watermark and the model; checks what the
/// watermark returned against the model.
fn apply(
    w: &mut PartitionWatermark,
    m: &mut Model,
    start: Offset,
    op: &Op,
) -> Result<(), TestCaseError> {
    match *op {
        Op::Register(gap) => {
            let offset = m.last_offset().map_or(start, |last| last + gap);
            let result = w.register(offset);
            if m.unfinished() >= m.capacity {
                prop_assert_eq!(result, Err(RegisterError::Full), "register beyond capacity");
            } else {
                let ticket =
                    result.map_err(|e| TestCaseError::fail(format!("register {offset}: {e}")))?;
                prop_assert!(
                    !m.tickets().contains(&ticket),
                    "ticket {} issued twice",
                    ticket
                );
                m.events.push((offset, ticket, false));
            }
        }
        Op::RegisterStale(back) => {
            let Some(last) = m.last_offset() else {
                return Ok(());
            };
            let offset = last.saturating_sub(back);
            let result = w.register(offset);
            if m.unfinished() >= m.capacity {
                prop_assert_eq!(result, Err(RegisterError::Full));
            } else {
                prop_assert_eq!(
                    result,
                    Err(RegisterError::NotIncreasing {
                        offset,
                        previous: last
                    })
                );
            }
        }
        Op::Done(n) => {
            let open: Vec<usize> = (0..m.events.len()).filter(|&i| !m.events[i].2).collect();
            if open.is_empty() {
                return Ok(());
            }
            let index = open[n % open.len()];
            let before = m.done_through();
            let before_prefix = m.prefix();
            m.events[index].2 = true;
            let moved = w.done(m.events[index].1);
            prop_assert_eq!(
                moved,
                m.prefix() != before_prefix,
                "done() says moved={} but the prefix went {:?} -> {:?}",
                moved,
                before,
                m.done_through()
            );
        }
        Op::DoneAgain(n) => {
            let done: Vec<usize> = (0..m.events.len()).filter(|&i| m.events[i].2).collect();
            if done.is_empty() {
                return Ok(());
            }
            let ticket = m.events[done[n % done.len()]].1;
            prop_assert!(!w.done(ticket), "a duplicate done moved the watermark");
        }
        Op::DoneUnknown(beyond) => {
            let ticket = m
                .tickets()
                .into_iter()
                .max()
                .map_or(beyond, |max| max + 1 + beyond);
            prop_assert!(!w.done(ticket), "an unknown ticket moved the watermark");
        }
    }
    Ok(())
}

fn check_state(w: &PartitionWatermark, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        w.done_through(),
        m.done_through(),
        "done_through, model {:?}",
        m.events
    );
    prop_assert_eq!(w.unfinished(), m.unfinished(), "unfinished");
    prop_assert_eq!(w.room(), m.room(), "room");
    prop_assert!(
        w.unfinished() <= m.capacity,
        "more unfinished than the capacity"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Registers with gaps, then marks done in a random order: after every
    /// `done`, `done_through` is the last offset of the fully done prefix.
    #[test]
    fn done_in_any_order_advances_over_the_done_prefix_only(
        start in 0u64..1_000,
        gaps in proptest::collection::vec(1u64..10, 0..80),
        order_seed in any::<u64>(),
    ) {
        let n = gaps.len();
        let mut w = PartitionWatermark::new(n.max(1));
        let mut offsets = Vec::new();
        let mut offset = start;
        let mut tickets = Vec::new();
        for gap in &gaps {
            offset += gap;
            offsets.push(offset);
            tickets.push(w.register(offset).expect("room for every event"));
        }
        prop_assert_eq!(w.done_through(), None);
        // A random permutation of the events, from the seed.
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = common::Rng::new(order_seed);
        for i in (1..n).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut done = vec![false; n];
        for &i in &order {
            w.done(tickets[i]);
            done[i] = true;
            let expected = done_prefix_of(&offsets, &done);
            prop_assert_eq!(w.done_through(), expected, "after done #{} of order {:?}", i, order);
        }
        prop_assert_eq!(w.done_through(), offsets.last().copied());
        prop_assert_eq!(w.unfinished(), 0);
        prop_assert_eq!(w.room(), n.max(1));
    }

    /// Interleaved registers (some refused), dones, duplicate and unknown
    /// dones, against the model after every step.
    #[test]
    fn watermark_matches_the_model(
        capacity in 1usize..8,
        start in 0u64..100,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let mut w = PartitionWatermark::new(capacity);
        let mut m = Model::new(capacity);
        for op in &ops {
            apply(&mut w, &mut m, start, op)?;
            check_state(&w, &m)?;
        }
    }

    /// A ticket marked done before it is issued is ignored: the event that
    /// later gets that ticket is still unfinished.
    #[test]
    fn done_before_register_is_ignored(ahead in 0u64..4, n in 1usize..10) {
        let mut w = PartitionWatermark::new(16);
        let mut tickets = Vec::new();
        for i in 0..n {
            tickets.push(w.register(i as u64 * 2).unwrap());
        }
        let future = tickets.iter().max().unwrap() + 1 + ahead;
        prop_assert!(!w.done(future));
        for &t in &tickets {
            w.done(t);
        }
        prop_assert_eq!(w.done_through(), Some((n as u64 - 1) * 2));
        // Register until the "future" ticket has been issued; none is done.
        let mut last = (n as u64 - 1) * 2;
        loop {
            last += 1;
            let ticket = w.register(last).unwrap();
            prop_assert_eq!(w.done_through(), Some((n as u64 - 1) * 2), "a pre-acked ticket counted");
            if ticket >= future {
                break;
            }
        }
        prop_assert_eq!(w.unfinished() as u64, future - tickets.iter().max().unwrap());
    }
}

fn done_prefix_of(offsets: &[Offset], done: &[bool]) -> Option<Offset> {
    common::done_prefix(offsets, |o| {
        let i = offsets.iter().position(|&x| x == o).unwrap();
        done[i]
    })
}

// ---------------------------------------------------------------------------
// Watermarks over partitions, with take_commits and retract.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum MultiOp {
    Register(Partition, u64),
    Done(Partition, usize),
    Unknown(Partition, u64),
    Take,
    /// Retract the last take's commits (a failed source commit).
    RetractLast,
}

fn multi_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        4 => (0u32..3, 1u64..4).prop_map(|(p, g)| MultiOp::Register(p, g)),
        4 => (0u32..4, any::<usize>()).prop_map(|(p, n)| MultiOp::Done(p, n)),
        1 => (0u32..4, 0u64..3).prop_map(|(p, k)| MultiOp::Unknown(p, k)),
        2 => Just(MultiOp::Take),
        1 => Just(MultiOp::RetractLast),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// `Watermarks`: per-partition room and `Full`, `done` of unknown
    /// partitions and tickets ignored, `take_commits` hands out exactly the
    /// partitions whose done-through moved (sorted), `retract` hands them out
    /// again.
    #[test]
    fn watermarks_match_the_model(
        per_partition in 1usize..6,
        ops in proptest::collection::vec(multi_op(), 0..250),
    ) {
        let mut marks = Watermarks::new(per_partition);
        let mut models: BTreeMap<Partition, Model> = BTreeMap::new();
        // The offsets handed out and not taken back, per partition.
        let mut committed: HashMap<Partition, Offset> = HashMap::new();
        // Partitions whose last hand-out was retracted, with the offset
        // handed out before it: until the next hand-out, `committed()` may
        // show either that earlier offset or nothing (the documented
        // contract is only that the next `take_commits` hands it out again).
        let mut retracted: HashMap<Partition, Option<Offset>> = HashMap::new();
        // The last take, with what each partition had before it.
        let mut last_take: Vec<(Partition, Offset, Option<Offset>)> = Vec::new();
        for op in &ops {
            match *op {
                MultiOp::Register(p, gap) => {
                    let m = models.entry(p).or_insert_with(|| Model::new(per_partition));
                    let room_before = marks.room(p);
                    prop_assert_eq!(room_before, m.room(), "room of {}", p);
                    let offset = m.last_offset().map_or(gap, |l| l + gap);
                    let result = marks.register(p, offset);
                    if m.room() == 0 {
                        prop_assert_eq!(result, Err(RegisterError::Full));
                    } else {
                        let ticket = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert!(!m.tickets().contains(&ticket));
                        m.events.push((offset, ticket, false));
                    }
                }
                MultiOp::Done(p, n) => {
                    if let Some(m) = models.get_mut(&p) {
                        let open: Vec<usize> = (0..m.events.len()).filter(|&i| !m.events[i].2).collect();
                        if !open.is_empty() {
                            let i = open[n % open.len()];
                            m.events[i].2 = true;
                            marks.done(p, m.events[i].1);
                        }
                    } else {
                        // A partition never registered: ignored.
                        marks.done(p, n as u64 % 8);
                    }
                }
                MultiOp::Unknown(p, k) => {
                    let ticket = models.get(&p).and_then(|m| m.tickets().into_iter().max()).map_or(k, |t| t + 1 + k);
                    marks.done(p, ticket);
                }
                MultiOp::Take => {
                    let mut expected: Vec<(Partition, Offset)> = models
                        .iter()
                        .filter_map(|(&p, m)| m.done_through().map(|o| (p, o)))
                        .filter(|(p, o)| committed.get(p) != Some(o))
                        .collect();
                    expected.sort_unstable();
                    let got = marks.take_commits();
                    prop_assert_eq!(&got, &expected, "take_commits");
                    last_take.clear();
                    for &(p, o) in &got {
                        last_take.push((p, o, committed.insert(p, o)));
                        retracted.remove(&p);
                    }
                }
                MultiOp::RetractLast => {
                    let taken: Vec<(Partition, Offset)> = last_take.iter().map(|&(p, o, _)| (p, o)).collect();
                    marks.retract(&taken);
                    for &(p, _, before) in &last_take {
                        match before {
                            Some(o) => committed.insert(p, o),
                            None => committed.remove(&p),
                        };
                        retracted.insert(p, before);
                    }
                    last_take.clear();
                }
            }
            // After every step.
            for (&p, m) in &models {
                prop_assert_eq!(marks.room(p), m.room(), "room of {}", p);
            }
            prop_assert_eq!(marks.room(99), per_partition, "an unseen partition has full room");
            prop_assert_eq!(marks.unfinished(), models.values().map(Model::unfinished).sum::<usize>());
            for (&p, &o) in marks.committed() {
                if let Some(&before) = retracted.get(&p) {
                    prop_assert_eq!(Some(o), before, "committed() of retracted partition {}", p);
                } else {
                    prop_assert_eq!(committed.get(&p), Some(&o), "committed() of {}", p);
                }
            }
            for (p, o) in &committed {
                if !retracted.contains_key(p) {
                    prop_assert_eq!(marks.committed().get(p), Some(o), "committed() of {}", p);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// End to end: commits never pass an unfinished event.
// ---------------------------------------------------------------------------

/// What the random stage does with an event, from its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Keep,
    Drop,
    Fail,
    /// Fails retriably once, then keeps.
    Flaky,
}

fn fate(seed: u64, origin: Origin) -> Fate {
    match rand_of(seed, origin) % 10 {
        0..=5 => Fate::Keep,
        6 | 7 => Fate::Drop,
        8 => Fate::Fail,
        _ => Fate::Flaky,
    }
}

fn ordering_of(n: u8) -> Ordering {
    match n % 3 {
        0 => Ordering::Unordered,
        1 => Ordering::Key,
        _ => Ordering::Partition,
    }
}

/// Builds specs: offsets per partition increasing with gaps.
fn specs(seed: u64, n: usize, partitions: u32) -> Vec<Spec> {
    let mut rng = common::Rng::new(seed);
    let mut next: BTreeMap<Partition, Offset> = BTreeMap::new();
    (0..n)
        .map(|i| {
            let p = rng.below(u64::from(partitions)) as Partition;
            let offset = *next.entry(p).or_insert_with(|| rng.below(5));
            next.insert(p, offset + 1 + rng.below(3));
            Spec::new(p, offset, format!("{{\"i\":{i}}}")).with_key(format!("k{}", rng.below(7)))
        })
        .collect()
}

fn pipeline_respects_watermarks(
    seed: u64,
    n: usize,
    partitions: u32,
    workers: usize,
    ordering: Ordering,
    batch: usize,
    per_read: usize,
) -> Result<(), TestCaseError> {
    let specs = specs(seed, n, partitions);
    let (sink, delivered) = CollectingSink::new();
    let (dead_sink, dead) = DeadLetterSink::new();
    let dropped: Arc<Mutex<HashSet<Origin>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();

    let source = MemSource::new(specs.clone()).per_read(per_read).on_commit({
        let (delivered, dead, dropped, violations) = (
            Arc::clone(&delivered),
            Arc::clone(&dead),
            Arc::clone(&dropped),
            Arc::clone(&violations),
        );
        move |log, commits| {
            // What is finished at the moment of this commit.
            let mut finished: HashSet<Origin> =
                lock(&delivered).records.iter().map(|r| r.origin).collect();
            finished.extend(lock(&dead).iter().map(|d| d.origin));
            finished.extend(lock(&dropped).iter().copied());
            lock(&violations).extend(unsafe_commits(&log.pushed, commits, &finished));
        }
    });
    let log = source.log();

    let attempts: Arc<Mutex<HashMap<Origin, u32>>> = Arc::default();
    let stage = {
        let (dropped, attempts) = (Arc::clone(&dropped), Arc::clone(&attempts));
        move |event: &mut Event| -> Result<Outcome, StageError> {
            let origin = event.origin();
            random_work(seed, origin, 200);
            let attempt = {
                let mut attempts = lock(&attempts);
                let a = attempts.entry(origin).or_default();
                *a += 1;
                *a
            };
            match fate(seed, origin) {
                Fate::Keep => Ok(Outcome::Keep),
                Fate::Drop => {
                    lock(&dropped).insert(origin);
                    Ok(Outcome::Drop("random".into()))
                }
                Fate::Fail => Err(StageError::fatal("random", "a random failure")),
                Fate::Flaky if attempt == 1 => {
                    Err(StageError::retriable("flaky", "first attempt fails"))
                }
                Fate::Flaky => Ok(Outcome::Keep),
            }
        }
    };

    let mut s = settings(workers);
    s.ordering = ordering;
    s.batch.max_events = batch;
    let pipeline = common::one_stage_pipeline(s, source, "random", stage, sink, dead_sink);
    let report = run(pipeline);

    check_invariant(&report);
    prop_assert_eq!(&report.stopped_by, &StopCause::SourceEnded);
    prop_assert_eq!(report.read, n as u64);
    prop_assert_eq!(report.abandoned, 0);

    let expect = |f: Fate| -> HashSet<Origin> {
        specs
            .iter()
            .map(Spec::origin)
            .filter(|&o| {
                let actual = fate(seed, o);
                actual == f || (f == Fate::Keep && actual == Fate::Flaky)
            })
            .collect()
    };
    let got_delivered: Vec<Origin> = lock(&delivered).origins();
    let got_delivered_set: HashSet<Origin> = got_delivered.iter().copied().collect();
    prop_assert_eq!(
        got_delivered.len(),
        got_delivered_set.len(),
        "an event was delivered twice"
    );
    prop_assert_eq!(&got_delivered_set, &expect(Fate::Keep));
    prop_assert_eq!(report.delivered, got_delivered.len() as u64);
    let got_dead: Vec<Origin> = lock(&dead).iter().map(|d| d.origin).collect();
    prop_assert_eq!(
        got_dead.iter().copied().collect::<HashSet<_>>(),
        expect(Fate::Fail)
    );
    prop_assert_eq!(report.dead_lettered, got_dead.len() as u64);
    prop_assert_eq!(&*lock(&dropped), &expect(Fate::Drop));
    prop_assert_eq!(report.dropped, lock(&dropped).len() as u64);

    let log = lock(&log);
    prop_assert!(log.violations.is_empty(), "{:?}", log.violations);
    let violations = lock(&violations);
    prop_assert!(
        violations.is_empty(),
        "commits passed unfinished events: {:?}",
        violations
    );
    check_commits_increase(&log.commits);
    // The final commit is the last offset of every partition.
    let last: BTreeMap<Partition, Offset> = by_partition(&log.pushed)
        .into_iter()
        .map(|(p, o)| (p, *o.last().unwrap()))
        .collect();
    prop_assert_eq!(&committed_map(&report), &last, "final committed offsets");
    prop_assert_eq!(&log.committed(), &last, "offsets the source received");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_commits_never_pass_an_unfinished_event(
        seed in any::<u64>(),
        n in 1usize..250,
        partitions in 1u32..4,
        workers in 1usize..5,
        ordering in any::<u8>(),
        batch in 1usize..24,
        per_read in 1usize..40,
    ) {
        pipeline_respects_watermarks(seed, n, partitions, workers, ordering_of(ordering), batch, per_read)?;
    }
}
