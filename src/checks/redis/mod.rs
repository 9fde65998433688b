//! The `redis` kind: the guides' `redis-cli ping`, `redis-cli INFO stats` and
//! `INFO memory`, on one persistent connection per check.
//!
//! Every run measures a client-side PING round trip and reads `INFO`: cache
//! hits and misses (as counters, so the guides' hit-ratio PromQL works
//! unchanged), evictions, clients, memory, keys per database and
//! replication. The connection is kept between runs and replaced when it
//! breaks; reconnecting after a failure backs off exponentially, so a down
//! or misconfigured server is not hammered.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use super::backoff::Reconnect;

use futures::future::BoxFuture;
use prometheus_client::registry::Unit;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisConnectionInfo, RedisError};
use serde::{Deserialize, Deserializer};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use url::Url;

use super::tls::{self, TlsClient, TlsSpec};
use super::{
    BuildError, Check, Failure, MetricDesc, MetricKind, Reason, RunContext, RunResult, Sample,
};
use crate::config::secret::{self, Secret};
use crate::metrics::unix_now;

const DEFAULT_PORT: u16 = 6379;
const DEFAULT_MAX_DATABASES: usize = 16;
const DEFAULT_MAX_REPLICAS: usize = 10;

/// Config of a `redis` check.
///
/// ```yaml
/// - name: cache
///   kind: redis
///   url: ${REDIS_URL}
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// The server, as `redis://[[user]:password@]host[:port][/db]`, or
    /// `rediss://...` for TLS. Port default: 6379; database default: 0. A
    /// password in the URL is treated as a secret, like `password`.
    pub url: RedisUrl,
    /// The ACL user to log in as (`AUTH user password`); default: the user
    /// in the URL, else Redis' `default` user.
    pub username: Option<String>,
    /// The password, usually `${ENV}`; instead of one in the URL.
    pub password: Option<Secret>,
    /// A file holding the password, instead of `password`.
    pub password_file: Option<PathBuf>,
    /// The database index to `SELECT`; default: the one in the URL, else 0.
    /// It only matters for ACLs restricted to a database: `INFO` is
    /// server-wide.
    pub database: Option<i64>,
    /// TLS options for `rediss://` URLs: `ca_file`, `cert_file`/`key_file`
    /// (mutual TLS), `server_name`, `insecure_skip_verify`.
    pub tls: Option<TlsSpec>,
    /// The most databases reported in `runbook_redis_db_keys`, those with
    /// the most keys first. Default: 16.
    #[serde(default = "default_max_databases")]
    pub max_databases: usize,
    /// On a primary, the most replicas reported in
    /// `runbook_redis_replica_offset_lag_bytes`, the most lagging first.
    /// Default: 10.
    #[serde(default = "default_max_replicas")]
    pub max_replicas: usize,
}

fn default_max_databases() -> usize {
    DEFAULT_MAX_DATABASES
}

fn default_max_replicas() -> usize {
    DEFAULT_MAX_REPLICAS
}

/// A Redis URL as written in the config. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub String);

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(RedisUrl)
    }
}

/// `url` with any password replaced by `<redacted>`, for messages.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("<redacted>"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// What the URL says, parsed.
#[derive(Debug)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<Secret>,
    db: i64,
}

fn parse_url(raw: &str) -> Result<Target, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(format!(
                "scheme {other:?} is not supported: use redis:// or rediss://"
            ))
        }
    };
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => return Err("the URL has no host".to_string()),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "query parameters are not supported: use the check's fields (username, database, tls)"
                .to_string(),
        );
    }
    let decode = |s: &str| {
        percent_decode(s).map_err(|_| "the user or password is not valid percent-encoded UTF-8")
    };
    let username = match url.username() {
        "" => None,
        u => Some(decode(u)?),
    };
    let password = url.password().map(decode).transpose()?.map(Secret::new);
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        path => path
            .parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| format!("the path {path:?} is not a database index like /0"))?,
    };
    Ok(Target {
        tls,
        host,
        port: url.port().unwrap_or(DEFAULT_PORT),
        username,
        password,
        db,
    })
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|s| s.into_owned())
}

impl super::ProbeSafety for RedisSpec {
    fn credentials(&self) -> Vec<&'static str> {
        let url_password = Url::parse(&self.url.0).is_ok_and(|u| u.password().is_some());
        super::targets::set_fields(&[
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
            ("url", url_password),
            ("tls.key_file", TlsSpec::has_client_key(self.tls.as_ref())),
        ])
    }

    fn endpoints(&self) -> Vec<super::targets::Endpoint> {
        super::targets::Endpoint::of_url(&self.url.0, 6379)
    }
}

impl RedisSpec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match parse_url(&self.url.0) {
            Ok(target) => {
                if target.password.is_some()
                    && (self.password.is_some() || self.password_file.is_some())
                {
                    problems.push((
                        "url".to_string(),
                        "has a password and password or password_file is set too; give it once"
                            .to_string(),
                    ));
                }
                if self.tls.is_some() && !target.tls {
                    problems.push((
                        "tls".to_string(),
                        "is set but the URL is redis://; use rediss:// for TLS".to_string(),
                    ));
                }
            }
            Err(e) => problems.push(("url".to_string(), e)),
        }
        if self.password.is_some() && self.password_file.is_some() {
            problems.push((
                "password".to_string(),
                "set either password or password_file, not both".to_string(),
            ));
        }
        if self.database.is_some_and(|db| db < 0) {
            problems.push(("database".to_string(), "must be 0 or more".to_string()));
        }
        if self.max_databases == 0 {
            problems.push((
                "max_databases".to_string(),
                "must be at least 1".to_string(),
            ));
        }
        if self.max_replicas == 0 {
            problems.push(("max_replicas".to_string(), "must be at least 1".to_string()));
        }
        problems
    }
}

/// Client-side round trip of a PING on the persistent connection.
pub static PING_DURATION: MetricDesc = MetricDesc {
    name: "redis_ping_duration",
    help: "Round trip of a PING on the exporter's persistent connection, measured by the client, in the last scheduled run.",
    unit: Some(Unit::Seconds),
    kind: MetricKind::Gauge,
};

/// Successful key lookups since the server started.
pub static KEYSPACE_HITS: MetricDesc = MetricDesc {
    name: "redis_keyspace_hits",
    help: "Successful key lookups since the server started (INFO keyspace_hits), as of the last scheduled run.",
    unit: None,
    kind: MetricKind::Counter,
};

/// Failed key lookups since the server started.
pub static KEYSPACE_MISSES: MetricDesc = MetricDesc {
    name: "redis_keyspace_misses",
    help: "Failed key lookups since the server started (INFO keyspace_misses), as of the last scheduled run.",
    unit: None,
    kind: MetricKind::Counter,
};

/// Keys evicted because of maxmemory since the server started.
pub static EVICTED_KEYS: MetricDesc = MetricDesc {
    name: "redis_evicted_keys",
    help: "Keys evicted because of maxmemory since the server started (INFO evicted_keys), as of the last scheduled run.",
    unit: None,
    kind: MetricKind::Counter,
};

/// Keys removed on expiry since the server started.
pub static EXPIRED_KEYS: MetricDesc = MetricDesc {
    name: "redis_expired_keys",
    help: "Keys removed on expiry since the server started (INFO expired_keys), as of the last scheduled run.",
    unit: None,
    kind: MetricKind::Counter,
};

/// Connections rejected because of maxclients since the server started.
pub static REJECTED_CONNECTIONS: MetricDesc = MetricDesc {
    name: "redis_rejected_connections",
    help: "Connections rejected because of maxclients since the server started (INFO rejected_connections), as of the last scheduled run.",
    unit: None,
    kind: MetricKind::Counter,
};

/// Connections accepted since the server started.
pub static CONNECTIONS_RECEIVED: MetricDesc = MetricDesc {
    name: "redis_connections_received",
    help: "Connections accepted since the server started (INFO total_connections_received), as of the last scheduled run.",
    unit: None,
    kind: MetricKind::Counter,
};

/// Client connections open.
pub static CONNECTED_CLIENTS: MetricDesc = MetricDesc {
    name: "redis_connected_clients",
    help: "Client connections open (INFO connected_clients) in the last scheduled run, the exporter's own included.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// Clients waiting in a blocking call like BLPOP.
pub static BLOCKED_CLIENTS: MetricDesc = MetricDesc {
    name: "redis_blocked_clients",
    help: "Clients waiting in a blocking call like BLPOP (INFO blocked_clients) in the last scheduled run.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// The server's maxclients setting.
pub static MAX_CLIENTS: MetricDesc = MetricDesc {
    name: "redis_max_clients",
    help: "The server's maxclients setting (INFO maxclients) in the last scheduled run.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// Memory allocated by Redis.
pub static MEMORY_USED: MetricDesc = MetricDesc {
    name: "redis_memory_used",
    help: "Memory allocated by Redis (INFO used_memory) in the last scheduled run.",
    unit: Some(Unit::Bytes),
    kind: MetricKind::Gauge,
};

/// The maxmemory setting, when there is one.
pub static MEMORY_MAX: MetricDesc = MetricDesc {
    name: "redis_memory_max",
    help: "The maxmemory setting in the last scheduled run; absent when it is 0 (no limit).",
    unit: Some(Unit::Bytes),
    kind: MetricKind::Gauge,
};

/// Resident memory of the Redis process as the OS sees it.
pub static MEMORY_RSS: MetricDesc = MetricDesc {
    name: "redis_memory_rss",
    help: "Resident memory of the Redis process as the OS sees it (INFO used_memory_rss) in the last scheduled run.",
    unit: Some(Unit::Bytes),
    kind: MetricKind::Gauge,
};

/// RSS divided by used memory.
pub static MEMORY_FRAGMENTATION: MetricDesc = MetricDesc {
    name: "redis_memory_fragmentation_ratio",
    help: "RSS divided by used memory (INFO mem_fragmentation_ratio) in the last scheduled run.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// When the server started.
pub static START_TIME: MetricDesc = MetricDesc {
    name: "redis_start_timestamp",
    help: "When the server started (now minus INFO uptime_in_seconds), as a Unix timestamp, from the last scheduled run.",
    unit: Some(Unit::Seconds),
    kind: MetricKind::Gauge,
};

/// Keys in each database.
pub static DB_KEYS: MetricDesc = MetricDesc {
    name: "redis_db_keys",
    help: "Keys in each database (INFO keyspace) in the last scheduled run; the databases with the most keys, up to max_databases.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// 1 for the server's replication role.
pub static ROLE: MetricDesc = MetricDesc {
    name: "redis_role",
    help: "1 for the server's replication role (role=\"master\" or \"replica\") in the last scheduled run.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// Replicas connected to this primary.
pub static CONNECTED_REPLICAS: MetricDesc = MetricDesc {
    name: "redis_connected_replicas",
    help: "Replicas connected to this primary (INFO connected_slaves) in the last scheduled run.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// On a primary, each replica's replication offset lag.
pub static REPLICA_OFFSET_LAG: MetricDesc = MetricDesc {
    name: "redis_replica_offset_lag",
    help: "On a primary, how far each replica's acknowledged replication offset is behind the primary's, in the last scheduled run; the most lagging replicas, up to max_replicas.",
    unit: Some(Unit::Bytes),
    kind: MetricKind::Gauge,
};

/// On a replica, 1 if the link to its primary is up.
pub static MASTER_LINK_UP: MetricDesc = MetricDesc {
    name: "redis_master_link_up",
    help: "On a replica, 1 if the link to its primary is up (INFO master_link_status), else 0, in the last scheduled run.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// On a replica, when it last heard from its primary.
pub static MASTER_LAST_IO: MetricDesc = MetricDesc {
    name: "redis_master_last_io_timestamp",
    help: "On a replica, when it last heard from its primary (now minus INFO master_last_io_seconds_ago), as a Unix timestamp, from the last scheduled run; absent while the link is down.",
    unit: Some(Unit::Seconds),
    kind: MetricKind::Gauge,
};

/// On a replica, 1 during a full sync from the primary.
pub static MASTER_SYNC_IN_PROGRESS: MetricDesc = MetricDesc {
    name: "redis_master_sync_in_progress",
    help: "On a replica, 1 while a full sync from the primary is in progress, else 0, in the last scheduled run.",
    unit: None,
    kind: MetricKind::Gauge,
};

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

/// An open connection and the task that drives it; dropping it closes both.
struct Conn {
    conn: MultiplexedConnection,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What survives between runs.
#[derive(Default)]
struct State {
    conn: Option<Conn>,
    /// Backoff after failed connects.
    reconnect: Reconnect,
}

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

    async fn probe(&self) -> RunResult {
        let mut state = self.state.lock().await;
        // The connection is taken out for the run and put back only when the
        // run ends cleanly: a run cancelled by its timeout drops it.
        if let Some(mut conn) = state.conn.take() {
            match self.measure(&mut conn.conn).await {
                Ok(samples) => {
                    state.conn = Some(conn);
                    return Ok(samples);
                }
                Err((failure, broken)) if !broken => {
                    state.conn = Some(conn);
                    return Err(failure);
                }
                // The server closed an idle connection or restarted: try a
                // fresh one right away.
                Err(_) => drop(conn),
            }
        }
        state.reconnect.ready()?;
        let (mut conn, mut samples) = match self.connect().await {
            Ok(connected) => {
                state.reconnect.succeeded();
                connected
            }
            Err(failure) => {
                state.reconnect.failed(failure.reason, &failure.message);
                return Err(failure);
            }
        };
        match self.measure(&mut conn.conn).await {
            Ok(more) => {
                samples.extend(more);
                state.conn = Some(conn);
                Ok(samples)
            }
            Err((mut failure, broken)) => {
                if !broken {
                    state.conn = Some(conn);
                }
                samples.append(&mut failure.samples);
                Err(failure.with_samples(samples))
            }
        }
    }

    /// Open a connection (TCP, TLS, AUTH, SELECT). On success, the samples
    /// that come with it (the certificate expiry with TLS).
    async fn connect(&self) -> Result<(Conn, Vec<Sample>), Failure> {
        let addrs: Vec<SocketAddr> =
            match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    return Err(Failure::new(
                        Reason::Dns,
                        format!("cannot resolve {}: {e}", self.host),
                    ))
                }
            };
        let mut last_error = None;
        let mut stream = None;
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let stream = match (stream, last_error) {
            (Some(s), _) => s,
            (None, Some(e)) => {
                return Err(Failure::new(
                    Reason::from_io(&e),
                    format!("connect to {} failed: {e}", self.display),
                ))
            }
            (None, None) => {
                return Err(Failure::new(
                    Reason::Dns,
                    format!("cannot resolve {}: no addresses", self.host),
                ))
            }
        };
        let _ = stream.set_nodelay(true);
        // The scheduler bounds every run; the client adds no timeouts.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let mut samples = Vec::new();
        let result = match &self.tls {
            None => MultiplexedConnection::new_with_config(&self.info, stream, config)
                .await
                .map(|(conn, driver)| (conn, tokio::spawn(driver))),
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .map_err(|e| Failure::new(Reason::Tls, tls::describe_error(&e)))?;
                if let Some(sample) = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(tls::expiry_sample)
                {
                    samples.push(sample);
                }
                MultiplexedConnection::new_with_config(&self.info, stream, config)
                    .await
                    .map(|(conn, driver)| (conn, tokio::spawn(driver)))
            }
        };
        match result {
            Ok((conn, driver)) => Ok((Conn { conn, driver }, samples)),
            Err(e) => Err(self
                .failure("connection setup (AUTH, SELECT)", &e)
                .with_samples(samples)),
        }
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

    fn failure(&self, what: &str, e: &RedisError) -> Failure {
        let reason = classify(e);
        let message = if let Some(io) = io_error(e) {
            format!("{what} on {} failed: {io}", self.display)
        } else {
            format!("{what} on {} failed: {e}", self.display)
        };
        Failure::new(reason, message)
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

/// The I/O error inside a Redis error, if there is one.
fn io_error(e: &RedisError) -> Option<&std::io::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = err.source();
    }
    None
}

/// Whether the connection that produced `e` can no longer be used.
fn is_broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

fn classify(e: &RedisError) -> Reason {
    if e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
    {
        return Reason::Auth;
    }
    if let Some(io) = io_error(e) {
        return Reason::from_io(io);
    }
    if e.is_connection_refusal() {
        return Reason::ConnectionRefused;
    }
    if e.is_timeout() {
        return Reason::Timeout;
    }
    match e.kind() {
        ErrorKind::Io => Reason::Network,
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => Reason::Protocol,
        _ => Reason::UnexpectedResponse,
    }
}

/// The `key:value` lines of an INFO reply (section headers and blank lines
/// dropped).
fn parse_info(text: &str) -> HashMap<&str, &str> {
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

/// Turn INFO fields into samples. `now` is the Unix time of the reading.
fn info_samples(
    info: &HashMap<&str, &str>,
    now: f64,
    max_databases: usize,
    max_replicas: usize,
) -> Vec<Sample> {
    let num = |key: &str| info.get(key).and_then(|v| v.trim().parse::<f64>().ok());
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
        if let Some(v) = num(key).filter(|v| v.is_finite()) {
            samples.push(Sample::new(desc, v));
        }
    }
    if let Some(max) = num("maxmemory").filter(|v| *v > 0.0) {
        samples.push(Sample::new(&MEMORY_MAX, max));
    }
    if let Some(uptime) = num("uptime_in_seconds") {
        samples.push(Sample::new(&START_TIME, (now - uptime).floor()));
    }

    // Keys per database: `db0:keys=1,expires=0,avg_ttl=0`.
    let mut dbs: Vec<(u32, f64)> = info
        .iter()
        .filter_map(|(k, v)| {
            let index = k.strip_prefix("db")?.parse::<u32>().ok()?;
            let keys = subfields(v).get("keys")?.parse::<f64>().ok()?;
            Some((index, keys))
        })
        .collect();
    dbs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    for (index, keys) in dbs.into_iter().take(max_databases) {
        samples.push(Sample::new(&DB_KEYS, keys).with_label("db", index.to_string()));
    }

    match info.get("role").map(|r| r.trim()) {
        Some("master") => {
            samples.push(Sample::new(&ROLE, 1.0).with_label("role", "master"));
            if let Some(n) = num("connected_slaves") {
                samples.push(Sample::new(&CONNECTED_REPLICAS, n));
            }
            if let Some(primary_offset) = num("master_repl_offset") {
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
            }
        }
        Some("slave" | "replica") => {
            samples.push(Sample::new(&ROLE, 1.0).with_label("role", "replica"));
            if let Some(status) = info.get("master_link_status") {
                let up = if status.trim() == "up" { 1.0 } else { 0.0 };
                samples.push(Sample::new(&MASTER_LINK_UP, up));
            }
            if let Some(ago) = num("master_last_io_seconds_ago").filter(|s| *s >= 0.0) {
                samples.push(Sample::new(&MASTER_LAST_IO, (now - ago).floor()));
            }
            if let Some(sync) = num("master_sync_in_progress") {
                samples.push(Sample::new(&MASTER_SYNC_IN_PROGRESS, sync));
            }
        }
        _ => {}
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t = parse_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.db),
            (false, "127.0.0.1", 6380, 2)
        );
        assert!(t.username.is_none() && t.password.is_none());

        let t = parse_url("rediss://app:p%40ss@cache.internal").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.db),
            (true, "cache.internal", 6379, 0)
        );
        assert_eq!(t.username.as_deref(), Some("app"));
        assert_eq!(t.password.unwrap().expose(), "p@ss");

        let t = parse_url("redis://:secret@[::1]:7000/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7000));
        assert!(t.username.is_none());

        assert!(parse_url("http://x").unwrap_err().contains("redis://"));
        assert!(parse_url("redis://x/abc")
            .unwrap_err()
            .contains("database index"));
        assert!(parse_url("redis://x/0?protocol=resp3")
            .unwrap_err()
            .contains("query"));
    }

    #[test]
    fn url_debug_hides_the_password() {
        let url = RedisUrl("redis://app:hunter2@cache:6379/0".to_string());
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("app:%3Credacted%3E@cache"), "{shown}");
    }

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

    fn spec(yaml: &str) -> RedisSpec {
        serde_saphyr::from_str(yaml).expect("spec parses")
    }

    fn fields(problems: Vec<(String, String)>) -> Vec<String> {
        problems.into_iter().map(|(field, _)| field).collect()
    }

    #[test]
    fn validation_names_the_fields() {
        assert!(spec("url: redis://127.0.0.1:6379/0").validate().is_empty());
        assert_eq!(
            fields(spec("url: redis://:pw@h\npassword: other").validate()),
            ["url"]
        );
        assert_eq!(
            fields(spec("url: redis://h\ntls: {ca_file: /x.pem}").validate()),
            ["tls"]
        );
        assert_eq!(
            fields(spec("url: redis://h\nmax_databases: 0\nmax_replicas: 0").validate()),
            ["max_databases", "max_replicas"]
        );
        assert_eq!(fields(spec("url: h:6379").validate()), ["url"]);
    }

    #[test]
    fn a_password_file_that_cannot_be_read_is_a_build_error() {
        let err = RedisCheck::new(&spec("url: redis://h\npassword_file: /nonexistent/pw"))
            .err()
            .expect("build fails");
        assert_eq!(err.field, "password_file");
    }
}
