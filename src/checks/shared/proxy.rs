//! Reaching a server through an HTTP forward proxy (`proxy_url`,
//! `no_proxy`), for checks that run behind an egress proxy: which hosts go
//! direct, the `Proxy-Authorization` header from the URL's user info, and
//! the `CONNECT` tunnel (RFC 9110 section 9.3.6) that https and tcp checks
//! run their TLS and bytes through. Plain-http requests go to the proxy in
//! absolute form; the http kind builds those itself with
//! [`Proxy::authorization`].
//!
//! The user name and password in the URL are secrets: [`Proxy::display`]
//! leaves them out, and [`Proxy::secrets`] lists them for scrubbing.

use std::net::IpAddr;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

use super::secret::Secret;
use crate::checks::{BuildError, Failure, Reason};

/// The most bytes of a `CONNECT` response head read before giving up.
const MAX_HEAD: usize = 16 * 1024;

/// A configured forward proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    host: String,
    port: u16,
    /// `Basic ...`, from the URL's user info.
    authorization: Option<String>,
    /// The password and the encoded header value, for scrubbing.
    secrets: Vec<String>,
    no_proxy: Vec<NoProxy>,
}

/// One `no_proxy` entry.
#[derive(Debug, Clone, PartialEq)]
enum NoProxy {
    /// `*`: every host goes direct.
    All,
    /// A name: the host itself and every name under it.
    Domain(String),
    /// An address or a network in CIDR notation.
    Net(IpNet),
}

impl Proxy {
    /// The proxy of a spec's `proxy_url` and `no_proxy` fields, if any; its
    /// first problem as a build error (validation reports all of them).
    pub fn from_spec(
        url: Option<&Secret>,
        no_proxy: &[String],
    ) -> Result<Option<Self>, BuildError> {
        url.map(|url| Proxy::parse(url.expose(), no_proxy))
            .transpose()
            .map_err(|problems| {
                let (field, message) = problems.into_iter().next().unwrap_or_default();
                BuildError::new(field, message)
            })
    }

    /// Parse `proxy_url` and `no_proxy`; problems as `(field, message)`,
    /// with fields relative to the check. Messages never echo the URL,
    /// which may hold a password.
    pub fn parse(url: &str, no_proxy: &[String]) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let entries: Vec<NoProxy> = no_proxy
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match parse_no_proxy(e) {
                Ok(entry) => Some(entry),
                Err(m) => {
                    problems.push((format!("no_proxy[{i}]"), m));
                    None
                }
            })
            .collect();
        let parsed = match Url::parse(url) {
            Ok(u) if u.scheme() == "http" && u.host_str().is_some_and(|h| !h.is_empty()) => Some(u),
            Ok(u) if u.scheme() != "http" => {
                problems.push((
                    "proxy_url".into(),
                    format!(
                        "scheme must be http (a plain-HTTP forward proxy), got {}",
                        u.scheme()
                    ),
                ));
                None
            }
            _ => {
                problems.push((
                    "proxy_url".into(),
                    "must be a URL like http://proxy.internal:3128".into(),
                ));
                None
            }
        };
        let Some(url) = parsed else {
            return Err(problems);
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            problems.push((
                "proxy_url".into(),
                "must have no path or query: only scheme, user info, host and port".into(),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        };
        let (authorization, secrets) = basic_credentials(&url);
        Ok(Proxy {
            host,
            port: url.port_or_known_default().unwrap_or(80),
            authorization,
            secrets,
            no_proxy: entries,
        })
    }

    /// Whether a request to `host` goes through the proxy (no `no_proxy`
    /// entry matches it).
    pub fn applies_to(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = host.parse::<IpAddr>().ok();
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        !self.no_proxy.iter().any(|entry| match entry {
            NoProxy::All => true,
            NoProxy::Net(net) => ip.is_some_and(|ip| net.contains(&ip)),
            NoProxy::Domain(d) => {
                ip.is_none()
                    && (name == *d
                        || name
                            .strip_suffix(d.as_str())
                            .is_some_and(|rest| rest.ends_with('.')))
            }
        })
    }

    /// The proxy's host (without brackets) and port, to dial.
    pub fn host_port(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// The proxy for messages: `proxy host:port`, without user info.
    pub fn display(&self) -> String {
        if self.host.contains(':') {
            format!("proxy [{}]:{}", self.host, self.port)
        } else {
            format!("proxy {}:{}", self.host, self.port)
        }
    }

    /// The `Proxy-Authorization` value, when the URL carries user info.
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// The password and the header value built from it.
    pub fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }

    /// Ask the proxy, over `stream`, for a tunnel to `host:port`. On
    /// success the stream carries the target's bytes; nothing past the
    /// proxy's response head has been read.
    pub async fn tunnel(
        &self,
        mut stream: TcpStream,
        host: &str,
        port: u16,
    ) -> Result<TcpStream, Failure> {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(auth) = &self.authorization {
            request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        request.push_str("\r\n");
        let io = |e: std::io::Error| {
            Failure::new(
                Reason::from_io(&e),
                format!("{} failed during CONNECT {authority}: {e}", self.display()),
            )
        };
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let head = read_head(&mut stream).await.map_err(|e| match e {
            HeadError::Io(e) => io(e),
            HeadError::Closed => Failure::new(
                Reason::Network,
                format!(
                    "{} closed the connection before answering CONNECT {authority}",
                    self.display()
                ),
            ),
            HeadError::TooLong => Failure::new(
                Reason::Protocol,
                format!(
                    "{} answered CONNECT {authority} with a head over {MAX_HEAD} bytes",
                    self.display()
                ),
            ),
        })?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let code = match response.parse(&head) {
            Ok(httparse::Status::Complete(_)) => response.code.unwrap_or(0),
            _ => {
                return Err(Failure::new(
                    Reason::Protocol,
                    format!(
                        "{} answered CONNECT {authority} with something that is not HTTP",
                        self.display()
                    ),
                ))
            }
        };
        if (200..300).contains(&code) {
            return Ok(stream);
        }
        let reason = response.reason.unwrap_or("").to_string();
        let (why, hint) = match code {
            // 407 is the standard answer; some proxies (tinyproxy) send 401.
            401 | 407 if self.authorization.is_none() => (
                Reason::Auth,
                "; put the user name and password in proxy_url (http://user:password@host:port)",
            ),
            401 | 407 => (
                Reason::Auth,
                "; the proxy refused the credentials in proxy_url",
            ),
            403 => (Reason::Auth, "; the proxy does not allow this target"),
            502..=504 => (Reason::Network, "; the proxy could not reach the target"),
            _ => (Reason::UnexpectedResponse, ""),
        };
        Err(Failure::new(
            why,
            format!(
                "{} refused CONNECT {authority}: HTTP {code} {reason}{hint}",
                self.display()
            ),
        ))
    }
}

/// Whether a `proxy_url` carries user info: a credential (see
/// `ProbeSafety`).
pub fn has_credentials(url: Option<&crate::checks::shared::secret::Secret>) -> bool {
    url.and_then(|u| Url::parse(u.expose()).ok())
        .is_some_and(|u| !u.username().is_empty() || u.password().is_some())
}

enum HeadError {
    Io(std::io::Error),
    Closed,
    TooLong,
}

/// Read a response head up to its blank line, one byte at a time so that
/// nothing after it (a server that speaks first, like SMTP) is consumed.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(HeadError::TooLong);
        }
        match stream.read(&mut byte).await {
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
    Ok(head)
}

/// The `Basic` header value from the URL's user info (percent-decoded),
/// and the secrets it holds.
fn basic_credentials(url: &Url) -> (Option<String>, Vec<String>) {
    if url.username().is_empty() && url.password().is_none() {
        return (None, Vec::new());
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(url.username());
    let password = decode(url.password().unwrap_or(""));
    let token = BASE64_STANDARD.encode(format!("{user}:{password}"));
    let mut secrets = vec![token.clone()];
    if !password.is_empty() {
        secrets.push(password);
        // As written in the URL, in case it was percent-encoded.
        secrets.push(url.password().unwrap_or("").to_string());
    }
    secrets.dedup();
    (Some(format!("Basic {token}")), secrets)
}

fn parse_no_proxy(entry: &str) -> Result<NoProxy, String> {
    let e = entry.trim();
    if e == "*" {
        return Ok(NoProxy::All);
    }
    if let Ok(net) = e.parse::<IpNet>() {
        return Ok(NoProxy::Net(net));
    }
    if let Ok(ip) = e
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(NoProxy::Net(IpNet::from(ip)));
    }
    let domain = e
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let valid = !domain.is_empty()
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if valid {
        Ok(NoProxy::Domain(domain))
    } else {
        Err(format!(
            "{entry:?} is not a host name, domain (.example.com), IP address, CIDR network or *"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(no_proxy: &[&str]) -> Proxy {
        let list: Vec<String> = no_proxy.iter().map(|s| s.to_string()).collect();
        Proxy::parse("http://proxy.internal:3128", &list).unwrap()
    }

    #[test]
    fn no_proxy_matches_names_domains_addresses_and_networks() {
        let p = proxy(&[
            "internal.example",
            ".corp",
            "10.0.0.0/8",
            "::1",
            "127.0.0.1",
        ]);
        assert!(!p.applies_to("internal.example"));
        assert!(!p.applies_to("api.internal.example"));
        assert!(!p.applies_to("API.Internal.Example."));
        assert!(p.applies_to("notinternal.example"));
        assert!(!p.applies_to("db.corp"));
        assert!(!p.applies_to("10.1.2.3"));
        assert!(p.applies_to("11.1.2.3"));
        assert!(!p.applies_to("[::1]"));
        assert!(!p.applies_to("127.0.0.1"));
        assert!(p.applies_to("example.com"));
        assert!(!proxy(&["*"]).applies_to("example.com"));
        assert!(proxy(&[]).applies_to("localhost"));
    }

    #[test]
    fn credentials_become_a_basic_header_and_secrets() {
        let p = Proxy::parse("http://probe:p%40ss@proxy:3128", &[]).unwrap();
        let token = BASE64_STANDARD.encode("probe:p@ss");
        assert_eq!(p.authorization(), Some(format!("Basic {token}").as_str()));
        assert!(p.secrets().contains(&"p@ss".to_string()));
        assert!(p.secrets().contains(&"p%40ss".to_string()));
        assert_eq!(p.display(), "proxy proxy:3128");
        assert_eq!(p.host_port(), ("proxy", 3128));
    }

    #[test]
    fn problems_name_the_field_and_never_the_password() {
        let bad = |url: &str, no_proxy: &[&str]| {
            let list: Vec<String> = no_proxy.iter().map(|s| s.to_string()).collect();
            Proxy::parse(url, &list).unwrap_err()
        };
        let p = bad("https://u:hunter2@proxy:3128", &[]);
        assert_eq!(p[0].0, "proxy_url");
        assert!(!p[0].1.contains("hunter2"), "{}", p[0].1);
        assert_eq!(bad("http://u:hunter2@proxy:3128/x", &[])[0].0, "proxy_url");
        assert_eq!(bad("proxy:3128", &[])[0].0, "proxy_url");
        assert_eq!(
            bad("http://proxy:3128", &["ok.example", "bad host"])[0].0,
            "no_proxy[1]"
        );
    }
}
