//! The transport of one `http` request: resolve the host (or the proxy),
//! connect to its addresses Happy Eyeballs style through `shared::dial`,
//! open a `CONNECT` tunnel for https through a proxy, the TLS handshake
//! (with the certificate's expiry), and the HTTP/1.1 exchange over the
//! stream, each phase timed into the [`Trace`]; and how hyper's errors
//! become a [`Reason`].

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

use super::trace::{Phase, Trace};
use super::HttpCheck;
use crate::checks::shared::dial;
use crate::checks::shared::errors;
use crate::checks::shared::tls::TlsSpec;
use crate::checks::Reason;

/// How a request's stream reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Straight to the server, or through a `CONNECT` tunnel: the request
    /// is sent in origin form (`GET /path`).
    Direct,
    /// To a proxy that forwards plain-http requests sent in absolute form
    /// (`GET http://host/path`).
    Forward,
}

impl HttpCheck {
    /// Resolve the URL's host (or the proxy's) and connect, Happy Eyeballs
    /// style; through a proxy, an https URL gets its `CONNECT` tunnel here,
    /// timed as part of `connect`.
    pub(super) async fn connect(
        &self,
        url: &Url,
        host: &Host<&str>,
        port: u16,
        trace: &mut Trace,
    ) -> Result<(TcpStream, Route), (Reason, String)> {
        let target = host_text(host);
        let proxy = self.proxy.as_ref().filter(|p| p.applies_to(&target));
        let (name, dial_port) = match proxy {
            Some(p) => p.host_port(),
            None => (target.as_str(), port),
        };
        let started = Instant::now();
        let addrs = self.dialer.resolve(name, dial_port).await;
        trace.add(Phase::Resolve, started.elapsed());
        let addrs = addrs.map_err(|f| (f.reason, f.message))?;

        let started = Instant::now();
        let shown = match proxy {
            Some(p) => p.display(),
            None => format!("{host}:{port}"),
        };
        let connected = self.dialer.connect(&shown, &addrs).await;
        let result = match connected {
            Err(f) => Err((f.reason, f.message)),
            Ok(c) => {
                trace.dial = c.samples();
                match proxy {
                    None => Ok((c.stream, Route::Direct)),
                    Some(_) if url.scheme() != "https" => Ok((c.stream, Route::Forward)),
                    Some(p) => p
                        .tunnel(c.stream, &target, port)
                        .await
                        .map(|s| (s, Route::Direct))
                        .map_err(|f| (f.reason, f.message)),
                }
            }
        };
        trace.add(Phase::Connect, started.elapsed());
        result
    }
}

/// A URL host as a name or bare IP address (IPv6 without brackets).
fn host_text(host: &Host<&str>) -> String {
    match host {
        Host::Domain(d) => d.to_string(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    }
}

impl HttpCheck {
    /// The TLS handshake with `host` over `stream`; records the expiry of the
    /// server's certificate.
    pub(super) async fn tls_handshake(
        &self,
        url: &Url,
        host: &Host<&str>,
        stream: TcpStream,
        trace: &mut Trace,
    ) -> Result<TlsStream<TcpStream>, (Reason, String)> {
        let name = host_text(host);
        // `tls.server_name` names the configured host, not redirect targets.
        let server_name = if url.host() == self.url.host() {
            self.tls.server_name(&name)
        } else {
            TlsSpec::default().server_name(&name)
        }
        .map_err(|e| (Reason::Tls, e))?;
        let started = Instant::now();
        let connector = TlsConnector::from(self.tls_config.clone());
        let handshake = dial::handshake(&connector, server_name, stream).await;
        trace.add(Phase::Tls, started.elapsed());
        let (stream, expiry) = handshake.map_err(|f| (f.reason, f.message))?;
        trace.expiry = expiry;
        Ok(stream)
    }
}

/// Send `request` over `io` and wait for the response headers.
pub(super) async fn send<S>(
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
        // Errors reach the response or its body, except when the
        // connection fails before the request goes out (a TLS alert: the
        // server refused the client certificate); then the request is only
        // "canceled", and the connection's own error says why.
        let task = tokio::spawn(conn);
        let mut connection = Connection { sender, task };
        match connection.sender.send_request(request).await {
            Ok(response) => Ok((response, connection)),
            Err(e) if e.is_canceled() || e.is_closed() => match (&mut connection.task).await {
                Ok(Err(cause)) => Err(cause),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }
    .await;
    trace.add(Phase::Processing, started.elapsed());
    result.map_err(|e| hyper_failure(&e))
}

/// The I/O task of one connection. It lives while its response is read and
/// is stopped when dropped, so a run cancelled by the scheduler's timeout
/// leaves no connection behind.
pub(super) struct Connection {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<Result<(), hyper::Error>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Classify an error from hyper (sending, or reading the response).
pub(super) fn hyper_failure(err: &hyper::Error) -> (Reason, String) {
    let message = errors::describe(err);
    if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
        return (
            Reason::Protocol,
            format!("invalid HTTP response: {message}"),
        );
    }
    if let Some(io) = errors::first_io(err) {
        // A TLS alert after the handshake (a client certificate refused)
        // is a rustls error inside the I/O error: `tls`.
        return (errors::io_reason(io), message);
    }
    if err.is_incomplete_message() || err.is_closed() || err.is_canceled() {
        return (Reason::Network, message);
    }
    (Reason::Protocol, message)
}
