//! Pipeline files: TOML to a wired pipeline.
//!
//! [`load`] reads a file, replaces `${VAR}` references from the
//! environment, parses it and checks its shape; [`ServiceConfig::check`]
//! builds every stage without side effects (what `crew validate` does);
//! [`ServiceConfig::wire`] opens the source and sinks and hands back the
//! [`PipelineBuilder`] for `crew run`. The format is documented in
//! `docs/config.md`.
//!
//! ```toml
//! [pipeline]                      # crew_pipeline::Settings, plus `name`
//! ordering = "key"
//! [admin]
//! listen = "127.0.0.1:9598"
//! [source]
//! type = "generator"              # the registry (registry.rs) maps it to GeneratorConfig
//! count = ${CREW_EVENTS:-1000}
//! [[stages]]
//! name = "parse"
//! type = "parse_json"
//! [sink]
//! type = "file"
//! path = "out/events.ndjson"
//! [dead_letter]
//! type = "blackhole"
//! ```
//!
//! Every error is a [`ConfigError`] naming the file, line, column and key.

mod doc;
mod error;
mod interpolate;
mod paths;
mod registry;
pub mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crew_pipeline::{Pipeline, PipelineBuilder, Settings, Stage};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use doc::{deserialize, kind, quoted_list, walk, KeyPath, Seg, Text};
pub use error::ConfigError;
use error::Pos;
pub use registry::ComponentStats;
use registry::{At, SinkSpec, SourceSpec, StageSpec, SINK_TYPES, SOURCE_TYPES, STAGE_TYPES};

/// The top-level tables of a pipeline file.
const TOP_KEYS: &[&str] = &[
    "pipeline",
    "admin",
    "source",
    "stages",
    "sink",
    "dead_letter",
];

/// The admin server's address when `[admin]` does not say.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9598);

/// The most workers one pool may have (`[pipeline] workers`, a stage's own
/// `workers`): far past what a machine runs well, and small enough that
/// the runtime's sizes derived from it (queues of twice the workers, 8
/// lanes per worker) stay small.
const MAX_WORKERS: usize = 4096;

/// The most ordered lanes: the runtime allocates every lane when the
/// pipeline starts.
const MAX_LANES: usize = 65_536;

/// The longest duration setting. The runtime adds these to the current
/// time, which overflows (a panic) for a huge one, and no wait longer than
/// a day is useful here.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Reads a pipeline file: replaces `${VAR}` and `${VAR:-default}` from the
/// environment, parses the TOML, deserializes every component's config and
/// checks what can be checked without building anything (types, unknown
/// keys, duplicate stage names, zero limits, the generator's shares).
pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
    let original = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, None, None, format!("cannot read the file: {e}")))?;
    parse(path, original, |name| std::env::var(name).ok())
}

/// The admin server's settings (`[admin]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where `/metrics`, `/health` and `/ready` are served; `None` when
    /// `enabled = false`.
    pub listen: Option<SocketAddr>,
}

/// `[admin]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminSection {
    #[serde(default = "default_listen", deserialize_with = "ip_and_port")]
    listen: SocketAddr,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn default_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN
}

/// An IP address and port. A host name is refused rather than resolved:
/// resolving would make loading a file wait on DNS, and `localhost` may
/// resolve to `::1` on one machine and `127.0.0.1` on another.
fn ip_and_port<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let written = String::deserialize(deserializer)?;
    written.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected an IP address and port, e.g. 127.0.0.1:9598 or [::1]:9598, found \
             {written:?} (host names are not resolved)"
        ))
    })
}

fn enabled_by_default() -> bool {
    true
}

/// A component's config, and where it was written (for errors found when it
/// is built).
#[derive(Clone, Debug)]
struct Component<T> {
    spec: T,
    /// Its key path: `source`, `stages[2]`.
    key: KeyPath,
    /// Where its table starts.
    at: Pos,
    /// Where each of its table's keys is written, and those of the tables
    /// directly in it (`options.NAME`).
    keys: Vec<KeyAt>,
}

/// A key of a component's table, as messages name it (`path`,
/// `options.session.timeout.ms`), with its full path and where it is
/// written.
#[derive(Clone, Debug)]
struct KeyAt {
    name: String,
    path: KeyPath,
    pos: Pos,
}

impl<T> Component<T> {
    /// An error about this component; when the message names one of its
    /// keys in backticks (as crew-pipeline's messages do), it points there.
    fn error(&self, file: &Path, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        let named = message
            .split('`')
            .skip(1)
            .step_by(2)
            .find_map(|name| self.keys.iter().find(|key| key.name == name));
        match named {
            Some(key) => {
                // The error names the key: a message that starts with it
                // would repeat it.
                let message = match message.strip_prefix(&format!("`{}`: ", key.name)) {
                    Some(rest) => rest.to_owned(),
                    None => message,
                };
                ConfigError::new(file, Some(key.pos), Some(key.path.to_string()), message)
            }
            None => ConfigError::new(file, Some(self.at), Some(self.key.to_string()), message),
        }
    }

    /// An error about this component's `key`, pointing where it is written
    /// (or at the table, if it is not).
    fn key_error(&self, file: &Path, key: &str, message: impl Into<String>) -> ConfigError {
        match self.keys.iter().find(|k| k.name == key) {
            Some(key) => ConfigError::new(file, Some(key.pos), Some(key.path.to_string()), message),
            None => ConfigError::new(file, Some(self.at), Some(self.key.to_string()), message),
        }
    }
}

/// A stage as configured: its name, its own worker count if any, its
/// transform.
#[derive(Clone, Debug)]
struct StagePlan {
    name: String,
    workers: Option<usize>,
    component: Component<StageSpec>,
}

/// A pipeline file, loaded and checked: settings and every component's
/// config, not yet built.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[pipeline] name`, or the file's stem: the `pipeline` label of every
    /// metric.
    pub name: String,
    /// The runtime settings (`[pipeline]`).
    pub settings: Settings,
    /// The admin server's settings (`[admin]`).
    pub admin: AdminConfig,
    source: Component<SourceSpec>,
    stages: Vec<StagePlan>,
    sink: Component<SinkSpec>,
    dead_letter: Component<SinkSpec>,
}

/// A pipeline ready to build: the builder with every component opened, and
/// what they are, for the start-up log.
pub struct Wired {
    /// The builder, with settings, source, stages, sink and dead-letter sink.
    pub builder: PipelineBuilder,
    /// The source, described: `generator (1000000 events, seed 1)`.
    pub source: String,
    /// Where events go: (`"output"` or `"dead letters"`, a path, `stdout`,
    /// `blackhole` or a Kafka topic).
    pub outputs: Vec<(&'static str, String)>,
    /// The counters components keep of their own, by role (`"source"`,
    /// `"sink"`, `"dead_letter"`): only Kafka components have them.
    pub stats: Vec<(&'static str, ComponentStats)>,
}

impl ServiceConfig {
    /// Opens the source and sinks (creating the directories of output files
    /// and checkpoints), builds every stage, and returns the builder, not yet
    /// built.
    pub fn wire(&self) -> anyhow::Result<Wired> {
        let file = &self.path;
        let mut stats = Vec::new();
        let (source, source_stats) = self
            .source
            .spec
            .open()
            .map_err(|m| self.source.error(file, m))?;
        stats.extend(source_stats.map(|s| ("source", s)));
        let mut builder = Pipeline::builder()
            .settings(self.settings.clone())
            .boxed_source(source);
        for (plan, (name, stage)) in self.stages.iter().zip(self.stages()?) {
            builder = builder.arc_stage(name, stage, plan.workers);
        }
        let (sink, sink_stats) = self
            .sink
            .spec
            .open()
            .map_err(|m| self.sink.error(file, m))?;
        stats.extend(sink_stats.map(|s| ("sink", s)));
        let (dead_letter, dead_letter_stats) = self
            .dead_letter
            .spec
            .open()
            .map_err(|m| self.dead_letter.error(file, m))?;
        stats.extend(dead_letter_stats.map(|s| ("dead_letter", s)));
        Ok(Wired {
            builder: builder.boxed_sink(sink).boxed_dead_letter(dead_letter),
            source: self.source.spec.describe(),
            outputs: vec![
                ("output", self.sink.spec.describe()),
                ("dead letters", self.dead_letter.spec.describe()),
            ],
            stats,
        })
    }

    /// What `crew validate` does: builds every stage (compiling programs and
    /// schemas), checks the source's and sinks' settings, that the input
    /// file is readable and that output files can be written, their
    /// directories existing or creatable. Nothing is created, opened for
    /// writing or read from a checkpoint.
    pub fn check(&self) -> anyhow::Result<()> {
        let file = &self.path;
        self.source
            .spec
            .check()
            .map_err(|m| self.source.error(file, m))?;
        self.stages()?;
        for sink in [&self.sink, &self.dead_letter] {
            sink.spec.check().map_err(|m| sink.error(file, m))?;
        }
        Ok(())
    }

    /// The stages in order, by name, built.
    pub fn stages(&self) -> anyhow::Result<Vec<(String, Arc<dyn Stage>)>> {
        let mut built = Vec::with_capacity(self.stages.len());
        for plan in &self.stages {
            let stage = plan
                .component
                .spec
                .build()
                .map_err(|m| plan.component.error(&self.path, m))?;
            built.push((plan.name.clone(), stage));
        }
        Ok(built)
    }

    /// One line for `crew validate`: `pipeline pixels: source generator
    /// (...), 4 stages, sink out/x.ndjson, dead letters out/y.ndjson`.
    pub fn summary(&self) -> String {
        let stages = match self.stages.len() {
            1 => "1 stage".to_owned(),
            n => format!("{n} stages"),
        };
        format!(
            "pipeline {}: source {}, {stages}, sink {}, dead letters {}",
            self.name,
            self.source.spec.describe(),
            self.sink.spec.describe(),
            self.dead_letter.spec.describe()
        )
    }

    /// The stage names, in order.
    pub fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|plan| plan.name.as_str()).collect()
    }
}

/// [`load`] on a text already read, with `lookup` for the environment.
fn parse(
    path: &Path,
    original: String,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ServiceConfig, ConfigError> {
    let text = Text::interpolated(path, original, lookup)?;
    let root = text.parse()?;
    let mut sections: HashMap<&str, (Range<usize>, &Spanned<DeValue<'_>>)> = HashMap::new();
    for (key, value) in root.get_ref().iter() {
        let name: &str = key.get_ref();
        if !TOP_KEYS.contains(&name) {
            return Err(text.error(
                Some(key.span()),
                Some(&KeyPath::root(name)),
                format!(
                    "unknown table `{name}`, expected one of {}",
                    quoted_list(TOP_KEYS)
                ),
            ));
        }
        sections.insert(name, (key.span(), value));
    }

    let (name, settings) = match sections.get("pipeline") {
        Some((anchor, value)) => pipeline_section(&text, value, anchor.clone())?,
        None => (None, Settings::default()),
    };
    let name = match name {
        Some(name) => name,
        None => path.file_stem().map_or_else(
            || "pipeline".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        ),
    };
    let admin = match sections.get("admin") {
        Some((anchor, value)) => {
            let key = KeyPath::root("admin");
            table(&text, value, &key)?;
            let section: AdminSection = deserialize(&text, value, &key, anchor.clone(), &[])?;
            AdminConfig {
                listen: section.enabled.then_some(section.listen),
            }
        }
        None => AdminConfig {
            listen: Some(DEFAULT_ADMIN_LISTEN),
        },
    };

    let required = |section: &'static str, what: &str, known: &[&str]| {
        sections.get(section).cloned().ok_or_else(|| {
            ConfigError::new(
                path,
                None,
                None,
                format!(
                    "there is no `[{section}]` table: {what}, with `type` one of {}",
                    quoted_list(known)
                ),
            )
        })
    };
    let (anchor, value) = required("source", "where events come from", SOURCE_TYPES)?;
    let source = component(
        &text,
        value,
        KeyPath::root("source"),
        anchor,
        "source",
        &[],
        SOURCE_TYPES,
        SourceSpec::parse,
    )?;
    if let SourceSpec::Generator(config) = &source.spec {
        config.validate().map_err(|m| source.error(path, m))?;
    }
    let stages = match sections.get("stages") {
        Some((_, value)) => stage_plans(&text, value)?,
        None => Vec::new(),
    };
    let (anchor, value) = required("sink", "where delivered events go", SINK_TYPES)?;
    let sink = component(
        &text,
        value,
        KeyPath::root("sink"),
        anchor,
        "sink",
        &[],
        SINK_TYPES,
        SinkSpec::parse,
    )?;
    let (anchor, value) = required(
        "dead_letter",
        "where failed events go (the pipeline never drops one silently; \
         `type = \"blackhole\"` only counts them)",
        SINK_TYPES,
    )?;
    let dead_letter = component(
        &text,
        value,
        KeyPath::root("dead_letter"),
        anchor,
        "dead-letter sink",
        &[],
        SINK_TYPES,
        SinkSpec::parse,
    )?;

    if let (Some(out), Some(dead)) = (sink.spec.path(), dead_letter.spec.path()) {
        if paths::same_file(out, dead) {
            return Err(dead_letter.key_error(
                path,
                "path",
                format!(
                    "{} is also the sink's{}: dead letters need a file of their own",
                    dead.display(),
                    as_written(dead, out)
                ),
            ));
        }
    }
    if let Some(input) = source.spec.path() {
        for output in [&sink, &dead_letter] {
            let Some(out) = output.spec.path() else {
                continue;
            };
            if paths::same_file(out, input) {
                return Err(output.key_error(
                    path,
                    "path",
                    format!(
                        "{} is the file the source reads{}",
                        out.display(),
                        as_written(out, input)
                    ),
                ));
            }
        }
    }
    // The same topic text on the same brokers text is the same topic; other
    // spellings of one cluster are not caught (that would need the brokers).
    if let (Some(out), Some(dead)) = (sink.spec.kafka_topic(), dead_letter.spec.kafka_topic()) {
        if out == dead {
            return Err(dead_letter.key_error(
                path,
                "topic",
                format!(
                    "`{}` is also the sink's topic: dead letters need a topic of their own",
                    dead.1
                ),
            ));
        }
    }
    if let Some(input) = source.spec.kafka_topic() {
        for output in [&sink, &dead_letter] {
            if output.spec.kafka_topic() == Some(input) {
                return Err(output.key_error(
                    path,
                    "topic",
                    format!(
                        "`{}` is the topic the source reads: every event written would be \
                         read again",
                        input.1
                    ),
                ));
            }
        }
    }
    if let Some(checkpoint) = source.spec.checkpoint() {
        let taken = [("the file the source reads", source.spec.path())]
            .into_iter()
            .chain([&sink, &dead_letter].map(|output| ("an output", output.spec.path())));
        for (what, other) in taken {
            if other.is_some_and(|other| paths::same_file(checkpoint, other)) {
                return Err(source.key_error(
                    path,
                    "checkpoint",
                    format!(
                        "{} is {what}{}: the checkpoint needs a file of its own",
                        checkpoint.display(),
                        other.map_or_else(String::new, |other| as_written(checkpoint, other))
                    ),
                ));
            }
        }
    }

    Ok(ServiceConfig {
        path: path.to_path_buf(),
        name,
        settings,
        admin,
        source,
        stages,
        sink,
        dead_letter,
    })
}

/// How `other` is written, for a message about `path` being the same file,
/// when it is written differently: ` (in.ndjson)`.
fn as_written(path: &Path, other: &Path) -> String {
    if path == other {
        String::new()
    } else {
        format!(" ({})", other.display())
    }
}

/// `value` as a table, or an error saying what it is instead.
fn table<'a, 'i>(
    text: &Text,
    value: &'a Spanned<DeValue<'i>>,
    key: &KeyPath,
) -> Result<&'a DeTable<'i>, ConfigError> {
    match value.get_ref() {
        DeValue::Table(table) => Ok(table),
        other => Err(text.error(
            Some(value.span()),
            Some(key),
            format!("expected a table, found {}", kind(other)),
        )),
    }
}

/// `[pipeline]`: its `name`, and the settings.
fn pipeline_section(
    text: &Text,
    value: &Spanned<DeValue<'_>>,
    anchor: Range<usize>,
) -> Result<(Option<String>, Settings), ConfigError> {
    let key = KeyPath::root("pipeline");
    let table = table(text, value, &key)?;
    let mut rest = table.clone();
    let name = match rest.remove("name") {
        None => None,
        Some(name) => match name.get_ref() {
            DeValue::String(s) if !s.is_empty() => Some(s.to_string()),
            other => {
                return Err(text.error(
                    Some(name.span()),
                    Some(&key.key("name")),
                    format!("expected a non-empty string, found {}", kind(other)),
                ))
            }
        },
    };
    let rest = Spanned::new(value.span(), DeValue::Table(rest));
    let settings: Settings = deserialize(text, &rest, &key, anchor, &["name"])?;
    // (key, value, most allowed): none may be 0.
    let limits = [
        ("workers", settings.workers, MAX_WORKERS),
        ("lanes", settings.lanes.unwrap_or(1), MAX_LANES),
        // These allocate nothing up front (a batch reserves at most 4096
        // events): a huge one only means "no limit".
        ("batch.max_events", settings.batch.max_events, usize::MAX),
        ("batch.max_bytes", settings.batch.max_bytes, usize::MAX),
        ("budget.max_events", settings.budget.max_events, usize::MAX),
        ("budget.max_bytes", settings.budget.max_bytes, usize::MAX),
        (
            "budget.max_per_partition",
            settings.budget.max_per_partition,
            usize::MAX,
        ),
        (
            "stage_retry.max_attempts",
            settings.stage_retry.max_attempts as usize,
            usize::MAX,
        ),
        (
            "sink_retry.max_attempts",
            settings.sink_retry.max_attempts as usize,
            usize::MAX,
        ),
    ];
    let at = |dotted: &str| {
        let segs: Vec<Seg> = dotted.split('.').map(|k| Seg::Key(k.to_owned())).collect();
        let found = walk(value, &segs);
        let span = if found.matched == segs.len() {
            found.value.span()
        } else {
            found.span()
        };
        let mut path = key.clone();
        for seg in dotted.split('.') {
            path = path.key(seg);
        }
        (span, path)
    };
    for (dotted, limit, most) in limits {
        if limit == 0 {
            let (span, path) = at(dotted);
            return Err(text.error(Some(span), Some(&path), "must be at least 1"));
        }
        if limit > most {
            let (span, path) = at(dotted);
            return Err(text.error(
                Some(span),
                Some(&path),
                format!("must be at most {most}, not {limit}"),
            ));
        }
    }
    let durations = [
        ("commit_interval", settings.commit_interval),
        ("drain_timeout", settings.drain_timeout),
        ("flush_interval", settings.flush_interval),
        ("batch.linger", settings.batch.linger),
        (
            "stage_retry.initial_backoff",
            settings.stage_retry.initial_backoff,
        ),
        ("stage_retry.max_backoff", settings.stage_retry.max_backoff),
        (
            "sink_retry.initial_backoff",
            settings.sink_retry.initial_backoff,
        ),
        ("sink_retry.max_backoff", settings.sink_retry.max_backoff),
    ];
    for (dotted, duration) in durations {
        if duration > MAX_DURATION {
            let (span, path) = at(dotted);
            return Err(text.error(
                Some(span),
                Some(&path),
                format!(
                    "must be at most 1 day (\"24h\"), not \"{}\"",
                    humantime::format_duration(duration)
                ),
            ));
        }
    }
    Ok((name, settings))
}

/// `[[stages]]`: each stage's name, workers and transform.
fn stage_plans(text: &Text, value: &Spanned<DeValue<'_>>) -> Result<Vec<StagePlan>, ConfigError> {
    let key = KeyPath::root("stages");
    let DeValue::Array(array) = value.get_ref() else {
        return Err(text.error(
            Some(value.span()),
            Some(&key),
            format!(
                "expected an array of tables (`[[stages]]`), found {}",
                kind(value.get_ref())
            ),
        ));
    };
    let mut plans: Vec<StagePlan> = Vec::with_capacity(array.len());
    for (index, item) in array.iter().enumerate() {
        let at = key.index(index);
        let table = table(text, item, &at)?;
        let anchor = item.span();
        let workers = match table.get_key_value("workers") {
            None => None,
            Some((k, v)) => {
                let workers_key = at.key("workers");
                let workers: usize = deserialize(text, v, &workers_key, k.span(), &[])?;
                if workers == 0 {
                    return Err(text.error(
                        Some(v.span()),
                        Some(&workers_key),
                        "must be at least 1 (the workers of this stage's own pool)",
                    ));
                }
                if workers > MAX_WORKERS {
                    return Err(text.error(
                        Some(v.span()),
                        Some(&workers_key),
                        format!(
                            "must be at most {MAX_WORKERS} (the workers of this stage's own \
                             pool), not {workers}"
                        ),
                    ));
                }
                Some(workers)
            }
        };
        let name = match table.get_key_value("name") {
            None => None,
            Some((k, v)) => match v.get_ref() {
                DeValue::String(s) if !s.is_empty() => Some((s.to_string(), k.span())),
                other => {
                    return Err(text.error(
                        Some(k.span()),
                        Some(&at.key("name")),
                        format!("expected a non-empty string, found {}", kind(other)),
                    ))
                }
            },
        };
        let component = component(
            text,
            item,
            at.clone(),
            anchor.clone(),
            "stage",
            &["name", "workers"],
            STAGE_TYPES,
            StageSpec::parse,
        )?;
        let (name, name_span, name_key) = match name {
            Some((name, span)) => (name, span, at.key("name")),
            None => {
                // Defaults to its type, which `component` has checked.
                let kind = table
                    .get("type")
                    .and_then(|v| v.get_ref().as_str())
                    .unwrap_or("stage")
                    .to_owned();
                (kind, anchor, at.clone())
            }
        };
        if let Some(first) = plans.iter().find(|plan| plan.name == name) {
            return Err(text.error(
                Some(name_span),
                Some(&name_key),
                format!(
                    "stage name `{name}` is already used by {} (line {}): stage names must be \
                     unique (a stage without `name` is named after its type)",
                    first.component.key, first.component.at.line
                ),
            ));
        }
        plans.push(StagePlan {
            name,
            workers,
            component,
        });
    }
    Ok(plans)
}

/// A component's table: its `type` looked up in the registry through
/// `parse`, the rest deserialized into that type's config.
#[allow(clippy::too_many_arguments)]
fn component<T>(
    text: &Text,
    value: &Spanned<DeValue<'_>>,
    key: KeyPath,
    anchor: Range<usize>,
    what: &str,
    handled: &[&str],
    known: &[&str],
    parse: impl Fn(&str, &At<'_, '_>) -> Option<Result<T, ConfigError>>,
) -> Result<Component<T>, ConfigError> {
    let table = table(text, value, &key)?;
    let Some((_, kind_value)) = table.get_key_value("type") else {
        return Err(text.error(
            Some(anchor),
            Some(&key),
            format!(
                "missing `type`: the {what}'s type, one of {}",
                quoted_list(known)
            ),
        ));
    };
    let type_key = key.key("type");
    let Some(type_name) = kind_value.get_ref().as_str() else {
        return Err(text.error(
            Some(kind_value.span()),
            Some(&type_key),
            format!(
                "expected a string, one of {}, found {}",
                quoted_list(known),
                kind(kind_value.get_ref())
            ),
        ));
    };
    let mut rest = table.clone();
    rest.remove("type");
    for key in handled {
        rest.remove(*key);
    }
    let rest = Spanned::new(value.span(), DeValue::Table(rest));
    let mut all_handled = vec!["type"];
    all_handled.extend_from_slice(handled);
    let at = At {
        text,
        value: &rest,
        key: &key,
        anchor: anchor.clone(),
        type_span: kind_value.span(),
        handled: &all_handled,
    };
    let spec = match parse(type_name, &at) {
        Some(spec) => spec?,
        None => {
            return Err(text.error(
                Some(kind_value.span()),
                Some(&type_key),
                format!(
                    "unknown {what} type `{type_name}`, expected one of {}",
                    quoted_list(known)
                ),
            ))
        }
    };
    let mut keys = Vec::new();
    for (k, v) in table.iter() {
        let name: &str = k.get_ref();
        keys.push(KeyAt {
            name: name.to_owned(),
            path: key.key(name),
            pos: text.pos(k.span().start),
        });
        if let DeValue::Table(inner) = v.get_ref() {
            for (inner_key, _) in inner.iter() {
                let inner_name: &str = inner_key.get_ref();
                keys.push(KeyAt {
                    name: format!("{name}.{inner_name}"),
                    path: key.key(name).key(inner_name),
                    pos: text.pos(inner_key.span().start),
                });
            }
        }
    }
    Ok(Component {
        spec,
        at: text.pos(anchor.start),
        key,
        keys,
    })
}
