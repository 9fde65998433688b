//! One bounded HTTP GET, for a token served at `url` and for a JWKS: the
//! shared dial path (`shared::dial`: resolve, connect each address, TLS
//! with the check's `tls` options), then one HTTP/1.1 request over that
//! connection with hyper. No redirects are followed, the body is capped,
//! and the whole fetch has a deadline of its own, so a hung server fails
//! with a message naming the URL.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderMap, ACCEPT, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use url::{Host, Url};

use super::spec::parse_url;
use crate::checks::shared::tls::{TlsClient, TlsSpec};
use crate::checks::shared::{dial, errors};
use crate::checks::{BuildError, Failure, Reason};

/// The most bytes of a body read: tokens and key sets are small.
pub(super) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What a successful GET returned.
pub(super) struct Fetched {
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// A GET of one URL, built once.
pub(super) struct Fetcher {
    url: Url,
    host: String,
    port: u16,
    tls: Option<TlsClient>,
    accept: &'static str,
}

impl Fetcher {
    /// `field` names the URL's field and `tls_field` the TLS options', for
    /// errors; `accept` is the media type asked for.
    pub(super) fn new(
        field: &str,
        text: &str,
        tls: Option<&TlsSpec>,
        accept: &'static str,
    ) -> Result<Self, BuildError> {
        let url = parse_url(text).map_err(|e| BuildError::new(field, e))?;
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(BuildError::new(field, "no host")),
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let tls = match url.scheme() {
            "https" => Some(
                tls.cloned()
                    .unwrap_or_default()
                    .connector("tls", field, &host)?,
            ),
            _ => None,
        };
        Ok(Self {
            url,
            host,
            port,
            tls,
            accept,
        })
    }

    /// The URL without its query (which may carry a key), for messages.
    pub(super) fn display(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.to_string()
    }

    /// GET the URL within `deadline`; any answer but 2xx is a failure.
    pub(super) async fn get(&self, deadline: Duration) -> Result<Fetched, Failure> {
        match tokio::time::timeout(deadline, self.exchange()).await {
            Ok(Ok(fetched)) => Ok(fetched),
            Ok(Err((reason, detail))) => Err(Failure::new(
                reason,
                format!("GET {} failed: {detail}", self.display()),
            )),
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!(
                    "GET {} did not finish within {} ms",
                    self.display(),
                    deadline.as_millis()
                ),
            )),
        }
    }

    async fn exchange(&self) -> Result<Fetched, (Reason, String)> {
        let addrs = dial::resolve(&self.host, self.port)
            .await
            .map_err(|f| (f.reason, f.message))?;
        let target = format!("{}:{}", self.host, self.port);
        let stream = dial::connect(&target, &addrs)
            .await
            .map_err(|f| (f.reason, f.message))?;
        match &self.tls {
            Some(tls) => {
                let (stream, _expiry) =
                    dial::handshake(&tls.connector, tls.server_name.clone(), stream)
                        .await
                        .map_err(|f| (f.reason, f.message))?;
                self.request(stream).await
            }
            None => self.request(stream).await,
        }
    }

    /// One request over `io`: status, headers and the capped body.
    async fn request<S>(&self, io: S) -> Result<Fetched, (Reason, String)>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| hyper_failure(&e))?;
        // The connection's I/O runs in its own task, stopped when this
        // function returns or its run is cancelled.
        let task = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let path = match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_string(),
        };
        let host = match self.url.port() {
            Some(port) => format!("{}:{port}", self.url.host_str().unwrap_or_default()),
            None => self.url.host_str().unwrap_or_default().to_string(),
        };
        let request = Request::get(path)
            .header(HOST, host)
            .header(ACCEPT, self.accept)
            .header(
                USER_AGENT,
                concat!("runbook-exporter/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| (Reason::Internal, format!("cannot build the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| hyper_failure(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err((Reason::UnexpectedResponse, format!("answered {status}")));
        }
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => hyper_failure(&e),
                Err(_) => (
                    Reason::UnexpectedResponse,
                    format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                ),
            })?
            .to_bytes();
        drop(task);
        Ok(Fetched {
            headers: parts.headers,
            body,
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Classify an error from hyper.
fn hyper_failure(err: &hyper::Error) -> (Reason, String) {
    let detail = errors::describe(err);
    if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
        return (Reason::Protocol, format!("invalid HTTP response: {detail}"));
    }
    match errors::first_io(err) {
        Some(io) => (errors::io_reason(io), detail),
        None => (Reason::Network, detail),
    }
}
