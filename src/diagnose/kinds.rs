//! What `diagnose` knows per kind, in one place: which samples are the
//! evidence, when a passing run is degraded (the shipped alerts' default
//! thresholds from `alerts/config.yaml`), which alert (and so runbook)
//! covers a failure, and the next commands to run, with `{host}`-style
//! placeholders filled from the check's own target.

use crate::checks::{CheckSpec, Reason, Sample};

/// One rule that makes a passing run "degraded": a sample of `metric`
/// (exposed name) above the default threshold of the shipped alert `alert`.
/// Alerts on a ratio or a rate (Redis hit ratio, lag growth) are not
/// rules here: one run has no rate.
pub struct Degraded {
    pub metric: &'static str,
    /// Labels the sample must carry (the alert's matchers).
    pub labels: &'static [(&'static str, &'static str)],
    pub threshold: f64,
    pub alert: &'static str,
}

/// A kind's diagnosis table.
pub struct KindDiagnosis {
    pub kind: &'static str,
    /// Evidence: the samples of these metrics (exposed names), largest
    /// first, zeros left out.
    pub evidence: &'static [&'static str],
    pub degraded: &'static [Degraded],
    /// Next commands when the check fails, by reason (`None` = any other).
    pub commands: &'static [(Option<Reason>, &'static [&'static str])],
}

const fn over(metric: &'static str, threshold: f64, alert: &'static str) -> Degraded {
    over_with(metric, &[], threshold, alert)
}

const fn over_with(
    metric: &'static str,
    labels: &'static [(&'static str, &'static str)],
    threshold: f64,
    alert: &'static str,
) -> Degraded {
    Degraded {
        metric,
        labels,
        threshold,
        alert,
    }
}

const NET: &[&str] = &[
    "nc -vz {host} {port}",
    "getent hosts {host}",
    "ss -tn dst {host}",
];

/// Every kind's table. Thresholds are the defaults in `alerts/config.yaml`
/// (a test compares them).
pub static TABLE: &[KindDiagnosis] = &[
    KindDiagnosis {
        kind: "postgres",
        evidence: &[
            "runbook_postgres_lock_waiting_sessions",
            "runbook_postgres_longest_lock_wait_seconds",
            "runbook_postgres_longest_query_duration_seconds",
            "runbook_postgres_long_running_queries",
            "runbook_postgres_oldest_transaction_age_seconds",
            "runbook_postgres_connections",
            "runbook_postgres_max_connections",
            "runbook_postgres_replication_lag_bytes",
        ],
        degraded: &[
            over("runbook_postgres_lock_waiting_sessions", 0.0, "RunbookPostgresSessionsBlocked"),
            over("runbook_postgres_longest_query_duration_seconds", 300.0, "RunbookPostgresLongRunningQuery"),
            over("runbook_postgres_replication_lag_bytes", 104857600.0, "RunbookPostgresReplicationLagBytes"),
        ],
        commands: &[
            (Some(Reason::Auth), &[
                "PGPASSWORD=\"$PGPASSWORD\" psql -h {host} -p {port} -U {user} -d {database} -c 'select 1'",
                "grep -i 'authentication failed' /var/log/postgresql/*.log | tail",
            ]),
            (None, &[
                "pg_isready -h {host} -p {port} -d {database}",
                "PGPASSWORD=\"$PGPASSWORD\" psql -h {host} -p {port} -U {user} -d {database} -c \"select pid, state, wait_event_type, now() - query_start as age, left(query, 80) from pg_stat_activity where state <> 'idle' order by age desc limit 10\"",
                "PGPASSWORD=\"$PGPASSWORD\" psql -h {host} -p {port} -U {user} -d {database} -c \"select pid, pg_blocking_pids(pid) as blocked_by, left(query, 80) from pg_stat_activity where cardinality(pg_blocking_pids(pid)) > 0\"",
            ]),
        ],
    },
    KindDiagnosis {
        kind: "kafka",
        evidence: &[
            "runbook_kafka_consumergroup_lag",
            "runbook_kafka_consumergroup_total_lag",
            "runbook_kafka_consumergroup_members",
            "runbook_kafka_topic_partitions_without_leader",
            "runbook_kafka_topic_under_replicated_partitions",
        ],
        degraded: &[
            over("runbook_kafka_consumergroup_total_lag", 10000.0, "RunbookKafkaConsumerLagHigh"),
            over("runbook_kafka_topic_partitions_without_leader", 0.0, "RunbookKafkaDown"),
        ],
        commands: &[(None, &[
            "kafka-broker-api-versions.sh --bootstrap-server {host}:{port}",
            "kafka-consumer-groups.sh --bootstrap-server {host}:{port} --describe --group {group}",
            "kafka-topics.sh --bootstrap-server {host}:{port} --describe --under-replicated-partitions",
        ])],
    },
    KindDiagnosis {
        kind: "redis",
        evidence: &[
            "runbook_redis_memory_used_bytes",
            "runbook_redis_memory_max_bytes",
            "runbook_redis_keyspace_hits_total",
            "runbook_redis_keyspace_misses_total",
            "runbook_redis_rejected_connections_total",
            "runbook_redis_connected_clients",
        ],
        // Rejected connections and the hit ratio are counters since the
        // server started: their alerts need a rate, which one run has not.
        degraded: &[],
        commands: &[(None, &[
            "redis-cli -h {host} -p {port} --no-auth-warning -a \"$REDIS_PASSWORD\" ping",
            "redis-cli -h {host} -p {port} --no-auth-warning -a \"$REDIS_PASSWORD\" info memory",
            "redis-cli -h {host} -p {port} --no-auth-warning -a \"$REDIS_PASSWORD\" info stats",
        ])],
    },
    KindDiagnosis {
        kind: "kubernetes",
        // The crash-looping (or otherwise waiting) containers by pod and
        // their last termination first: what `describe pod` would say.
        evidence: &[
            "runbook_kubernetes_container_waiting",
            "runbook_kubernetes_container_last_termination_exit_code",
            "runbook_kubernetes_containers_waiting",
            "runbook_kubernetes_container_restarts_total",
            "runbook_kubernetes_container_terminations_total",
            "runbook_kubernetes_container_exit_codes_total",
            "runbook_kubernetes_container_oom_kills_total",
            "runbook_kubernetes_pods_not_ready",
        ],
        degraded: &[
            over_with("runbook_kubernetes_containers_waiting", &[("reason", "CrashLoopBackOff")], 0.0, "RunbookKubePodCrashLooping"),
            over("runbook_kubernetes_pods_not_ready", 0.0, "RunbookKubePodsNotReady"),
        ],
        commands: &[(None, &[
            "kubectl -n {namespace} get pods -o wide",
            "kubectl -n {namespace} logs {pod} --previous --all-containers",
            "kubectl -n {namespace} describe pod {pod} | grep -A5 'Last State'",
            "kubectl -n {namespace} get events --sort-by=.lastTimestamp | tail -20",
        ])],
    },
    KindDiagnosis {
        kind: "http",
        evidence: &["runbook_http_status_code", "runbook_http_phase_duration_seconds"],
        degraded: &[],
        commands: &[(None, &["curl -sv -o /dev/null -w '%{http_code} %{time_total}s\\n' {url}"])],
    },
    KindDiagnosis {
        kind: "tcp",
        evidence: &["runbook_tcp_phase_duration_seconds"],
        degraded: &[],
        commands: &[(None, NET)],
    },
    KindDiagnosis {
        kind: "dns",
        evidence: &["runbook_dns_answers"],
        degraded: &[],
        commands: &[(None, &["dig {host}", "cat /etc/resolv.conf"])],
    },
    KindDiagnosis {
        kind: "clickhouse",
        evidence: &[
            "runbook_clickhouse_replica_queue_size",
            "runbook_clickhouse_replica_absolute_delay_seconds",
            "runbook_clickhouse_replicas_readonly",
            "runbook_clickhouse_table_stuck_mutations",
        ],
        degraded: &[over("runbook_clickhouse_replicas_readonly", 0.0, "RunbookClickHouseDown")],
        commands: &[(None, &[
            "curl -s {url}/ping",
            "clickhouse-client --host {host} --user {user} --password \"$CLICKHOUSE_PASSWORD\" --query 'select * from system.replicas where is_readonly'",
        ])],
    },
    KindDiagnosis {
        kind: "s3",
        evidence: &[],
        degraded: &[],
        commands: &[(None, &[
            "AWS_ACCESS_KEY_ID=\"$AWS_ACCESS_KEY_ID\" AWS_SECRET_ACCESS_KEY=\"$AWS_SECRET_ACCESS_KEY\" aws --endpoint-url {url} s3 ls s3://{bucket}/",
            "nc -vz {host} {port}",
        ])],
    },
    KindDiagnosis {
        kind: "jwt",
        evidence: &["runbook_jwt_expiry_timestamp_seconds", "runbook_jwt_signature_valid"],
        degraded: &[],
        commands: &[(None, &["echo \"$TOKEN\" | cut -d. -f2 | base64 -d 2>/dev/null"])],
    },
];

/// The table of `kind`.
pub fn of(kind: &str) -> Option<&'static KindDiagnosis> {
    TABLE.iter().find(|k| k.kind == kind)
}

impl KindDiagnosis {
    /// The command templates for `reason` (or for a degraded run: `None`).
    pub fn commands_for(&self, reason: Option<Reason>) -> &'static [&'static str] {
        self.commands
            .iter()
            .find(|(r, _)| r.is_some() && *r == reason)
            .or_else(|| self.commands.iter().find(|(r, _)| r.is_none()))
            .map(|(_, c)| *c)
            .unwrap_or(&[])
    }

    /// The evidence lines of a run, from its samples: for each evidence
    /// metric, its non-zero samples, largest first, at most `top` each.
    pub fn evidence(&self, samples: &[Sample], top: usize) -> Vec<String> {
        let mut out = Vec::new();
        for metric in self.evidence {
            let mut hits: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.desc.exposed_name() == *metric && s.value != 0.0)
                .collect();
            hits.sort_by(|a, b| b.value.total_cmp(&a.value));
            out.extend(hits.into_iter().take(top).map(sample_line));
        }
        out
    }

    /// The shipped alerts whose threshold a sample of this run crosses.
    pub fn degraded_by(&self, samples: &[Sample]) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for rule in self.degraded {
            let crossing = samples.iter().find(|s| {
                s.desc.exposed_name() == rule.metric
                    && s.value > rule.threshold
                    && rule
                        .labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            });
            if let Some(s) = crossing {
                out.push((
                    rule.alert,
                    format!("{} > {}", sample_line(s), rule.threshold),
                ));
            }
        }
        out
    }
}

fn sample_line(s: &Sample) -> String {
    let mut line = s.desc.exposed_name();
    if !s.labels.is_empty() {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        line.push_str(&format!("{{{}}}", labels.join(",")));
    }
    line.push_str(&format!(" = {}", s.value));
    line
}

/// The placeholders a check's target fills: host, port, and the kind's
/// database, user, bucket, group, namespace or URL. Secrets are never
/// among them (a password stays `$VARIABLE` in the templates).
pub fn target_facts(spec: &CheckSpec) -> Vec<(&'static str, String)> {
    let mut facts = Vec::new();
    if let Some(e) = spec.endpoints().into_iter().next() {
        facts.push(("host", e.host.clone()));
        facts.push(("port", e.port.to_string()));
        // Scheme, host and port only: a URL's path, query or user info
        // may carry a token.
        let tls = match spec {
            CheckSpec::Http(s) => s.url.starts_with("https:"),
            CheckSpec::Clickhouse(s) => s.url.starts_with("https:"),
            CheckSpec::S3(s) => s
                .endpoint
                .as_deref()
                .is_none_or(|u| u.starts_with("https:")),
            _ => false,
        };
        let scheme = if tls { "https" } else { "http" };
        facts.push(("url", format!("{scheme}://{}:{}", e.host, e.port)));
    }
    match spec {
        CheckSpec::Postgres(s) => {
            facts.push((
                "database",
                s.database.clone().unwrap_or_else(|| "postgres".into()),
            ));
            facts.push(("user", s.user.clone().unwrap_or_else(|| "$PGUSER".into())));
        }
        CheckSpec::Kafka(s) => {
            facts.push((
                "group",
                s.groups.first().cloned().unwrap_or_else(|| "$GROUP".into()),
            ));
        }
        CheckSpec::S3(s) => facts.push(("bucket", s.bucket.clone())),
        // Without one in the config, the kubeconfig's or the service
        // account's namespace is used: [`evidence_facts`] knows it, else
        // the user fills in `$NAMESPACE`.
        CheckSpec::Kubernetes(s) => {
            if let Some(ns) = s
                .namespace
                .clone()
                .or_else(|| s.namespaces.first().cloned())
            {
                facts.push(("namespace", ns));
            }
        }
        CheckSpec::Clickhouse(s) => facts.push(("user", s.user.clone())),
        _ => {}
    }
    facts
}

/// The placeholders the run itself fills: for kubernetes, the namespace
/// and pod of the first evidence sample that names them (the crash-looping
/// pod comes first), which beats the configuration's guess when the check
/// takes its namespace from the kubeconfig or lists several.
pub fn evidence_facts(table: &KindDiagnosis, samples: &[Sample]) -> Vec<(&'static str, String)> {
    let mut facts = Vec::new();
    for (fact, label) in [("namespace", "k8s_namespace"), ("pod", "k8s_pod")] {
        let found = table.evidence.iter().find_map(|metric| {
            samples
                .iter()
                .filter(|s| s.desc.exposed_name() == *metric && s.value != 0.0)
                .max_by(|a, b| a.value.total_cmp(&b.value))
                .and_then(|s| s.labels.iter().find(|(k, _)| *k == label))
                .map(|(_, v)| v.to_string())
        });
        if let Some(v) = found {
            facts.push((fact, v));
        }
    }
    facts
}

/// `template` with every `{name}` of `facts` replaced; unknown
/// placeholders become `$NAME` variables for the user to set.
pub fn fill(template: &str, facts: &[(&'static str, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in facts {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    for k in [
        "host",
        "port",
        "url",
        "database",
        "user",
        "group",
        "bucket",
        "namespace",
        "pod",
    ] {
        out = out.replace(&format!("{{{k}}}"), &format!("${}", k.to_uppercase()));
    }
    out
}
