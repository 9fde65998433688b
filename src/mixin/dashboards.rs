//! The Grafana dashboards: compact specs rendered to dashboard JSON with the
//! datasource, `job`, `instance` and `check` variables, stable uids and
//! tags, plus the provisioning file and the screenshot-free description.
//!
//! In queries, `%S%` stands for the dashboard's variable selector:
//! `job=~"$job",instance=~"$instance",check=~"$check"` on the exporter's
//! dashboards, `job=~"$job",instance=~"$instance"` on the application's.

use std::fmt::Write;

use serde_json::{json, Value};

use super::MixinConfig;

/// A rendered dashboard: its file name under `dashboards/` and its JSON.
pub struct Dashboard {
    pub file: &'static str,
    pub json: Value,
}

#[derive(Clone, Copy)]
enum Viz {
    Timeseries,
    /// One green/red tile per series (1 = up).
    Status,
    /// One green/red row per series over time (1 = up): a state timeline.
    Timeline,
    Stat,
    Table,
}

struct Panel {
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    viz: Viz,
    /// `(expr, legend)`.
    targets: &'static [(&'static str, &'static str)],
}

struct Spec {
    file: &'static str,
    uid: &'static str,
    title: &'static str,
    description: &'static str,
    tags: &'static [&'static str],
    /// For the exporter's dashboards, the `kind` values the `check` variable
    /// lists (a regex); `None` for the application dashboard.
    kinds: Option<&'static str>,
    panels: &'static [Panel],
}

const fn p(
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    viz: Viz,
    targets: &'static [(&'static str, &'static str)],
) -> Panel {
    Panel {
        title,
        description,
        unit,
        viz,
        targets,
    }
}

use Viz::*;

static SPECS: &[Spec] = &[
    Spec {
        file: "overview",
        uid: "rbx-overview",
        title: "runbook-exporter / Overview",
        description: "The guides' component status matrix over time: one state-timeline row per check and exporter target (a failing replica or /probe target is never hidden behind a healthy one), green when its last run succeeded, red when it failed; a tile per exporter target, the firing alerts, the reasons of recent failures, the time since each check last succeeded, jwt token expiry and signature, and links to each kind's dashboard and the runbooks.",
        tags: &["runbook-exporter", "overview"],
        kinds: Some(".+"),
        panels: &[
            p("Check status over time", "One row per check and exporter target (a /probe target or a replica is its own row, never folded into another): UP (green) when the last scheduled run succeeded, DOWN (red) when it failed (runbook_check_up). The dashboard links lead to each kind's dashboard and to the runbooks.", "short", Timeline, &[("runbook_check_up{%S%}", "{{check}} ({{kind}}) @ {{instance}}")]),
            p("Exporter", "Whether Prometheus can scrape each exporter target (up); while it is DOWN every check alert is blind and RunbookExporterDown fires.", "short", Status, &[("up{job=~\"$job\", instance=~\"$instance\"}", "{{job}} {{instance}}")]),
            p("Firing alerts", "The alerts firing now for the selected exporter targets (ALERTS), with their priority; each has a runbook_url.", "short", Table, &[("ALERTS{job=~\"$job\", instance=~\"$instance\", alertstate=\"firing\"}", "{{alertname}} {{priority}}")]),
            p("Time since last success", "Seconds since each check last succeeded on each exporter target (runbook_check_last_success_timestamp_seconds); grows while a check fails.", "s", Stat, &[("time() - runbook_check_last_success_timestamp_seconds{%S%}", "{{check}} @ {{instance}}")]),
            p("Recent failures by reason", "Failed runs per check and reason over the dashboard's rate interval: the last error reason of a failing check (runbook_check_failures_total).", "short", Table, &[("sum by (check, reason) (increase(runbook_check_failures_total{%S%}[$__rate_interval])) > 0", "{{check}} {{reason}}")]),
            p("Failure rate by reason", "Failed runs per second, by check and reason.", "ops", Timeseries, &[("sum by (check, reason) (rate(runbook_check_failures_total{%S%}[$__rate_interval]))", "{{check}} {{reason}}")]),
            p("Token expiry", "Days until each jwt check's token expires ((runbook_jwt_expiry_timestamp_seconds - time()) / 86400); negative once expired. The alerts fire within 7 days (warning) and 1 day (critical).", "d", Stat, &[("(runbook_jwt_expiry_timestamp_seconds{%S%} - time()) / 86400", "{{check}} @ {{instance}}")]),
            p("Token signature", "UP (green) when the jwt check's token verified under the key of its verify block, DOWN (red) when it did not (runbook_jwt_signature_valid); absent for checks without verify.", "short", Status, &[("runbook_jwt_signature_valid{%S%}", "{{check}} @ {{instance}}")]),
            p("Run duration", "How long each check's last scheduled run took (runbook_check_duration_seconds).", "s", Timeseries, &[("runbook_check_duration_seconds{%S%}", "{{check}} @ {{instance}}")]),
        ],
    },
    Spec {
        file: "postgres",
        uid: "rbx-postgres",
        title: "runbook-exporter / PostgreSQL",
        description: "The PostgreSQL checks: connections against max_connections, long queries, lock waits, deadlocks, wait events of active sessions, replication lag on primary and standby, and probe latency.",
        tags: &["runbook-exporter", "postgres"],
        kinds: Some("postgres"),
        panels: &[
            p("Usable connections in use", "Client backends divided by max_connections minus superuser_reserved_connections; the alerts fire at 80% and 95%.", "percentunit", Timeseries, &[("sum by (check) (runbook_postgres_connections{%S%}) / on (check) (max by (check) (runbook_postgres_max_connections{%S%}) - max by (check) (runbook_postgres_superuser_reserved_connections{%S%}))", "{{check}}")]),
            p("Connections by state", "Client backends by pg_stat_activity state.", "short", Timeseries, &[("sum by (check, state) (runbook_postgres_connections{%S%})", "{{check}} {{state}}")]),
            p("Oldest active query", "Age of the oldest active query (query_start).", "s", Timeseries, &[("runbook_postgres_longest_query_duration_seconds{%S%}", "{{check}}")]),
            p("Oldest transaction", "Age of the oldest open transaction (xact_start) and how long the longest idle-in-transaction session has sat idle.", "s", Timeseries, &[("runbook_postgres_oldest_transaction_age_seconds{%S%}", "{{check}} oldest transaction"), ("runbook_postgres_oldest_idle_in_transaction_seconds{%S%}", "{{check}} idle in transaction")]),
            p("Connections by client", "The 10 largest groups of client connections by user, application and client address.", "short", Timeseries, &[("topk(10, runbook_postgres_client_connections{%S%})", "{{check}} {{user}} {{application_name}} {{client_addr}}")]),
            p("Sessions blocked on locks", "Client sessions waiting for a lock another session holds (wait_event_type Lock).", "short", Timeseries, &[("runbook_postgres_lock_waiting_sessions{%S%}", "{{check}}")]),
            p("Deadlocks", "Deadlocks per database over the rate interval.", "short", Timeseries, &[("sum by (check, database) (increase(runbook_postgres_database_deadlocks_total{%S%}[$__rate_interval]))", "{{check}} {{database}}")]),
            p("Transactions", "Commits and rollbacks per second.", "ops", Timeseries, &[("sum by (check) (rate(runbook_postgres_database_commits_total{%S%}[$__rate_interval]))", "{{check}} commits"), ("sum by (check) (rate(runbook_postgres_database_rollbacks_total{%S%}[$__rate_interval]))", "{{check}} rollbacks")]),
            p("Replication lag (bytes)", "On the primary: WAL between the current position and each standby's replay position.", "bytes", Timeseries, &[("runbook_postgres_replication_lag_bytes{%S%, position=\"replay\"}", "{{check}} {{application_name}}")]),
            p("Replication lag (time)", "On the primary: replay_lag of each standby.", "s", Timeseries, &[("runbook_postgres_replication_lag_time_seconds{%S%, position=\"replay\"}", "{{check}} {{application_name}}")]),
            p("Standby lag", "On a standby: received but unreplayed WAL, and the replay delay.", "s", Timeseries, &[("runbook_postgres_standby_replay_lag_seconds{%S%}", "{{check}} replay delay")]),
            p("Active sessions by wait event", "Active client sessions per wait_event_type/wait_event (none/none: on CPU), the max_wait_events most common (runbook_postgres_active_wait_events): what busy sessions wait for.", "short", Timeseries, &[("topk(10, runbook_postgres_active_wait_events{%S%})", "{{check}} {{wait_event_type}}/{{wait_event}}")]),
            p("Probe latency", "SELECT 1 round trip on the monitoring session.", "s", Timeseries, &[("runbook_postgres_select1_duration_seconds{%S%}", "{{check}}")]),
        ],
    },
    Spec {
        file: "redis",
        uid: "rbx-redis",
        title: "runbook-exporter / Redis & cache",
        description: "The Redis checks: cache hit ratio, memory against maxmemory, clients and rejected connections, evictions, replication, and PING latency.",
        tags: &["runbook-exporter", "redis"],
        kinds: Some("redis"),
        panels: &[
            p("Hit ratio", "keyspace_hits / (keyspace_hits + keyspace_misses) over the rate interval; the alert fires below 80%.", "percentunit", Timeseries, &[("sum by (check) (rate(runbook_redis_keyspace_hits_total{%S%}[$__rate_interval])) / (sum by (check) (rate(runbook_redis_keyspace_hits_total{%S%}[$__rate_interval])) + sum by (check) (rate(runbook_redis_keyspace_misses_total{%S%}[$__rate_interval])))", "{{check}}")]),
            p("Memory used", "used_memory, and maxmemory where set.", "bytes", Timeseries, &[("runbook_redis_memory_used_bytes{%S%}", "{{check}} used"), ("runbook_redis_memory_max_bytes{%S%} > 0", "{{check}} maxmemory")]),
            p("Clients", "Connected and blocked clients.", "short", Timeseries, &[("runbook_redis_connected_clients{%S%}", "{{check}} connected"), ("runbook_redis_blocked_clients{%S%}", "{{check}} blocked")]),
            p("Rejected connections", "Connections refused because maxclients was reached, per second.", "ops", Timeseries, &[("rate(runbook_redis_rejected_connections_total{%S%}[$__rate_interval])", "{{check}}")]),
            p("Evicted and expired keys", "Keys evicted for memory and keys expired by TTL, per second.", "ops", Timeseries, &[("rate(runbook_redis_evicted_keys_total{%S%}[$__rate_interval])", "{{check}} evicted"), ("rate(runbook_redis_expired_keys_total{%S%}[$__rate_interval])", "{{check}} expired")]),
            p("PING latency", "Round trip of PING on the check's connection.", "s", Timeseries, &[("runbook_redis_ping_duration_seconds{%S%}", "{{check}}")]),
        ],
    },
    Spec {
        file: "clickhouse-s3",
        uid: "rbx-clickhouse-s3",
        title: "runbook-exporter / ClickHouse & S3",
        description: "The ClickHouse checks (ping, SELECT 1, replica delay, replicas and read-only replicas, stuck mutations, uptime) and the S3 checks (latency per operation, object size and age).",
        tags: &["runbook-exporter", "clickhouse", "s3"],
        kinds: Some("clickhouse|s3"),
        panels: &[
            p("ClickHouse and S3 checks", "UP (green) or DOWN (red) per ClickHouse and S3 check.", "short", Status, &[("min by (job, instance, check) (runbook_check_up{%S%, kind=~\"clickhouse|s3\"})", "{{check}} @ {{instance}}")]),
            p("ClickHouse latency", "/ping and SELECT 1 round trips.", "s", Timeseries, &[("runbook_clickhouse_ping_duration_seconds{%S%}", "{{check}} ping"), ("runbook_clickhouse_query_duration_seconds{%S%}", "{{check}} SELECT 1")]),
            p("ClickHouse replica delay", "Largest replication delay among replicated tables.", "s", Timeseries, &[("runbook_clickhouse_replica_max_delay_seconds{%S%}", "{{check}}")]),
            p("ClickHouse replicas", "With replicas: true: replicated tables on the server and those in read-only mode (the Keeper session or metadata is lost; inserts fail).", "short", Timeseries, &[("runbook_clickhouse_replicas{%S%}", "{{check}} replicated tables"), ("runbook_clickhouse_replicas_readonly{%S%}", "{{check}} read-only")]),
            p("ClickHouse stuck mutations", "With mutations: true: unfinished mutations older than mutation_stuck_after on the whole server (runbook_clickhouse_stuck_mutations, not capped).", "short", Timeseries, &[("runbook_clickhouse_stuck_mutations{%S%}", "{{check}} stuck mutations")]),
            p("ClickHouse oldest stuck mutation", "With mutations: true: age of the oldest stuck mutation; 0 if none.", "s", Timeseries, &[("runbook_clickhouse_oldest_stuck_mutation_age_seconds{%S%}", "{{check}}")]),
            p("ClickHouse uptime", "Time since the server started; a drop is a restart.", "s", Timeseries, &[("time() - runbook_clickhouse_start_timestamp_seconds{%S%}", "{{check}}")]),
            p("S3 latency by operation", "Duration of each S3 operation of the last run (list, head, put, get, delete).", "s", Timeseries, &[("runbook_s3_operation_duration_seconds{%S%}", "{{check}} {{operation}}")]),
            p("S3 object size", "Size of the watched object.", "bytes", Timeseries, &[("runbook_s3_object_size_bytes{%S%}", "{{check}}")]),
            p("S3 object age", "Time since the watched object was last modified: a backup that stopped arriving shows here.", "s", Timeseries, &[("time() - runbook_s3_object_last_modified_timestamp_seconds{%S%}", "{{check}}")]),
        ],
    },
    Spec {
        file: "kafka",
        uid: "rbx-kafka",
        title: "runbook-exporter / Kafka lag",
        description: "The Kafka checks: consumer group lag in messages and in time, group status, members, broker reachability and produce rate.",
        tags: &["runbook-exporter", "kafka"],
        kinds: Some("kafka"),
        panels: &[
            p("Consumer group lag", "Messages each group is behind, summed over its partitions (never negative).", "short", Timeseries, &[("runbook_kafka_consumergroup_total_lag{%S%}", "{{check}} {{group}}")]),
            p("Lag by topic", "Messages behind per group and topic.", "short", Timeseries, &[("runbook_kafka_consumergroup_topic_lag{%S%}", "{{group}} {{topic}}")]),
            p("Time lag", "Estimated time each group is behind on each topic.", "s", Timeseries, &[("runbook_kafka_consumergroup_topic_time_lag_seconds{%S%}", "{{group}} {{topic}}")]),
            p("Group status", "Status of each group over the last runs (ok, lagging, stalled, stopped).", "short", Table, &[("runbook_kafka_consumergroup_status{%S%} == 1", "{{group}} {{status}}")]),
            p("Group members", "Members of each consumer group.", "short", Timeseries, &[("runbook_kafka_consumergroup_members{%S%}", "{{group}}")]),
            p("Brokers up", "UP (green) or DOWN (red) per broker.", "short", Status, &[("runbook_kafka_broker_up{%S%}", "broker {{broker}}")]),
            p("Produce rate", "Messages per second appended to each topic (growth of the partitions' end offsets).", "ops", Timeseries, &[("sum by (check, topic) (rate(runbook_kafka_topic_partition_end_offset_total{%S%}[$__rate_interval]))", "{{topic}}")]),
        ],
    },
    Spec {
        file: "kubernetes",
        uid: "rbx-kubernetes",
        title: "runbook-exporter / Kubernetes workloads",
        description: "The Kubernetes checks: pods by phase and readiness, waiting reasons, restarts and OOM kills, memory and CPU against limits, terminations by reason and exit code, deployments, nodes and Service endpoints.",
        tags: &["runbook-exporter", "kubernetes"],
        kinds: Some("kubernetes"),
        panels: &[
            p("Pods by phase", "Pods per namespace and phase.", "short", Timeseries, &[("sum by (k8s_namespace, phase) (runbook_kubernetes_pods{%S%})", "{{k8s_namespace}} {{phase}}")]),
            p("Pods not ready", "Running pods whose Ready condition is false.", "short", Timeseries, &[("runbook_kubernetes_pods_not_ready{%S%}", "{{k8s_namespace}}")]),
            p("Containers waiting", "Containers waiting, by reason (CrashLoopBackOff, ImagePullBackOff, ...).", "short", Timeseries, &[("sum by (k8s_namespace, reason) (runbook_kubernetes_containers_waiting{%S%}) > 0", "{{k8s_namespace}} {{reason}}")]),
            p("Container restarts", "Restarts per container over the rate interval.", "short", Timeseries, &[("sum by (k8s_namespace, k8s_pod, k8s_container) (increase(runbook_kubernetes_container_restarts_total{%S%}[$__rate_interval])) > 0", "{{k8s_namespace}}/{{k8s_pod}} {{k8s_container}}")]),
            p("OOM kills", "OOM kills per container over the rate interval.", "short", Timeseries, &[("sum by (k8s_namespace, k8s_pod, k8s_container) (increase(runbook_kubernetes_container_oom_kills_total{%S%}[$__rate_interval])) > 0", "{{k8s_namespace}}/{{k8s_pod}} {{k8s_container}}")]),
            p("Memory against limit", "Working-set memory of each container divided by its memory limit (runbook_kubernetes_container_memory_working_set_bytes / runbook_kubernetes_container_memory_limit_bytes, from metrics.k8s.io): near 1 is the OOMKilled precursor; the alert fires above 90%. Absent without metrics-server or without a limit.", "percentunit", Timeseries, &[("runbook_kubernetes_container_memory_working_set_bytes{%S%} / runbook_kubernetes_container_memory_limit_bytes{%S%}", "{{k8s_namespace}}/{{k8s_pod}} {{k8s_container}}")]),
            p("CPU against limit", "CPU use of each container divided by its CPU limit (runbook_kubernetes_container_cpu_usage_cores / runbook_kubernetes_container_cpu_limit_cores, from metrics.k8s.io): at 1 the container is throttled. Absent without metrics-server or without a limit.", "percentunit", Timeseries, &[("runbook_kubernetes_container_cpu_usage_cores{%S%} / runbook_kubernetes_container_cpu_limit_cores{%S%}", "{{k8s_namespace}}/{{k8s_pod}} {{k8s_container}}")]),
            p("Terminations by reason", "Container terminations per namespace and reason (OOMKilled, Error, Completed, ContainerCannotRun, DeadlineExceeded, other) over the rate interval.", "short", Timeseries, &[("sum by (k8s_namespace, reason) (increase(runbook_kubernetes_container_terminations_total{%S%}[$__rate_interval])) > 0", "{{k8s_namespace}} {{reason}}")]),
            p("Terminations by exit code", "The same terminations by exit-code class: 0, 1, 101 (a Rust panic), 137 (SIGKILL: OOM kill or liveness probe), 143 (SIGTERM), other.", "short", Timeseries, &[("sum by (k8s_namespace, exit_code) (increase(runbook_kubernetes_container_exit_codes_total{%S%}[$__rate_interval])) > 0", "{{k8s_namespace}} exit {{exit_code}}")]),
            p("Oldest Pending pod", "Age of the oldest Pending pod per namespace.", "s", Timeseries, &[("time() - runbook_kubernetes_oldest_pending_pod_creation_timestamp_seconds{%S%}", "{{k8s_namespace}}")]),
            p("Deployments", "Desired and available replicas per deployment.", "short", Timeseries, &[("runbook_kubernetes_deployment_desired_replicas{%S%}", "{{k8s_deployment}} desired"), ("runbook_kubernetes_deployment_available_replicas{%S%}", "{{k8s_deployment}} available")]),
            p("Nodes", "Nodes, and nodes not ready.", "short", Timeseries, &[("runbook_kubernetes_nodes{%S%}", "{{check}} nodes"), ("runbook_kubernetes_nodes_not_ready{%S%}", "{{check}} not ready")]),
            p("Service ready endpoints", "Ready endpoint addresses per Service; 0 means the Service is down.", "short", Timeseries, &[("runbook_kubernetes_service_ready_endpoints{%S%}", "{{k8s_namespace}}/{{k8s_service}}")]),
        ],
    },
    Spec {
        file: "endpoints",
        uid: "rbx-endpoints",
        title: "runbook-exporter / HTTP, TCP & DNS endpoints",
        description: "The http, tcp and dns checks: status, status codes, phase durations, addresses that failed before one connected, certificate expiry and DNS answers.",
        tags: &["runbook-exporter", "http", "tcp", "dns"],
        kinds: Some("http|tcp|dns"),
        panels: &[
            p("Endpoint status", "UP (green) or DOWN (red) per http, tcp and dns check.", "short", Status, &[("min by (job, instance, check) (runbook_check_up{%S%, kind=~\"http|tcp|dns\"})", "{{check}} @ {{instance}}")]),
            p("HTTP status code", "Status code of the final response.", "short", Timeseries, &[("runbook_http_status_code{%S%}", "{{check}}")]),
            p("HTTP phases", "Time per phase of the request (resolve, connect, tls, processing, transfer).", "s", Timeseries, &[("runbook_http_phase_duration_seconds{%S%}", "{{check}} {{phase}}")]),
            p("TCP phases", "Time per phase of the TCP check (resolve, connect, tls, exchange).", "s", Timeseries, &[("runbook_tcp_phase_duration_seconds{%S%}", "{{check}} {{phase}}")]),
            p("Failed addresses before connecting", "Addresses of the target that failed, timed out or had not connected when the winning one did (runbook_connect_failed_addresses); above 0 on a passing check means it passes on a fallback address, e.g. a blackholed IPv6 address before a working IPv4 one.", "short", Timeseries, &[("runbook_connect_failed_addresses{%S%}", "{{check}}")]),
            p("Certificate expiry", "Time until the earliest certificate of the presented chain expires.", "s", Stat, &[("runbook_tls_earliest_cert_expiry_timestamp_seconds{%S%} - time()", "{{check}}")]),
            p("DNS answers", "Answer records of the asked type.", "short", Timeseries, &[("runbook_dns_answers{%S%}", "{{check}}")]),
            p("Check duration", "Duration of the last run of each endpoint check.", "s", Timeseries, &[("runbook_check_duration_seconds{%S%, kind=~\"http|tcp|dns\"}", "{{check}}")]),
        ],
    },
    Spec {
        file: "exporter",
        uid: "rbx-exporter",
        title: "runbook-exporter / The exporter",
        description: "The exporter itself: checks configured, runs and failures, runs in flight, staleness of each check, config reloads and process resources.",
        tags: &["runbook-exporter"],
        kinds: Some(".+"),
        panels: &[
            p("Checks configured", "Checks in the running config.", "short", Stat, &[("runbook_exporter_checks{job=~\"$job\", instance=~\"$instance\"}", "{{instance}}")]),
            p("Config reload", "1 if the last config load or reload succeeded (the alert fires on 0).", "short", Status, &[("runbook_exporter_config_last_reload_successful{job=~\"$job\", instance=~\"$instance\"}", "{{instance}}")]),
            p("Runs in flight", "Check runs executing now; stuck at max_concurrent_runs means slow checks hold every slot.", "short", Timeseries, &[("runbook_exporter_check_runs_in_flight{job=~\"$job\", instance=~\"$instance\"}", "{{instance}}")]),
            p("Runs and failures", "Runs and failed runs per second, all checks.", "ops", Timeseries, &[("sum by (instance) (rate(runbook_check_runs_total{%S%}[$__rate_interval]))", "{{instance}} runs"), ("sum by (instance) (rate(runbook_check_failures_total{%S%}[$__rate_interval]))", "{{instance}} failures")]),
            p("Time since last run", "Seconds since each check last finished a run; the exporter is stuck if this grows.", "s", Timeseries, &[("time() - runbook_check_last_run_timestamp_seconds{%S%}", "{{check}}")]),
            p("Schedule lag", "How late scheduled runs start, from due time to start (runbook_exporter_schedule_lag_seconds): p50 and p99 over the rate interval. The alert fires when p99 stays above 1 s for 10 minutes.", "s", Timeseries, &[("histogram_quantile(0.5, sum by (instance, le) (rate(runbook_exporter_schedule_lag_seconds_bucket{job=~\"$job\", instance=~\"$instance\"}[$__rate_interval])))", "{{instance}} p50"), ("histogram_quantile(0.99, sum by (instance, le) (rate(runbook_exporter_schedule_lag_seconds_bucket{job=~\"$job\", instance=~\"$instance\"}[$__rate_interval])))", "{{instance}} p99")]),
            p("Shards", "Which shard answers on each exporter target (runbook_exporter_shard_info, --shard/--total-shards): each replica runs the checks whose name hashes to its shard.", "short", Table, &[("runbook_exporter_shard_info{job=~\"$job\", instance=~\"$instance\"}", "{{instance}} shard {{shard}} of {{total_shards}}")]),
            p("Memory", "Resident memory of the exporter process.", "bytes", Timeseries, &[("process_resident_memory_bytes{job=~\"$job\", instance=~\"$instance\"}", "{{instance}}")]),
            p("CPU", "CPU seconds per second used by the exporter process.", "percentunit", Timeseries, &[("rate(process_cpu_seconds_total{job=~\"$job\", instance=~\"$instance\"}[$__rate_interval])", "{{instance}}")]),
        ],
    },
    Spec {
        file: "application",
        uid: "rbx-application",
        title: "runbook-exporter / Application",
        description: "The guides' PromQL on the application's own metrics: error rate, p95 latency, request rate by endpoint, database pool usage, cache hit ratio and pod memory.",
        tags: &["runbook-exporter", "application"],
        kinds: None,
        panels: &[
            p("Error rate", "Share of requests answered with a 5xx status; the alert fires above 5%.", "percentunit", Timeseries, &[("sum by (job) (rate(http_requests_total{%S%, status=~\"5..\"}[$__rate_interval])) / sum by (job) (rate(http_requests_total{%S%}[$__rate_interval]))", "{{job}}")]),
            p("p95 latency", "95th percentile of request duration; the guides call anything above 2 s high latency.", "s", Timeseries, &[("histogram_quantile(0.95, sum by (job, le) (rate(http_request_duration_seconds_bucket{%S%}[$__rate_interval])))", "{{job}}")]),
            p("Request rate by path", "Requests per second per request path (the guides' `by (path)`; the label is app_path_label in the mixin config).", "reqps", Timeseries, &[("sum by (%P%) (rate(http_requests_total{%S%}[$__rate_interval]))", "{{%P%}}")]),
            p("p95 latency by path", "95th percentile of request duration per request path (the guides' per-path p95).", "s", Timeseries, &[("histogram_quantile(0.95, sum by (%P%, le) (rate(http_request_duration_seconds_bucket{%S%}[$__rate_interval])))", "{{%P%}}")]),
            p("Database pool usage", "db_pool_connections_active / db_pool_connections_max per instance.", "percentunit", Timeseries, &[("max by (instance) (db_pool_connections_active{%S%}) / max by (instance) (db_pool_connections_max{%S%})", "{{instance}}")]),
            p("Cache hit ratio", "cache_hits_total / (cache_hits_total + cache_misses_total) over the rate interval.", "percentunit", Timeseries, &[("sum (rate(cache_hits_total{%S%}[$__rate_interval])) / (sum (rate(cache_hits_total{%S%}[$__rate_interval])) + sum (rate(cache_misses_total{%S%}[$__rate_interval])))", "hit ratio")]),
            p("Pod memory against limit", "Working set of each application container divided by its memory limit. cAdvisor and kube-state-metrics are scraped under jobs of their own, so these series are selected by app_container_selector of the mixin config, not by the job variables.", "percentunit", Timeseries, &[("max by (pod, container) (container_memory_working_set_bytes{%C%}) / on (pod, container) max by (pod, container) (kube_pod_container_resource_limits{%C%, resource=\"memory\"})", "{{pod}} {{container}}")]),
        ],
    },
];

const DS: &str = "${datasource}";

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": DS})
}

fn query_var(name: &str, label: &str, query: &str) -> Value {
    json!({
        "name": name,
        "label": label,
        "type": "query",
        "datasource": datasource(),
        "definition": query,
        "query": {"query": query, "refId": format!("{name}-var")},
        "multi": true,
        "includeAll": true,
        "allValue": ".+",
        "current": {"selected": true, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
    })
}

fn panel_json(id: usize, panel: &Panel, selector: &str, config: &MixinConfig) -> Value {
    let w = 12;
    let h = 8;
    let x = if id % 2 == 1 { 0 } else { 12 };
    let y = ((id - 1) / 2) * h;
    let targets: Vec<Value> = panel
        .targets
        .iter()
        .enumerate()
        .map(|(i, (expr, legend))| {
            json!({
                "refId": ((b'A' + i as u8) as char).to_string(),
                "datasource": datasource(),
                "expr": expr.replace("%S%", selector).replace("%C%", &config.app_container_selector).replace("%P%", &config.app_path_label),
                "legendFormat": legend.replace("%P%", &config.app_path_label),
                "format": if matches!(panel.viz, Table) { "table" } else { "time_series" },
                "instant": matches!(panel.viz, Table | Status | Stat),
                "range": !matches!(panel.viz, Table | Status | Stat),

            })
        })
        .collect();
    let (kind, options, mappings, thresholds) = match panel.viz {
        Timeseries => (
            "timeseries",
            json!({"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}, "tooltip": {"mode": "multi", "sort": "desc"}}),
            json!([]),
            json!({"mode": "absolute", "steps": [{"color": "green", "value": null}]}),
        ),
        Status => (
            "stat",
            json!({"colorMode": "background", "graphMode": "none", "textMode": "value_and_name", "justifyMode": "center", "orientation": "auto", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false}}),
            json!([{"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0}, "1": {"text": "UP", "color": "green", "index": 1}}}]),
            json!({"mode": "absolute", "steps": [{"color": "red", "value": null}, {"color": "green", "value": 1}]}),
        ),
        Timeline => (
            "state-timeline",
            json!({"showValue": "never", "mergeValues": true, "alignValue": "left", "rowHeight": 0.9, "legend": {"showLegend": false}, "tooltip": {"mode": "single"}}),
            json!([{"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0}, "1": {"text": "UP", "color": "green", "index": 1}}}]),
            json!({"mode": "absolute", "steps": [{"color": "red", "value": null}, {"color": "green", "value": 1}]}),
        ),
        Stat => (
            "stat",
            json!({"colorMode": "value", "graphMode": "none", "textMode": "value_and_name", "justifyMode": "auto", "orientation": "auto", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false}}),
            json!([]),
            json!({"mode": "absolute", "steps": [{"color": "text", "value": null}]}),
        ),
        Table => (
            "table",
            json!({"showHeader": true, "cellHeight": "sm"}),
            json!([]),
            json!({"mode": "absolute", "steps": [{"color": "text", "value": null}]}),
        ),
    };
    json!({
        "id": id,
        "type": kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": datasource(),
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "mappings": mappings, "thresholds": thresholds},
            "overrides": [],
        },
        "options": options,
        "targets": targets,
    })
}

fn render(spec: &Spec, config: &MixinConfig) -> Value {
    let (selector, mut vars) = match spec.kinds {
        Some(kinds) => (
            "job=~\"$job\", instance=~\"$instance\", check=~\"$check\"",
            vec![
                query_var("job", "Job", "label_values(runbook_check_up, job)"),
                query_var(
                    "instance",
                    "Instance",
                    "label_values(runbook_check_up{job=~\"$job\"}, instance)",
                ),
                query_var(
                    "check",
                    "Check",
                    &format!(
                        "label_values(runbook_check_up{{job=~\"$job\", instance=~\"$instance\", kind=~\"{kinds}\"}}, check)"
                    ),
                ),
            ],
        ),
        None => (
            "job=~\"$job\", instance=~\"$instance\"",
            vec![
                query_var("job", "Job", "label_values(http_requests_total, job)"),
                query_var(
                    "instance",
                    "Instance",
                    "label_values(http_requests_total{job=~\"$job\"}, instance)",
                ),
            ],
        ),
    };
    vars.insert(
        0,
        json!({"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": ""}),
    );
    let panels: Vec<Value> = spec
        .panels
        .iter()
        .enumerate()
        .map(|(i, panel)| panel_json(i + 1, panel, selector, config))
        .collect();
    let mut links = vec![
        json!({"title": "runbook-exporter", "type": "dashboards", "tags": ["runbook-exporter"], "asDropdown": true}),
    ];
    if spec.file == "overview" {
        // Each kind's dashboard, and the runbooks, one click away.
        for other in SPECS.iter().filter(|o| o.file != "overview") {
            links.push(json!({"title": other.title.trim_start_matches("runbook-exporter / "), "type": "link", "url": format!("/d/{}", other.uid), "keepTime": true, "includeVars": false}));
        }
        links.push(json!({"title": "Runbooks", "type": "link", "url": config.runbook_base_url, "targetBlank": true}));
    }
    json!({
        "id": null,
        "uid": spec.uid,
        "title": spec.title,
        "description": spec.description,
        "tags": spec.tags,
        "editable": false,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "utc",
        "annotations": {"list": []},
        "links": links,
        "templating": {"list": vars},
        "panels": panels,
    })
}

/// Every dashboard, rendered.
pub fn all(config: &MixinConfig) -> Vec<Dashboard> {
    SPECS
        .iter()
        .map(|s| Dashboard {
            file: s.file,
            json: render(s, config),
        })
        .collect()
}

/// Grafana's file provisioning for `dashboards/`.
pub const PROVISIONING: &str = "# Generated by `cargo run --example render-mixin`. Grafana file provisioning:\n# mount dashboards/ at /var/lib/grafana/dashboards/runbook-exporter and this\n# file under /etc/grafana/provisioning/dashboards/.\napiVersion: 1\nproviders:\n  - name: runbook-exporter\n    orgId: 1\n    folder: runbook-exporter\n    type: file\n    disableDeletion: true\n    updateIntervalSeconds: 60\n    allowUiUpdates: false\n    options:\n      path: /var/lib/grafana/dashboards/runbook-exporter\n      foldersFromFilesStructure: false\n";

/// The screenshot-free description of every dashboard.
pub fn docs(_config: &MixinConfig) -> String {
    let mut out = String::from(
        "<!-- Generated from src/mixin/dashboards.rs by `cargo run --example render-mixin`; edit the source. -->\n\
         # Dashboards\n\n\
         Grafana dashboards under `dashboards/`, generated from `src/mixin/dashboards.rs`.\n\
         Load them with the provisioning file `dashboards/provisioning.yaml` (mount the\n\
         folder at `/var/lib/grafana/dashboards/runbook-exporter`) or import the JSON.\n\n\
         Every dashboard has a `datasource` variable (any Prometheus), multi-value `job`\n\
         and `instance` variables, and on the exporter's dashboards a `check` variable\n\
         listing the checks of the dashboard's kinds. uids are fixed (`rbx-...`), all are\n\
         tagged `runbook-exporter` and linked to each other. `tests/mixin.rs` lints them\n\
         (unique panel ids, variables, units, descriptions, `$__rate_interval`, counters\n\
         only inside `rate`/`increase`); `tests/mixin_live.rs` runs every query against a\n\
         real Prometheus scraping the exporter.\n",
    );
    for spec in SPECS {
        let _ = write!(
            out,
            "\n## {} (`dashboards/{}.json`, uid `{}`)\n\n{}\n\n| Panel | Unit | Shows |\n|---|---|---|\n",
            spec.title, spec.file, spec.uid, spec.description
        );
        for panel in spec.panels {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} |",
                panel.title, panel.unit, panel.description
            );
        }
    }
    out
}
