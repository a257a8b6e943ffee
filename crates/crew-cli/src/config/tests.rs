//! Unit tests of pipeline files: each kind of error, the wiring, and the
//! Server Pixels example against `PixelsConfig`.

use std::path::Path;

use crew_pipeline::pixels::PixelsConfig;
use crew_pipeline::sources::{GeneratorConfig, LineKind, MalformedKind, PixelsEvents};
use crew_pipeline::{Event, Ordering, Origin, Outcome};

use super::*;

/// The environment the tests see: only these.
fn env(name: &str) -> Option<String> {
    match name {
        "CREW_TEST_EVENTS" => Some("1234".to_owned()),
        "CREW_TEST_LONG" => Some("a-rather-long-value".to_owned()),
        _ => None,
    }
}

/// A config from `text`, as if read from `p.toml`.
pub(crate) fn config_from(text: &str) -> Result<ServiceConfig, ConfigError> {
    parse(Path::new("p.toml"), text.to_owned(), env)
}

const TAIL: &str = "\n[sink]\ntype = \"blackhole\"\n[dead_letter]\ntype = \"blackhole\"\n";

/// A config of `head` (source and stages) with blackhole sinks.
fn with_sinks(head: &str) -> Result<ServiceConfig, ConfigError> {
    config_from(&format!("{head}{TAIL}"))
}

fn error(head: &str) -> ConfigError {
    match with_sinks(head) {
        Ok(_) => panic!("expected an error for:\n{head}"),
        Err(error) => error,
    }
}

fn line_col(error: &ConfigError) -> (usize, usize) {
    let at = error.at().expect("a position");
    (at.line, at.column)
}

#[test]
fn a_minimal_file_loads_with_defaults() {
    let config = with_sinks("[source]\ntype = \"stdin\"").unwrap();
    assert_eq!(config.name, "p");
    assert_eq!(config.settings, Settings::default());
    assert_eq!(config.admin.listen, Some(DEFAULT_ADMIN_LISTEN));
    assert!(config.stages().unwrap().is_empty());
    assert_eq!(
        config.summary(),
        "pipeline p: source stdin, 0 stages, sink blackhole, dead letters blackhole"
    );
    config.check().unwrap();
}

#[test]
fn settings_and_admin_are_read() {
    let config = with_sinks(
        "[pipeline]\nname = \"shop\"\nworkers = 3\nordering = \"partition\"\ndrain_timeout = \"5s\"\n\
         [pipeline.batch]\nmax_events = 64\n[pipeline.stage_retry]\nmax_attempts = 2\n\
         [admin]\nenabled = false\n[source]\ntype = \"stdin\"",
    )
    .unwrap();
    assert_eq!(config.name, "shop");
    assert_eq!(config.settings.workers, 3);
    assert_eq!(config.settings.ordering, Ordering::Partition);
    assert_eq!(
        config.settings.drain_timeout,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(config.settings.batch.max_events, 64);
    assert_eq!(config.settings.stage_retry.max_attempts, 2);
    assert_eq!(config.admin.listen, None);

    let config =
        with_sinks("[admin]\nlisten = \"0.0.0.0:9000\"\n[source]\ntype = \"stdin\"").unwrap();
    assert_eq!(config.admin.listen, Some("0.0.0.0:9000".parse().unwrap()));
}

#[test]
fn an_unknown_key_lists_the_allowed_ones() {
    let e = error("[source]\ntype = \"generator\"\ncont = 5");
    assert_eq!(e.key(), Some("source.cont"));
    assert_eq!(line_col(&e), (3, 1));
    assert!(
        e.message()
            .starts_with("unknown field `cont`, expected one of `type`, `seed`, `count`"),
        "{e}"
    );
    // In [pipeline], `name` is allowed too.
    let e = error("[pipeline]\nwrkers = 2\n[source]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("pipeline.wrkers"));
    assert!(e.message().contains("`name`, `workers`"), "{e}");
    // Deep inside a stage.
    let e = error(
        "[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"validate\"\nrules = [\n  { field = \"a\", check = \"string\", lenght = 3 },\n]",
    );
    assert_eq!(e.key(), Some("stages[0].rules[0].lenght"));
    assert_eq!(e.at().unwrap().line, 6);
}

#[test]
fn an_unknown_key_in_a_tagged_table_is_found() {
    // A filter's `when` is an internally tagged enum: serde buffers it and
    // loses the span; the key is looked up in the table instead.
    let e = error(
        "[source]\ntype = \"stdin\"\n[[stages]]\nname = \"f\"\ntype = \"filter\"\nrules = [\n  { reason = \"r\", when = { op = \"in\", fild = \"region\", values = [] } },\n]",
    );
    assert_eq!(e.key(), Some("stages[0].rules[0].when.fild"));
    assert_eq!(line_col(&e), (7, 39));
    assert!(e.message().contains("unknown field `fild`"), "{e}");
}

#[test]
fn a_wrong_type_names_the_key_and_what_was_expected() {
    let e = error("[source]\ntype = \"generator\"\ncount = \"x\"");
    assert_eq!(e.key(), Some("source.count"));
    assert_eq!(line_col(&e), (3, 9));
    assert_eq!(e.message(), "invalid type: string \"x\", expected u64");
    assert_eq!(
        e.to_string(),
        "p.toml:3:9: key `source.count`: invalid type: string \"x\", expected u64"
    );
    let e = error("[pipeline]\ndrain_timeout = \"soon\"\n[source]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("pipeline.drain_timeout"));
    assert_eq!(e.at().unwrap().line, 2);
    let e = error("source = 3");
    assert_eq!(e.key(), Some("source"));
    assert_eq!(e.message(), "expected a table, found an integer");
}

#[test]
fn a_bad_enum_value_lists_the_variants() {
    let e = error("[pipeline]\nordering = \"keyed\"\n[source]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("pipeline.ordering"));
    assert_eq!(line_col(&e), (2, 12));
    assert!(
        e.message()
            .contains("unknown variant `keyed`, expected one of `unordered`, `key`, `partition`"),
        "{e}"
    );
}

#[test]
fn types_missing_or_unknown_list_the_known_ones() {
    let e = error("[source]\npath = \"x\"");
    assert_eq!(e.key(), Some("source"));
    assert_eq!(e.at().unwrap().line, 1);
    assert!(e.message().contains("`generator`, `file`, `stdin`"), "{e}");

    let e = error("[source]\ntype = \"pulsar\"");
    assert_eq!(e.key(), Some("source.type"));
    assert_eq!(line_col(&e), (2, 8));
    assert!(
        e.message().starts_with(
            "unknown source type `pulsar`, expected one of `generator`, `file`, `stdin`, `kafka`"
        ),
        "{e}"
    );

    let e = error(
        "[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"parse_json\"\n[[stages]]\ntype = \"parse\"",
    );
    assert_eq!(e.key(), Some("stages[1].type"));
    assert_eq!(e.at().unwrap().line, 6);
    assert!(
        e.message().contains(
            "unknown stage type `parse`, expected one of `parse_json`, `validate`, `filter`, `edit`, `remap`"
        ),
        "{e}"
    );

    let e = error("[source]\ntype = 7");
    assert_eq!(e.key(), Some("source.type"));
    assert!(e.message().contains("found an integer"), "{e}");

    let e = config_from(
        "[source]\ntype = \"stdin\"\n[sink]\ntype = \"void\"\n[dead_letter]\ntype = \"blackhole\"",
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("sink.type"));
    assert!(e.message().contains("`file`, `stdout`, `blackhole`"), "{e}");
}

#[test]
fn an_unknown_table_is_an_error() {
    let e = error("[sources]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("sources"));
    assert_eq!(line_col(&e), (1, 2));
    assert!(e
        .message()
        .contains("expected one of `pipeline`, `admin`, `source`"));
}

#[test]
fn missing_sections_are_named() {
    let e = config_from("[source]\ntype = \"stdin\"\n[sink]\ntype = \"stdout\"").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("p.toml: there is no `[dead_letter]` table"),
        "{e}"
    );
    let e = config_from("[sink]\ntype = \"stdout\"\n[dead_letter]\ntype = \"stdout\"").unwrap_err();
    assert!(e.to_string().contains("no `[source]` table"), "{e}");
}

#[test]
fn environment_variables_are_replaced_and_missing_ones_named() {
    let config = with_sinks("[source]\ntype = \"generator\"\ncount = ${CREW_TEST_EVENTS}").unwrap();
    assert!(
        config.summary().contains("generator (1234 events, seed 1)"),
        "{}",
        config.summary()
    );
    let config = with_sinks("[source]\ntype = \"generator\"\ncount = ${NOT_SET:-77}").unwrap();
    assert!(
        config.summary().contains("(77 events"),
        "{}",
        config.summary()
    );

    let e = error(
        "[source]\ntype = \"generator\"\n# ${NOT_SET} in a comment is fine\ncount = ${NOT_SET}",
    );
    assert_eq!(line_col(&e), (4, 9));
    assert_eq!(e.key(), None);
    assert!(e.message().contains("`NOT_SET` is not set"), "{e}");

    // Positions after a replacement are those of the file as written.
    let e = error("[source]\ntype = \"generator\"\nseed = 1 # ${CREW_TEST_LONG}\n[[stages]]\nname = \"${CREW_TEST_LONG}\"\ntype = \"x\"");
    assert_eq!(line_col(&e), (6, 8));
    let e = error("[source]\ntype = \"${CREW_TEST_LONG}\"");
    assert_eq!(line_col(&e), (2, 8));
    assert!(e.message().contains("`a-rather-long-value`"), "{e}");
}

#[test]
fn duplicate_stage_names_are_an_error() {
    let e = error(
        "[source]\ntype = \"stdin\"\n[[stages]]\nname = \"p\"\ntype = \"parse_json\"\n[[stages]]\nname = \"p\"\ntype = \"parse_json\"",
    );
    assert_eq!(e.key(), Some("stages[1].name"));
    assert_eq!(line_col(&e), (7, 1));
    assert!(
        e.message().contains("already used by stages[0] (line 3)"),
        "{e}"
    );
    // Unnamed stages are named after their type.
    let e = error("[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"parse_json\"\n[[stages]]\ntype = \"parse_json\"");
    assert!(
        e.message()
            .contains("stage name `parse_json` is already used"),
        "{e}"
    );
}

#[test]
fn zero_limits_and_workers_are_errors() {
    let e = error("[pipeline]\nworkers = 0\n[source]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("pipeline.workers"));
    assert_eq!(e.at().unwrap().line, 2);
    let e = error("[pipeline.budget]\nmax_events = 0\n[source]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("pipeline.budget.max_events"));
    assert_eq!(e.at().unwrap().line, 2);
    let e = error("[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"parse_json\"\nworkers = 0");
    assert_eq!(e.key(), Some("stages[0].workers"));
    let e =
        error("[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"parse_json\"\nworkers = \"many\"");
    assert_eq!(e.key(), Some("stages[0].workers"));
    assert!(e.message().contains("expected usize"), "{e}");
}

#[test]
fn generator_settings_are_checked_at_load() {
    let e = error("[source]\ntype = \"generator\"\nmalformed = 2.0");
    assert_eq!(e.key(), Some("source.malformed"));
    assert_eq!(e.at().unwrap().line, 3);
}

#[test]
fn stage_settings_are_checked_when_built() {
    let config =
        with_sinks("[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"parse_json\"\nmax_bytes = 0")
            .unwrap();
    let e = config.check().unwrap_err().to_string();
    assert_eq!(
        e,
        "p.toml:5:1: key `stages[0].max_bytes`: parse_json: `max_bytes` must be at least 1"
    );
    let e = error(
        "[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"validate\"\nrules = [{ field = \"a..b\", check = \"string\" }]",
    );
    assert_eq!(e.key(), Some("stages[0].rules[0].field"));
    assert!(e.message().contains("empty key"), "{e}");
}

#[test]
fn a_toml_syntax_error_has_a_position() {
    let e = error("[source]\ntype = \"stdin\nx = 1");
    assert_eq!(e.key(), None);
    assert_eq!(e.at().unwrap().line, 2);
    assert!(e.message().starts_with("TOML: "), "{e}");
}

#[cfg(not(feature = "remap"))]
#[test]
fn remap_without_the_feature_names_the_feature() {
    let e = error("[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"remap\"\nprogram = \".a = 1\"");
    assert_eq!(e.key(), Some("stages[0].type"));
    assert_eq!(line_col(&e), (4, 8));
    assert!(e.message().contains("the `remap` feature"), "{e}");
}

#[cfg(feature = "remap")]
#[test]
fn remap_programs_compile_in_check() {
    let config = with_sinks(
        "[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"parse_json\"\n[[stages]]\nname = \"r\"\ntype = \"remap\"\nprogram = \".a = 1\"",
    )
    .unwrap();
    config.check().unwrap();
    let config = with_sinks(
        "[source]\ntype = \"stdin\"\n[[stages]]\nname = \"r\"\ntype = \"remap\"\nprogram = \".a = \"",
    )
    .unwrap();
    let e = config.check().unwrap_err().to_string();
    assert!(
        e.starts_with("p.toml:6:1: key `stages[0].program`: remap: `program` does not compile:\n"),
        "{e}"
    );
    let e =
        error("[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"remap\"\nprogramme = \".a = 1\"");
    assert_eq!(e.key(), Some("stages[0].programme"));
}

#[test]
fn outputs_cannot_share_a_file() {
    let e = config_from(
        "[source]\ntype = \"stdin\"\n[sink]\ntype = \"file\"\npath = \"o.ndjson\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"o.ndjson\"",
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("dead_letter.path"));
    assert_eq!(e.at().unwrap().line, 8);
    let e = config_from(
        "[source]\ntype = \"file\"\npath = \"in.ndjson\"\n[sink]\ntype = \"file\"\npath = \"in.ndjson\"\n\
         [dead_letter]\ntype = \"blackhole\"",
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("sink.path"));
}

#[test]
fn check_has_no_side_effects_and_wire_opens_everything() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, b"{\"a\":1}\n").unwrap();
    let out = dir.path().join("out/deep/o.ndjson");
    let dead = dir.path().join("out/d.ndjson");
    let checkpoint = dir.path().join("state/in.checkpoint");
    let text = format!(
        "[source]\ntype = \"file\"\npath = {:?}\ncheckpoint = {:?}\n[[stages]]\ntype = \"parse_json\"\n\
         [sink]\ntype = \"file\"\npath = {:?}\n[dead_letter]\ntype = \"file\"\npath = {:?}",
        input.display().to_string(),
        checkpoint.display().to_string(),
        out.display().to_string(),
        dead.display().to_string()
    );
    let config = config_from(&text).unwrap();
    config.check().unwrap();
    assert!(!dir.path().join("out").exists(), "check creates nothing");
    assert!(!dir.path().join("state").exists());

    let wired = config.wire().unwrap();
    assert!(out.exists() && dead.exists(), "wire opens the sinks");
    assert!(dir.path().join("state").is_dir());
    assert_eq!(
        wired.source,
        format!(
            "file {} (checkpoint {})",
            input.display(),
            checkpoint.display()
        )
    );
    assert_eq!(wired.outputs[0], ("output", out.display().to_string()));
    assert_eq!(
        wired.outputs[1],
        ("dead letters", dead.display().to_string())
    );
    let report = wired.builder.build().unwrap().run();
    assert_eq!((report.read, report.delivered), (1, 1));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"a\":1}\n");

    // A missing input is found by check.
    let missing = text.replace("in.ndjson\"", "nope.ndjson\"");
    let e = config_from(&missing)
        .unwrap()
        .check()
        .unwrap_err()
        .to_string();
    assert!(e.contains("key `source.path`: cannot read"), "{e}");
    // An output under a file cannot be created.
    let blocked = text.replace("out/d.ndjson", "in.ndjson/d.ndjson");
    let e = config_from(&blocked)
        .unwrap()
        .check()
        .unwrap_err()
        .to_string();
    assert!(e.contains("key `dead_letter.path`"), "{e}");
    assert!(e.contains("is not a directory"), "{e}");
}

#[test]
fn huge_workers_and_lanes_are_errors() {
    let e = error("[pipeline]\nworkers = 18446744073709551615\n[source]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("pipeline.workers"));
    assert_eq!(line_col(&e), (2, 11));
    assert!(e.message().contains("at most 4096"), "{e}");
    let e = error(
        "[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"parse_json\"\nworkers = 18446744073709551615",
    );
    assert_eq!(e.key(), Some("stages[0].workers"));
    assert_eq!(line_col(&e), (5, 11));
    assert!(e.message().contains("at most 4096"), "{e}");
    let e = error("[pipeline]\nlanes = 18446744073709551615\n[source]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("pipeline.lanes"));
    assert_eq!(e.at().unwrap().line, 2);
    assert!(e.message().contains("at most 65536"), "{e}");
    let e = error("[pipeline]\nlanes = 65537\n[source]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("pipeline.lanes"));
    let e = error("[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"parse_json\"\nworkers = 4097");
    assert_eq!(e.key(), Some("stages[0].workers"));
    // The limits themselves are allowed.
    let config = with_sinks(
        "[pipeline]\nworkers = 4096\nlanes = 65536\n[source]\ntype = \"stdin\"\n\
         [[stages]]\ntype = \"parse_json\"\nworkers = 4096",
    )
    .unwrap();
    assert_eq!(config.settings.workers, 4096);
    assert_eq!(config.settings.lanes, Some(65536));
    assert_eq!(config.stages[0].workers, Some(4096));
}

#[test]
fn durations_past_a_day_are_errors() {
    for (table, key) in [
        ("pipeline", "commit_interval"),
        ("pipeline", "drain_timeout"),
        ("pipeline", "flush_interval"),
        ("pipeline.batch", "linger"),
        ("pipeline.stage_retry", "initial_backoff"),
        ("pipeline.sink_retry", "max_backoff"),
    ] {
        // `Instant::now() + this` overflows: `crew run` would panic.
        let e = error(&format!(
            "[{table}]\n{key} = \"18446744073709551615s\"\n[source]\ntype = \"stdin\""
        ));
        assert_eq!(e.key(), Some(format!("{table}.{key}").as_str()));
        assert_eq!(e.at().unwrap().line, 2, "{e}");
        assert!(e.message().contains("at most 1 day"), "{e}");
        with_sinks(&format!(
            "[{table}]\n{key} = \"24h\"\n[source]\ntype = \"stdin\""
        ))
        .unwrap();
    }
}

#[test]
fn huge_batch_and_budget_limits_run() {
    // Nothing is allocated up front from these: a huge one only means "no
    // limit", so they are not capped.
    let config = config_from(
        "[pipeline]\nworkers = 1\n\
         [pipeline.batch]\nmax_events = 18446744073709551615\nmax_bytes = 18446744073709551615\n\
         [pipeline.budget]\nmax_events = 18446744073709551615\nmax_bytes = 18446744073709551615\n\
         max_per_partition = 18446744073709551615\n\
         [source]\ntype = \"generator\"\ncount = 50\n[[stages]]\ntype = \"parse_json\"\n\
         [sink]\ntype = \"blackhole\"\n[dead_letter]\ntype = \"blackhole\"",
    )
    .unwrap();
    config.check().unwrap();
    let report = config.wire().unwrap().builder.build().unwrap().run();
    assert_eq!((report.read, report.delivered), (50, 50));
}

#[test]
fn outputs_cannot_share_a_file_however_it_is_written() {
    let files = |input: &str, out: &str, dead: &str| {
        config_from(&format!(
            "[source]\ntype = \"file\"\npath = {input:?}\n[sink]\ntype = \"file\"\npath = {out:?}\n\
             [dead_letter]\ntype = \"file\"\npath = {dead:?}"
        ))
    };
    let e = files("in.ndjson", "./in.ndjson", "d.ndjson").unwrap_err();
    assert_eq!(e.key(), Some("sink.path"));
    assert_eq!(e.at().unwrap().line, 6);
    assert_eq!(
        e.message(),
        "./in.ndjson is the file the source reads (in.ndjson)"
    );
    let e = files("in.ndjson", "out/a", "out/../out/a").unwrap_err();
    assert_eq!(e.key(), Some("dead_letter.path"));
    assert_eq!(e.at().unwrap().line, 9);
    assert!(e.message().contains("is also the sink's"), "{e}");
    let e = files("logs/../in.ndjson", "o.ndjson", "in.ndjson").unwrap_err();
    assert_eq!(e.key(), Some("dead_letter.path"));
    // An absolute path and a relative one to the same place.
    let cwd = std::env::current_dir().unwrap();
    let absolute = cwd.join("x/in.ndjson").display().to_string();
    let e = files(&absolute, "x/./in.ndjson", "d.ndjson").unwrap_err();
    assert_eq!(e.key(), Some("sink.path"));
    // Different files pass.
    files("in.ndjson", "out/in.ndjson", "../in.ndjson").unwrap();
    // Nor can the checkpoint share one.
    let checkpoint = |checkpoint: &str| {
        config_from(&format!(
            "[source]\ntype = \"file\"\npath = \"in.ndjson\"\ncheckpoint = {checkpoint:?}\n\
             [sink]\ntype = \"file\"\npath = \"o.ndjson\"\n[dead_letter]\ntype = \"blackhole\""
        ))
    };
    let e = checkpoint("./o.ndjson").unwrap_err();
    assert_eq!(e.key(), Some("source.checkpoint"));
    assert_eq!(e.at().unwrap().line, 4);
    assert_eq!(
        e.message(),
        "./o.ndjson is an output (o.ndjson): the checkpoint needs a file of its own"
    );
    let e = checkpoint("in.ndjson").unwrap_err();
    assert_eq!(
        e.message(),
        "in.ndjson is the file the source reads: the checkpoint needs a file of its own"
    );
    checkpoint("state/in.checkpoint").unwrap();

    // Existing files are compared by device and inode: a symlink or a hard
    // link is the same file.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, b"{}\n").unwrap();
    let symlink = dir.path().join("sym.ndjson");
    std::os::unix::fs::symlink(&input, &symlink).unwrap();
    let hard = dir.path().join("hard.ndjson");
    std::fs::hard_link(&input, &hard).unwrap();
    let path = |p: &Path| p.display().to_string();
    let other = path(&dir.path().join("d.ndjson"));
    let e = files(&path(&input), &path(&symlink), &other).unwrap_err();
    assert_eq!(e.key(), Some("sink.path"));
    let e = files(&path(&input), &other, &path(&hard)).unwrap_err();
    assert_eq!(e.key(), Some("dead_letter.path"));
    let out = dir.path().join("out.ndjson");
    std::fs::write(&out, b"").unwrap();
    let e = files(&path(&input), &path(&out), &path(&out)).unwrap_err();
    assert_eq!(e.key(), Some("dead_letter.path"));
    files(&path(&input), &path(&out), &other).unwrap();
}

#[test]
fn a_toml_datetime_is_refused_where_it_would_become_a_value() {
    let e = error(
        "[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"parse_json\"\n[[stages]]\ntype = \"edit\"\n\
         ops = [{ op = \"set\", target = \"when\", value = 1979-05-27T07:32:00Z }]",
    );
    assert_eq!(e.key(), Some("stages[1].ops[0].value"));
    assert_eq!(line_col(&e), (7, 47));
    assert!(
        e.message()
            .contains("write dates as strings: \"1979-05-27T07:32:00Z\""),
        "{e}"
    );
    // Anywhere: a local date in a filter's values.
    let e = error(
        "[source]\ntype = \"stdin\"\n[[stages]]\ntype = \"filter\"\nrules = [{ reason = \"r\", when = { op = \"in\", field = \"d\", values = [\"x\", 1979-05-27] } }]",
    );
    assert_eq!(e.key(), Some("stages[0].rules[0].when.values[1]"));
    assert!(
        e.message()
            .contains("write dates as strings: \"1979-05-27\""),
        "{e}"
    );
}

#[test]
fn the_admin_address_is_an_ip_address_and_port() {
    let e = error("[admin]\nlisten = \"localhost:9598\"\n[source]\ntype = \"stdin\"");
    assert_eq!(e.key(), Some("admin.listen"));
    assert_eq!(e.at().unwrap().line, 2);
    assert!(
        e.message()
            .contains("an IP address and port, e.g. 127.0.0.1:9598"),
        "{e}"
    );
    let config =
        with_sinks("[admin]\nlisten = \"[::1]:9000\"\n[source]\ntype = \"stdin\"").unwrap();
    assert_eq!(config.admin.listen, Some("[::1]:9000".parse().unwrap()));
}

#[test]
fn a_check_error_names_the_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let adir = dir.path().join("adir");
    std::fs::create_dir(&adir).unwrap();
    let config = config_from(&format!(
        "[source]\ntype = \"stdin\"\n[sink]\ntype = \"file\"\npath = {:?}\n[dead_letter]\ntype = \"blackhole\"",
        adir.display().to_string()
    ))
    .unwrap();
    assert_eq!(
        config.check().unwrap_err().to_string(),
        format!(
            "p.toml:5:1: key `sink.path`: {} is a directory",
            adir.display()
        )
    );
    let config = config_from(
        "[source]\ntype = \"stdin\"\n[sink]\ntype = \"file\"\npath = \"o.ndjson\"\n\
         buffer_bytes = 2147483648\n[dead_letter]\ntype = \"blackhole\"",
    )
    .unwrap();
    assert_eq!(
        config.check().unwrap_err().to_string(),
        "p.toml:6:1: key `sink.buffer_bytes`: must be at most 1073741824, not 2147483648"
    );
}

#[test]
fn an_input_that_is_not_a_regular_file_is_refused() {
    let input = |path: &Path| {
        config_from(&format!(
            "[source]\ntype = \"file\"\npath = {:?}\n[sink]\ntype = \"blackhole\"\n[dead_letter]\ntype = \"blackhole\"",
            path.display().to_string()
        ))
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let e = input(dir.path()).check().unwrap_err().to_string();
    assert!(e.contains("key `source.path`: "), "{e}");
    assert!(e.ends_with("is a directory"), "{e}");
    let e = input(Path::new("/dev/null"))
        .check()
        .unwrap_err()
        .to_string();
    assert!(e.contains("/dev/null is not a regular file"), "{e}");
    let e = match input(Path::new("/dev/null")).wire() {
        Ok(_) => panic!("`crew run` reads regular files only"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("/dev/null is not a regular file"), "{e}");
}

// --- the Server Pixels example ---

fn pixels_example() -> ServiceConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pixels.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // The defaults of the file, whatever this process's environment holds.
    parse(&path, text, |_| None).unwrap()
}

#[test]
fn the_pixels_example_is_the_pixels_workload() {
    let config = pixels_example();
    config.check().unwrap();
    assert_eq!(config.name, "pixels");
    assert_eq!(config.settings.ordering, Ordering::Key);
    assert_eq!(config.settings.key_field.as_deref(), Some("client_id"));
    assert_eq!(config.admin.listen, Some(DEFAULT_ADMIN_LISTEN));
    match &config.source.spec {
        SourceSpec::Generator(generator) => assert_eq!(
            *generator,
            GeneratorConfig {
                count: Some(1_000_000),
                seed: 1,
                malformed: 0.01,
                invalid: 0.01,
                ..GeneratorConfig::default()
            }
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(config.sink.spec.describe(), "out/partners.ndjson");
    assert_eq!(
        config.dead_letter.spec.describe(),
        "out/dead-letters.ndjson"
    );

    // Each stage's config is PixelsConfig's, key for key.
    let pixels = PixelsConfig::default();
    assert_eq!(
        config.stage_names(),
        ["parse", "validate", "consent", "augment"]
    );
    let specs: Vec<&StageSpec> = config.stages.iter().map(|p| &p.component.spec).collect();
    match specs[..] {
        [StageSpec::ParseJson(parse), StageSpec::Validate(validate), StageSpec::Filter(consent), StageSpec::Edit(augment)] =>
        {
            assert_eq!(*parse, pixels.parse_config());
            assert_eq!(*validate, pixels.validate_config());
            assert_eq!(*consent, pixels.consent_config());
            assert_eq!(*augment, pixels.augment_config());
        }
        _ => panic!("{specs:?}"),
    }
}

/// How one line ended: the stage's name and the outcome, or the output
/// without its time-dependent `processed_at`.
#[derive(Debug, PartialEq)]
enum End {
    Delivered(serde_json::Value),
    Dropped(String, String),
    Failed(String, String, String),
}

fn end(stages: &[(String, Arc<dyn Stage>)], line: &[u8], offset: u64) -> End {
    let mut event = Event::new(
        Origin {
            partition: 0,
            offset,
        },
        line.to_vec(),
    );
    for (name, stage) in stages {
        match stage.process(&mut event) {
            Ok(Outcome::Keep) => {}
            Ok(Outcome::Drop(reason)) => return End::Dropped(name.clone(), reason.into_owned()),
            Err(e) => return End::Failed(name.clone(), e.reason.into_owned(), e.message),
        }
    }
    let mut value = serde_json::to_value(event.value().unwrap()).unwrap();
    let object = value.as_object_mut().unwrap();
    let processed_at = object.remove("processed_at").expect("processed_at is set");
    assert!(processed_at.as_str().is_some_and(|s| s.ends_with('Z')));
    End::Delivered(value)
}

#[test]
fn the_pixels_example_gives_the_same_output_as_pixels_stages() {
    let from_file = pixels_example().stages().unwrap();
    let from_code = PixelsConfig::default().stages().unwrap();
    // 2% malformed over 6,000 lines is 120 of them; the 100th is oversize.
    let mut events = PixelsEvents::new(&GeneratorConfig {
        seed: 11,
        malformed: 0.02,
        invalid: 0.02,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    let mut line = Vec::new();
    let mut oversize = 0;
    for offset in 0..6_000 {
        line.clear();
        let info = events.next_line(&mut line);
        if info.kind == LineKind::Malformed(MalformedKind::Oversize) {
            oversize += 1;
        }
        let ours = end(&from_file, &line, offset);
        let theirs = end(&from_code, &line, offset);
        assert_eq!(
            ours,
            theirs,
            "line {offset}: {}",
            String::from_utf8_lossy(&line)
        );
        let label = match (&ours, info.kind) {
            (End::Delivered(_), LineKind::Valid) => "delivered",
            (End::Dropped(_, reason), LineKind::Valid) if reason == "consent" => "consent",
            (End::Dropped(_, reason), LineKind::Valid) if reason == "region_opt_out" => "region",
            (End::Failed(stage, reason, _), LineKind::Malformed(_))
                if stage == "parse" && reason == "parse" =>
            {
                "malformed"
            }
            (End::Failed(stage, reason, _), LineKind::Invalid(_))
                if stage == "validate" && reason == "invalid" =>
            {
                "invalid"
            }
            other => panic!("line {offset}: unexpected {other:?}"),
        };
        *counts.entry(label).or_default() += 1;
    }
    assert_eq!(oversize, 1);
    assert_eq!(counts["malformed"], 120);
    // Invalid lines are spread after malformed ones: 120 or one less.
    assert!((119..=120).contains(&counts["invalid"]), "{counts:?}");
    for label in ["delivered", "consent", "region"] {
        assert!(counts.get(label).is_some_and(|n| *n > 100), "{counts:?}");
    }
}

// --- Kafka ---

const KAFKA_SOURCE: &str =
    "[source]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"in\"\ngroup = \"g\"\n";

#[test]
fn kafka_components_load_and_describe_themselves() {
    let config = config_from(&format!(
        "{KAFKA_SOURCE}[sink]\ntype = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"out\"\n\
         [dead_letter]\ntype = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"dead\"\n"
    ))
    .unwrap();
    config.check().unwrap();
    assert_eq!(
        config.summary(),
        "pipeline p: source kafka topic in (group g, brokers 127.0.0.1:9092), 0 stages, \
         sink kafka topic out (brokers b:1), dead letters kafka topic dead (brokers b:1)"
    );
    match &config.source.spec {
        SourceSpec::Kafka(kafka) => {
            assert_eq!(kafka.revoke_timeout, Duration::from_secs(10));
            assert!(kafka.options.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

/// The check error of a Kafka source with `extra` lines in its table.
fn kafka_check_error(extra: &str) -> ConfigError {
    let config = with_sinks(&format!("{KAFKA_SOURCE}{extra}")).unwrap();
    config.check().unwrap_err().downcast().unwrap()
}

#[test]
fn kafka_options_crew_owns_are_refused_at_their_line() {
    let e = kafka_check_error("options.\"enable.auto.commit\" = \"true\"");
    assert_eq!(e.key(), Some("source.options.\"enable.auto.commit\""));
    assert_eq!(line_col(&e), (6, 9));
    assert!(e.message().contains("must be `false`"), "{e}");

    let e = kafka_check_error("[source.options]\n\"group.id\" = \"other\"");
    assert_eq!(e.key(), Some("source.options.\"group.id\""));
    assert_eq!(line_col(&e), (7, 1));
    assert_eq!(e.message(), "set `group` instead");

    let e = kafka_check_error("options = { \"bootstrap.servers\" = \"x:1\" }");
    assert_eq!(e.key(), Some("source.options.\"bootstrap.servers\""));
    assert_eq!(line_col(&e), (6, 13));
    assert_eq!(e.message(), "set `brokers` instead");
}

#[test]
fn kafka_options_librdkafka_does_not_know_are_refused() {
    let e = kafka_check_error("[source.options]\n\"sesion.timeout.ms\" = \"10000\"");
    assert_eq!(e.key(), Some("source.options.\"sesion.timeout.ms\""));
    assert_eq!(line_col(&e), (7, 1));
    assert!(
        e.message().contains("No such configuration property"),
        "{e}"
    );
    let e = kafka_check_error("[source.options]\n\"session.timeout.ms\" = \"soon\"");
    assert!(e.message().contains("Invalid value"), "{e}");
}

#[test]
fn kafka_settings_are_checked() {
    let e = error(&KAFKA_SOURCE.replace("topic = \"in\"", "topics = \"in\""));
    assert_eq!(e.key(), Some("source.topics"));
    assert_eq!(line_col(&e), (4, 1));
    assert!(e.message().starts_with("unknown field `topics`"), "{e}");

    let config = with_sinks(&KAFKA_SOURCE.replace("group = \"g\"", "group = \" \"")).unwrap();
    let e: ConfigError = config.check().unwrap_err().downcast().unwrap();
    assert_eq!(e.key(), Some("source.group"));

    let e = config_from(&format!(
        "{KAFKA_SOURCE}[sink]\ntype = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"out\"\n\
         delivery_attempts = 0\n[dead_letter]\ntype = \"blackhole\"\n"
    ))
    .unwrap()
    .check()
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("p.toml:10:1: key `sink.delivery_attempts`: "),
        "{e}"
    );
}

#[test]
fn a_kafka_sink_cannot_write_the_topic_it_reads_or_its_dead_letters() {
    let sink = |topic: &str| {
        format!("[sink]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"{topic}\"\n")
    };
    let dead = |topic: &str| {
        format!(
            "[dead_letter]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"{topic}\"\n"
        )
    };
    let e = config_from(&format!("{KAFKA_SOURCE}{}{}", sink("in"), dead("d"))).unwrap_err();
    assert_eq!(e.key(), Some("sink.topic"));
    assert!(e.message().contains("the topic the source reads"), "{e}");
    let e = config_from(&format!("{KAFKA_SOURCE}{}{}", sink("o"), dead("o"))).unwrap_err();
    assert_eq!(e.key(), Some("dead_letter.topic"));
    assert!(e.message().contains("need a topic of their own"), "{e}");
    // Other brokers: another cluster, as far as the file can tell.
    config_from(&format!(
        "{KAFKA_SOURCE}{}{}",
        sink("in").replace("127.0.0.1:9092", "other:9092"),
        dead("d")
    ))
    .unwrap();
}

#[test]
fn wiring_kafka_components_hands_out_their_stats() {
    // Nothing connects before the pipeline runs: wiring against a closed
    // port only builds the clients.
    let config = config_from(&format!(
        "{}[sink]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\ntopic = \"out\"\n\
         [dead_letter]\ntype = \"blackhole\"\n",
        KAFKA_SOURCE.replace("127.0.0.1:9092", "127.0.0.1:1")
    ))
    .unwrap();
    let wired = config.wire().unwrap();
    let roles: Vec<(&str, bool)> = wired
        .stats
        .iter()
        .map(|(role, stats)| (*role, matches!(stats, ComponentStats::KafkaSource(_))))
        .collect();
    assert_eq!(roles, [("source", true), ("sink", false)]);
    assert_eq!(
        wired.outputs[0],
        ("output", "kafka topic out (brokers 127.0.0.1:1)".to_owned())
    );

    let wired = with_sinks("[source]\ntype = \"generator\"\ncount = 1")
        .unwrap()
        .wire()
        .unwrap();
    assert!(
        wired.stats.is_empty(),
        "no Kafka, no stats: {:?}",
        wired.stats
    );
}

#[test]
fn the_kafka_example_is_the_pixels_example_between_topics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pixels-kafka.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kafka = parse(&path, text, |_| None).unwrap();
    kafka.check().unwrap();
    let pixels = pixels_example();
    assert_eq!(kafka.name, "pixels-kafka");
    assert_eq!(kafka.settings, pixels.settings);
    assert_eq!(kafka.admin, pixels.admin);
    assert_eq!(kafka.stage_names(), pixels.stage_names());
    for (ours, theirs) in kafka.stages.iter().zip(&pixels.stages) {
        assert_eq!(ours.workers, theirs.workers);
        assert_eq!(
            format!("{:?}", ours.component.spec),
            format!("{:?}", theirs.component.spec),
            "stage {}",
            ours.name
        );
    }
    match &kafka.source.spec {
        SourceSpec::Kafka(source) => {
            assert_eq!(
                (
                    source.brokers.as_str(),
                    source.topic.as_str(),
                    source.group.as_str()
                ),
                ("127.0.0.1:9092", "pixels", "crew-pixels")
            );
            // librdkafka's own defaults, there to be set from the
            // environment.
            assert_eq!(source.options["session.timeout.ms"], "45000");
            assert_eq!(source.options["heartbeat.interval.ms"], "3000");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        kafka.sink.spec.kafka_topic(),
        Some(("127.0.0.1:9092", "pixels-out"))
    );
    assert_eq!(
        kafka.dead_letter.spec.kafka_topic(),
        Some(("127.0.0.1:9092", "pixels-dead"))
    );
}

// --- HTTP ---

/// A stdin source, and `sink` (the lines of an HTTP `[sink]` table after
/// its `type`) with a blackhole dead-letter sink. The `[sink]` table starts
/// on line 3, its first key after `type` on line 5.
fn http_sink(sink: &str) -> String {
    format!(
        "[source]\ntype = \"stdin\"\n[sink]\ntype = \"http\"\n{sink}\n\
         [dead_letter]\ntype = \"blackhole\"\n"
    )
}

/// The error `crew validate` reports for an HTTP sink of `sink`, whether
/// loading or checking finds it.
fn http_error(sink: &str) -> ConfigError {
    match config_from(&http_sink(sink)) {
        Err(error) => error,
        Ok(config) => match config.check() {
            Err(error) => error.downcast().expect("a ConfigError"),
            Ok(()) => panic!("accepted: {sink}"),
        },
    }
}

#[test]
fn a_minimal_http_sink_loads_with_defaults_and_describes_itself() {
    let config = config_from(&http_sink("uri = \"http://127.0.0.1:8080/events\"")).unwrap();
    config.check().unwrap();
    assert_eq!(
        config.summary(),
        "pipeline p: source stdin, 0 stages, sink http POST http://127.0.0.1:8080/events, \
         dead letters blackhole"
    );
    let SinkSpec::Http(http) = &config.sink.spec else {
        panic!("{:?}", config.sink.spec);
    };
    assert_eq!(
        http.concurrency,
        crew_pipeline::concurrency::Concurrency::Adaptive
    );
    assert_eq!(
        http.adaptive,
        crew_pipeline::concurrency::AdaptiveSettings::default()
    );
    assert_eq!(
        (http.max_events, http.timeout),
        (1_000, Duration::from_secs(30))
    );

    let config = config_from(&http_sink(
        "uri = \"https://crew:s3cret@partner.example/in\"\nmethod = \"put\"\nconcurrency = 8\n\
         encoding = \"json_array\"\ncompression = \"gzip\"\nheaders = { x-tenant = \"shop\" }\n\
         [sink.adaptive]\nmax_limit = 50\n[sink.retry]\nmax_attempts = 3",
    ))
    .unwrap();
    config.check().unwrap();
    // The password stays out of the description (logs, `crew validate`).
    assert!(
        config
            .summary()
            .contains("sink http PUT https://crew:***@partner.example/in,"),
        "{}",
        config.summary()
    );
    let SinkSpec::Http(http) = &config.sink.spec else {
        panic!("{:?}", config.sink.spec);
    };
    assert_eq!(
        http.concurrency,
        crew_pipeline::concurrency::Concurrency::Fixed(8)
    );
    assert_eq!((http.adaptive.max_limit, http.retry.max_attempts), (50, 3));
}

#[test]
fn an_http_sink_uri_must_be_an_http_url_named_at_its_line() {
    let e = http_error("uri = \"ftp://x\"");
    assert_eq!(e.key(), Some("sink.uri"));
    assert_eq!(line_col(&e), (5, 1));
    assert!(
        e.message()
            .contains("the scheme must be http or https, not ftp"),
        "{e}"
    );
    let e = http_error("max_events = 10\nuri = \"not a url\"");
    assert_eq!(e.key(), Some("sink.uri"));
    assert_eq!(line_col(&e), (6, 1));
    assert!(e.message().contains("is not a URL"), "{e}");
    let e = http_error("method = \"post\"");
    assert_eq!(e.key(), Some("sink"));
    assert!(e.message().contains("missing field `uri`"), "{e}");
}

#[test]
fn an_http_sink_concurrency_is_a_positive_number_or_adaptive() {
    for (value, found) in [
        ("0", "integer `0`"),
        ("-2", "integer `-2`"),
        ("\"fast\"", "string \"fast\""),
    ] {
        let e = http_error(&format!("uri = \"http://h/\"\nconcurrency = {value}"));
        assert_eq!(e.key(), Some("sink.concurrency"), "{value}");
        assert_eq!(line_col(&e), (6, 15), "{value}: {e}");
        assert!(
            e.message().contains(found)
                && e.message()
                    .contains(r#"a number of requests (1 or more) or "adaptive""#),
            "{value}: {e}"
        );
    }
}

#[test]
fn http_sink_limits_are_checked_at_their_line() {
    let e = http_error("uri = \"http://h/\"\nmax_events = 0");
    assert_eq!(e.key(), Some("sink.max_events"));
    assert_eq!(line_col(&e), (6, 1));
    assert_eq!(e.message(), "`max_events` must be at least 1");

    // A bad adaptive setting points at the setting, in either table form.
    let e = http_error("uri = \"http://h/\"\n[sink.adaptive]\ninitial_limit = 4\nmax_limit = 2");
    assert_eq!(e.key(), Some("sink.adaptive.max_limit"));
    assert_eq!(line_col(&e), (8, 1));
    assert!(
        e.message().contains("must be at least `initial_limit`"),
        "{e}"
    );
    let e = http_error("uri = \"http://h/\"\nadaptive = { decrease_ratio = 1.5 }");
    assert_eq!(e.key(), Some("sink.adaptive.decrease_ratio"));
    assert_eq!(line_col(&e), (6, 14));
    let e = http_error("uri = \"http://h/\"\nadaptive = { max_limt = 5 }");
    assert_eq!(e.key(), Some("sink.adaptive.max_limt"));
    assert!(e.message().starts_with("unknown field `max_limt`"), "{e}");

    let e = http_error("uri = \"http://h/\"\nretry = { max_attempts = 0 }");
    assert_eq!(e.key(), Some("sink.retry.max_attempts"));
    let e = http_error("uri = \"http://h/\"\ntimeout = \"0s\"");
    assert_eq!(e.key(), Some("sink.timeout"));
    assert!(e.message().contains("more than zero"), "{e}");
    // The runtime adds these to the current time: a day at most, as for
    // every duration.
    for (key, line) in [
        ("timeout = \"18446744073709551615s\"", "sink.timeout"),
        (
            "retry = { max_backoff = \"1000d\" }",
            "sink.retry.max_backoff",
        ),
    ] {
        let e = http_error(&format!("uri = \"http://h/\"\n{key}"));
        assert_eq!(e.key(), Some(line), "{e}");
        assert!(e.message().contains("at most 1 day"), "{e}");
    }
    let e = http_error("uri = \"http://h/\"\nheaders = { \"bad header\" = \"x\" }");
    assert_eq!(e.key(), Some("sink.headers"), "{e}");
}

#[test]
fn wiring_an_http_sink_hands_out_its_stats_also_as_dead_letter_sink() {
    // Nothing connects before the first request: wiring against a closed
    // port only builds the client.
    let config = config_from(
        "[source]\ntype = \"generator\"\ncount = 1\n\
         [sink]\ntype = \"http\"\nuri = \"http://127.0.0.1:1/out\"\n\
         [dead_letter]\ntype = \"http\"\nuri = \"http://127.0.0.1:1/dead\"\nconcurrency = 2\n",
    )
    .unwrap();
    config.check().unwrap();
    let wired = config.wire().unwrap();
    let limits: Vec<(&str, usize)> = wired
        .stats
        .iter()
        .map(|(role, stats)| match stats {
            ComponentStats::HttpSink(http) => (*role, http.concurrency().limit),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(limits, [("sink", 1), ("dead_letter", 2)]);
    assert_eq!(
        wired.outputs,
        [
            ("output", "http POST http://127.0.0.1:1/out".to_owned()),
            (
                "dead letters",
                "http POST http://127.0.0.1:1/dead".to_owned()
            ),
        ]
    );
}

#[test]
fn the_http_example_is_the_pixels_example_to_an_endpoint() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pixels-http.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let http = parse(&path, text.clone(), |_| None).unwrap();
    http.check().unwrap();
    let pixels = pixels_example();
    assert_eq!(http.name, "pixels-http");
    assert_eq!(http.settings, pixels.settings);
    assert_eq!(http.admin, pixels.admin);
    assert_eq!(
        format!("{:?}", http.source.spec),
        format!("{:?}", pixels.source.spec)
    );
    assert_eq!(http.stage_names(), pixels.stage_names());
    for (ours, theirs) in http.stages.iter().zip(&pixels.stages) {
        assert_eq!(ours.workers, theirs.workers);
        assert_eq!(
            format!("{:?}", ours.component.spec),
            format!("{:?}", theirs.component.spec),
            "stage {}",
            ours.name
        );
    }
    assert_eq!(
        format!("{:?}", http.dead_letter.spec),
        format!("{:?}", pixels.dead_letter.spec)
    );
    let SinkSpec::Http(sink) = &http.sink.spec else {
        panic!("{:?}", http.sink.spec);
    };
    assert_eq!(sink.uri, "http://127.0.0.1:8080/events");
    // The example spells out the defaults: the same as leaving them out.
    assert_eq!(
        sink.adaptive,
        crew_pipeline::concurrency::AdaptiveSettings::default()
    );
    assert_eq!(sink.retry, crew_pipeline::RetryPolicy::default());
    assert_eq!(
        sink.concurrency,
        crew_pipeline::concurrency::Concurrency::Adaptive
    );

    let elsewhere = parse(&path, text, |name| {
        (name == "CREW_HTTP_URI").then(|| "https://partner.example/v1/events".to_owned())
    })
    .unwrap();
    assert!(
        elsewhere
            .summary()
            .contains("sink http POST https://partner.example/v1/events,"),
        "{}",
        elsewhere.summary()
    );
}
