//! The unit that flows through a pipeline: an [`Event`], where it came from
//! ([`Origin`]) and the batch it travels in.

use bytes::Bytes;

/// A parsed JSON value, as stages see it.
///
/// crew uses `sonic_rs`'s value: it parses and serializes about twice as fast
/// as `serde_json::Value` (see `docs/pipeline.md`), and the pipeline's budget
/// is mostly JSON.
pub use sonic_rs::Value;

/// A source's partition: a Kafka partition, or 0 for a single-stream source.
pub type Partition = u32;

/// A position in a partition. Offsets of one partition are strictly
/// increasing in the order the source reads them; gaps are allowed.
pub type Offset = u64;

/// A message header, as Kafka carries them: a name and an optional value.
/// Sources that read headers keep them on the event; sinks that can write
/// them (Kafka) write them back out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// Its value; Kafka allows a header with no value.
    pub value: Option<Bytes>,
}

/// An event's headers, boxed as one thin pointer.
#[derive(Debug)]
struct HeaderList(Vec<Header>);

/// Where an event was read: its partition and offset.
///
/// The pipeline uses it to ack: a source commits an offset only when every
/// event at or below it in that partition is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The partition the event was read from.
    pub partition: Partition,
    /// Its offset in that partition.
    pub offset: Offset,
}

/// One event: the bytes as read, the parsed value once a stage has parsed it,
/// a key for partitioning and per-key ordering, and its origin.
///
/// The original bytes are kept until the event is done, so a dead letter can
/// always carry them, whatever the stages did to the value.
///
/// ```
/// use crew_pipeline::{Event, Origin};
///
/// let event = Event::new(Origin { partition: 0, offset: 7 }, &b"{\"a\":1}"[..]);
/// assert_eq!(event.raw(), b"{\"a\":1}");
/// assert!(event.value().is_none());
/// ```
#[derive(Debug)]
pub struct Event {
    raw: Bytes,
    value: Option<Value>,
    key: Option<Bytes>,
    /// `None` for most sources; behind a thin box so an event without
    /// headers grows by one word only (events are moved by value a lot).
    headers: Option<Box<HeaderList>>,
    origin: Origin,
    pub(crate) ticket: u64,
}

impl Event {
    /// An event of raw bytes read at `origin`, with no key and no parsed value.
    pub fn new(origin: Origin, raw: impl Into<Bytes>) -> Event {
        Event {
            raw: raw.into(),
            value: None,
            key: None,
            headers: None,
            origin,
            ticket: 0,
        }
    }

    /// Sets the event's key (for `key` ordering and for sinks that partition).
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Event {
        self.key = Some(key.into());
        self
    }

    /// The bytes as the source read them.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The raw bytes as a cheaply clonable buffer.
    pub fn raw_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// The parsed value, if a stage has parsed the event.
    pub fn value(&self) -> Option<&Value> {
        self.value.as_ref()
    }

    /// The parsed value, mutable.
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        self.value.as_mut()
    }

    /// Sets the parsed value (a parsing stage does this).
    pub fn set_value(&mut self, value: Value) {
        self.value = Some(value);
    }

    /// Takes the parsed value out, leaving none.
    pub fn take_value(&mut self) -> Option<Value> {
        self.value.take()
    }

    /// The event's key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The key as a shared buffer (a cheap clone for the sink's records).
    pub(crate) fn key_bytes(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// Sets the event's key; a stage may derive it from the parsed value.
    pub fn set_key(&mut self, key: impl Into<Bytes>) {
        self.key = Some(key.into());
    }

    /// The headers the event was read with (Kafka headers), in order.
    pub fn headers(&self) -> &[Header] {
        self.headers
            .as_deref()
            .map_or(&[], |list| list.0.as_slice())
    }

    /// Sets the event's headers.
    pub fn with_headers(mut self, headers: Vec<Header>) -> Event {
        self.headers = (!headers.is_empty()).then(|| Box::new(HeaderList(headers)));
        self
    }

    /// Takes the headers out (the encoder moves them to the sink's record).
    pub(crate) fn take_headers(&mut self) -> Vec<Header> {
        self.headers.take().map(|list| list.0).unwrap_or_default()
    }

    /// Where the event was read.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Bytes the event counts against the pipeline's in-flight budget.
    pub(crate) fn budget_bytes(&self) -> usize {
        self.raw.len()
    }
}
