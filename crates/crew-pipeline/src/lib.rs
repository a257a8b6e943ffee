//! Event pipelines built on [`crew`] pools.
//!
//! This crate will hold the pipeline runtime (sources → stages → sinks with
//! end-to-end backpressure, acks and per-partition offset watermarks) and its
//! components under `sources/`, `transforms/` and `sinks/`. It is not written
//! yet; see `design.md` for the plan. For now it re-exports the pool so that the
//! layering (pool → pipeline → CLI) is already the one the code will keep.

pub use crew;
