//! The alerts on the exporter itself: checks that stopped running, the
//! exporter down, a failed config reload.

use super::{Alert, Fixture, Group, Runbook, Severity};

pub(super) const ALERTS: &[Alert] = &[
    Alert {
        name: "RunbookCheckNotRunning",
        group: Group::Checks,
        severity: Severity::Warning,
        expr: "time() - runbook_check_last_run_timestamp_seconds{%E%} > %T%",
        summary: "A check has not run for a long time: the exporter may be stuck.",
        description: "Check {{ $labels.check }} on {{ $labels.instance }} last finished a run {{ $value | humanizeDuration }} ago.",
        explain: "time since a check last finished a run above the threshold",
        runbook: Runbook {
            meaning: "The exporter still answers scrapes, but one of its checks has not finished a run for much longer than any sane interval.",
            impact: "That check's values and alerts are stale: a real outage of its target would go unnoticed.",
            diagnose: "```sh\ncurl -s http://EXPORTER:9847/ | less          # status page: last run of each check\ncurl -s http://EXPORTER:9847/metrics | grep runbook_exporter_check_runs_in_flight\nkubectl logs deploy/runbook-exporter --tail=200\n```\nIf `runbook_exporter_check_runs_in_flight` sits at `max_concurrent_runs`, slow checks hold every slot.",
            fix: "Lower the slow checks' timeouts or raise `max_concurrent_runs`; restart the exporter if it is wedged, and file a bug with its logs.",
            escalate: "Escalate to the exporter's owners.",
        },
        test: Fixture {
            firing: &[("runbook_check_last_run_timestamp_seconds{%L%,check=\"c\",kind=\"http\"}", "0x40")],
            delay: 11,
            labels: "%L%,check=\"c\",kind=\"http\"",
            value: "17m 0s",
            quiet: &[("runbook_check_last_run_timestamp_seconds{%L%,check=\"c\",kind=\"http\"}", "0+60x40")],
        },
    },
    Alert {
        name: "RunbookExporterDown",
        group: Group::Checks,
        severity: Severity::Warning,
        expr: "up{%E%} == 0",
        summary: "Prometheus cannot scrape runbook-exporter.",
        description: "The scrape of runbook-exporter on {{ $labels.instance }} has failed (up = {{ $value }}): every check-based alert is blind while this fires.",
        explain: "`up == 0` for the exporter's scrape job",
        runbook: Runbook {
            meaning: "Prometheus gets no answer from the exporter's /metrics: the process is down, crash-looping, or unreachable.",
            impact: "No direct user impact, but none of the check-based alerts (dependencies down, lag, certificates) can fire until it is back.",
            diagnose: "```sh\nkubectl get pods -l app.kubernetes.io/name=runbook-exporter\nkubectl logs deploy/runbook-exporter --previous --tail=100\ncurl -sS http://EXPORTER:9847/-/healthy\n```\nIn Prometheus, Status → Targets shows the scrape error (refused, timeout, TLS or basic auth from the web config).",
            fix: "Restart the exporter; if it refuses to start, `runbook-exporter validate --config.file=...` shows the config error. Fix network policies or the web config if only the scrape fails.",
            escalate: "Escalate to the exporter's owners if it does not come back within 30 minutes.",
        },
        test: Fixture {
            firing: &[("up{%L%}", "0x30")],
            delay: 0,
            labels: "%L%",
            value: "0",
            quiet: &[("up{%L%}", "1x30")],
        },
    },
    Alert {
        name: "RunbookExporterConfigReloadFailed",
        group: Group::Checks,
        severity: Severity::Warning,
        expr: "runbook_exporter_config_last_reload_successful{%E%} == 0",
        summary: "The exporter's last config reload failed.",
        description: "runbook-exporter on {{ $labels.instance }} rejected its config file (last reload successful = {{ $value }}); it keeps running the previous config.",
        explain: "`runbook_exporter_config_last_reload_successful == 0`",
        runbook: Runbook {
            meaning: "A reload (SIGHUP or `POST /-/reload`) found an invalid config file. The previous config keeps running.",
            impact: "The change you made is not active; the next restart fails to start the exporter.",
            diagnose: "```sh\nrunbook-exporter validate --config.file=/etc/runbook-exporter/config.yaml   # line and column of each problem\nkubectl logs deploy/runbook-exporter | grep -i reload\n```",
            fix: "Fix the config (or revert the ConfigMap change) and reload again: `curl -X POST http://EXPORTER:9847/-/reload`.",
            escalate: "Ticket to whoever changed the config.",
        },
        test: Fixture {
            firing: &[("runbook_exporter_config_last_reload_successful{%L%}", "0x30")],
            delay: 0,
            labels: "%L%",
            value: "0",
            quiet: &[("runbook_exporter_config_last_reload_successful{%L%}", "1x30")],
        },
    },
];
