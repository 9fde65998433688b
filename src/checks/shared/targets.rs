//! Where a check connects, and where it may: the network endpoints a spec
//! names, the `allowed_targets` host patterns of a `/probe` module, and which
//! request headers carry credentials.
//!
//! `/probe` swaps a module's target for the caller's. A module that carries
//! credentials would hand them to whatever host the caller names, so such a
//! module lists the hosts it may reach, and every endpoint of the derived
//! check is matched against that list on its parsed host and port, never on
//! the raw target text (`http://allowed@attacker/` has host `attacker`).

use std::fmt;
use std::net::IpAddr;

use axum::http::{header, HeaderName};

/// What `/probe` must know of a spec to keep its credentials where the
/// operator allowed: every kind implements it next to its spec.
pub trait ProbeSafety {
    /// The credential fields this spec sets, as written (`password_file`,
    /// `basic_auth`, `sasl`, ...); empty for a credential-free spec.
    fn credentials(&self) -> Vec<&'static str>;

    /// Every address a run connects to first (redirects and servers that a
    /// cluster's metadata names come later). Empty when the kind connects
    /// where its environment says (the in-cluster Kubernetes API).
    fn endpoints(&self) -> Vec<Endpoint>;

    /// Confine the connections a run makes after the first (HTTP redirects)
    /// to `allowed`. Kinds that make none need not override this.
    fn confine(&mut self, _allowed: &AllowedTargets) {}

    /// Why this kind must never talk to a server a `/probe` caller picks,
    /// even without credentials (its client trusts the server's answers),
    /// or `None`. A module of such a kind needs its own `allowed_targets`.
    fn trusts_its_server(&self) -> Option<&'static str> {
        None
    }
}

/// One address a check connects to: a host name or IP literal (IPv6 without
/// brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// The endpoint of a URL (`http`, `https`, `redis`, ...), with
    /// `default_port` where the URL names none and its scheme has no
    /// well-known port.
    pub fn from_url(url: &url::Url, default_port: u16) -> Option<Self> {
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_string(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        let port = url.port_or_known_default().unwrap_or(default_port);
        Some(Self::new(host, port))
    }

    /// Whether the host is an IP address or a plain DNS name (letters,
    /// digits, `-`, `_`, `.`). Anything else (`a.example,evil.example`,
    /// spaces, `%`) could mean another host to the client that dials it, so
    /// no pattern allows it.
    pub fn is_plain_host(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
            || (!self.host.is_empty()
                && self
                    .host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    }

    /// The endpoint of URL text, as a list of zero (unparsable) or one.
    pub fn of_url(text: &str, default_port: u16) -> Vec<Self> {
        url::Url::parse(text)
            .ok()
            .and_then(|u| Self::from_url(&u, default_port))
            .into_iter()
            .collect()
    }

    /// Parse `host:port` (IPv6 literals in brackets, `[::1]:5432`).
    pub fn parse(address: &str) -> Result<Self, String> {
        let (host, port) = split_host_port(address)?;
        let port = port.ok_or_else(|| {
            format!("{address:?}: missing port: write host:port, like db.internal:5432")
        })?;
        Ok(Self::new(host, port))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Split `host[:port]`; IPv6 literals must be in brackets, which the
/// returned host drops. A port, when present, is 1 to 65535.
pub fn split_host_port(address: &str) -> Result<(String, Option<u16>), String> {
    let address = address.trim();
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{address:?}: missing `]` after the IPv6 address"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{address:?}: expected `:port` after `]`")),
            },
        }
    } else {
        match address.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "{address:?}: write IPv6 addresses in brackets, like [::1]:5432"
                ))
            }
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{address:?}: missing host"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{address:?}: port must be a number from 1 to 65535"))?,
        ),
    };
    Ok((host.to_string(), port))
}

/// One entry of a module's `allowed_targets`: `host`, `host:port`,
/// `*.example.com` or `*.example.com:443`, `[::1]:5432`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// A name, compared without regard to case.
    Name(String),
    /// An IP literal, compared as an address (`::1` equals `0::1`).
    Ip(IpAddr),
    /// `*.suffix`: any name ending in `.suffix` (not `suffix` itself).
    Suffix(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = split_host_port(text)?;
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(format!(
                    "{text:?}: a wildcard is `*.domain`, like *.db.internal"
                ));
            }
            HostMatch::Suffix(format!(".{}", suffix.to_ascii_lowercase()))
        } else if host.contains('*') {
            return Err(format!(
                "{text:?}: `*` is allowed only as the first label, like *.db.internal"
            ));
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostMatch::Ip(ip)
        } else if host.contains('/') {
            return Err(format!(
                "{text:?}: write a host name, an IP address or *.domain, with an optional :port"
            ));
        } else {
            HostMatch::Name(host.to_ascii_lowercase())
        };
        Ok(Self {
            host,
            port,
            text: text.to_string(),
        })
    }

    pub fn matches(&self, endpoint: &Endpoint) -> bool {
        if self.port.is_some_and(|p| p != endpoint.port) || !endpoint.is_plain_host() {
            return false;
        }
        let host = endpoint.host.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        match &self.host {
            HostMatch::Name(name) => host == name.trim_end_matches('.'),
            HostMatch::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            HostMatch::Suffix(suffix) => host.ends_with(suffix.trim_end_matches('.')),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The names of the credential fields that are set, for
/// [`ProbeSafety::credentials`].
pub fn set_fields(fields: &[(&'static str, bool)]) -> Vec<&'static str> {
    fields
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect()
}

/// A module's `allowed_targets`: the hosts its credentials may be sent to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedTargets(pub Vec<HostPattern>);

impl AllowedTargets {
    pub fn allows(&self, endpoint: &Endpoint) -> bool {
        self.0.iter().any(|p| p.matches(endpoint))
    }

    /// The first of `endpoints` that no pattern allows.
    pub fn first_refused<'a>(&self, endpoints: &'a [Endpoint]) -> Option<&'a Endpoint> {
        endpoints.iter().find(|e| !self.allows(e))
    }
}

/// Whether a request header carries a credential: `Authorization`,
/// `Proxy-Authorization`, `Cookie`, and custom headers whose name says so
/// (`X-Api-Key`, `X-Auth-Token`, `X-Vault-Token`, ...). Such headers make a
/// module credentialed, are dropped on a redirect to another origin, and
/// their values are scrubbed from messages.
pub fn is_credential_header(name: &HeaderName) -> bool {
    const WORDS: &[&str] = &[
        "auth",
        "token",
        "key",
        "secret",
        "password",
        "passwd",
        "session",
        "credential",
        "signature",
        "cookie",
    ];
    let name = name.as_str();
    name == header::AUTHORIZATION
        || name == header::PROXY_AUTHORIZATION
        || WORDS.iter().any(|w| name.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_on_host_and_port() {
        let db = Endpoint::new("db.internal", 5432);
        assert!(pattern("db.internal").matches(&db));
        assert!(pattern("DB.Internal:5432").matches(&db));
        assert!(!pattern("db.internal:5433").matches(&db));
        assert!(!pattern("other.internal").matches(&db));
        assert!(pattern("*.internal").matches(&db));
        assert!(!pattern("*.internal").matches(&Endpoint::new("internal", 5432)));
        assert!(!pattern("*.internal").matches(&Endpoint::new("db.internal.evil.com", 5432)));
        assert!(pattern("[::1]:5432").matches(&Endpoint::new("0:0::1", 5432)));
        assert!(pattern("127.0.0.1").matches(&Endpoint::new("127.0.0.1", 1)));
        assert!(!pattern("127.0.0.1").matches(&Endpoint::new("127.0.0.2", 1)));
    }

    #[test]
    fn hosts_a_client_could_read_as_several_never_match() {
        let any = pattern("*.example.com");
        for host in [
            "evil.net,kafka.example.com",
            "evil.net kafka.example.com",
            "evil.net%2c.example.com",
        ] {
            assert!(!any.matches(&Endpoint::new(host, 9092)), "{host}");
        }
    }

    #[test]
    fn bad_patterns_say_what_to_write() {
        for bad in [
            "",
            "db:0",
            "db:x",
            "a*.b",
            "*.",
            "::1",
            "10.0.0.0/8",
            "[::1]x",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn url_endpoints_use_the_parsed_host() {
        let url = url::Url::parse("http://allowed.example@attacker.example:8080/x").unwrap();
        assert_eq!(
            Endpoint::from_url(&url, 80),
            Some(Endpoint::new("attacker.example", 8080))
        );
        let url = url::Url::parse("https://[::1]/").unwrap();
        assert_eq!(Endpoint::from_url(&url, 0), Some(Endpoint::new("::1", 443)));
        let url = url::Url::parse("redis://cache").unwrap();
        assert_eq!(
            Endpoint::from_url(&url, 6379),
            Some(Endpoint::new("cache", 6379))
        );
    }

    #[test]
    fn credential_headers_are_recognised_by_name() {
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "x-api-key",
            "x-auth-token",
            "private-token",
        ] {
            assert!(
                is_credential_header(&HeaderName::from_static(name)),
                "{name}"
            );
        }
        for name in ["accept", "user-agent", "x-request-id", "content-type"] {
            assert!(
                !is_credential_header(&HeaderName::from_static(name)),
                "{name}"
            );
        }
    }
}
