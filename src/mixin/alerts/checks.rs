//! The alerts on failing checks: one per kind that a troubleshooting guide
//! starts from (the service is down), and Kafka's per-broker check.

use super::{Alert, Class, Fixture, Group, Priority, Runbook, Team};

/// The check-down expression of one kind: the share of the window a check
/// spent failing, once it ran often enough to tell (`%W%`, `%R%`, `%N%`
/// from `check_down:` in the config); or failing without a success for
/// `%N%` of its own intervals (checks with long intervals); or, while its
/// exporter cannot be scraped, failing at the last run seen, so that a
/// lost scrape never reads as recovery (`%K%`).
macro_rules! check_down_expr {
    ($kind:literal) => {
        concat!(
            "(\n  1 - avg_over_time(runbook_check_up{%E%, kind=\"",
            $kind,
            "\"}[%W%]) >= %R%\n",
            "  and changes(runbook_check_last_run_timestamp_seconds{%E%, kind=\"",
            $kind,
            "\"}[%W%]) + 1 >= %N%\n)\n",
            "or\n(\n  (1 - runbook_check_up{%E%, kind=\"",
            $kind,
            "\"}) == 1\n",
            "  and (\n    time() - runbook_check_last_success_timestamp_seconds{%E%, kind=\"",
            $kind,
            "\"}\n",
            "      >= %N% * runbook_check_interval_seconds{%E%, kind=\"",
            $kind,
            "\"}\n",
            "    or changes(runbook_check_last_run_timestamp_seconds{%E%, kind=\"",
            $kind,
            "\"}[%K%]) + 1 >= %N%\n",
            "      unless runbook_check_last_success_timestamp_seconds{%E%, kind=\"",
            $kind,
            "\"}\n  )\n)\n",
            "or\n(\n  1 - last_over_time(runbook_check_up{%E%, kind=\"",
            $kind,
            "\"}[%K%]) == 1\n",
            "  and on (job, instance) up == 0\n)"
        )
    };
}

macro_rules! check_down {
    ($name:literal, $kind:literal, $what:literal, $group:ident, $team:expr, $diagnose:literal, $fix:literal) => {
        Alert {
            name: $name,
            group: Group::$group,
            // "Single service down" is P1 in the guides; several at once is
            // the P0 aggregate RunbookDependenciesDown.
            priority: Priority::P1,
            team: $team,
            class: Class::CheckDown,
            expr: check_down_expr!($kind),
            summary: concat!("A ", $what, " check is failing."),
            description: concat!(
                "Check {{ $labels.check }} ({{ $labels.kind }}) on {{ $labels.instance }} failed {{ $value | humanizePercentage }} of the time over the last %W% (or at every run since its last success). ",
                "The failure reason is in runbook_check_failures_total{reason} and on the exporter's status page."
            ),
            explain: concat!("`runbook_check_up{kind=\"", $kind, "\"}` failing for the failure ratio over the window, or for `min_runs` intervals; kept while the exporter is unreachable"),
            runbook: Runbook {
                meaning: concat!(
                    "The exporter's check of kind `", $kind, "` could not complete: ", $what,
                    " did not answer, refused us, or answered wrongly, on at least the configured share of its runs over the window (a dependency failing every other run counts), or on every run for `min_runs` of the check's own intervals."
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
                escalate: "P1 (single service down): the owning team within 30 minutes. Several dependencies down at once is P0 and pages through RunbookDependenciesDown. If only the exporter cannot reach it (network policy, credentials rotated), fix access and tell the exporter's owners.",
            },
            test: Fixture {
                firing: &[
                    (concat!("runbook_check_up{%L%,check=\"c\",kind=\"", $kind, "\"}"), "0x30"),
                    (concat!("runbook_check_last_run_timestamp_seconds{%L%,check=\"c\",kind=\"", $kind, "\"}"), "0+60x30"),
                ],
                delay: 2,
                labels: concat!("%L%,check=\"c\",kind=\"", $kind, "\""),
                value: "100%",
                quiet: &[
                    (concat!("runbook_check_up{%L%,check=\"c\",kind=\"", $kind, "\"}"), "1x30"),
                    (concat!("runbook_check_last_run_timestamp_seconds{%L%,check=\"c\",kind=\"", $kind, "\"}"), "0+60x30"),
                ],
            },
        }
    };
}

pub(super) const ALERTS: &[Alert] = &[
    check_down!(
        "RunbookPostgresDown",
        "postgres",
        "PostgreSQL",
        Postgres,
        Some(Team::Dba),
        "2. From a host with access, run the guide's check by hand:\n\n   ```sh\n   pg_isready -h \"$DB_HOST\" -p 5432\n   psql \"$DATABASE_URL\" -c 'SELECT 1'\n   ```\n3. On the server: `kubectl logs` or `journalctl -u postgresql` for crashes, `df -h` on the data volume, and `SELECT count(*) FROM pg_stat_activity` when you can connect.",
        "- Server down: restart it (`pg_ctlcluster`, or `kubectl rollout restart statefulset/...`) once the cause (disk full, OOM) is removed.\n- `auth`: the monitoring role's password changed; update the secret the check reads (`password_file`).\n- `timeout` with the server up: it is overloaded or max_connections is exhausted; see RunbookPostgresConnections."
    ),
    check_down!(
        "RunbookRedisDown",
        "redis",
        "Redis",
        Redis,
        None,
        "2. Run the guide's check by hand:\n\n   ```sh\n   redis-cli -u \"$REDIS_URL\" PING\n   redis-cli -u \"$REDIS_URL\" INFO server | head\n   ```\n3. Look at the server's log and `INFO memory` / `INFO clients` when it answers.",
        "- Restart a crashed server; if it was OOM-killed, raise its memory limit or set `maxmemory` below it.\n- `auth`: update the password the check reads.\n- `connection_refused` right after a failover: point the check (and the app) at the new primary."
    ),
    check_down!(
        "RunbookClickHouseDown",
        "clickhouse",
        "ClickHouse",
        Checks,
        Some(Team::Dba),
        "2. Run the guide's checks by hand (the exporter runs both):\n\n   ```sh\n   curl -sS \"$CLICKHOUSE_URL/ping\"\n   curl -sS \"$CLICKHOUSE_URL/?query=SELECT%201\"\n   ```\n3. `/ping` answers without credentials: if it works and `SELECT 1` fails, the problem is authentication or the query path.",
        "- Restart the server if it crashed; check `clickhouse-server.err.log` and disk space first.\n- `auth`: update the user's password in the secret the check reads."
    ),
    check_down!(
        "RunbookS3Down",
        "s3",
        "S3 bucket",
        Checks,
        None,
        "2. Run the guide's checks by hand:\n\n   ```sh\n   aws s3 ls \"s3://$S3_BUCKET\" --endpoint-url \"$S3_ENDPOINT\"\n   aws s3api head-bucket --bucket \"$S3_BUCKET\"\n   ```\n3. `auth` usually means expired or rotated keys, or a policy change. Check who the keys are and what they may do:\n\n   ```sh\n   aws sts get-caller-identity\n   aws iam simulate-principal-policy --policy-source-arn \"$(aws sts get-caller-identity --query Arn --output text)\" \\\n     --action-names s3:ListBucket s3:GetObject s3:PutObject --resource-arns \"arn:aws:s3:::$S3_BUCKET\" \"arn:aws:s3:::$S3_BUCKET/*\"\n   ```\n4. `dns`/`network` mean an endpoint or VPC endpoint problem.",
        "- Rotate or restore the access keys the check and the application use.\n- Check the bucket policy and the endpoint's status page for a provider outage."
    ),
    check_down!(
        "RunbookKafkaDown",
        "kafka",
        "Kafka cluster",
        Kafka,
        None,
        "2. Run the guide's checks by hand:\n\n   ```sh\n   kafka-broker-api-versions.sh --bootstrap-server \"$KAFKA_BROKERS\"\n   kafka-topics.sh --bootstrap-server \"$KAFKA_BROKERS\" --list\n   ```\n3. See RunbookKafkaBrokerDown for single brokers.",
        "- Restart failed brokers; check their disks and logs.\n- `auth`/`tls`: fix the SASL credentials or certificates the check uses."
    ),
    Alert {
        name: "RunbookKafkaBrokerDown",
        group: Group::Kafka,
        priority: Priority::P2,
        team: None,
        class: Class::Symptom,
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
        Checks,
        None,
        "2. Run the guide's check by hand and look at the status code and timing:\n\n   ```sh\n   curl -fsS -o /dev/null -w '%{http_code} %{time_total}\\n' \"$APP_URL/health\"\n   ```\n3. `unexpected_response` means a wrong status code or body; see `runbook_http_status_code`. Then `kubectl get pods` and `kubectl logs` for the service behind it.",
        "- Roll back the last deployment if it started with a release (`kubectl rollout undo deployment/NAME`).\n- Restart crashed pods; scale up if they are overloaded."
    ),
    check_down!(
        "RunbookTcpEndpointDown",
        "tcp",
        "TCP endpoint",
        Checks,
        None,
        "2. Run the guide's check by hand:\n\n   ```sh\n   nc -zv HOST PORT\n   ```\n3. `connection_refused`: nothing listens; `timeout`: a firewall or an overloaded host.",
        "Start the service that should listen on the port, or fix the network policy or security group that blocks it."
    ),
    check_down!(
        "RunbookDnsCheckFailing",
        "dns",
        "DNS",
        Checks,
        None,
        "2. Run the guide's check by hand:\n\n   ```sh\n   dig +short NAME @SERVER\n   kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50\n   ```\n3. An empty answer (`unexpected_response`) means the record is gone; `dns` means the server returned an error.",
        "Restore the record, or restart the resolver (CoreDNS) if it fails for every name."
    ),
    check_down!(
        "RunbookKubernetesApiDown",
        "kubernetes",
        "Kubernetes API",
        Kubernetes,
        None,
        "2. Run the guide's check by hand with the exporter's service account:\n\n   ```sh\n   kubectl get --raw /readyz\n   kubectl auth can-i list pods --as=system:serviceaccount:NAMESPACE:runbook-exporter\n   ```\n3. `auth` means the ServiceAccount token or RBAC changed; every Kubernetes alert below is blind while this fires.",
        "Restore the exporter's RBAC (`deploy/kubernetes`), or wait for the control plane to recover."
    ),
];
