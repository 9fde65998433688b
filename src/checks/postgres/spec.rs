//! The configuration of a `postgres` check: [`PostgresSpec`] and its custom
//! [`QuerySpec`]s, their validation, what a `/probe` module must know about
//! them ([`ProbeSafety`]), and the parsing of the DSN.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::Config;

use super::{describe, target};
use crate::checks::shared::secret::Secret;
use crate::checks::shared::targets::ProbeSafety;
use crate::checks::shared::targets::{self, Endpoint};
use crate::checks::shared::tls::TlsSpec;

/// How the session is encrypted (`sslmode`, as in libpq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Never use TLS.
    Disable,
    /// Use TLS if the server offers it, without verifying the certificate
    /// (unless `tls.ca_file` is set); fall back to plain text.
    Prefer,
    /// Require TLS; the certificate is verified only if `tls.ca_file` is
    /// set (libpq's `require` semantics).
    Require,
    /// Require TLS and verify the certificate chain and the host name
    /// against the system's CAs and `tls.ca_file`.
    VerifyFull,
}

/// What sits between the check and the server (`pooler:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooler {
    /// Nothing, or a pooler in session mode: one server connection for the
    /// whole session. The session settings are `SET` once after connecting
    /// and the statements are prepared once.
    #[default]
    None,
    /// A pooler in session mode (PgBouncer `pool_mode = session`): the
    /// same as `none`.
    Session,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`,
    /// most managed poolers): every run's statements go in transactions
    /// that `SET LOCAL` the session settings, with no named prepared
    /// statements.
    Transaction,
}

/// Config of a `postgres` check.
///
/// ```yaml
/// - name: primary
///   kind: postgres
///   dsn: ${DATABASE_URL}   # postgres://user:pass@host:5432/db?sslmode=require
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    /// Connection string: a URL (`postgres://user:pass@host:5432/db?sslmode=require`)
    /// or libpq key/value pairs (`host=db user=monitor dbname=app`). Treated as
    /// a secret: it is never printed. The fields below override what it says.
    pub dsn: Option<Secret>,
    /// Server host name or IP address. Replaces the DSN's hosts (and
    /// `hostaddr`s): the check connects to this server only. Default: the
    /// DSN's hosts, else `127.0.0.1`.
    pub host: Option<String>,
    /// Server port. Replaces the DSN's ports. Default: the DSN's, else 5432.
    pub port: Option<u16>,
    /// Role to log in as; a non-superuser granted `pg_monitor` is enough.
    pub user: Option<String>,
    /// Password of `user`. Use `password_file` to read it from a file.
    pub password: Option<Secret>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<std::path::PathBuf>,
    /// Database to connect to. Default: the user name.
    pub database: Option<String>,
    /// `disable`, `prefer`, `require` or `verify-full`. Default: the DSN's
    /// `sslmode`, else `prefer`.
    pub sslmode: Option<TlsMode>,
    /// TLS files: `ca_file`, `cert_file` + `key_file` (client certificate).
    /// The certificate is checked against the host, so `server_name` is not
    /// accepted; nor is `insecure_skip_verify`: use `sslmode: require`
    /// without a `ca_file` instead.
    pub tls: Option<TlsSpec>,
    /// `application_name` of the monitoring session, as seen in
    /// pg_stat_activity; replaces the DSN's. Default: `runbook-exporter`.
    #[serde(default = "default_application_name")]
    pub application_name: String,
    /// `none`, `session` or `transaction`: the pooling mode of a pooler
    /// (PgBouncer, a managed pooler) between the check and the server.
    /// Default: `none`.
    #[serde(default)]
    pub pooler: Pooler,
    /// An active query running longer than this counts as long-running.
    /// Measured from `query_start`, not from the transaction start.
    /// Default: 1s.
    #[serde(
        default = "default_long_query",
        with = "crate::checks::shared::duration"
    )]
    pub long_query_threshold: Duration,
    /// Export the top N statements of pg_stat_statements by total time.
    /// Default: 10; 0 turns it off.
    #[serde(default = "default_statements_top")]
    pub statements_top: u32,
    /// Most databases exported from pg_stat_database (the busiest by
    /// commits). Default: 20.
    #[serde(default = "default_max_databases")]
    pub max_databases: u32,
    /// Most standbys (and, separately, replication slots) exported on a
    /// primary. Default: 10.
    #[serde(default = "default_max_standbys")]
    pub max_standbys: u32,
    /// Most groups of client connections by user, application and client
    /// address exported (the largest). Default: 20.
    #[serde(default = "default_max_clients")]
    pub max_clients: u32,
    /// Most wait events of active sessions exported (the most common).
    /// Default: 10.
    #[serde(default = "default_max_wait_events")]
    pub max_wait_events: u32,
    /// The team's own queries, exported as `runbook_postgres_query_value`.
    #[serde(default)]
    pub queries: Vec<QuerySpec>,
}

/// A custom query: each row gives one sample per value column, labelled by
/// the label columns.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    /// Name of the query, the value of the `query` label.
    pub name: String,
    /// The SQL. It runs in a read-only transaction under the check's
    /// statement timeout.
    pub sql: String,
    /// Columns holding numbers (or booleans) to export; each becomes a
    /// sample with `column="<name>"`.
    pub values: Vec<String>,
    /// Columns whose text becomes a label of the same name.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Most rows exported; the rest are ignored. Default: 50.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
}

fn default_application_name() -> String {
    "runbook-exporter".to_string()
}
fn default_long_query() -> Duration {
    Duration::from_secs(1)
}
fn default_statements_top() -> u32 {
    10
}
fn default_max_databases() -> u32 {
    20
}
fn default_max_standbys() -> u32 {
    10
}
fn default_max_clients() -> u32 {
    20
}
fn default_max_wait_events() -> u32 {
    10
}
fn default_max_rows() -> usize {
    50
}

/// Label names the custom queries may not use.
const RESERVED_LABELS: [&str; 4] = ["check", "kind", "query", "column"];

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

impl ProbeSafety for PostgresSpec {
    fn credentials(&self) -> Vec<&'static str> {
        let dsn_password = self
            .dsn
            .as_ref()
            .is_some_and(|d| parse_dsn(d.expose()).is_ok_and(|(c, _)| c.get_password().is_some()));
        targets::set_fields(&[
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
            ("dsn", dsn_password),
            ("tls.key_file", TlsSpec::has_client_key(self.tls.as_ref())),
        ])
    }

    /// Where the connection goes: the DSN's hosts (or the `hostaddr`s
    /// dialled instead of them), replaced by `host:` and `port:`; each pairs
    /// with its port as libpq pairs them (one port for all, or one each).
    fn endpoints(&self) -> Vec<Endpoint> {
        let parsed = match &self.dsn {
            Some(dsn) => match parse_dsn(dsn.expose()) {
                Ok((config, _)) => config,
                Err(_) => return Vec::new(),
            },
            None => Config::new(),
        };
        let Ok(config) = target::with_target(&parsed, self.host.as_deref(), self.port) else {
            return Vec::new();
        };
        let hosts: Vec<String> = if config.get_hostaddrs().is_empty() {
            config
                .get_hosts()
                .iter()
                .filter_map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(_) => None,
                })
                .collect()
        } else {
            config
                .get_hostaddrs()
                .iter()
                .map(|a| a.to_string())
                .collect()
        };
        let ports = config.get_ports();
        hosts
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                Endpoint::new(h, port)
            })
            .collect()
    }
}

impl PostgresSpec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.dsn.is_none() && self.host.is_none() {
            problems.push((
                "dsn".to_string(),
                "set dsn (like ${DATABASE_URL}) or host".to_string(),
            ));
        }
        if let Some(dsn) = &self.dsn {
            if let Err(e) = parse_dsn(dsn.expose()) {
                problems.push(("dsn".to_string(), e));
            }
        }
        if self.password.is_some() && self.password_file.is_some() {
            problems.push((
                "password".to_string(),
                "set either password or password_file, not both".to_string(),
            ));
        }
        if self.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
            problems.push((
                "tls.insecure_skip_verify".to_string(),
                "not supported here: sslmode require encrypts without verifying".to_string(),
            ));
        }
        if self.tls.as_ref().is_some_and(|t| t.server_name.is_some()) {
            problems.push((
                "tls.server_name".to_string(),
                "not supported here: the certificate is checked against the host, so set host (or the DSN's host) to the name on the certificate".to_string(),
            ));
        }
        if self.tls.is_some() && self.sslmode == Some(TlsMode::Disable) {
            problems.push((
                "tls".to_string(),
                "is set but sslmode is disable".to_string(),
            ));
        }
        if self.application_name.is_empty() || self.application_name.len() > 63 {
            problems.push((
                "application_name".to_string(),
                "must have 1 to 63 characters".to_string(),
            ));
        }
        for (field, value) in [
            ("max_databases", self.max_databases),
            ("max_standbys", self.max_standbys),
            ("max_clients", self.max_clients),
            ("max_wait_events", self.max_wait_events),
        ] {
            if value == 0 {
                problems.push((field.to_string(), "must be at least 1".to_string()));
            }
        }
        let mut names = HashSet::new();
        for (i, q) in self.queries.iter().enumerate() {
            q.check(&format!("queries[{i}]"), &mut names, &mut problems);
        }
        problems
    }
}

impl QuerySpec {
    /// Add this query's problems, its fields under `at`; `names` holds the
    /// names of the queries before it.
    fn check<'a>(
        &'a self,
        at: &str,
        names: &mut HashSet<&'a str>,
        problems: &mut Vec<(String, String)>,
    ) {
        let at = |f: &str| format!("{at}.{f}");
        if !valid_label_name(&self.name) {
            problems.push((at("name"), "use letters, digits and _".to_string()));
        }
        if !names.insert(self.name.as_str()) {
            problems.push((at("name"), format!("{:?} is used twice", self.name)));
        }
        if self.sql.trim().is_empty() {
            problems.push((at("sql"), "must not be empty".to_string()));
        }
        if self.values.is_empty() {
            problems.push((at("values"), "name at least one column".to_string()));
        }
        for label in &self.labels {
            if !valid_label_name(label) || RESERVED_LABELS.contains(&label.as_str()) {
                problems.push((
                    at("labels"),
                    format!(
                        "{label:?} is not a usable label name (letters, digits, _; not check, kind, query or column)"
                    ),
                ));
            }
            if self.values.contains(label) {
                problems.push((at("labels"), format!("{label:?} is also a value column")));
            }
        }
        if self.max_rows == 0 {
            problems.push((at("max_rows"), "must be at least 1".to_string()));
        }
    }
}

/// Parse a DSN; `sslmode=verify-full` (which tokio-postgres does not know)
/// is taken out and returned separately.
pub(super) fn parse_dsn(dsn: &str) -> Result<(Config, Option<TlsMode>), String> {
    let mut mode = None;
    let cleaned = if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let mut url = url::Url::parse(dsn).map_err(|e| format!("not a valid URL: {e}"))?;
        // The other parameters are kept as written: re-encoding them would
        // turn a `%20` into a `+`, which libpq-style parsers keep as `+`
        // (an `options=-c%20x%3D1` would reach the server as `-c+x=1`).
        let mut kept = Vec::new();
        for part in url.query().unwrap_or_default().split('&') {
            match part.strip_prefix("sslmode=") {
                Some(v) => {
                    let v = url::form_urlencoded::parse(format!("v={v}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    mode = Some(parse_mode(&v)?);
                }
                None if part.is_empty() => {}
                None => kept.push(part.to_string()),
            }
        }
        url.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
        url.to_string()
    } else {
        let mut kept = Vec::new();
        for word in dsn.split_whitespace() {
            match word.strip_prefix("sslmode=") {
                Some(v) => mode = Some(parse_mode(v)?),
                None => kept.push(word),
            }
        }
        kept.join(" ")
    };
    // The error text of tokio-postgres never quotes the input.
    let config = Config::from_str(&cleaned).map_err(|e| describe(&e))?;
    Ok((config, mode))
}

fn parse_mode(v: &str) -> Result<TlsMode, String> {
    match v {
        "disable" => Ok(TlsMode::Disable),
        "prefer" | "allow" => Ok(TlsMode::Prefer),
        "require" => Ok(TlsMode::Require),
        "verify-full" => Ok(TlsMode::VerifyFull),
        "verify-ca" => Err("sslmode verify-ca is not supported: use verify-full".to_string()),
        other => Err(format!(
            "unknown sslmode {other:?}: use disable, prefer, require or verify-full"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_full_is_taken_out_of_the_url() {
        let (config, mode) =
            parse_dsn("postgres://u:p@db:6432/app?sslmode=verify-full&connect_timeout=3").unwrap();
        assert_eq!(mode, Some(TlsMode::VerifyFull));
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(config.get_ports(), &[6432]);
        let (_, mode) = parse_dsn("host=db user=u sslmode=require").unwrap();
        assert_eq!(mode, Some(TlsMode::Require));
        assert!(parse_dsn("postgres://u@db/x?sslmode=bogus")
            .unwrap_err()
            .contains("unknown sslmode"));
    }

    #[test]
    fn the_dsns_options_survive_taking_sslmode_out() {
        let (config, mode) =
            parse_dsn("postgres://u@db/x?sslmode=require&options=-c%20work_mem%3D7MB").unwrap();
        assert_eq!(mode, Some(TlsMode::Require));
        assert_eq!(config.get_options(), Some("-c work_mem=7MB"));
    }

    #[test]
    fn dsn_errors_do_not_quote_the_password() {
        let err = parse_dsn("postgres://u:hunter2@db:notaport/x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn label_names() {
        assert!(valid_label_name("key_name"));
        assert!(!valid_label_name("1x"));
        assert!(!valid_label_name("a-b"));
    }
}
