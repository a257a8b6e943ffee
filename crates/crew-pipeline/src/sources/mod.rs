//! Sources: where events come from.
//!
//! - [`Generator`]: Server Pixels events, deterministic per seed, for demos,
//!   benchmarks and tests ([`PixelsEvents`] writes the same lines to files);
//! - [`FileSource`]: an NDJSON file, plain or gzip, resuming from a
//!   checkpoint;
//! - [`StdinSource`]: NDJSON from standard input;
//! - `KafkaSource` (feature `kafka`): a topic, as a member of a consumer
//!   group.
//!
//! Each has a serde config struct, so a TOML file configures it.

mod checkpoint;
mod commit_log;
mod file;
mod generator;
#[cfg(feature = "kafka")]
mod kafka;
mod lines;
mod stdin;

pub use commit_log::CommitLog;
pub use file::{FileSource, FileSourceConfig};
pub use generator::{
    Generator, GeneratorConfig, InvalidKind, LineInfo, LineKind, MalformedKind, Pacer,
    PixelsEvents, WriteSummary,
};
#[cfg(feature = "kafka")]
pub use kafka::{
    KafkaConfigError, KafkaSource, KafkaSourceConfig, KafkaSourceStats, CONSUMER_DEFAULTS,
};
pub use stdin::{StdinConfig, StdinSource};

/// 64-bit FNV-1a: a fixed, dependency-free hash for partitioning and file
/// fingerprints, where its value must not change between builds.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv1a_is_the_standard_one() {
        assert_eq!(super::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
