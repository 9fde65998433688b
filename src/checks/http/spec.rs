//! The `http` kind's configuration: [`HttpSpec`] as written in YAML, its
//! validation (every problem with its field) and its [`ProbeSafety`] facts,
//! plus the per-field parsers that validation and [`HttpCheck::new`] share.
//!
//! [`HttpCheck::new`]: super::HttpCheck::new

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use regex::bytes::Regex;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use url::Url;

use std::time::Duration;

use crate::checks::shared::dial::IpProtocol;
use crate::checks::shared::proxy::{self, Proxy};
use crate::checks::shared::secret::Secret;
use crate::checks::shared::targets::ProbeSafety;
use crate::checks::shared::targets::{self, AllowedTargets, Endpoint};
use crate::checks::shared::tls::TlsSpec;

const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// An HTTP(S) request and what its response must look like (`kind: http`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// The URL to request: `http://` or `https://`. Credentials do not belong
    /// in the URL: use `basic_auth` or `bearer_token`.
    pub url: String,
    /// The request method, like `GET`, `HEAD` or `POST` (sent in upper case).
    /// Default: `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers. A `Host`, `User-Agent` or `Accept` given here
    /// replaces the default one. `Host` and credential headers
    /// (`Authorization`, `Proxy-Authorization`, `Cookie`, and names with
    /// `auth`, `token`, `key`, `secret`, `session`, ... like `X-Api-Key`)
    /// are not sent after a redirect to another scheme, host or port.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body, sent with its `Content-Length`.
    #[serde(default)]
    pub body: Option<String>,
    /// The status codes that pass: each an exact code like `204` or a class
    /// like `2xx`. Default: `[2xx]`. An unexpected 401 or 403 fails with
    /// reason `auth`, any other with `unexpected_response`.
    #[serde(default = "default_status_codes")]
    pub valid_status_codes: Vec<StatusPattern>,
    /// Regular expressions that must each match somewhere in the body.
    #[serde(default)]
    pub body_must_match: Vec<String>,
    /// Regular expressions that must not match anywhere in the body.
    #[serde(default)]
    pub body_must_not_match: Vec<String>,
    /// Expectations on a JSON body: the body must parse as JSON and each
    /// `pointer` must exist (and equal `equals`, if given).
    #[serde(default)]
    pub json: Vec<JsonExpectation>,
    /// Follow redirects (301, 302, 303, 307, 308), like `curl -L`. A 303, and
    /// a 301 or 302 answering a POST, is followed with a GET without body.
    /// Default: true.
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// The most redirects to follow; one more fails the run. Default: 10.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u32,
    /// The largest response body accepted, in bytes; a larger one fails the
    /// run. Default: 1048576 (1 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    // `basic_auth` and `tls` are boxed to keep `CheckSpec`'s variants of
    // similar size (clippy::large_enum_variant).
    /// HTTP Basic authentication.
    pub basic_auth: Option<Box<BasicAuth>>,
    /// A token sent as `Authorization: Bearer <token>`; usually `${ENV}`.
    pub bearer_token: Option<Secret>,
    /// A file holding the bearer token, instead of `bearer_token`.
    pub bearer_token_file: Option<PathBuf>,
    /// TLS options for https URLs (including redirects to https).
    pub tls: Option<Box<TlsSpec>>,
    /// Which addresses of the host to connect to: `ip4`, `ip6`, or `auto`
    /// (both, Happy Eyeballs: the next address is tried 250 ms after the
    /// previous one if it has not connected, and the first to connect
    /// wins). Default: `auto`.
    #[serde(default)]
    pub ip_protocol: IpProtocol,
    /// The most time one address may take to accept the connection, like
    /// `2s`. Default: none, so only the check's `timeout` ends an attempt.
    #[serde(default, with = "crate::checks::shared::duration::option")]
    pub connect_timeout: Option<Duration>,
    /// An HTTP forward proxy, like `http://proxy.internal:3128`: http URLs
    /// are requested through it, https URLs tunnelled with `CONNECT`. User
    /// info (`http://user:password@...`) is sent as `Proxy-Authorization`
    /// and is a secret. Default: none (proxy environment variables are not
    /// read).
    pub proxy_url: Option<Secret>,
    /// Hosts requested directly despite `proxy_url`: names (matching the
    /// name and every name under it), IP addresses, CIDR networks, or `*`.
    #[serde(default)]
    pub no_proxy: Vec<String>,
    /// Set by the loader for a `/probe` module with `allowed_targets`: a
    /// redirect to any other host is not followed. Not a config field.
    #[serde(skip)]
    pub allowed_redirects: Option<AllowedTargets>,
}

/// HTTP Basic authentication credentials (`basic_auth:`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name; it must not contain `:`.
    pub username: String,
    /// The password; usually `${ENV}`. Default: empty.
    pub password: Option<Secret>,
    /// A file holding the password, instead of `password`.
    pub password_file: Option<PathBuf>,
}

/// One expectation on a JSON body (an entry of `json:`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonExpectation {
    /// An RFC 6901 JSON pointer, like `/status` or `/checks/0/healthy`; the
    /// value it points to must exist. The empty pointer is the whole body.
    pub pointer: String,
    /// The value the pointer must point to: a string, number, boolean or
    /// null (or a list or map, compared whole). Numbers compare by value, so
    /// `1` equals `1.0`.
    #[serde(default, deserialize_with = "present_value")]
    pub equals: Option<Value>,
}

/// An entry of `valid_status_codes` as written: a code like `200` or a class
/// like `2xx`. Checked by [`HttpSpec::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPattern(pub String);

impl<'de> Deserialize<'de> for StatusPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StatusPattern;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code like 200 or a class like 2xx")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusPattern, E> {
                Ok(StatusPattern(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusPattern, E> {
                Ok(StatusPattern(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusPattern, E> {
                Ok(StatusPattern(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl StatusPattern {
    fn parse(&self) -> Result<StatusMatch, String> {
        let text = self.0.trim();
        if let Ok(code) = text.parse::<u16>() {
            if (100..=599).contains(&code) {
                return Ok(StatusMatch::Code(code));
            }
        }
        if let [digit @ b'1'..=b'5', x1, x2] = text.as_bytes() {
            if x1.eq_ignore_ascii_case(&b'x') && x2.eq_ignore_ascii_case(&b'x') {
                return Ok(StatusMatch::Class(u16::from(digit - b'0')));
            }
        }
        Err(format!(
            "must be a status code from 100 to 599 or a class like 2xx, got {text:?}"
        ))
    }
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_status_codes() -> Vec<StatusPattern> {
    vec![StatusPattern("2xx".to_string())]
}

fn default_true() -> bool {
    true
}

fn default_max_redirects() -> u32 {
    10
}

fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}

/// `equals: null` means "must be null", not "absent".
fn present_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Request headers that never carry a credential.
fn is_harmless_header(name: &str) -> bool {
    const HARMLESS: &[&str] = &[
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-type",
        "host",
        "pragma",
        "user-agent",
    ];
    HARMLESS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

impl ProbeSafety for HttpSpec {
    fn credentials(&self) -> Vec<&'static str> {
        let url_userinfo =
            Url::parse(&self.url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some());
        targets::set_fields(&[
            ("basic_auth", self.basic_auth.is_some()),
            ("bearer_token", self.bearer_token.is_some()),
            ("bearer_token_file", self.bearer_token_file.is_some()),
            ("tls.key_file", TlsSpec::has_client_key(self.tls.as_deref())),
            // Any header but the plainly harmless ones may carry a key under
            // a name nobody can guess (`X-Honeycomb-Team`), and so may a body.
            (
                "headers",
                self.headers.keys().any(|k| !is_harmless_header(k)),
            ),
            ("body", self.body.is_some()),
            ("url", url_userinfo),
            ("proxy_url", proxy::has_credentials(self.proxy_url.as_ref())),
        ])
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        Endpoint::of_url(&self.url, 80)
    }

    fn confine(&mut self, allowed: &AllowedTargets) {
        self.allowed_redirects = Some(allowed.clone());
    }
}

/// A configuration problem: the field (relative to the check) and what is
/// wrong with it.
pub(super) type Problem = (String, String);

impl HttpSpec {
    /// Semantic checks beyond deserialization: `(field, message)` pairs.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = self.url_problems();
        if let Err(e) = parse_method(&self.method) {
            problems.push(("method".into(), e));
        }
        problems.extend(self.parsed_headers().filter_map(Result::err));
        problems.extend(self.status_matches().into_iter().filter_map(Result::err));
        if self.valid_status_codes.is_empty() {
            problems.push((
                "valid_status_codes".into(),
                "must list at least one status code or class".into(),
            ));
        }
        for (list, patterns) in [
            ("body_must_match", &self.body_must_match),
            ("body_must_not_match", &self.body_must_not_match),
        ] {
            problems.extend(regexes(list, patterns).into_iter().filter_map(Result::err));
        }
        problems.extend(self.json_problems());
        problems.extend(self.auth_problems());
        problems.extend(self.tls_problems());
        problems.extend(self.proxy_problems());
        problems
    }

    /// `proxy_url` and `no_proxy`.
    fn proxy_problems(&self) -> Vec<Problem> {
        match &self.proxy_url {
            Some(url) => Proxy::parse(url.expose(), &self.no_proxy)
                .err()
                .unwrap_or_default(),
            None if !self.no_proxy.is_empty() => {
                vec![("no_proxy".into(), "is set but proxy_url is not".into())]
            }
            None => Vec::new(),
        }
    }

    /// `url`: it must parse, be http(s) with a host, and carry no credentials.
    fn url_problems(&self) -> Vec<Problem> {
        let url = match parse_url(&self.url) {
            Ok(url) => url,
            Err(e) => return vec![("url".into(), e)],
        };
        let mut problems = Vec::new();
        if !matches!(url.scheme(), "http" | "https") {
            problems.push((
                "url".into(),
                format!("scheme must be http or https, got {}", url.scheme()),
            ));
        } else if url.host_str().is_none_or(str::is_empty) {
            problems.push(("url".into(), "must include a host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            problems.push((
                "url".into(),
                "must not contain credentials: use basic_auth or bearer_token".into(),
            ));
        }
        problems
    }

    /// Whether `basic_auth` or a bearer token sets the `Authorization` header.
    fn has_auth(&self) -> bool {
        self.basic_auth.is_some() || self.bearer_token.is_some() || self.bearer_token_file.is_some()
    }

    /// The configured extra headers, each parsed or its problem.
    pub(super) fn parsed_headers(
        &self,
    ) -> impl Iterator<Item = Result<(HeaderName, HeaderValue), Problem>> + '_ {
        let has_auth = self.has_auth();
        self.headers.iter().map(move |(name, value)| {
            parse_header(name, value, has_auth).map_err(|e| (format!("headers.{name}"), e))
        })
    }

    /// `valid_status_codes`, each parsed or its problem.
    pub(super) fn status_matches(&self) -> Vec<Result<StatusMatch, Problem>> {
        each(
            "valid_status_codes",
            &self.valid_status_codes,
            StatusPattern::parse,
        )
    }

    /// `json[].pointer`: each empty or starting with `/`.
    fn json_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, exp) in self.json.iter().enumerate() {
            if !exp.pointer.is_empty() && !exp.pointer.starts_with('/') {
                problems.push((
                    format!("json[{i}].pointer"),
                    format!(
                        "a JSON pointer must be empty or start with /, like /status; got {:?}",
                        exp.pointer
                    ),
                ));
            }
        }
        problems
    }

    /// `basic_auth` and the bearer token: one way to authenticate, each
    /// secret given once.
    fn auth_problems(&self) -> Vec<Problem> {
        let mut problems: Vec<Problem> = Vec::new();
        if let Some(auth) = &self.basic_auth {
            if auth.username.contains(':') {
                problems.push(("basic_auth.username".into(), "must not contain ':'".into()));
            }
            if auth.password.is_some() && auth.password_file.is_some() {
                problems.push((
                    "basic_auth.password".into(),
                    "set either password or password_file, not both".into(),
                ));
            }
            if self.bearer_token.is_some() || self.bearer_token_file.is_some() {
                problems.push((
                    "bearer_token".into(),
                    "set either basic_auth or bearer_token, not both".into(),
                ));
            }
        }
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            problems.push((
                "bearer_token".into(),
                "set either bearer_token or bearer_token_file, not both".into(),
            ));
        }
        problems
    }

    /// `tls.server_name`, when set, must be a valid TLS server name.
    fn tls_problems(&self) -> Option<Problem> {
        let name = self.tls.as_ref().and_then(|t| t.server_name.as_ref())?;
        ServerName::try_from(name.as_str()).is_err().then(|| {
            (
                "tls.server_name".into(),
                format!("invalid TLS server name {name:?}"),
            )
        })
    }
}

/// `url` as a [`Url`]; the scheme, host and user info are checked by
/// [`HttpSpec::validate`].
pub(super) fn parse_url(text: &str) -> Result<Url, String> {
    Url::parse(text).map_err(|e| format!("invalid URL: {e}"))
}

/// `method`, sent in upper case.
pub(super) fn parse_method(method: &str) -> Result<Method, String> {
    let invalid = || format!("invalid HTTP method {method:?}");
    if method.is_empty() {
        return Err(invalid());
    }
    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| invalid())
}

/// One entry of `headers`. `Content-Length` and `Transfer-Encoding` come
/// from the body, and `Authorization` from `basic_auth` or `bearer_token`
/// when one is set.
fn parse_header(
    name: &str,
    value: &str,
    has_auth: bool,
) -> Result<(HeaderName, HeaderValue), String> {
    let name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| "invalid header name".to_string())?;
    if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
        return Err("is set automatically from body; remove it".into());
    }
    if name == header::AUTHORIZATION && has_auth {
        return Err("conflicts with basic_auth or bearer_token; set only one".into());
    }
    // The value is not quoted: it may be a secret.
    let value = HeaderValue::from_str(value).map_err(|_| {
        "invalid header value: control characters and non-ASCII text are not allowed".to_string()
    })?;
    Ok((name, value))
}

/// The regular expressions of the list `list` (`body_must_match` or
/// `body_must_not_match`), each compiled or its problem.
pub(super) fn regexes(list: &str, patterns: &[String]) -> Vec<Result<Regex, Problem>> {
    each(list, patterns, |p| {
        Regex::new(p).map_err(|e| {
            format!(
                "invalid regular expression: {}",
                crate::checks::shared::regex_problem(&e)
            )
        })
    })
}

/// Parse each entry of the list `list`; a failing entry is named `list[i]`.
fn each<T, U>(
    list: &str,
    items: &[T],
    parse: impl Fn(&T) -> Result<U, String>,
) -> Vec<Result<U, Problem>> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse(item).map_err(|e| (format!("{list}[{i}]"), e)))
        .collect()
}

/// A parsed entry of `valid_status_codes`.
#[derive(Debug, Clone, Copy)]
pub(super) enum StatusMatch {
    Code(u16),
    /// The leading digit of a class like `2xx`.
    Class(u16),
}

impl StatusMatch {
    /// Whether `status` passes this entry.
    pub(super) fn matches(self, status: StatusCode) -> bool {
        match self {
            StatusMatch::Code(code) => status.as_u16() == code,
            StatusMatch::Class(digit) => status.as_u16() / 100 == digit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> HttpSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults() {
        let s = spec("url: http://127.0.0.1/health");
        assert_eq!(s.method, "GET");
        assert_eq!(s.valid_status_codes, vec![StatusPattern("2xx".into())]);
        assert!(s.follow_redirects);
        assert_eq!(s.max_redirects, 10);
        assert_eq!(s.max_body_bytes, 1024 * 1024);
        assert!(s.validate().is_empty());
    }

    #[test]
    fn status_patterns() {
        let s = spec("url: http://h/\nvalid_status_codes: [200, 3xx, \"204\", 600, 6xx, ok]");
        let problems = s.validate();
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "valid_status_codes[3]",
                "valid_status_codes[4]",
                "valid_status_codes[5]"
            ]
        );
        assert!(StatusPattern("2XX".into())
            .parse()
            .unwrap()
            .matches(StatusCode::OK));
        assert!(!StatusPattern("204".into())
            .parse()
            .unwrap()
            .matches(StatusCode::OK));
    }

    #[test]
    fn validate_reports_each_problem_with_its_field() {
        let s = spec(
            "url: ftp://h/\nmethod: \"GE T\"\nbody_must_match: [ok, \"(\"]\njson: [{pointer: status}]\nheaders: {Content-Length: \"3\"}",
        );
        let problems = s.validate();
        assert!(problems.contains(&(
            "url".to_string(),
            "scheme must be http or https, got ftp".to_string()
        )));
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "url",
                "method",
                "headers.Content-Length",
                "body_must_match[1]",
                "json[0].pointer"
            ]
        );
    }

    #[test]
    fn credentials_in_the_url_are_rejected_without_echoing_them() {
        let problems = spec("url: http://me:hunter2@h/").validate();
        assert_eq!(problems.len(), 1);
        assert!(!problems[0].1.contains("hunter2"));
    }

    #[test]
    fn equals_null_is_kept_apart_from_absent() {
        let s = spec("url: http://h/\njson: [{pointer: /a, equals: null}, {pointer: /b}]");
        assert_eq!(s.json[0].equals, Some(Value::Null));
        assert_eq!(s.json[1].equals, None);
    }
}
