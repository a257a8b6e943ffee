//! [`Literal`]: a constant written in a config, compared with or written into
//! an event's JSON.

use std::collections::BTreeMap;

use serde::Deserialize;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Object, Value};

use super::{intern, ConfigError};

/// A JSON constant from configuration: what [`Condition::Equals`] compares
/// with and what [`EditOp::Set`] writes.
///
/// In TOML it is written as itself: `value = "US"`, `value = 3`,
/// `value = [1, 2]`, `value = { a = true }`. (TOML has no null; a JSON or
/// YAML config can write one.)
///
/// Numbers compare by value, as Go's `float64` does: `1`, `1.0` and `1e0`
/// are equal.
///
/// ```
/// use crew_pipeline::transforms::Literal;
///
/// let one = Literal::Integer(1);
/// let event: sonic_rs::Value = sonic_rs::from_str("1.0").unwrap();
/// assert!(one.matches(&event));
/// assert!(!Literal::String("1".into()).matches(&event));
/// ```
///
/// [`Condition::Equals`]: super::Condition::Equals
/// [`EditOp::Set`]: super::EditOp::Set
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    /// JSON `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Integer(i64),
    /// A number with a fraction or an exponent.
    Float(f64),
    /// A string.
    String(String),
    /// An array of literals.
    Array(Vec<Literal>),
    /// An object of literals.
    Table(BTreeMap<String, Literal>),
}

impl Literal {
    /// Whether `value` is this constant.
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            Literal::Null => value.is_null(),
            Literal::Bool(expected) => value.as_bool() == Some(*expected),
            Literal::String(expected) => value.as_str() == Some(expected.as_str()),
            Literal::Integer(expected) => {
                if value.is_f64() {
                    value.as_f64() == Some(*expected as f64)
                } else {
                    value.as_i64() == Some(*expected)
                }
            }
            Literal::Float(expected) => value.as_f64() == Some(*expected),
            Literal::Array(items) => value.as_array().is_some_and(|array| {
                array.len() == items.len()
                    && items
                        .iter()
                        .zip(array.iter())
                        .all(|(item, v)| item.matches(v))
            }),
            Literal::Table(members) => value.as_object().is_some_and(|object| {
                object.len() == members.len()
                    && members
                        .iter()
                        .all(|(key, member)| object.get(key).is_some_and(|v| member.matches(v)))
            }),
        }
    }

    /// The constant as a sonic value.
    ///
    /// Strings are interned, so cloning the result for each event copies
    /// no text. Fails on a float that is not finite (TOML allows `inf` and
    /// `nan`; JSON has neither).
    pub fn to_value(&self) -> Result<Value, ConfigError> {
        Ok(match self {
            Literal::Null => Value::new(),
            Literal::Bool(b) => Value::from(*b),
            Literal::Integer(i) => Value::from(*i),
            Literal::Float(f) => Value::try_from(*f)
                .map_err(|_| ConfigError::new(format!("{f} is not a JSON number (not finite)")))?,
            Literal::String(s) => Value::from_static_str(intern(s)),
            Literal::Array(items) => {
                let mut array = Value::new_array_with(items.len());
                if let Some(array) = sonic_rs::JsonValueMutTrait::as_array_mut(&mut array) {
                    for item in items {
                        array.push(item.to_value()?);
                    }
                }
                array
            }
            Literal::Table(members) => {
                let mut object = Object::with_capacity(members.len());
                for (key, member) in members {
                    object.insert(key, member.to_value()?);
                }
                object.into_value()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str) -> Value {
        sonic_rs::from_str(json).unwrap()
    }

    #[derive(Deserialize)]
    struct Holder {
        value: Literal,
    }

    fn literal(toml_value: &str) -> Literal {
        toml::from_str::<Holder>(&format!("value = {toml_value}"))
            .unwrap()
            .value
    }

    #[test]
    fn deserializes_each_kind_from_toml() {
        assert_eq!(literal("true"), Literal::Bool(true));
        assert_eq!(literal("3"), Literal::Integer(3));
        assert_eq!(literal("2.5"), Literal::Float(2.5));
        assert_eq!(literal(r#""x""#), Literal::String("x".into()));
        assert_eq!(
            literal("[1, \"a\"]"),
            Literal::Array(vec![Literal::Integer(1), Literal::String("a".into())])
        );
        assert_eq!(
            literal("{ a = false }"),
            Literal::Table(BTreeMap::from([("a".to_owned(), Literal::Bool(false))]))
        );
    }

    #[test]
    fn matches_by_json_value() {
        assert!(Literal::Null.matches(&value("null")));
        assert!(!Literal::Null.matches(&value("0")));
        assert!(Literal::Bool(true).matches(&value("true")));
        assert!(!Literal::Bool(true).matches(&value("\"true\"")));
        assert!(Literal::Integer(5).matches(&value("5")));
        assert!(Literal::Integer(5).matches(&value("5.0")));
        assert!(Literal::Integer(-5).matches(&value("-5")));
        assert!(!Literal::Integer(5).matches(&value("5.5")));
        assert!(!Literal::Integer(-1).matches(&value("18446744073709551615")));
        assert!(Literal::Float(5.0).matches(&value("5")));
        assert!(Literal::String("DE".into()).matches(&value("\"DE\"")));
        assert!(literal("[1, \"a\"]").matches(&value(r#"[1.0,"a"]"#)));
        assert!(!literal("[1]").matches(&value("[1,2]")));
        assert!(literal("{ a = 1 }").matches(&value(r#"{"a":1}"#)));
        assert!(!literal("{ a = 1 }").matches(&value(r#"{"a":1,"b":2}"#)));
    }

    #[test]
    fn converts_to_a_sonic_value() {
        let v = literal(r#"{ a = [1, 2.5, "s", true] }"#)
            .to_value()
            .unwrap();
        assert_eq!(
            sonic_rs::to_string(&v).unwrap(),
            r#"{"a":[1,2.5,"s",true]}"#
        );
        assert!(Literal::Null.to_value().unwrap().is_null());
        let err = literal("inf").to_value().unwrap_err().to_string();
        assert_eq!(err, "inf is not a JSON number (not finite)");
    }
}
