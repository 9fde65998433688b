//! The alert rules, their promtool tests, runbooks and dashboards: generated
//! files up to date, promtool check/test, a test per alert on both sides of
//! its `for`, conventions, the dashboard lint, and pint where installed.

mod mixin_support;

use std::collections::BTreeSet;
use std::process::Command;

use mixin_support::*;
use runbook_exporter::checks::{metric_descs, MetricKind, KINDS};
use runbook_exporter::mixin::{alerts::ALERTS, render, MixinConfig, RULE_FILES};
use serde::Deserialize;
use serde_json::Value;

#[test]
fn generated_files_are_up_to_date() {
    let stale: Vec<String> = render(&config())
        .into_iter()
        .filter(|(path, contents)| {
            std::fs::read_to_string(root().join(path)).ok().as_deref() != Some(contents)
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        stale.is_empty(),
        "out of date (run `cargo run --example render-mixin`): {stale:?}"
    );
}

#[test]
fn the_config_must_tune_exactly_the_alerts_that_exist() {
    let text = read("alerts/config.yaml");
    let missing = text.replace("  RunbookRedisDown: {for: 1m}\n", "");
    assert_eq!(
        MixinConfig::parse(&missing).unwrap_err(),
        "alerts.RunbookRedisDown: missing"
    );
    let extra = format!("{text}  RunbookNoSuchAlert: {{for: 1m}}\n");
    assert_eq!(
        MixinConfig::parse(&extra).unwrap_err(),
        "alerts.RunbookNoSuchAlert: no such alert"
    );
    let bad = text.replace(
        "RunbookPostgresConnections:warning: {for: 5m, threshold: 0.8}",
        "RunbookPostgresConnections:warning: {for: 90s, team: dbas}",
    );
    assert_eq!(
        MixinConfig::parse(&bad).unwrap_err(),
        "alerts.RunbookPostgresConnections:warning.for: `90s` is not a whole number of minutes or hours (like 5m)\nalerts.RunbookPostgresConnections:warning.threshold: required\nalerts.RunbookPostgresConnections:warning.team: `dbas` is not one of dba, security, none"
    );
}

fn promtool(args: &[&str]) -> std::process::Output {
    let bin = env("RUNBOOK_TEST_PROMTOOL", "prometheus");
    // Bounded: coreutils' timeout ends promtool (exit 124) after 2 minutes.
    Command::new("timeout")
        .args(["--kill-after=5s", "120s"])
        .arg(&bin)
        .args(args)
        .current_dir(root().join("alerts"))
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"))
}

#[test]
fn promtool_check_rules_accepts_every_rules_file() {
    let files: Vec<&str> = RULE_FILES
        .iter()
        .map(|(p, _)| p.trim_start_matches("alerts/"))
        .collect();
    let mut args = vec!["check", "rules"];
    args.extend(&files);
    let out = promtool(&args);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_test_rules_passes() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("alerts/tests"))
        .unwrap()
        .map(|e| format!("tests/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    files.sort();
    // One generated file per rules file, plus the hand-written scenarios.
    assert_eq!(files.len(), RULE_FILES.len() + 1);
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = promtool(&args);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Deserialize)]
struct TestFile {
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
struct TestGroup {
    name: String,
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Deserialize)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    exp_alerts: Vec<serde::de::IgnoredAny>,
}

fn minutes(s: &str) -> u32 {
    runbook_exporter::mixin::parse_minutes(s).unwrap_or_else(|| panic!("duration {s}"))
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test_on_both_sides_of_its_for() {
    let mut groups = Vec::new();
    for entry in std::fs::read_dir(root().join("alerts/tests")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let file: TestFile = serde_saphyr::from_str(&text).unwrap();
        groups.extend(file.tests);
    }
    let mut problems = Vec::new();
    for rule in rules() {
        let for_min = minutes(&rule.for_);
        let cases: Vec<(&str, Vec<&AlertTest>)> = groups
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.alert_rule_test
                        .iter()
                        .filter(|t| t.alertname == rule.alert)
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, t)| !t.is_empty())
            .collect();
        let fires = cases.iter().any(|(_, tests)| {
            tests.iter().any(|fire| {
                !fire.exp_alerts.is_empty()
                    && (for_min == 0
                        || tests.iter().any(|quiet| {
                            quiet.exp_alerts.is_empty()
                                && minutes(&quiet.eval_time) < minutes(&fire.eval_time)
                                && minutes(&fire.eval_time) - minutes(&quiet.eval_time)
                                    <= for_min + 1
                        }))
            })
        });
        let quiet = cases
            .iter()
            .any(|(_, tests)| tests.iter().all(|t| t.exp_alerts.is_empty()));
        if !fires {
            problems.push(format!(
                "{}: no test where it fires, pending within its for ({}) before",
                rule.alert, rule.for_
            ));
        }
        // The Watchdog fires always: that is its test.
        if !quiet && rule.alert != "RunbookWatchdog" {
            problems.push(format!("{}: no test where it stays quiet", rule.alert));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_alert_has_priority_severity_annotations_and_an_existing_runbook() {
    let config = config();
    let mut names = BTreeSet::new();
    let mut variants = BTreeSet::new();
    for rule in rules() {
        let a = &rule.alert;
        let sev = rule.labels.get("severity").map(String::as_str);
        assert!(
            variants.insert((a.clone(), sev.map(str::to_string))),
            "{a}: two variants with severity {sev:?}"
        );
        names.insert(a.clone());
        assert!(
            (a.starts_with("Runbook") || a.starts_with("App"))
                && a.chars().all(|c| c.is_ascii_alphanumeric()),
            "{a}: CamelCase with the Runbook or App prefix"
        );
        let prio = rule.labels.get("priority").map(String::as_str);
        // Severity follows from the guides' priority: P0 and P1 page, P2 is
        // a ticket; only the Watchdog is neither.
        match (prio, sev) {
            (Some("P0" | "P1"), Some("critical")) | (Some("P2"), Some("warning")) => {}
            (Some("none"), Some("none")) if a == "RunbookWatchdog" => {}
            other => panic!("{a}: priority and severity {other:?}"),
        }
        for label in rule.labels.keys() {
            assert!(
                ["severity", "priority", "team"].contains(&label.as_str()),
                "{a}: label {label}: values go in annotations"
            );
        }
        if let Some(team) = rule.labels.get("team") {
            assert!(
                ["dba", "security"].contains(&team.as_str()),
                "{a}: team {team}"
            );
        }
        let summary = &rule.annotations["summary"];
        assert!(
            !summary.is_empty() && !summary.contains("{{"),
            "{a}: static summary"
        );
        assert!(
            rule.annotations["description"].contains("{{ $value"),
            "{a}: the description shows the value"
        );
        let url = &rule.annotations["runbook_url"];
        assert_eq!(url, &format!("{}{a}.md", config.runbook_base_url));
        let page = format!("docs/runbooks/{a}.md");
        assert!(exists(&page), "{a}: {page} missing");
        let text = read(&page);
        for section in [
            "## What it means",
            "## User impact",
            "## How to diagnose",
            "## How to fix",
            "## When to escalate",
        ] {
            assert!(text.contains(section), "{page}: {section}");
        }
        assert!(
            read("docs/alerts.md").contains(&format!("| `{a}` |")),
            "{a}: not in docs/alerts.md"
        );
    }
    assert_eq!(variants.len(), ALERTS.len());
    let pages = std::fs::read_dir(root().join("docs/runbooks"))
        .unwrap()
        .count();
    assert_eq!(pages, names.len(), "one runbook page per alert, no orphans");
}

#[test]
fn the_prometheus_rule_holds_the_same_groups_as_the_rules_files() {
    #[derive(Deserialize)]
    struct Meta {
        name: String,
    }
    #[derive(Deserialize)]
    struct PromRule {
        #[serde(rename = "apiVersion")]
        api_version: String,
        kind: String,
        metadata: Meta,
        spec: RuleFile,
    }
    let pr: PromRule =
        serde_saphyr::from_str(&read("deploy/kubernetes/prometheusrule.yaml")).unwrap();
    assert_eq!(pr.api_version, "monitoring.coreos.com/v1");
    assert_eq!(pr.kind, "PrometheusRule");
    assert_eq!(pr.metadata.name, "runbook-exporter");
    let plain: Vec<RuleGroup> = rule_files()
        .into_iter()
        .flat_map(|(_, f)| f.groups)
        .collect();
    assert_eq!(pr.spec.groups, plain);
    assert!(read("deploy/kubernetes/kustomization.yaml").contains("- prometheusrule.yaml"));
}

/// The exposed names of the exporter's counters (`_total`), from the
/// registry and the core families.
fn known_counters() -> BTreeSet<String> {
    let mut c: BTreeSet<String> = metric_descs()
        .iter()
        .filter(|d| d.kind == MetricKind::Counter)
        .map(|d| d.exposed_name())
        .collect();
    c.insert("runbook_check_runs_total".into());
    c.insert("runbook_check_failures_total".into());
    c
}

/// Lint one expression: counters only inside rate/irate/increase and the
/// other way round, and (for dashboards) `$__rate_interval` as the range.
fn lint_expr(place: &str, raw: &str, dashboard: bool, problems: &mut Vec<String>) {
    let expr = if dashboard {
        substitute(raw, "7m13s")
    } else {
        raw.to_string()
    };
    let uses = match uses(&expr) {
        Ok(u) => u,
        Err(e) => {
            problems.push(format!("{place}: does not parse: {e}: {raw}"));
            return;
        }
    };
    let counters = known_counters();
    for u in uses {
        let name = metric_name(&u.selector).unwrap_or_default();
        let is_counter = name.ends_with("_total") || counters.contains(&name);
        let in_rate = matches!(u.function, Some("rate" | "irate" | "increase"));
        if is_counter && !in_rate {
            problems.push(format!("{place}: counter {name} outside rate/increase"));
        }
        if in_rate && !is_counter && !name.ends_with("_bucket") {
            problems.push(format!("{place}: rate/increase of gauge {name}"));
        }
        if dashboard {
            if let Some(range) = u.range {
                if range != std::time::Duration::from_secs(7 * 60 + 13) {
                    problems.push(format!("{place}: range of {name} is not $__rate_interval"));
                }
            }
            // cAdvisor and kube-state-metrics run under jobs of their own;
            // those series are selected by app_container_selector.
            let foreign = name.starts_with("container_") || name.starts_with("kube_");
            for label in ["job", "instance"].into_iter().filter(|_| !foreign) {
                let ok = u
                    .selector
                    .matchers
                    .matchers
                    .iter()
                    .any(|m| m.name == label && m.value == ".+" && m.op.to_string() == "=~");
                if !ok {
                    problems.push(format!("{place}: {name} lacks {label}=~\"$...\""));
                }
            }
        }
    }
}

#[test]
fn rule_expressions_apply_rate_only_to_counters() {
    let mut problems = Vec::new();
    for rule in all_rules() {
        let place = rule.record.clone().unwrap_or(rule.alert.clone());
        lint_expr(&place, &rule.expr, false, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn var<'a>(d: &'a Value, name: &str) -> Option<&'a Value> {
    d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
}

#[test]
fn dashboards_pass_the_lint() {
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    let dashboards = dashboards();
    assert_eq!(dashboards.len(), 9, "overview, 7 areas and application");
    for (file, d) in &dashboards {
        let uid = d["uid"].as_str().unwrap_or_default();
        if uid.is_empty() || uid.len() > 40 || !uids.insert(uid.to_string()) {
            problems.push(format!(
                "{file}: uid {uid:?} missing, too long or not unique"
            ));
        }
        if !d["id"].is_null() || d["editable"] != false {
            problems.push(format!("{file}: id must be null and editable false"));
        }
        if d["schemaVersion"].as_u64().unwrap_or(0) < 36 {
            problems.push(format!("{file}: old schemaVersion"));
        }
        if d["title"].as_str().unwrap_or("").is_empty()
            || d["tags"].as_array().is_none_or(|t| t.is_empty())
        {
            problems.push(format!("{file}: title and tags"));
        }
        match var(d, "datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => problems.push(format!("{file}: no prometheus datasource variable")),
        }
        for name in ["job", "instance"] {
            match var(d, name) {
                Some(v)
                    if v["type"] == "query"
                        && v["datasource"]["uid"] == "${datasource}"
                        && v["multi"] == true
                        && v["allValue"] == ".+"
                        && v["refresh"] == 2 => {}
                _ => problems.push(format!("{file}: variable {name} missing or misconfigured")),
            }
        }
        let mut ids = BTreeSet::new();
        for panel in d["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap_or_default();
            let place = format!("{file}: {title}");
            if !ids.insert(panel["id"].as_u64().unwrap_or(0)) {
                problems.push(format!("{place}: duplicate panel id"));
            }
            if title.is_empty() || panel["description"].as_str().unwrap_or("").is_empty() {
                problems.push(format!("{place}: title and description"));
            }
            if panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or("")
                .is_empty()
            {
                problems.push(format!("{place}: no unit"));
            }
            if panel["datasource"]
                != serde_json::json!({"type": "prometheus", "uid": "${datasource}"})
            {
                problems.push(format!("{place}: datasource"));
            }
            let targets = panel["targets"].as_array().unwrap();
            if targets.is_empty() {
                problems.push(format!("{place}: no query"));
            }
            for t in targets {
                let expr = t["expr"].as_str().unwrap();
                if (expr.contains("rate(") || expr.contains("increase("))
                    && !expr.contains("[$__rate_interval]")
                {
                    problems.push(format!("{place}: rate without $__rate_interval"));
                }
                lint_expr(&place, expr, true, &mut problems);
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_provisioning_file_has_every_field_grafana_needs() {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Provider {
        name: String,
        org_id: u32,
        folder: String,
        #[serde(rename = "type")]
        kind: String,
        disable_deletion: bool,
        update_interval_seconds: u32,
        allow_ui_updates: bool,
        options: ProviderOptions,
    }
    #[derive(Deserialize)]
    struct ProviderOptions {
        path: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Provisioning {
        api_version: u32,
        providers: Vec<Provider>,
    }
    let p: Provisioning = serde_saphyr::from_str(&read("dashboards/provisioning.yaml")).unwrap();
    assert_eq!(p.api_version, 1);
    assert_eq!(p.providers.len(), 1);
    assert_eq!(p.providers[0].kind, "file");
    assert!(p.providers[0].options.path.starts_with('/'));
}

#[test]
fn every_kind_has_an_alert_for_its_checks_failing() {
    for kind in KINDS {
        let selector = format!("kind=\"{kind}\"");
        assert!(
            ALERTS
                .iter()
                .any(|a| a.expr.contains("runbook_check_up") && a.expr.contains(&selector)),
            "no alert on runbook_check_up{{{selector}}}: add one to src/mixin/alerts/checks.rs"
        );
    }
}
