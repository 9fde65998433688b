//! The Redis alerts: hit ratio, memory and rejected connections.

use super::{Alert, Class, Fixture, Group, Priority, Runbook};

pub(super) const ALERTS: &[Alert] = &[
    Alert {
        name: "RunbookRedisHitRatioLow",
        group: Group::Redis,
        priority: Priority::P2,
        team: None,
        class: Class::Symptom,
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
        priority: Priority::P2,
        team: None,
        class: Class::Symptom,
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
        priority: Priority::P1,
        team: None,
        class: Class::Symptom,
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
];
