//! The transport of one `http` request: resolve the host, connect to its
//! addresses in turn, the TLS handshake (with the certificate's expiry), and
//! the HTTP/1.1 exchange over the stream, each phase timed into the
//! [`Trace`]; and how hyper's errors become a [`Reason`].

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

/// Resolve `host` and connect to its addresses in turn, until one answers.
pub(super) async fn connect(
    host: &Host<&str>,
    port: u16,
    trace: &mut Trace,
) -> Result<TcpStream, (Reason, String)> {
    let name = host_text(host);
    let started = Instant::now();
    let addrs = dial::resolve(&name, port).await;
    trace.add(Phase::Resolve, started.elapsed());
    let addrs = addrs.map_err(|f| (f.reason, f.message))?;

    let started = Instant::now();
    let stream = dial::connect(&format!("{host}:{port}"), &addrs).await;
    trace.add(Phase::Connect, started.elapsed());
    stream.map_err(|f| (f.reason, f.message))
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
