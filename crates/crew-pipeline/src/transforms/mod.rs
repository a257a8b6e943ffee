//! Transforms: the stages that work on an event's JSON.
//!
//! | stage | does | fails with reason |
//! |---|---|---|
//! | [`ParseJson`] | raw bytes → a JSON object ([`Value`](crate::Value)) | `parse` |
//! | [`Validate`] | field rules (fast) and/or a JSON Schema (general) | `invalid` |
//! | [`Filter`] | drops events that match a rule, counted under the rule's reason | — |
//! | [`Edit`] | field operations in order: set, delete, rename, classify, hash, ... | `edit` |
//! | `Remap` (feature `remap`) | a VRL program for custom logic; `abort` drops the event | `remap` |
//!
//! Each has a config struct that deserializes from TOML (unknown keys are
//! refused, so a typo is an error, not a silently ignored setting) and a
//! `new(config)` that checks it. Fields are named by dotted paths
//! ([`FieldPath`]), split once when the stage is built.
//!
//! A stage after [`ParseJson`] that finds no parsed value fails the event
//! with reason `unparsed`: that is a wiring mistake, and the message says so.
//!
//! ```
//! use crew_pipeline::transforms::{Filter, FilterConfig, ParseJson};
//! use crew_pipeline::{Event, Origin, Outcome, Stage};
//!
//! let config: FilterConfig = toml::from_str(
//!     r#"rules = [{ reason = "test", when = { op = "is_true", field = "test" } }]"#,
//! )
//! .unwrap();
//! let filter = Filter::new(config).unwrap();
//! let mut event = Event::new(Origin { partition: 0, offset: 0 }, &br#"{"test":true}"#[..]);
//! ParseJson::default().process(&mut event).unwrap();
//! assert_eq!(filter.process(&mut event), Ok(Outcome::Drop("test".into())));
//! ```

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use crate::stage::StageError;

mod edit;
mod filter;
mod literal;
mod parse_json;
mod path;
#[cfg(feature = "remap")]
mod remap;
mod validate;

pub use edit::{Edit, EditConfig, EditOp};
pub use filter::{Condition, DropRule, Filter, FilterConfig};
pub use literal::Literal;
pub use parse_json::{ParseJson, ParseJsonConfig, DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH};
pub use path::{FieldPath, InsertError};
#[cfg(feature = "remap")]
pub use remap::{Remap, RemapConfig};
pub use validate::{Check, FieldRule, Validate, ValidateConfig};

/// A transform's configuration that cannot work, found when the stage is
/// built: the message names the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }
}

/// The error for a stage that needs a parsed value and finds none.
#[cold]
pub(crate) fn unparsed(stage: &str) -> StageError {
    StageError::fatal(
        "unparsed",
        format!("the event has no parsed value: put a parse_json stage before {stage}"),
    )
}

/// Returns a `'static` copy of `text`, shared with every earlier call for the
/// same text.
///
/// Drop reasons and constant strings written into events are `'static` so
/// that the hot path neither clones nor allocates them (`Outcome::Drop` takes
/// a `Cow<'static, str>`, and a `'static` string goes into a sonic value
/// without a copy). They come from configuration, so the set is small and
/// interning keeps it from growing when stages are built again.
pub(crate) fn intern(text: &str) -> &'static str {
    static INTERNED: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = set.get(text) {
        return found;
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// A short description of a value's type for messages: "a string", "null".
pub(crate) fn kind_of(value: &crate::Value) -> &'static str {
    use sonic_rs::{JsonType, JsonValueTrait};
    match value.get_type() {
        JsonType::Null => "null",
        JsonType::Boolean => "a boolean",
        JsonType::Number => "a number",
        JsonType::String => "a string",
        JsonType::Object => "an object",
        JsonType::Array => "an array",
    }
}

/// `text` cut to at most `max` bytes on a character boundary, for quoting
/// event data in messages without copying a whole large field.
pub(crate) fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_shares_equal_texts() {
        let a = intern("consent");
        let b = intern(&String::from("consent"));
        assert_eq!(a.as_ptr(), b.as_ptr());
    }

    #[test]
    fn clip_cuts_on_a_char_boundary() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("aé", 2), "a");
    }
}
