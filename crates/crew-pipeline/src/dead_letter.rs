//! Dead letters: events the pipeline could not deliver, with why.

use base64::Engine as _;
use serde::Serialize;

use crate::event::{Event, Origin};
use crate::sink::OutBatch;

/// The sink or stage name a dead letter records when the sink itself failed.
pub const SINK_STAGE: &str = "sink";

/// Why an event was dead-lettered: the reason label, the stage, how many
/// attempts were made, and the error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The stage's short reason label (`parse`, `invalid`, `panic`, `sink`).
    pub reason: String,
    /// The stage that failed, or `sink`.
    pub stage: String,
    /// Attempts made, the first one included.
    pub attempts: u32,
    /// The error message.
    pub message: String,
}

/// One dead-letter record as written (one JSON object per line):
///
/// ```json
/// {"reason":"parse","stage":"parse","attempts":1,"message":"EOF while parsing",
///  "partition":0,"offset":41,"original":"{\"event_id\":"}
/// ```
///
/// `original` holds the event's bytes exactly as read when they are UTF-8;
/// otherwise `original_base64` holds them base64-encoded.
#[derive(Serialize)]
struct DeadLetterRecord<'a> {
    reason: &'a str,
    stage: &'a str,
    attempts: u32,
    message: &'a str,
    partition: u32,
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_base64: Option<String>,
}

/// Appends the dead-letter record of `event` to `out`.
pub(crate) fn push_dead_letter(out: &mut OutBatch, event: &Event, failure: &Failure) {
    push_record(out, event.origin(), event.raw(), failure);
}

/// Appends a dead-letter record for raw bytes read at `origin`.
pub(crate) fn push_record(out: &mut OutBatch, origin: Origin, raw: &[u8], failure: &Failure) {
    let (original, original_base64) = match std::str::from_utf8(raw) {
        Ok(text) => (Some(text), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(raw)),
        ),
    };
    let record = DeadLetterRecord {
        reason: &failure.reason,
        stage: &failure.stage,
        attempts: failure.attempts,
        message: &failure.message,
        partition: origin.partition,
        offset: origin.offset,
        original,
        original_base64,
    };
    out.push(origin, None, |buf| {
        // Serializing a struct of strings and integers into a Vec cannot fail.
        sonic_rs::to_writer(buf, &record).expect("a dead-letter record always serializes");
    });
}
