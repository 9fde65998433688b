//! The `clickhouse` kind: the guides' `curl http://clickhouse:8123/ping`,
//! plus a real query with credentials through the HTTP interface.
//!
//! `/ping` answers `Ok.` without looking at credentials or touching the
//! query path, so a server that is up but rejects the application's user
//! would pass a ping-only probe. Every run therefore does both: `GET /ping`,
//! then `SELECT 1` (or the configured query) as the configured user, then
//! reads the server's version and uptime, and optionally the worst replica
//! delay, and with `replicas:`/`mutations:` the table health of
//! [`tables`]. The HTTP client, and its pool of keep-alive connections,
//! lives as long as the check.
//!
//! Each query carries `max_execution_time` on its URL, so the server stops
//! it at the run's timeout, except for a `readonly = 1` user: ClickHouse
//! refuses any setting from such a user (Code 164). The first such refusal
//! turns the setting off for the check's lifetime and the query is sent
//! again without it; the user's profile then bounds it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::registry::Unit;
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use url::Url;

use super::shared::tls::TlsSpec;
use super::{BuildError, Check, Failure, MetricDesc, Reason, RunContext, RunResult, Sample};
use crate::checks::shared::secret::{self, Secret};
use crate::clock::unix_now;

mod tables;
mod wire;

use wire::{classify_transport, error_code, read_limited, snippet};

const USER_AGENT: &str = concat!("runbook-exporter/", env!("CARGO_PKG_VERSION"));
/// Most bytes of a query result read; the rest is not fetched.
const MAX_RESULT_BYTES: usize = 64 * 1024;
/// How much of an error body a failure message quotes.
const SNIPPET_CHARS: usize = 200;
/// ClickHouse error codes that mean the credentials were refused:
/// UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, IP_ADDRESS_NOT_ALLOWED,
/// AUTHENTICATION_FAILED.
const AUTH_ERROR_CODES: [u32; 5] = [192, 193, 194, 195, 516];
/// Why `tls.server_name` is refused: the HTTP client verifies the URL's host.
const SERVER_NAME_UNSUPPORTED: &str =
    "is not supported by the clickhouse kind: use the name in the certificate as the URL's host";
/// ClickHouse error codes about missing privileges (READONLY, ACCESS_DENIED).
const PERMISSION_ERROR_CODES: [u32; 2] = [164, 497];
/// READONLY: a `readonly = 1` user may not change a setting.
const READONLY_ERROR_CODE: u32 = 164;

/// Config of a `clickhouse` check.
///
/// ```yaml
/// - name: analytics
///   kind: clickhouse
///   url: ${CLICKHOUSE_URL}
///   user: default
///   password_file: /etc/secrets/clickhouse
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickhouseSpec {
    /// The HTTP interface: `http://host:8123` or `https://host:8443`, with
    /// no credentials (use `user` and `password`) and no query string. A
    /// path prefix (for a proxy) is kept: `/ping` and the query go below it.
    pub url: String,
    /// The user the query runs as. Default: `default`.
    #[serde(default = "default_user")]
    pub user: String,
    /// The user's password, usually `${ENV}`. Default: empty.
    pub password: Option<Secret>,
    /// A file holding the password, instead of `password`.
    pub password_file: Option<PathBuf>,
    /// The query that proves the query path works, run as `user`. Its
    /// result is read (up to 64 KiB) and otherwise ignored. Default:
    /// `SELECT 1`.
    #[serde(default = "default_query")]
    pub query: String,
    /// The database the query runs in. Default: the user's default.
    pub database: Option<String>,
    /// Also read `max(absolute_delay)` from `system.replicas` and report it
    /// as `runbook_clickhouse_replica_max_delay_seconds`. Default: false.
    #[serde(default)]
    pub replica_delay: bool,
    /// Read replication depth from `system.replicas`: queue size and
    /// absolute delay of the `max_tables` most delayed replicated tables,
    /// and how many are read-only. Default: false.
    #[serde(default)]
    pub replicas: bool,
    /// Read stuck mutations from `system.mutations`: unfinished ones older
    /// than `mutation_stuck_after`, per table and in total. Default: false.
    #[serde(default)]
    pub mutations: bool,
    /// Most tables exported per table-level part (`replicas`, `mutations`).
    /// Default: 20.
    #[serde(default = "default_max_tables")]
    pub max_tables: u32,
    /// An unfinished mutation older than this counts as stuck. Default: 15m.
    #[serde(
        default = "default_mutation_stuck_after",
        with = "crate::checks::shared::duration"
    )]
    pub mutation_stuck_after: Duration,
    /// TLS options for `https://` URLs.
    pub tls: Option<TlsSpec>,
}

fn default_user() -> String {
    "default".to_string()
}

fn default_max_tables() -> u32 {
    20
}

fn default_mutation_stuck_after() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_query() -> String {
    "SELECT 1".to_string()
}

impl super::shared::targets::ProbeSafety for ClickhouseSpec {
    fn credentials(&self) -> Vec<&'static str> {
        super::shared::targets::set_fields(&[
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
            ("tls.key_file", TlsSpec::has_client_key(self.tls.as_ref())),
        ])
    }

    fn endpoints(&self) -> Vec<super::shared::targets::Endpoint> {
        super::shared::targets::Endpoint::of_url(&self.url, 8123)
    }
}

impl ClickhouseSpec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match parse_url(&self.url) {
            Ok(url) => {
                if self.tls.is_some() && url.scheme() != "https" {
                    problems.push((
                        "tls".to_string(),
                        "is set but the URL is http://; use https:// for TLS".to_string(),
                    ));
                }
            }
            Err(e) => problems.push(("url".to_string(), e)),
        }
        if self.tls.as_ref().is_some_and(|t| t.server_name.is_some()) {
            problems.push((
                "tls.server_name".to_string(),
                SERVER_NAME_UNSUPPORTED.to_string(),
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            problems.push((
                "password".to_string(),
                "set either password or password_file, not both".to_string(),
            ));
        }
        if self.user.is_empty() {
            problems.push(("user".to_string(), "must not be empty".to_string()));
        }
        if self.query.trim().is_empty() {
            problems.push(("query".to_string(), "must not be empty".to_string()));
        }
        if self.max_tables == 0 {
            problems.push(("max_tables".to_string(), "must be at least 1".to_string()));
        }
        problems
    }
}

fn parse_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {:?} is not supported: use http:// or https:// (the HTTP interface, port 8123 or 8443)",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err("the URL has no host".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials: use user and password".to_string());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query string: use query and database".to_string());
    }
    Ok(url)
}

/// Round trip of `GET /ping`.
pub static PING_DURATION: MetricDesc = MetricDesc::gauge(
    "clickhouse_ping_duration",
    Some(Unit::Seconds),
    "Time from sending GET /ping to reading its Ok. answer, in the last scheduled run.",
);

/// Round trip of the configured query.
pub static QUERY_DURATION: MetricDesc = MetricDesc::gauge(
    "clickhouse_query_duration",
    Some(Unit::Seconds),
    "Time from sending the check's query (default SELECT 1) to reading its whole result, in the last scheduled run.",
);

/// The server's version, as a label.
pub static VERSION_INFO: MetricDesc = MetricDesc::gauge(
    "clickhouse_version_info",
    None,
    "1, with the server's version() in the version label, as of the last scheduled run.",
);

/// When the server started.
pub static START_TIME: MetricDesc = MetricDesc::gauge(
    "clickhouse_start_timestamp",
    Some(Unit::Seconds),
    "When the server started (now minus uptime()), as a Unix timestamp, from the last scheduled run.",
);

/// The worst replication delay of any replicated table.
pub static REPLICA_MAX_DELAY: MetricDesc = MetricDesc::gauge(
    "clickhouse_replica_max_delay",
    Some(Unit::Seconds),
    "The largest absolute_delay in system.replicas (0 without replicated tables), in the last scheduled run; only with replica_delay: true.",
);

/// Every metric this kind can report, besides the TLS certificate expiry.
pub static METRICS: [&MetricDesc; 13] = [
    &PING_DURATION,
    &QUERY_DURATION,
    &VERSION_INFO,
    &START_TIME,
    &REPLICA_MAX_DELAY,
    &tables::REPLICA_QUEUE,
    &tables::REPLICA_DELAY,
    &tables::REPLICAS,
    &tables::REPLICAS_READONLY,
    &tables::TABLE_STUCK_MUTATIONS,
    &tables::STUCK_MUTATIONS,
    &tables::OLDEST_STUCK_MUTATION,
    &tables::DROPPED,
];

/// A built `clickhouse` check.
pub struct ClickhouseCheck {
    client: Client,
    ping_url: Url,
    query_url: Url,
    /// Scheme, host and port, for messages.
    display: String,
    user: String,
    password: Option<Secret>,
    query: String,
    replica_delay: bool,
    tables: tables::Tables,
    /// False once the server refused `max_execution_time` (a readonly user).
    send_settings: AtomicBool,
}

impl ClickhouseCheck {
    pub fn new(spec: &ClickhouseSpec) -> Result<Self, BuildError> {
        let base = parse_url(&spec.url).map_err(|e| BuildError::new("url", e))?;
        let password = secret::resolve("password", &spec.password, &spec.password_file)?;
        let tls = spec.tls.clone().unwrap_or_default();
        if tls.server_name.is_some() {
            return Err(BuildError::new("tls.server_name", SERVER_NAME_UNSUPPORTED));
        }
        let tls_config = tls.client_config("tls", &[b"http/1.1"])?;
        let client = Client::builder()
            .use_preconfigured_tls((*tls_config).clone())
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            // Shorter than the server's default keep_alive_timeout (3 s),
            // so a pooled connection is not reused just as the server
            // closes it.
            .pool_idle_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(1)
            .http1_only()
            .no_proxy()
            .build()
            .map_err(|e| BuildError::new("tls", format!("HTTP client setup failed: {e}")))?;
        let join = |path: &str| {
            let mut url = base.clone();
            let prefix = url.path().trim_end_matches('/').to_string();
            url.set_path(&format!("{prefix}/{path}"));
            url
        };
        let ping_url = join("ping");
        let mut query_url = join("");
        if let Some(db) = &spec.database {
            query_url.query_pairs_mut().append_pair("database", db);
        }
        let display = base.origin().ascii_serialization();
        Ok(Self {
            client,
            ping_url,
            query_url,
            display,
            user: spec.user.clone(),
            password,
            query: spec.query.clone(),
            replica_delay: spec.replica_delay,
            tables: tables::Tables {
                replicas: spec.replicas,
                mutations: spec.mutations,
                max_tables: spec.max_tables,
                stuck_after: spec.mutation_stuck_after,
            },
            send_settings: AtomicBool::new(true),
        })
    }

    async fn probe(&self, timeout: Duration) -> RunResult {
        let mut samples = Vec::new();

        let start = Instant::now();
        let response = self
            .client
            .get(self.ping_url.clone())
            .send()
            .await
            .map_err(|e| self.transport_failure("GET /ping", &e))?;
        let status = response.status();
        let body = read_limited(response)
            .await
            .map_err(|e| self.transport_failure("GET /ping", &e))?;
        if status != StatusCode::OK || body.trim_end() != "Ok." {
            return Err(Failure::new(
                Reason::UnexpectedResponse,
                format!(
                    "GET /ping on {} answered {status} {}, not 200 Ok.",
                    self.display,
                    snippet(&body)
                ),
            ));
        }
        samples.push(Sample::new(&PING_DURATION, start.elapsed().as_secs_f64()));

        let start = Instant::now();
        if let Err(failure) = self.query(&self.query, timeout).await {
            return Err(failure.with_samples(samples));
        }
        samples.push(Sample::new(&QUERY_DURATION, start.elapsed().as_secs_f64()));

        let info = match self
            .query("SELECT version(), uptime() FORMAT TabSeparated", timeout)
            .await
        {
            Ok(info) => info,
            Err(failure) => return Err(failure.with_samples(samples)),
        };
        let mut fields = info.trim_end().split('\t');
        if let (Some(version), Some(uptime)) = (fields.next(), fields.next()) {
            samples.push(Sample::new(&VERSION_INFO, 1.0).with_label("version", version));
            if let Ok(uptime) = uptime.parse::<f64>() {
                samples.push(Sample::new(&START_TIME, (unix_now() - uptime).floor()));
            }
        }

        if self.replica_delay {
            let delay = match self
                .query(
                    "SELECT max(absolute_delay) FROM system.replicas FORMAT TabSeparated",
                    timeout,
                )
                .await
            {
                Ok(delay) => delay,
                Err(failure) => return Err(failure.with_samples(samples)),
            };
            match delay.trim().parse::<f64>() {
                Ok(delay) => samples.push(Sample::new(&REPLICA_MAX_DELAY, delay)),
                Err(_) => {
                    return Err(Failure::new(
                        Reason::Protocol,
                        format!(
                            "the replica delay query on {} returned {}, not a number",
                            self.display,
                            snippet(&delay)
                        ),
                    )
                    .with_samples(samples))
                }
            }
        }
        if let Err(failure) = self.tables.collect(self, timeout, &mut samples).await {
            return Err(failure.with_samples(samples));
        }
        Ok(samples)
    }

    /// Run `sql` as the check's user, with `max_execution_time` unless the
    /// server refused it before; once refused (a readonly user), again
    /// without it.
    async fn query(&self, sql: &str, timeout: Duration) -> Result<String, Failure> {
        if !self.send_settings.load(Ordering::Relaxed) {
            return self.query_once(sql, None).await.map_err(|(f, _)| f);
        }
        match self.query_once(sql, Some(timeout)).await {
            Err((_, Some(READONLY_ERROR_CODE))) => {
                self.send_settings.store(false, Ordering::Relaxed);
                tracing::info!(server = %self.display, user = %self.user, "clickhouse: the user is readonly; queries go without max_execution_time, bounded by the user's profile");
                self.query_once(sql, None).await.map_err(|(f, _)| f)
            }
            other => other.map_err(|(f, _)| f),
        }
    }

    /// Run `sql` as the check's user and return its result (at most
    /// [`MAX_RESULT_BYTES`]). With `timeout`, the server stops the query
    /// after it. A failure comes with the server's error code, if any.
    async fn query_once(
        &self,
        sql: &str,
        timeout: Option<Duration>,
    ) -> Result<String, (Failure, Option<u32>)> {
        let mut url = self.query_url.clone();
        if let Some(timeout) = timeout {
            url.query_pairs_mut()
                .append_pair("max_execution_time", &timeout.as_secs().max(1).to_string());
        }
        let response = self
            .client
            .post(url)
            .basic_auth(&self.user, self.password.as_ref().map(|p| p.expose()))
            .body(sql.to_string())
            .send()
            .await
            .map_err(|e| (self.transport_failure("query", &e), None))?;
        let status = response.status();
        let body = read_limited(response)
            .await
            .map_err(|e| (self.transport_failure("query", &e), None))?;
        if status == StatusCode::OK {
            return Ok(body);
        }
        let code = error_code(&body);
        let reason = if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || code.is_some_and(|c| {
                AUTH_ERROR_CODES.contains(&c) || PERMISSION_ERROR_CODES.contains(&c)
            }) {
            Reason::Auth
        } else {
            Reason::UnexpectedResponse
        };
        Err((
            Failure::new(
                reason,
                format!(
                    "query as user {:?} on {} failed with {status}: {}",
                    self.user,
                    self.display,
                    snippet(&body)
                ),
            ),
            code,
        ))
    }

    fn transport_failure(&self, what: &str, e: &reqwest::Error) -> Failure {
        let (reason, detail) = classify_transport(e);
        Failure::new(
            reason,
            format!("{what} on {} failed: {detail}", self.display),
        )
    }
}

impl Check for ClickhouseCheck {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe(ctx.timeout))
    }

    fn secrets(&self) -> Vec<String> {
        self.password
            .iter()
            .map(|p| p.expose().to_string())
            .collect()
    }
}

crate::checks::kind!(ClickhouseSpec => ClickhouseCheck, "clickhouse", probe "url");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("http://127.0.0.1:8123").is_ok());
        assert!(parse_url("tcp://x:9000").unwrap_err().contains("http://"));
        assert!(parse_url("http://u:p@x:8123")
            .unwrap_err()
            .contains("credentials"));
        assert!(parse_url("http://x:8123/?user=a")
            .unwrap_err()
            .contains("query string"));
    }

    fn spec(yaml: &str) -> ClickhouseSpec {
        serde_saphyr::from_str(yaml).expect("spec parses")
    }

    #[test]
    fn validation_names_the_fields() {
        let ok = spec("url: http://127.0.0.1:8123");
        assert!(ok.validate().is_empty());
        assert_eq!(
            (ok.user.as_str(), ok.query.as_str()),
            ("default", "SELECT 1")
        );
        let fields = |yaml: &str| -> Vec<String> {
            spec(yaml).validate().into_iter().map(|(f, _)| f).collect()
        };
        assert_eq!(
            fields("url: http://h:8123\ntls: {ca_file: /x.pem}"),
            ["tls"]
        );
        assert_eq!(
            fields("url: https://h:8443\ntls: {server_name: other}"),
            ["tls.server_name"]
        );
        assert_eq!(
            fields("url: http://h:8123\npassword: a\npassword_file: /b"),
            ["password"]
        );
        assert_eq!(
            fields("url: http://h:8123\nuser: ''\nquery: ' '\nmax_tables: 0"),
            ["user", "query", "max_tables"]
        );
    }
}
