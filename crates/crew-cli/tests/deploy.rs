//! The deployment files (deploy/) against the metrics contract
//! (docs/metrics.md), so `cargo test` catches drift without promtool:
//! every crew_ metric they use is documented, the dashboard is complete and
//! well-formed, and the alert rules and their unit tests agree.
//! deploy/check.sh adds promtool's own checks.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use common::documented_in;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The metrics in docs/metrics.md's tables, name to type (rows starting
/// with `` | `crew_ ``).
fn documented() -> BTreeMap<String, String> {
    let names = documented_in(&read("docs/metrics.md"));
    assert!(names.len() > 10, "docs/metrics.md lists {names:?}");
    names
}

/// Every `crew_[a-z0-9_]+` in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("crew_") {
        let start = from + at;
        // Part of a longer word (`xcrew_`) is not a name.
        let inside_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(text.len() - start);
        if !inside_word {
            names.insert(text[start..end].to_owned());
        }
        from = end;
    }
    names
}

/// Whether `name` is documented, as itself or as the `_bucket`, `_sum` or
/// `_count` series of a metric documented as a histogram (not of a gauge or
/// counter: `crew_budget_events_sum` is no series of the gauge
/// `crew_budget_events`). deploy/check.sh's `is_documented` is the same rule.
fn is_documented(name: &str, documented: &BTreeMap<String, String>) -> bool {
    documented.contains_key(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| documented.get(base).is_some_and(|kind| kind == "histogram"))
        })
}

fn dashboard() -> Json {
    serde_json::from_str(&read("deploy/grafana/crew.json")).expect("the dashboard is JSON")
}

fn rules() -> Yaml {
    serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.yml")).expect("the rules are YAML")
}

/// (title, expressions) of each panel that is not a row.
fn panels(dashboard: &Json) -> Vec<(String, Vec<String>)> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            let exprs = p["targets"]
                .as_array()
                .map(|targets| {
                    targets
                        .iter()
                        .map(|t| t["expr"].as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            (title, exprs)
        })
        .collect()
}

/// The alerting rules, as (name, rule).
fn alerts(rules: &Yaml) -> Vec<(String, Yaml)> {
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert name").to_owned();
            alerts.push((name, rule.clone()));
        }
    }
    alerts
}

#[test]
fn every_metric_used_is_documented() {
    let documented = documented();
    let mut used = BTreeSet::new();
    for path in [
        "deploy/grafana/crew.json",
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts_test.yml",
    ] {
        used.extend(metric_names(&read(path)));
    }
    assert!(used.len() > 20, "{used:?}");
    let unknown: Vec<&String> = used
        .iter()
        .filter(|name| !is_documented(name, &documented))
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics used in deploy/ but not listed in docs/metrics.md: {unknown:?}"
    );
}

#[test]
fn the_name_check_catches_an_unknown_name() {
    let documented = documented();
    let names = metric_names(
        r#"rate(crew_events_read_total[5m]) crew_pool_queue_wait_seconds_bucket xcrew_not crew_evnts_read_total crew_budget_events_sum crew_event_latency_seconds_count"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "crew_events_read_total".to_owned(),
            "crew_pool_queue_wait_seconds_bucket".to_owned(),
            "crew_evnts_read_total".to_owned(),
            "crew_budget_events_sum".to_owned(),
            "crew_event_latency_seconds_count".to_owned(),
        ])
    );
    assert_eq!(documented["crew_budget_events"], "gauge");
    assert_eq!(documented["crew_event_latency_seconds"], "histogram");
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !is_documented(n, &documented))
        .collect();
    // A histogram suffix on a gauge is no series of it.
    assert_eq!(unknown, ["crew_budget_events_sum", "crew_evnts_read_total"]);
}

/// deploy/check.sh's name check (no promtool) run in a copy of the repo's
/// layout holding `docs` and the three deploy files' texts: its exit code
/// and standard error.
fn check_sh(docs: &str, dashboard: &str, rules: &str, rules_test: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (path, text) in [
        ("deploy/check.sh", read("deploy/check.sh").as_str()),
        ("docs/metrics.md", docs),
        ("deploy/grafana/crew.json", dashboard),
        ("deploy/prometheus/alerts.yml", rules),
        ("deploy/prometheus/alerts_test.yml", rules_test),
    ] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let output = Command::new("bash")
        .arg(root.join("deploy/check.sh"))
        .env("CREW_DEPLOY_NO_PROMTOOL", "1")
        .output()
        .expect("bash runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_sh_and_this_test_apply_the_same_rule() {
    let docs = "\
| metric | type | labels | what |
| --- | --- | --- | --- |
| `crew_a_total` | counter | | a |
| `crew_g` | gauge | | g |
| `crew_h_seconds` | histogram | `stage` | h |
";
    let dashboard = r#"{"expr": "rate(crew_a_total[1m]) + xcrew_not + foo_crew_x"}"#;
    let rules = "expr: histogram_quantile(0.9, crew_h_seconds_bucket) / crew_g_sum\n";
    let rules_test = "series: crew_h_seconds_count crew_h_seconds_sum crew_missing crew_g\n";

    let documented = documented_in(docs);
    let mut expected: Vec<String> = [dashboard, rules, rules_test]
        .iter()
        .flat_map(|text| metric_names(text))
        .filter(|name| !is_documented(name, &documented))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    expected.sort();
    assert_eq!(expected, ["crew_g_sum", "crew_missing"]);

    let (code, stderr) = check_sh(docs, dashboard, rules, rules_test);
    assert_eq!(code, Some(1), "{stderr}");
    let mut unknown: Vec<String> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .map(str::to_owned)
        .collect();
    unknown.sort();
    assert_eq!(unknown, expected, "{stderr}");

    // Once documented, both pass.
    let docs = format!("{docs}| `crew_missing` | gauge | | m |\n| `crew_g_sum` | gauge | | s |\n");
    let (code, stderr) = check_sh(&docs, dashboard, rules, rules_test);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn check_sh_says_when_the_docs_have_no_metric_table() {
    let (code, stderr) = check_sh("# Metrics\n\nNone yet.\n", "crew_a", "crew_a", "crew_a");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no metric table found in docs/metrics.md"),
        "{stderr}"
    );
}

#[test]
fn the_dashboard_is_complete_and_well_formed() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert_eq!(
        variable("pipeline")["definition"],
        "label_values(crew_events_read_total, pipeline)"
    );

    let mut ids = HashSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "{title}: id reused"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title}: wider than the grid");
        if panel["type"] == "row" {
            continue;
        }
        // Every query goes to the chosen data source.
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title}: an empty expression");
            assert!(expr.contains("crew_"), "{title}: {expr}");
            assert!(
                expr.contains(r#"pipeline="$pipeline""#),
                "{title}: not narrowed to $pipeline: {expr}"
            );
            if expr.contains("histogram_quantile") {
                assert!(
                    expr.contains("_bucket") && expr.contains("by (le"),
                    "{title}: {expr}"
                );
            }
        }
    }

    // The panels the on-call person needs, and what each must show.
    let panels = panels(&dashboard);
    let required: &[(&str, &[&str])] = &[
        (
            "Throughput per stage",
            &["crew_stage_events_in_total", "crew_stage_events_out_total"],
        ),
        (
            "Events per second",
            &[
                "crew_events_read_total",
                "crew_events_delivered_total",
                "crew_events_dropped_total",
                "crew_events_dead_lettered_total",
            ],
        ),
        (
            "Workers busy / total",
            &["crew_pool_workers_busy", "crew_pool_workers"],
        ),
        (
            "Queue fill",
            &["crew_pool_queue_depth", "crew_pool_queue_capacity"],
        ),
        (
            "In flight vs budget",
            &["crew_events_in_flight", "crew_budget_events"],
        ),
        (
            "Queue wait P50/P95/P99",
            &["crew_pool_queue_wait_seconds_bucket"],
        ),
        (
            "Job run time P50/P95/P99",
            &["crew_job_processing_duration_seconds_bucket"],
        ),
        (
            "Stage duration P99",
            &["crew_stage_duration_seconds_bucket"],
        ),
        (
            "Event latency P50/P95/P99",
            &["crew_event_latency_seconds_bucket"],
        ),
        (
            "Dead letters by reason",
            &["crew_events_dead_lettered_total"],
        ),
        ("Stage errors and retries", &["crew_stage_errors_total"]),
        ("Consumer lag per partition", &["crew_source_lag_events"]),
        ("Committed offsets", &["crew_source_committed_offset"]),
    ];
    for (title, metrics) in required {
        let (_, exprs) = panels
            .iter()
            .find(|(t, _)| t == title)
            .unwrap_or_else(|| panic!("no `{title}` panel"));
        let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
        for metric in *metrics {
            assert!(used.contains(*metric), "`{title}` does not use {metric}");
        }
    }
    for (title, quantiles) in [
        ("Queue wait P50/P95/P99", ["0.5", "0.95", "0.99"]),
        ("Job run time P50/P95/P99", ["0.5", "0.95", "0.99"]),
        ("Event latency P50/P95/P99", ["0.5", "0.95", "0.99"]),
    ] {
        let (_, exprs) = panels.iter().find(|(t, _)| t == title).unwrap();
        for q in quantiles {
            let wanted = format!("histogram_quantile({q},");
            assert!(exprs.iter().any(|e| e.contains(&wanted)), "{title}: no {q}");
        }
    }
}

const REQUIRED_ALERTS: [&str; 5] = [
    "CrewConsumerLagGrowing",
    "CrewQueueSaturated",
    "CrewHighErrorRatio",
    "CrewNoProgress",
    "CrewPipelineNotReady",
];

#[test]
fn the_alerts_are_there_and_explain_themselves() {
    let alerts = alerts(&rules());
    let names: Vec<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    for required in REQUIRED_ALERTS {
        assert!(names.contains(&required), "no {required} in {names:?}");
    }
    let titles: HashSet<String> = panels(&dashboard()).into_iter().map(|(t, _)| t).collect();
    for (name, rule) in &alerts {
        let expr = rule["expr"].as_str().unwrap_or_default();
        assert!(expr.contains("crew_"), "{name}: {expr}");
        assert!(
            expr.contains("by (pipeline"),
            "{name}: one alert a pipeline, not one a process: {expr}"
        );
        assert!(rule["for"].as_str().is_some(), "{name}: no `for`");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: severity `{severity}`"
        );
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: {annotation} `{text}`");
            assert!(
                text.contains("{{ $labels.pipeline }}"),
                "{name}: {annotation} does not name the pipeline"
            );
        }
        // A panel a description points to ("Queue fill") must exist.
        let description = rule["annotations"]["description"].as_str().unwrap();
        for (i, quoted) in description.split('"').enumerate() {
            if i % 2 == 1 {
                let quoted = quoted.split_whitespace().collect::<Vec<_>>().join(" ");
                assert!(
                    titles.contains(&quoted),
                    "{name} points to a panel `{quoted}` the dashboard lacks"
                );
            }
        }
    }
    let expr = |name: &str| {
        alerts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r["expr"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert!(expr("CrewConsumerLagGrowing").contains("deriv("));
    assert!(expr("CrewConsumerLagGrowing").contains("crew_source_lag_events"));
    assert!(expr("CrewQueueSaturated").contains("0.9"));
    assert!(expr("CrewHighErrorRatio").contains("0.01"));
    for counter in [
        "crew_events_delivered_total",
        "crew_events_dropped_total",
        "crew_events_dead_lettered_total",
        "crew_source_lag_events",
    ] {
        assert!(expr("CrewNoProgress").contains(counter), "{counter}");
    }
    assert!(expr("CrewPipelineNotReady").contains("crew_pipeline_ready"));
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it() {
    let names: BTreeSet<String> = alerts(&rules()).into_iter().map(|(n, _)| n).collect();
    let tests: Yaml = serde_yaml_ng::from_str(&read("deploy/prometheus/alerts_test.yml"))
        .expect("the rule tests are YAML");
    assert_eq!(tests["rule_files"][0], "alerts.yml");
    let mut fired = BTreeSet::new();
    for test in tests["tests"].as_sequence().expect("tests") {
        for case in test["alert_rule_test"].as_sequence().expect("cases") {
            let name = case["alertname"].as_str().expect("alertname");
            assert!(names.contains(name), "a test of an unknown alert {name}");
            let expected = case["exp_alerts"].as_sequence().expect("exp_alerts");
            if !expected.is_empty() {
                fired.insert(name.to_owned());
            }
        }
    }
    assert_eq!(fired, names, "alerts without a test that fires them");
}
