//! The [`Sink`] trait, and the encoded batch a sink writes.

use std::ops::Range;

use bytes::Bytes;

use crate::event::Origin;

/// One encoded record of an [`OutBatch`].
#[derive(Clone, Debug)]
pub struct Record {
    span: Range<usize>,
    key: Option<Bytes>,
    origin: Origin,
}

/// Encoded events on their way to a sink: one contiguous buffer of
/// newline-terminated records, plus where each one is.
///
/// Workers encode in parallel, so a sink's write is mostly a copy: an NDJSON
/// file sink writes [`OutBatch::ndjson`] in one call; a sink that sends
/// records one by one (Kafka) walks [`OutBatch::records`].
///
/// ```
/// use crew_pipeline::{OutBatch, Origin};
///
/// let mut batch = OutBatch::default();
/// batch.push(Origin { partition: 0, offset: 1 }, None, |buf| buf.extend_from_slice(b"{\"a\":1}"));
/// assert_eq!(batch.ndjson(), b"{\"a\":1}\n");
/// assert_eq!(batch.records().next().unwrap().0, b"{\"a\":1}");
/// ```
#[derive(Clone, Debug, Default)]
pub struct OutBatch {
    buf: Vec<u8>,
    records: Vec<Record>,
}

impl OutBatch {
    /// Appends one record; `encode` writes its bytes (without a newline) to
    /// the buffer.
    pub fn push(&mut self, origin: Origin, key: Option<Bytes>, encode: impl FnOnce(&mut Vec<u8>)) {
        let infallible: Result<(), std::convert::Infallible> = self.try_push(origin, key, |buf| {
            encode(buf);
            Ok(())
        });
        let Ok(()) = infallible;
    }

    /// Like [`push`](Self::push), for an encoder that can fail: on an error
    /// nothing is appended and the error is returned.
    pub fn try_push<E>(
        &mut self,
        origin: Origin,
        key: Option<Bytes>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.buf.len();
        if let Err(error) = encode(&mut self.buf) {
            self.buf.truncate(start);
            return Err(error);
        }
        let end = self.buf.len();
        self.buf.push(b'\n');
        self.records.push(Record {
            span: start..end,
            key,
            origin,
        });
        Ok(())
    }

    /// All records, each followed by `\n`.
    pub fn ndjson(&self) -> &[u8] {
        &self.buf
    }

    /// Each record's bytes (no newline), key and origin, in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = (&[u8], Option<&[u8]>, Origin)> + '_ {
        self.records
            .iter()
            .map(|r| (&self.buf[r.span.clone()], r.key.as_deref(), r.origin))
    }

    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes in the buffer, newlines included.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }
}

crate::component_error::component_error! {
    /// A sink's failure to write or flush a batch: `retriable` when writing
    /// the same batch again may succeed.
    SinkError
}

/// Where events go: a file, stdout, Kafka, or the dead-letter output.
///
/// The pipeline calls a sink from one thread. When `write` returns `Ok`, the
/// records count as delivered and their offsets may be committed, so a sink
/// that buffers must make them durable to the degree it promises before
/// returning (see the file sink's flush and fsync policy), or from `flush`.
pub trait Sink: Send {
    /// Writes a batch of encoded records.
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError>;

    /// Makes everything written so far durable to the sink's promise. Called
    /// before offsets are committed and when the pipeline stops.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
