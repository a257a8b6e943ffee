//! [`Filter`]: drops events that match a rule, counted under its reason.

use std::borrow::Cow;

use serde::Deserialize;
use sonic_rs::{JsonValueTrait, Value};

use super::{intern, unparsed, ConfigError, FieldPath, Literal};
use crate::event::Event;
use crate::stage::{Outcome, Stage, StageError};

/// [`Filter`]'s settings: the drop rules, tried in order.
///
/// ```
/// use crew_pipeline::transforms::FilterConfig;
///
/// let config: FilterConfig = toml::from_str(r#"
///     rules = [
///         { reason = "consent", when = { op = "not_true", field = "consent.marketing" } },
///         { reason = "region_opt_out", when = { op = "in", field = "region", values = ["DE", "FR"] } },
///     ]
/// "#).unwrap();
/// assert_eq!(config.rules.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The rules; the first that matches drops the event.
    pub rules: Vec<DropRule>,
}

/// Drop the event, counted under `reason`, when the condition holds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropRule {
    /// The label the drop is counted under, such as `consent`.
    pub reason: String,
    /// When to drop.
    pub when: Condition,
}

/// A test on one field, written `{ op = "...", field = "a.b", ... }`.
///
/// A missing field is never equal to, in, true, or containing anything; the
/// negated tests (`not_equals`, `not_in`, `not_true`) are exactly the
/// opposites, so they hold for a missing field.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The field equals `value` (numbers by value).
    Equals {
        /// The field tested.
        field: FieldPath,
        /// The value compared with.
        value: Literal,
    },
    /// The field is absent or differs from `value`.
    NotEquals {
        /// The field tested.
        field: FieldPath,
        /// The value compared with.
        value: Literal,
    },
    /// The field equals one of `values`.
    In {
        /// The field tested.
        field: FieldPath,
        /// The values compared with.
        values: Vec<Literal>,
    },
    /// The field is absent or equals none of `values`.
    NotIn {
        /// The field tested.
        field: FieldPath,
        /// The values compared with.
        values: Vec<Literal>,
    },
    /// The field is present (even if `null`).
    Exists {
        /// The field tested.
        field: FieldPath,
    },
    /// The field is absent.
    Missing {
        /// The field tested.
        field: FieldPath,
    },
    /// The field is the boolean `true`.
    IsTrue {
        /// The field tested.
        field: FieldPath,
    },
    /// The field is anything but the boolean `true`: `false`, absent, or of
    /// another type (Go's `m, _ := v.(bool); !m`).
    NotTrue {
        /// The field tested.
        field: FieldPath,
    },
    /// The field is a string that contains one of `values`.
    ContainsAny {
        /// The field tested.
        field: FieldPath,
        /// The substrings looked for.
        values: Vec<String>,
    },
}

impl Condition {
    /// The field the condition tests.
    pub fn field(&self) -> &FieldPath {
        match self {
            Condition::Equals { field, .. }
            | Condition::NotEquals { field, .. }
            | Condition::In { field, .. }
            | Condition::NotIn { field, .. }
            | Condition::Exists { field }
            | Condition::Missing { field }
            | Condition::IsTrue { field }
            | Condition::NotTrue { field }
            | Condition::ContainsAny { field, .. } => field,
        }
    }

    /// Whether the condition holds for this event value.
    pub fn holds(&self, root: &Value) -> bool {
        let found = self.field().get(root);
        match self {
            Condition::Equals { value, .. } => found.is_some_and(|v| value.matches(v)),
            Condition::NotEquals { value, .. } => !found.is_some_and(|v| value.matches(v)),
            Condition::In { values, .. } => {
                found.is_some_and(|v| values.iter().any(|value| value.matches(v)))
            }
            Condition::NotIn { values, .. } => {
                !found.is_some_and(|v| values.iter().any(|value| value.matches(v)))
            }
            Condition::Exists { .. } => found.is_some(),
            Condition::Missing { .. } => found.is_none(),
            Condition::IsTrue { .. } => found.is_some_and(|v| v.is_true()),
            Condition::NotTrue { .. } => !found.is_some_and(|v| v.is_true()),
            Condition::ContainsAny { values, .. } => found
                .and_then(|v| v.as_str())
                .is_some_and(|text| values.iter().any(|needle| text.contains(needle.as_str()))),
        }
    }
}

/// Drops an event when one of its rules matches: `Outcome::Drop(reason)`,
/// which counts the event as done under that reason. Otherwise keeps it.
///
/// It never fails, except on an event no stage has parsed.
///
/// ```
/// use crew_pipeline::transforms::{Condition, DropRule, FieldPath, Filter, FilterConfig, ParseJson};
/// use crew_pipeline::{Event, Origin, Outcome, Stage};
///
/// let filter = Filter::new(FilterConfig {
///     rules: vec![DropRule {
///         reason: "consent".into(),
///         when: Condition::NotTrue { field: FieldPath::parse("consent.marketing").unwrap() },
///     }],
/// })
/// .unwrap();
/// let mut event = Event::new(Origin { partition: 0, offset: 0 }, &br#"{"consent":{}}"#[..]);
/// ParseJson::default().process(&mut event).unwrap();
/// assert_eq!(filter.process(&mut event), Ok(Outcome::Drop("consent".into())));
/// ```
#[derive(Clone, Debug)]
pub struct Filter {
    rules: Box<[(Condition, &'static str)]>,
}

impl Filter {
    /// Builds the filter; every reason must be non-empty.
    pub fn new(config: FilterConfig) -> Result<Filter, ConfigError> {
        let mut rules = Vec::with_capacity(config.rules.len());
        for rule in config.rules {
            if rule.reason.is_empty() {
                return Err(ConfigError::new(format!(
                    "filter: the rule on `{}` has an empty reason",
                    rule.when.field()
                )));
            }
            rules.push((rule.when, intern(&rule.reason)));
        }
        Ok(Filter {
            rules: rules.into_boxed_slice(),
        })
    }

    /// The reason of the first rule that matches, if any.
    pub fn first_match(&self, root: &Value) -> Option<&'static str> {
        self.rules
            .iter()
            .find(|(condition, _)| condition.holds(root))
            .map(|(_, reason)| *reason)
    }
}

impl Stage for Filter {
    fn process(&self, event: &mut Event) -> Result<Outcome, StageError> {
        let root = event.value().ok_or_else(|| unparsed("filter"))?;
        Ok(match self.first_match(root) {
            Some(reason) => Outcome::Drop(Cow::Borrowed(reason)),
            None => Outcome::Keep,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str) -> Value {
        sonic_rs::from_str(json).unwrap()
    }

    fn condition(toml_table: &str) -> Condition {
        #[derive(Deserialize)]
        struct Holder {
            when: Condition,
        }
        toml::from_str::<Holder>(&format!("when = {toml_table}"))
            .unwrap()
            .when
    }

    fn holds(toml_table: &str, json: &str) -> bool {
        condition(toml_table).holds(&value(json))
    }

    #[test]
    fn equals_and_not_equals() {
        let eq = r#"{ op = "equals", field = "a", value = "x" }"#;
        assert!(holds(eq, r#"{"a":"x"}"#));
        assert!(!holds(eq, r#"{"a":"y"}"#));
        assert!(!holds(eq, r#"{}"#));
        let ne = r#"{ op = "not_equals", field = "a", value = 2 }"#;
        assert!(!holds(ne, r#"{"a":2.0}"#));
        assert!(holds(ne, r#"{"a":3}"#));
        assert!(holds(ne, r#"{}"#));
    }

    #[test]
    fn in_and_not_in() {
        let r#in = r#"{ op = "in", field = "region", values = ["DE", "FR"] }"#;
        assert!(holds(r#in, r#"{"region":"FR"}"#));
        assert!(!holds(r#in, r#"{"region":"US"}"#));
        assert!(!holds(r#in, r#"{"region":["DE"]}"#));
        assert!(!holds(r#in, r#"{}"#));
        let not_in = r#"{ op = "not_in", field = "n", values = [1, 2] }"#;
        assert!(!holds(not_in, r#"{"n":1}"#));
        assert!(holds(not_in, r#"{"n":3}"#));
        assert!(holds(not_in, r#"{}"#));
    }

    #[test]
    fn exists_and_missing() {
        let exists = r#"{ op = "exists", field = "a.b" }"#;
        assert!(holds(exists, r#"{"a":{"b":null}}"#));
        assert!(!holds(exists, r#"{"a":{}}"#));
        let missing = r#"{ op = "missing", field = "a.b" }"#;
        assert!(holds(missing, r#"{"a":1}"#));
        assert!(!holds(missing, r#"{"a":{"b":0}}"#));
    }

    #[test]
    fn is_true_and_not_true() {
        let is_true = r#"{ op = "is_true", field = "c.m" }"#;
        assert!(holds(is_true, r#"{"c":{"m":true}}"#));
        assert!(!holds(is_true, r#"{"c":{"m":"true"}}"#));
        let not_true = r#"{ op = "not_true", field = "c.m" }"#;
        for json in [
            r#"{"c":{"m":false}}"#,
            r#"{"c":{}}"#,
            r#"{"c":{"m":1}}"#,
            r#"{"c":{"m":null}}"#,
        ] {
            assert!(holds(not_true, json), "{json}");
        }
        assert!(!holds(not_true, r#"{"c":{"m":true}}"#));
    }

    #[test]
    fn contains_any() {
        let c = r#"{ op = "contains_any", field = "ua", values = ["Mobile", "Android"] }"#;
        assert!(holds(c, r#"{"ua":"Mozilla (Linux; Android 14)"}"#));
        assert!(!holds(c, r#"{"ua":"Mozilla (X11)"}"#));
        assert!(!holds(c, r#"{"ua":5}"#));
        assert!(!holds(c, r#"{}"#));
    }

    #[test]
    fn first_matching_rule_gives_the_reason() {
        let config: FilterConfig = toml::from_str(
            r#"rules = [
                { reason = "consent", when = { op = "not_true", field = "consent.marketing" } },
                { reason = "region_opt_out", when = { op = "in", field = "region", values = ["DE", "FR"] } },
            ]"#,
        )
        .unwrap();
        let filter = Filter::new(config).unwrap();
        let run = |json: &str| {
            let mut event = Event::new(
                crate::Origin {
                    partition: 0,
                    offset: 0,
                },
                json.as_bytes().to_vec(),
            );
            crate::transforms::ParseJson::default()
                .process(&mut event)
                .unwrap();
            filter.process(&mut event)
        };
        assert_eq!(
            run(r#"{"consent":{"marketing":false},"region":"DE"}"#),
            Ok(Outcome::Drop("consent".into()))
        );
        assert_eq!(
            run(r#"{"consent":{"marketing":true},"region":"DE"}"#),
            Ok(Outcome::Drop("region_opt_out".into()))
        );
        assert_eq!(
            run(r#"{"consent":{"marketing":true},"region":"US"}"#),
            Ok(Outcome::Keep)
        );
        let mut unparsed = Event::new(
            crate::Origin {
                partition: 0,
                offset: 0,
            },
            &b"{}"[..],
        );
        assert_eq!(
            filter.process(&mut unparsed).unwrap_err().reason,
            "unparsed"
        );
    }

    #[test]
    fn config_errors() {
        for (bad, expected) in [
            (
                r#"rules = [{ reason = "r", when = { op = "equal", field = "a", value = 1 } }]"#,
                "unknown variant",
            ),
            (
                r#"rules = [{ reason = "r", when = { op = "exists", field = "a", value = 1 } }]"#,
                "unknown field",
            ),
            (
                r#"rules = [{ reason = "r", when = { op = "in", field = "a" } }]"#,
                "missing field `values`",
            ),
            (
                r#"rules = [{ reason = "r", when = { op = "exists", field = "a." } }]"#,
                "empty key",
            ),
            (
                r#"rules = [{ reason = "r", why = "x", when = { op = "exists", field = "a" } }]"#,
                "unknown field",
            ),
        ] {
            let err = toml::from_str::<FilterConfig>(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
        let empty_reason: FilterConfig =
            toml::from_str(r#"rules = [{ reason = "", when = { op = "exists", field = "a" } }]"#)
                .unwrap();
        assert_eq!(
            Filter::new(empty_reason).unwrap_err().to_string(),
            "filter: the rule on `a` has an empty reason"
        );
    }
}
