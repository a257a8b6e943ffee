//! The component registry: a `type` name → that component's config struct,
//! and from the config to the built component.
//!
//! A new component is one variant here, one arm in its `parse`, and one in
//! each of `describe` and `open`/`build`. A component that keeps counters of
//! its own (Kafka's, the HTTP sink's) hands them out of `open` as a
//! [`ComponentStats`], for the exporter.

use std::fs::{Metadata, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use std::collections::BTreeMap;

use crew_pipeline::sinks::{
    Blackhole, FileSink, FileSinkConfig, HttpMethod, HttpSink, HttpSinkConfig, HttpSinkStats,
    KafkaSink, KafkaSinkConfig, KafkaSinkStats, StdoutConfig, StdoutSink,
};
use crew_pipeline::sources::{
    FileSource, FileSourceConfig, Generator, GeneratorConfig, KafkaSource, KafkaSourceConfig,
    KafkaSourceStats, StdinConfig, StdinSource,
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
pub(crate) const SOURCE_TYPES: &[&str] = &["generator", "file", "stdin", "kafka"];
/// The stage types, as written in `[[stages]] type = ...`.
pub(crate) const STAGE_TYPES: &[&str] = &["parse_json", "validate", "filter", "edit", "remap"];
/// The sink types, as written in `[sink] type = ...` and
/// `[dead_letter] type = ...`.
pub(crate) const SINK_TYPES: &[&str] = &["file", "stdout", "blackhole", "kafka", "http"];

/// A file sink's `buffer_bytes` over this is refused when the sink opens
/// (crew-pipeline's limit, repeated so `validate` finds it without opening
/// the file for writing).
const MAX_SINK_BUFFER_BYTES: usize = 1 << 30;

/// The longest duration an HTTP sink setting may have, as for the
/// pipeline's own durations: the sink's runtime adds them to the current
/// time, and no wait longer than a day is useful.
const MAX_HTTP_DURATION: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

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

/// Counters a component keeps besides the pipeline's own, shared with the
/// exporter (`/metrics`) while the pipeline runs.
#[derive(Clone, Debug)]
pub enum ComponentStats {
    /// A Kafka source's assignment, rebalances, pauses and errors.
    KafkaSource(Arc<KafkaSourceStats>),
    /// A Kafka sink's (or dead-letter sink's) deliveries.
    KafkaSink(Arc<KafkaSinkStats>),
    /// An HTTP sink's (or dead-letter sink's) requests and concurrency
    /// limit.
    HttpSink(Arc<HttpSinkStats>),
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
    Kafka(KafkaSourceConfig),
}

impl SourceSpec {
    /// The config of a source of type `kind`; `None` for an unknown type.
    pub(crate) fn parse(kind: &str, at: &At<'_, '_>) -> Option<Result<SourceSpec, ConfigError>> {
        Some(match kind {
            "generator" => at.config().map(SourceSpec::Generator),
            "file" => at.config().map(SourceSpec::File),
            "stdin" => at.config().map(SourceSpec::Stdin),
            "kafka" => at.config().map(SourceSpec::Kafka),
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
            SourceSpec::Kafka(config) => check_kafka(config.validate(), &config.options),
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
            SourceSpec::Kafka(config) => format!(
                "kafka topic {} (group {}, brokers {})",
                config.topic, config.group, config.brokers
            ),
        }
    }

    /// Opens the source; creates a checkpoint's directory if needed. A
    /// Kafka source connects later, when the pipeline starts.
    pub(crate) fn open(&self) -> Result<(Box<dyn Source>, Option<ComponentStats>), String> {
        let source = match self {
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
            SourceSpec::Kafka(config) => {
                check_kafka(config.validate(), &config.options)?;
                let source = KafkaSource::new(config.clone()).map_err(|e| e.to_string())?;
                let stats = ComponentStats::KafkaSource(source.stats());
                return Ok((Box::new(source), Some(stats)));
            }
        };
        source.map(|source| (source, None))
    }

    /// Where it reads from Kafka: (brokers, topic).
    pub(crate) fn kafka_topic(&self) -> Option<(&str, &str)> {
        match self {
            SourceSpec::Kafka(config) => Some((&config.brokers, &config.topic)),
            _ => None,
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
    Kafka(KafkaSinkConfig),
    Http(HttpSinkConfig),
}

impl SinkSpec {
    /// The config of a sink of type `kind`; `None` for an unknown type.
    pub(crate) fn parse(kind: &str, at: &At<'_, '_>) -> Option<Result<SinkSpec, ConfigError>> {
        Some(match kind {
            "file" => at.config().map(SinkSpec::File),
            "stdout" => at.config().map(SinkSpec::Stdout),
            "blackhole" => at.config::<BlackholeConfig>().map(|_| SinkSpec::Blackhole),
            "kafka" => at.config().map(SinkSpec::Kafka),
            "http" => at.config().map(SinkSpec::Http),
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
            SinkSpec::Kafka(config) => check_kafka(config.validate(), &config.options),
            SinkSpec::Http(config) => check_http(config),
        }
    }

    /// Where it writes: a path, `stdout`, `blackhole`, a Kafka topic or an
    /// HTTP endpoint.
    pub(crate) fn describe(&self) -> String {
        match self {
            SinkSpec::File(config) => config.path.display().to_string(),
            SinkSpec::Stdout(_) => "stdout".to_owned(),
            SinkSpec::Blackhole => "blackhole".to_owned(),
            SinkSpec::Kafka(config) => {
                format!("kafka topic {} (brokers {})", config.topic, config.brokers)
            }
            SinkSpec::Http(config) => {
                let method = match config.method {
                    HttpMethod::Post => "POST",
                    HttpMethod::Put => "PUT",
                };
                format!("http {method} {}", without_password(&config.uri))
            }
        }
    }

    /// Opens the sink; creates a file's directory if needed. A Kafka sink's
    /// producer does not wait for its brokers, nor an HTTP sink for its
    /// service: one that is down shows up as retried flushes.
    pub(crate) fn open(&self) -> Result<(Box<dyn Sink>, Option<ComponentStats>), String> {
        match self {
            SinkSpec::File(config) => {
                create_parent(&config.path).map_err(|e| format!("`path`: {e}"))?;
                FileSink::open(config.clone())
                    .map(|sink| (Box::new(sink) as Box<dyn Sink>, None))
                    .map_err(|e| e.to_string())
            }
            SinkSpec::Stdout(config) => Ok((Box::new(StdoutSink::new(config.clone())), None)),
            SinkSpec::Blackhole => Ok((Box::new(Blackhole::default()), None)),
            SinkSpec::Kafka(config) => {
                check_kafka(config.validate(), &config.options)?;
                let sink = KafkaSink::new(config.clone()).map_err(|e| e.to_string())?;
                let stats = ComponentStats::KafkaSink(sink.stats());
                Ok((Box::new(sink), Some(stats)))
            }
            SinkSpec::Http(config) => {
                check_http(config)?;
                let sink = HttpSink::new(config.clone()).map_err(|e| e.to_string())?;
                let stats = ComponentStats::HttpSink(sink.stats());
                Ok((Box::new(sink), Some(stats)))
            }
        }
    }

    /// Where it writes to Kafka: (brokers, topic).
    pub(crate) fn kafka_topic(&self) -> Option<(&str, &str)> {
        match self {
            SinkSpec::Kafka(config) => Some((&config.brokers, &config.topic)),
            _ => None,
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

/// A Kafka component's own check (`validate`: required settings, options
/// crew owns), then each pass-through option on its own against
/// librdkafka's table of properties, so a misspelt name or a value of the
/// wrong kind is found by `crew validate`. Setting properties on a
/// configuration object creates no client: nothing connects. (Whether
/// options agree with each other, such as `heartbeat.interval.ms` below
/// `session.timeout.ms`, librdkafka only checks when the client is made.)
/// Messages name the option as `options.NAME`, which the caller points at.
fn check_kafka(
    validated: Result<(), crew_pipeline::sources::KafkaConfigError>,
    options: &BTreeMap<String, String>,
) -> Result<(), String> {
    validated.map_err(|e| e.to_string())?;
    for (key, value) in options {
        let mut one = rdkafka::ClientConfig::new();
        one.set(key.as_str(), value.as_str());
        if let Err(error) = one.create_native_config() {
            let why = match error {
                rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => description,
                other => other.to_string(),
            };
            return Err(format!("`options.{key}`: librdkafka refuses it: {why}"));
        }
    }
    Ok(())
}

/// An HTTP sink's own check (the URL, headers and limits), then what crew
/// asks of every duration.
fn check_http(config: &HttpSinkConfig) -> Result<(), String> {
    config.validate().map_err(|e| e.to_string())?;
    for (key, duration) in [
        ("timeout", config.timeout),
        ("retry.initial_backoff", config.retry.initial_backoff),
        ("retry.max_backoff", config.retry.max_backoff),
    ] {
        if duration > MAX_HTTP_DURATION {
            return Err(format!(
                "`{key}` must be at most 1 day (\"24h\"), not \"{}\"",
                humantime::format_duration(duration)
            ));
        }
    }
    Ok(())
}

/// `uri` with the password of its user info, if any, replaced by `***`:
/// the description goes to logs and to `crew validate`'s output.
fn without_password(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return uri.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
        None => uri.to_owned(),
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
    fn a_uri_is_described_without_its_password() {
        assert_eq!(
            without_password("https://crew:s3cret@example.com:8443/in?x=a@b"),
            "https://crew:***@example.com:8443/in?x=a@b"
        );
        assert_eq!(
            without_password("http://token@example.com/events"),
            "http://token@example.com/events"
        );
        assert_eq!(
            without_password("http://127.0.0.1:8080/events"),
            "http://127.0.0.1:8080/events"
        );
        assert_eq!(without_password("not a url"), "not a url");
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
