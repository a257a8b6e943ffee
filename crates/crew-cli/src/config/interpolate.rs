//! `${VAR}` and `${VAR:-default}` in a pipeline file, replaced from the
//! environment before the TOML is parsed.
//!
//! Replacement works on the text, as Vector's does, so a variable can stand
//! for a number (`count = ${EVENTS:-1000}`) as well as inside a string. It
//! skips comments, so a commented-out line never needs its variables set.
//! Positions in the expanded text map back to the file as written, so every
//! later error still points at the right line and column.

use std::ops::Range;

/// The text after replacement, and where each replacement sits.
#[derive(Clone, Debug)]
pub(crate) struct Expanded {
    pub(crate) text: String,
    /// Replaced regions, in order: (range in the original, range in `text`).
    regions: Vec<(Range<usize>, Range<usize>)>,
}

impl Expanded {
    /// A text with nothing replaced.
    pub(crate) fn plain(text: &str) -> Expanded {
        Expanded {
            text: text.to_owned(),
            regions: Vec::new(),
        }
    }

    /// The offset in the original text of byte `offset` of the expanded one;
    /// a byte inside a replaced value maps to the `$` that stood there.
    pub(crate) fn original_offset(&self, offset: usize) -> usize {
        let index = self
            .regions
            .partition_point(|(_, expanded)| expanded.start <= offset);
        match index.checked_sub(1).map(|i| &self.regions[i]) {
            None => offset,
            Some((original, expanded)) if offset < expanded.end => original.start,
            Some((original, expanded)) => original.end + (offset - expanded.end),
        }
    }
}

/// Why a text could not be expanded: the byte offset of the `$` in the
/// original, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InterpolateError {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Normal,
    Comment,
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

/// Replaces `${NAME}` and `${NAME:-default}` in `text` with `lookup(NAME)`;
/// `$${` writes a literal `${`. As in a shell, the default is used when the
/// variable is unset or empty. A `${NAME}` whose variable is unset and that
/// has no default is an error, and so is a `${` that is not closed on its
/// line or holds a name other than letters, digits and `_`.
pub(crate) fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, InterpolateError> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut regions = Vec::new();
    let mut lex = Lex::Normal;
    // Start of the original text not yet copied to `out`.
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if lex != Lex::Comment && rest.starts_with(b"$${") {
            out.push_str(&text[copied..at]);
            let start = out.len();
            out.push_str("${");
            regions.push((at..at + 3, start..out.len()));
            at += 3;
            copied = at;
            continue;
        }
        if lex != Lex::Comment && rest.starts_with(b"${") {
            let (value, end) = variable(text, at, &lookup)?;
            out.push_str(&text[copied..at]);
            let start = out.len();
            out.push_str(&value);
            regions.push((at..end, start..out.len()));
            at = end;
            copied = at;
            continue;
        }
        let (next, step) = lex_step(lex, rest);
        lex = next;
        at += step;
    }
    out.push_str(&text[copied..]);
    Ok(Expanded { text: out, regions })
}

/// The lexer state after the token at the start of `rest`, and that token's
/// length. Only what tells comments from strings matters here.
fn lex_step(lex: Lex, rest: &[u8]) -> (Lex, usize) {
    match (lex, rest) {
        (Lex::Normal, [b'#', ..]) => (Lex::Comment, 1),
        (Lex::Normal, [b'"', b'"', b'"', ..]) => (Lex::MultiBasic, 3),
        (Lex::Normal, [b'"', ..]) => (Lex::Basic, 1),
        (Lex::Normal, [b'\'', b'\'', b'\'', ..]) => (Lex::MultiLiteral, 3),
        (Lex::Normal, [b'\'', ..]) => (Lex::Literal, 1),
        (Lex::Comment | Lex::Basic | Lex::Literal, [b'\n', ..]) => (Lex::Normal, 1),
        (Lex::Basic | Lex::MultiBasic, [b'\\', b'\n', ..]) => (lex, 1),
        (Lex::Basic | Lex::MultiBasic, [b'\\', _, ..]) => (lex, 2),
        (Lex::Basic, [b'"', ..]) | (Lex::Literal, [b'\'', ..]) => (Lex::Normal, 1),
        (Lex::MultiBasic, [b'"', b'"', b'"', ..])
        | (Lex::MultiLiteral, [b'\'', b'\'', b'\'', ..]) => (Lex::Normal, 3),
        _ => (lex, 1),
    }
}

/// The value of the `${...}` starting at byte `at`, and the offset just
/// after its `}`.
fn variable(
    text: &str,
    at: usize,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(String, usize), InterpolateError> {
    let error = |message: String| InterpolateError {
        offset: at,
        message,
    };
    let inner_start = at + 2;
    let line_end = text[inner_start..]
        .find('\n')
        .map_or(text.len(), |end| inner_start + end);
    let Some(close) = text[inner_start..line_end].find('}') else {
        return Err(error(
            "`${` is not closed by `}` on the same line (write `$${` for a literal `${`)"
                .to_owned(),
        ));
    };
    let inner = &text[inner_start..inner_start + close];
    let end = inner_start + close + 1;
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(error(format!(
            "`${{{inner}}}`: a variable name is letters, digits and `_`, not starting with a digit \
             (write `${{NAME}}` or `${{NAME:-default}}`)"
        )));
    }
    match (lookup(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok((default.to_owned(), end)),
        (Some(value), _) => Ok((value, end)),
        (None, Some(default)) => Ok((default.to_owned(), end)),
        (None, None) => Err(error(format!(
            "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "EVENTS" => Some("5000".to_owned()),
            "EMPTY" => Some(String::new()),
            "DIR" => Some("/var/crew".to_owned()),
            _ => None,
        }
    }

    fn expand(text: &str) -> Result<String, InterpolateError> {
        interpolate(text, env).map(|expanded| expanded.text)
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        assert_eq!(expand("count = ${EVENTS}").unwrap(), "count = 5000");
        assert_eq!(expand("count = ${UNSET:-7}").unwrap(), "count = 7");
        assert_eq!(expand("count = ${EVENTS:-7}").unwrap(), "count = 5000");
        assert_eq!(expand("x = \"${EMPTY:-dflt}\"").unwrap(), "x = \"dflt\"");
        assert_eq!(expand("x = \"${UNSET:-}\"").unwrap(), "x = \"\"");
        assert_eq!(
            expand("path = '${DIR}/out.ndjson'").unwrap(),
            "path = '/var/crew/out.ndjson'"
        );
        assert_eq!(
            expand("a = \"$HOME and $\"").unwrap(),
            "a = \"$HOME and $\""
        );
    }

    #[test]
    fn an_unset_variable_without_default_is_an_error_at_its_dollar() {
        let text = "a = 1\nb = \"x ${NOPE}\"";
        let error = interpolate(text, env).unwrap_err();
        assert_eq!(error.offset, text.find('$').unwrap());
        assert!(
            error.message.contains("`NOPE` is not set"),
            "{}",
            error.message
        );
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(expand("a = \"$${NOPE}\"").unwrap(), "a = \"${NOPE}\"");
    }

    #[test]
    fn comments_are_left_alone() {
        let text = "# count = ${NOPE}\na = \"#${EVENTS}\" # ${NOPE}\nb = '''\n# ${EVENTS}'''";
        assert_eq!(
            expand(text).unwrap(),
            "# count = ${NOPE}\na = \"#5000\" # ${NOPE}\nb = '''\n# 5000'''"
        );
        // An escaped quote does not end the string.
        assert_eq!(
            expand(r#"a = "\" # ${EVENTS}""#).unwrap(),
            r#"a = "\" # 5000""#
        );
    }

    #[test]
    fn bad_references_are_errors() {
        for text in ["a = ${EVENTS", "a = ${}", "a = ${1X}", "a = ${A-B}"] {
            let error = interpolate(text, env).unwrap_err();
            assert_eq!(error.offset, 4, "{text}");
        }
        assert!(interpolate("a = ${EVENTS\n}", env).is_err());
    }

    #[test]
    fn offsets_map_back_to_the_original() {
        let text = "a = ${EVENTS:-1} # x\nb = $${\nc = 1";
        let expanded = interpolate(text, env).unwrap();
        assert_eq!(expanded.text, "a = 5000 # x\nb = ${\nc = 1");
        let original = |needle: &str| text.find(needle).unwrap();
        let at = |needle: &str| expanded.text.find(needle).unwrap();
        assert_eq!(expanded.original_offset(0), 0);
        // Inside the value: the `$` that stood there.
        assert_eq!(
            expanded.original_offset(at("5000") + 2),
            original("${EVENTS")
        );
        assert_eq!(expanded.original_offset(at("# x")), original("# x"));
        assert_eq!(expanded.original_offset(at("c = 1")), original("c = 1"));
    }
}
