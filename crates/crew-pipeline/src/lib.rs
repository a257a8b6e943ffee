//! # crew-pipeline: event pipelines on crew pools
//!
//! Sources → stages → sinks, with end-to-end backpressure, at-least-once acks
//! with per-partition offset watermarks, per-key ordering, retries and dead
//! letters, and a graceful shutdown that commits only what is done.
//!
//! ```text
//! source ─▶ batch ─▶ stage chain on a crew Pool (one job per batch) ─▶ sink thread
//!    ▲                                                                    │
//!    └──────────── acks after the sink flushes: watermark, then commit ◀──┘
//! ```
//!
//! The layers, by folder: the runtime (`runtime/`, `acks/`) knows events and
//! the traits, never a particular component; components (`sources/`,
//! `transforms/`, `sinks/`) know the traits, never each other.

pub mod acks;
mod component_error;
pub mod concurrency;
mod dead_letter;
mod event;
#[cfg(feature = "kafka")]
mod kafka_client;
mod retry;
mod runtime;
mod settings;
mod sink;
mod source;
mod stage;

pub mod pixels;
pub mod sinks;
pub mod sources;
pub mod transforms;

pub use dead_letter::Failure;
pub use event::{Event, Header, Offset, Origin, Partition, Value};
pub use retry::RetryPolicy;
pub use runtime::{
    BuildError, PartitionHandoff, Phase, Pipeline, PipelineBuilder, PipelineHandle, Released,
    Report, Snapshot, StageSnapshot, StopCause, MAX_LANES, MAX_WORKERS,
};
pub use settings::{Batching, Budget, Ordering, Settings};
pub use sink::{OutBatch, Refused, Sink, SinkError};
pub use source::{Full, ReadBatch, ReadStatus, Source, SourceError};
pub use stage::{Outcome, Stage, StageError};

/// The pool crate the runtime runs on.
pub use crew;
