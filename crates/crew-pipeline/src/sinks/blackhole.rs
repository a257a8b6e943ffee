//! The `blackhole` sink: counts and discards.

use crate::sink::{OutBatch, Sink, SinkError};

/// Discards everything written to it, counting records and bytes. For
/// benchmarks, and as a dead-letter sink where dead letters are only counted.
#[derive(Debug, Default)]
pub struct Blackhole {
    records: u64,
    bytes: u64,
}

impl Blackhole {
    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written so far, newlines included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Sink for Blackhole {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        self.records += batch.len() as u64;
        self.bytes += batch.byte_len() as u64;
        Ok(())
    }
}
