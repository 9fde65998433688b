//! Where a `postgres` check connects: the DSN's hosts and ports, REPLACED by
//! the check's `host:` and `port:` when they are set.
//!
//! tokio-postgres's `Config::host` and `Config::port` append to the lists
//! the DSN gave, and a connect tries every host in turn, so an added host
//! would leave the DSN's first: the check could report up for the wrong
//! server. The config has no way to clear a list, so it is rebuilt: every
//! other setting of the DSN is copied over.

use tokio_postgres::config::Host;
use tokio_postgres::Config;

use crate::checks::BuildError;

/// Where to connect when neither the DSN nor `host:` names a server.
const DEFAULT_HOST: &str = "127.0.0.1";
/// PostgreSQL's port, when nothing names one.
const DEFAULT_PORT: u16 = 5432;

/// `parsed` (from the DSN) with its hosts replaced by `host` and its ports
/// by `port`, when given. `host` also drops the DSN's `hostaddr`s, which
/// would otherwise be dialled instead of it. With `host` but no `port`, the
/// DSN's single port is kept; a DSN listing several needs `port`.
pub(super) fn with_target(
    parsed: &Config,
    host: Option<&str>,
    port: Option<u16>,
) -> Result<Config, BuildError> {
    let mut config = settings_of(parsed);
    match host {
        Some(host) => {
            config.host(host);
        }
        None => {
            for h in parsed.get_hosts() {
                match h {
                    Host::Tcp(name) => config.host(name),
                    #[cfg(unix)]
                    Host::Unix(path) => config.host_path(path),
                };
            }
            for addr in parsed.get_hostaddrs() {
                config.hostaddr(*addr);
            }
            if parsed.get_hosts().is_empty() && parsed.get_hostaddrs().is_empty() {
                config.host(DEFAULT_HOST);
            }
        }
    }
    let ports = match (port, host, parsed.get_ports()) {
        (Some(port), _, _) => vec![port],
        (None, Some(_), many) if many.len() > 1 => {
            return Err(BuildError::new(
                "port",
                format!(
                    "the dsn lists {} ports for its hosts; `host` replaces those hosts, so set `port` too",
                    many.len()
                ),
            ))
        }
        (None, _, ports) => ports.to_vec(),
    };
    for p in ports {
        config.port(p);
    }
    Ok(config)
}

/// A new config with every setting of `parsed` but its hosts, hostaddrs
/// and ports.
fn settings_of(parsed: &Config) -> Config {
    let mut config = Config::new();
    if let Some(user) = parsed.get_user() {
        config.user(user);
    }
    if let Some(password) = parsed.get_password() {
        config.password(password);
    }
    if let Some(dbname) = parsed.get_dbname() {
        config.dbname(dbname);
    }
    if let Some(options) = parsed.get_options() {
        config.options(options);
    }
    if let Some(name) = parsed.get_application_name() {
        config.application_name(name);
    }
    if let Some(timeout) = parsed.get_connect_timeout() {
        config.connect_timeout(*timeout);
    }
    if let Some(timeout) = parsed.get_tcp_user_timeout() {
        config.tcp_user_timeout(*timeout);
    }
    if let Some(interval) = parsed.get_keepalives_interval() {
        config.keepalives_interval(interval);
    }
    if let Some(retries) = parsed.get_keepalives_retries() {
        config.keepalives_retries(retries);
    }
    config
        .ssl_mode(parsed.get_ssl_mode())
        .ssl_negotiation(parsed.get_ssl_negotiation())
        .keepalives(parsed.get_keepalives())
        .keepalives_idle(parsed.get_keepalives_idle())
        .target_session_attrs(parsed.get_target_session_attrs())
        .channel_binding(parsed.get_channel_binding())
        .load_balance_hosts(parsed.get_load_balance_hosts());
    config
}

/// The server and database, as `host:port/db`, to name the target in logs
/// and messages: the first host (or hostaddr) and port tried.
pub(super) fn describe(config: &Config) -> String {
    let host = match (config.get_hosts().first(), config.get_hostaddrs().first()) {
        (Some(Host::Tcp(h)), _) => h.clone(),
        #[cfg(unix)]
        (Some(Host::Unix(p)), _) => p.display().to_string(),
        (None, Some(addr)) => addr.to_string(),
        (None, None) => DEFAULT_HOST.to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(DEFAULT_PORT);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn parse(dsn: &str) -> Config {
        Config::from_str(dsn).unwrap()
    }

    fn hosts(config: &Config) -> Vec<String> {
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    }

    #[test]
    fn without_overrides_every_setting_of_the_dsn_is_kept() {
        for dsn in [
            "host=a,b hostaddr=10.0.0.1,10.0.0.2 port=5433,5434 user=mon password=pw dbname=app \
             options='-c statement_timeout=5s' application_name=x sslmode=require \
             sslnegotiation=direct connect_timeout=3 tcp_user_timeout=4 keepalives=0 \
             keepalives_idle=30 keepalives_interval=5 keepalives_retries=2 \
             target_session_attrs=read-write channel_binding=require load_balance_hosts=random",
            "postgres://mon:pw@db.example:6432/app?connect_timeout=2",
            "host=/var/run/postgresql user=mon",
            "user=mon",
        ] {
            let parsed = parse(dsn);
            let mut want = parsed.clone();
            if want.get_hosts().is_empty() {
                want.host(DEFAULT_HOST);
            }
            assert_eq!(with_target(&parsed, None, None).unwrap(), want, "{dsn}");
        }
    }

    #[test]
    fn host_replaces_the_dsns_hosts_and_hostaddrs_and_keeps_its_port() {
        let parsed = parse("postgres://mon:pw@wrong.example:6432/app?hostaddr=10.9.9.9");
        let config = with_target(&parsed, Some("right.example"), None).unwrap();
        assert_eq!(hosts(&config), ["right.example"]);
        assert!(config.get_hostaddrs().is_empty());
        assert_eq!(config.get_ports(), [6432]);
        assert_eq!(config.get_user(), Some("mon"));
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(describe(&config), "right.example:6432/app");
    }

    #[test]
    fn port_replaces_the_dsns_ports_for_every_host() {
        let parsed = parse("host=a,b port=1,2 user=mon");
        let config = with_target(&parsed, None, Some(5555)).unwrap();
        assert_eq!(hosts(&config), ["a", "b"]);
        assert_eq!(config.get_ports(), [5555]);
        let config = with_target(&parsed, Some("c"), Some(6666)).unwrap();
        assert_eq!(
            (hosts(&config), config.get_ports()),
            (vec!["c".to_string()], &[6666][..])
        );
    }

    #[test]
    fn host_with_several_dsn_ports_needs_port() {
        let parsed = parse("host=a,b port=1,2 user=mon");
        let err = with_target(&parsed, Some("c"), None).unwrap_err();
        assert_eq!(err.field, "port");
        assert!(err.message.contains("set `port` too"), "{}", err.message);
    }

    #[test]
    fn describe_falls_back_to_the_hostaddr_and_the_default_port() {
        let config = with_target(&parse("hostaddr=10.1.2.3 user=mon"), None, None).unwrap();
        assert_eq!(describe(&config), "10.1.2.3:5432/mon");
    }
}
