//! The mixin's generated documentation: one runbook page per alert name
//! (both variants of a warning/critical pair on one page) and the alert
//! table of docs/alerts.md.

use std::fmt::Write;

use super::alerts::{config_key, Alert, Class, ALERTS};
use super::render::{expr, labels};
use super::{format_number, MixinConfig};

/// `severity` (`priority`[, team]) · for · threshold of one variant.
fn variant_line(alert: &Alert, config: &MixinConfig) -> String {
    let tuning = config.tuning(alert);
    let threshold = tuning
        .threshold
        .map(|t| format!(", threshold `{}`", format_number(t)))
        .unwrap_or_default();
    let labels: Vec<String> = labels(alert, config)
        .iter()
        .map(|(k, v)| format!("`{k}={v}`"))
        .collect();
    let keep = if alert.class == Class::CheckDown {
        format!(
            " · **keep_firing_for:** `{}`",
            config.check_down.keep_firing_for
        )
    } else {
        String::new()
    };
    format!(
        "{} · **for:** `{}`{threshold}{keep}",
        labels.join(" "),
        tuning.for_
    )
}

/// The runbook page of the alerts named `name` (one or two variants).
pub(super) fn runbook(name: &str, config: &MixinConfig) -> String {
    let variants: Vec<&Alert> = ALERTS.iter().filter(|a| a.name == name).collect();
    let first = variants[0];
    let mut out = format!(
        "<!-- Generated from src/mixin/alerts/ by `runbook-exporter mixin` (cargo run --example render-mixin); edit the source. -->\n# {name}\n\n"
    );
    for a in &variants {
        let _ = writeln!(out, "**Labels:** {}  ", variant_line(a, config));
    }
    let _ = write!(
        out,
        "**Rules:** `{group}`\n\n> {summary}\n\n",
        group = first.group.name(),
        summary = first.summary,
    );
    for a in &variants {
        if variants.len() > 1 {
            let _ = writeln!(out, "`{}`:\n", config_key(a));
        }
        let _ = write!(out, "```promql\n{}\n```\n\n", expr(a, config));
    }
    let r = &first.runbook;
    let _ = write!(
        out,
        "## What it means\n\n{}\n\n## User impact\n\n{}\n\n## How to diagnose\n\n{}\n\n## How to fix\n\n{}\n\n## When to escalate\n\n{}\n",
        r.meaning, r.impact, r.diagnose, r.fix, r.escalate
    );
    for a in variants.iter().skip(1) {
        let r = &a.runbook;
        let _ = write!(
            out,
            "\n## At `{}` ({})\n\n{}\n\n{}\n\n### Diagnose\n\n{}\n\n### Fix\n\n{}\n\n### Escalate\n\n{}\n",
            a.priority.severity(),
            a.priority.label(),
            r.meaning,
            r.impact,
            r.diagnose,
            r.fix,
            r.escalate
        );
    }
    if first.class != Class::Heartbeat {
        out.push_str(ESCALATION_CHECKLIST);
    }
    out
}

/// The guides' escalation information, on every runbook page.
const ESCALATION_CHECKLIST: &str = "\n## What to give when you escalate\n\n\
- when it started, and whether it is getting worse;\n\
- which services and users are affected (the overview dashboard);\n\
- what changed recently: deploys, config, infrastructure;\n\
- the alerts firing and their values;\n\
- what you checked and tried, with the commands' output;\n\
- the exporter's status page entry for the check (its last error, redacted).\n";

/// docs/alerts.md.
pub(super) fn alert_table(config: &MixinConfig) -> String {
    let mut out = String::from(
        "<!-- Generated from src/mixin/ and alerts/config.yaml by `runbook-exporter mixin` (cargo run --example render-mixin); edit the source. -->\n\
         # Alerts\n\n\
         Every alert rule we ship, generated with its promtool tests, its runbook, the\n\
         PrometheusRule and the Alertmanager example from one source: `src/mixin/alerts/`\n\
         (expressions, priorities, teams, annotations, runbooks) and a mixin config\n\
         (selectors, thresholds, `for` windows, priorities, runbook base URL, receivers).\n\
         The shipped files are the output for `alerts/config.yaml`; render your own with\n\n\
         ```sh\nrunbook-exporter mixin --config my-mixin.yaml --out monitoring/\n```\n\n\
         - `alerts/runbook-exporter.rules.yaml`: alerts on the exporter's `runbook_*` metrics.\n\
         - `alerts/application.rules.yaml`: the guides' PromQL on the application's own metrics.\n\
         - `deploy/kubernetes/prometheusrule.yaml`: both, as a `PrometheusRule`.\n\
         - `alerts/alertmanager.yaml` and `deploy/kubernetes/alertmanager-secret.yaml`: routing and inhibition.\n\
         - `alerts/tests/*.test.yaml`: `promtool test rules` cases, a firing and a quiet one per alert,\n  \
         on both sides of its `for` window; `alerts/tests/scenarios.test.yaml` adds flapping,\n  \
         recovery, boundaries, a lost scrape and the exporter restarting (hand-written, for the\n  \
         shipped config).\n\n\
         ## Selectors\n\n\
         No rule names a job: the `runbook_*` names are unique, so the rules fire whatever job\n\
         label a ServiceMonitor (`monitoring/runbook-exporter`), a PodMonitor\n\
         (`monitoring/api-runbook-exporter`) or a Probe (`probe/monitoring/pg-ports`) gives.\n\
         `exporter_selector` in the config adds matchers to every selector if you need them.\n\n\
         ## Priorities, severity and teams\n\n\
         Every alert carries `priority`, the guides' escalation level, and `severity`, which\n\
         follows from it:\n\n\
         | priority | the guides say | severity | the Alertmanager example |\n|---|---|---|---|\n\
         | `P0` | escalate at once: complete outage, data loss, security breach, several services affected | `critical` | pages at once (`group_wait: 0s`) |\n\
         | `P1` | within 30 minutes: one service down, severely degraded, authentication failures, database issues | `critical` | pages, re-notifies every `p1_repeat_interval` (30m) until resolved |\n\
         | `P2` | within 2 hours: minor issues, slightly degraded, non-critical features | `warning` | a ticket, during business hours only |\n\n\
         One dependency down is P1; several at once raise the P0 `RunbookDependenciesDown`.\n\
         The exporter down or absent is P0, because it silences every check alert.\n\
         Where the guides name a specialist team (database → DBA), the alert carries `team`\n\
         (`dba`), and Alertmanager routes it to that team's receivers. The warning and critical\n\
         variants of one alert share its name, so one inhibit rule (critical silences warning\n\
         for the same alert and check) covers them. The `RunbookWatchdog` always fires\n\
         (`priority=\"none\"`, `severity=\"none\"`) and goes to a dead man's switch.\n\n\
         ## Inhibition\n\n\
         - `RunbookExporterDown` silences every alert on the same target's `runbook_*` series;\n  \
         `RunbookExporterAbsent` silences them all. The check-down alerts keep firing while\n  \
         their exporter cannot be scraped, so they are silenced, not resolved.\n\
         - A dependency's check-down alert (`RunbookPostgresDown`) silences its finer alerts\n  \
         (connections, lag, ...) for the same check.\n\
         - `severity=\"critical\"` silences `severity=\"warning\"` of the same alert and check.\n\n\
         ## Check down\n\n\
         A check is down when, over `check_down.window`, it spent at least\n\
         `check_down.failure_ratio` of the time failing with at least `check_down.min_runs`\n\
         runs seen (a dependency failing every other run fires; one failure of a slow check\n\
         does not); or when it failed every run for `min_runs` of its own intervals\n\
         (`runbook_check_interval_seconds`, for checks with long intervals). While its exporter\n\
         cannot be scraped, a check that failed at its last run seen stays down for\n\
         `check_down.remember`, and `keep_firing_for` keeps a flapping check from resolving\n\
         and paging again.\n\n\
         | Alert | Labels | for | Expression | Runbook |\n|---|---|---|---|---|\n",
    );
    for alert in ALERTS {
        let tuning = config.tuning(alert);
        let threshold = tuning
            .threshold
            .map(|t| format!(" (threshold `{}`)", format_number(t)))
            .unwrap_or_default();
        let labels: Vec<String> = labels(alert, config)
            .iter()
            .map(|(_, v)| format!("`{v}`"))
            .collect();
        let _ = writeln!(
            out,
            "| `{name}` | {labels} | `{for_}` | {explain}{threshold} | [runbook](runbooks/{name}.md) |",
            name = alert.name,
            labels = labels.join(" "),
            for_ = tuning.for_,
            explain = alert.explain,
        );
    }
    out.push_str(
        "\n## Tuning\n\n\
         Copy `alerts/config.yaml`, change selectors, thresholds, priorities (`priority: P1`),\n\
         teams (`team: dba`, `team: none`), the runbook base URL and the receivers, then run\n\
         `runbook-exporter mixin --config FILE --out DIR`: no Rust toolchain needed. In this\n\
         repository, `cargo run --example render-mixin` renders the shipped files and\n\
         `cargo test --test mixin` checks them. The promtool tests are generated for the\n\
         configured `for` windows; their series are chosen for the shipped thresholds, so a\n\
         tuned copy may need its own.\n\n\
         ## Linting\n\n\
         `tests/mixin.rs` runs `promtool check rules` and `promtool test rules` and\n\
         fails when an alert has no test; `tests/mixin_routing.rs` runs `amtool check-config`\n\
         and `amtool config routes test`;\n\
         `tests/mixin_live.rs` parses every expression, checks that each `runbook_*` metric it\n\
         names is really exposed by the exporter, and runs the rules in a real Prometheus with\n\
         a real Alertmanager; `tests/mixin_alerting.rs` stops real dependencies and the\n\
         exporter and counts the notifications at each receiver. `pint` is not run: the Go module proxy refuses it on these\n\
         machines.\n",
    );
    out
}
