//! Sinks: where events go.

mod blackhole;

pub use blackhole::Blackhole;
