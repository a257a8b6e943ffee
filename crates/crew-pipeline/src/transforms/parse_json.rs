//! [`ParseJson`]: an event's raw bytes → a JSON object.

use serde::Deserialize;
use sonic_rs::{JsonValueTrait, Value};

use super::{kind_of, ConfigError};
use crate::event::Event;
use crate::stage::{Outcome, Stage, StageError};

/// The default limit on a line's size: 1 MiB.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// The default limit on nesting: 1,000 levels of arrays and objects.
pub const DEFAULT_MAX_DEPTH: usize = 1000;

/// [`ParseJson`]'s settings.
///
/// ```
/// use crew_pipeline::transforms::ParseJsonConfig;
///
/// let config: ParseJsonConfig = toml::from_str("max_bytes = 4096").unwrap();
/// assert_eq!(config.max_bytes, 4096);
/// assert_eq!(config.max_depth, 1000);
/// assert_eq!(ParseJsonConfig::default().max_bytes, 1 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParseJsonConfig {
    /// The largest line accepted, in bytes (trailing `\r` and spaces count).
    pub max_bytes: usize,
    /// The deepest nesting of arrays and objects accepted.
    ///
    /// sonic parses recursively, and a line of a million `[` would overflow
    /// a worker's stack and abort the process, so deeper lines are refused
    /// before sonic sees them. sonic needs about 230 bytes of stack a level
    /// in a release build (a 2 MiB thread stack holds ~9,000 levels; the
    /// default leaves room for serializing and dropping the value too), but
    /// some 40 KB in a debug build, where 2 MiB holds only ~50 levels. Go's
    /// `encoding/json` stops at 10,000.
    pub max_depth: usize,
}

impl Default for ParseJsonConfig {
    fn default() -> Self {
        ParseJsonConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Parses an event's raw bytes as one JSON object and stores it as the
/// event's value.
///
/// Fails with reason `parse` on: an empty (or all-whitespace) line, a line
/// over `max_bytes`, nesting deeper than `max_depth`, invalid UTF-8, a JSON
/// syntax error, and JSON that is
/// not an object. Whitespace around the object, such as the `\r` of a CRLF
/// line, is fine.
///
/// UTF-8 is checked by sonic itself (`sonic_rs::from_slice` validates and
/// refuses; it replaces nothing unless built with its `utf8_lossy`
/// feature), so a good line is read once. Only a failed line is scanned
/// again, to tell an encoding error from a syntax error.
///
/// Note that Go's `encoding/json` (the reference implementation) instead
/// replaces invalid UTF-8 and lone `\uD800`-style surrogates with U+FFFD;
/// the pipeline's spec makes them errors, so such a line is dead-lettered
/// here.
///
/// ```
/// use crew_pipeline::transforms::ParseJson;
/// use crew_pipeline::{Event, Origin, Outcome, Stage};
///
/// let parse = ParseJson::default();
/// let mut event = Event::new(Origin { partition: 0, offset: 0 }, &b"{\"a\":1}\r"[..]);
/// assert_eq!(parse.process(&mut event), Ok(Outcome::Keep));
/// assert!(event.value().is_some());
///
/// let mut bad = Event::new(Origin { partition: 0, offset: 1 }, &b"[1,2]"[..]);
/// let err = parse.process(&mut bad).unwrap_err();
/// assert_eq!(err.reason, "parse");
/// assert_eq!(err.message, "not a JSON object (found an array)");
/// ```
#[derive(Clone, Debug)]
pub struct ParseJson {
    max_bytes: usize,
    max_depth: usize,
}

impl ParseJson {
    /// A parse stage with these settings; both limits must be at least 1.
    pub fn new(config: ParseJsonConfig) -> Result<ParseJson, ConfigError> {
        if config.max_bytes == 0 {
            return Err(ConfigError::new(
                "parse_json: `max_bytes` must be at least 1",
            ));
        }
        if config.max_depth == 0 {
            return Err(ConfigError::new(
                "parse_json: `max_depth` must be at least 1",
            ));
        }
        Ok(ParseJson {
            max_bytes: config.max_bytes,
            max_depth: config.max_depth,
        })
    }

    /// Parses `raw` as a JSON object, or says why it is not one.
    pub fn parse(&self, raw: &[u8]) -> Result<Value, StageError> {
        if raw.len() > self.max_bytes {
            return Err(parse_error(format!(
                "line of {} bytes is over the maximum of {} bytes",
                raw.len(),
                self.max_bytes
            )));
        }
        if nests_deeper_than(raw, self.max_depth) {
            return Err(parse_error(format!(
                "nested deeper than the maximum of {} levels",
                self.max_depth
            )));
        }
        let value: Value = match sonic_rs::from_slice(raw) {
            Ok(value) => value,
            Err(err) => return Err(explain(raw, &err)),
        };
        if !value.is_object() {
            return Err(parse_error(format!(
                "not a JSON object (found {})",
                kind_of(&value)
            )));
        }
        Ok(value)
    }
}

impl Default for ParseJson {
    fn default() -> Self {
        ParseJson {
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

impl Stage for ParseJson {
    fn process(&self, event: &mut Event) -> Result<Outcome, StageError> {
        let value = self.parse(event.raw())?;
        event.set_value(value);
        Ok(Outcome::Keep)
    }
}

/// Whether arrays and objects in `raw` nest deeper than `max`.
#[inline]
fn nests_deeper_than(raw: &[u8], max: usize) -> bool {
    // Nesting cannot exceed the number of `[` and `{`, which a tight loop
    // counts: `[` | 0x20 is `{` and no other byte maps there, and a per-chunk
    // u8 sum keeps the compiler on 16-byte vectors (a plain `.count()`
    // widens every byte to a u64 and is eight times slower).
    let openers: usize = raw
        .chunks(255)
        .map(|chunk| {
            let in_chunk = chunk.iter().map(|&byte| u8::from(byte | 0x20 == b'{'));
            usize::from(in_chunk.fold(0u8, u8::wrapping_add))
        })
        .sum();
    openers > max && deeper_than(raw, max)
}

/// The exact check, skipping brackets inside strings; malformed JSON is
/// left for sonic to report.
#[cold]
fn deeper_than(raw: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn parse_error(message: String) -> StageError {
    StageError::fatal("parse", message)
}

/// Turns sonic's error into a one-line message, telling the cases a person
/// acts on differently apart.
#[cold]
fn explain(raw: &[u8], err: &sonic_rs::Error) -> StageError {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return parse_error(if raw.is_empty() {
            "empty line".to_owned()
        } else {
            format!("empty line ({} bytes of whitespace only)", raw.len())
        });
    }
    if let Err(utf8) = std::str::from_utf8(raw) {
        return parse_error(format!("invalid UTF-8 at byte {}", utf8.valid_up_to()));
    }
    // sonic's message is a first line ("Invalid JSON value at line 1 column
    // 9") followed by a multi-line excerpt of the input; the first line says
    // it all and keeps the event's data out of logs and counters.
    let text = err.to_string();
    let first = text.lines().next().unwrap_or("");
    parse_error(format!("invalid JSON: {first}"))
}

#[cfg(test)]
mod tests {
    use sonic_rs::JsonContainerTrait;

    use super::*;

    fn parse(raw: &[u8]) -> Result<Value, StageError> {
        ParseJson::default().parse(raw)
    }

    fn message(raw: &[u8]) -> String {
        let err = parse(raw).unwrap_err();
        assert_eq!(err.reason, "parse");
        assert!(!err.retriable);
        err.message
    }

    #[test]
    fn parses_an_object_with_surrounding_whitespace() {
        for raw in [&b"{\"a\":1}"[..], b"{\"a\":1}\r", b"  {\"a\":1}\t \r\n"] {
            let value = parse(raw).unwrap();
            assert_eq!(value.as_object().unwrap().len(), 1);
        }
    }

    #[test]
    fn stores_the_value_on_the_event() {
        let mut event = Event::new(
            crate::Origin {
                partition: 0,
                offset: 0,
            },
            &b"{\"k\":\"v\"}"[..],
        );
        assert_eq!(ParseJson::default().process(&mut event), Ok(Outcome::Keep));
        assert_eq!(event.value().unwrap()["k"].as_str(), Some("v"));
    }

    #[test]
    fn empty_and_blank_lines() {
        assert_eq!(message(b""), "empty line");
        assert_eq!(message(b" \r"), "empty line (2 bytes of whitespace only)");
    }

    #[test]
    fn a_line_over_the_limit_gives_both_sizes() {
        let parse = ParseJson::new(ParseJsonConfig {
            max_bytes: 8,
            ..Default::default()
        })
        .unwrap();
        let err = parse.parse(br#"{"a":"long"}"#).unwrap_err();
        assert_eq!(
            err.message,
            "line of 12 bytes is over the maximum of 8 bytes"
        );
        assert!(parse.parse(br#"{"a":1}"#).is_ok());
        assert!(
            parse.parse(br#"{"ab":1}"#).is_ok(),
            "exactly max_bytes is fine"
        );
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_position() {
        assert_eq!(message(b"{\"a\":\"\xff\"}"), "invalid UTF-8 at byte 6");
        assert_eq!(
            message(b"{\"a\":\"ok\", \"b\":\"\xc3\"}"),
            "invalid UTF-8 at byte 16"
        );
    }

    #[test]
    fn syntax_errors_carry_sonics_first_line() {
        assert_eq!(
            message(br#"{"a":1"#),
            "invalid JSON: Expected this character to be either a ',' or a ']' while parsing at line 1 column 7"
        );
        let trailing = message(br#"{"a":1} x"#);
        assert!(
            trailing.starts_with("invalid JSON: JSON has non-whitespace trailing characters"),
            "{trailing}"
        );
        assert!(!trailing.contains('\n'));
        assert!(message(br#"{"a":01}"#).starts_with("invalid JSON: "));
        assert!(message(br#"{"a":"\ud800"}"#).starts_with("invalid JSON: Invalid unicode"));
        assert!(message(br#"{"a":1e400}"#).starts_with("invalid JSON: Float number must be finite"));
        assert!(
            message(b"\xef\xbb\xbf{}").starts_with("invalid JSON: "),
            "a BOM is not whitespace"
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_sonic_sees_it() {
        let nested = |depth: usize| {
            format!(
                "{{\"a\":{}{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        let parse = ParseJson::new(ParseJsonConfig {
            max_depth: 8,
            ..Default::default()
        })
        .unwrap();
        assert!(parse.parse(nested(8).as_bytes()).is_ok());
        let err = parse.parse(nested(9).as_bytes()).unwrap_err();
        assert_eq!(err.message, "nested deeper than the maximum of 8 levels");
        // Brackets in strings do not count, escaped quotes do not end them.
        let in_strings = format!(
            r#"{{"a":"{}\"{}","b":[[1]]}}"#,
            "[".repeat(20),
            "{".repeat(20)
        );
        assert!(parse.parse(in_strings.as_bytes()).is_ok());
        // Many brackets side by side are not deep.
        let wide = format!("{{\"a\":[{}]}}", vec!["[]"; 50].join(","));
        assert!(parse.parse(wide.as_bytes()).is_ok());
        // A megabyte of `[` would abort the process inside sonic.
        let bomb = "[".repeat(1 << 20);
        assert_eq!(
            message(bomb.as_bytes()),
            "nested deeper than the maximum of 1000 levels"
        );
    }

    #[test]
    fn non_objects_name_what_they_are() {
        assert_eq!(message(b"null"), "not a JSON object (found null)");
        assert_eq!(message(b"[1]"), "not a JSON object (found an array)");
        assert_eq!(message(b"12"), "not a JSON object (found a number)");
        assert_eq!(message(b"\"s\""), "not a JSON object (found a string)");
        assert_eq!(message(b"true"), "not a JSON object (found a boolean)");
    }

    #[test]
    fn config_refuses_a_zero_limit_and_unknown_keys() {
        assert!(ParseJson::new(ParseJsonConfig {
            max_bytes: 0,
            ..Default::default()
        })
        .is_err());
        assert!(ParseJson::new(ParseJsonConfig {
            max_depth: 0,
            ..Default::default()
        })
        .is_err());
        let err = toml::from_str::<ParseJsonConfig>("max_byte = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        assert_eq!(
            toml::from_str::<ParseJsonConfig>("").unwrap(),
            ParseJsonConfig::default()
        );
    }
}
