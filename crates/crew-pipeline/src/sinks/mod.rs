//! Sinks: where events go.

mod blackhole;
mod file;
#[cfg(feature = "kafka")]
mod kafka;
mod stdout;

pub use blackhole::Blackhole;
pub use file::{FileMode, FileSink, FileSinkConfig, FsyncPolicy};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaSink, KafkaSinkConfig, KafkaSinkStats, PRODUCER_DEFAULTS};
pub use stdout::{StdoutConfig, StdoutSink};
