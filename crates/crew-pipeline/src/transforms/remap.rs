//! [`Remap`]: a user's program in VRL, the Vector Remap Language, run on each
//! event's value.
//!
//! The built-in transforms ([`Edit`](super::Edit), [`Filter`](super::Filter),
//! [`Validate`](super::Validate)) work natively on the parsed value and cover
//! the common field work; `remap` is for the custom logic they do not. It
//! costs more per event: the value is converted into VRL's own value and
//! back (see "remap: why VRL" in `docs/pipeline.md` for the figures).
//!
//! The program sees the event as `.`, changes it in place, and may end it
//! with `abort`, which drops the event on purpose. VRL is checked when the
//! stage is built: a syntax error, an unknown function or field type
//! mismatch, and a call that can fail but whose error the program does not
//! handle (`f!(...)`, `f(...) ?? default` or `x, err = f(...)`) are all
//! refused then, with the position in the program.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use sonic_rs::{JsonNumberTrait, Value, ValueRef};
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{ExpressionError, Program, TargetValue, TimeZone};
use vrl::diagnostic::Formatter;
use vrl::value::{KeyString, Secrets, Value as VrlValue};

use super::{intern, unparsed, ConfigError};
use crate::event::Event;
use crate::stage::{Outcome, Stage, StageError};

/// How deeply arrays and objects may nest in a value given to the program.
/// Conversion recurses, so a bound keeps a hostile event from exhausting the
/// worker's stack; deeper events fail with reason `remap`.
const MAX_DEPTH: usize = 128;

/// [`Remap`]'s settings: the program and what to call the events it drops.
///
/// ```
/// use crew_pipeline::transforms::RemapConfig;
///
/// let config: RemapConfig = toml::from_str(r#"
///     program = '''
///     if .consent.marketing != true { abort }
///     .device = if contains(string(.context.user_agent) ?? "", "Mobile") { "mobile" } else { "desktop" }
///     del(.context.ip)
///     '''
///     drop_reason = "consent"
/// "#).unwrap();
/// assert_eq!(config.drop_reason, "consent");
/// assert_eq!(config.timezone, "UTC");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemapConfig {
    /// The VRL program's source. The event is `.`; `abort` drops it.
    pub program: String,
    /// The reason label under which events the program `abort`s are counted
    /// as dropped. Default `remap`.
    #[serde(default = "default_drop_reason")]
    pub drop_reason: String,
    /// The time zone for timestamp functions given none: an IANA name such
    /// as `Europe/Paris`, or `local` for the machine's. Default `UTC`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_drop_reason() -> String {
    "remap".to_owned()
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

impl RemapConfig {
    /// A config for `program`, with the default drop reason (`remap`) and
    /// time zone (`UTC`).
    ///
    /// ```
    /// use crew_pipeline::transforms::RemapConfig;
    ///
    /// let config = RemapConfig::new(".seen = true");
    /// assert_eq!(config.program, ".seen = true");
    /// assert_eq!(config.drop_reason, "remap");
    /// ```
    pub fn new(program: impl Into<String>) -> RemapConfig {
        RemapConfig {
            program: program.into(),
            drop_reason: default_drop_reason(),
            timezone: default_timezone(),
        }
    }
}

/// Runs a VRL program on each event's parsed value.
///
/// What the program leaves in `.` replaces the event's value; the value of
/// its last expression is not used. `abort` drops the event, counted under
/// the config's `drop_reason`. A runtime error (a failed `assert!`, a
/// failing `f!(...)` call) fails the event with reason `remap` and VRL's
/// message; the event's value is then left as it was.
///
/// Objects come out with their keys sorted (VRL keeps objects sorted).
/// Integers beyond `i64` reach the program as floats. Timestamps the program
/// writes become RFC 3339 strings in UTC.
///
/// ```
/// use crew_pipeline::transforms::{ParseJson, Remap, RemapConfig};
/// use crew_pipeline::{Event, Origin, Outcome, Stage};
///
/// let remap = Remap::new(RemapConfig::new(r#"
///     if .region == "DE" { abort }
///     .total_usd = round((to_float(.total) ?? 0.0) * 1.09, precision: 2)
///     del(.debug)
/// "#)).unwrap();
///
/// let mut event = Event::new(Origin { partition: 0, offset: 0 }, &br#"{"total":10,"debug":1}"#[..]);
/// ParseJson::default().process(&mut event).unwrap();
/// assert_eq!(remap.process(&mut event), Ok(Outcome::Keep));
/// let out = sonic_rs::to_string(event.value().unwrap()).unwrap();
/// assert_eq!(out, r#"{"total":10,"total_usd":10.9}"#);
///
/// let mut event = Event::new(Origin { partition: 0, offset: 1 }, &br#"{"region":"DE"}"#[..]);
/// ParseJson::default().process(&mut event).unwrap();
/// assert_eq!(remap.process(&mut event), Ok(Outcome::Drop("remap".into())));
/// ```
pub struct Remap {
    program: Program,
    drop_reason: &'static str,
    timezone: TimeZone,
}

impl fmt::Debug for Remap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remap")
            .field("drop_reason", &self.drop_reason)
            .field("timezone", &self.timezone)
            .finish_non_exhaustive()
    }
}

impl Remap {
    /// Compiles the program. A program that does not compile is an error
    /// whose message quotes the program at the fault, with its line and
    /// column.
    ///
    /// ```
    /// use crew_pipeline::transforms::{Remap, RemapConfig};
    ///
    /// assert!(Remap::new(RemapConfig::new(".a = 1")).is_ok());
    ///
    /// let err = Remap::new(RemapConfig::new(".a = upcase(.b)")).unwrap_err().to_string();
    /// // `upcase` fails on a non-string, and the program does not handle it.
    /// assert!(err.contains("unhandled fallible"), "{err}");
    /// assert!(err.contains(":1:6"), "{err}");
    /// ```
    pub fn new(config: RemapConfig) -> Result<Remap, ConfigError> {
        if config.drop_reason.is_empty() {
            return Err(ConfigError::new("remap: `drop_reason` is empty"));
        }
        let timezone = TimeZone::parse(&config.timezone).ok_or_else(|| {
            ConfigError::new(format!(
                "remap: `timezone` {:?} is not an IANA time zone name nor `local`",
                config.timezone
            ))
        })?;
        let functions = vrl::stdlib::all();
        let compiled =
            vrl::compiler::compile(&config.program, &functions).map_err(|diagnostics| {
                ConfigError::new(format!(
                    "remap: the program does not compile:\n{}",
                    Formatter::new(&config.program, diagnostics)
                ))
            })?;
        if !compiled.warnings.is_empty() {
            tracing::warn!(
                "remap: the program compiles with warnings:\n{}",
                Formatter::new(&config.program, compiled.warnings)
            );
        }
        Ok(Remap {
            program: compiled.program,
            drop_reason: intern(&config.drop_reason),
            timezone,
        })
    }
}

impl Stage for Remap {
    fn process(&self, event: &mut Event) -> Result<Outcome, StageError> {
        let value = event.value().ok_or_else(|| unparsed("remap"))?;
        let mut target = TargetValue {
            value: to_vrl(value, 0)?,
            metadata: VrlValue::Object(BTreeMap::new()),
            secrets: Secrets::default(),
        };
        match Runtime::default().resolve(&mut target, &self.program, &self.timezone) {
            Ok(_) => {}
            Err(Terminate::Abort(ExpressionError::Abort { .. })) => {
                return Ok(Outcome::Drop(self.drop_reason.into()));
            }
            Err(Terminate::Abort(err) | Terminate::Error(err)) => {
                return Err(failed(format!("the program failed: {err}")));
            }
            Err(Terminate::Interrupted) => {
                return Err(failed("the program was interrupted"));
            }
        }
        event.set_value(from_vrl(&target.value)?);
        Ok(Outcome::Keep)
    }
}

fn failed(message: impl Into<String>) -> StageError {
    StageError::fatal("remap", message)
}

/// A sonic value as VRL's, failing past [`MAX_DEPTH`].
fn to_vrl(value: &Value, depth: usize) -> Result<VrlValue, StageError> {
    Ok(match value.as_ref() {
        ValueRef::Null => VrlValue::Null,
        ValueRef::Bool(b) => VrlValue::Boolean(b),
        ValueRef::Number(n) => match n.as_i64() {
            Some(i) => VrlValue::Integer(i),
            // A u64 above i64::MAX, or a float (never NaN from JSON).
            None => VrlValue::from_f64_or_zero(n.as_f64().unwrap_or(0.0)),
        },
        ValueRef::String(s) => VrlValue::Bytes(Bytes::copy_from_slice(s.as_bytes())),
        ValueRef::Array(items) => {
            let depth = deeper(depth)?;
            let items = items.iter().map(|item| to_vrl(item, depth));
            VrlValue::Array(items.collect::<Result<_, _>>()?)
        }
        ValueRef::Object(members) => {
            let depth = deeper(depth)?;
            let mut object = BTreeMap::new();
            for (key, member) in members.iter() {
                object.insert(KeyString::from(key), to_vrl(member, depth)?);
            }
            VrlValue::Object(object)
        }
    })
}

fn deeper(depth: usize) -> Result<usize, StageError> {
    if depth >= MAX_DEPTH {
        return Err(failed(format!(
            "the value nests arrays and objects deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(depth + 1)
}

/// VRL's value back as a sonic one, through JSON text: sonic builds the
/// objects it parses faster than the ones it is handed one key at a time,
/// and keeps their key order.
fn from_vrl(value: &VrlValue) -> Result<Value, StageError> {
    let text = sonic_rs::to_vec(value)
        .map_err(|err| failed(format!("the program's result is not JSON: {err}")))?;
    sonic_rs::from_slice(&text)
        .map_err(|err| failed(format!("the program's result is not JSON: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;
    use sonic_rs::JsonValueTrait;

    fn remap(program: &str) -> Remap {
        match Remap::new(RemapConfig::new(program)) {
            Ok(remap) => remap,
            Err(err) => panic!("{err}"),
        }
    }

    fn event(json: &str) -> Event {
        let mut event = Event::new(
            Origin {
                partition: 0,
                offset: 0,
            },
            json.as_bytes().to_vec(),
        );
        event.set_value(sonic_rs::from_str(json).unwrap());
        event
    }

    fn json(event: &Event) -> String {
        sonic_rs::to_string(event.value().unwrap()).unwrap()
    }

    #[test]
    fn sets_and_deletes_fields() {
        let stage = remap(
            r#"
            .device = if contains(string(.context.user_agent) ?? "", "Mobile") { "mobile" } else { "desktop" }
            del(.context.ip)
            .data.total_usd = (to_float(.data.total) ?? 0.0) * 2
            .partner = get!(["meta", "google"], [mod(int(.shop_id) ?? 0, 2)])
            "#,
        );
        let mut ev = event(
            r#"{"shop_id":3,"context":{"user_agent":"x Mobile y","ip":"1.2.3.4"},"data":{"total":1.5}}"#,
        );
        assert_eq!(stage.process(&mut ev), Ok(Outcome::Keep));
        assert_eq!(
            json(&ev),
            r#"{"context":{"user_agent":"x Mobile y"},"data":{"total":1.5,"total_usd":3.0},"device":"mobile","partner":"google","shop_id":3}"#
        );
    }

    #[test]
    fn replaces_the_root_and_ignores_the_last_expressions_value() {
        let mut ev = event(r#"{"a":1}"#);
        assert_eq!(remap("42").process(&mut ev), Ok(Outcome::Keep));
        assert_eq!(json(&ev), r#"{"a":1}"#);
        assert_eq!(
            remap(r#". = {"b": [1, 2.5, null, true]}"#).process(&mut ev),
            Ok(Outcome::Keep)
        );
        assert_eq!(json(&ev), r#"{"b":[1,2.5,null,true]}"#);
    }

    #[test]
    fn abort_drops_under_the_configured_reason() {
        let mut config = RemapConfig::new(r#"if .consent != true { abort }"#);
        let stage = Remap::new(config.clone()).unwrap();
        assert_eq!(
            stage.process(&mut event(r#"{"consent":false}"#)),
            Ok(Outcome::Drop("remap".into()))
        );
        assert_eq!(
            stage.process(&mut event(r#"{"consent":true}"#)),
            Ok(Outcome::Keep)
        );
        config.drop_reason = "consent".into();
        let stage = Remap::new(config).unwrap();
        assert_eq!(
            stage.process(&mut event("{}")),
            Ok(Outcome::Drop("consent".into()))
        );
    }

    #[test]
    fn a_runtime_error_fails_the_event_and_keeps_its_value() {
        let stage = remap(
            r#"
            .n = to_int!(.s)
            assert!(.n > 0, message: "n must be positive")
            "#,
        );
        let mut ev = event(r#"{"s":"x"}"#);
        let err = stage.process(&mut ev).unwrap_err();
        assert_eq!(err.reason, "remap");
        assert!(!err.retriable);
        assert!(
            err.message.contains("to_int") || err.message.contains("integer"),
            "{}",
            err.message
        );
        assert_eq!(json(&ev), r#"{"s":"x"}"#);

        let err = stage.process(&mut event(r#"{"s":"-3"}"#)).unwrap_err();
        assert!(
            err.message.contains("n must be positive"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_compile_error_shows_where() {
        let err = Remap::new(RemapConfig::new(".a = 1\n.b = (2 +\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("remap: the program does not compile"),
            "{err}"
        );
        assert!(err.contains(":3:1") || err.contains(":2:"), "{err}");

        let err = Remap::new(RemapConfig::new(".a = no_such_function(1)"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_function"), "{err}");
        assert!(err.contains(":1:6"), "{err}");
    }

    #[test]
    fn checks_its_settings() {
        let mut config = RemapConfig::new(".");
        config.timezone = "Mars/Olympus".into();
        assert!(Remap::new(config)
            .unwrap_err()
            .to_string()
            .contains("timezone"));
        let mut config = RemapConfig::new(".");
        config.drop_reason = String::new();
        assert!(Remap::new(config)
            .unwrap_err()
            .to_string()
            .contains("drop_reason"));
        let unknown = toml::from_str::<RemapConfig>("program = '.'\nsource = 'x'");
        assert!(unknown.is_err());
    }

    #[test]
    fn needs_a_parsed_value() {
        let mut ev = Event::new(
            Origin {
                partition: 0,
                offset: 0,
            },
            &b"{}"[..],
        );
        assert_eq!(remap(".").process(&mut ev).unwrap_err().reason, "unparsed");
    }

    #[test]
    fn refuses_values_nested_past_the_limit() {
        // The pipeline runs stages on threads with a 16 MiB stack; a debug
        // build's recursion per nesting level needs that room, which the
        // test harness's 2 MiB threads lack.
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(|| {
                let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
                let err = remap(".").process(&mut event(&deep)).unwrap_err();
                assert_eq!(err.reason, "remap");
                assert!(err.message.contains("deeper than 128"), "{}", err.message);

                let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
                let mut ev = event(&ok);
                assert_eq!(remap(".").process(&mut ev), Ok(Outcome::Keep));
                assert_eq!(json(&ev), ok);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn converts_numbers_strings_and_timestamps() {
        let stage = remap(
            r#"
            .ts = t'2026-11-27T18:07:14.645Z'
            .big_plus = .big
            .uni = upcase(string(.uni) ?? "")
            "#,
        );
        let mut ev = event(r#"{"big":18446744073709551615,"neg":-7,"f":0.1,"uni":"é\"\n"}"#);
        assert_eq!(stage.process(&mut ev), Ok(Outcome::Keep));
        let out = event_value(&ev);
        assert_eq!(out["ts"].as_str(), Some("2026-11-27T18:07:14.645Z"));
        assert_eq!(out["neg"].as_i64(), Some(-7));
        assert_eq!(out["f"].as_f64(), Some(0.1));
        assert_eq!(out["big_plus"].as_f64(), Some(18446744073709551615.0));
        assert_eq!(out["uni"].as_str(), Some("É\"\n"));
    }

    fn event_value(event: &Event) -> &Value {
        event.value().unwrap()
    }

    #[test]
    fn the_stage_is_shareable() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Remap>();
    }
}
