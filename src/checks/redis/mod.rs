//! The `redis` kind: the guides' `redis-cli ping`, `redis-cli INFO stats` and
//! `INFO memory`, on one persistent connection per check.
//!
//! Every run measures a client-side PING round trip and reads `INFO`: cache
//! hits and misses (as counters, so the guides' hit-ratio PromQL works
//! unchanged), evictions, clients, memory, keys per database and
//! replication. The connection is kept between runs and replaced when it
//! breaks; reconnecting after a failure backs off exponentially, so a down
//! or misconfigured server is not hammered.
//!
//! `spec` holds the config and its validation, `connection` the connection
//! and its reconnects, `info` the reading of `INFO`; this module declares the
//! metrics and runs the check.

mod connection;
mod info;
mod spec;

use std::time::Instant;

use futures::future::BoxFuture;
use prometheus_client::registry::Unit;
use redis::aio::MultiplexedConnection;
use redis::RedisConnectionInfo;
use tokio::sync::Mutex;

use self::connection::{is_broken, State};
use self::info::{info_samples, parse_info};
use self::spec::parse_url;
pub use self::spec::{RedisSpec, RedisUrl};
use super::{BuildError, Check, Failure, MetricDesc, Reason, RunContext, RunResult, Sample};
use crate::checks::shared::secret::{self, Secret};
use crate::checks::shared::tls::TlsClient;
use crate::clock::unix_now;

/// Client-side round trip of a PING on the persistent connection.
pub static PING_DURATION: MetricDesc = MetricDesc::gauge(
    "redis_ping_duration",
    Some(Unit::Seconds),
    "Round trip of a PING on the exporter's persistent connection, measured by the client, in the last scheduled run.",
);

/// Successful key lookups since the server started.
pub static KEYSPACE_HITS: MetricDesc = MetricDesc::counter(
    "redis_keyspace_hits",
    None,
    "Successful key lookups since the server started (INFO keyspace_hits), as of the last scheduled run.",
);

/// Failed key lookups since the server started.
pub static KEYSPACE_MISSES: MetricDesc = MetricDesc::counter(
    "redis_keyspace_misses",
    None,
    "Failed key lookups since the server started (INFO keyspace_misses), as of the last scheduled run.",
);

/// Keys evicted because of maxmemory since the server started.
pub static EVICTED_KEYS: MetricDesc = MetricDesc::counter(
    "redis_evicted_keys",
    None,
    "Keys evicted because of maxmemory since the server started (INFO evicted_keys), as of the last scheduled run.",
);

/// Keys removed on expiry since the server started.
pub static EXPIRED_KEYS: MetricDesc = MetricDesc::counter(
    "redis_expired_keys",
    None,
    "Keys removed on expiry since the server started (INFO expired_keys), as of the last scheduled run.",
);

/// Connections rejected because of maxclients since the server started.
pub static REJECTED_CONNECTIONS: MetricDesc = MetricDesc::counter(
    "redis_rejected_connections",
    None,
    "Connections rejected because of maxclients since the server started (INFO rejected_connections), as of the last scheduled run.",
);

/// Connections accepted since the server started.
pub static CONNECTIONS_RECEIVED: MetricDesc = MetricDesc::counter(
    "redis_connections_received",
    None,
    "Connections accepted since the server started (INFO total_connections_received), as of the last scheduled run.",
);

/// Client connections open.
pub static CONNECTED_CLIENTS: MetricDesc = MetricDesc::gauge(
    "redis_connected_clients",
    None,
    "Client connections open (INFO connected_clients) in the last scheduled run, the exporter's own included.",
);

/// Clients waiting in a blocking call like BLPOP.
pub static BLOCKED_CLIENTS: MetricDesc = MetricDesc::gauge(
    "redis_blocked_clients",
    None,
    "Clients waiting in a blocking call like BLPOP (INFO blocked_clients) in the last scheduled run.",
);

/// The server's maxclients setting.
pub static MAX_CLIENTS: MetricDesc = MetricDesc::gauge(
    "redis_max_clients",
    None,
    "The server's maxclients setting (INFO maxclients) in the last scheduled run.",
);

/// Memory allocated by Redis.
pub static MEMORY_USED: MetricDesc = MetricDesc::gauge(
    "redis_memory_used",
    Some(Unit::Bytes),
    "Memory allocated by Redis (INFO used_memory) in the last scheduled run.",
);

/// The maxmemory setting, when there is one.
pub static MEMORY_MAX: MetricDesc = MetricDesc::gauge(
    "redis_memory_max",
    Some(Unit::Bytes),
    "The maxmemory setting in the last scheduled run; absent when it is 0 (no limit).",
);

/// Resident memory of the Redis process as the OS sees it.
pub static MEMORY_RSS: MetricDesc = MetricDesc::gauge(
    "redis_memory_rss",
    Some(Unit::Bytes),
    "Resident memory of the Redis process as the OS sees it (INFO used_memory_rss) in the last scheduled run.",
);

/// RSS divided by used memory.
pub static MEMORY_FRAGMENTATION: MetricDesc = MetricDesc::gauge(
    "redis_memory_fragmentation_ratio",
    None,
    "RSS divided by used memory (INFO mem_fragmentation_ratio) in the last scheduled run.",
);

/// When the server started.
pub static START_TIME: MetricDesc = MetricDesc::gauge(
    "redis_start_timestamp",
    Some(Unit::Seconds),
    "When the server started (now minus INFO uptime_in_seconds), as a Unix timestamp, from the last scheduled run.",
);

/// Keys in each database.
pub static DB_KEYS: MetricDesc = MetricDesc::gauge(
    "redis_db_keys",
    None,
    "Keys in each database (INFO keyspace) in the last scheduled run; the databases with the most keys, up to max_databases.",
);

/// 1 for the server's replication role.
pub static ROLE: MetricDesc = MetricDesc::gauge(
    "redis_role",
    None,
    "1 for the server's replication role (role=\"master\" or \"replica\") in the last scheduled run.",
);

/// Replicas connected to this primary.
pub static CONNECTED_REPLICAS: MetricDesc = MetricDesc::gauge(
    "redis_connected_replicas",
    None,
    "Replicas connected to this primary (INFO connected_slaves) in the last scheduled run.",
);

/// On a primary, each replica's replication offset lag.
pub static REPLICA_OFFSET_LAG: MetricDesc = MetricDesc::gauge(
    "redis_replica_offset_lag",
    Some(Unit::Bytes),
    "On a primary, how far each replica's acknowledged replication offset is behind the primary's, in the last scheduled run; the most lagging replicas, up to max_replicas.",
);

/// On a replica, 1 if the link to its primary is up.
pub static MASTER_LINK_UP: MetricDesc = MetricDesc::gauge(
    "redis_master_link_up",
    None,
    "On a replica, 1 if the link to its primary is up (INFO master_link_status), else 0, in the last scheduled run.",
);

/// On a replica, when it last heard from its primary.
pub static MASTER_LAST_IO: MetricDesc = MetricDesc::gauge(
    "redis_master_last_io_timestamp",
    Some(Unit::Seconds),
    "On a replica, when it last heard from its primary (now minus INFO master_last_io_seconds_ago), as a Unix timestamp, from the last scheduled run; absent while the link is down.",
);

/// On a replica, 1 during a full sync from the primary.
pub static MASTER_SYNC_IN_PROGRESS: MetricDesc = MetricDesc::gauge(
    "redis_master_sync_in_progress",
    None,
    "On a replica, 1 while a full sync from the primary is in progress, else 0, in the last scheduled run.",
);

/// Every metric this kind can report, besides the TLS certificate expiry.
pub static METRICS: [&MetricDesc; 22] = [
    &PING_DURATION,
    &KEYSPACE_HITS,
    &KEYSPACE_MISSES,
    &EVICTED_KEYS,
    &EXPIRED_KEYS,
    &REJECTED_CONNECTIONS,
    &CONNECTIONS_RECEIVED,
    &CONNECTED_CLIENTS,
    &BLOCKED_CLIENTS,
    &MAX_CLIENTS,
    &MEMORY_USED,
    &MEMORY_MAX,
    &MEMORY_RSS,
    &MEMORY_FRAGMENTATION,
    &START_TIME,
    &DB_KEYS,
    &ROLE,
    &CONNECTED_REPLICAS,
    &REPLICA_OFFSET_LAG,
    &MASTER_LINK_UP,
    &MASTER_LAST_IO,
    &MASTER_SYNC_IN_PROGRESS,
];

/// A built `redis` check.
pub struct RedisCheck {
    host: String,
    port: u16,
    /// `host:port`, for messages (never the URL, which may hold a password).
    display: String,
    info: RedisConnectionInfo,
    password: Option<Secret>,
    tls: Option<TlsClient>,
    max_databases: usize,
    max_replicas: usize,
    state: Mutex<State>,
}

impl RedisCheck {
    pub fn new(spec: &RedisSpec) -> Result<Self, BuildError> {
        let target = parse_url(&spec.url.0).map_err(|e| BuildError::new("url", e))?;
        let password = match secret::resolve("password", &spec.password, &spec.password_file)? {
            Some(p) => Some(p),
            None => target.password.clone(),
        };
        let username = spec.username.clone().or(target.username.clone());
        let db = spec.database.unwrap_or(target.db);
        let mut info = RedisConnectionInfo::default()
            .set_db(db)
            .set_lib_name("runbook-exporter", env!("CARGO_PKG_VERSION"));
        if let Some(u) = &username {
            info = info.set_username(u);
        }
        if let Some(p) = &password {
            info = info.set_password(p.expose());
        }
        let tls = if target.tls {
            let tls_spec = spec.tls.clone().unwrap_or_default();
            Some(tls_spec.connector("tls", "url", &target.host)?)
        } else {
            None
        };
        let display = if target.host.contains(':') {
            format!("[{}]:{}", target.host, target.port)
        } else {
            format!("{}:{}", target.host, target.port)
        };
        Ok(Self {
            host: target.host,
            port: target.port,
            display,
            info,
            password,
            tls,
            max_databases: spec.max_databases.max(1),
            max_replicas: spec.max_replicas.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// PING and INFO on `conn`. On failure, whether the connection is broken
    /// (an I/O error) rather than the server having answered with an error.
    async fn measure(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Vec<Sample>, (Failure, bool)> {
        let start = Instant::now();
        let pong: String = redis::cmd("PING")
            .query_async(conn)
            .await
            .map_err(|e| (self.failure("PING", &e), is_broken(&e)))?;
        let rtt = start.elapsed();
        if pong != "PONG" {
            return Err((
                Failure::new(
                    Reason::UnexpectedResponse,
                    format!("PING to {} answered {pong:?}, not PONG", self.display),
                ),
                false,
            ));
        }
        let mut samples = vec![Sample::new(&PING_DURATION, rtt.as_secs_f64())];
        let info: String = redis::cmd("INFO").query_async(conn).await.map_err(|e| {
            (
                self.failure("INFO", &e).with_samples(samples.clone()),
                is_broken(&e),
            )
        })?;
        samples.extend(info_samples(
            &parse_info(&info),
            unix_now(),
            self.max_databases,
            self.max_replicas,
        ));
        Ok(samples)
    }
}

impl Check for RedisCheck {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe())
    }

    fn secrets(&self) -> Vec<String> {
        self.password
            .iter()
            .map(|p| p.expose().to_string())
            .collect()
    }
}

crate::checks::kind!(RedisSpec => RedisCheck, "redis", probe "url");

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> RedisSpec {
        serde_saphyr::from_str(yaml).expect("spec parses")
    }

    #[test]
    fn a_password_file_that_cannot_be_read_is_a_build_error() {
        let err = RedisCheck::new(&spec("url: redis://h\npassword_file: /nonexistent/pw"))
            .err()
            .expect("build fails");
        assert_eq!(err.field, "password_file");
    }
}
