//! A pipeline's runtime settings: workers, ordering, batching, budget,
//! retries, shutdown.

use std::time::Duration;

use serde::Deserialize;

use crate::retry::RetryPolicy;

/// In which order events reach the sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Any order: batches run on any worker. The fastest.
    #[default]
    Unordered,
    /// Events with the same key reach the sink in the order they were read;
    /// different keys run in parallel, beyond the number of partitions.
    Key,
    /// Events of the same partition reach the sink in the order they were
    /// read.
    Partition,
}

/// When a read batch is handed to the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Batching {
    /// At most this many events per batch.
    pub max_events: usize,
    /// At most about this many bytes per batch (the batch that crosses it is
    /// closed).
    pub max_bytes: usize,
    /// How long a source may wait to fill a batch before handing over what it
    /// has.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_events: 500,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(20),
        }
    }
}

/// How much may be in flight (read and not yet done) at once.
///
/// When the budget is used up the source stops reading until events finish:
/// a slow sink slows the source, and memory stays bounded. Bytes count the
/// events' raw size; a parsed value takes a few times that, so leave room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Events in flight, at most.
    pub max_events: usize,
    /// Raw bytes of events in flight, at most.
    pub max_bytes: usize,
    /// Unfinished events per partition, at most; a partition at the limit is
    /// paused while the others go on.
    pub max_per_partition: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_events: 50_000,
            max_bytes: 64 << 20,
            max_per_partition: 50_000,
        }
    }
}

/// The runtime settings of a pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Workers of the pool that runs the stages (the ones that do not set
    /// their own).
    pub workers: usize,
    /// The order in which events reach the sink.
    pub ordering: Ordering,
    /// The JSON field holding an event's key, read from its raw bytes when the
    /// source gave it no key (used by `key` ordering). `/`-separated for a
    /// nested field.
    pub key_field: Option<String>,
    /// Lanes for `key` ordering: keys are spread over this many ordered lanes.
    /// Default: 8 per worker.
    pub lanes: Option<usize>,
    /// Batching.
    pub batch: Batching,
    /// In-flight limits.
    pub budget: Budget,
    /// Retries of stage calls that fail with a retriable error.
    pub stage_retry: RetryPolicy,
    /// Retries of sink and dead-letter sink writes.
    pub sink_retry: RetryPolicy,
    /// How often offsets of finished events are committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a shutdown waits for in-flight events to finish; what is
    /// still unfinished then is abandoned (not committed, read again next
    /// time).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// The longest a written batch waits before the sink is flushed and its
    /// events are acked.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: std::thread::available_parallelism().map_or(2, usize::from),
            ordering: Ordering::default(),
            key_field: None,
            lanes: None,
            batch: Batching::default(),
            budget: Budget::default(),
            stage_retry: RetryPolicy::default(),
            sink_retry: RetryPolicy::default(),
            commit_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
            flush_interval: Duration::from_millis(100),
        }
    }
}
