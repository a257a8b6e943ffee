//! [`Edit`]: field operations, run in order on each event.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sonic_rs::{JsonValueTrait, Value};
use time::format_description::BorrowedFormatItem;

use super::{intern, unparsed, ConfigError, FieldPath, InsertError, Literal};
use crate::event::Event;
use crate::stage::{Outcome, Stage, StageError};

/// [`Edit`]'s settings: the operations, run in order.
///
/// ```
/// use crew_pipeline::transforms::EditConfig;
///
/// let config: EditConfig = toml::from_str(r#"
///     ops = [
///         { op = "set", target = "source", value = "web" },
///         { op = "rename", from = "ts", to = "timestamp" },
///         { op = "delete", field = "debug" },
///         { op = "classify", source = "context.user_agent", target = "device",
///           contains_any = ["Mobile", "Android"], then = "mobile", otherwise = "desktop" },
///         { op = "hash", source = "context.ip", target = "context.ip_hash",
///           salt_prefix = "salt:", bytes = 8, remove_source = true },
///         { op = "multiply_lookup", source = "data.checkout.total", by = "data.checkout.currency",
///           target = "data.checkout.total_usd", table = { USD = 1.0, EUR = 1.09 } },
///         { op = "pick", source = "shop_id", target = "partner", values = ["meta", "google"] },
///         { op = "now", target = "processed_at" },
///     ]
/// "#).unwrap();
/// assert_eq!(config.ops.len(), 8);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditConfig {
    /// The operations, in the order they run.
    pub ops: Vec<EditOp>,
}

/// One field operation, written `{ op = "...", ... }`.
///
/// An operation whose input is absent or of the wrong type does nothing
/// (as the Go reference's `v, _ := x.(string)` does), except where said.
/// Writing a field creates the objects on its path; it fails the event
/// (reason `edit`) only when something on the path is not an object.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum EditOp {
    /// Writes a constant.
    Set {
        /// The field written.
        target: FieldPath,
        /// The constant.
        value: Literal,
    },
    /// Removes a field, if present.
    Delete {
        /// The field removed.
        field: FieldPath,
    },
    /// Moves a field, if present.
    Rename {
        /// The field moved.
        from: FieldPath,
        /// Where it goes (replacing what is there).
        to: FieldPath,
    },
    /// Writes `then` if `source` is a string containing any of
    /// `contains_any`, else `otherwise` (also when `source` is absent or not
    /// a string). Does nothing when the object that would hold `source`
    /// is absent, as Go sets `device` only when `context` is an object.
    Classify {
        /// The string looked into.
        source: FieldPath,
        /// The field written.
        target: FieldPath,
        /// The substrings looked for.
        contains_any: Vec<String>,
        /// Written when one is found.
        then: String,
        /// Written when none is.
        otherwise: String,
    },
    /// Writes the SHA-256 of `salt_prefix` + the `source` string, its first
    /// `bytes` bytes as lowercase hex, and removes `source` if
    /// `remove_source`. Does nothing when `source` is not a string.
    Hash {
        /// The string hashed.
        source: FieldPath,
        /// The field written.
        target: FieldPath,
        /// Hashed before the source string.
        #[serde(default)]
        salt_prefix: String,
        /// How many bytes of the digest to keep, 1 to 32 (default 32).
        #[serde(default = "full_digest")]
        bytes: usize,
        /// Whether to remove `source` afterwards.
        #[serde(default)]
        remove_source: bool,
    },
    /// Writes the number at `source` × `table[string at by]`, only when that
    /// string is a key of `table`. A `source` that is absent or not a number
    /// counts as 0, as in the Go reference. A product too large for a
    /// double fails the event (Go's `json.Marshal` fails on it too).
    MultiplyLookup {
        /// The number multiplied.
        source: FieldPath,
        /// The string looked up in `table`.
        by: FieldPath,
        /// The field written.
        target: FieldPath,
        /// The factors, by key.
        table: BTreeMap<String, f64>,
    },
    /// Writes `values[n mod len]` where `n` is the whole number at `source`.
    /// Does nothing when `source` is not a whole number.
    Pick {
        /// The whole number that picks.
        source: FieldPath,
        /// The field written.
        target: FieldPath,
        /// The values picked from.
        values: Vec<String>,
    },
    /// Writes the current time, RFC 3339 in UTC with milliseconds:
    /// `2026-11-27T18:07:14.645Z`.
    Now {
        /// The field written.
        target: FieldPath,
    },
}

fn full_digest() -> usize {
    32
}

/// An operation ready to run: constants made into values, the salt hashed.
enum Op {
    Set {
        target: FieldPath,
        value: Value,
    },
    Delete {
        field: FieldPath,
    },
    Rename {
        from: FieldPath,
        to: FieldPath,
    },
    Classify {
        source: FieldPath,
        target: FieldPath,
        needles: Box<[Box<str>]>,
        then: &'static str,
        otherwise: &'static str,
    },
    Hash {
        source: FieldPath,
        target: FieldPath,
        // The hasher after the salt: each event clones it rather than
        // building salt + value in a new string.
        salted: Sha256,
        bytes: usize,
        remove_source: bool,
    },
    MultiplyLookup {
        source: FieldPath,
        by: FieldPath,
        target: FieldPath,
        // Sorted by key; a handful of currencies are found faster by a scan
        // than by hashing.
        table: Box<[(Box<str>, f64)]>,
    },
    Pick {
        source: FieldPath,
        target: FieldPath,
        values: Box<[&'static str]>,
    },
    Now {
        target: FieldPath,
    },
}

impl Op {
    fn build(op: EditOp) -> Result<Op, ConfigError> {
        Ok(match op {
            EditOp::Set { target, value } => Op::Set {
                value: value
                    .to_value()
                    .map_err(|e| ConfigError::new(format!("edit: set `{target}`: {e}")))?,
                target,
            },
            EditOp::Delete { field } => Op::Delete { field },
            EditOp::Rename { from, to } => Op::Rename { from, to },
            EditOp::Classify {
                source,
                target,
                contains_any,
                then,
                otherwise,
            } => {
                if contains_any.is_empty() {
                    return Err(ConfigError::new(format!(
                        "edit: classify `{source}`: `contains_any` is empty"
                    )));
                }
                Op::Classify {
                    source,
                    target,
                    needles: contains_any
                        .into_iter()
                        .map(String::into_boxed_str)
                        .collect(),
                    then: intern(&then),
                    otherwise: intern(&otherwise),
                }
            }
            EditOp::Hash {
                source,
                target,
                salt_prefix,
                bytes,
                remove_source,
            } => {
                if !(1..=32).contains(&bytes) {
                    return Err(ConfigError::new(format!(
                        "edit: hash `{source}`: `bytes` must be 1 to 32, not {bytes}"
                    )));
                }
                let mut salted = Sha256::new();
                salted.update(salt_prefix.as_bytes());
                Op::Hash {
                    source,
                    target,
                    salted,
                    bytes,
                    remove_source,
                }
            }
            EditOp::MultiplyLookup {
                source,
                by,
                target,
                table,
            } => {
                if table.is_empty() {
                    return Err(ConfigError::new(format!(
                        "edit: multiply_lookup `{source}`: `table` is empty"
                    )));
                }
                if let Some((key, factor)) = table.iter().find(|(_, factor)| !factor.is_finite()) {
                    return Err(ConfigError::new(format!(
                        "edit: multiply_lookup `{source}`: table[{key:?}] = {factor} is not a finite number"
                    )));
                }
                Op::MultiplyLookup {
                    source,
                    by,
                    target,
                    table: table
                        .into_iter()
                        .map(|(key, factor)| (key.into_boxed_str(), factor))
                        .collect(),
                }
            }
            EditOp::Pick {
                source,
                target,
                values,
            } => {
                if values.is_empty() {
                    return Err(ConfigError::new(format!(
                        "edit: pick `{source}`: `values` is empty"
                    )));
                }
                Op::Pick {
                    source,
                    target,
                    values: values.iter().map(|value| intern(value)).collect(),
                }
            }
            EditOp::Now { target } => Op::Now { target },
        })
    }

    fn apply(&self, root: &mut Value) -> Result<(), StageError> {
        match self {
            Op::Set { target, value } => write(target, root, value.clone()),
            Op::Delete { field } => {
                field.remove(root);
                Ok(())
            }
            Op::Rename { from, to } => match from.remove(root) {
                Some(value) => write(to, root, value),
                None => Ok(()),
            },
            Op::Classify {
                source,
                target,
                needles,
                then,
                otherwise,
            } => {
                let Some(parent) = source.parent(root) else {
                    return Ok(());
                };
                let found = parent
                    .get(&source.last_key())
                    .and_then(|v| v.as_str())
                    .is_some_and(|text| needles.iter().any(|needle| text.contains(&**needle)));
                let label = if found { then } else { otherwise };
                write(target, root, Value::from_static_str(label))
            }
            Op::Hash {
                source,
                target,
                salted,
                bytes,
                remove_source,
            } => {
                let Some(text) = source.get(root).and_then(|v| v.as_str()) else {
                    return Ok(());
                };
                let mut hasher = salted.clone();
                hasher.update(text.as_bytes());
                let digest = hasher.finalize();
                let mut hex = [0u8; 64];
                let hex = &mut hex[..bytes * 2];
                let digest = digest.get(..*bytes).unwrap_or_default();
                if hex::encode_to_slice(digest, hex).is_err() {
                    // Unreachable: the lengths match by construction.
                    return Ok(());
                }
                let hex = std::str::from_utf8(hex).unwrap_or_default();
                let value = Value::from(hex);
                if *remove_source && source.same_parent(target) {
                    // One walk for both, the common case (`ip` → `ip_hash`).
                    if let Some(parent) = source.parent_mut(root) {
                        parent.remove(&source.last_key());
                        parent.insert(target.last_key(), value);
                    }
                    return Ok(());
                }
                if *remove_source {
                    // Before writing, so that a target equal to the source
                    // keeps the hash.
                    source.remove(root);
                }
                write(target, root, value)
            }
            Op::MultiplyLookup {
                source,
                by,
                target,
                table,
            } => {
                // Reading through the shared parent walks the path once.
                let (by_value, source_value) = if by.same_parent(source) {
                    match by.parent(root) {
                        Some(parent) => {
                            (parent.get(&by.last_key()), parent.get(&source.last_key()))
                        }
                        None => (None, None),
                    }
                } else {
                    (by.get(root), source.get(root))
                };
                let Some(factor) = by_value
                    .and_then(|v| v.as_str())
                    .and_then(|key| lookup_factor(table, key))
                else {
                    return Ok(());
                };
                let number = source_value.and_then(|v| v.as_f64()).unwrap_or(0.0);
                let product = number * factor;
                match Value::try_from(product) {
                    Ok(value) if target.same_parent(by) => {
                        // `by` was found, so its object exists.
                        if let Some(parent) = target.parent_mut(root) {
                            parent.insert(target.last_key(), value);
                        }
                        Ok(())
                    }
                    Ok(value) => write(target, root, value),
                    Err(_) => Err(StageError::fatal(
                        "edit",
                        format!("field `{target}`: {number:?} × {factor:?} is too large for a JSON number"),
                    )),
                }
            }
            Op::Pick {
                source,
                target,
                values,
            } => {
                let Some(index) = source.get(root).and_then(|v| whole_index(v, values.len()))
                else {
                    return Ok(());
                };
                match values.get(index) {
                    Some(value) => write(target, root, Value::from_static_str(value)),
                    None => Ok(()),
                }
            }
            Op::Now { target } => write(target, root, now()),
        }
    }
}

/// The factor for `key` in a table sorted by key.
#[inline]
fn lookup_factor(table: &[(Box<str>, f64)], key: &str) -> Option<f64> {
    if table.len() <= 16 {
        table
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, factor)| *factor)
    } else {
        table
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .and_then(|i| table.get(i))
            .map(|(_, factor)| *factor)
    }
}

fn write(target: &FieldPath, root: &mut Value, value: Value) -> Result<(), StageError> {
    target.insert(root, value).map_err(edit_error)
}

#[cold]
fn edit_error(err: InsertError) -> StageError {
    StageError::fatal("edit", err.to_string())
}

/// `n mod len` for a whole number `n`, as a non-negative index.
fn whole_index(value: &Value, len: usize) -> Option<usize> {
    let len_u64 = u64::try_from(len).ok()?;
    let len_i64 = i64::try_from(len).ok()?;
    let index = if let Some(u) = value.as_u64() {
        u % len_u64
    } else if let Some(i) = value.as_i64() {
        i.rem_euclid(len_i64).unsigned_abs()
    } else {
        // Go reads the number as float64 and converts with int64(x).
        const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
        let x = value.as_f64()?;
        if x.fract() != 0.0 || !(-TWO_POW_63..TWO_POW_63).contains(&x) {
            return None;
        }
        (x as i64).rem_euclid(len_i64).unsigned_abs()
    };
    usize::try_from(index).ok()
}

/// The processing time as written by [`EditOp::Now`].
const NOW_FORMAT: &[BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

thread_local! {
    /// The formatted time of the last millisecond this thread asked for:
    /// most events of a busy worker share a millisecond with the one before,
    /// and formatting costs several times what reading the clock does.
    static NOW_CACHE: RefCell<(u128, String)> = const { RefCell::new((u128::MAX, String::new())) };
}

/// The current time as an RFC 3339 UTC string value, with milliseconds.
fn now() -> Value {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or(0);
    NOW_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != millis {
            let nanos = i128::try_from(millis).unwrap_or(0) * 1_000_000;
            if let Some(text) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .ok()
                .and_then(|at| at.format(NOW_FORMAT).ok())
            {
                *cache = (millis, text);
            }
        }
        Value::from(cache.1.as_str())
    })
}

/// Runs field operations in order on each event: the augment step of a
/// pipeline, and users' own edits.
///
/// Fails with reason `edit` when a field cannot be written (something on
/// its path is not an object) or a product overflows; otherwise keeps the
/// event.
///
/// ```
/// use crew_pipeline::transforms::{Edit, EditConfig, ParseJson};
/// use crew_pipeline::{Event, Origin, Outcome, Stage};
///
/// let config: EditConfig = toml::from_str(r#"
///     ops = [{ op = "hash", source = "ip", target = "ip_hash", salt_prefix = "salt:",
///              bytes = 8, remove_source = true }]
/// "#).unwrap();
/// let edit = Edit::new(config).unwrap();
/// let mut event = Event::new(Origin { partition: 0, offset: 0 }, &br#"{"ip":"10.0.0.1"}"#[..]);
/// ParseJson::default().process(&mut event).unwrap();
/// assert_eq!(edit.process(&mut event), Ok(Outcome::Keep));
/// let out = sonic_rs::to_string(event.value().unwrap()).unwrap();
/// assert!(out.starts_with(r#"{"ip_hash":""#) && !out.contains("10.0.0.1"));
/// ```
pub struct Edit {
    ops: Box<[Op]>,
}

impl Edit {
    /// Builds the operations, checking their settings.
    pub fn new(config: EditConfig) -> Result<Edit, ConfigError> {
        let ops = config
            .ops
            .into_iter()
            .map(Op::build)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Edit {
            ops: ops.into_boxed_slice(),
        })
    }

    /// Runs the operations on a value.
    pub fn apply(&self, root: &mut Value) -> Result<(), StageError> {
        for op in self.ops.iter() {
            op.apply(root)?;
        }
        Ok(())
    }
}

impl Stage for Edit {
    fn process(&self, event: &mut Event) -> Result<Outcome, StageError> {
        let root = event.value_mut().ok_or_else(|| unparsed("edit"))?;
        self.apply(root)?;
        Ok(Outcome::Keep)
    }
}

impl fmt::Debug for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edit")
            .field("ops", &self.ops.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use sonic_rs::JsonContainerTrait;

    use super::*;

    fn value(json: &str) -> Value {
        sonic_rs::from_str(json).unwrap()
    }

    fn edit(ops: &str) -> Edit {
        Edit::new(toml::from_str(&format!("ops = [{ops}]")).unwrap()).unwrap()
    }

    /// Runs `ops` on `json` and returns the result with sorted keys, since a
    /// mutated sonic object does not keep its order.
    fn run(ops: &str, json: &str) -> serde_json::Value {
        let mut v = value(json);
        edit(ops).apply(&mut v).unwrap();
        serde_json::from_str(&sonic_rs::to_string(&v).unwrap()).unwrap()
    }

    fn run_err(ops: &str, json: &str) -> String {
        let mut v = value(json);
        let err = edit(ops).apply(&mut v).unwrap_err();
        assert_eq!(err.reason, "edit");
        assert!(!err.retriable);
        err.message
    }

    use serde_json::json;

    #[test]
    fn set_writes_constants_creating_objects() {
        assert_eq!(
            run(
                r#"{ op = "set", target = "a.b", value = { x = [1, "s"] } }"#,
                r#"{"k":1}"#
            ),
            json!({"k":1,"a":{"b":{"x":[1,"s"]}}})
        );
        assert_eq!(
            run(r#"{ op = "set", target = "k", value = "v" }"#, r#"{"k":1}"#),
            json!({"k":"v"})
        );
        assert_eq!(
            run_err(r#"{ op = "set", target = "k.x", value = 1 }"#, r#"{"k":1}"#),
            "field `k.x`: cannot set it, `k` is a number, not an object"
        );
    }

    #[test]
    fn delete_and_rename() {
        assert_eq!(
            run(
                r#"{ op = "delete", field = "a.b" }"#,
                r#"{"a":{"b":1,"c":2}}"#
            ),
            json!({"a":{"c":2}})
        );
        assert_eq!(
            run(r#"{ op = "delete", field = "zz" }"#, r#"{"a":1}"#),
            json!({"a":1})
        );
        assert_eq!(
            run(
                r#"{ op = "rename", from = "a.b", to = "c" }"#,
                r#"{"a":{"b":1},"c":0}"#
            ),
            json!({"a":{},"c":1})
        );
        assert_eq!(
            run(r#"{ op = "rename", from = "x", to = "y" }"#, r#"{"a":1}"#),
            json!({"a":1})
        );
    }

    const CLASSIFY: &str = r#"{ op = "classify", source = "context.user_agent", target = "device",
        contains_any = ["Mobile", "Android"], then = "mobile", otherwise = "desktop" }"#;

    #[test]
    fn classify_by_substring_only_when_the_parent_exists() {
        assert_eq!(
            run(
                CLASSIFY,
                r#"{"context":{"user_agent":"Mozilla (iPhone) Mobile/15E148"}}"#
            )["device"],
            "mobile"
        );
        assert_eq!(
            run(
                CLASSIFY,
                r#"{"context":{"user_agent":"Linux; Android 14"}}"#
            )["device"],
            "mobile"
        );
        assert_eq!(
            run(CLASSIFY, r#"{"context":{"user_agent":"X11"}}"#)["device"],
            "desktop"
        );
        assert_eq!(run(CLASSIFY, r#"{"context":{}}"#)["device"], "desktop");
        assert_eq!(
            run(CLASSIFY, r#"{"context":{"user_agent":7}}"#)["device"],
            "desktop"
        );
        assert_eq!(run(CLASSIFY, r#"{"context":"x"}"#), json!({"context":"x"}));
        assert_eq!(run(CLASSIFY, r#"{}"#), json!({}));
    }

    const HASH: &str = r#"{ op = "hash", source = "context.ip", target = "context.ip_hash",
        salt_prefix = "salt:", bytes = 8, remove_source = true }"#;

    fn sha256_hex(input: &str) -> String {
        hex::encode(Sha256::digest(input.as_bytes()))
    }

    #[test]
    fn hash_salts_truncates_and_removes_the_source() {
        let out = run(HASH, r#"{"context":{"ip":"143.68.148.108","ua":"x"}}"#);
        let expected = &sha256_hex("salt:143.68.148.108")[..16];
        assert_eq!(out, json!({"context":{"ip_hash":expected,"ua":"x"}}));
        // Not a string: nothing happens, as in Go.
        assert_eq!(
            run(HASH, r#"{"context":{"ip":5}}"#),
            json!({"context":{"ip":5}})
        );
        assert_eq!(run(HASH, r#"{}"#), json!({}));
        // Defaults: no salt, the whole digest, the source kept.
        let full = run(
            r#"{ op = "hash", source = "s", target = "h" }"#,
            r#"{"s":"abc"}"#,
        );
        assert_eq!(full, json!({"s":"abc","h":sha256_hex("abc")}));
        // Hashing in place keeps the hash.
        let in_place = run(
            r#"{ op = "hash", source = "s", target = "s", bytes = 4, remove_source = true }"#,
            r#"{"s":"abc"}"#,
        );
        assert_eq!(in_place, json!({"s":&sha256_hex("abc")[..8]}));
    }

    const TOTAL_USD: &str = r#"{ op = "multiply_lookup", source = "data.checkout.total",
        by = "data.checkout.currency", target = "data.checkout.total_usd",
        table = { CAD = 0.73, USD = 1.0, JPY = 0.0067 } }"#;

    #[test]
    fn multiply_lookup_as_go() {
        let out = run(
            TOTAL_USD,
            r#"{"data":{"checkout":{"total":917.28,"currency":"CAD"}}}"#,
        );
        assert_eq!(out["data"]["checkout"]["total_usd"], json!(917.28 * 0.73));
        let out = run(
            TOTAL_USD,
            r#"{"data":{"checkout":{"total":100,"currency":"JPY"}}}"#,
        );
        assert_eq!(out["data"]["checkout"]["total_usd"], json!(100.0 * 0.0067));
        // A missing or non-number total counts as 0.
        let out = run(TOTAL_USD, r#"{"data":{"checkout":{"currency":"USD"}}}"#);
        assert_eq!(out["data"]["checkout"]["total_usd"], json!(0.0));
        let out = run(
            TOTAL_USD,
            r#"{"data":{"checkout":{"total":"9","currency":"USD"}}}"#,
        );
        assert_eq!(out["data"]["checkout"]["total_usd"], json!(0.0));
        // A currency not in the table, or none: nothing written.
        let out = run(
            TOTAL_USD,
            r#"{"data":{"checkout":{"total":1,"currency":"XXX"}}}"#,
        );
        assert!(out["data"]["checkout"].get("total_usd").is_none());
        assert_eq!(run(TOTAL_USD, r#"{"data":5}"#), json!({"data":5}));
        // Overflow fails, as Go's json.Marshal does on +Inf.
        let too_big = r#"{ op = "multiply_lookup", source = "t", by = "c", target = "u", table = { X = 10.0 } }"#;
        assert_eq!(
            run_err(too_big, r#"{"t":1e308,"c":"X"}"#),
            "field `u`: 1e308 × 10.0 is too large for a JSON number"
        );
    }

    const PICK: &str = r#"{ op = "pick", source = "shop_id", target = "partner",
        values = ["meta", "google", "tiktok", "pinterest"] }"#;

    #[test]
    fn pick_by_whole_number() {
        assert_eq!(run(PICK, r#"{"shop_id":36114}"#)["partner"], "tiktok");
        assert_eq!(run(PICK, r#"{"shop_id":7.0}"#)["partner"], "pinterest");
        assert_eq!(run(PICK, r#"{"shop_id":-1}"#)["partner"], "pinterest");
        assert_eq!(
            run(PICK, r#"{"shop_id":18446744073709551615}"#)["partner"],
            "pinterest"
        );
        assert!(run(PICK, r#"{"shop_id":1.5}"#).get("partner").is_none());
        assert!(run(PICK, r#"{"shop_id":"1"}"#).get("partner").is_none());
        assert!(run(PICK, r#"{"shop_id":1e300}"#).get("partner").is_none());
    }

    #[test]
    fn now_writes_rfc3339_utc_with_milliseconds() {
        let before = SystemTime::now();
        let out = run(r#"{ op = "now", target = "at" }"#, "{}");
        let text = out["at"].as_str().unwrap().to_owned();
        assert_eq!(text.len(), 24, "{text}");
        assert!(text.ends_with('Z') && text.as_bytes()[19] == b'.', "{text}");
        let at = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .unwrap();
        // Within a minute either way, so that a clock step cannot fail it.
        let before = time::OffsetDateTime::from(before);
        assert!(
            (at - before).abs() < time::Duration::minutes(1),
            "{at} {before}"
        );
        // A second event in the same millisecond gets the same text from
        // the cache; a later one, a fresh one. Either way it is well formed.
        let again = run(r#"{ op = "now", target = "at" }"#, "{}");
        assert_eq!(again["at"].as_str().unwrap().len(), 24);
    }

    #[test]
    fn ops_run_in_order() {
        let out = run(
            r#"{ op = "set", target = "a", value = 1 }, { op = "rename", from = "a", to = "b" },
               { op = "set", target = "a", value = 2 }"#,
            "{}",
        );
        assert_eq!(out, json!({"a":2,"b":1}));
    }

    #[test]
    fn an_unparsed_event_is_a_wiring_error() {
        let mut event = Event::new(
            crate::Origin {
                partition: 0,
                offset: 0,
            },
            &b"{}"[..],
        );
        assert_eq!(
            edit(PICK).process(&mut event).unwrap_err().reason,
            "unparsed"
        );
    }

    #[test]
    fn the_stage_edits_the_events_value() {
        let mut event = Event::new(
            crate::Origin {
                partition: 0,
                offset: 0,
            },
            &br#"{"shop_id":1}"#[..],
        );
        crate::transforms::ParseJson::default()
            .process(&mut event)
            .unwrap();
        assert_eq!(edit(PICK).process(&mut event), Ok(Outcome::Keep));
        assert_eq!(event.value().unwrap().as_object().unwrap().len(), 2);
    }

    #[test]
    fn config_errors() {
        for (ops, expected) in [
            (
                r#"{ op = "hash", source = "a", target = "b", bytes = 0 }"#,
                "`bytes` must be 1 to 32, not 0",
            ),
            (
                r#"{ op = "hash", source = "a", target = "b", bytes = 33 }"#,
                "`bytes` must be 1 to 32, not 33",
            ),
            (
                r#"{ op = "pick", source = "a", target = "b", values = [] }"#,
                "`values` is empty",
            ),
            (
                r#"{ op = "classify", source = "a", target = "b", contains_any = [], then = "x", otherwise = "y" }"#,
                "`contains_any` is empty",
            ),
            (
                r#"{ op = "multiply_lookup", source = "a", by = "c", target = "b", table = {} }"#,
                "`table` is empty",
            ),
            (
                r#"{ op = "multiply_lookup", source = "a", by = "c", target = "b", table = { X = inf } }"#,
                "table[\"X\"] = inf is not a finite number",
            ),
            (
                r#"{ op = "set", target = "a", value = nan }"#,
                "NaN is not a JSON number",
            ),
        ] {
            let config: EditConfig = toml::from_str(&format!("ops = [{ops}]")).unwrap();
            let err = Edit::new(config).unwrap_err().to_string();
            assert!(err.contains(expected), "{ops}: {err}");
        }
        for (ops, expected) in [
            (
                r#"{ op = "sett", target = "a", value = 1 }"#,
                "unknown variant",
            ),
            (
                r#"{ op = "delete", field = "a", target = "b" }"#,
                "unknown field",
            ),
            (r#"{ op = "now" }"#, "missing field `target`"),
        ] {
            let err = toml::from_str::<EditConfig>(&format!("ops = [{ops}]"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{ops}: {err}");
        }
    }
}
