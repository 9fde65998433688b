//! Every alert we ship: its expression, severity, annotations, runbook and
//! the series its promtool test feeds it.
//!
//! Placeholders in expressions: `%E%` is the exporter selector, `%A%` the
//! application selector, `%C%` the application container selector and
//! `%T%` the alert's threshold (all from `alerts/config.yaml`). In test
//! series and expected labels, `%L%` stands for the exporter's scrape
//! labels under the default selector (`job="runbook-exporter"`,
//! `instance="exporter:9847"`) and `%APP%` for the application's
//! (`job="api"`, `instance="api-0:8080"`).

/// The guides' escalation levels and the severity label each maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// P0: outage, data loss, security. Pages.
    Critical,
    /// P1: degraded, will become an outage. A ticket for today.
    Warning,
    /// P2: worth knowing during business hours.
    Info,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    pub fn priority(self) -> &'static str {
        match self {
            Severity::Critical => "P0",
            Severity::Warning => "P1",
            Severity::Info => "P2",
        }
    }
}

/// Which rules file and group an alert goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Checks failing outright, and the exporter itself.
    Checks,
    Postgres,
    Redis,
    Kafka,
    Kubernetes,
    Tls,
    /// The application's own metrics (alerts/application.rules.yaml).
    Application,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::Checks,
        Group::Postgres,
        Group::Redis,
        Group::Kafka,
        Group::Kubernetes,
        Group::Tls,
        Group::Application,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::Checks => "runbook-exporter.checks",
            Group::Postgres => "runbook-exporter.postgres",
            Group::Redis => "runbook-exporter.redis",
            Group::Kafka => "runbook-exporter.kafka",
            Group::Kubernetes => "runbook-exporter.kubernetes",
            Group::Tls => "runbook-exporter.tls",
            Group::Application => "application",
        }
    }
}

/// The runbook page of an alert, in markdown fragments.
#[derive(Debug)]
pub struct Runbook {
    pub meaning: &'static str,
    pub impact: &'static str,
    pub diagnose: &'static str,
    pub fix: &'static str,
    pub escalate: &'static str,
}

/// The promtool test of an alert: series that make it fire (after `delay`
/// minutes, the condition holds; it must stay pending until `for` has
/// passed) and series that keep it quiet.
#[derive(Debug)]
pub struct Fixture {
    /// `(series, values)` in promtool's expanding notation, one sample a
    /// minute.
    pub firing: &'static [(&'static str, &'static str)],
    /// Minutes from the start until the condition first holds.
    pub delay: u32,
    /// The labels of the firing alert, besides `severity`, as
    /// `name="value"` pairs separated by commas.
    pub labels: &'static str,
    /// What `{{ $value ... }}` renders to in the description at the firing
    /// evaluation.
    pub value: &'static str,
    /// Series under which the alert never fires.
    pub quiet: &'static [(&'static str, &'static str)],
}

/// One alert rule.
#[derive(Debug)]
pub struct Alert {
    pub name: &'static str,
    pub group: Group,
    pub severity: Severity,
    pub expr: &'static str,
    /// One line, static.
    pub summary: &'static str,
    /// Templated: `{{ $labels.x }}` and exactly one `{{ $value ... }}`.
    pub description: &'static str,
    /// A short human summary of the expression for the alert table.
    pub explain: &'static str,
    pub runbook: Runbook,
    pub test: Fixture,
}

macro_rules! check_down {
    ($name:literal, $kind:literal, $what:literal, $severity:ident, $diagnose:literal, $fix:literal) => {
        Alert {
            name: $name,
            group: Group::Checks,
            severity: Severity::$severity,
            expr: concat!("runbook_check_up{%E%, kind=\"", $kind, "\"} == 0"),
            summary: concat!("A ", $what, " check is failing."),
            description: concat!(
                "Check {{ $labels.check }} ({{ $labels.kind }}) on {{ $labels.instance }} has failed its last runs; runbook_check_up = {{ $value }}. ",
                "The failure reason is in runbook_check_failures_total{reason} and on the exporter's status page."
            ),
            explain: concat!("`runbook_check_up{kind=\"", $kind, "\"} == 0`"),
            runbook: Runbook {
                meaning: concat!(
                    "The exporter's check of kind `", $kind, "` could not complete: ", $what,
                    " did not answer, refused us, or answered wrongly on every run for the `for` window."
                ),
                impact: concat!(
                    "Whatever depends on this ", $what,
                    " is probably failing too. The check runs the same command as the troubleshooting guide, so users likely see errors."
                ),
                diagnose: concat!(
                    "1. Open the exporter's status page (`/`) and read the check's last error; ",
                    "or query `increase(runbook_check_failures_total{check=\"CHECK\"}[10m]) > 0` for the reason ",
                    "(`timeout`, `connection_refused`, `network`, `dns`, `tls`, `auth`, `unexpected_response`, `protocol`).\n",
                    $diagnose
                ),
                fix: $fix,
                escalate: "Page the owning team at once if the dependency is down for users (this is P0). If only the exporter cannot reach it (network policy, credentials rotated), fix access and tell the exporter's owners.",
            },
            test: Fixture {
                firing: &[(concat!("runbook_check_up{%L%,check=\"c\",kind=\"", $kind, "\"}"), "0x30")],
                delay: 0,
                labels: concat!("%L%,check=\"c\",kind=\"", $kind, "\""),
                value: "0",
                quiet: &[(concat!("runbook_check_up{%L%,check=\"c\",kind=\"", $kind, "\"}"), "1x30")],
            },
        }
    };
}

/// Every alert, in the order of the rules files.
pub static ALERTS: &[Alert] = &[
    check_down!(
        "RunbookPostgresDown",
        "postgres",
        "PostgreSQL",
        Critical,
        "2. From a host with access, run the guide's check by hand:\n\n   ```sh\n   pg_isready -h \"$DB_HOST\" -p 5432\n   psql \"$DATABASE_URL\" -c 'SELECT 1'\n   ```\n3. On the server: `kubectl logs` or `journalctl -u postgresql` for crashes, `df -h` on the data volume, and `SELECT count(*) FROM pg_stat_activity` when you can connect.",
        "- Server down: restart it (`pg_ctlcluster`, or `kubectl rollout restart statefulset/...`) once the cause (disk full, OOM) is removed.\n- `auth`: the monitoring role's password changed; update the secret the check reads (`password_file`).\n- `timeout` with the server up: it is overloaded or max_connections is exhausted; see RunbookPostgresConnectionsCritical."
    ),
    check_down!(
        "RunbookRedisDown",
        "redis",
        "Redis",
        Critical,
        "2. Run the guide's check by hand:\n\n   ```sh\n   redis-cli -u \"$REDIS_URL\" PING\n   redis-cli -u \"$REDIS_URL\" INFO server | head\n   ```\n3. Look at the server's log and `INFO memory` / `INFO clients` when it answers.",
        "- Restart a crashed server; if it was OOM-killed, raise its memory limit or set `maxmemory` below it.\n- `auth`: update the password the check reads.\n- `connection_refused` right after a failover: point the check (and the app) at the new primary."
    ),
    check_down!(
        "RunbookClickHouseDown",
        "clickhouse",
        "ClickHouse",
        Critical,
        "2. Run the guide's checks by hand (the exporter runs both):\n\n   ```sh\n   curl -sS \"$CLICKHOUSE_URL/ping\"\n   curl -sS \"$CLICKHOUSE_URL/?query=SELECT%201\"\n   ```\n3. `/ping` answers without credentials: if it works and `SELECT 1` fails, the problem is authentication or the query path.",
        "- Restart the server if it crashed; check `clickhouse-server.err.log` and disk space first.\n- `auth`: update the user's password in the secret the check reads."
    ),
    check_down!(
        "RunbookS3Down",
        "s3",
        "S3 bucket",
        Critical,
        "2. Run the guide's checks by hand:\n\n   ```sh\n   aws s3 ls \"s3://$S3_BUCKET\" --endpoint-url \"$S3_ENDPOINT\"\n   aws s3api head-bucket --bucket \"$S3_BUCKET\"\n   ```\n3. `auth` usually means expired or rotated keys; `dns`/`network` an endpoint or VPC endpoint problem.",
        "- Rotate or restore the access keys the check and the application use.\n- Check the bucket policy and the endpoint's status page for a provider outage."
    ),
    check_down!(
        "RunbookKafkaDown",
        "kafka",
        "Kafka cluster",
        Critical,
        "2. Run the guide's checks by hand:\n\n   ```sh\n   kafka-broker-api-versions.sh --bootstrap-server \"$KAFKA_BROKERS\"\n   kafka-topics.sh --bootstrap-server \"$KAFKA_BROKERS\" --list\n   ```\n3. See RunbookKafkaBrokerDown for single brokers.",
        "- Restart failed brokers; check their disks and logs.\n- `auth`/`tls`: fix the SASL credentials or certificates the check uses."
    ),
    Alert {
        name: "RunbookKafkaBrokerDown",
        group: Group::Checks,
        severity: Severity::Critical,
        expr: "runbook_kafka_broker_up{%E%} == 0",
        summary: "A Kafka broker does not answer.",
        description: "Broker {{ $labels.broker }} of check {{ $labels.check }} did not answer in the last runs (runbook_kafka_broker_up = {{ $value }}).",
        explain: "`runbook_kafka_broker_up == 0` per broker",
        runbook: Runbook {
            meaning: "One broker listed in the cluster metadata did not answer the check's request; the rest of the cluster did.",
            impact: "Partitions led by that broker fail over; with replication factor 1, or if too few in-sync replicas remain, producers and consumers of those partitions fail.",
            diagnose: "```sh\nkafka-broker-api-versions.sh --bootstrap-server BROKER_HOST:9092\nkafka-topics.sh --bootstrap-server \"$KAFKA_BROKERS\" --describe --under-replicated-partitions\nkubectl -n kafka get pods -o wide   # if the brokers run in Kubernetes\n```\nRead the broker's log for the reason it stopped (disk full, OOM, controller fencing).",
            fix: "Restart the broker once its disk or memory problem is solved; watch under-replicated partitions return to 0.",
            escalate: "Page the Kafka owners at once if partitions are offline (under min.insync.replicas); otherwise within the hour.",
        },
        test: Fixture {
            firing: &[("runbook_kafka_broker_up{%L%,check=\"k\",broker=\"2\"}", "0x30")],
            delay: 0,
            labels: "%L%,check=\"k\",broker=\"2\"",
            value: "0",
            quiet: &[("runbook_kafka_broker_up{%L%,check=\"k\",broker=\"2\"}", "1x30")],
        },
    },
    check_down!(
        "RunbookHttpEndpointDown",
        "http",
        "HTTP endpoint",
        Critical,
        "2. Run the guide's check by hand and look at the status code and timing:\n\n   ```sh\n   curl -fsS -o /dev/null -w '%{http_code} %{time_total}\\n' \"$APP_URL/health\"\n   ```\n3. `unexpected_response` means a wrong status code or body; see `runbook_http_status_code`. Then `kubectl get pods` and `kubectl logs` for the service behind it.",
        "- Roll back the last deployment if it started with a release (`kubectl rollout undo deployment/NAME`).\n- Restart crashed pods; scale up if they are overloaded."
    ),
    check_down!(
        "RunbookTcpEndpointDown",
        "tcp",
        "TCP endpoint",
        Critical,
        "2. Run the guide's check by hand:\n\n   ```sh\n   nc -zv HOST PORT\n   ```\n3. `connection_refused`: nothing listens; `timeout`: a firewall or an overloaded host.",
        "Start the service that should listen on the port, or fix the network policy or security group that blocks it."
    ),
    check_down!(
        "RunbookDnsCheckFailing",
        "dns",
        "DNS",
        Critical,
        "2. Run the guide's check by hand:\n\n   ```sh\n   dig +short NAME @SERVER\n   kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50\n   ```\n3. An empty answer (`unexpected_response`) means the record is gone; `dns` means the server returned an error.",
        "Restore the record, or restart the resolver (CoreDNS) if it fails for every name."
    ),
    check_down!(
        "RunbookKubernetesApiDown",
        "kubernetes",
        "Kubernetes API",
        Warning,
        "2. Run the guide's check by hand with the exporter's service account:\n\n   ```sh\n   kubectl get --raw /readyz\n   kubectl auth can-i list pods --as=system:serviceaccount:NAMESPACE:runbook-exporter\n   ```\n3. `auth` means the ServiceAccount token or RBAC changed; every Kubernetes alert below is blind while this fires.",
        "Restore the exporter's RBAC (`deploy/kubernetes`), or wait for the control plane to recover."
    ),
    Alert {
        name: "RunbookPostgresConnectionsHigh",
        group: Group::Postgres,
        severity: Severity::Warning,
        expr: "sum by (job, instance, check) (runbook_postgres_connections{%E%})\n/ on (job, instance, check)\n(runbook_postgres_max_connections{%E%} - on (job, instance, check) runbook_postgres_superuser_reserved_connections{%E%})\n> %T%",
        summary: "PostgreSQL is running out of connections.",
        description: "{{ $labels.check }} uses {{ $value | humanizePercentage }} of the connections usable by applications (max_connections minus superuser_reserved_connections).",
        explain: "client backends / (`max_connections` − `superuser_reserved_connections`) above the threshold",
        runbook: Runbook {
            meaning: "Most connections that applications may open are in use. When none are left, new connections fail with `FATAL: sorry, too many clients already`.",
            impact: "None yet; at 100% new requests that need a connection fail.",
            diagnose: "```sql\nSELECT usename, application_name, state, count(*)\n  FROM pg_stat_activity GROUP BY 1, 2, 3 ORDER BY 4 DESC;\nSHOW max_connections;\n```\nMany `idle` sessions from one application point at an oversized pool; many `idle in transaction` at a leak; many `active` at slow queries (see RunbookPostgresLongRunningQuery).",
            fix: "- Lower the application's pool size or put PgBouncer in front.\n- Terminate leaked sessions: `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' AND state_change < now() - interval '10 minutes';`\n- Raise `max_connections` only with memory to spare (it needs a restart).",
            escalate: "Escalate to the database owners if usage keeps rising after the pool is fixed.",
        },
        test: Fixture {
            firing: &[
                ("runbook_postgres_connections{%L%,check=\"pg\",state=\"active\"}", "40x30"),
                ("runbook_postgres_connections{%L%,check=\"pg\",state=\"idle\"}", "45x30"),
                ("runbook_postgres_max_connections{%L%,check=\"pg\"}", "103x30"),
                ("runbook_postgres_superuser_reserved_connections{%L%,check=\"pg\"}", "3x30"),
            ],
            delay: 0,
            labels: "%L%,check=\"pg\"",
            value: "85%",
            quiet: &[
                ("runbook_postgres_connections{%L%,check=\"pg\",state=\"active\"}", "40x30"),
                ("runbook_postgres_max_connections{%L%,check=\"pg\"}", "103x30"),
                ("runbook_postgres_superuser_reserved_connections{%L%,check=\"pg\"}", "3x30"),
            ],
        },
    },
    Alert {
        name: "RunbookPostgresConnectionsCritical",
        group: Group::Postgres,
        severity: Severity::Critical,
        expr: "sum by (job, instance, check) (runbook_postgres_connections{%E%})\n/ on (job, instance, check)\n(runbook_postgres_max_connections{%E%} - on (job, instance, check) runbook_postgres_superuser_reserved_connections{%E%})\n> %T%",
        summary: "PostgreSQL has almost no connections left.",
        description: "{{ $labels.check }} uses {{ $value | humanizePercentage }} of the connections usable by applications; new connections will soon be refused.",
        explain: "client backends / (`max_connections` − `superuser_reserved_connections`) above the critical threshold",
        runbook: Runbook {
            meaning: "Almost every connection applications may open is in use.",
            impact: "New connections fail (`too many clients already`): requests that need a fresh connection error out now or within minutes.",
            diagnose: "Same as RunbookPostgresConnectionsHigh:\n\n```sql\nSELECT usename, application_name, state, count(*)\n  FROM pg_stat_activity GROUP BY 1, 2, 3 ORDER BY 4 DESC;\n```",
            fix: "- Terminate `idle in transaction` sessions older than a few minutes (`pg_terminate_backend`).\n- Scale the offending application down, or lower its pool size and restart it.\n- Superusers can still connect through the reserved slots to do this.",
            escalate: "P0: page the database owners if users see errors.",
        },
        test: Fixture {
            firing: &[
                ("runbook_postgres_connections{%L%,check=\"pg\",state=\"active\"}", "98x30"),
                ("runbook_postgres_max_connections{%L%,check=\"pg\"}", "103x30"),
                ("runbook_postgres_superuser_reserved_connections{%L%,check=\"pg\"}", "3x30"),
            ],
            delay: 0,
            labels: "%L%,check=\"pg\"",
            value: "98%",
            quiet: &[
                ("runbook_postgres_connections{%L%,check=\"pg\",state=\"active\"}", "90x30"),
                ("runbook_postgres_max_connections{%L%,check=\"pg\"}", "103x30"),
                ("runbook_postgres_superuser_reserved_connections{%L%,check=\"pg\"}", "3x30"),
            ],
        },
    },
    Alert {
        name: "RunbookPostgresLongRunningQuery",
        group: Group::Postgres,
        severity: Severity::Warning,
        expr: "runbook_postgres_longest_query_duration_seconds{%E%} > %T%",
        summary: "A PostgreSQL query has been running for a long time.",
        description: "The oldest active query on {{ $labels.check }} has been running for {{ $value | humanizeDuration }}.",
        explain: "age of the oldest active query (`query_start`) above the threshold",
        runbook: Runbook {
            meaning: "An active query started long ago and has not finished.",
            impact: "It holds locks and a snapshot: it can block writers, stop vacuum from cleaning up, and use a connection and CPU.",
            diagnose: "```sql\nSELECT pid, usename, application_name, now() - query_start AS runtime, wait_event_type, left(query, 200)\n  FROM pg_stat_activity\n WHERE state = 'active' AND query_start < now() - interval '5 minutes'\n ORDER BY query_start;\n```",
            fix: "- Cancel it if it is safe: `SELECT pg_cancel_backend(PID);` (terminate with `pg_terminate_backend` if cancel does not work).\n- Ask the owner to add an index or a `statement_timeout` for that role.",
            escalate: "Escalate to the owning team if the query is part of a batch job that must finish; to the database owners if it blocks others (RunbookPostgresSessionsBlocked).",
        },
        test: Fixture {
            firing: &[("runbook_postgres_longest_query_duration_seconds{%L%,check=\"pg\"}", "600x30")],
            delay: 0,
            labels: "%L%,check=\"pg\"",
            value: "10m 0s",
            quiet: &[("runbook_postgres_longest_query_duration_seconds{%L%,check=\"pg\"}", "12x30")],
        },
    },
    Alert {
        name: "RunbookPostgresSessionsBlocked",
        group: Group::Postgres,
        severity: Severity::Warning,
        expr: "runbook_postgres_lock_waiting_sessions{%E%} > %T%",
        summary: "PostgreSQL sessions are blocked on locks.",
        description: "{{ $value }} sessions on {{ $labels.check }} wait for a lock held by another session.",
        explain: "sessions blocked by another session's lock (`pg_blocking_pids`) above the threshold",
        runbook: Runbook {
            meaning: "Sessions wait for locks held by other sessions, persistently.",
            impact: "The blocked requests hang until their timeout; queues and connection pools fill up behind them.",
            diagnose: "```sql\nSELECT pid, pg_blocking_pids(pid) AS blocked_by, now() - query_start AS waiting, left(query, 120)\n  FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0;\n```\nThen look at the blocker: often an `idle in transaction` session or a migration holding an `ACCESS EXCLUSIVE` lock.",
            fix: "Terminate the blocking session (`SELECT pg_terminate_backend(BLOCKER_PID);`) once you know what it is; make migrations take locks with a `lock_timeout`.",
            escalate: "Escalate to the database owners if the blocker is a system process or comes back.",
        },
        test: Fixture {
            firing: &[("runbook_postgres_lock_waiting_sessions{%L%,check=\"pg\"}", "3x30")],
            delay: 0,
            labels: "%L%,check=\"pg\"",
            value: "3",
            quiet: &[("runbook_postgres_lock_waiting_sessions{%L%,check=\"pg\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookPostgresDeadlocks",
        group: Group::Postgres,
        severity: Severity::Warning,
        expr: "increase(runbook_postgres_database_deadlocks_total{%E%}[10m]) > %T%",
        summary: "PostgreSQL detected deadlocks.",
        description: "Database {{ $labels.database }} on {{ $labels.check }} had {{ $value | humanize }} deadlocks in the last 10 minutes.",
        explain: "`increase(runbook_postgres_database_deadlocks_total[10m])` above the threshold",
        runbook: Runbook {
            meaning: "PostgreSQL found transactions waiting on each other and aborted one of them (`deadlock detected`).",
            impact: "The aborted transactions failed; the application retried them or returned an error.",
            diagnose: "Search the server log for `deadlock detected`: it names both statements. Then:\n\n```sql\nSELECT datname, deadlocks FROM pg_stat_database ORDER BY deadlocks DESC;\n```",
            fix: "Make the application take locks in one consistent order (for example, update rows sorted by id), and keep transactions short.",
            escalate: "Ticket to the owning application team; escalate if the rate grows.",
        },
        test: Fixture {
            firing: &[("runbook_postgres_database_deadlocks_total{%L%,check=\"pg\",database=\"app\"}", "0x5 1+1x25")],
            delay: 6,
            labels: "%L%,check=\"pg\",database=\"app\"",
            value: "3",
            quiet: &[("runbook_postgres_database_deadlocks_total{%L%,check=\"pg\",database=\"app\"}", "7x30")],
        },
    },
    Alert {
        name: "RunbookPostgresReplicationLagBytes",
        group: Group::Postgres,
        severity: Severity::Warning,
        expr: "runbook_postgres_replication_lag_bytes{%E%, position=\"replay\"} > %T%",
        summary: "A PostgreSQL standby is far behind the primary (bytes).",
        description: "Standby {{ $labels.application_name }} of {{ $labels.check }} has {{ $value | humanize1024 }}B of WAL not yet replayed.",
        explain: "WAL between the primary's position and a standby's replay position (`pg_stat_replication`) above the threshold",
        runbook: Runbook {
            meaning: "Seen from the primary, a standby has not replayed a large amount of WAL.",
            impact: "Reads from that standby are stale; a failover now would lose or delay that much data; the primary keeps the WAL (disk grows if a slot is used).",
            diagnose: "On the primary:\n\n```sql\nSELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS replay_bytes, replay_lag\n  FROM pg_stat_replication;\n```\nOn the standby: `SELECT pg_is_wal_replay_paused();` and look for long queries that conflict with replay.",
            fix: "- Resume a paused replay: `SELECT pg_wal_replay_resume();`\n- Cancel long standby queries or lower `max_standby_streaming_delay`.\n- Check the standby's disk and network throughput.",
            escalate: "Escalate to the database owners if the lag keeps growing for 30 minutes or the primary's disk fills.",
        },
        test: Fixture {
            firing: &[("runbook_postgres_replication_lag_bytes{%L%,check=\"pg\",application_name=\"standby1\",client_addr=\"10.0.0.2\",position=\"replay\"}", "209715200x30")],
            delay: 0,
            labels: "%L%,check=\"pg\",application_name=\"standby1\",client_addr=\"10.0.0.2\",position=\"replay\"",
            value: "200Mi",
            quiet: &[("runbook_postgres_replication_lag_bytes{%L%,check=\"pg\",application_name=\"standby1\",client_addr=\"10.0.0.2\",position=\"replay\"}", "1024x30")],
        },
    },
    Alert {
        name: "RunbookPostgresReplicationLagSeconds",
        group: Group::Postgres,
        severity: Severity::Warning,
        expr: "runbook_postgres_replication_lag_time_seconds{%E%, position=\"replay\"} > %T%",
        summary: "A PostgreSQL standby is far behind the primary (time).",
        description: "Standby {{ $labels.application_name }} of {{ $labels.check }} replays {{ $value | humanizeDuration }} behind the primary.",
        explain: "`replay_lag` of a standby (`pg_stat_replication`) above the threshold",
        runbook: Runbook {
            meaning: "Seen from the primary, a standby replays changes with a long delay.",
            impact: "Reads from the standby are that stale; a failover would lose up to that much.",
            diagnose: "```sql\nSELECT application_name, state, write_lag, flush_lag, replay_lag FROM pg_stat_replication;\n```\nA large `write_lag` points at the network; a large `replay_lag` with small `flush_lag` at the standby's replay (conflicting queries, slow disk).",
            fix: "As for RunbookPostgresReplicationLagBytes.",
            escalate: "Escalate to the database owners if it lasts more than 30 minutes.",
        },
        test: Fixture {
            firing: &[("runbook_postgres_replication_lag_time_seconds{%L%,check=\"pg\",application_name=\"standby1\",client_addr=\"10.0.0.2\",position=\"replay\"}", "120x30")],
            delay: 0,
            labels: "%L%,check=\"pg\",application_name=\"standby1\",client_addr=\"10.0.0.2\",position=\"replay\"",
            value: "2m 0s",
            quiet: &[("runbook_postgres_replication_lag_time_seconds{%L%,check=\"pg\",application_name=\"standby1\",client_addr=\"10.0.0.2\",position=\"replay\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookPostgresStandbyLagBytes",
        group: Group::Postgres,
        severity: Severity::Warning,
        expr: "runbook_postgres_standby_unreplayed_bytes{%E%} > %T%",
        summary: "A PostgreSQL standby has received WAL it has not replayed.",
        description: "Standby {{ $labels.check }} has {{ $value | humanize1024 }}B of received WAL waiting to be replayed.",
        explain: "on a standby, received but not replayed WAL above the threshold",
        runbook: Runbook {
            meaning: "Seen from the standby itself, WAL arrives but replay does not keep up.",
            impact: "Reads from this standby are stale.",
            diagnose: "On the standby:\n\n```sql\nSELECT pg_is_wal_replay_paused(),\n       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS unreplayed_bytes,\n       now() - pg_last_xact_replay_timestamp() AS replay_age;\n```",
            fix: "Resume a paused replay (`SELECT pg_wal_replay_resume();`), cancel queries conflicting with replay, check the standby's disk.",
            escalate: "Escalate to the database owners if it keeps growing.",
        },
        test: Fixture {
            firing: &[("runbook_postgres_standby_unreplayed_bytes{%L%,check=\"standby\"}", "209715200x30")],
            delay: 0,
            labels: "%L%,check=\"standby\"",
            value: "200Mi",
            quiet: &[("runbook_postgres_standby_unreplayed_bytes{%L%,check=\"standby\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookPostgresStandbyLagSeconds",
        group: Group::Postgres,
        severity: Severity::Warning,
        expr: "runbook_postgres_standby_replay_lag_seconds{%E%} > %T%",
        summary: "A PostgreSQL standby replays WAL with a long delay.",
        description: "Standby {{ $labels.check }} is {{ $value | humanizeDuration }} behind in replay.",
        explain: "on a standby, age of the last replayed transaction while WAL waits, above the threshold (0 when caught up, so an idle primary is not lag)",
        runbook: Runbook {
            meaning: "The standby has WAL waiting, and the last transaction it replayed is old.",
            impact: "Reads from this standby are stale by about this much.",
            diagnose: "See RunbookPostgresStandbyLagBytes; `SELECT now() - pg_last_xact_replay_timestamp();` on the standby.",
            fix: "As for RunbookPostgresStandbyLagBytes.",
            escalate: "Escalate to the database owners if it lasts more than 30 minutes.",
        },
        test: Fixture {
            firing: &[("runbook_postgres_standby_replay_lag_seconds{%L%,check=\"standby\"}", "300x30")],
            delay: 0,
            labels: "%L%,check=\"standby\"",
            value: "5m 0s",
            quiet: &[("runbook_postgres_standby_replay_lag_seconds{%L%,check=\"standby\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookPostgresStandbyNotStreaming",
        group: Group::Postgres,
        severity: Severity::Critical,
        expr: "runbook_postgres_standby_wal_receiver_streaming{%E%} == 0",
        summary: "A PostgreSQL standby is not streaming from its primary.",
        description: "Standby {{ $labels.check }} has no streaming WAL receiver (value {{ $value }}); it falls further behind every second.",
        explain: "on a standby, the WAL receiver is not streaming",
        runbook: Runbook {
            meaning: "The standby's WAL receiver is not connected to the primary.",
            impact: "The standby stops receiving changes: reads get staler, and it cannot take over without data loss.",
            diagnose: "On the standby: `SELECT * FROM pg_stat_wal_receiver;` and the server log (`could not connect to the primary server`, `requested WAL segment has already been removed`). On the primary: `SELECT * FROM pg_replication_slots;`.",
            fix: "- Fix the connection (network, `primary_conninfo`, replication password).\n- If the WAL it needs is gone, rebuild the standby with `pg_basebackup`.",
            escalate: "P0 when this standby is the failover target: page the database owners.",
        },
        test: Fixture {
            firing: &[("runbook_postgres_standby_wal_receiver_streaming{%L%,check=\"standby\"}", "0x30")],
            delay: 0,
            labels: "%L%,check=\"standby\"",
            value: "0",
            quiet: &[("runbook_postgres_standby_wal_receiver_streaming{%L%,check=\"standby\"}", "1x30")],
        },
    },
    Alert {
        name: "RunbookRedisHitRatioLow",
        group: Group::Redis,
        severity: Severity::Info,
        expr: "sum by (job, instance, check) (rate(runbook_redis_keyspace_hits_total{%E%}[10m]))\n/\n(sum by (job, instance, check) (rate(runbook_redis_keyspace_hits_total{%E%}[10m])) + sum by (job, instance, check) (rate(runbook_redis_keyspace_misses_total{%E%}[10m])))\n< %T%",
        summary: "The Redis cache hit ratio is low.",
        description: "Only {{ $value | humanizePercentage }} of key lookups on {{ $labels.check }} found their key over the last 10 minutes.",
        explain: "hits / (hits + misses) over 10 minutes below the threshold",
        runbook: Runbook {
            meaning: "Most lookups miss: the cache does not hold what the application asks for.",
            impact: "More load on the database behind the cache, and slower responses.",
            diagnose: "```sh\nredis-cli -u \"$REDIS_URL\" INFO stats | grep -E 'keyspace_(hits|misses)|evicted_keys|expired_keys'\nredis-cli -u \"$REDIS_URL\" INFO memory | grep -E 'used_memory_human|maxmemory_human|maxmemory_policy'\n```\nMany evictions mean the cache is too small (see RunbookRedisMemoryNearMax); a recent deploy may have changed key names or TTLs; a flush or restart empties the cache.",
            fix: "Give Redis more memory, fix TTLs or key names in the application, or wait for the cache to warm up after a restart.",
            escalate: "P2: a ticket for the owning team; escalate if the database behind it suffers.",
        },
        test: Fixture {
            firing: &[
                ("runbook_redis_keyspace_hits_total{%L%,check=\"cache\"}", "0+10x40"),
                ("runbook_redis_keyspace_misses_total{%L%,check=\"cache\"}", "0+40x40"),
            ],
            delay: 1,
            labels: "%L%,check=\"cache\"",
            value: "20%",
            quiet: &[
                ("runbook_redis_keyspace_hits_total{%L%,check=\"cache\"}", "0+90x40"),
                ("runbook_redis_keyspace_misses_total{%L%,check=\"cache\"}", "0+10x40"),
            ],
        },
    },
    Alert {
        name: "RunbookRedisMemoryNearMax",
        group: Group::Redis,
        severity: Severity::Warning,
        expr: "runbook_redis_memory_used_bytes{%E%}\n/ on (job, instance, check)\n(runbook_redis_memory_max_bytes{%E%} > 0)\n> %T%",
        summary: "Redis is close to maxmemory.",
        description: "{{ $labels.check }} uses {{ $value | humanizePercentage }} of maxmemory.",
        explain: "`used_memory / maxmemory` above the threshold (only where maxmemory is set)",
        runbook: Runbook {
            meaning: "Redis has almost reached `maxmemory`.",
            impact: "Depending on `maxmemory-policy`, Redis evicts keys (more misses) or refuses writes with `OOM command not allowed`.",
            diagnose: "```sh\nredis-cli -u \"$REDIS_URL\" INFO memory\nredis-cli -u \"$REDIS_URL\" --bigkeys\nredis-cli -u \"$REDIS_URL\" INFO keyspace\n```",
            fix: "Raise `maxmemory` (and the container's memory limit), set TTLs on keys that lack them, or delete large unused keys.",
            escalate: "Escalate to the owning team if writes are refused (P0 for a primary store).",
        },
        test: Fixture {
            firing: &[
                ("runbook_redis_memory_used_bytes{%L%,check=\"cache\"}", "950x30"),
                ("runbook_redis_memory_max_bytes{%L%,check=\"cache\"}", "1000x30"),
            ],
            delay: 0,
            labels: "%L%,check=\"cache\"",
            value: "95%",
            quiet: &[
                ("runbook_redis_memory_used_bytes{%L%,check=\"cache\"}", "950x30"),
                ("runbook_redis_memory_max_bytes{%L%,check=\"cache\"}", "0x30"),
            ],
        },
    },
    Alert {
        name: "RunbookRedisRejectedConnections",
        group: Group::Redis,
        severity: Severity::Warning,
        expr: "increase(runbook_redis_rejected_connections_total{%E%}[5m]) > %T%",
        summary: "Redis rejects connections.",
        description: "{{ $labels.check }} rejected {{ $value | humanize }} connections in the last 5 minutes (maxclients reached).",
        explain: "`increase(runbook_redis_rejected_connections_total[5m])` above the threshold",
        runbook: Runbook {
            meaning: "Redis refused new clients because `maxclients` was reached.",
            impact: "Clients that could not connect failed their requests.",
            diagnose: "```sh\nredis-cli -u \"$REDIS_URL\" INFO clients\nredis-cli -u \"$REDIS_URL\" CLIENT LIST | awk '{print $2}' | cut -d= -f2 | cut -d: -f1 | sort | uniq -c | sort -rn | head\n```",
            fix: "Find the client that opens too many connections (a pool per request, a leak) and fix it; raise `maxclients` only if the host has file descriptors to spare.",
            escalate: "Escalate to the owning team of the leaking client.",
        },
        test: Fixture {
            firing: &[("runbook_redis_rejected_connections_total{%L%,check=\"cache\"}", "0x5 5+5x25")],
            delay: 6,
            labels: "%L%,check=\"cache\"",
            value: "15",
            quiet: &[("runbook_redis_rejected_connections_total{%L%,check=\"cache\"}", "3x30")],
        },
    },
    Alert {
        name: "RunbookKafkaConsumerLagHigh",
        group: Group::Kafka,
        severity: Severity::Warning,
        expr: "runbook_kafka_consumergroup_total_lag{%E%} > %T%",
        summary: "A Kafka consumer group is far behind.",
        description: "Group {{ $labels.group }} ({{ $labels.check }}) is {{ $value | humanize }} messages behind.",
        explain: "total lag of a group (messages, never negative) above the threshold",
        runbook: Runbook {
            meaning: "The consumer group has many messages it has not processed yet.",
            impact: "Whatever the consumers produce (emails, projections, indexes) is late by that backlog.",
            diagnose: "```sh\nkafka-consumer-groups.sh --bootstrap-server \"$KAFKA_BROKERS\" --describe --group GROUP\nkubectl get pods -l app=CONSUMER\n```\nLook at `runbook_kafka_consumergroup_topic_time_lag_seconds` for the delay in time, and at the group's status (RunbookKafkaConsumerGroupStalled).",
            fix: "Scale the consumers up (up to the partition count), fix the slow step they wait on, or restart stuck consumers.",
            escalate: "Escalate to the consumer's owners if the backlog keeps growing (RunbookKafkaConsumerLagGrowing).",
        },
        test: Fixture {
            firing: &[("runbook_kafka_consumergroup_total_lag{%L%,check=\"k\",group=\"billing\"}", "50000x30")],
            delay: 0,
            labels: "%L%,check=\"k\",group=\"billing\"",
            value: "50k",
            quiet: &[("runbook_kafka_consumergroup_total_lag{%L%,check=\"k\",group=\"billing\"}", "20x30")],
        },
    },
    Alert {
        name: "RunbookKafkaConsumerLagGrowing",
        group: Group::Kafka,
        severity: Severity::Warning,
        expr: "deriv(runbook_kafka_consumergroup_total_lag{%E%}[15m]) > %T%\nand on (job, instance, check, group)\nrunbook_kafka_consumergroup_total_lag{%E%} > 0",
        summary: "A Kafka consumer group's lag keeps growing.",
        description: "The lag of group {{ $labels.group }} ({{ $labels.check }}) grows by {{ $value | humanize }} messages per second.",
        explain: "`deriv(total lag[15m])` above the threshold while lag is non-zero",
        runbook: Runbook {
            meaning: "Producers write faster than the group consumes, steadily.",
            impact: "The backlog and the delay grow without bound until consumers catch up.",
            diagnose: "```sh\nkafka-consumer-groups.sh --bootstrap-server \"$KAFKA_BROKERS\" --describe --group GROUP\n```\nCompare the topic's produce rate (`rate(runbook_kafka_topic_partition_end_offset_total[5m])`) with the group's consumption.",
            fix: "Scale consumers, add partitions for more parallelism, or throttle the producer.",
            escalate: "Escalate to the consumer's owners; P0 if the data is time-critical.",
        },
        test: Fixture {
            firing: &[("runbook_kafka_consumergroup_total_lag{%L%,check=\"k\",group=\"billing\"}", "0+600x40")],
            delay: 1,
            labels: "%L%,check=\"k\",group=\"billing\"",
            value: "10",
            quiet: &[("runbook_kafka_consumergroup_total_lag{%L%,check=\"k\",group=\"billing\"}", "5000-100x40")],
        },
    },
    Alert {
        name: "RunbookKafkaConsumerGroupStalled",
        group: Group::Kafka,
        severity: Severity::Warning,
        expr: "runbook_kafka_consumergroup_status{%E%, status=\"stalled\"} == 1",
        summary: "A Kafka consumer group is stalled.",
        description: "Group {{ $labels.group }} ({{ $labels.check }}) has members but its committed offsets do not move while it has lag (status stalled = {{ $value }}).",
        explain: "the group's status is `stalled` (lag, members, no commits)",
        runbook: Runbook {
            meaning: "The group is alive but does not commit progress: consumers are stuck (a poison message, a deadlock, a blocked dependency).",
            impact: "Nothing from the affected partitions is processed.",
            diagnose: "```sh\nkafka-consumer-groups.sh --bootstrap-server \"$KAFKA_BROKERS\" --describe --group GROUP --members --verbose\nkubectl logs -l app=CONSUMER --tail=200\n```",
            fix: "Restart the stuck consumers; skip or dead-letter a poison message after recording it.",
            escalate: "Escalate to the consumer's owners within the hour.",
        },
        test: Fixture {
            firing: &[("runbook_kafka_consumergroup_status{%L%,check=\"k\",group=\"billing\",status=\"stalled\"}", "1x30")],
            delay: 0,
            labels: "%L%,check=\"k\",group=\"billing\",status=\"stalled\"",
            value: "1",
            quiet: &[("runbook_kafka_consumergroup_status{%L%,check=\"k\",group=\"billing\",status=\"stalled\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookKafkaConsumerGroupStopped",
        group: Group::Kafka,
        severity: Severity::Critical,
        expr: "runbook_kafka_consumergroup_status{%E%, status=\"stopped\"} == 1",
        summary: "A Kafka consumer group has stopped consuming.",
        description: "Group {{ $labels.group }} ({{ $labels.check }}) has no members while messages wait (status stopped = {{ $value }}).",
        explain: "the group's status is `stopped` (lag, no members)",
        runbook: Runbook {
            meaning: "No consumer of the group is connected, and messages are waiting.",
            impact: "Nothing is processed; the backlog grows with every produced message.",
            diagnose: "```sh\nkafka-consumer-groups.sh --bootstrap-server \"$KAFKA_BROKERS\" --describe --group GROUP --state\nkubectl get deploy,pods -l app=CONSUMER\n```",
            fix: "Start the consumers again (scale the deployment up, fix the crash loop: see RunbookKubePodCrashLooping).",
            escalate: "P0: page the consumer's owners.",
        },
        test: Fixture {
            firing: &[("runbook_kafka_consumergroup_status{%L%,check=\"k\",group=\"billing\",status=\"stopped\"}", "1x30")],
            delay: 0,
            labels: "%L%,check=\"k\",group=\"billing\",status=\"stopped\"",
            value: "1",
            quiet: &[("runbook_kafka_consumergroup_status{%L%,check=\"k\",group=\"billing\",status=\"stopped\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookKubePodCrashLooping",
        group: Group::Kubernetes,
        severity: Severity::Warning,
        expr: "max_over_time(runbook_kubernetes_containers_waiting{%E%, reason=\"CrashLoopBackOff\"}[10m]) > 0",
        summary: "Containers are crash-looping.",
        description: "{{ $value }} containers in namespace {{ $labels.k8s_namespace }} have been in CrashLoopBackOff during the last 10 minutes.",
        explain: "containers waiting in `CrashLoopBackOff`, smoothed over 10 minutes so restarts do not make it flap",
        runbook: Runbook {
            meaning: "Containers keep exiting and Kubernetes waits longer and longer before restarting them.",
            impact: "The pods serve nothing; with every replica crashing, the service is down.",
            diagnose: "```sh\nkubectl -n NAMESPACE get pods | grep CrashLoopBackOff\nkubectl -n NAMESPACE logs POD --previous\nkubectl -n NAMESPACE describe pod POD   # exit code, OOMKilled, probes\n```",
            fix: "- Roll back a bad release: `kubectl -n NAMESPACE rollout undo deployment/NAME`.\n- Fix the missing config or secret named in the log.\n- Exit code 137 with OOMKilled: see RunbookKubeContainerOOMKilled.",
            escalate: "P0 if all replicas of a user-facing service crash: page its owners.",
        },
        test: Fixture {
            firing: &[("runbook_kubernetes_containers_waiting{%L%,check=\"kube\",k8s_namespace=\"shop\",reason=\"CrashLoopBackOff\"}", "2x30")],
            delay: 0,
            labels: "%L%,check=\"kube\",k8s_namespace=\"shop\",reason=\"CrashLoopBackOff\"",
            value: "2",
            quiet: &[("runbook_kubernetes_containers_waiting{%L%,check=\"kube\",k8s_namespace=\"shop\",reason=\"CrashLoopBackOff\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookKubeImagePullFailing",
        group: Group::Kubernetes,
        severity: Severity::Warning,
        expr: "sum by (job, instance, check, k8s_namespace) (runbook_kubernetes_containers_waiting{%E%, reason=~\"ImagePullBackOff|ErrImagePull\"}) > 0",
        summary: "Containers cannot pull their image.",
        description: "{{ $value }} containers in namespace {{ $labels.k8s_namespace }} wait for an image that cannot be pulled.",
        explain: "containers waiting in `ImagePullBackOff` or `ErrImagePull`",
        runbook: Runbook {
            meaning: "The kubelet cannot pull the container image.",
            impact: "New pods (a rollout, a rescheduled pod) do not start; the old ones keep running if there are any.",
            diagnose: "```sh\nkubectl -n NAMESPACE get pods | grep -E 'ImagePull|ErrImage'\nkubectl -n NAMESPACE describe pod POD | sed -n '/Events/,$p'\n```\nThe events say whether the tag does not exist, the registry refused credentials, or it is unreachable.",
            fix: "Fix the image tag in the deployment, renew the image pull secret, or wait out the registry outage.",
            escalate: "Escalate to the release owner or the registry's owners.",
        },
        test: Fixture {
            firing: &[
                ("runbook_kubernetes_containers_waiting{%L%,check=\"kube\",k8s_namespace=\"shop\",reason=\"ImagePullBackOff\"}", "1x30"),
                ("runbook_kubernetes_containers_waiting{%L%,check=\"kube\",k8s_namespace=\"shop\",reason=\"ErrImagePull\"}", "1x30"),
            ],
            delay: 0,
            labels: "%L%,check=\"kube\",k8s_namespace=\"shop\"",
            value: "2",
            quiet: &[("runbook_kubernetes_containers_waiting{%L%,check=\"kube\",k8s_namespace=\"shop\",reason=\"ImagePullBackOff\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookKubeContainerOOMKilled",
        group: Group::Kubernetes,
        severity: Severity::Warning,
        expr: "increase(runbook_kubernetes_container_oom_kills_total{%E%}[10m]) > %T%",
        summary: "A container was OOM-killed.",
        description: "Container {{ $labels.k8s_container }} of pod {{ $labels.k8s_namespace }}/{{ $labels.k8s_pod }} was OOM-killed {{ $value | humanize }} times in the last 10 minutes.",
        explain: "`increase(runbook_kubernetes_container_oom_kills_total[10m])` above the threshold (a counter, so the alert resolves)",
        runbook: Runbook {
            meaning: "The kernel killed the container for using more memory than its limit.",
            impact: "In-flight requests of that container failed; repeated kills become a crash loop.",
            diagnose: "```sh\nkubectl -n NAMESPACE describe pod POD | grep -A3 'Last State'\nkubectl -n NAMESPACE top pod POD --containers\n```\nSee the application dashboard's pod memory panel for the trend before the kill.",
            fix: "Raise the memory limit if the workload needs it; otherwise find the leak (heap dump, recent release).",
            escalate: "Escalate to the owning team if it repeats.",
        },
        test: Fixture {
            firing: &[("runbook_kubernetes_container_oom_kills_total{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "0x5 1x25")],
            delay: 5,
            labels: "%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"",
            value: "1",
            quiet: &[("runbook_kubernetes_container_oom_kills_total{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "4x30")],
        },
    },
    Alert {
        name: "RunbookKubePodsNotReady",
        group: Group::Kubernetes,
        severity: Severity::Warning,
        expr: "runbook_kubernetes_pods_not_ready{%E%} > %T%",
        summary: "Pods are running but not ready.",
        description: "{{ $value }} pods in namespace {{ $labels.k8s_namespace }} have been not ready for a while.",
        explain: "running pods whose Ready condition is false, above the threshold",
        runbook: Runbook {
            meaning: "Pods run but fail their readiness probe, so Services send them no traffic.",
            impact: "Less capacity; if no replica is ready, the service is down (see RunbookKubeServiceNoReadyEndpoints).",
            diagnose: "```sh\nkubectl -n NAMESPACE get pods -o wide | grep -v '1/1\\|2/2'\nkubectl -n NAMESPACE describe pod POD | grep -A5 Readiness\nkubectl -n NAMESPACE logs POD\n```",
            fix: "Fix what the readiness probe checks (a dependency that is down, a slow start); adjust the probe if it is wrong.",
            escalate: "Escalate to the owning team.",
        },
        test: Fixture {
            firing: &[("runbook_kubernetes_pods_not_ready{%L%,check=\"kube\",k8s_namespace=\"shop\"}", "2x40")],
            delay: 0,
            labels: "%L%,check=\"kube\",k8s_namespace=\"shop\"",
            value: "2",
            quiet: &[("runbook_kubernetes_pods_not_ready{%L%,check=\"kube\",k8s_namespace=\"shop\"}", "0x40")],
        },
    },
    Alert {
        name: "RunbookKubePodPendingTooLong",
        group: Group::Kubernetes,
        severity: Severity::Warning,
        expr: "time() - runbook_kubernetes_oldest_pending_pod_creation_timestamp_seconds{%E%} > %T%",
        summary: "A pod has been Pending for too long.",
        description: "The oldest Pending pod in namespace {{ $labels.k8s_namespace }} was created {{ $value | humanizeDuration }} ago.",
        explain: "age of the oldest Pending pod above the threshold",
        runbook: Runbook {
            meaning: "A pod cannot be scheduled or cannot start its containers.",
            impact: "Rollouts and scale-ups do not progress; capacity is lower than asked for.",
            diagnose: "```sh\nkubectl -n NAMESPACE get pods --field-selector=status.phase=Pending\nkubectl -n NAMESPACE describe pod POD | sed -n '/Events/,$p'   # FailedScheduling: insufficient cpu/memory, taints, PVC\nkubectl describe nodes | grep -A5 'Allocated resources'\n```",
            fix: "Add nodes or free capacity, lower the pod's requests, fix the node selector or toleration, or bind the missing volume.",
            escalate: "Escalate to the platform team for cluster capacity.",
        },
        test: Fixture {
            firing: &[("runbook_kubernetes_oldest_pending_pod_creation_timestamp_seconds{%L%,check=\"kube\",k8s_namespace=\"shop\"}", "0x40")],
            delay: 16,
            labels: "%L%,check=\"kube\",k8s_namespace=\"shop\"",
            value: "18m 0s",
            quiet: &[("runbook_kubernetes_oldest_pending_pod_creation_timestamp_seconds{%L%,check=\"kube\",k8s_namespace=\"shop\"}", "0+60x40")],
        },
    },
    Alert {
        name: "RunbookKubeNodeNotReady",
        group: Group::Kubernetes,
        severity: Severity::Warning,
        expr: "runbook_kubernetes_nodes_not_ready{%E%} > %T%",
        summary: "Kubernetes nodes are NotReady.",
        description: "{{ $value }} nodes seen by {{ $labels.check }} are NotReady.",
        explain: "nodes whose Ready condition is not true, above the threshold",
        runbook: Runbook {
            meaning: "The kubelet of one or more nodes stopped reporting healthy.",
            impact: "Pods on those nodes are evicted after a timeout; the cluster has less capacity.",
            diagnose: "```sh\nkubectl get nodes\nkubectl describe node NODE | sed -n '/Conditions/,/Addresses/p'\n```\nOn the node: `journalctl -u kubelet`, disk and memory pressure.",
            fix: "Restart the kubelet or the node; cordon and drain it if it keeps failing; replace it in a managed node group.",
            escalate: "Escalate to the platform team; P0 if several nodes are affected.",
        },
        test: Fixture {
            firing: &[("runbook_kubernetes_nodes_not_ready{%L%,check=\"kube\"}", "1x30")],
            delay: 0,
            labels: "%L%,check=\"kube\"",
            value: "1",
            quiet: &[("runbook_kubernetes_nodes_not_ready{%L%,check=\"kube\"}", "0x30")],
        },
    },
    Alert {
        name: "RunbookKubeServiceNoReadyEndpoints",
        group: Group::Kubernetes,
        severity: Severity::Critical,
        expr: "runbook_kubernetes_service_ready_endpoints{%E%} == 0",
        summary: "A Kubernetes Service has no ready endpoints.",
        description: "Service {{ $labels.k8s_namespace }}/{{ $labels.k8s_service }} has {{ $value }} ready endpoints: requests to it fail.",
        explain: "ready endpoint addresses of a Service (an explicit 0) equal 0",
        runbook: Runbook {
            meaning: "No pod behind the Service is ready.",
            impact: "Every request to the Service fails: an outage of whatever it serves.",
            diagnose: "```sh\nkubectl -n NAMESPACE get endpointslices -l kubernetes.io/service-name=SERVICE\nkubectl -n NAMESPACE get pods -l SELECTOR_OF_THE_SERVICE\nkubectl -n NAMESPACE describe service SERVICE\n```\nCheck the Service's selector matches the pods' labels, then why the pods are not ready.",
            fix: "Fix the pods (crash loop, readiness probe, image pull) or the selector; roll back the last release.",
            escalate: "P0: page the owning team.",
        },
        test: Fixture {
            firing: &[("runbook_kubernetes_service_ready_endpoints{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_service=\"api\"}", "0x30")],
            delay: 0,
            labels: "%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_service=\"api\"",
            value: "0",
            quiet: &[("runbook_kubernetes_service_ready_endpoints{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_service=\"api\"}", "3x30")],
        },
    },
    Alert {
        name: "RunbookTlsCertificateExpiring",
        group: Group::Tls,
        severity: Severity::Warning,
        expr: "(runbook_tls_earliest_cert_expiry_timestamp_seconds{%E%} - time()) / 86400 < %T%",
        summary: "A TLS certificate expires soon.",
        description: "The certificate chain presented to check {{ $labels.check }} expires in {{ $value | printf \"%.1f\" }} days.",
        explain: "days until the earliest `notAfter` of the chain below the threshold",
        runbook: Runbook {
            meaning: "A certificate the target presents expires within the threshold.",
            impact: "None yet; after expiry, clients refuse the connection.",
            diagnose: "```sh\nopenssl s_client -connect HOST:443 -servername HOST </dev/null 2>/dev/null | openssl x509 -noout -subject -issuer -enddate\nkubectl get certificates -A   # cert-manager\n```",
            fix: "Renew the certificate; with cert-manager, look at why renewal failed (`kubectl describe certificate`, the ACME challenge).",
            escalate: "Escalate to the certificate's owner now; it turns critical at the critical threshold.",
        },
        test: Fixture {
            firing: &[("runbook_tls_earliest_cert_expiry_timestamp_seconds{%L%,check=\"web\"}", "864000x30")],
            delay: 0,
            labels: "%L%,check=\"web\"",
            value: "10.0",
            quiet: &[("runbook_tls_earliest_cert_expiry_timestamp_seconds{%L%,check=\"web\"}", "8640000x30")],
        },
    },
    Alert {
        name: "RunbookTlsCertificateExpiringCritical",
        group: Group::Tls,
        severity: Severity::Critical,
        expr: "(runbook_tls_earliest_cert_expiry_timestamp_seconds{%E%} - time()) / 86400 < %T%",
        summary: "A TLS certificate expires within days.",
        description: "The certificate chain presented to check {{ $labels.check }} expires in {{ $value | printf \"%.1f\" }} days.",
        explain: "days until the earliest `notAfter` of the chain below the critical threshold",
        runbook: Runbook {
            meaning: "A certificate the target presents expires within days.",
            impact: "When it expires, every client that verifies certificates fails to connect: an outage.",
            diagnose: "As for RunbookTlsCertificateExpiring.",
            fix: "Renew and deploy the certificate now; restart or reload the server that caches it.",
            escalate: "P0: page the owner of the endpoint.",
        },
        test: Fixture {
            firing: &[("runbook_tls_earliest_cert_expiry_timestamp_seconds{%L%,check=\"web\"}", "86400x30")],
            delay: 0,
            labels: "%L%,check=\"web\"",
            value: "1.0",
            quiet: &[("runbook_tls_earliest_cert_expiry_timestamp_seconds{%L%,check=\"web\"}", "864000x30")],
        },
    },
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
    Alert {
        name: "AppHighErrorRate",
        group: Group::Application,
        severity: Severity::Critical,
        expr: "sum by (job) (rate(http_requests_total{%A%, status=~\"5..\"}[5m]))\n/\nsum by (job) (rate(http_requests_total{%A%}[5m]))\n> %T%",
        summary: "The application answers many requests with 5xx.",
        description: "{{ $value | humanizePercentage }} of the requests to {{ $labels.job }} failed with a 5xx status over the last 5 minutes.",
        explain: "share of `http_requests_total` with a 5xx `status` over 5 minutes above the threshold",
        runbook: Runbook {
            meaning: "A large share of requests fail on the server side.",
            impact: "Users see errors: an outage for the affected endpoints.",
            diagnose: "Which endpoints fail:\n\n```promql\nsum by (endpoint, status) (rate(http_requests_total{status=~\"5..\"}[5m]))\n```\nThen the exporter's overview dashboard: a red dependency (PostgreSQL, Redis, Kafka) usually explains it.\n\n```sh\nkubectl -n NAMESPACE logs deploy/api --since=10m | grep -i error | tail -50\nkubectl -n NAMESPACE rollout history deploy/api\n```",
            fix: "Roll back a release that started it (`kubectl rollout undo deploy/api`); fix or fail over the dependency that is down.",
            escalate: "P0: page the application's owners and open an incident.",
        },
        test: Fixture {
            firing: &[
                ("http_requests_total{%APP%,endpoint=\"/orders\",status=\"500\"}", "0+12x30"),
                ("http_requests_total{%APP%,endpoint=\"/orders\",status=\"200\"}", "0+48x30"),
            ],
            delay: 1,
            labels: "job=\"api\"",
            value: "20%",
            quiet: &[
                ("http_requests_total{%APP%,endpoint=\"/orders\",status=\"500\"}", "0+1x30"),
                ("http_requests_total{%APP%,endpoint=\"/orders\",status=\"200\"}", "0+99x30"),
            ],
        },
    },
    Alert {
        name: "AppHighLatencyP95",
        group: Group::Application,
        severity: Severity::Warning,
        expr: "histogram_quantile(0.95, sum by (job, le) (rate(http_request_duration_seconds_bucket{%A%}[5m]))) > %T%",
        summary: "The application's p95 latency is high.",
        description: "95% of requests to {{ $labels.job }} take up to {{ $value | humanizeDuration }}; the guides call anything above 2 s high latency.",
        explain: "p95 of `http_request_duration_seconds` over 5 minutes above the threshold",
        runbook: Runbook {
            meaning: "The slowest 5% of requests take longer than the threshold.",
            impact: "Users wait; clients with short timeouts fail.",
            diagnose: "Which endpoints are slow:\n\n```promql\nhistogram_quantile(0.95, sum by (endpoint, le) (rate(http_request_duration_seconds_bucket[5m])))\n```\nThen the dependencies: PostgreSQL long queries and lock waits, Redis hit ratio, DB pool usage (the application dashboard), CPU throttling (`kubectl top pods`).",
            fix: "Scale out if CPU-bound; fix the slow query or the missing cache; roll back a release that introduced it.",
            escalate: "Escalate to the owning team if it lasts; P0 if requests time out.",
        },
        test: Fixture {
            firing: &[
                ("http_request_duration_seconds_bucket{%APP%,le=\"1\"}", "0+10x30"),
                ("http_request_duration_seconds_bucket{%APP%,le=\"5\"}", "0+100x30"),
                ("http_request_duration_seconds_bucket{%APP%,le=\"+Inf\"}", "0+100x30"),
            ],
            delay: 1,
            labels: "job=\"api\"",
            value: "4.778s",
            quiet: &[
                ("http_request_duration_seconds_bucket{%APP%,le=\"1\"}", "0+99x30"),
                ("http_request_duration_seconds_bucket{%APP%,le=\"5\"}", "0+100x30"),
                ("http_request_duration_seconds_bucket{%APP%,le=\"+Inf\"}", "0+100x30"),
            ],
        },
    },
    Alert {
        name: "AppDatabasePoolNearlyExhausted",
        group: Group::Application,
        severity: Severity::Warning,
        expr: "max by (job, instance) (db_pool_connections_active{%A%})\n/ on (job, instance)\nmax by (job, instance) (db_pool_connections_max{%A%})\n> %T%",
        summary: "The application's database pool is nearly exhausted.",
        description: "{{ $labels.instance }} of {{ $labels.job }} uses {{ $value | humanizePercentage }} of its database connection pool.",
        explain: "`db_pool_connections_active / db_pool_connections_max` above the threshold",
        runbook: Runbook {
            meaning: "Almost every connection in the application's pool is checked out.",
            impact: "Requests wait for a connection, then time out.",
            diagnose: "Look for slow queries holding connections (PostgreSQL dashboard: long queries, lock waits) and at `pg_stat_activity` grouped by `application_name`.",
            fix: "Fix the slow queries or leaks; raise the pool size only if PostgreSQL has connections to spare (see RunbookPostgresConnectionsHigh).",
            escalate: "Escalate to the application's owners.",
        },
        test: Fixture {
            firing: &[
                ("db_pool_connections_active{%APP%}", "19x30"),
                ("db_pool_connections_max{%APP%}", "20x30"),
            ],
            delay: 0,
            labels: "job=\"api\",instance=\"api-0:8080\"",
            value: "95%",
            quiet: &[
                ("db_pool_connections_active{%APP%}", "5x30"),
                ("db_pool_connections_max{%APP%}", "20x30"),
            ],
        },
    },
    Alert {
        name: "AppCacheHitRatioLow",
        group: Group::Application,
        severity: Severity::Info,
        expr: "sum by (job) (rate(cache_hits_total{%A%}[10m]))\n/\n(sum by (job) (rate(cache_hits_total{%A%}[10m])) + sum by (job) (rate(cache_misses_total{%A%}[10m])))\n< %T%",
        summary: "The application's cache hit ratio is low.",
        description: "Only {{ $value | humanizePercentage }} of cache lookups in {{ $labels.job }} were hits over the last 10 minutes.",
        explain: "`cache_hits_total / (cache_hits_total + cache_misses_total)` over 10 minutes below the threshold",
        runbook: Runbook {
            meaning: "The application's own cache misses most lookups.",
            impact: "More load on the backing store and slower requests.",
            diagnose: "Compare with the Redis check's hit ratio and evictions (Redis & cache dashboard); look for a recent deploy that changed cache keys.",
            fix: "Fix the keys or TTLs, or give the cache more memory.",
            escalate: "P2: a ticket for the application's owners.",
        },
        test: Fixture {
            firing: &[
                ("cache_hits_total{%APP%}", "0+10x40"),
                ("cache_misses_total{%APP%}", "0+40x40"),
            ],
            delay: 1,
            labels: "job=\"api\"",
            value: "20%",
            quiet: &[
                ("cache_hits_total{%APP%}", "0+95x40"),
                ("cache_misses_total{%APP%}", "0+5x40"),
            ],
        },
    },
    Alert {
        name: "AppPodMemoryNearLimit",
        group: Group::Application,
        severity: Severity::Warning,
        expr: "max by (namespace, pod, container) (container_memory_working_set_bytes{%C%})\n/ on (namespace, pod, container)\nmax by (namespace, pod, container) (kube_pod_container_resource_limits{%C%, resource=\"memory\"})\n> %T%",
        summary: "An application container is close to its memory limit.",
        description: "Container {{ $labels.container }} of pod {{ $labels.namespace }}/{{ $labels.pod }} uses {{ $value | humanizePercentage }} of its memory limit.",
        explain: "cAdvisor working set / kube-state-metrics memory limit above the threshold",
        runbook: Runbook {
            meaning: "The container's working set is close to its memory limit.",
            impact: "At the limit the kernel OOM-kills it (RunbookKubeContainerOOMKilled).",
            diagnose: "```sh\nkubectl -n NAMESPACE top pod POD --containers\nkubectl -n NAMESPACE get pod POD -o jsonpath='{.spec.containers[*].resources}'\n```\nLook at the trend on the application dashboard: a steady climb is a leak, a plateau a limit that is too low.",
            fix: "Raise the limit, or find the leak (heap profile) and roll back the release that introduced it.",
            escalate: "Escalate to the application's owners.",
        },
        test: Fixture {
            firing: &[
                ("container_memory_working_set_bytes{namespace=\"production\",pod=\"api-1\",container=\"api\",node=\"n1\"}", "950x30"),
                ("kube_pod_container_resource_limits{namespace=\"production\",pod=\"api-1\",container=\"api\",resource=\"memory\",unit=\"byte\"}", "1000x30"),
            ],
            delay: 0,
            labels: "namespace=\"production\",pod=\"api-1\",container=\"api\"",
            value: "95%",
            quiet: &[
                ("container_memory_working_set_bytes{namespace=\"production\",pod=\"api-1\",container=\"api\",node=\"n1\"}", "500x30"),
                ("kube_pod_container_resource_limits{namespace=\"production\",pod=\"api-1\",container=\"api\",resource=\"memory\",unit=\"byte\"}", "1000x30"),
            ],
        },
    },
];
