//! Dotted field paths, split once, and the get / get_mut / insert / remove
//! that every transform uses on an event's value.
//!
//! A repeated key (`{"a":1,"a":2}`) is the one place these differ from Go's
//! `encoding/json`, which keeps the last: sonic keeps every member of a
//! parsed object and a lookup finds the first, until an edit makes the object
//! mutable, which keeps the last. Finding the last in a parsed object would
//! mean scanning every member on every lookup, about 2.5 times the cost of
//! sonic's own `get`, for input that no producer of these events writes.

use std::fmt;

use serde::{Deserialize, Deserializer};
use sonic_rs::{JsonContainerTrait, JsonValueMutTrait, JsonValueTrait, Object, Value};

use super::{kind_of, ConfigError};

/// A field named by a dot-separated path of object keys, such as
/// `context.user_agent`.
///
/// It is split when built, so looking it up allocates nothing. A key with a
/// dot in it cannot be named, and arrays are not indexed.
///
/// ```
/// use crew_pipeline::transforms::FieldPath;
///
/// let path = FieldPath::parse("data.checkout.total").unwrap();
/// assert_eq!(path.as_str(), "data.checkout.total");
/// let value: sonic_rs::Value =
///     sonic_rs::from_str(r#"{"data":{"checkout":{"total":9.5}}}"#).unwrap();
/// assert_eq!(path.get(&value).and_then(|v| sonic_rs::JsonValueTrait::as_f64(v)), Some(9.5));
/// assert!(FieldPath::parse("data..total").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct FieldPath {
    dotted: Box<str>,
    segments: Box<[Box<str>]>,
}

impl FieldPath {
    /// Splits `dotted` at its dots; every key must be non-empty.
    pub fn parse(dotted: &str) -> Result<FieldPath, ConfigError> {
        if dotted.is_empty() {
            return Err(ConfigError::new("a field path is empty"));
        }
        let segments: Box<[Box<str>]> = dotted.split('.').map(Box::from).collect();
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(ConfigError::new(format!(
                "field path `{dotted}` has an empty key (a leading, trailing or doubled dot)"
            )));
        }
        Ok(FieldPath {
            dotted: dotted.into(),
            segments,
        })
    }

    /// The path as written, for messages.
    pub fn as_str(&self) -> &str {
        &self.dotted
    }

    /// The keys, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|segment| &**segment)
    }

    /// The path up to the `depth`-th key (1-based), for messages.
    pub(crate) fn prefix(&self, depth: usize) -> &str {
        let keys = self.segments.get(..depth).unwrap_or(&self.segments);
        let len = keys
            .iter()
            .map(|s| s.len() + 1)
            .sum::<usize>()
            .saturating_sub(1);
        self.dotted.get(..len).unwrap_or(&self.dotted)
    }

    fn split_last(&self) -> (&[Box<str>], &str) {
        // `parse` guarantees at least one segment.
        match self.segments.split_last() {
            Some((last, parents)) => (parents, last),
            None => (&[], ""),
        }
    }

    /// The value at this path, if every key on the way is present in an
    /// object.
    #[inline]
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut current = root;
        for segment in self.segments.iter() {
            current = lookup(current.as_object()?, segment)?;
        }
        Some(current)
    }

    /// The object that holds (or would hold) the last key, if it exists.
    #[inline]
    pub fn parent<'v>(&self, root: &'v Value) -> Option<&'v Object> {
        let (parents, _) = self.split_last();
        let mut current = root;
        for segment in parents {
            current = lookup(current.as_object()?, segment)?;
        }
        current.as_object()
    }

    /// The value at this path, mutable.
    ///
    /// Objects on the way become sonic's mutable objects, which costs a copy
    /// of their members; call it only to change something.
    #[inline]
    pub fn get_mut<'v>(&self, root: &'v mut Value) -> Option<&'v mut Value> {
        let mut current = root;
        for segment in self.segments.iter() {
            current = current.as_object_mut()?.get_mut(&&**segment)?;
        }
        Some(current)
    }

    /// Sets the value at this path, creating missing objects on the way.
    ///
    /// Fails, leaving the value as it was, when something on the way is not an
    /// object.
    pub fn insert(&self, root: &mut Value, value: Value) -> Result<(), InsertError> {
        let (parents, last) = self.split_last();
        let mut current = root;
        for (depth, segment) in parents.iter().enumerate() {
            if !current.is_object() {
                return Err(self.insert_error(depth, current));
            }
            let Some(object) = current.as_object_mut() else {
                return Err(self.insert_error(depth, &Value::new()));
            };
            if !object.contains_key(&&**segment) {
                object.insert(&**segment, Object::new());
            }
            current = match object.get_mut(&&**segment) {
                Some(next) => next,
                // Unreachable: the key was just made present.
                None => return Err(self.insert_error(depth + 1, &Value::new())),
            };
        }
        if !current.is_object() {
            return Err(self.insert_error(parents.len(), current));
        }
        if let Some(object) = current.as_object_mut() {
            object.insert(last, value);
        }
        Ok(())
    }

    #[cold]
    fn insert_error(&self, depth: usize, found: &Value) -> InsertError {
        InsertError {
            field: self.dotted.to_string(),
            blocked_at: if depth == 0 {
                "the event".to_owned()
            } else {
                format!("`{}`", self.prefix(depth))
            },
            found: kind_of(found),
        }
    }

    /// Removes the value at this path and returns it; nothing happens when it
    /// is absent.
    pub fn remove(&self, root: &mut Value) -> Option<Value> {
        // Looking first keeps a miss from making the objects on the way
        // mutable, which would copy them for nothing.
        self.get(root)?;
        let (parents, last) = self.split_last();
        let mut current = root;
        for segment in parents {
            current = current.as_object_mut()?.get_mut(&&**segment)?;
        }
        // A mutable object holds each key once, so one removal takes every
        // copy a repeated key had.
        current.as_object_mut()?.remove(&last)
    }

    /// The key this path ends with.
    pub fn last_key(&self) -> &str {
        self.split_last().1
    }

    /// Whether two paths name fields of the same object, so one walk to
    /// that object serves both.
    pub fn same_parent(&self, other: &FieldPath) -> bool {
        self.split_last().0 == other.split_last().0
    }

    /// The object that holds the last key, mutable, if it exists (nothing is
    /// created).
    #[inline]
    pub fn parent_mut<'v>(&self, root: &'v mut Value) -> Option<&'v mut Object> {
        let (parents, _) = self.split_last();
        let mut current = root;
        for segment in parents {
            current = current.as_object_mut()?.get_mut(&&**segment)?;
        }
        current.as_object_mut()
    }
}

/// The member named `key` (see the module's note on repeated keys).
#[inline]
fn lookup<'v>(object: &'v Object, key: &str) -> Option<&'v Value> {
    object.get(&key)
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({:?})", self.dotted)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dotted)
    }
}

impl std::str::FromStr for FieldPath {
    type Err = ConfigError;

    fn from_str(dotted: &str) -> Result<Self, Self::Err> {
        FieldPath::parse(dotted)
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let dotted = String::deserialize(deserializer)?;
        FieldPath::parse(&dotted).map_err(serde::de::Error::custom)
    }
}

/// Why [`FieldPath::insert`] could not set a field: a value on the way is
/// not an object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: cannot set it, {blocked_at} is {found}, not an object")]
pub struct InsertError {
    field: String,
    blocked_at: String,
    found: &'static str,
}

#[cfg(test)]
mod tests {
    use sonic_rs::JsonValueTrait;

    use super::*;

    fn value(json: &str) -> Value {
        sonic_rs::from_str(json).unwrap()
    }

    fn path(dotted: &str) -> FieldPath {
        FieldPath::parse(dotted).unwrap()
    }

    #[test]
    fn parse_refuses_empty_keys() {
        assert_eq!(
            FieldPath::parse("").unwrap_err().to_string(),
            "a field path is empty"
        );
        for bad in [".a", "a.", "a..b"] {
            let err = FieldPath::parse(bad).unwrap_err().to_string();
            assert!(err.contains("has an empty key"), "{bad}: {err}");
        }
        assert_eq!(
            path("a.b.c").segments().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(path("a.b.c").prefix(2), "a.b");
        assert_eq!(path("a.b.c").prefix(0), "");
        assert_eq!(path("a.b.c").prefix(9), "a.b.c");
    }

    #[test]
    fn deserializes_from_a_string() {
        #[derive(Deserialize)]
        struct Holder {
            field: FieldPath,
        }
        let holder: Holder = toml::from_str(r#"field = "a.b""#).unwrap();
        assert_eq!(holder.field.as_str(), "a.b");
        let err = toml::from_str::<Holder>(r#"field = "a..b""#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("empty key"), "{err}");
    }

    #[test]
    fn get_walks_objects_only() {
        let v = value(r#"{"a":{"b":[1],"c":"x"},"n":null}"#);
        assert_eq!(path("a.c").get(&v).and_then(|v| v.as_str()), Some("x"));
        assert!(path("a.b").get(&v).unwrap().is_array());
        assert!(path("a.b.0").get(&v).is_none());
        assert!(path("a.zz").get(&v).is_none());
        assert!(path("n").get(&v).unwrap().is_null());
        assert!(path("n.x").get(&v).is_none());
    }

    #[test]
    fn repeated_keys_read_first_until_an_edit_keeps_the_last() {
        let mut v = value(r#"{"a":1,"b":0,"a":2}"#);
        assert_eq!(path("a").get(&v).and_then(|v| v.as_i64()), Some(1));
        path("b").insert(&mut v, Value::from(5)).unwrap();
        assert_eq!(path("a").get(&v).and_then(|v| v.as_i64()), Some(2));
        assert_eq!(path("a").get_mut(&mut v).and_then(|v| v.as_i64()), Some(2));
    }

    #[test]
    fn parent_helpers() {
        let mut v = value(r#"{"c":{"ip":"x"}}"#);
        assert_eq!(path("c.ip").last_key(), "ip");
        assert!(path("c.ip").same_parent(&path("c.ip_hash")));
        assert!(!path("c.ip").same_parent(&path("ip")));
        let parent = path("c.ip").parent_mut(&mut v).unwrap();
        parent.insert(&"n", Value::from(1));
        assert_eq!(path("c.n").get(&v).and_then(|v| v.as_i64()), Some(1));
        assert!(path("zz.ip").parent_mut(&mut v).is_none());
        assert!(path("top").parent_mut(&mut v).is_some());
    }

    #[test]
    fn parent_is_the_holding_object() {
        let v = value(r#"{"ctx":{"ua":"x"},"s":"y"}"#);
        assert!(path("ctx.missing").parent(&v).is_some());
        assert!(path("top").parent(&v).is_some());
        assert!(path("nope.ua").parent(&v).is_none());
        assert!(path("s.x").parent(&v).is_none());
    }

    #[test]
    fn insert_creates_objects_and_replaces() {
        let mut v = value(r#"{"a":{"x":1}}"#);
        path("a.x").insert(&mut v, Value::from(2)).unwrap();
        path("a.y").insert(&mut v, Value::from("new")).unwrap();
        path("b.c.d").insert(&mut v, Value::from(true)).unwrap();
        assert_eq!(path("a").get(&v).unwrap().as_object().unwrap().len(), 2);
        assert_eq!(path("a.x").get(&v).and_then(|v| v.as_i64()), Some(2));
        assert_eq!(path("a.y").get(&v).and_then(|v| v.as_str()), Some("new"));
        assert_eq!(path("b.c.d").get(&v).and_then(|v| v.as_bool()), Some(true));
    }

    #[test]
    fn insert_through_a_non_object_fails_and_names_it() {
        let mut v = value(r#"{"a":{"s":"text"}}"#);
        let err = path("a.s.x").insert(&mut v, Value::from(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `a.s.x`: cannot set it, `a.s` is a string, not an object"
        );
        let mut arr = value("[1]");
        let err = path("x").insert(&mut arr, Value::from(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `x`: cannot set it, the event is an array, not an object"
        );
        assert_eq!(path("a.s").get(&v).and_then(|v| v.as_str()), Some("text"));
    }

    #[test]
    fn remove_takes_every_copy_and_ignores_absent_fields() {
        let mut v = value(r#"{"a":{"k":1,"k":2,"j":3}}"#);
        assert_eq!(path("a.k").remove(&mut v).and_then(|v| v.as_i64()), Some(2));
        assert!(path("a.k").get(&v).is_none());
        assert!(path("a.k").remove(&mut v).is_none());
        assert!(path("zz.k").remove(&mut v).is_none());
        assert_eq!(path("a.j").get(&v).and_then(|v| v.as_i64()), Some(3));
    }

    #[test]
    fn get_mut_changes_in_place() {
        let mut v = value(r#"{"a":{"n":1}}"#);
        *path("a.n").get_mut(&mut v).unwrap() = Value::from(7);
        assert_eq!(sonic_rs::to_string(&v).unwrap(), r#"{"a":{"n":7}}"#);
        assert!(path("a.zz").get_mut(&mut v).is_none());
    }
}
