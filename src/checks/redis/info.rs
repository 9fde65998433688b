//! Reading an `INFO` reply: its `key:value` lines turned into samples (the
//! plain counters and gauges, keys per database, and the replication role
//! with each replica's lag on a primary or the link to the primary on a
//! replica).

use std::collections::HashMap;

use super::{
    BLOCKED_CLIENTS, CONNECTED_CLIENTS, CONNECTED_REPLICAS, CONNECTIONS_RECEIVED, DB_KEYS,
    EVICTED_KEYS, EXPIRED_KEYS, KEYSPACE_HITS, KEYSPACE_MISSES, MASTER_LAST_IO, MASTER_LINK_UP,
    MASTER_SYNC_IN_PROGRESS, MAX_CLIENTS, MEMORY_FRAGMENTATION, MEMORY_MAX, MEMORY_RSS,
    MEMORY_USED, REJECTED_CONNECTIONS, REPLICA_OFFSET_LAG, ROLE, START_TIME,
};
use crate::checks::{MetricDesc, Sample};

/// The INFO fields of one reply, by key.
type Info<'a> = HashMap<&'a str, &'a str>;

/// The `key:value` lines of an INFO reply (section headers and blank lines
/// dropped).
pub(super) fn parse_info(text: &str) -> Info<'_> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .collect()
}

/// The `k=v` pairs of a composite INFO value such as
/// `keys=1,expires=0,avg_ttl=0`.
fn subfields(value: &str) -> HashMap<&str, &str> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

/// A numeric INFO field.
fn num(info: &Info, key: &str) -> Option<f64> {
    info.get(key).and_then(|v| v.trim().parse::<f64>().ok())
}

/// Turn INFO fields into samples. `now` is the Unix time of the reading.
pub(super) fn info_samples(
    info: &Info,
    now: f64,
    max_databases: usize,
    max_replicas: usize,
) -> Vec<Sample> {
    let mut samples = plain_samples(info, now);
    samples.extend(db_samples(info, max_databases));
    match info.get("role").map(|r| r.trim()) {
        Some("master") => samples.extend(primary_samples(info, max_replicas)),
        Some("slave" | "replica") => samples.extend(replica_samples(info, now)),
        _ => {}
    }
    samples
}

/// The fields read as they are, maxmemory when there is a limit, and the
/// start time.
fn plain_samples(info: &Info, now: f64) -> Vec<Sample> {
    let mut samples = Vec::new();
    let plain: [(&'static MetricDesc, &str); 12] = [
        (&KEYSPACE_HITS, "keyspace_hits"),
        (&KEYSPACE_MISSES, "keyspace_misses"),
        (&EVICTED_KEYS, "evicted_keys"),
        (&EXPIRED_KEYS, "expired_keys"),
        (&REJECTED_CONNECTIONS, "rejected_connections"),
        (&CONNECTIONS_RECEIVED, "total_connections_received"),
        (&CONNECTED_CLIENTS, "connected_clients"),
        (&BLOCKED_CLIENTS, "blocked_clients"),
        (&MAX_CLIENTS, "maxclients"),
        (&MEMORY_USED, "used_memory"),
        (&MEMORY_RSS, "used_memory_rss"),
        (&MEMORY_FRAGMENTATION, "mem_fragmentation_ratio"),
    ];
    for (desc, key) in plain {
        if let Some(v) = num(info, key).filter(|v| v.is_finite()) {
            samples.push(Sample::new(desc, v));
        }
    }
    if let Some(max) = num(info, "maxmemory").filter(|v| *v > 0.0) {
        samples.push(Sample::new(&MEMORY_MAX, max));
    }
    if let Some(uptime) = num(info, "uptime_in_seconds") {
        samples.push(Sample::new(&START_TIME, (now - uptime).floor()));
    }
    samples
}

/// Keys per database (`db0:keys=1,expires=0,avg_ttl=0`), the databases
/// with the most keys first, at most `max_databases`.
fn db_samples(info: &Info, max_databases: usize) -> Vec<Sample> {
    let mut dbs: Vec<(u32, f64)> = info
        .iter()
        .filter_map(|(k, v)| {
            let index = k.strip_prefix("db")?.parse::<u32>().ok()?;
            let keys = subfields(v).get("keys")?.parse::<f64>().ok()?;
            Some((index, keys))
        })
        .collect();
    dbs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    dbs.into_iter()
        .take(max_databases)
        .map(|(index, keys)| Sample::new(&DB_KEYS, keys).with_label("db", index.to_string()))
        .collect()
}

/// On a primary: the role, the replicas connected, and each replica's
/// offset lag, the most lagging first, at most `max_replicas`.
fn primary_samples(info: &Info, max_replicas: usize) -> Vec<Sample> {
    let mut samples = vec![Sample::new(&ROLE, 1.0).with_label("role", "master")];
    if let Some(n) = num(info, "connected_slaves") {
        samples.push(Sample::new(&CONNECTED_REPLICAS, n));
    }
    let Some(primary_offset) = num(info, "master_repl_offset") else {
        return samples;
    };
    let mut lags: Vec<(String, f64)> = info
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("slave")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|(_, v)| {
            let f = subfields(v);
            let ip = f.get("ip")?;
            let port = f.get("port")?;
            let offset = f.get("offset")?.parse::<f64>().ok()?;
            let name = if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            };
            Some((name, (primary_offset - offset).max(0.0)))
        })
        .collect();
    lags.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    for (name, lag) in lags.into_iter().take(max_replicas) {
        samples.push(Sample::new(&REPLICA_OFFSET_LAG, lag).with_label("replica", name));
    }
    samples
}

/// On a replica: the role, the link to the primary, when it last heard from
/// the primary, and whether a full sync is in progress.
fn replica_samples(info: &Info, now: f64) -> Vec<Sample> {
    let mut samples = vec![Sample::new(&ROLE, 1.0).with_label("role", "replica")];
    if let Some(status) = info.get("master_link_status") {
        let up = if status.trim() == "up" { 1.0 } else { 0.0 };
        samples.push(Sample::new(&MASTER_LINK_UP, up));
    }
    if let Some(ago) = num(info, "master_last_io_seconds_ago").filter(|s| *s >= 0.0) {
        samples.push(Sample::new(&MASTER_LAST_IO, (now - ago).floor()));
    }
    if let Some(sync) = num(info, "master_sync_in_progress") {
        samples.push(Sample::new(&MASTER_SYNC_IN_PROGRESS, sync));
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.desc.name == name
                    && label
                        .is_none_or(|(k, v)| s.labels.iter().any(|(lk, lv)| *lk == k && lv == v))
            })
            .map(|s| s.value)
    }

    #[test]
    fn info_of_a_primary() {
        let text = "# Server\r\nuptime_in_seconds:100\r\n# Clients\r\nconnected_clients:3\r\n\
            maxclients:10000\r\nblocked_clients:1\r\n# Memory\r\nused_memory:1000\r\n\
            used_memory_rss:4000\r\nmaxmemory:0\r\nmem_fragmentation_ratio:4.00\r\n\
            # Stats\r\nkeyspace_hits:7\r\nkeyspace_misses:2\r\n\
            # Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
            slave0:ip=10.0.0.2,port=6379,state=online,offset=90,lag=0\r\n\
            slave1:ip=10.0.0.3,port=6379,state=online,offset=100,lag=1\r\n\
            master_repl_offset:100\r\n\r\n# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n\
            db3:keys=9,expires=1,avg_ttl=5\r\n";
        let samples = info_samples(&parse_info(text), 1000.0, 1, 1);
        assert_eq!(value(&samples, "redis_keyspace_hits", None), Some(7.0));
        assert_eq!(value(&samples, "redis_keyspace_misses", None), Some(2.0));
        assert_eq!(
            value(&samples, "redis_memory_fragmentation_ratio", None),
            Some(4.0)
        );
        assert_eq!(value(&samples, "redis_start_timestamp", None), Some(900.0));
        // maxmemory 0 means no limit: absent, so used/max never divides by 0.
        assert_eq!(value(&samples, "redis_memory_max", None), None);
        // Top-1 database by keys, top-1 replica by lag.
        assert_eq!(
            value(&samples, "redis_db_keys", Some(("db", "3"))),
            Some(9.0)
        );
        assert_eq!(value(&samples, "redis_db_keys", Some(("db", "0"))), None);
        assert_eq!(
            value(
                &samples,
                "redis_replica_offset_lag",
                Some(("replica", "10.0.0.2:6379"))
            ),
            Some(10.0)
        );
        assert_eq!(
            samples
                .iter()
                .filter(|s| s.desc.name == "redis_replica_offset_lag")
                .count(),
            1
        );
        assert_eq!(
            value(&samples, "redis_role", Some(("role", "master"))),
            Some(1.0)
        );
        assert_eq!(value(&samples, "redis_master_link_up", None), None);
    }

    #[test]
    fn info_of_a_replica_with_the_link_down() {
        let text = "role:slave\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\n\
            master_sync_in_progress:0\r\nmaxmemory:1048576\r\n";
        let samples = info_samples(&parse_info(text), 1000.0, 16, 10);
        assert_eq!(
            value(&samples, "redis_role", Some(("role", "replica"))),
            Some(1.0)
        );
        assert_eq!(value(&samples, "redis_master_link_up", None), Some(0.0));
        assert_eq!(
            value(&samples, "redis_master_last_io_timestamp", None),
            None
        );
        assert_eq!(value(&samples, "redis_memory_max", None), Some(1048576.0));
    }
}
