//! The alerts on the application's own metrics (the guides' PromQL on
//! errors, latency, the DB pool, the cache and container memory), and the
//! guides' error-ratio and latency PromQL as recording rules with
//! multi-window burn-rate alerts on them.

use super::{Alert, Class, Fixture, Group, Priority, Runbook};

pub(super) const ALERTS: &[Alert] = &[
    Alert {
        name: "AppHighErrorRate",
        group: Group::Application,
        priority: Priority::P1,
        team: None,
        class: Class::Other,
        expr: "sum by (job) (rate(http_requests_total{%A%, status=~\"5..\"}[5m]))\n/\nsum by (job) (rate(http_requests_total{%A%}[5m]))\n> %T%",
        summary: "The application answers many requests with 5xx.",
        description: "{{ $value | humanizePercentage }} of the requests to {{ $labels.job }} failed with a 5xx status over the last 5 minutes.",
        explain: "share of `http_requests_total` with a 5xx `status` over 5 minutes above the threshold",
        runbook: Runbook {
            meaning: "A large share of requests fail on the server side.",
            impact: "Users see errors: an outage for the affected endpoints.",
            diagnose: "Which paths fail:\n\n```promql\nsum by (path, status) (rate(http_requests_total{status=~\"5..\"}[5m]))\n```\nThen the exporter's overview dashboard: a red dependency (PostgreSQL, Redis, Kafka) usually explains it.\n\n```sh\nkubectl -n NAMESPACE logs deploy/api --since=10m | grep -i error | tail -50\nkubectl -n NAMESPACE rollout history deploy/api\n```",
            fix: "Roll back a release that started it (`kubectl rollout undo deploy/api`); fix or fail over the dependency that is down.",
            escalate: "P0: page the application's owners and open an incident.",
        },
        test: Fixture {
            firing: &[
                ("http_requests_total{%APP%,path=\"/orders\",status=\"500\"}", "0+12x30"),
                ("http_requests_total{%APP%,path=\"/orders\",status=\"200\"}", "0+48x30"),
            ],
            delay: 1,
            labels: "job=\"api\"",
            value: "20%",
            quiet: &[
                ("http_requests_total{%APP%,path=\"/orders\",status=\"500\"}", "0+1x30"),
                ("http_requests_total{%APP%,path=\"/orders\",status=\"200\"}", "0+99x30"),
            ],
        },
    },
    Alert {
        name: "AppHighLatencyP95",
        group: Group::Application,
        priority: Priority::P2,
        team: None,
        class: Class::Other,
        expr: "histogram_quantile(0.95, sum by (job, le) (rate(http_request_duration_seconds_bucket{%A%}[5m]))) > %T%",
        summary: "The application's p95 latency is high.",
        description: "95% of requests to {{ $labels.job }} take up to {{ $value | humanizeDuration }}; the guides call anything above 2 s high latency.",
        explain: "p95 of `http_request_duration_seconds` over 5 minutes above the threshold",
        runbook: Runbook {
            meaning: "The slowest 5% of requests take longer than the threshold.",
            impact: "Users wait; clients with short timeouts fail.",
            diagnose: "Which paths are slow:\n\n```promql\nhistogram_quantile(0.95, sum by (path, le) (rate(http_request_duration_seconds_bucket[5m])))\n```\nThen the dependencies: PostgreSQL long queries and lock waits, Redis hit ratio, DB pool usage (the application dashboard), CPU throttling (`kubectl top pods`).",
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
        priority: Priority::P1,
        team: None,
        class: Class::Other,
        expr: "max by (job, instance) (db_pool_connections_active{%A%})\n/ on (job, instance)\nmax by (job, instance) (db_pool_connections_max{%A%})\n> %T%",
        summary: "The application's database pool is nearly exhausted.",
        description: "{{ $labels.instance }} of {{ $labels.job }} uses {{ $value | humanizePercentage }} of its database connection pool.",
        explain: "`db_pool_connections_active / db_pool_connections_max` above the threshold",
        runbook: Runbook {
            meaning: "Almost every connection in the application's pool is checked out.",
            impact: "Requests wait for a connection, then time out.",
            diagnose: "Look for slow queries holding connections (PostgreSQL dashboard: long queries, lock waits) and at `pg_stat_activity` grouped by `application_name`.",
            fix: "Fix the slow queries or leaks; raise the pool size only if PostgreSQL has connections to spare (see RunbookPostgresConnections).",
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
        priority: Priority::P2,
        team: None,
        class: Class::Other,
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
        priority: Priority::P2,
        team: None,
        class: Class::Other,
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
    Alert {
        name: "AppErrorBudgetBurn",
        group: Group::Application,
        priority: Priority::P1,
        team: None,
        class: Class::Other,
        expr: "job:http_requests:error_ratio_rate1h > (14.4 * (1 - %T%))\nand\njob:http_requests:error_ratio_rate5m > (14.4 * (1 - %T%))",
        summary: "The application burns its error budget fast.",
        description: "{{ $value | humanizePercentage }} of the requests to {{ $labels.job }} failed over the last 1h (and the last 5m): 14.4 times the budget of an SLO of %T%.",
        explain: "job:http_requests:error_ratio_rate1h and job:http_requests:error_ratio_rate5m above 14.4 × (1 − SLO)",
        runbook: Runbook {
            meaning: "The share of failing requests eats the error budget of the SLO (`threshold`, e.g. 99.9%) many times faster than it lasts: at 14.4 times, a 30-day budget is gone in 2 days (critical); at 6 times, in 5 days (warning). Both a long and a short window must agree, so the alert neither fires on a blip nor lingers after the fix.",
            impact: "Users see errors; at the critical rate, the month's budget is gone within days.",
            diagnose: "```promql\nsum by (path, status) (rate(http_requests_total{status=~\"5..\"}[5m]))\njob:http_requests:error_ratio_rate5m\n```\nThen as for AppHighErrorRate: the overview dashboard for a failing dependency, the logs and the rollout history.",
            fix: "Roll back the release that started it, or fix or fail over the dependency that is down.",
            escalate: "Critical is P1: the application's owners within 30 minutes. Warning is P2: a ticket.",
        },
        test: Fixture {
            firing: &[
                ("http_requests_total{%APP%,path=\"/orders\",status=\"500\"}", "0+12x40"),
                ("http_requests_total{%APP%,path=\"/orders\",status=\"200\"}", "0+48x40"),
            ],
            delay: 1,
            labels: "job=\"api\"",
            value: "20%",
            quiet: &[
                ("http_requests_total{%APP%,path=\"/orders\",status=\"500\"}", "0+0x40"),
                ("http_requests_total{%APP%,path=\"/orders\",status=\"200\"}", "0+100x40"),
            ],
        },
    },
    Alert {
        name: "AppErrorBudgetBurn",
        group: Group::Application,
        priority: Priority::P2,
        team: None,
        class: Class::Other,
        expr: "job:http_requests:error_ratio_rate6h > (6 * (1 - %T%))\nand\njob:http_requests:error_ratio_rate30m > (6 * (1 - %T%))",
        summary: "The application burns its error budget steadily.",
        description: "{{ $value | humanizePercentage }} of the requests to {{ $labels.job }} failed over the last 6h (and the last 30m): 6 times the budget of an SLO of %T%.",
        explain: "job:http_requests:error_ratio_rate6h and job:http_requests:error_ratio_rate30m above 6 × (1 − SLO)",
        runbook: Runbook {
            meaning: "The share of failing requests eats the error budget of the SLO (`threshold`, e.g. 99.9%) many times faster than it lasts: at 14.4 times, a 30-day budget is gone in 2 days (critical); at 6 times, in 5 days (warning). Both a long and a short window must agree, so the alert neither fires on a blip nor lingers after the fix.",
            impact: "Users see errors; at the critical rate, the month's budget is gone within days.",
            diagnose: "```promql\nsum by (path, status) (rate(http_requests_total{status=~\"5..\"}[5m]))\njob:http_requests:error_ratio_rate5m\n```\nThen as for AppHighErrorRate: the overview dashboard for a failing dependency, the logs and the rollout history.",
            fix: "Roll back the release that started it, or fix or fail over the dependency that is down.",
            escalate: "Critical is P1: the application's owners within 30 minutes. Warning is P2: a ticket.",
        },
        test: Fixture {
            firing: &[
                ("http_requests_total{%APP%,path=\"/orders\",status=\"500\"}", "0+1x40"),
                ("http_requests_total{%APP%,path=\"/orders\",status=\"200\"}", "0+99x40"),
            ],
            delay: 1,
            labels: "job=\"api\"",
            value: "1%",
            quiet: &[
                ("http_requests_total{%APP%,path=\"/orders\",status=\"500\"}", "0+0x40"),
                ("http_requests_total{%APP%,path=\"/orders\",status=\"200\"}", "0+100x40"),
            ],
        },
    },
    Alert {
        name: "AppLatencyBudgetBurn",
        group: Group::Application,
        priority: Priority::P1,
        team: None,
        class: Class::Other,
        expr: "job:http_requests:slow_ratio_rate1h > (14.4 * (1 - %T%))\nand\njob:http_requests:slow_ratio_rate5m > (14.4 * (1 - %T%))",
        summary: "The application burns its latency budget fast.",
        description: "{{ $value | humanizePercentage }} of the requests to {{ $labels.job }} took longer than 2 s over the last 1h (and the last 5m): 14.4 times the budget of an SLO of %T%.",
        explain: "job:http_requests:slow_ratio_rate1h and job:http_requests:slow_ratio_rate5m above 14.4 × (1 − SLO)",
        runbook: Runbook {
            meaning: "The share of requests slower than the guides' 2 s (bucket `le=\"2\"`) eats the latency budget of the SLO (`threshold`, e.g. 99% under 2 s) 14.4 times (critical) or 6 times (warning) faster than it lasts, over a long and a short window both.",
            impact: "Users wait; clients with short timeouts fail.",
            diagnose: "```promql\nhistogram_quantile(0.95, sum by (path, le) (rate(http_request_duration_seconds_bucket[5m])))\njob:http_requests:slow_ratio_rate5m\n```\nThen as for AppHighLatencyP95: slow queries, cache hit ratio, DB pool, CPU throttling.",
            fix: "Scale out if CPU-bound, fix the slow query or the cold cache, or roll back.",
            escalate: "Critical is P1: the application's owners within 30 minutes. Warning is P2: a ticket.",
        },
        test: Fixture {
            firing: &[
                ("http_request_duration_seconds_bucket{%APP%,le=\"2\"}", "0+50x40"),
                ("http_request_duration_seconds_bucket{%APP%,le=\"+Inf\"}", "0+100x40"),
            ],
            delay: 1,
            labels: "job=\"api\"",
            value: "50%",
            quiet: &[
                ("http_request_duration_seconds_bucket{%APP%,le=\"2\"}", "0+100x40"),
                ("http_request_duration_seconds_bucket{%APP%,le=\"+Inf\"}", "0+100x40"),
            ],
        },
    },
    Alert {
        name: "AppLatencyBudgetBurn",
        group: Group::Application,
        priority: Priority::P2,
        team: None,
        class: Class::Other,
        expr: "job:http_requests:slow_ratio_rate6h > (6 * (1 - %T%))\nand\njob:http_requests:slow_ratio_rate30m > (6 * (1 - %T%))",
        summary: "The application burns its latency budget steadily.",
        description: "{{ $value | humanizePercentage }} of the requests to {{ $labels.job }} took longer than 2 s over the last 6h (and the last 30m): 6 times the budget of an SLO of %T%.",
        explain: "job:http_requests:slow_ratio_rate6h and job:http_requests:slow_ratio_rate30m above 6 × (1 − SLO)",
        runbook: Runbook {
            meaning: "The share of requests slower than the guides' 2 s (bucket `le=\"2\"`) eats the latency budget of the SLO (`threshold`, e.g. 99% under 2 s) 14.4 times (critical) or 6 times (warning) faster than it lasts, over a long and a short window both.",
            impact: "Users wait; clients with short timeouts fail.",
            diagnose: "```promql\nhistogram_quantile(0.95, sum by (path, le) (rate(http_request_duration_seconds_bucket[5m])))\njob:http_requests:slow_ratio_rate5m\n```\nThen as for AppHighLatencyP95: slow queries, cache hit ratio, DB pool, CPU throttling.",
            fix: "Scale out if CPU-bound, fix the slow query or the cold cache, or roll back.",
            escalate: "Critical is P1: the application's owners within 30 minutes. Warning is P2: a ticket.",
        },
        test: Fixture {
            firing: &[
                ("http_request_duration_seconds_bucket{%APP%,le=\"2\"}", "0+90x40"),
                ("http_request_duration_seconds_bucket{%APP%,le=\"+Inf\"}", "0+100x40"),
            ],
            delay: 1,
            labels: "job=\"api\"",
            value: "10%",
            quiet: &[
                ("http_request_duration_seconds_bucket{%APP%,le=\"2\"}", "0+100x40"),
                ("http_request_duration_seconds_bucket{%APP%,le=\"+Inf\"}", "0+100x40"),
            ],
        },
    },
];

/// Recording rules, evaluated before the alerts of the group: the guides'
/// error ratio (5xx share) and the share of requests slower than the guides'
/// 2 s, over the windows the burn-rate alerts need. `le="2"` must be a real
/// bucket boundary of `http_request_duration_seconds` (it is the guides'
/// threshold, so instrument with it).
pub(super) const RECORDS: &[(&str, &str)] = &[
    (
        "job:http_requests:error_ratio_rate5m",
        "sum by (job) (rate(http_requests_total{%A%, status=~\"5..\"}[5m]))\n/\nsum by (job) (rate(http_requests_total{%A%}[5m]))",
    ),
    (
        "job:http_requests:slow_ratio_rate5m",
        "1 - (\n  sum by (job) (rate(http_request_duration_seconds_bucket{%A%, le=\"2\"}[5m]))\n  /\n  sum by (job) (rate(http_request_duration_seconds_bucket{%A%, le=\"+Inf\"}[5m]))\n)",
    ),
    (
        "job:http_requests:error_ratio_rate30m",
        "sum by (job) (rate(http_requests_total{%A%, status=~\"5..\"}[30m]))\n/\nsum by (job) (rate(http_requests_total{%A%}[30m]))",
    ),
    (
        "job:http_requests:slow_ratio_rate30m",
        "1 - (\n  sum by (job) (rate(http_request_duration_seconds_bucket{%A%, le=\"2\"}[30m]))\n  /\n  sum by (job) (rate(http_request_duration_seconds_bucket{%A%, le=\"+Inf\"}[30m]))\n)",
    ),
    (
        "job:http_requests:error_ratio_rate1h",
        "sum by (job) (rate(http_requests_total{%A%, status=~\"5..\"}[1h]))\n/\nsum by (job) (rate(http_requests_total{%A%}[1h]))",
    ),
    (
        "job:http_requests:slow_ratio_rate1h",
        "1 - (\n  sum by (job) (rate(http_request_duration_seconds_bucket{%A%, le=\"2\"}[1h]))\n  /\n  sum by (job) (rate(http_request_duration_seconds_bucket{%A%, le=\"+Inf\"}[1h]))\n)",
    ),
    (
        "job:http_requests:error_ratio_rate6h",
        "sum by (job) (rate(http_requests_total{%A%, status=~\"5..\"}[6h]))\n/\nsum by (job) (rate(http_requests_total{%A%}[6h]))",
    ),
    (
        "job:http_requests:slow_ratio_rate6h",
        "1 - (\n  sum by (job) (rate(http_request_duration_seconds_bucket{%A%, le=\"2\"}[6h]))\n  /\n  sum by (job) (rate(http_request_duration_seconds_bucket{%A%, le=\"+Inf\"}[6h]))\n)",
    ),
];
