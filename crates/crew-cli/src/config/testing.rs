//! A pipeline file's unit tests (`crew test`): inputs fed through named
//! stages, and what must come out.
//!
//! The tests live beside the pipeline file (`pixels.tests.toml` for
//! `pixels.toml`):
//!
//! ```toml
//! [[tests]]
//! name = "no marketing consent is dropped"
//! stages = ["parse", "validate", "consent"]   # or from = "...", to = "..."; default: all
//! input_json = { event_id = "...", consent = { marketing = false } }   # or input = 'raw line'
//! [tests.expect]
//! outcome = "dropped"          # "delivered" | "dropped" | "dead_lettered"
//! reason = "consent"
//! ```
//!
//! Each test runs the stages in order on one event, as the runtime's chain
//! does, and stops at the first drop or error. A panic is caught and fails
//! the test. The file format is documented in `docs/config.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crew_pipeline::{Event, Origin, Outcome, Stage};
use serde::Deserialize;
use toml::de::DeValue;

use super::doc::{deserialize, kind, quoted_list, walk, KeyPath, Seg, Text};
use super::error::Pos;
use super::{ConfigError, ServiceConfig};

/// The tests file beside a pipeline file: `x.tests.toml` for `x.toml`.
pub fn tests_path_for(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy().into_owned());
    config.with_file_name(format!("{stem}.tests.toml"))
}

/// How an event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Every stage kept it: it would reach the sink.
    Delivered,
    /// A stage dropped it on purpose.
    Dropped,
    /// A stage failed it: it would go to the dead-letter sink.
    DeadLettered,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Delivered => "delivered",
            Ending::Dropped => "dropped",
            Ending::DeadLettered => "dead_lettered",
        }
    }
}

/// `[[tests]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    stages: Option<Vec<String>>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    input_json: Option<serde_json::Value>,
    expect: Expect,
}

/// `[tests.expect]`: what must come out.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    outcome: Ending,
    /// The drop or dead-letter reason.
    #[serde(default)]
    reason: Option<String>,
    /// The stage that dropped or failed the event.
    #[serde(default)]
    stage: Option<String>,
    /// A part of the dead letter's error message.
    #[serde(default)]
    message_contains: Option<String>,
    /// Field path → the JSON value it must hold (delivered events).
    #[serde(default)]
    fields: BTreeMap<String, serde_json::Value>,
    /// Fields that must be there, with any value.
    #[serde(default)]
    present: Vec<String>,
    /// Fields that must not be there.
    #[serde(default)]
    absent: Vec<String>,
    /// The whole output object.
    #[serde(default)]
    output: Option<serde_json::Value>,
}

/// One test, ready to run.
#[derive(Clone, Debug)]
pub struct TestCase {
    /// Its name.
    pub name: String,
    /// Where it is written.
    pub at: Pos,
    /// Indices of the stages it runs, in order.
    stages: Vec<usize>,
    input: Vec<u8>,
    expect: Expect,
}

/// A tests file, loaded against its pipeline.
#[derive(Clone, Debug)]
pub struct TestFile {
    /// The file.
    pub path: PathBuf,
    /// Its tests, in order.
    pub cases: Vec<TestCase>,
}

/// Reads a tests file; stage names are checked against `config`'s.
pub fn load_tests(path: &Path, config: &ServiceConfig) -> Result<TestFile, ConfigError> {
    let original = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, None, None, format!("cannot read the file: {e}")))?;
    parse_tests(path, original, &config.stage_names())
}

/// [`load_tests`] on a text already read.
fn parse_tests(path: &Path, original: String, names: &[&str]) -> Result<TestFile, ConfigError> {
    let text = Text::plain(path, original);
    let root = text.parse()?;
    let mut tests = None;
    for (key, value) in root.get_ref().iter() {
        if key.get_ref() != "tests" {
            return Err(text.error(
                Some(key.span()),
                Some(&KeyPath::root(key.get_ref())),
                "unknown table, expected `tests` (write each test as `[[tests]]`)",
            ));
        }
        tests = Some(value);
    }
    let key = KeyPath::root("tests");
    let no_tests = || {
        ConfigError::new(
            path,
            None,
            None,
            "no tests: write each one as a `[[tests]]` table",
        )
    };
    let tests = tests.ok_or_else(no_tests)?;
    let items = match tests.get_ref() {
        DeValue::Array(items) if items.is_empty() => return Err(no_tests()),
        DeValue::Array(items) => items,
        other => {
            return Err(text.error(
                Some(tests.span()),
                Some(&key),
                format!(
                    "expected an array of tables (`[[tests]]`), found {}",
                    kind(other)
                ),
            ))
        }
    };
    let mut cases: Vec<TestCase> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let at = key.index(index);
        let raw: RawCase = deserialize(&text, item, &at, item.span(), &[])?;
        let spot = |path: &[&str]| -> Range<usize> {
            let segs: Vec<Seg> = path.iter().map(|k| Seg::Key((*k).to_owned())).collect();
            walk(item, &segs).span()
        };
        let fail = |path: &[&str], message: String| {
            let mut key = at.clone();
            for k in path {
                key = key.key(k);
            }
            text.error(Some(spot(path)), Some(&key), message)
        };
        if let Some(first) = cases.iter().find(|case| case.name == raw.name) {
            return Err(fail(
                &["name"],
                format!(
                    "test name `{}` is already used at line {}",
                    raw.name, first.at.line
                ),
            ));
        }
        let index_of = |field: &str, name: &str| {
            names.iter().position(|n| *n == name).ok_or_else(|| {
                fail(
                    &[field],
                    format!(
                        "the pipeline has no stage `{name}`; its stages are {}",
                        quoted_list(names)
                    ),
                )
            })
        };
        let stages = match (&raw.stages, &raw.from, &raw.to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(fail(
                    &["stages"],
                    "give `stages` or `from`/`to`, not both".to_owned(),
                ))
            }
            (Some(list), None, None) => list
                .iter()
                .map(|name| index_of("stages", name))
                .collect::<Result<Vec<_>, _>>()?,
            (None, from, to) => {
                let first = match from {
                    Some(name) => index_of("from", name)?,
                    None => 0,
                };
                let last = match to {
                    Some(name) => index_of("to", name)?,
                    None => names.len().saturating_sub(1),
                };
                if first > last && !names.is_empty() {
                    return Err(fail(&["to"], "`to` names a stage before `from`".to_owned()));
                }
                (first..=last).filter(|i| *i < names.len()).collect()
            }
        };
        let input = match (raw.input, raw.input_json) {
            (Some(line), None) => line.into_bytes(),
            (None, Some(json)) => json.to_string().into_bytes(),
            (Some(_), Some(_)) => {
                return Err(fail(
                    &["input"],
                    "give `input` (a raw line) or `input_json`, not both".to_owned(),
                ))
            }
            (None, None) => {
                return Err(fail(
                    &[],
                    "missing the event: `input` (a raw line) or `input_json` (a table)".to_owned(),
                ))
            }
        };
        let expect = raw.expect;
        let delivered_only = [
            ("fields", !expect.fields.is_empty()),
            ("present", !expect.present.is_empty()),
            ("absent", !expect.absent.is_empty()),
            ("output", expect.output.is_some()),
        ];
        let ended_only = [
            ("reason", expect.reason.is_some()),
            ("stage", expect.stage.is_some()),
        ];
        for (field, given) in delivered_only {
            if given && expect.outcome != Ending::Delivered {
                return Err(fail(
                    &["expect", field],
                    format!("`{field}` applies to outcome = \"delivered\" only"),
                ));
            }
        }
        for (field, given) in ended_only {
            if given && expect.outcome == Ending::Delivered {
                return Err(fail(
                    &["expect", field],
                    format!("`{field}` applies to outcome = \"dropped\" or \"dead_lettered\" only"),
                ));
            }
        }
        if expect.message_contains.is_some() && expect.outcome != Ending::DeadLettered {
            return Err(fail(
                &["expect", "message_contains"],
                "`message_contains` applies to outcome = \"dead_lettered\" only".to_owned(),
            ));
        }
        for (field, paths) in [
            ("fields", expect.fields.keys().collect::<Vec<_>>()),
            ("present", expect.present.iter().collect()),
            ("absent", expect.absent.iter().collect()),
        ] {
            if let Some(bad) = paths
                .iter()
                .find(|p| p.is_empty() || p.split('.').any(str::is_empty))
            {
                return Err(fail(
                    &["expect", field],
                    format!("`{bad}` is not a field path (keys joined by dots, none empty)"),
                ));
            }
        }
        cases.push(TestCase {
            name: raw.name,
            at: text.pos(item.span().start),
            stages,
            input,
            expect,
        });
    }
    Ok(TestFile {
        path: path.to_path_buf(),
        cases,
    })
}

/// How an event ended in a test run.
#[derive(Debug)]
enum Actual {
    Delivered(serde_json::Value),
    Dropped {
        stage: String,
        reason: String,
    },
    DeadLettered {
        stage: String,
        reason: String,
        message: String,
    },
    Panicked {
        stage: String,
        message: String,
    },
}

/// Why a test failed: what differs, and the expected and actual outcomes
/// rendered as pretty JSON-like text, for a line diff.
#[derive(Debug)]
pub struct Failure {
    /// One line per difference.
    pub problems: Vec<String>,
    /// The expectation, rendered.
    pub expected: String,
    /// What happened, rendered the same way.
    pub actual: String,
    /// The delivered event, pretty JSON, when there was one.
    pub output: Option<String>,
}

/// Runs one test on `stages` (all of the pipeline's, built, in order).
pub fn run_case(case: &TestCase, stages: &[(String, Arc<dyn Stage>)]) -> Result<(), Failure> {
    let actual = process(case, stages);
    compare(&case.expect, &actual)
}

fn process(case: &TestCase, stages: &[(String, Arc<dyn Stage>)]) -> Actual {
    let mut event = Event::new(
        Origin {
            partition: 0,
            offset: 0,
        },
        case.input.clone(),
    );
    for &index in &case.stages {
        let Some((name, stage)) = stages.get(index) else {
            continue;
        };
        match catch_unwind(AssertUnwindSafe(|| stage.process(&mut event))) {
            Ok(Ok(Outcome::Keep)) => {}
            Ok(Ok(Outcome::Drop(reason))) => {
                return Actual::Dropped {
                    stage: name.clone(),
                    reason: reason.into_owned(),
                }
            }
            Ok(Err(error)) => {
                return Actual::DeadLettered {
                    stage: name.clone(),
                    reason: error.reason.into_owned(),
                    message: error.message,
                }
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(a panic without a message)".to_owned());
                return Actual::Panicked {
                    stage: name.clone(),
                    message,
                };
            }
        }
    }
    let value = match event.value() {
        Some(value) => serde_json::to_value(value)
            .unwrap_or_else(|e| serde_json::Value::String(format!("(unprintable: {e})"))),
        // No stage parsed it: the sink would write the raw line.
        None => serde_json::Value::String(String::from_utf8_lossy(event.raw()).into_owned()),
    };
    Actual::Delivered(value)
}

/// One rendered value in a view.
#[derive(Clone, Debug, PartialEq)]
enum Shown {
    Json(serde_json::Value),
    Absent,
    Present,
    Contains(String),
    Nothing,
    Fields(Vec<(String, Shown)>),
}

fn compare(expect: &Expect, actual: &Actual) -> Result<(), Failure> {
    let mut problems = Vec::new();
    let mut expected_view: Vec<(String, Shown)> = Vec::new();
    let mut actual_view: Vec<(String, Shown)> = Vec::new();
    let text = |s: &str| Shown::Json(serde_json::Value::String(s.to_owned()));

    let (outcome, stage, reason, message, output) = match actual {
        Actual::Delivered(value) => ("delivered", None, None, None, Some(value)),
        Actual::Dropped { stage, reason } => ("dropped", Some(stage), Some(reason), None, None),
        Actual::DeadLettered {
            stage,
            reason,
            message,
        } => (
            "dead_lettered",
            Some(stage),
            Some(reason),
            Some(message),
            None,
        ),
        Actual::Panicked { stage, message } => {
            problems.push(format!("stage `{stage}` panicked: {message}"));
            ("panicked", Some(stage), None, Some(message), None)
        }
    };
    expected_view.push(("outcome".into(), text(expect.outcome.as_str())));
    actual_view.push(("outcome".into(), text(outcome)));
    if outcome != expect.outcome.as_str() && !matches!(actual, Actual::Panicked { .. }) {
        problems.push(format!(
            "outcome: expected {}, got {outcome}",
            expect.outcome.as_str()
        ));
    }
    let shown = |value: Option<&String>| value.map_or(Shown::Nothing, |v| text(v));
    if expect.stage.is_some() || stage.is_some() {
        if let Some(want) = &expect.stage {
            expected_view.push(("stage".into(), text(want)));
            if stage != Some(want) {
                problems.push(format!("stage: expected `{want}`, got {}", describe(stage)));
            }
        }
        actual_view.push(("stage".into(), shown(stage)));
    }
    if expect.reason.is_some() || reason.is_some() {
        if let Some(want) = &expect.reason {
            expected_view.push(("reason".into(), text(want)));
            if reason != Some(want) {
                problems.push(format!(
                    "reason: expected `{want}`, got {}",
                    describe(reason)
                ));
            }
        }
        actual_view.push(("reason".into(), shown(reason)));
    }
    if expect.message_contains.is_some() || message.is_some() {
        if let Some(want) = &expect.message_contains {
            expected_view.push(("message".into(), Shown::Contains(want.clone())));
            if !message.is_some_and(|m| m.contains(want.as_str())) {
                problems.push(format!("message: expected it to contain {want:?}"));
            }
        }
        actual_view.push(("message".into(), shown(message)));
    }

    let fields_named =
        !expect.fields.is_empty() || !expect.present.is_empty() || !expect.absent.is_empty();
    if fields_named {
        let mut want_fields = Vec::new();
        let mut got_fields = Vec::new();
        let mut paths: Vec<(&String, Shown)> = expect
            .fields
            .iter()
            .map(|(path, value)| (path, Shown::Json(value.clone())))
            .collect();
        paths.extend(expect.present.iter().map(|path| (path, Shown::Present)));
        paths.extend(expect.absent.iter().map(|path| (path, Shown::Absent)));
        for (path, want) in paths {
            let found = output.and_then(|value| lookup(value, path));
            let got = match (&want, found) {
                (_, None) => Shown::Absent,
                (Shown::Present, Some(_)) => Shown::Present,
                (_, Some(value)) => Shown::Json(value.clone()),
            };
            let ok = match (&want, &got) {
                (Shown::Json(want), Shown::Json(got)) => json_eq(want, got),
                (want, got) => want == got,
            };
            if !ok && output.is_some() {
                problems.push(format!(
                    "field `{path}`: expected {}, got {}",
                    render_inline(&want),
                    render_inline(&got)
                ));
            }
            want_fields.push((path.clone(), want));
            got_fields.push((path.clone(), got));
        }
        expected_view.push(("fields".into(), Shown::Fields(want_fields)));
        actual_view.push(("fields".into(), Shown::Fields(got_fields)));
    }
    if let Some(want) = &expect.output {
        expected_view.push(("output".into(), Shown::Json(want.clone())));
        actual_view.push((
            "output".into(),
            output.map_or(Shown::Nothing, |v| Shown::Json(v.clone())),
        ));
        if output.is_some_and(|got| !json_eq(want, got)) {
            problems.push("output: differs from the expected object".to_owned());
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Failure {
        problems,
        expected: render(&expected_view),
        actual: render(&actual_view),
        output: output
            .filter(|_| expect.output.is_none())
            .and_then(|v| serde_json::to_string_pretty(v).ok()),
    })
}

fn describe(value: Option<&String>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| format!("`{v}`"))
}

/// The value at a dotted path of a JSON object.
fn lookup<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.')
        .try_fold(value, |node, key| node.as_object()?.get(key))
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

fn render_inline(shown: &Shown) -> String {
    match shown {
        Shown::Json(value) => value.to_string(),
        Shown::Absent => "<absent>".to_owned(),
        Shown::Present => "<present>".to_owned(),
        Shown::Nothing => "<none>".to_owned(),
        Shown::Contains(part) => format!("<contains {part:?}>"),
        Shown::Fields(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k:?}: {}", render_inline(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// A view as an indented JSON-like object, one member per line, so a line
/// diff of two views shows what differs.
fn render(view: &[(String, Shown)]) -> String {
    let mut out = String::new();
    render_members(&mut out, view, 0);
    out
}

fn render_members(out: &mut String, members: &[(String, Shown)], depth: usize) {
    let pad = "  ".repeat(depth);
    out.push_str("{\n");
    for (i, (key, value)) in members.iter().enumerate() {
        let _ = write!(out, "{pad}  {key:?}: ");
        match value {
            Shown::Fields(fields) => render_members(out, fields, depth + 1),
            Shown::Json(json) => {
                let pretty =
                    serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string());
                let indented = pretty.replace('\n', &format!("\n{pad}  "));
                out.push_str(&indented);
            }
            other => out.push_str(&render_inline(other)),
        }
        if i + 1 < members.len() {
            out.push(',');
        }
        out.push('\n');
    }
    let _ = write!(out, "{pad}}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config_from;
    use crew_pipeline::StageError;

    const PIPELINE: &str = r#"
[source]
type = "stdin"
[[stages]]
name = "parse"
type = "parse_json"
[[stages]]
name = "consent"
type = "filter"
rules = [{ reason = "consent", when = { op = "not_true", field = "consent.marketing" } }]
[[stages]]
name = "tag"
type = "edit"
ops = [{ op = "set", target = "meta.tagged", value = true }, { op = "delete", field = "secret" }]
[sink]
type = "stdout"
[dead_letter]
type = "blackhole"
"#;

    fn cases(tests: &str) -> Result<TestFile, ConfigError> {
        let config = config_from(PIPELINE).unwrap();
        parse_tests(
            Path::new("p.tests.toml"),
            tests.to_owned(),
            &config.stage_names(),
        )
    }

    fn run_all(tests: &str) -> Vec<Result<(), Failure>> {
        let config = config_from(PIPELINE).unwrap();
        let stages = config.stages().unwrap();
        cases(tests)
            .unwrap()
            .cases
            .iter()
            .map(|case| run_case(case, &stages))
            .collect()
    }

    #[test]
    fn tests_path_is_beside_the_config() {
        assert_eq!(
            tests_path_for(Path::new("examples/pixels.toml")),
            Path::new("examples/pixels.tests.toml")
        );
    }

    #[test]
    fn passing_expectations_pass() {
        let results = run_all(
            r#"
[[tests]]
name = "delivered"
input_json = { consent = { marketing = true }, secret = "x", n = 1 }
[tests.expect]
outcome = "delivered"
fields = { "meta.tagged" = true, n = 1.0 }
present = ["consent.marketing"]
absent = ["secret"]

[[tests]]
name = "dropped"
stages = ["parse", "consent"]
input = '{"consent": {}}'
[tests.expect]
outcome = "dropped"
reason = "consent"
stage = "consent"

[[tests]]
name = "malformed"
to = "parse"
input = '{"consent": '
[tests.expect]
outcome = "dead_lettered"
reason = "parse"
message_contains = "invalid JSON"

[[tests]]
name = "a stage that needs a parsed value"
from = "tag"
input = '{}'
[tests.expect]
outcome = "dead_lettered"
reason = "unparsed"
"#,
        );
        for result in &results {
            assert!(result.is_ok(), "{result:?}");
        }
        assert_eq!(results.len(), 4);
    }

    #[test]
    fn a_wrong_expectation_fails_with_both_views() {
        let results = run_all(
            r#"
[[tests]]
name = "wrong"
input_json = { consent = { marketing = true }, secret = "x" }
[tests.expect]
outcome = "delivered"
fields = { "meta.tagged" = false }
absent = ["consent"]
"#,
        );
        let failure = results[0].as_ref().unwrap_err();
        assert_eq!(failure.problems.len(), 2, "{:?}", failure.problems);
        assert!(failure.problems[0].contains("field `meta.tagged`: expected false, got true"));
        assert!(
            failure.expected.contains("\"meta.tagged\": false"),
            "{}",
            failure.expected
        );
        assert!(
            failure.actual.contains("\"meta.tagged\": true"),
            "{}",
            failure.actual
        );
        assert!(failure.expected.contains("\"consent\": <absent>"));
        assert!(
            failure.actual.contains("\"consent\": {"),
            "{}",
            failure.actual
        );
        assert!(failure
            .output
            .as_ref()
            .unwrap()
            .contains("\"tagged\": true"));
    }

    #[test]
    fn a_wrong_outcome_shows_what_happened() {
        let results = run_all(
            r#"
[[tests]]
name = "expected delivery"
input = '{"consent": {"marketing": false}}'
[tests.expect]
outcome = "delivered"
"#,
        );
        let failure = results[0].as_ref().unwrap_err();
        assert_eq!(
            failure.problems,
            ["outcome: expected delivered, got dropped"]
        );
        assert!(failure.actual.contains("\"reason\": \"consent\""));
        assert!(failure.actual.contains("\"stage\": \"consent\""));
    }

    #[test]
    fn a_panicking_stage_fails_the_test() {
        let case = cases(
            r#"
[[tests]]
name = "boom"
stages = ["parse"]
input = '{}'
[tests.expect]
outcome = "delivered"
"#,
        )
        .unwrap()
        .cases
        .remove(0);
        let panicking: Arc<dyn Stage> =
            Arc::new(|_: &mut Event| -> Result<Outcome, StageError> { panic!("kaboom") });
        // The panic hook is left alone (other tests run in parallel): the
        // harness captures what it prints.
        let failure = run_case(&case, &[("parse".to_owned(), panicking)]).unwrap_err();
        assert_eq!(failure.problems, ["stage `parse` panicked: kaboom"]);
    }

    #[test]
    fn test_file_errors_name_the_key_and_line() {
        let error = |tests: &str| cases(tests).unwrap_err();
        let e = error("[[tests]]\nname = \"a\"\ninput = '{}'\nstages = [\"parse\", \"nope\"]\n[tests.expect]\noutcome = \"delivered\"\n");
        assert_eq!(e.key(), Some("tests[0].stages"));
        assert_eq!(e.at().unwrap().line, 4);
        assert!(e.message().contains("no stage `nope`"), "{e}");

        let e =
            error("[[tests]]\nname = \"a\"\ninput = '{}'\n[tests.expect]\noutcome = \"kept\"\n");
        assert_eq!(e.key(), Some("tests[0].expect.outcome"));
        assert_eq!(e.at().unwrap().line, 5);
        assert!(e.message().contains("unknown variant `kept`"), "{e}");

        let e = error("[[tests]]\nname = \"a\"\ninput = '{}'\n[tests.expect]\noutcome = \"delivered\"\nreason = \"x\"\n");
        assert_eq!(e.key(), Some("tests[0].expect.reason"));
        assert_eq!(e.at().unwrap().line, 6);

        let e = error("[[tests]]\nname = \"a\"\n[tests.expect]\noutcome = \"delivered\"\n");
        assert!(e.message().contains("missing the event"), "{e}");

        let e = error("[[tests]]\nname = \"a\"\ninput = '{}'\nexpected = 1\n");
        assert_eq!(e.key(), Some("tests[0].expected"));
        assert!(e.message().contains("unknown field `expected`"), "{e}");

        let e = error("");
        assert!(e.to_string().contains("no tests"), "{e}");
    }

    #[test]
    fn a_toml_datetime_in_a_test_is_refused_with_its_key() {
        let e = cases(
            "[[tests]]\nname = \"a\"\ninput_json = { ts = 1979-05-27T07:32:00Z }\n[tests.expect]\noutcome = \"delivered\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("tests[0].input_json.ts"));
        assert_eq!(e.at().unwrap().line, 3);
        assert!(
            e.message()
                .contains("write dates as strings: \"1979-05-27T07:32:00Z\""),
            "{e}"
        );
        let e = cases(
            "[[tests]]\nname = \"a\"\ninput = '{}'\n[tests.expect]\noutcome = \"delivered\"\nfields = { day = 07:32:00 }\n",
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("tests[0].expect.fields.day"));
        assert_eq!(e.at().unwrap().line, 6);
        assert!(
            e.message().contains("write dates as strings: \"07:32:00\""),
            "{e}"
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        let j = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert!(json_eq(&j("1"), &j("1.0")));
        assert!(json_eq(&j("{\"a\":[1,2.5]}"), &j("{\"a\":[1.0,2.5]}")));
        assert!(!json_eq(&j("1"), &j("\"1\"")));
        assert!(!json_eq(&j("{\"a\":1}"), &j("{\"a\":1,\"b\":2}")));
    }
}
