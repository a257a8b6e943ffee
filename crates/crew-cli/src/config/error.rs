//! [`ConfigError`]: what is wrong with a pipeline file, and where.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a file: line and column, both from 1 (the column counts
/// characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl Pos {
    /// The position of byte `offset` of `text` (clamped to its end).
    pub(crate) fn of(text: &str, offset: usize) -> Pos {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        Pos {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// What is wrong with a pipeline (or tests) file: the file, the line and
/// column when known, the dotted key path when the fault is in a value
/// (`stages[2].rules[0].field`), and what was expected.
///
/// Displayed as `FILE:LINE:COL: key `KEY`: MESSAGE`, the way compilers
/// report, so an editor or terminal can jump to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    file: PathBuf,
    at: Option<Pos>,
    key: Option<String>,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(
        file: &Path,
        at: Option<Pos>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            at,
            key,
            message: message.into(),
        }
    }

    /// Where in the file, when the fault has a place.
    #[cfg(test)]
    pub(crate) fn at(&self) -> Option<Pos> {
        self.at
    }

    /// The dotted key path of the faulty value, when there is one.
    #[cfg(test)]
    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong, without the place.
    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(at) = self.at {
            write!(f, ":{}:{}", at.line, at.column)?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Pos::of(text, 0), Pos { line: 1, column: 1 });
        assert_eq!(Pos::of(text, 6), Pos { line: 2, column: 1 });
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(Pos::of(text, 12), Pos { line: 2, column: 6 });
        assert_eq!(Pos::of(text, 1000), Pos { line: 3, column: 1 });
        // Inside a multi-byte character: the character's own column.
        assert_eq!(Pos::of(text, 8), Pos { line: 2, column: 2 });
    }

    #[test]
    fn display_is_file_line_column_key_message() {
        let error = ConfigError::new(
            Path::new("p.toml"),
            Some(Pos { line: 3, column: 9 }),
            Some("source.count".to_owned()),
            "invalid type: string \"x\", expected u64",
        );
        assert_eq!(
            error.to_string(),
            "p.toml:3:9: key `source.count`: invalid type: string \"x\", expected u64"
        );
        let bare = ConfigError::new(Path::new("p.toml"), None, None, "cannot read");
        assert_eq!(bare.to_string(), "p.toml: cannot read");
    }
}
