//! Sinks: where events go.

mod blackhole;
mod file;
mod stdout;

pub use blackhole::Blackhole;
pub use file::{FileMode, FileSink, FileSinkConfig, FsyncPolicy};
pub use stdout::{StdoutConfig, StdoutSink};
