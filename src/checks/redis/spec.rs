//! The config of a `redis` check: its fields, its URL (parsed, and with the
//! password hidden in messages), the semantic validation, and what `/probe`
//! must know of it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use url::Url;

use crate::checks::shared::secret::Secret;
use crate::checks::shared::targets::{self, ProbeSafety};
use crate::checks::shared::tls::TlsSpec;

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
fn redact_url(url: &str) -> String {
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
pub(super) struct Target {
    pub(super) tls: bool,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) username: Option<String>,
    pub(super) password: Option<Secret>,
    pub(super) db: i64,
}

pub(super) fn parse_url(raw: &str) -> Result<Target, String> {
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

impl ProbeSafety for RedisSpec {
    fn credentials(&self) -> Vec<&'static str> {
        let url_password = Url::parse(&self.url.0).is_ok_and(|u| u.password().is_some());
        targets::set_fields(&[
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
            ("url", url_password),
            ("tls.key_file", TlsSpec::has_client_key(self.tls.as_ref())),
        ])
    }

    fn endpoints(&self) -> Vec<targets::Endpoint> {
        targets::Endpoint::of_url(&self.url.0, 6379)
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
}
