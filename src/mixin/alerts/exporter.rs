//! The alerts on the exporter itself and on the alerting pipeline: checks
//! that stopped running, the exporter down or absent, restarting, a failed
//! config reload, several dependencies down at once, and the Watchdog.

use super::{Alert, Class, Fixture, Group, Priority, Runbook};

pub(super) const ALERTS: &[Alert] = &[
    Alert {
        name: "RunbookCheckNotRunning",
        group: Group::Checks,
        priority: Priority::P1,
        team: None,
        class: Class::Other,
        expr: "time() - runbook_check_last_run_timestamp_seconds{%E%}\n> %T% * runbook_check_interval_seconds{%E%}",
        summary: "A check has not run for several of its intervals: the exporter may be stuck.",
        description: "Check {{ $labels.check }} on {{ $labels.instance }} last finished a run {{ $value | humanizeDuration }} ago, more than %T% of its own intervals.",
        explain: "time since a check last finished a run above the threshold times the check's own interval (`runbook_check_interval_seconds`)",
        runbook: Runbook {
            meaning: "The exporter still answers scrapes, but one of its checks has not finished a run for much longer than any sane interval.",
            impact: "That check's values and alerts are stale: a real outage of its target would go unnoticed.",
            diagnose: "```sh\ncurl -s http://EXPORTER:9847/ | less          # status page: last run of each check\ncurl -s http://EXPORTER:9847/metrics | grep runbook_exporter_check_runs_in_flight\nkubectl logs deploy/runbook-exporter --tail=200\n```\nIf `runbook_exporter_check_runs_in_flight` sits at `max_concurrent_runs`, slow checks hold every slot.",
            fix: "Lower the slow checks' timeouts or raise `max_concurrent_runs`; restart the exporter if it is wedged, and file a bug with its logs.",
            escalate: "Escalate to the exporter's owners.",
        },
        test: Fixture {
            firing: &[
                ("runbook_check_last_run_timestamp_seconds{%L%,check=\"c\",kind=\"http\"}", "0x40"),
                ("runbook_check_interval_seconds{%L%,check=\"c\",kind=\"http\"}", "60x40"),
            ],
            delay: 4,
            labels: "%L%,check=\"c\",kind=\"http\"",
            value: "10m 0s",
            // A check with a 20-minute interval that ran 15 minutes ago is on
            // time: a fixed limit would call it stuck.
            quiet: &[
                ("runbook_check_last_run_timestamp_seconds{%L%,check=\"c\",kind=\"http\"}", "0x40"),
                ("runbook_check_interval_seconds{%L%,check=\"c\",kind=\"http\"}", "1200x40"),
            ],
        },
    },
    Alert {
        name: "RunbookExporterDown",
        group: Group::Checks,
        // Every check alert is blind, and silenced, while this fires: it
        // must be as loud as the loudest alert it hides.
        priority: Priority::P0,
        team: None,
        class: Class::ExporterDown,
        expr: "avg_over_time(up[%W%]) < %T%\nand on (job, instance)\ngroup by (job, instance) (last_over_time({%E%, __name__=~\"runbook_exporter_build_info|runbook_check_up\"}[%K%]))",
        summary: "Prometheus cannot scrape runbook-exporter: every check alert is blind.",
        description: "Only {{ $value | humanizePercentage }} of the scrapes of {{ $labels.job }} on {{ $labels.instance }} succeeded over the last %W%; every check alert of this target is silenced until it is back.",
        explain: "share of successful scrapes (`up`) over the window below the threshold, for targets that served `runbook_*` series in the last `keep_firing_for`; a crash loop counts",
        runbook: Runbook {
            meaning: "Prometheus gets no answer, or answers only now and then (a crash loop), from a target that served the exporter's metrics. No job name is assumed: the target is recognised by the `runbook_*` series it served.",
            impact: "No direct user impact, but none of the check-based alerts (dependencies down, lag, certificates) can fire until it is back. Alertmanager silences this target's check alerts while this fires; the ones already firing stay firing (they do not resolve), so nothing is lost.",
            diagnose: "```sh\nkubectl get pods -l app.kubernetes.io/name=runbook-exporter\nkubectl logs deploy/runbook-exporter --previous --tail=100\ncurl -sS http://EXPORTER:9847/-/healthy\n```\nIn Prometheus, Status → Targets shows the scrape error (refused, timeout, TLS or basic auth from the web config). Exit code 101 in `kubectl describe pod` (Last State) is a Rust panic: restart with `RUST_BACKTRACE=1` in the environment to get the backtrace into the log, and file it with the log.",
            fix: "Restart the exporter; if it refuses to start, `runbook-exporter validate --config.file=...` shows the config error. Fix network policies or the web config if only the scrape fails.",
            escalate: "P0: page at once, because this alert hides every other. Escalate to the exporter's owners if it does not come back within 30 minutes.",
        },
        test: Fixture {
            firing: &[
                ("up{%L%}", "0x30"),
                ("runbook_exporter_build_info{%L%,version=\"1\"}", "1x30"),
            ],
            delay: 0,
            labels: "%L%",
            value: "0%",
            // `up` of some other job is none of our business.
            quiet: &[("up{job=\"other\",instance=\"o:1\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookExporterAbsent",
        group: Group::Checks,
        priority: Priority::P0,
        team: None,
        class: Class::ExporterDown,
        expr: "absent({%E%, __name__=~\"runbook_exporter_build_info|runbook_check_up\"})",
        summary: "No runbook-exporter series at all: the exporter is not deployed or not scraped.",
        description: "Prometheus has no runbook_exporter_build_info and no runbook_check_up series (absent = {{ $value }}): no exporter is scraped, so no check alert can fire.",
        explain: "`absent()` of every `runbook_*` core series (no scrape target serves them)",
        runbook: Runbook {
            meaning: "No target that Prometheus scrapes serves the exporter's series: it was never deployed, its ServiceMonitor/PodMonitor/Probe does not select it, or the target vanished from service discovery.",
            impact: "Every check-based alert is silently impossible.",
            diagnose: "```sh\nkubectl get servicemonitors,podmonitors,probes -A | grep runbook\nkubectl get pods -A -l app.kubernetes.io/name=runbook-exporter\n```\nIn Prometheus, Status → Service Discovery shows whether the target was dropped by relabelling; check the Prometheus resource's `serviceMonitorSelector`/`podMonitorSelector`/`probeSelector` and namespace selectors.",
            fix: "Deploy the exporter (`deploy/kubernetes`) or fix the monitor resource's labels so that the Prometheus resource selects it.",
            escalate: "P0: page at once; this alert is the only thing that tells you the monitoring is gone.",
        },
        test: Fixture {
            firing: &[("up{job=\"other\",instance=\"o:1\"}", "1x30")],
            delay: 0,
            labels: "",
            value: "1",
            quiet: &[("runbook_exporter_build_info{%L%,version=\"1\"}", "1x30")],
        },
    },
    Alert {
        name: "RunbookExporterRestarting",
        group: Group::Checks,
        priority: Priority::P2,
        team: None,
        class: Class::Other,
        expr: "changes(process_start_time_seconds[1h]) >= %T%\nand on (job, instance)\nrunbook_exporter_build_info{%E%}",
        summary: "runbook-exporter keeps restarting.",
        description: "runbook-exporter on {{ $labels.instance }} started {{ $value }} times in the last hour; every restart resets what its checks had seen.",
        explain: "`changes(process_start_time_seconds[1h])` of the exporter's targets at or above the threshold",
        runbook: Runbook {
            meaning: "The exporter process started several times within an hour: it crashes, is OOM-killed, or fails its liveness probe. Between restarts it may scrape fine, so RunbookExporterDown can stay quiet.",
            impact: "Checks restart from nothing after each start; a crash loop can hide a failing dependency.",
            diagnose: "```sh\nkubectl describe pod -l app.kubernetes.io/name=runbook-exporter | grep -A5 'Last State'\nkubectl logs deploy/runbook-exporter --previous --tail=200\n```\nExit code 101 is a Rust panic: set `RUST_BACKTRACE=1` in the container's environment to get the backtrace into the log. `OOMKilled` means the memory limit is too low for the number of checks (see the README's memory per check).",
            fix: "Raise the memory limit or lower the number of checks; give the liveness probe a longer timeout; file the panic's backtrace as a bug.",
            escalate: "P2: a ticket for the exporter's owners.",
        },
        test: Fixture {
            firing: &[
                ("process_start_time_seconds{%L%}", "0x5 300x5 600x20"),
                ("runbook_exporter_build_info{%L%,version=\"1\"}", "1x30"),
            ],
            delay: 12,
            labels: "%L%",
            value: "2",
            // Another exporter restarting is not ours to report.
            quiet: &[
                ("process_start_time_seconds{job=\"other\",instance=\"o:1\"}", "0x5 300x5 600x20"),
                ("runbook_exporter_build_info{%L%,version=\"1\"}", "1x30"),
            ],
        },
    },
    Alert {
        name: "RunbookExporterConfigReloadFailed",
        group: Group::Checks,
        priority: Priority::P2,
        team: None,
        class: Class::Other,
        expr: "runbook_exporter_config_last_reload_successful{%E%} == 0",
        summary: "The exporter's last config reload failed.",
        description: "runbook-exporter on {{ $labels.instance }} rejected its config file (last reload successful = {{ $value }}); it keeps running the previous config.",
        explain: "`runbook_exporter_config_last_reload_successful == 0`",
        runbook: Runbook {
            meaning: "A reload (SIGHUP or `POST /-/reload`) found an invalid config file. The previous config keeps running.",
            impact: "The change you made is not active; the next restart fails to start the exporter.",
            diagnose: "```sh\nrunbook-exporter validate --config.file=/etc/runbook-exporter/config.yaml   # line and column of each problem\nkubectl logs deploy/runbook-exporter | grep -i reload\n```",
            fix: "Fix the config (or revert the ConfigMap change) and reload again: `curl -X POST http://EXPORTER:9847/-/reload`.",
            escalate: "P2: a ticket to whoever changed the config.",
        },
        test: Fixture {
            firing: &[("runbook_exporter_config_last_reload_successful{%L%}", "0x30")],
            delay: 0,
            labels: "%L%",
            value: "0",
            quiet: &[("runbook_exporter_config_last_reload_successful{%L%}", "1x30")],
        },
    },
    Alert {
        name: "RunbookExporterScheduleLagHigh",
        group: Group::Checks,
        priority: Priority::P2,
        team: None,
        class: Class::Other,
        expr: "histogram_quantile(0.99, sum by (job, instance, le) (rate(runbook_exporter_schedule_lag_seconds_bucket{%E%}[5m])))\n> %T%",
        summary: "Scheduled check runs start late: the exporter cannot keep up with its checks.",
        description: "The 99th percentile of schedule lag of runbook-exporter on {{ $labels.instance }} is {{ $value | humanizeDuration }} over the last 5 minutes: checks run later than their interval says.",
        explain: "p99 of `runbook_exporter_schedule_lag_seconds` (from due time to start) over 5m above the threshold, in seconds",
        runbook: Runbook {
            meaning: "Runs start later than they are due: a run waits for a `max_concurrent_runs` permit, or the scheduler does not get the CPU to start it. The lag is measured from the moment a run was due until it began.",
            impact: "Checks run less often than configured, so outages are noticed later and check-down alerts fire late; values on the dashboards are older than their interval suggests.",
            diagnose: "```sh\ncurl -s http://EXPORTER:9847/metrics | grep -E 'runbook_exporter_(check_runs_in_flight|checks|shard_info)'\nkubectl top pod -l app.kubernetes.io/name=runbook-exporter\nkubectl describe pod -l app.kubernetes.io/name=runbook-exporter | grep -A3 Limits\n```\nThe causes, in the order to check them:\n\n- **`max_concurrent_runs` too low**: `runbook_exporter_check_runs_in_flight` sits at `max_concurrent_runs` while slow checks (long timeouts against dead targets) hold every permit.\n- **CPU starvation**: the exporter's CPU (exporter dashboard) is at its CPU limit, or the node is saturated; the container is throttled.\n- **Too many checks for one replica**: `runbook_exporter_checks` is large and neither of the above explains it; one process cannot start them all on time.",
            fix: "Raise `max_concurrent_runs` or lower the timeouts of the slow checks; raise the CPU limit; or spread the checks over several replicas with `--shard N --total-shards M` (`deploy/kubernetes/sharded-statefulset.yaml` sets the shard from the pod ordinal; `runbook_exporter_shard_info` tells which shard answers).",
            escalate: "P2: a ticket for the exporter's owners.",
        },
        test: Fixture {
            firing: &[
                ("runbook_exporter_schedule_lag_seconds_bucket{%L%,le=\"1\"}", "0x40"),
                ("runbook_exporter_schedule_lag_seconds_bucket{%L%,le=\"2.5\"}", "0+60x40"),
                ("runbook_exporter_schedule_lag_seconds_bucket{%L%,le=\"+Inf\"}", "0+60x40"),
            ],
            delay: 1,
            labels: "%L%",
            value: "2.485s",
            // Every run started within a second: a p99 under the threshold.
            quiet: &[
                ("runbook_exporter_schedule_lag_seconds_bucket{%L%,le=\"1\"}", "0+60x40"),
                ("runbook_exporter_schedule_lag_seconds_bucket{%L%,le=\"2.5\"}", "0+60x40"),
                ("runbook_exporter_schedule_lag_seconds_bucket{%L%,le=\"+Inf\"}", "0+60x40"),
            ],
        },
    },
    Alert {
        name: "RunbookDependenciesDown",
        group: Group::Checks,
        priority: Priority::P0,
        team: None,
        class: Class::Other,
        expr: "count by (job, instance) (ALERTS{alertname=~\"%CHECK_DOWN%\", alertstate=\"firing\"}) >= %T%",
        summary: "Several dependencies are down at once.",
        description: "{{ $value }} checks of runbook-exporter on {{ $labels.instance }} are failing at the same time: more than one service is affected.",
        explain: "number of firing check-down alerts of one exporter at or above the threshold",
        runbook: Runbook {
            meaning: "Several check-down alerts fire at once for one exporter. The guides make \"multiple services affected\" P0; each single one is P1.",
            impact: "Probably an outage users see: several dependencies, or the network between them and their clients, are gone.",
            diagnose: "Look for the common cause first:\n\n- the overview dashboard: which checks are red, since when, and whether they share a node, a zone or a network path;\n- `kubectl get nodes` and recent events (`kubectl get events -A --sort-by=.lastTimestamp | tail -30`);\n- DNS (RunbookDnsCheckFailing) and the network policy of the exporter's namespace, if every check fails with the same reason;\n- whether the exporter itself is the problem (its status page shows the same `dns`/`network` reason for every check).",
            fix: "Fix the common cause (node, network, DNS, a shared database); then the single check-down alerts resolve one by one.",
            escalate: "P0: escalate at once, open an incident, and gather the escalation information: the time it started, the services affected, what changed recently (deploys, config), the alerts firing, and what you have tried.",
        },
        test: Fixture {
            firing: &[
                ("ALERTS{%L%,alertname=\"RunbookRedisDown\",alertstate=\"firing\",check=\"cache\",kind=\"redis\",priority=\"P1\",severity=\"critical\"}", "1x30"),
                ("ALERTS{%L%,alertname=\"RunbookPostgresDown\",alertstate=\"firing\",check=\"pg\",kind=\"postgres\",priority=\"P1\",severity=\"critical\",team=\"dba\"}", "1x30"),
            ],
            delay: 0,
            labels: "%L%",
            value: "2",
            // One dependency down is P1, not this.
            quiet: &[
                ("ALERTS{%L%,alertname=\"RunbookRedisDown\",alertstate=\"firing\",check=\"cache\",kind=\"redis\",priority=\"P1\",severity=\"critical\"}", "1x30"),
                ("ALERTS{%L%,alertname=\"RunbookPostgresDown\",alertstate=\"pending\",check=\"pg\",kind=\"postgres\",priority=\"P1\",severity=\"critical\",team=\"dba\"}", "1x30"),
            ],
        },
    },
    Alert {
        name: "RunbookWatchdog",
        group: Group::Checks,
        priority: Priority::Heartbeat,
        team: None,
        class: Class::Heartbeat,
        expr: "vector(1)",
        summary: "Always firing: the alerting pipeline works.",
        description: "This alert always fires (value {{ $value }}). Alertmanager sends it to a dead man's switch; when it stops arriving, Prometheus, its rules or Alertmanager are broken.",
        explain: "`vector(1)`: always firing, routed to a dead man's switch",
        runbook: Runbook {
            meaning: "Nothing is wrong. This alert fires all the time so that its absence means the alerting pipeline (Prometheus rule evaluation, Alertmanager, the notification path) is broken.",
            impact: "None while it arrives. When it stops, no other alert can reach anyone.",
            diagnose: "If the dead man's switch reports it missing: is Prometheus up and evaluating rules (Status → Rules)? Does Alertmanager receive alerts (`amtool alert query --alertmanager.url=...`)? Is the watchdog receiver's URL reachable?",
            fix: "Restore Prometheus, Alertmanager or the route to the dead man's switch.",
            escalate: "Not routed to people. The dead man's switch pages when it stops arriving.",
        },
        test: Fixture {
            firing: &[],
            delay: 0,
            labels: "",
            value: "1",
            quiet: &[],
        },
    },
];
