//! The `http` check: one HTTP(S) request, the on-call engineer's
//! `curl -f https://service/health`, with expectations on the status code,
//! the body and fields of a JSON body.
//!
//! Each phase of the request is timed separately, like blackbox_exporter's
//! `probe_http_duration_seconds`: `resolve` (name lookup), `connect` (TCP),
//! `tls` (handshake, https only), `processing` (request sent until the
//! response headers arrived) and `transfer` (reading the body). Phases are
//! summed over redirects.

use base64::prelude::{Engine as _, BASE64_STANDARD};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Unit;
use regex::bytes::Regex;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

use super::targets::{is_credential_header, AllowedTargets, Endpoint};
use super::tls::{self, TlsSpec};
use super::{
    BuildError, Check, Failure, MetricDesc, MetricKind, ProbeSafety, Reason, RunContext, RunResult,
    Sample,
};
use crate::config::secret::{self, Secret};

/// HTTP status code of the final response.
pub static STATUS_CODE: MetricDesc = MetricDesc {
    name: "http_status_code",
    help: "HTTP status code of the final response in the last scheduled run.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// Duration of each phase of the request, summed over redirects.
pub static PHASE_DURATION: MetricDesc = MetricDesc {
    name: "http_phase_duration",
    help: "Time spent in each phase of the HTTP request (resolve, connect, tls, processing, transfer) in the last scheduled run, summed over redirects.",
    unit: Some(Unit::Seconds),
    kind: MetricKind::Gauge,
};

/// Number of redirects followed.
pub static REDIRECTS: MetricDesc = MetricDesc {
    name: "http_redirects",
    help: "Number of HTTP redirects followed in the last scheduled run.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// Size of the final response body.
pub static BODY_SIZE: MetricDesc = MetricDesc {
    name: "http_response_body_size",
    help: "Size of the final HTTP response body, as received, in the last scheduled run.",
    unit: Some(Unit::Bytes),
    kind: MetricKind::Gauge,
};

/// Whether the final response came over TLS.
pub static SSL: MetricDesc = MetricDesc {
    name: "http_ssl",
    help: "1 if the final HTTP response in the last scheduled run came over TLS, else 0.",
    unit: None,
    kind: MetricKind::Gauge,
};

/// Every metric this kind can report, besides the TLS certificate expiry.
pub static METRICS: [&MetricDesc; 5] =
    [&STATUS_CODE, &PHASE_DURATION, &REDIRECTS, &BODY_SIZE, &SSL];

const USER_AGENT: &str = concat!("runbook-exporter/", env!("CARGO_PKG_VERSION"));
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

/// Request headers that carry credentials or name the server: not sent to
/// another origin after a redirect.
fn is_origin_bound(name: &HeaderName) -> bool {
    name == header::HOST || is_credential_header(name)
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
        super::targets::set_fields(&[
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
        ])
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        Endpoint::of_url(&self.url, 80)
    }

    fn confine(&mut self, allowed: &AllowedTargets) {
        self.allowed_redirects = Some(allowed.clone());
    }
}

impl HttpSpec {
    /// Semantic checks beyond deserialization: `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut problem = |field: String, message: String| problems.push((field, message));

        match Url::parse(&self.url) {
            Err(e) => problem("url".into(), format!("invalid URL: {e}")),
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    problem(
                        "url".into(),
                        format!("scheme must be http or https, got {}", url.scheme()),
                    );
                } else if url.host_str().is_none_or(str::is_empty) {
                    problem("url".into(), "must include a host".into());
                }
                if !url.username().is_empty() || url.password().is_some() {
                    problem(
                        "url".into(),
                        "must not contain credentials: use basic_auth or bearer_token".into(),
                    );
                }
            }
        }

        if parse_method(&self.method).is_err() {
            problem(
                "method".into(),
                format!("invalid HTTP method {:?}", self.method),
            );
        }

        let has_auth = self.basic_auth.is_some()
            || self.bearer_token.is_some()
            || self.bearer_token_file.is_some();
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            match HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => problem(field, "invalid header name".into()),
                Ok(h) if h == header::CONTENT_LENGTH || h == header::TRANSFER_ENCODING => {
                    problem(field, "is set automatically from body; remove it".into())
                }
                Ok(h) if h == header::AUTHORIZATION && has_auth => problem(
                    field,
                    "conflicts with basic_auth or bearer_token; set only one".into(),
                ),
                Ok(_) => {
                    // The value is not quoted: it may be a secret.
                    if HeaderValue::from_str(value).is_err() {
                        problem(
                            field,
                            "invalid header value: control characters and non-ASCII text are not allowed"
                                .into(),
                        );
                    }
                }
            }
        }

        for (i, pattern) in self.valid_status_codes.iter().enumerate() {
            if let Err(e) = pattern.parse() {
                problem(format!("valid_status_codes[{i}]"), e);
            }
        }
        if self.valid_status_codes.is_empty() {
            problem(
                "valid_status_codes".into(),
                "must list at least one status code or class".into(),
            );
        }

        for (list, patterns) in [
            ("body_must_match", &self.body_must_match),
            ("body_must_not_match", &self.body_must_not_match),
        ] {
            for (i, pattern) in patterns.iter().enumerate() {
                if let Err(e) = Regex::new(pattern) {
                    problem(
                        format!("{list}[{i}]"),
                        format!(
                            "invalid regular expression: {}",
                            crate::config::regex_problem(&e)
                        ),
                    );
                }
            }
        }

        for (i, exp) in self.json.iter().enumerate() {
            if !exp.pointer.is_empty() && !exp.pointer.starts_with('/') {
                problem(
                    format!("json[{i}].pointer"),
                    format!(
                        "a JSON pointer must be empty or start with /, like /status; got {:?}",
                        exp.pointer
                    ),
                );
            }
        }

        if let Some(auth) = &self.basic_auth {
            if auth.username.contains(':') {
                problem("basic_auth.username".into(), "must not contain ':'".into());
            }
            if auth.password.is_some() && auth.password_file.is_some() {
                problem(
                    "basic_auth.password".into(),
                    "set either password or password_file, not both".into(),
                );
            }
            if self.bearer_token.is_some() || self.bearer_token_file.is_some() {
                problem(
                    "bearer_token".into(),
                    "set either basic_auth or bearer_token, not both".into(),
                );
            }
        }
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            problem(
                "bearer_token".into(),
                "set either bearer_token or bearer_token_file, not both".into(),
            );
        }

        if let Some(name) = self.tls.as_ref().and_then(|t| t.server_name.as_ref()) {
            if ServerName::try_from(name.as_str()).is_err() {
                problem(
                    "tls.server_name".into(),
                    format!("invalid TLS server name {name:?}"),
                );
            }
        }

        problems
    }
}

fn parse_method(method: &str) -> Result<Method, ()> {
    if method.is_empty() {
        return Err(());
    }
    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| ())
}

#[derive(Debug, Clone, Copy)]
enum StatusMatch {
    Code(u16),
    /// The leading digit of a class like `2xx`.
    Class(u16),
}

impl StatusMatch {
    fn matches(self, status: StatusCode) -> bool {
        match self {
            StatusMatch::Code(code) => status.as_u16() == code,
            StatusMatch::Class(digit) => status.as_u16() / 100 == digit,
        }
    }
}

/// A built `http` check.
pub struct HttpCheck {
    url: Url,
    method: Method,
    /// The configured extra headers.
    headers: HeaderMap,
    body: Option<Bytes>,
    valid_status: Vec<StatusMatch>,
    /// `valid_status_codes` as written, for messages: `2xx, 304`.
    valid_status_text: String,
    must_match: Vec<Regex>,
    must_not_match: Vec<Regex>,
    json: Vec<JsonExpectation>,
    follow_redirects: bool,
    max_redirects: u32,
    max_body_bytes: usize,
    /// Hosts a redirect may lead to (a `/probe` module's `allowed_targets`).
    allowed_redirects: Option<AllowedTargets>,
    /// The `Authorization` header from `basic_auth` or `bearer_token`.
    authorization: Option<HeaderValue>,
    secrets: Vec<String>,
    tls: TlsSpec,
    tls_config: Arc<ClientConfig>,
}

impl HttpCheck {
    /// Build the check: compile regexes, read secret files, load TLS files.
    pub fn new(spec: &HttpSpec) -> Result<Self, BuildError> {
        if let Some((field, message)) = spec.validate().into_iter().next() {
            return Err(BuildError::new(field, message));
        }
        let url = Url::parse(&spec.url)
            .map_err(|e| BuildError::new("url", format!("invalid URL: {e}")))?;
        let method = parse_method(&spec.method)
            .map_err(|()| BuildError::new("method", "invalid HTTP method"))?;

        let mut secrets = Vec::new();
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let field = || format!("headers.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::new(field(), "invalid header name"))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| BuildError::new(field(), "invalid header value"))?;
            if is_credential_header(&name) {
                value.set_sensitive(true);
                if let Ok(text) = value.to_str() {
                    secrets.push(text.to_string());
                }
            }
            headers.insert(name, value);
        }

        let valid_status = spec
            .valid_status_codes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse()
                    .map_err(|e| BuildError::new(format!("valid_status_codes[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let valid_status_text = spec
            .valid_status_codes
            .iter()
            .map(|p| p.0.trim())
            .collect::<Vec<_>>()
            .join(", ");

        let compile = |list: &str, patterns: &[String]| {
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Regex::new(p).map_err(|e| {
                        BuildError::new(
                            format!("{list}[{i}]"),
                            format!(
                                "invalid regular expression: {}",
                                crate::config::regex_problem(&e)
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let must_match = compile("body_must_match", &spec.body_must_match)?;
        let must_not_match = compile("body_must_not_match", &spec.body_must_not_match)?;

        let mut authorization = None;
        if let Some(auth) = &spec.basic_auth {
            let password =
                secret::resolve("basic_auth.password", &auth.password, &auth.password_file)?;
            let password = password.as_ref().map(Secret::expose).unwrap_or("");
            let encoded = BASE64_STANDARD.encode(format!("{}:{password}", auth.username));
            authorization = Some(format!("Basic {encoded}"));
            secrets.push(password.to_string());
            secrets.push(encoded);
        }
        if let Some(token) =
            secret::resolve("bearer_token", &spec.bearer_token, &spec.bearer_token_file)?
        {
            authorization = Some(format!("Bearer {}", token.expose()));
            secrets.push(token.expose().to_string());
        }
        let authorization = authorization
            .map(|value| {
                HeaderValue::from_str(&value)
                    .map(|mut v| {
                        v.set_sensitive(true);
                        v
                    })
                    .map_err(|_| {
                        BuildError::new(
                            "bearer_token",
                            "contains characters that are not allowed in an HTTP header",
                        )
                    })
            })
            .transpose()?;
        secrets.retain(|s| !s.is_empty());

        // Built even for http URLs: a redirect may lead to https.
        let tls = spec.tls.as_deref().cloned().unwrap_or_default();
        let tls_config = tls.client_config("tls", &[b"http/1.1"])?;

        Ok(Self {
            url,
            method,
            headers,
            body: spec.body.clone().map(Bytes::from),
            valid_status,
            valid_status_text,
            must_match,
            must_not_match,
            json: spec.json.clone(),
            follow_redirects: spec.follow_redirects,
            max_redirects: spec.max_redirects,
            max_body_bytes: usize::try_from(spec.max_body_bytes).unwrap_or(usize::MAX),
            allowed_redirects: spec.allowed_redirects.clone(),
            authorization,
            secrets,
            tls,
            tls_config,
        })
    }

    async fn probe(&self) -> RunResult {
        let mut trace = Trace::default();
        match self.exchange(&mut trace).await {
            Ok(()) => Ok(trace.samples()),
            Err((reason, message)) => {
                Err(Failure::new(reason, message).with_samples(trace.samples()))
            }
        }
    }

    /// Refuse a redirect to a host outside a `/probe` module's
    /// `allowed_targets`: following it would hand the module's request to a
    /// host the operator did not allow.
    fn redirect_allowed(&self, next: &Url) -> Result<(), (Reason, String)> {
        let Some(allowed) = &self.allowed_redirects else {
            return Ok(());
        };
        match Endpoint::from_url(next, 80) {
            Some(endpoint) if allowed.allows(&endpoint) => Ok(()),
            _ => Err((
                Reason::UnexpectedResponse,
                format!(
                    "redirected to {}, which the module's allowed_targets do not allow; not followed",
                    display_url(next)
                ),
            )),
        }
    }

    /// The request, its redirects and the checks on the final response.
    async fn exchange(&self, trace: &mut Trace) -> Result<(), (Reason, String)> {
        let mut url = self.url.clone();
        let mut method = self.method.clone();
        let mut body = self.body.clone();
        loop {
            trace.status = None;
            trace.expiry = None;
            let (response, connection) = self.request(&url, &method, body.as_ref(), trace).await?;
            let status = response.status();
            trace.status = Some(status.as_u16());
            trace.final_tls = url.scheme() == "https";

            if self.follow_redirects && is_redirect(status) {
                if let Some(location) = response.headers().get(header::LOCATION) {
                    if trace.redirects >= self.max_redirects {
                        return Err((
                            Reason::UnexpectedResponse,
                            format!("too many redirects (more than {})", self.max_redirects),
                        ));
                    }
                    let next = location
                        .to_str()
                        .ok()
                        .and_then(|l| url.join(l).ok())
                        .ok_or_else(|| {
                            (
                                Reason::Protocol,
                                format!("HTTP {} with an invalid Location header", status.as_u16()),
                            )
                        })?;
                    if !matches!(next.scheme(), "http" | "https") || next.host_str().is_none() {
                        return Err((
                            Reason::UnexpectedResponse,
                            format!("redirected to unsupported URL {}", display_url(&next)),
                        ));
                    }
                    self.redirect_allowed(&next)?;
                    trace.redirects += 1;
                    let to_get = status == StatusCode::SEE_OTHER && method != Method::HEAD
                        || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                            && method == Method::POST;
                    if to_get {
                        method = Method::GET;
                        body = None;
                    }
                    drop(connection);
                    url = next;
                    continue;
                }
            }

            if !self.valid_status.iter().any(|m| m.matches(status)) {
                let reason = match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Reason::Auth,
                    _ => Reason::UnexpectedResponse,
                };
                let from = if trace.redirects > 0 {
                    format!(" from {}", display_url(&url))
                } else {
                    String::new()
                };
                return Err((
                    reason,
                    format!(
                        "HTTP {}{from} (expected {})",
                        describe_status(status),
                        self.valid_status_text
                    ),
                ));
            }

            let started = Instant::now();
            let collected = Limited::new(response.into_body(), self.max_body_bytes)
                .collect()
                .await;
            trace.add(Phase::Transfer, started.elapsed());
            drop(connection);
            let body = collected
                .map_err(|e| self.body_error(e.as_ref()))?
                .to_bytes();
            trace.body_size = Some(body.len());
            return self.check_body(&body);
        }
    }

    /// One request and its response headers: resolve, connect, TLS, send.
    async fn request(
        &self,
        url: &Url,
        method: &Method,
        body: Option<&Bytes>,
        trace: &mut Trace,
    ) -> Result<(Response<Incoming>, Connection), (Reason, String)> {
        let host = url.host().ok_or_else(|| {
            (
                Reason::Internal,
                format!("URL {} has no host", display_url(url)),
            )
        })?;
        let port = url.port_or_known_default().unwrap_or(80);

        let started = Instant::now();
        let addrs: std::io::Result<Vec<SocketAddr>> = match host {
            Host::Ipv4(ip) => Ok(vec![SocketAddr::new(ip.into(), port)]),
            Host::Ipv6(ip) => Ok(vec![SocketAddr::new(ip.into(), port)]),
            Host::Domain(name) => tokio::net::lookup_host((name, port))
                .await
                .map(Iterator::collect),
        };
        trace.add(Phase::Resolve, started.elapsed());
        let addrs = addrs.map_err(|e| (Reason::Dns, format!("resolving {host}: {e}")))?;

        let started = Instant::now();
        let mut outcome = Err((Reason::Dns, format!("resolving {host}: no addresses")));
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    outcome = Ok(stream);
                    break;
                }
                Err(e) => {
                    outcome = Err((Reason::from_io(&e), format!("connecting to {addr}: {e}")))
                }
            }
        }
        trace.add(Phase::Connect, started.elapsed());
        let stream = outcome?;
        let _ = stream.set_nodelay(true);

        let request = self.build_request(url, method, body)?;
        if url.scheme() != "https" {
            return send(stream, request, trace).await;
        }

        let name = match host {
            Host::Domain(d) => d.to_string(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        // `tls.server_name` names the configured host, not redirect targets.
        let server_name = if url.host() == self.url.host() {
            self.tls.server_name(&name)
        } else {
            TlsSpec::default().server_name(&name)
        }
        .map_err(|e| (Reason::Tls, e))?;
        let started = Instant::now();
        let handshake = TlsConnector::from(self.tls_config.clone())
            .connect(server_name, stream)
            .await;
        trace.add(Phase::Tls, started.elapsed());
        let stream = handshake.map_err(|e| (Reason::Tls, tls::describe_error(&e)))?;
        trace.expiry = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(tls::expiry_sample);
        send(stream, request, trace).await
    }

    fn build_request(
        &self,
        url: &Url,
        method: &Method,
        body: Option<&Bytes>,
    ) -> Result<Request<Full<Bytes>>, (Reason, String)> {
        let internal = |what: &str| {
            (
                Reason::Internal,
                format!("cannot request {}: invalid {what}", display_url(url)),
            )
        };
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let mut request = Request::new(Full::new(body.cloned().unwrap_or_default()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = target.parse().map_err(|_| internal("path"))?;

        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => String::new(),
        };
        let same_origin = url.origin() == self.url.origin();
        let headers = request.headers_mut();
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&host).map_err(|_| internal("host"))?,
        );
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        for (name, value) in &self.headers {
            if same_origin || !is_origin_bound(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let (true, Some(auth)) = (same_origin, &self.authorization) {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        Ok(request)
    }

    fn body_error(&self, err: &(dyn std::error::Error + 'static)) -> (Reason, String) {
        if err.is::<LengthLimitError>() {
            return (
                Reason::UnexpectedResponse,
                format!(
                    "response body is larger than max_body_bytes ({} bytes)",
                    self.max_body_bytes
                ),
            );
        }
        match err.downcast_ref::<hyper::Error>() {
            Some(e) => hyper_failure(e),
            None => (
                Reason::Network,
                format!("reading the body: {}", error_chain(err)),
            ),
        }
    }

    fn check_body(&self, body: &[u8]) -> Result<(), (Reason, String)> {
        let unexpected = |message: String| (Reason::UnexpectedResponse, message);
        for re in &self.must_match {
            if !re.is_match(body) {
                return Err(unexpected(format!(
                    "body does not match \"{}\"",
                    re.as_str()
                )));
            }
        }
        for re in &self.must_not_match {
            if re.is_match(body) {
                return Err(unexpected(format!(
                    "body matches \"{}\" (body_must_not_match)",
                    re.as_str()
                )));
            }
        }
        if self.json.is_empty() {
            return Ok(());
        }
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| unexpected(format!("body is not valid JSON: {e}")))?;
        for exp in &self.json {
            let at = if exp.pointer.is_empty() {
                "the JSON body"
            } else {
                exp.pointer.as_str()
            };
            let found = doc
                .pointer(&exp.pointer)
                .ok_or_else(|| unexpected(format!("JSON body has no {at}")))?;
            if let Some(want) = &exp.equals {
                if !json_equal(found, want) {
                    return Err(unexpected(format!(
                        "JSON {at} is {}, expected {}",
                        short_json(found),
                        short_json(want)
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Check for HttpCheck {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe())
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

/// Send `request` over `io` and wait for the response headers.
async fn send<S>(
    io: S,
    request: Request<Full<Bytes>>,
    trace: &mut Trace,
) -> Result<(Response<Incoming>, Connection), (Reason, String)>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let started = Instant::now();
    let result = async {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        let task = tokio::spawn(async move {
            // Errors reach the response or its body; nothing to do here.
            let _ = conn.await;
        });
        let mut connection = Connection { sender, task };
        let response = connection.sender.send_request(request).await?;
        Ok::<_, hyper::Error>((response, connection))
    }
    .await;
    trace.add(Phase::Processing, started.elapsed());
    result.map_err(|e| hyper_failure(&e))
}

/// The I/O task of one connection. It lives while its response is read and
/// is stopped when dropped, so a run cancelled by the scheduler's timeout
/// leaves no connection behind.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The request phases, in order; the `phase` label values.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Resolve,
    Connect,
    Tls,
    Processing,
    Transfer,
}

const PHASE_NAMES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

/// What one run measured so far, kept for the failure path too.
#[derive(Default)]
struct Trace {
    /// Per [`Phase`], summed over redirects; `None` for phases not reached.
    phases: [Option<Duration>; 5],
    redirects: u32,
    /// Status of the last response received, and whether it came over TLS.
    status: Option<u16>,
    final_tls: bool,
    body_size: Option<usize>,
    /// Certificate expiry of the connection of the last response.
    expiry: Option<Sample>,
}

impl Trace {
    fn add(&mut self, phase: Phase, elapsed: Duration) {
        let slot = &mut self.phases[phase as usize];
        *slot = Some(slot.unwrap_or_default() + elapsed);
    }

    fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for (name, duration) in PHASE_NAMES.iter().zip(self.phases) {
            if let Some(d) = duration {
                out.push(Sample::new(&PHASE_DURATION, d.as_secs_f64()).with_label("phase", *name));
            }
        }
        if let Some(status) = self.status {
            out.push(Sample::new(&STATUS_CODE, f64::from(status)));
            out.push(Sample::new(&SSL, if self.final_tls { 1.0 } else { 0.0 }));
        }
        out.push(Sample::new(&REDIRECTS, f64::from(self.redirects)));
        if let Some(size) = self.body_size {
            out.push(Sample::new(&BODY_SIZE, size as f64));
        }
        out.extend(self.expiry.clone());
        out
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// `500 Internal Server Error`, or just `599` for unknown codes.
fn describe_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(text) => format!("{} {text}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// A URL for a message: without user name, password and fragment.
fn display_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    url.to_string()
}

/// Classify an error from hyper (sending, or reading the response).
fn hyper_failure(err: &hyper::Error) -> (Reason, String) {
    let message = error_chain(err);
    if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
        return (
            Reason::Protocol,
            format!("invalid HTTP response: {message}"),
        );
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return (Reason::from_io(io), message);
        }
        source = e.source();
    }
    if err.is_incomplete_message() || err.is_closed() || err.is_canceled() {
        return (Reason::Network, message);
    }
    (Reason::Protocol, message)
}

/// An error and its sources, joined by `: `.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !message.ends_with(&text) {
            message = format!("{message}: {text}");
        }
        source = e.source();
    }
    message
}

/// Equality for `json[].equals`: numbers compare by value.
fn json_equal(found: &Value, want: &Value) -> bool {
    match (found, want) {
        (Value::Number(a), Value::Number(b)) => {
            a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
        }
        _ => found == want,
    }
}

/// A JSON value for a message, cut to a readable length.
fn short_json(value: &Value) -> String {
    const MAX: usize = 80;
    let text = value.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}…")
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

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_equal(&serde_json::json!(1), &serde_json::json!(1.0)));
        assert!(!json_equal(&serde_json::json!(1), &serde_json::json!("1")));
    }

    #[test]
    fn display_url_strips_userinfo() {
        let url = Url::parse("https://u:p@h:8443/x?q#frag").unwrap();
        assert_eq!(display_url(&url), "https://h:8443/x?q");
    }
}
