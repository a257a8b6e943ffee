//! Sinks: where events go.

mod blackhole;
mod file;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "kafka")]
mod kafka;
mod stdout;

pub use blackhole::Blackhole;
pub use file::{FileMode, FileSink, FileSinkConfig, FsyncPolicy};
#[cfg(feature = "http")]
pub use http::{
    HttpCompression, HttpConfigError, HttpEncoding, HttpMethod, HttpSink, HttpSinkConfig,
    HttpSinkStats,
};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaSink, KafkaSinkConfig, KafkaSinkStats, PRODUCER_DEFAULTS};
pub use stdout::{StdoutConfig, StdoutSink};
