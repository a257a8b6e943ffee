//! Test components shared by the crew-pipeline integration tests.
//!
//! - [`MemSource`]: events with chosen partitions, offsets, keys and
//!   payloads; respects [`ReadBatch::room`]; records what it pushed and every
//!   commit call; can hold its end until released, or until a condition on
//!   its own log holds; can fail its first commits.
//! - [`GenSource`]: a generated stream (long or endless) over several
//!   partitions that keeps only counters, for heap and shutdown tests.
//! - [`CollectingSink`], [`DeadLetterSink`], [`FlakySink`], [`FailingSink`],
//!   [`SlowSink`].
//! - [`Gate`], a hang guard around `Pipeline::run`, the report invariant and
//!   a watermark oracle.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

use crew_pipeline::{
    Batching, Event, Full, Offset, Origin, OutBatch, Partition, Pipeline, PipelineHandle,
    ReadBatch, ReadStatus, Report, RetryPolicy, Settings, Sink, SinkError, Source, SourceError,
    Stage,
};
use sonic_rs::JsonValueTrait;

/// How long a pipeline run may take before the test declares it hung. Only a
/// failure guard (a deadlock becomes a failure instead of a hung CI), never
/// an assertion on speed.
pub const GUARD: Duration = Duration::from_secs(120);

/// The drain timeout of [`settings`]: long, so that a graceful run never
/// abandons anything on a loaded machine, and shorter than [`GUARD`].
pub const LONG_DRAIN: Duration = Duration::from_secs(60);

/// Locks, ignoring poisoning (a panicking test must still report).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// Settings and running
// ---------------------------------------------------------------------------

/// A retry policy fast enough for tests: 1 ms backoff.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
    }
}

/// Settings for tests: small batches, fast retries, frequent commits and
/// flushes, a long drain.
pub fn settings(workers: usize) -> Settings {
    Settings {
        workers,
        batch: Batching {
            max_events: 32,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(1),
        },
        stage_retry: fast_retry(3),
        sink_retry: fast_retry(3),
        commit_interval: Duration::from_millis(5),
        drain_timeout: LONG_DRAIN,
        flush_interval: Duration::from_millis(2),
        ..Settings::default()
    }
}

/// A pipeline running on its own thread.
pub struct Running {
    pub handle: PipelineHandle,
    rx: mpsc::Receiver<Report>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Starts `pipeline.run()` on its own thread.
pub fn start(pipeline: Pipeline) -> Running {
    let handle = pipeline.handle();
    let (tx, rx) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("pipeline-run".to_owned())
        .spawn(move || {
            let report = pipeline.run();
            let _ = tx.send(report);
        })
        .expect("spawn the pipeline thread");
    Running {
        handle,
        rx,
        thread: Some(thread),
    }
}

impl Running {
    /// Waits for the report, at most [`GUARD`].
    #[track_caller]
    pub fn wait(self) -> Report {
        self.wait_for(GUARD)
    }

    /// Waits for the report, at most `limit` (a failure guard).
    #[track_caller]
    pub fn wait_for(mut self, limit: Duration) -> Report {
        match self.rx.recv_timeout(limit) {
            Ok(report) => {
                if let Some(thread) = self.thread.take() {
                    thread.join().expect("the pipeline thread ended");
                }
                report
            }
            Err(RecvTimeoutError::Timeout) => {
                let snapshot = self.handle.snapshot();
                panic!(
                    "HANG: the pipeline run did not return within {limit:?}\nsnapshot: read {} delivered {} \
                     in flight {} events / {} bytes, committed {:?}, stages {:?}, pools {:?}",
                    snapshot.read,
                    snapshot.delivered,
                    snapshot.in_flight_events,
                    snapshot.in_flight_bytes,
                    snapshot.committed,
                    snapshot.stages,
                    snapshot.pools,
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                match self.thread.take().map(thread::JoinHandle::join) {
                    Some(Err(payload)) => std::panic::resume_unwind(payload),
                    _ => unreachable!("the run thread sends its report before it ends"),
                }
            }
        }
    }
}

/// Runs a pipeline to its end under the hang guard.
#[track_caller]
pub fn run(pipeline: Pipeline) -> Report {
    start(pipeline).wait()
}

/// `read == delivered + dropped + dead_lettered + abandoned`, and the per
/// reason counts add up.
#[track_caller]
pub fn check_invariant(report: &Report) {
    assert_eq!(
        report.read,
        report.delivered + report.dropped + report.dead_lettered + report.abandoned,
        "the report invariant is broken: {report:#?}"
    );
    assert_eq!(
        report.dropped,
        report.dropped_by_reason.values().sum::<u64>(),
        "dropped by reason: {report:#?}"
    );
    assert_eq!(
        report.dead_lettered,
        report.dead_lettered_by_reason.values().sum::<u64>(),
        "dead-lettered by reason: {report:#?}"
    );
}

/// The report's committed offsets as a map.
pub fn committed_map(report: &Report) -> BTreeMap<Partition, Offset> {
    report.committed.iter().copied().collect()
}

// ---------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------

/// The highest offset of the fully finished prefix of `order` (one
/// partition's offsets in read order), if any.
pub fn done_prefix(order: &[Offset], finished: impl Fn(Offset) -> bool) -> Option<Offset> {
    let mut through = None;
    for &offset in order {
        if !finished(offset) {
            break;
        }
        through = Some(offset);
    }
    through
}

/// Per partition, the offsets in `origins` in order.
pub fn by_partition(origins: &[Origin]) -> BTreeMap<Partition, Vec<Offset>> {
    let mut map: BTreeMap<Partition, Vec<Offset>> = BTreeMap::new();
    for origin in origins {
        map.entry(origin.partition).or_default().push(origin.offset);
    }
    map
}

/// Checks a commit against what was finished at that moment: for each
/// `(partition, offset)`, every event of that partition the source pushed
/// at or below `offset` must be in `finished`. Returns the violations.
pub fn unsafe_commits(
    pushed: &[Origin],
    commits: &[(Partition, Offset)],
    finished: &HashSet<Origin>,
) -> Vec<String> {
    let mut violations = Vec::new();
    for &(partition, through) in commits {
        for origin in pushed {
            if origin.partition == partition
                && origin.offset <= through
                && !finished.contains(origin)
            {
                violations.push(format!(
                    "commit {partition}:{through} covers {}:{} which was not finished",
                    origin.partition, origin.offset
                ));
            }
        }
    }
    violations
}

/// Checks that, per partition, successive commits only move forward.
#[track_caller]
pub fn check_commits_increase(commits: &[Vec<(Partition, Offset)>]) {
    let mut last: BTreeMap<Partition, Offset> = BTreeMap::new();
    for commit in commits {
        for &(partition, offset) in commit {
            if let Some(&previous) = last.get(&partition) {
                assert!(
                    offset > previous,
                    "partition {partition} committed {offset} after {previous}: {commits:?}"
                );
            }
            last.insert(partition, offset);
        }
    }
}

// ---------------------------------------------------------------------------
// Randomness and workload
// ---------------------------------------------------------------------------

/// SplitMix64's finalizer: a stateless hash, so a stage decides the same way
/// for an event on every attempt.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A random number for `origin` under `seed`.
pub fn rand_of(seed: u64, origin: Origin) -> u64 {
    mix(seed ^ mix((u64::from(origin.partition) << 48) ^ origin.offset))
}

/// A seeded generator, so failures can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(mix(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix(self.0)
    }

    /// In `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A seed: `CREW_TEST_SEED` if set (to replay a failure), otherwise from the
/// clock. Printed, so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("CREW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: CREW_TEST_SEED={seed}");
    seed
}

/// Busy-waits for `duration`: a stage's workload, never synchronization.
pub fn spin_for(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// Works 0–`max_micros` µs, chosen by `seed` and `origin`.
pub fn random_work(seed: u64, origin: Origin, max_micros: u64) {
    let micros = rand_of(seed ^ 0xD1CE, origin) % (max_micros + 1);
    spin_for(Duration::from_micros(micros));
}

// ---------------------------------------------------------------------------
// Gates and panics
// ---------------------------------------------------------------------------

/// A latch: stages `wait` on it until the test calls `open`.
#[derive(Clone, Default)]
pub struct Gate {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Gate {
    pub fn new() -> Self {
        Gate::default()
    }

    pub fn open(&self) {
        let (open, changed) = &*self.inner;
        *lock(open) = true;
        changed.notify_all();
    }

    pub fn is_open(&self) -> bool {
        *lock(&self.inner.0)
    }

    /// Waits until opened; gives up after [`GUARD`] (only so that a failed
    /// test does not leave a thread blocked forever).
    pub fn wait(&self) {
        let (open, changed) = &*self.inner;
        let deadline = Instant::now() + GUARD;
        let mut guard = lock(open);
        while !*guard && Instant::now() < deadline {
            guard = changed
                .wait_timeout(guard, deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Opens the gate when the returned value is dropped, so a failing
    /// assertion does not leave stages blocked.
    pub fn open_on_drop(&self) -> OpenOnDrop {
        OpenOnDrop(self.clone())
    }
}

/// Opens its gate when dropped.
pub struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Marker that intentional panics carry in their message.
pub const INTENTIONAL: &str = "intentional test panic";

/// Installs (once per test binary) a panic hook that stays silent for panics
/// whose message contains [`INTENTIONAL`]; every other panic still prints.
pub fn quiet_intentional_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message.is_some_and(|m| m.contains(INTENTIONAL)) {
                return;
            }
            default(info);
        }));
    });
}

// ---------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------

/// One event a [`MemSource`] will read.
#[derive(Clone, Debug)]
pub struct Spec {
    pub partition: Partition,
    pub offset: Offset,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Spec {
    pub fn new(partition: Partition, offset: Offset, payload: impl Into<Vec<u8>>) -> Spec {
        Spec {
            partition,
            offset,
            key: None,
            payload: payload.into(),
        }
    }

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Spec {
        self.key = Some(key.into());
        self
    }

    pub fn origin(&self) -> Origin {
        Origin {
            partition: self.partition,
            offset: self.offset,
        }
    }

    pub fn event(&self) -> Event {
        let event = Event::new(self.origin(), self.payload.clone());
        match &self.key {
            Some(key) => event.with_key(key.clone()),
            None => event,
        }
    }
}

/// What a source saw: the events it pushed, in order, and every commit.
#[derive(Debug, Default)]
pub struct SourceLog {
    /// Origins pushed, in push order.
    pub pushed: Vec<Origin>,
    /// Successful commit calls, in order.
    pub commits: Vec<Vec<(Partition, Offset)>>,
    /// Commit calls that were made to fail.
    pub failed_commits: Vec<Vec<(Partition, Offset)>>,
    /// `ReadBatch::push` refused an event although `room` said there was
    /// room.
    pub refused_with_room: usize,
    /// Contract breaches seen by the source (a commit of an offset it never
    /// read, a commit going backwards).
    pub violations: Vec<String>,
    /// Read calls.
    pub reads: usize,
    /// Read calls that were made to fail.
    pub failed_reads: usize,
}

impl SourceLog {
    /// The latest committed offset per partition.
    pub fn committed(&self) -> BTreeMap<Partition, Offset> {
        let mut map = BTreeMap::new();
        for commit in &self.commits {
            for &(partition, offset) in commit {
                map.insert(partition, offset);
            }
        }
        map
    }

    /// The highest pushed offset per partition.
    pub fn last_pushed(&self) -> BTreeMap<Partition, Offset> {
        let mut map = BTreeMap::new();
        for origin in &self.pushed {
            map.insert(origin.partition, origin.offset);
        }
        map
    }

    pub fn pushed_of(&self, partition: Partition) -> usize {
        self.pushed
            .iter()
            .filter(|o| o.partition == partition)
            .count()
    }
}

type EndWhen = Box<dyn FnMut(&SourceLog) -> bool + Send>;
type OnCommit = Box<dyn FnMut(&SourceLog, &[(Partition, Offset)]) + Send>;

/// An in-memory source of chosen events.
pub struct MemSource {
    pending: VecDeque<Spec>,
    per_read: usize,
    log: Arc<Mutex<SourceLog>>,
    hold: Option<mpsc::Receiver<()>>,
    end_when: Option<EndWhen>,
    on_commit: Option<OnCommit>,
    fail_commit_if: Option<FailCommitIf>,
    commit_calls: usize,
    fail_reads: Option<ReadFailure>,
}

type FailCommitIf = Box<dyn FnMut(usize) -> bool + Send>;

/// Read calls that fail once the source has pushed `after` events.
struct ReadFailure {
    after: usize,
    times: usize,
    retriable: bool,
}

impl MemSource {
    pub fn new(specs: impl IntoIterator<Item = Spec>) -> MemSource {
        MemSource {
            pending: specs.into_iter().collect(),
            per_read: usize::MAX,
            log: Arc::default(),
            hold: None,
            end_when: None,
            on_commit: None,
            fail_commit_if: None,
            commit_calls: 0,
            fail_reads: None,
        }
    }

    /// The log, shared.
    pub fn log(&self) -> Arc<Mutex<SourceLog>> {
        Arc::clone(&self.log)
    }

    /// Pushes at most `n` events per read call.
    pub fn per_read(mut self, n: usize) -> Self {
        self.per_read = n.max(1);
        self
    }

    /// After everything is read, ends only once `release` receives (or is
    /// disconnected); until then each read waits until the batch's linger
    /// for it and returns nothing.
    pub fn hold_until(mut self, release: mpsc::Receiver<()>) -> Self {
        self.hold = Some(release);
        self
    }

    /// After everything is read, ends only once `condition` holds on the
    /// log; until then reads return `Blocked` (the runtime waits for an ack
    /// or its commit interval).
    pub fn end_when(mut self, condition: impl FnMut(&SourceLog) -> bool + Send + 'static) -> Self {
        self.end_when = Some(Box::new(condition));
        self
    }

    /// Called on every successful commit, before it is logged, with the log
    /// locked.
    pub fn on_commit(
        mut self,
        hook: impl FnMut(&SourceLog, &[(Partition, Offset)]) + Send + 'static,
    ) -> Self {
        self.on_commit = Some(Box::new(hook));
        self
    }

    /// Once `after` events were pushed, fails the next `times` read calls
    /// with a retriable or fatal error.
    pub fn fail_reads(mut self, after: usize, times: usize, retriable: bool) -> Self {
        self.fail_reads = Some(ReadFailure {
            after,
            times,
            retriable,
        });
        self
    }

    /// Fails the first `n` commit calls (retriably).
    pub fn fail_first_commits(self, n: usize) -> Self {
        self.fail_commit_if(move |call| call < n)
    }

    /// Fails the commit calls (numbered from 0) for which `fail` says so.
    pub fn fail_commit_if(mut self, fail: impl FnMut(usize) -> bool + Send + 'static) -> Self {
        self.fail_commit_if = Some(Box::new(fail));
        self
    }
}

impl Source for MemSource {
    fn read(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, SourceError> {
        let mut log = lock(&self.log);
        log.reads += 1;
        if let Some(failure) = &mut self.fail_reads {
            if log.pushed.len() >= failure.after && failure.times > 0 {
                failure.times -= 1;
                log.failed_reads += 1;
                return Err(SourceError {
                    message: "injected read failure".to_owned(),
                    retriable: failure.retriable,
                });
            }
        }
        let mut pushed = 0;
        let mut skipped = Vec::new();
        let mut blocked: HashSet<Partition> = HashSet::new();
        let stop_at = self
            .fail_reads
            .as_ref()
            .filter(|f| f.times > 0 && log.pushed.len() < f.after)
            .map_or(usize::MAX, |f| f.after - log.pushed.len());
        while pushed < self.per_read.min(stop_at) && !batch.is_full() {
            let Some(spec) = self.pending.pop_front() else {
                break;
            };
            if blocked.contains(&spec.partition) {
                skipped.push(spec);
                continue;
            }
            if batch.room(spec.partition) == 0 {
                blocked.insert(spec.partition);
                skipped.push(spec);
                continue;
            }
            match batch.push(spec.event()) {
                Ok(()) => {
                    log.pushed.push(spec.origin());
                    pushed += 1;
                }
                Err(Full(_)) => {
                    log.refused_with_room += 1;
                    blocked.insert(spec.partition);
                    skipped.push(spec);
                }
            }
        }
        for spec in skipped.into_iter().rev() {
            self.pending.push_front(spec);
        }
        if pushed > 0 {
            return Ok(ReadStatus::More);
        }
        if !self.pending.is_empty() {
            return Ok(ReadStatus::Blocked);
        }
        if let Some(condition) = &mut self.end_when {
            if !condition(&log) {
                return Ok(ReadStatus::Blocked);
            }
        }
        drop(log);
        if let Some(release) = &self.hold {
            let wait = batch
                .linger_until()
                .saturating_duration_since(Instant::now());
            if let Err(RecvTimeoutError::Timeout) = release.recv_timeout(wait) {
                return Ok(ReadStatus::More);
            }
        }
        Ok(ReadStatus::End)
    }

    fn commit(&mut self, done_through: &[(Partition, Offset)]) -> Result<(), SourceError> {
        let mut log = lock(&self.log);
        let call = self.commit_calls;
        self.commit_calls += 1;
        if self.fail_commit_if.as_mut().is_some_and(|fail| fail(call)) {
            log.failed_commits.push(done_through.to_vec());
            return Err(SourceError::retriable("injected commit failure"));
        }
        let committed = log.committed();
        for &(partition, offset) in done_through {
            if !log.pushed.contains(&Origin { partition, offset }) {
                log.violations.push(format!(
                    "commit {partition}:{offset} names an offset never read"
                ));
            }
            if let Some(&previous) = committed.get(&partition) {
                if offset <= previous {
                    log.violations.push(format!(
                        "commit {partition}:{offset} does not move past {previous}"
                    ));
                }
            }
        }
        if let Some(hook) = &mut self.on_commit {
            hook(&log, done_through);
        }
        log.commits.push(done_through.to_vec());
        Ok(())
    }
}

/// What a [`GenSource`] saw: counters only, so it costs no heap per event.
#[derive(Debug, Default)]
pub struct GenLog {
    /// Events pushed per partition.
    pub pushed: BTreeMap<Partition, u64>,
    /// The highest pushed offset per partition.
    pub last: BTreeMap<Partition, Offset>,
    /// Successful commit calls, in order.
    pub commits: Vec<Vec<(Partition, Offset)>>,
    /// The most events of one partition pushed in one read.
    pub max_pushed_per_read: BTreeMap<Partition, usize>,
    pub refused_with_room: usize,
    pub violations: Vec<String>,
}

impl GenLog {
    pub fn total_pushed(&self) -> u64 {
        self.pushed.values().sum()
    }

    pub fn committed(&self) -> BTreeMap<Partition, Offset> {
        let mut map = BTreeMap::new();
        for commit in &self.commits {
            for &(partition, offset) in commit {
                map.insert(partition, offset);
            }
        }
        map
    }
}

type MakeEvent = Box<dyn FnMut(Partition, Offset) -> Event + Send>;

/// A generated stream over `partitions` partitions, round-robin, respecting
/// partition room: offset `i * stride` is the `i`-th event of a partition.
pub struct GenSource {
    partitions: u32,
    per_partition: Option<u64>,
    stride: u64,
    next: Vec<u64>,
    cursor: u32,
    make: MakeEvent,
    log: Arc<Mutex<GenLog>>,
}

impl GenSource {
    /// `per_partition` events per partition, or endless with `None`.
    pub fn new(
        partitions: u32,
        per_partition: Option<u64>,
        make: impl FnMut(Partition, Offset) -> Event + Send + 'static,
    ) -> GenSource {
        GenSource {
            partitions,
            per_partition,
            stride: 1,
            next: vec![0; partitions as usize],
            cursor: 0,
            make: Box::new(make),
            log: Arc::default(),
        }
    }

    /// Offsets step by `stride` (gaps).
    pub fn stride(mut self, stride: u64) -> Self {
        self.stride = stride.max(1);
        self
    }

    pub fn log(&self) -> Arc<Mutex<GenLog>> {
        Arc::clone(&self.log)
    }

    fn exhausted(&self, partition: u32) -> bool {
        self.per_partition
            .is_some_and(|limit| self.next[partition as usize] >= limit)
    }
}

impl Source for GenSource {
    fn read(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, SourceError> {
        let mut blocked = vec![false; self.partitions as usize];
        let mut pushed_now = vec![0usize; self.partitions as usize];
        let mut refused = 0;
        let mut pushed = 0;
        while !batch.is_full() {
            let candidate = (0..self.partitions)
                .map(|i| (self.cursor + i) % self.partitions)
                .find(|&p| !blocked[p as usize] && !self.exhausted(p));
            let Some(partition) = candidate else { break };
            self.cursor = (partition + 1) % self.partitions;
            if batch.room(partition) == 0 {
                blocked[partition as usize] = true;
                continue;
            }
            let offset = self.next[partition as usize] * self.stride;
            match batch.push((self.make)(partition, offset)) {
                Ok(()) => {
                    self.next[partition as usize] += 1;
                    pushed_now[partition as usize] += 1;
                    pushed += 1;
                }
                Err(Full(_)) => {
                    refused += 1;
                    blocked[partition as usize] = true;
                }
            }
        }
        {
            let mut log = lock(&self.log);
            log.refused_with_room += refused;
            for (partition, &n) in pushed_now.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let partition = partition as Partition;
                *log.pushed.entry(partition).or_default() += n as u64;
                log.last
                    .insert(partition, (self.next[partition as usize] - 1) * self.stride);
                let max = log.max_pushed_per_read.entry(partition).or_default();
                *max = (*max).max(n);
            }
        }
        if pushed > 0 {
            Ok(ReadStatus::More)
        } else if (0..self.partitions).all(|p| self.exhausted(p)) {
            Ok(ReadStatus::End)
        } else {
            Ok(ReadStatus::Blocked)
        }
    }

    fn commit(&mut self, done_through: &[(Partition, Offset)]) -> Result<(), SourceError> {
        let mut log = lock(&self.log);
        let committed = log.committed();
        for &(partition, offset) in done_through {
            let read = log.last.get(&partition).is_some_and(|&last| offset <= last);
            if !read || offset % self.stride != 0 {
                log.violations.push(format!(
                    "commit {partition}:{offset} names an offset never read"
                ));
            }
            if committed
                .get(&partition)
                .is_some_and(|&previous| offset <= previous)
            {
                log.violations
                    .push(format!("commit {partition}:{offset} does not move forward"));
            }
        }
        log.commits.push(done_through.to_vec());
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Sinks
// ---------------------------------------------------------------------------

/// One record a sink received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub origin: Origin,
    pub key: Option<Vec<u8>>,
    pub bytes: Vec<u8>,
}

/// What a [`CollectingSink`] received, in order.
#[derive(Debug, Default)]
pub struct Collected {
    pub records: Vec<Rec>,
    pub writes: usize,
    pub flushes: usize,
}

impl Collected {
    pub fn origins(&self) -> Vec<Origin> {
        self.records.iter().map(|r| r.origin).collect()
    }
}

type SinkHook = Box<dyn FnMut(&Collected) + Send>;

/// Collects every record, in order, into a shared store.
pub struct CollectingSink {
    store: Arc<Mutex<Collected>>,
    hook: Option<SinkHook>,
}

impl CollectingSink {
    pub fn new() -> (CollectingSink, Arc<Mutex<Collected>>) {
        let store: Arc<Mutex<Collected>> = Arc::default();
        (
            CollectingSink {
                store: Arc::clone(&store),
                hook: None,
            },
            store,
        )
    }

    /// Called after every write with the store locked.
    pub fn with_hook(mut self, hook: impl FnMut(&Collected) + Send + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }
}

impl Sink for CollectingSink {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        let mut store = lock(&self.store);
        for (bytes, key, origin) in batch.records() {
            store.records.push(Rec {
                origin,
                key: key.map(<[u8]>::to_vec),
                bytes: bytes.to_vec(),
            });
        }
        store.writes += 1;
        if let Some(hook) = &mut self.hook {
            hook(&store);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        lock(&self.store).flushes += 1;
        Ok(())
    }
}

/// One parsed dead-letter record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason: String,
    pub stage: String,
    pub attempts: u64,
    pub message: String,
    pub origin: Origin,
    pub original: Option<String>,
    pub original_base64: Option<String>,
}

/// Collects dead letters, parsing each JSON record (and checking that the
/// record's origin matches the fields it carries).
pub struct DeadLetterSink {
    store: Arc<Mutex<Vec<DeadLetter>>>,
}

impl DeadLetterSink {
    pub fn new() -> (DeadLetterSink, Arc<Mutex<Vec<DeadLetter>>>) {
        let store: Arc<Mutex<Vec<DeadLetter>>> = Arc::default();
        (
            DeadLetterSink {
                store: Arc::clone(&store),
            },
            store,
        )
    }
}

fn text_field(value: &sonic_rs::Value, name: &str) -> Option<String> {
    value.get(name).and_then(|v| v.as_str()).map(str::to_owned)
}

/// Parses one dead-letter record.
pub fn parse_dead_letter(bytes: &[u8]) -> DeadLetter {
    let value: sonic_rs::Value = sonic_rs::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "a dead letter is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    });
    let number = |name: &str| {
        value.get(name).and_then(|v| v.as_u64()).unwrap_or_else(|| {
            panic!(
                "dead letter without `{name}`: {}",
                String::from_utf8_lossy(bytes)
            )
        })
    };
    DeadLetter {
        reason: text_field(&value, "reason").expect("a dead letter has a reason"),
        stage: text_field(&value, "stage").expect("a dead letter has a stage"),
        attempts: number("attempts"),
        message: text_field(&value, "message").expect("a dead letter has a message"),
        origin: Origin {
            partition: number("partition") as Partition,
            offset: number("offset"),
        },
        original: text_field(&value, "original"),
        original_base64: text_field(&value, "original_base64"),
    }
}

impl Sink for DeadLetterSink {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        let mut store = lock(&self.store);
        for (bytes, _, origin) in batch.records() {
            let letter = parse_dead_letter(bytes);
            assert_eq!(
                letter.origin, origin,
                "a dead letter's fields disagree with its record's origin"
            );
            store.push(letter);
        }
        Ok(())
    }
}

/// Fails its first `failures` write calls with a retriable error, then
/// passes every write to a [`CollectingSink`].
pub struct FlakySink {
    failures: usize,
    calls: Arc<AtomicUsize>,
    inner: CollectingSink,
}

impl FlakySink {
    pub fn new(failures: usize) -> (FlakySink, Arc<Mutex<Collected>>, Arc<AtomicUsize>) {
        let (inner, store) = CollectingSink::new();
        let calls = Arc::new(AtomicUsize::new(0));
        (
            FlakySink {
                failures,
                calls: Arc::clone(&calls),
                inner,
            },
            store,
            calls,
        )
    }
}

impl Sink for FlakySink {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        let call = self.calls.fetch_add(1, AtomicOrdering::SeqCst);
        if call < self.failures {
            return Err(SinkError::retriable(format!("flaky write #{call}")));
        }
        self.inner.write(batch)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }
}

/// Fails every write.
pub struct FailingSink {
    retriable: bool,
    message: &'static str,
    calls: Arc<AtomicUsize>,
}

impl FailingSink {
    pub fn new(retriable: bool, message: &'static str) -> (FailingSink, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (
            FailingSink {
                retriable,
                message,
                calls: Arc::clone(&calls),
            },
            calls,
        )
    }
}

impl Sink for FailingSink {
    fn write(&mut self, _batch: &OutBatch) -> Result<(), SinkError> {
        self.calls.fetch_add(1, AtomicOrdering::SeqCst);
        Err(SinkError {
            message: self.message.to_owned(),
            retriable: self.retriable,
        })
    }
}

/// Waits `delay` in every write (a slow disk or broker), then passes the
/// batch on.
pub struct SlowSink<S> {
    delay: Duration,
    inner: S,
}

impl<S: Sink> SlowSink<S> {
    pub fn new(delay: Duration, inner: S) -> SlowSink<S> {
        SlowSink { delay, inner }
    }
}

impl<S: Sink> Sink for SlowSink<S> {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        // The sink's workload, not synchronization.
        thread::sleep(self.delay);
        self.inner.write(batch)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }
}

/// Standard base64 (with padding), to compare `original_base64`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The shape most tests run: one stage between a source and the two sinks.
#[allow(dead_code)]
pub fn one_stage_pipeline(
    settings: Settings,
    source: impl Source + 'static,
    name: &str,
    stage: impl Stage,
    sink: impl Sink + 'static,
    dead_letter: impl Sink + 'static,
) -> Pipeline {
    Pipeline::builder()
        .settings(settings)
        .source(source)
        .stage(name, stage)
        .sink(sink)
        .dead_letter(dead_letter)
        .build()
        .expect("a pipeline with a source, a stage and both sinks builds")
}
