//! The `http` check: one HTTP(S) request, the on-call engineer's
//! `curl -f https://service/health`, with expectations on the status code,
//! the body and fields of a JSON body.
//!
//! Each phase of the request is timed separately, like blackbox_exporter's
//! `probe_http_duration_seconds`: `resolve` (name lookup), `connect` (TCP),
//! `tls` (handshake, https only), `processing` (request sent until the
//! response headers arrived) and `transfer` (reading the body). Phases are
//! summed over redirects.
//!
//! The parts: `spec` (the configuration and its validation), `exchange`
//! (the redirect loop and the requests), `connect` (resolve, connect, the
//! proxy's tunnel, TLS, HTTP/1.1), `response` (the status and body expectations) and `trace`
//! (the phase timings and the samples).

mod connect;
mod exchange;
mod response;
mod spec;
mod trace;

use std::sync::Arc;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use bytes::Bytes;
use futures::future::BoxFuture;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::Method;
use prometheus_client::registry::Unit;
use regex::bytes::Regex;
use rustls::ClientConfig;
use url::Url;

use self::spec::{Problem, StatusMatch};
use self::trace::Trace;
use super::shared::dial::Dialer;
use super::shared::proxy::Proxy;
use super::shared::targets::{is_credential_header, AllowedTargets};
use super::shared::tls::TlsSpec;
use super::{BuildError, Check, Failure, MetricDesc, RunContext, RunResult};
use crate::checks::shared::secret::{self, Secret};

pub use self::spec::{BasicAuth, HttpSpec, JsonExpectation, StatusPattern};

/// HTTP status code of the final response.
pub static STATUS_CODE: MetricDesc = MetricDesc::gauge(
    "http_status_code",
    None,
    "HTTP status code of the final response in the last scheduled run.",
);

/// Duration of each phase of the request, summed over redirects.
pub static PHASE_DURATION: MetricDesc = MetricDesc::gauge(
    "http_phase_duration",
    Some(Unit::Seconds),
    "Time spent in each phase of the HTTP request (resolve, connect, tls, processing, transfer) in the last scheduled run, summed over redirects.",
);

/// Number of redirects followed.
pub static REDIRECTS: MetricDesc = MetricDesc::gauge(
    "http_redirects",
    None,
    "Number of HTTP redirects followed in the last scheduled run.",
);

/// Size of the final response body.
pub static BODY_SIZE: MetricDesc = MetricDesc::gauge(
    "http_response_body_size",
    Some(Unit::Bytes),
    "Size of the final HTTP response body, as received, in the last scheduled run.",
);

/// Whether the final response came over TLS.
pub static SSL: MetricDesc = MetricDesc::gauge(
    "http_ssl",
    None,
    "1 if the final HTTP response in the last scheduled run came over TLS, else 0.",
);

/// Every metric this kind can report, besides the TLS certificate expiry.
pub static METRICS: [&MetricDesc; 5] =
    [&STATUS_CODE, &PHASE_DURATION, &REDIRECTS, &BODY_SIZE, &SSL];

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
    dialer: Dialer,
    proxy: Option<Proxy>,
}

impl HttpCheck {
    /// Build the check: compile regexes, read secret files, load TLS files.
    ///
    /// Every check of the spec's fields is in [`HttpSpec::validate`], run
    /// first; the parsers below are the ones it runs, so once it has passed
    /// they cannot fail. What remains to fail is what only building finds:
    /// unreadable secret or TLS files, and a secret unfit for a header.
    pub fn new(spec: &HttpSpec) -> Result<Self, BuildError> {
        if let Some(problem) = spec.validate().into_iter().next() {
            return Err(build_error(problem));
        }
        let url = spec::parse_url(&spec.url).map_err(|e| BuildError::new("url", e))?;
        let method = spec::parse_method(&spec.method).map_err(|e| BuildError::new("method", e))?;
        let mut secrets = Vec::new();
        let headers = header_map(spec, &mut secrets)?;
        let valid_status = all(spec.status_matches())?;
        let must_match = all(spec::regexes("body_must_match", &spec.body_must_match))?;
        let must_not_match = all(spec::regexes(
            "body_must_not_match",
            &spec.body_must_not_match,
        ))?;
        let authorization = authorization(spec, &mut secrets)?;
        let proxy = Proxy::from_spec(spec.proxy_url.as_ref(), &spec.no_proxy)?;
        secrets.extend(proxy.iter().flat_map(Proxy::secrets));
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
            valid_status_text: status_text(spec),
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
            dialer: Dialer {
                ip_protocol: spec.ip_protocol,
                connect_timeout: spec.connect_timeout,
            },
            proxy,
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
}

impl Check for HttpCheck {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe())
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

fn build_error((field, message): Problem) -> BuildError {
    BuildError::new(field, message)
}

/// Every entry parsed, or the first problem.
fn all<T>(parsed: Vec<Result<T, Problem>>) -> Result<Vec<T>, BuildError> {
    parsed
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(build_error)
}

/// The configured extra headers; the values of credential headers are
/// marked sensitive and added to `secrets`.
fn header_map(spec: &HttpSpec, secrets: &mut Vec<String>) -> Result<HeaderMap, BuildError> {
    let mut headers = HeaderMap::new();
    for parsed in spec.parsed_headers() {
        let (name, mut value) = parsed.map_err(build_error)?;
        if is_credential_header(&name) {
            value.set_sensitive(true);
            if let Ok(text) = value.to_str() {
                secrets.push(text.to_string());
            }
        }
        headers.insert(name, value);
    }
    Ok(headers)
}

/// `valid_status_codes` as written, for messages: `2xx, 304`.
fn status_text(spec: &HttpSpec) -> String {
    spec.valid_status_codes
        .iter()
        .map(|p| p.0.trim())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `Authorization` header from `basic_auth` or `bearer_token`, their
/// secret files read; the secrets it carries are added to `secrets`.
fn authorization(
    spec: &HttpSpec,
    secrets: &mut Vec<String>,
) -> Result<Option<HeaderValue>, BuildError> {
    let mut authorization = None;
    if let Some(auth) = &spec.basic_auth {
        let password = secret::resolve("basic_auth.password", &auth.password, &auth.password_file)?;
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
    authorization
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
        .transpose()
}

crate::checks::kind!(HttpSpec => HttpCheck, "http", probe "url");
