//! The [`Sink`] trait, and the encoded batch a sink writes.

use std::ops::Range;

use bytes::Bytes;

use crate::event::{Header, Origin};

/// One encoded record of an [`OutBatch`].
#[derive(Clone, Debug)]
pub struct Record {
    span: Range<usize>,
    key: Option<Bytes>,
    headers: Vec<Header>,
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
        self.try_push_with_headers(origin, key, Vec::new(), encode)
    }

    /// Like [`try_push`](Self::try_push), with the headers the record
    /// carries (for sinks that write headers, such as Kafka).
    pub fn try_push_with_headers<E>(
        &mut self,
        origin: Origin,
        key: Option<Bytes>,
        headers: Vec<Header>,
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
            headers,
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

    /// The headers of the record at `index` (in [`records`](Self::records)
    /// order); empty when it has none or there is no such record.
    pub fn headers(&self, index: usize) -> &[Header] {
        self.records.get(index).map_or(&[], |r| &r.headers)
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

/// A record a sink refused for good after accepting it in a write (a Kafka
/// delivery report with an error that retrying cannot fix, such as a
/// message too large for the topic). The pipeline sends the event to the
/// dead-letter output instead of counting it delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The refused record's origin, as the batch gave it.
    pub origin: Origin,
    /// A short, stable reason for metrics (`kafka_msg_size_too_large`).
    pub reason: String,
    /// What the sink said, for the dead-letter record.
    pub message: String,
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

    /// Records refused for good since the last call, read right after a
    /// successful [`flush`](Self::flush). A sink that sends records one by
    /// one and learns each one's fate later (Kafka's delivery reports) lists
    /// here the ones that cannot be written; the rest of what it was given
    /// counts as delivered. The default refuses nothing.
    fn take_refused(&mut self) -> Vec<Refused> {
        Vec::new()
    }
}
