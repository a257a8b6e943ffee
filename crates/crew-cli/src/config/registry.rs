//! The component registry: a `type` name → that component's config struct,
//! and from the config to the built component.
//!
//! A new component is one variant here, one arm in its `parse`, and one in
//! each of `describe` and `open`/`build`.

use std::fs::{Metadata, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use crew_pipeline::sinks::{Blackhole, FileSink, FileSinkConfig, StdoutConfig, StdoutSink};
use crew_pipeline::sources::{
    FileSource, FileSourceConfig, Generator, GeneratorConfig, StdinConfig, StdinSource,
};
use crew_pipeline::transforms::{
    Edit, EditConfig, Filter, FilterConfig, ParseJson, ParseJsonConfig, Validate, ValidateConfig,
};
#[cfg(feature = "remap")]
use crew_pipeline::transforms::{Remap, RemapConfig};
use crew_pipeline::{Sink, Source, Stage};
use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::doc::{deserialize, KeyPath, Text};
use super::error::ConfigError;

/// The source types, as written in `[source] type = ...`.
pub(crate) const SOURCE_TYPES: &[&str] = &["generator", "file", "stdin"];
/// The stage types, as written in `[[stages]] type = ...`.
pub(crate) const STAGE_TYPES: &[&str] = &["parse_json", "validate", "filter", "edit", "remap"];
/// The sink types, as written in `[sink] type = ...` and
/// `[dead_letter] type = ...`.
pub(crate) const SINK_TYPES: &[&str] = &["file", "stdout", "blackhole"];

/// A file sink's `buffer_bytes` over this is refused when the sink opens
/// (crew-pipeline's limit, repeated so `validate` finds it without opening
/// the file for writing).
const MAX_SINK_BUFFER_BYTES: usize = 1 << 30;

/// Where a table came from, to pass to [`deserialize`].
pub(crate) struct At<'a, 'i> {
    pub(crate) text: &'a Text,
    pub(crate) value: &'a Spanned<DeValue<'i>>,
    pub(crate) key: &'a KeyPath,
    pub(crate) anchor: std::ops::Range<usize>,
    /// Where the `type` value is written.
    #[cfg_attr(
        feature = "remap",
        allow(dead_code, reason = "only for refusing `remap` without the feature")
    )]
    pub(crate) type_span: std::ops::Range<usize>,
    /// Keys the caller took out of the table (`type`, `name`, ...).
    pub(crate) handled: &'a [&'a str],
}

impl At<'_, '_> {
    fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        deserialize(
            self.text,
            self.value,
            self.key,
            self.anchor.clone(),
            self.handled,
        )
    }
}

/// The blackhole sink takes no settings; this refuses any.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlackholeConfig {}

/// A configured source.
#[derive(Clone, Debug)]
pub(crate) enum SourceSpec {
    Generator(GeneratorConfig),
    File(FileSourceConfig),
    Stdin(StdinConfig),
}

impl SourceSpec {
    /// The config of a source of type `kind`; `None` for an unknown type.
    pub(crate) fn parse(kind: &str, at: &At<'_, '_>) -> Option<Result<SourceSpec, ConfigError>> {
        Some(match kind {
            "generator" => at.config().map(SourceSpec::Generator),
            "file" => at.config().map(SourceSpec::File),
            "stdin" => at.config().map(SourceSpec::Stdin),
            _ => return None,
        })
    }

    /// Checks what serde cannot, without opening anything for writing.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            SourceSpec::Generator(config) => config.validate(),
            SourceSpec::File(config) => {
                readable_input(&config.path).map_err(|e| format!("`path`: {e}"))?;
                if let Some(checkpoint) = &config.checkpoint {
                    writable_file(checkpoint).map_err(|e| format!("`checkpoint`: {e}"))?;
                }
                Ok(())
            }
            SourceSpec::Stdin(_) => Ok(()),
        }
    }

    /// A short description: `generator (1000000 events, seed 1)`.
    pub(crate) fn describe(&self) -> String {
        match self {
            SourceSpec::Generator(config) => {
                let count = match config.count {
                    Some(count) => format!("{count} events"),
                    None => "endless".to_owned(),
                };
                let rate = match config.rate {
                    Some(rate) => format!(", {rate} events/s"),
                    None => String::new(),
                };
                format!("generator ({count}, seed {}{rate})", config.seed)
            }
            SourceSpec::File(config) => match &config.checkpoint {
                Some(checkpoint) => format!(
                    "file {} (checkpoint {})",
                    config.path.display(),
                    checkpoint.display()
                ),
                None => format!("file {}", config.path.display()),
            },
            SourceSpec::Stdin(_) => "stdin".to_owned(),
        }
    }

    /// Opens the source; creates a checkpoint's directory if needed.
    pub(crate) fn open(&self) -> Result<Box<dyn Source>, String> {
        match self {
            SourceSpec::Generator(config) => Generator::new(config.clone())
                .map(|source| Box::new(source) as Box<dyn Source>)
                .map_err(|e| e.to_string()),
            SourceSpec::File(config) => {
                // Checked here too: FileSource would block opening a FIFO
                // until a writer comes, then fail seeking in it.
                regular_input(&config.path).map_err(|e| format!("`path`: {e}"))?;
                if let Some(checkpoint) = &config.checkpoint {
                    create_parent(checkpoint).map_err(|e| format!("`checkpoint`: {e}"))?;
                }
                FileSource::open(config.clone())
                    .map(|source| Box::new(source) as Box<dyn Source>)
                    .map_err(|e| e.to_string())
            }
            SourceSpec::Stdin(config) => StdinSource::new(config.clone())
                .map(|source| Box::new(source) as Box<dyn Source>)
                .map_err(|e| e.to_string()),
        }
    }

    /// The file it reads, if any.
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            SourceSpec::File(config) => Some(&config.path),
            _ => None,
        }
    }

    /// The checkpoint file it writes, if any.
    pub(crate) fn checkpoint(&self) -> Option<&Path> {
        match self {
            SourceSpec::File(config) => config.checkpoint.as_deref(),
            _ => None,
        }
    }
}

/// A configured stage.
#[derive(Clone, Debug)]
pub(crate) enum StageSpec {
    ParseJson(ParseJsonConfig),
    Validate(ValidateConfig),
    Filter(FilterConfig),
    Edit(EditConfig),
    #[cfg(feature = "remap")]
    Remap(RemapConfig),
}

impl StageSpec {
    /// The config of a stage of type `kind`; `None` for an unknown type.
    pub(crate) fn parse(kind: &str, at: &At<'_, '_>) -> Option<Result<StageSpec, ConfigError>> {
        Some(match kind {
            "parse_json" => at.config().map(StageSpec::ParseJson),
            "validate" => at.config().map(StageSpec::Validate),
            "filter" => at.config().map(StageSpec::Filter),
            "edit" => at.config().map(StageSpec::Edit),
            #[cfg(feature = "remap")]
            "remap" => at.config().map(StageSpec::Remap),
            #[cfg(not(feature = "remap"))]
            "remap" => Err(at.text.error(
                Some(at.type_span.clone()),
                Some(&at.key.key("type")),
                "stage type `remap` (VRL programs) needs crew built with the `remap` feature \
                 (cargo build -p crew-cli --features remap)",
            )),
            _ => return None,
        })
    }

    /// Builds the stage: compiles programs and schemas, checks settings.
    pub(crate) fn build(&self) -> Result<Arc<dyn Stage>, String> {
        let built: Result<Arc<dyn Stage>, _> = match self {
            StageSpec::ParseJson(config) => {
                ParseJson::new(config.clone()).map(|s| Arc::new(s) as Arc<dyn Stage>)
            }
            StageSpec::Validate(config) => {
                Validate::new(config.clone()).map(|s| Arc::new(s) as Arc<dyn Stage>)
            }
            StageSpec::Filter(config) => {
                Filter::new(config.clone()).map(|s| Arc::new(s) as Arc<dyn Stage>)
            }
            StageSpec::Edit(config) => {
                Edit::new(config.clone()).map(|s| Arc::new(s) as Arc<dyn Stage>)
            }
            #[cfg(feature = "remap")]
            StageSpec::Remap(config) => {
                return Remap::new(config.clone())
                    .map(|s| Arc::new(s) as Arc<dyn Stage>)
                    .map_err(|e| {
                        // Name the key, so the error points at the program.
                        let message = e.to_string();
                        match message.strip_prefix("remap: the program does not compile") {
                            Some(rest) => format!("remap: `program` does not compile{rest}"),
                            None => message,
                        }
                    });
            }
        };
        built.map_err(|e| e.to_string())
    }
}

/// A configured sink (or dead-letter sink).
#[derive(Clone, Debug)]
pub(crate) enum SinkSpec {
    File(FileSinkConfig),
    Stdout(StdoutConfig),
    Blackhole,
}

impl SinkSpec {
    /// The config of a sink of type `kind`; `None` for an unknown type.
    pub(crate) fn parse(kind: &str, at: &At<'_, '_>) -> Option<Result<SinkSpec, ConfigError>> {
        Some(match kind {
            "file" => at.config().map(SinkSpec::File),
            "stdout" => at.config().map(SinkSpec::Stdout),
            "blackhole" => at.config::<BlackholeConfig>().map(|_| SinkSpec::Blackhole),
            _ => return None,
        })
    }

    /// Checks what serde cannot, without opening anything for writing.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            SinkSpec::File(config) => {
                if config.buffer_bytes > MAX_SINK_BUFFER_BYTES {
                    return Err(format!(
                        "`buffer_bytes`: must be at most {MAX_SINK_BUFFER_BYTES}, not {}",
                        config.buffer_bytes
                    ));
                }
                writable_file(&config.path).map_err(|e| format!("`path`: {e}"))
            }
            SinkSpec::Stdout(_) | SinkSpec::Blackhole => Ok(()),
        }
    }

    /// Where it writes: a path, `stdout` or `blackhole`.
    pub(crate) fn describe(&self) -> String {
        match self {
            SinkSpec::File(config) => config.path.display().to_string(),
            SinkSpec::Stdout(_) => "stdout".to_owned(),
            SinkSpec::Blackhole => "blackhole".to_owned(),
        }
    }

    /// Opens the sink; creates a file's directory if needed.
    pub(crate) fn open(&self) -> Result<Box<dyn Sink>, String> {
        match self {
            SinkSpec::File(config) => {
                create_parent(&config.path).map_err(|e| format!("`path`: {e}"))?;
                FileSink::open(config.clone())
                    .map(|sink| Box::new(sink) as Box<dyn Sink>)
                    .map_err(|e| e.to_string())
            }
            SinkSpec::Stdout(config) => Ok(Box::new(StdoutSink::new(config.clone()))),
            SinkSpec::Blackhole => Ok(Box::new(Blackhole::default())),
        }
    }

    /// The file it writes, if any.
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            SinkSpec::File(config) => Some(&config.path),
            _ => None,
        }
    }
}

/// Whether the file source could read `path`, judged without blocking and
/// without reading a byte: it is a regular file (see [`regular_input`]),
/// and opening it for reading works. The open is non-blocking, and the
/// opened file's type is checked again, in case `path` was replaced by a
/// FIFO in between.
fn readable_input(path: &Path) -> Result<(), String> {
    regular_input(path)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    regular(&meta, path)
}

/// Whether `path` is a regular file, from its metadata alone (nothing is
/// opened). A FIFO, socket or device is refused: the file source seeks
/// back after sniffing the gzip header, which a pipe cannot do, and opening
/// a FIFO waits for a writer. A stream belongs on standard input.
fn regular_input(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    regular(&meta, path)
}

fn regular(meta: &Metadata, path: &Path) -> Result<(), String> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    if kind.is_dir() {
        return Err(format!("{} is a directory", path.display()));
    }
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a file"
    };
    Err(format!(
        "{} is not a regular file ({what}): the file source reads regular files, plain or \
         gzip; for a stream, use `type = \"stdin\"` and `crew run FILE < {}`",
        path.display(),
        path.display()
    ))
}

/// Whether a file could be created or written at `path`, judged without
/// creating anything: it is not a directory, and it exists writable, or its
/// nearest existing ancestor is a writable directory (the directories in
/// between would be created).
fn writable_file(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("the path is empty".to_owned());
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(format!("{} is a directory", path.display()));
        }
        if meta.permissions().readonly() {
            return Err(format!("{} is read-only", path.display()));
        }
        return Ok(());
    }
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        // A relative path's last parent is "", the current directory.
        let probe = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(meta) = std::fs::metadata(probe) {
            if !meta.is_dir() {
                return Err(format!(
                    "cannot create {}: {} is not a directory",
                    path.display(),
                    probe.display()
                ));
            }
            if meta.permissions().readonly() {
                return Err(format!(
                    "cannot create {}: {} is read-only",
                    path.display(),
                    probe.display()
                ));
            }
            return Ok(());
        }
        ancestor = dir.parent();
    }
    Ok(())
}

/// Creates the directory that will hold `path`.
fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_under_missing_directories_is_writable_if_an_ancestor_is() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c/out.ndjson");
        assert_eq!(writable_file(&deep), Ok(()));
        // Judging it created nothing.
        assert!(!dir.path().join("a").exists());
        assert!(writable_file(dir.path())
            .unwrap_err()
            .contains("is a directory"));
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let under_file = file.join("out.ndjson");
        assert!(writable_file(&under_file)
            .unwrap_err()
            .contains("is not a directory"));
        assert!(writable_file(Path::new("relative.ndjson")).is_ok());
    }

    #[test]
    fn create_parent_makes_the_directories() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("x/y/out.ndjson");
        create_parent(&deep).unwrap();
        assert!(dir.path().join("x/y").is_dir());
        assert_eq!(create_parent(Path::new("bare.ndjson")), Ok(()));
    }
}
