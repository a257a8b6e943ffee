//! The [`Stage`] trait: one step of processing, applied to one event at a time.

use std::borrow::Cow;
use std::fmt;

use crate::event::Event;

/// What a stage decided about an event it processed without error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Pass the event on to the next stage (or the sink).
    Keep,
    /// Drop the event on purpose. It counts as done (its offset can be
    /// committed) and is counted under this reason label, such as `consent`.
    Drop(Cow<'static, str>),
}

/// A stage's failure for one event.
///
/// `retriable` errors are retried with backoff up to the stage's retry
/// limit; after that, and at once for the others, the event goes to the
/// dead-letter sink with `reason`, the stage's name, the attempt count and
/// its original bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageError {
    /// A short, stable label for counting and routing, such as `parse` or
    /// `invalid`.
    pub reason: Cow<'static, str>,
    /// What went wrong, for a person.
    pub message: String,
    /// Whether trying the same event again may succeed.
    pub retriable: bool,
}

impl StageError {
    /// A failure that retrying will not fix (malformed input, a failed check).
    pub fn fatal(reason: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        StageError {
            reason: reason.into(),
            message: message.into(),
            retriable: false,
        }
    }

    /// A failure that may pass on a later attempt (a timeout, a busy peer).
    pub fn retriable(reason: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        StageError {
            reason: reason.into(),
            message: message.into(),
            retriable: true,
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for StageError {}

/// One processing step: parse, validate, filter, enrich.
///
/// A stage is shared by all the workers of its pool, so it takes `&self`;
/// keep per-call state on the stack. The runtime calls it for one event at a
/// time, inside a job that runs a whole batch through consecutive stages,
/// and catches a panic as a non-retriable error with reason `panic`.
///
/// ```
/// use crew_pipeline::{Event, Outcome, Stage, StageError};
///
/// /// Drops empty lines, keeps the rest.
/// struct SkipEmpty;
///
/// impl Stage for SkipEmpty {
///     fn process(&self, event: &mut Event) -> Result<Outcome, StageError> {
///         if event.raw().is_empty() {
///             return Ok(Outcome::Drop("empty".into()));
///         }
///         Ok(Outcome::Keep)
///     }
/// }
/// ```
pub trait Stage: Send + Sync + 'static {
    /// Processes one event in place.
    fn process(&self, event: &mut Event) -> Result<Outcome, StageError>;
}

impl<F> Stage for F
where
    F: Fn(&mut Event) -> Result<Outcome, StageError> + Send + Sync + 'static,
{
    fn process(&self, event: &mut Event) -> Result<Outcome, StageError> {
        self(event)
    }
}
