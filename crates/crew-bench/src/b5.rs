//! B5: memory per job queued while the pool is paused.
//!
//! 1,000,000 jobs go into a pool whose 4 workers run none of them (crew:
//! `pause()`; the peers: every worker is parked on a gate), with an unbounded
//! queue. Bytes per queued job = RSS delta / jobs, RSS read from
//! `/proc/self/statm`. Each implementation is measured in a fresh child
//! process (see [`child_main`]) so that allocator state from other runs does
//! not pollute the delta. The job's own closure size is reported too, so the
//! table can say how many bytes the queue costs beyond the closure.

use std::ffi::OsString;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::measure::{self, Progress};
use crate::peers::{BoxedJob, Impl};
use crate::{SuiteOptions, Workload};

/// The implementations B5 measures: crew and the peers that queue unboundedly.
pub const IMPLS: [Impl; 3] = [Impl::Crew, Impl::Threadpool, Impl::Crossbeam];

/// One measurement: RSS before and after queueing `jobs` jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemSample {
    /// RSS in bytes with the pool built and paused, before queueing.
    pub rss_before: u64,
    /// RSS in bytes with every job queued.
    pub rss_after: u64,
    /// Jobs queued.
    pub jobs: u64,
    /// `size_of_val` of one job closure.
    pub closure_size: usize,
    /// Jobs that had run once the pool was released and drained.
    pub completed: u64,
}

impl MemSample {
    /// RSS delta per queued job, in bytes (may be negative if memory was freed).
    pub fn bytes_per_job(&self) -> f64 {
        (self.rss_after as f64 - self.rss_before as f64) / self.jobs.max(1) as f64
    }

    /// The line a child process prints for its parent.
    pub fn to_line(&self) -> String {
        format!(
            "crew-bench-b5 rss_before={} rss_after={} jobs={} closure={} completed={}",
            self.rss_before, self.rss_after, self.jobs, self.closure_size, self.completed
        )
    }

    /// Parses [`MemSample::to_line`]'s output (looked for among `text`'s lines).
    pub fn parse(text: &str) -> Option<MemSample> {
        let line = text.lines().find(|l| l.starts_with("crew-bench-b5 "))?;
        let field = |name: &str| -> Option<u64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        Some(MemSample {
            rss_before: field("rss_before")?,
            rss_after: field("rss_after")?,
            jobs: field("jobs")?,
            closure_size: field("closure")? as usize,
            completed: field("completed")?,
        })
    }
}

/// B5 figures for one implementation over the repeated runs.
#[derive(Debug, Clone)]
pub struct MemoryRow {
    /// The implementation.
    pub implementation: Impl,
    /// One sample per successful run.
    pub samples: Vec<MemSample>,
    /// Whether the samples come from a fresh child process each.
    pub isolated: bool,
    /// Why the cell failed; later runs are skipped.
    pub error: Option<String>,
}

impl MemoryRow {
    /// Median bytes per queued job over the runs.
    pub fn bytes_per_job(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.samples.iter().map(MemSample::bytes_per_job).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }

    /// The job closure's own size in bytes.
    pub fn closure_size(&self) -> Option<usize> {
        self.samples.first().map(|s| s.closure_size)
    }

    /// Median bytes per queued job beyond the closure's own size.
    pub fn beyond_closure(&self) -> Option<f64> {
        Some(self.bytes_per_job()? - self.closure_size()? as f64)
    }
}

/// The B5 results: one row per implementation.
#[derive(Debug, Clone)]
pub struct MemoryTable {
    /// Workers in every pool.
    pub workers: usize,
    /// Jobs queued per run.
    pub jobs: u64,
    /// One row per implementation, crew first.
    pub rows: Vec<MemoryRow>,
}

impl MemoryTable {
    /// The row of `imp`, if it was measured.
    pub fn row(&self, imp: Impl) -> Option<&MemoryRow> {
        self.rows.iter().find(|r| r.implementation == imp)
    }
}

/// The B5 job (the same as B1's): one `fetch_add` on a clone of `counter`.
pub fn job(counter: &Arc<AtomicU64>) -> impl FnOnce() + Send + 'static {
    crate::b1::job(counter)
}

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> Result<u64, String> {
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|e| format!("read /proc/self/statm: {e}"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unexpected /proc/self/statm: {statm:?}"))?;
    Ok(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Queues `jobs` jobs into a paused `imp` pool of `workers` workers in this
/// process, measures the RSS delta, then releases and drains the pool.
pub fn measure_in_process(imp: Impl, workers: usize, jobs: u64) -> Result<MemSample, String> {
    let counter = Arc::new(AtomicU64::new(0));
    let closure_size = std::mem::size_of_val(&job(&counter));
    let (rss_before, rss_after) = match imp {
        Impl::Crew => queue_crew(&counter, workers, jobs)?,
        Impl::Threadpool => queue_threadpool(&counter, workers, jobs)?,
        Impl::Crossbeam => queue_crossbeam(&counter, workers, jobs)?,
        other => return Err(format!("B5 does not measure {}", other.name())),
    };
    Ok(MemSample {
        rss_before,
        rss_after,
        jobs,
        closure_size,
        completed: counter.load(Ordering::SeqCst),
    })
}

fn queue_crew(counter: &Arc<AtomicU64>, workers: usize, jobs: u64) -> Result<(u64, u64), String> {
    let pool = crew::Pool::builder().workers(workers).unbounded().build();
    pool.pause();
    let before = rss_bytes()?;
    let mut rejected = 0u64;
    for _ in 0..jobs {
        if pool.submit(job(counter)).is_err() {
            rejected += 1;
        }
    }
    let after = rss_bytes()?;
    pool.resume();
    pool.shutdown();
    if rejected > 0 {
        return Err(format!("crew rejected {rejected} of {jobs} submits"));
    }
    Ok((before, after))
}

fn queue_threadpool(
    counter: &Arc<AtomicU64>,
    workers: usize,
    jobs: u64,
) -> Result<(u64, u64), String> {
    let pool = threadpool::Builder::new().num_threads(workers).build();
    let parked = Arc::new(Barrier::new(workers + 1));
    let release = Arc::new(Barrier::new(workers + 1));
    for _ in 0..workers {
        let (parked, release) = (Arc::clone(&parked), Arc::clone(&release));
        pool.execute(move || {
            parked.wait();
            release.wait();
        });
    }
    parked.wait(); // every worker now sits in a gate job
    let before = rss_bytes()?;
    for _ in 0..jobs {
        pool.execute(job(counter));
    }
    let after = rss_bytes()?;
    release.wait();
    pool.join();
    Ok((before, after))
}

fn queue_crossbeam(
    counter: &Arc<AtomicU64>,
    workers: usize,
    jobs: u64,
) -> Result<(u64, u64), String> {
    let (tx, rx) = crossbeam_channel::unbounded::<BoxedJob>();
    let parked = Arc::new(Barrier::new(workers + 1));
    let release = Arc::new(Barrier::new(workers + 1));
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (rx, parked, release) = (rx.clone(), Arc::clone(&parked), Arc::clone(&release));
        let h = thread::Builder::new()
            .spawn(move || {
                parked.wait();
                release.wait();
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .map_err(|e| format!("spawn worker: {e}"))?;
        handles.push(h);
    }
    drop(rx);
    parked.wait();
    let before = rss_bytes()?;
    for _ in 0..jobs {
        tx.send(Box::new(job(counter)))
            .map_err(|_| "crossbeam channel closed early".to_string())?;
    }
    let after = rss_bytes()?;
    release.wait();
    drop(tx);
    for h in handles {
        h.join()
            .map_err(|_| "crossbeam worker panicked".to_string())?;
    }
    Ok((before, after))
}

/// Entry point of the child process: `args` are `<impl> <jobs> <workers>`.
///
/// Returns the line to print on standard output for the parent
/// ([`MemSample::to_line`]). The host binary calls this from a hidden
/// subcommand, and the parent reaches it through [`SuiteOptions::b5_child`].
pub fn child_main(args: &[String]) -> Result<String, String> {
    let [imp, jobs, workers] = args else {
        return Err(format!("expected <impl> <jobs> <workers>, got {args:?}"));
    };
    let imp = Impl::from_name(imp).ok_or_else(|| format!("unknown implementation {imp:?}"))?;
    let jobs: u64 = jobs.parse().map_err(|e| format!("jobs {jobs:?}: {e}"))?;
    let workers: usize = workers
        .parse()
        .map_err(|e| format!("workers {workers:?}: {e}"))?;
    measure_in_process(imp, workers, jobs).map(|s| s.to_line())
}

fn read_all<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

fn measure_in_child(
    prefix: &[OsString],
    imp: Impl,
    workers: usize,
    jobs: u64,
    timeout: Duration,
) -> Result<MemSample, String> {
    let (program, rest) = prefix.split_first().ok_or("empty B5 child command")?;
    let mut child = Command::new(program)
        .args(rest)
        .arg(imp.name())
        .arg(jobs.to_string())
        .arg(workers.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {program:?}: {e}"))?;
    // Read both pipes on threads of their own so a chatty child cannot block.
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "child did not finish within {} s (hung?)",
                    timeout.as_secs()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("wait for child: {e}")),
        }
    };
    let collect =
        |h: Option<thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    if !status.success() {
        return Err(format!("child exited with {status}: {}", stderr.trim()));
    }
    MemSample::parse(&stdout).ok_or_else(|| format!("no result line in child output {stdout:?}"))
}

/// Runs B5 for every implementation of [`IMPLS`], `opts.repeat` times each.
pub fn run(opts: &SuiteOptions, progress: &mut dyn FnMut(&Progress)) -> MemoryTable {
    let isolated = opts.b5_child.is_some();
    let mut rows: Vec<MemoryRow> = IMPLS
        .iter()
        .filter(|&&i| opts.measures(i))
        .map(|&implementation| MemoryRow {
            implementation,
            samples: Vec::new(),
            isolated,
            error: None,
        })
        .collect();
    let of = opts.repeat.max(1);
    let (workers, jobs) = (opts.b5_workers, opts.b5_jobs);
    for run in 1..=of {
        for row in rows.iter_mut() {
            if row.error.is_some() {
                continue;
            }
            let imp = row.implementation;
            let cell = format!("{}, {workers} workers", imp.name());
            progress(&Progress::Started {
                workload: Workload::B5,
                cell: cell.clone(),
                run,
                of,
            });
            let result = match &opts.b5_child {
                Some(prefix) => measure_in_child(prefix, imp, workers, jobs, opts.cell_timeout),
                None => measure::isolated(opts.cell_timeout, move || {
                    measure_in_process(imp, workers, jobs)
                }),
            }
            .and_then(|s| {
                if s.completed == s.jobs {
                    Ok(s)
                } else {
                    Err(format!(
                        "only {} of {} queued jobs ran after release",
                        s.completed, s.jobs
                    ))
                }
            });
            let outcome = match &result {
                Ok(s) => format!("{:.1} bytes/job", s.bytes_per_job()),
                Err(e) => format!("FAILED: {e}"),
            };
            match result {
                Ok(s) => row.samples.push(s),
                Err(e) => row.error = Some(e),
            }
            progress(&Progress::Finished {
                workload: Workload::B5,
                cell,
                run,
                of,
                outcome,
            });
        }
    }
    MemoryTable {
        workers,
        jobs,
        rows,
    }
}
