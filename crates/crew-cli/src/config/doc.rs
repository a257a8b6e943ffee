//! A parsed TOML file that remembers where everything was written, and the
//! deserialization that turns a serde error into a [`ConfigError`] with a
//! line, a column and a dotted key path.
//!
//! How: the file is parsed once into toml's spanned tree ([`DeTable`]).
//! Each component's table is deserialized into its config struct with
//! `serde_path_to_error` over toml's [`ValueDeserializer`], which gives the
//! key path of a failure (`stages[2].rules[0].field`) and usually its span.
//! Where serde buffered the input (internally tagged enums such as a
//! filter's `when` or an edit's `ops`, untagged literals), the span is the
//! enclosing table's: still the right line for an inline table, and the key
//! path still names it. An unknown key is then looked up in that table, so
//! it is pointed at exactly.
//!
//! TOML datetimes are refused before serde sees them: none of crew's
//! settings is one, and where any value is taken (an edit's `value`, a
//! test's `input_json`) toml would hand over its private serde form,
//! `{"$__toml_private_datetime": "..."}`, as if it were the data.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::{ConfigError, Pos};
use super::interpolate::{interpolate, Expanded};

/// A file's text, as written and as parsed (after `${VAR}` replacement).
pub(crate) struct Text {
    file: PathBuf,
    original: String,
    expanded: Expanded,
}

impl Text {
    /// A text parsed as written.
    pub(crate) fn plain(file: &Path, original: String) -> Text {
        Text {
            file: file.to_path_buf(),
            expanded: Expanded::plain(&original),
            original,
        }
    }

    /// A text with `${VAR}` references replaced through `lookup`.
    pub(crate) fn interpolated(
        file: &Path,
        original: String,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Text, ConfigError> {
        match interpolate(&original, lookup) {
            Ok(expanded) => Ok(Text {
                file: file.to_path_buf(),
                original,
                expanded,
            }),
            Err(error) => Err(ConfigError::new(
                file,
                Some(Pos::of(&original, error.offset)),
                None,
                error.message,
            )),
        }
    }

    /// The text to parse.
    pub(crate) fn parsed(&self) -> &str {
        &self.expanded.text
    }

    /// Where byte `offset` of the parsed text was written.
    pub(crate) fn pos(&self, offset: usize) -> Pos {
        Pos::of(&self.original, self.expanded.original_offset(offset))
    }

    /// An error at `span` (of the parsed text), for `key`.
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<&KeyPath>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(
            &self.file,
            span.map(|span| self.pos(span.start)),
            key.map(ToString::to_string),
            message,
        )
    }

    /// Parses the text into its spanned tree.
    pub(crate) fn parse(&self) -> Result<Spanned<DeTable<'_>>, ConfigError> {
        DeTable::parse(self.parsed())
            .map_err(|error| self.error(error.span(), None, format!("TOML: {}", error.message())))
    }
}

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A dotted key path, such as `stages[2].rules[0].field`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// The path of a top-level key.
    pub(crate) fn root(key: &str) -> KeyPath {
        KeyPath(vec![Seg::Key(key.to_owned())])
    }

    /// This path and one more key.
    pub(crate) fn key(&self, key: &str) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Seg::Key(key.to_owned()));
        path
    }

    /// This path and one more index.
    pub(crate) fn index(&self, index: usize) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Seg::Index(index));
        path
    }

    fn extend(&mut self, segs: &[Seg]) {
        self.0.extend_from_slice(segs);
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(index) => write!(f, "[{index}]")?,
                Seg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a walk down a spanned tree found.
pub(crate) struct Found<'a, 'i> {
    /// How many steps of the path matched.
    pub(crate) matched: usize,
    /// The span of the last matched key, if the last step was a key.
    pub(crate) key_span: Option<Range<usize>>,
    /// The deepest matched value.
    pub(crate) value: &'a Spanned<DeValue<'i>>,
}

impl Found<'_, '_> {
    /// Where to point for the found node: its key, or the value itself.
    pub(crate) fn span(&self) -> Range<usize> {
        self.key_span.clone().unwrap_or_else(|| self.value.span())
    }
}

/// Follows `path` down from `value` as far as it goes.
pub(crate) fn walk<'a, 'i>(value: &'a Spanned<DeValue<'i>>, path: &[Seg]) -> Found<'a, 'i> {
    let mut found = Found {
        matched: 0,
        key_span: None,
        value,
    };
    for seg in path {
        let next = match (found.value.get_ref(), seg) {
            (DeValue::Table(table), Seg::Key(key)) => table
                .get_key_value(key.as_str())
                .map(|(k, v)| (Some(k.span()), v)),
            (DeValue::Array(array), Seg::Index(index)) => array.get(*index).map(|v| (None, v)),
            _ => None,
        };
        let Some((key_span, next)) = next else { break };
        found = Found {
            matched: found.matched + 1,
            key_span,
            value: next,
        };
    }
    found
}

/// The name of a value's TOML type, for messages: "a string", "a table".
pub(crate) fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// `names` as "`a`, `b`, `c`".
pub(crate) fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The field and allowed names in serde's "unknown field `x`, expected one
/// of `a`, `b`" (or "expected `a`", or "there are no fields").
fn parse_unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let allowed = match rest.split_once("expected") {
        Some((_, list)) => list.split('`').skip(1).step_by(2).collect(),
        None => Vec::new(),
    };
    Some((field, allowed))
}

/// The message for an unknown key among `allowed`.
pub(crate) fn unknown_key_message(field: &str, allowed: &[&str]) -> String {
    match allowed {
        [] => format!("unknown field `{field}`, there are no fields"),
        [one] => format!("unknown field `{field}`, expected `{one}`"),
        many => format!(
            "unknown field `{field}`, expected one of {}",
            quoted_list(many)
        ),
    }
}

/// The first TOML datetime in `value`: its path below `value`, its span and
/// how it is written.
fn find_datetime(value: &Spanned<DeValue<'_>>) -> Option<(Vec<Seg>, Range<usize>, String)> {
    match value.get_ref() {
        DeValue::Datetime(datetime) => Some((Vec::new(), value.span(), datetime.to_string())),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            let (mut segs, span, written) = find_datetime(item)?;
            segs.insert(0, Seg::Index(index));
            Some((segs, span, written))
        }),
        DeValue::Table(table) => {
            // In the order written, so the first one in the file is named.
            let mut entries: Vec<_> = table.iter().collect();
            entries.sort_by_key(|(key, _)| key.span().start);
            entries.into_iter().find_map(|(key, item)| {
                let (mut segs, span, written) = find_datetime(item)?;
                segs.insert(0, Seg::Key(key.get_ref().to_string()));
                Some((segs, span, written))
            })
        }
        DeValue::String(_) | DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => None,
    }
}

/// Deserializes `value` (the table at `at`) into `T`; `handled` are keys of
/// that table the caller has taken out (such as `type`), which an
/// unknown-key message lists among the allowed ones.
pub(crate) fn deserialize<T: DeserializeOwned>(
    text: &Text,
    value: &Spanned<DeValue<'_>>,
    at: &KeyPath,
    anchor: Range<usize>,
    handled: &[&str],
) -> Result<T, ConfigError> {
    if let Some((segs, span, written)) = find_datetime(value) {
        let mut key = at.clone();
        key.extend(&segs);
        return Err(text.error(
            Some(span),
            Some(&key),
            format!(
                "a TOML datetime is not a value crew reads: write dates as strings: \"{written}\""
            ),
        ));
    }
    let error = match serde_path_to_error::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(config) => return Ok(config),
        Err(error) => error,
    };
    let mut segs: Vec<Seg> = Vec::new();
    for seg in error.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => segs.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => segs.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => segs.push(Seg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => break,
        }
    }
    let inner = error.into_inner();
    let mut message = inner.message().to_owned();
    // An unknown key in a table serde buffered comes without its name in
    // the path: find it in the table the path reached.
    if let Some((field, _)) = parse_unknown_field(&message) {
        let found = walk(value, &segs);
        if found.matched == segs.len()
            && !segs
                .last()
                .is_some_and(|s| *s == Seg::Key(field.to_owned()))
        {
            if let DeValue::Table(table) = found.value.get_ref() {
                if table.contains_key(field) {
                    segs.push(Seg::Key(field.to_owned()));
                }
            }
        }
    }
    let found = walk(value, &segs);
    if segs.len() == 1 && !handled.is_empty() {
        if let Some((field, allowed)) = parse_unknown_field(&message) {
            let mut all: Vec<&str> = handled.to_vec();
            all.extend(allowed);
            message = unknown_key_message(field, &all);
        }
    }
    let span = if found.matched == 0 {
        // Nothing below the component matched (a missing field, a value of
        // the wrong type for the whole table): point at the component.
        match inner.span() {
            Some(span) if span.start > value.span().start => span,
            _ => anchor,
        }
    } else {
        let node = found.value.span();
        match inner.span() {
            // toml's own span is the most precise when it lies inside the
            // node the path reached.
            Some(span) if span.start >= node.start && span.end <= node.end => span,
            _ => found.span(),
        }
    };
    let mut key = at.clone();
    key.extend(&segs);
    Err(text.error(Some(span), Some(&key), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_print_dotted_with_indices() {
        let path = KeyPath::root("stages")
            .index(2)
            .key("rules")
            .index(0)
            .key("field");
        assert_eq!(path.to_string(), "stages[2].rules[0].field");
        assert_eq!(
            KeyPath::root("fields").key("context.ip").to_string(),
            "fields.\"context.ip\""
        );
    }

    #[test]
    fn serde_unknown_field_messages_are_read_back() {
        assert_eq!(
            parse_unknown_field("unknown field `wrkers`, expected one of `workers`, `ordering`"),
            Some(("wrkers", vec!["workers", "ordering"]))
        );
        assert_eq!(
            parse_unknown_field("unknown field `a`, expected `path`"),
            Some(("a", vec!["path"]))
        );
        assert_eq!(
            parse_unknown_field("unknown field `a`, there are no fields"),
            Some(("a", vec![]))
        );
        assert_eq!(parse_unknown_field("missing field `path`"), None);
    }
}
