//! The mixin's escalation and routing: the guides' priorities and teams on
//! the rules, no job matcher, the Alertmanager example checked by `amtool
//! check-config` and `amtool config routes test`, and the `mixin`
//! subcommand rendering exactly the shipped files.

mod mixin_support;

use std::process::Command;

use mixin_support::*;
use runbook_exporter::mixin::render;
use serde::Deserialize;

#[test]
fn the_guides_escalation_levels_are_kept() {
    let rules = rules();
    let label = |alert: &str, l: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.alert == alert)
            .map(|r| r.labels.get(l).cloned().unwrap_or_default())
            .collect()
    };
    // One dependency down is P1; several at once is P0; the exporter
    // down hides every check alert, so it is P0.
    for a in [
        "RunbookRedisDown",
        "RunbookPostgresDown",
        "RunbookKafkaDown",
        "RunbookClickHouseDown",
    ] {
        assert_eq!(label(a, "priority"), ["P1"], "{a}");
    }
    assert_eq!(label("RunbookDependenciesDown", "priority"), ["P0"]);
    assert_eq!(label("RunbookExporterDown", "priority"), ["P0"]);
    assert_eq!(label("RunbookExporterAbsent", "priority"), ["P0"]);
    // Database → DBA team.
    for a in [
        "RunbookPostgresDown",
        "RunbookClickHouseDown",
        "RunbookPostgresSessionsBlocked",
    ] {
        assert_eq!(label(a, "team"), ["dba"], "{a}");
    }
    assert_eq!(label("RunbookRedisDown", "team"), [""]);
    // Warning and critical variants share one name.
    assert_eq!(
        label("RunbookPostgresConnections", "severity"),
        ["warning", "critical"]
    );
    assert_eq!(
        label("RunbookTlsCertificateExpiring", "severity"),
        ["warning", "critical"]
    );
}

#[test]
fn no_rule_selects_a_job_by_default() {
    // Job names differ in every deployment mode (ServiceMonitor, PodMonitor
    // `NAMESPACE/NAME`, Probe `probe/NAMESPACE/NAME`); runbook_* names are
    // unique, so no selector needs one. (The application's alerts select
    // the application, by app_selector.)
    for rule in rules().iter().filter(|r| !r.alert.starts_with("App")) {
        for u in uses(&rule.expr).unwrap() {
            let matchers = &u.selector.matchers.matchers;
            assert!(
                !matchers.iter().any(|m| m.name == "job"),
                "{}: selects a job: {}",
                rule.alert,
                rule.expr
            );
        }
    }
    // The check-down alerts keep firing through a lost scrape.
    for rule in rules()
        .iter()
        .filter(|r| r.expr.contains("runbook_check_up{kind="))
    {
        assert!(
            rule.keep_firing_for.is_some(),
            "{}: keep_firing_for",
            rule.alert
        );
        assert!(
            rule.expr.contains("up == 0"),
            "{}: held while the exporter is down",
            rule.alert
        );
    }
}

fn amtool(args: &[&str]) -> std::process::Output {
    // amtool ships with Debian's prometheus-alertmanager; the services
    // script installs it and exports its path. Missing is a failure.
    let bin = env("RUNBOOK_TEST_AMTOOL", "prometheus");
    // Bounded: coreutils' timeout ends amtool (exit 124) after a minute.
    Command::new("timeout")
        .args(["--kill-after=5s", "60s"])
        .arg(&bin)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}: run scripts/services.sh up prometheus"))
}

#[test]
fn amtool_accepts_the_alertmanager_example() {
    let out = amtool(&["check-config", "alerts/alertmanager.yaml"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    #[derive(Deserialize)]
    struct Secret {
        kind: String,
        #[serde(rename = "stringData")]
        string_data: std::collections::BTreeMap<String, String>,
    }
    let secret: Secret =
        serde_saphyr::from_str(&read("deploy/kubernetes/alertmanager-secret.yaml")).unwrap();
    assert_eq!(secret.kind, "Secret");
    assert_eq!(
        secret.string_data["alertmanager.yaml"],
        read("alerts/alertmanager.yaml"),
        "the Secret holds the shipped config"
    );
}

#[test]
fn amtool_routes_each_priority_and_team_to_its_receiver() {
    for (labels, receiver) in [
        (
            vec![
                "alertname=RunbookRedisDown",
                "priority=P1",
                "severity=critical",
            ],
            "oncall-page-p1",
        ),
        (
            vec![
                "alertname=RunbookDependenciesDown",
                "priority=P0",
                "severity=critical",
            ],
            "oncall-page-p0",
        ),
        (
            vec![
                "alertname=RunbookExporterDown",
                "priority=P0",
                "severity=critical",
            ],
            "oncall-page-p0",
        ),
        (
            vec![
                "alertname=RunbookRedisHitRatioLow",
                "priority=P2",
                "severity=warning",
            ],
            "oncall-ticket-p2",
        ),
        (
            vec![
                "alertname=RunbookPostgresDown",
                "priority=P1",
                "severity=critical",
                "team=dba",
            ],
            "dba-page-p1",
        ),
        (
            vec![
                "alertname=RunbookPostgresConnections",
                "priority=P2",
                "severity=warning",
                "team=dba",
            ],
            "dba-ticket-p2",
        ),
        (
            vec![
                "alertname=RunbookWatchdog",
                "priority=none",
                "severity=none",
            ],
            "watchdog",
        ),
        (vec!["alertname=SomethingElse"], "oncall-ticket-p2"),
    ] {
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file=alerts/alertmanager.yaml",
            "--verify.receivers",
            receiver,
        ];
        args.extend(labels.iter().copied());
        let out = amtool(&args);
        assert!(
            out.status.success(),
            "{labels:?} should go to {receiver}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And amtool really compares: a wrong receiver fails.
    let out = amtool(&[
        "config",
        "routes",
        "test",
        "--config.file=alerts/alertmanager.yaml",
        "--verify.receivers",
        "oncall-page-p0",
        "priority=P2",
    ]);
    assert!(!out.status.success(), "P2 must not page");
}

#[test]
fn the_mixin_subcommand_renders_the_shipped_files_from_the_shipped_config() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .args([
            "--kill-after=5s",
            "60s",
            env!("CARGO_BIN_EXE_runbook-exporter"),
        ])
        .args(["mixin", "--config"])
        .arg(root().join("alerts/config.yaml"))
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = render(&config());
    assert!(files.len() > 50, "{} files", files.len());
    for (path, _) in files {
        let rendered = std::fs::read_to_string(out_dir.path().join(&path)).unwrap();
        assert_eq!(
            rendered,
            read(&path),
            "{path}: the shipped file is not the subcommand's output"
        );
    }
    // A user's config with another runbook URL and a selector changes them.
    let mine = out_dir.path().join("mine.yaml");
    std::fs::write(
        &mine,
        read("alerts/config.yaml")
            .replace(
                "https://example.invalid/runbook-exporter/blob/main/docs/runbooks/",
                "https://wiki.example.com/runbooks/",
            )
            .replace(
                "exporter_selector: ''",
                "exporter_selector: 'namespace=\"monitoring\"'",
            ),
    )
    .unwrap();
    let out = render_mixin(&mine, &out_dir.path().join("mine"));
    assert!(out.status.success(), "{out:?}");
    let rules = std::fs::read_to_string(
        out_dir
            .path()
            .join("mine/alerts/runbook-exporter.rules.yaml"),
    )
    .unwrap();
    assert!(rules.contains("https://wiki.example.com/runbooks/RunbookRedisDown.md"));
    assert!(rules.contains("runbook_check_up{namespace=\"monitoring\", kind=\"redis\"}"));
    // A bad config: exit 2, the file and the field named, nothing written.
    std::fs::write(
        &mine,
        read("alerts/config.yaml").replace(
            "RunbookRedisDown: {for: 1m}",
            "RunbookRedisDown: {for: 1m, treshold: 3}",
        ),
    )
    .unwrap();
    let out = render_mixin(&mine, &out_dir.path().join("bad"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mine.yaml") && err.contains("treshold"),
        "{err}"
    );
    assert!(!out_dir.path().join("bad").exists());
}

/// `runbook-exporter mixin --config CONFIG --out OUT`, ended after 60 s.
fn render_mixin(config: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    Command::new("timeout")
        .args([
            "--kill-after=5s",
            "60s",
            env!("CARGO_BIN_EXE_runbook-exporter"),
        ])
        .args(["mixin", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}
