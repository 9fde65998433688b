//! One connection to one Kafka broker, in pure Rust over tokio: the
//! size-prefixed framing, correlation ids, the ApiVersions exchange that
//! picks each request's version, and the SASL handshake ([`super::sasl`]).
//!
//! A connection is used by one request at a time and owned by whoever
//! sends; [`super::cluster`] takes it out of its slot for a request and puts
//! it back only after a whole answer was read, so a request cancelled half
//! way (a run that hit its deadline) drops the connection instead of leaving
//! a half-read answer for the next run.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::sasl::{Sasl, SaslStep};
use crate::checks::shared::{dial, errors};
use crate::checks::{Failure, Reason};
use rustls::pki_types::ServerName;

/// Largest answer accepted; anything bigger is a protocol error rather
/// than an allocation the broker chose. Fetches ask for far less.
const MAX_FRAME: usize = 64 << 20;

/// What a connection needs to open: TLS (a connector, and the name to verify
/// when it is not the broker's host) and SASL.
pub(super) struct Dialer {
    pub(super) tls: Option<(tokio_rustls::TlsConnector, Option<String>)>,
    pub(super) sasl: Option<Sasl>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// An open, authenticated connection.
pub(super) struct Conn {
    stream: Box<dyn Stream>,
    next_id: i32,
    /// The broker's `(min, max)` version of each API key it supports.
    versions: HashMap<i16, (i16, i16)>,
}

/// The error of a Kafka error code, for messages.
pub(super) fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("error code {code}"),
    }
}

/// The reason of a Kafka error code: authorization and authentication
/// errors are `auth`, the rest an unexpected answer.
pub(super) fn error_reason(code: i16) -> Reason {
    match code {
        29..=31 | 58 => Reason::Auth,
        _ => Reason::UnexpectedResponse,
    }
}

impl Dialer {
    /// Connect to `host:port`, start TLS, learn the versions and
    /// authenticate.
    pub(super) async fn open(&self, host: &str, port: u16) -> Result<Conn, Failure> {
        let target = format!("{host}:{port}");
        let addrs = dial::resolve(host, port).await?;
        let tcp = dial::connect(&target, &addrs).await?;
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => {
                let name = name.as_deref().unwrap_or(host);
                let server_name = ServerName::try_from(name.to_string()).map_err(|_| {
                    Failure::new(Reason::Tls, format!("invalid TLS server name {name:?}"))
                })?;
                let (stream, _) = dial::handshake(connector, server_name, tcp).await?;
                Box::new(stream)
            }
        };
        let mut conn = Conn {
            stream,
            next_id: 1,
            versions: HashMap::new(),
        };
        conn.learn_versions(&target).await?;
        if let Some(sasl) = &self.sasl {
            conn.authenticate(sasl, &target).await?;
        }
        Ok(conn)
    }
}

impl Conn {
    async fn learn_versions(&mut self, target: &str) -> Result<(), Failure> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("runbook-exporter"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let answer = self.send(&request, 3).await?;
        if answer.error_code != 0 {
            return Err(Failure::new(
                Reason::UnexpectedResponse,
                format!(
                    "{target}: ApiVersions answered {}; the broker may be older than Kafka 2.4",
                    error_name(answer.error_code)
                ),
            ));
        }
        self.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    async fn authenticate(&mut self, sasl: &Sasl, target: &str) -> Result<(), Failure> {
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_string(sasl.mechanism().to_string()));
        let answer = self.send(&handshake, 1).await?;
        if answer.error_code != 0 {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(Failure::new(
                Reason::Auth,
                format!(
                    "{target}: SASL mechanism {} refused ({}); the broker offers {offered:?}",
                    sasl.mechanism(),
                    error_name(answer.error_code)
                ),
            ));
        }
        let version = self.version::<SaslAuthenticateRequest>(2, 0)?;
        let mut exchange = sasl.start();
        let mut message = exchange.first();
        loop {
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
            let answer = self.send(&request, version).await?;
            if answer.error_code != 0 {
                let detail = answer
                    .error_message
                    .as_ref()
                    .map_or_else(|| error_name(answer.error_code), |m| m.to_string());
                return Err(Failure::new(
                    Reason::Auth,
                    format!("{target}: SASL authentication failed: {detail}"),
                ));
            }
            match exchange.next(&answer.auth_bytes) {
                Ok(SaslStep::Send(next)) => message = next,
                Ok(SaslStep::Done) => return Ok(()),
                Err(e) => {
                    return Err(Failure::new(
                        Reason::Auth,
                        format!("{target}: SASL authentication failed: {e}"),
                    ))
                }
            }
        }
    }

    /// The version to send `R` with: `preferred` or the broker's highest if
    /// lower, and at least `min` (the oldest version this check can read).
    pub(super) fn version<R: Request>(&self, preferred: i16, min: i16) -> Result<i16, Failure> {
        let (broker_min, broker_max) = self.versions.get(&R::KEY).copied().unwrap_or((0, -1));
        let v = preferred.min(broker_max).min(R::VERSIONS.max);
        if v < min.max(broker_min).max(R::VERSIONS.min) {
            return Err(Failure::new(
                Reason::UnexpectedResponse,
                format!(
                    "the broker does not support a usable version of API key {} (it offers {broker_min}..{broker_max})",
                    R::KEY
                ),
            ));
        }
        Ok(v)
    }

    /// Send one request and read its answer.
    pub(super) async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, Failure> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("runbook-exporter")));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        let encoded = header
            .encode(&mut buf, R::header_version(version))
            .and_then(|()| request.encode(&mut buf, version));
        encoded
            .map_err(|e| Failure::new(Reason::Internal, format!("cannot encode request: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        // A TLS alert after the handshake (a refused client certificate
        // under TLS 1.3) is inside the I/O error: `tls`.
        let io =
            |e: std::io::Error| Failure::new(errors::io_reason(&e), format!("broker I/O: {e}"));
        self.stream.write_all(&buf).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let len = self.stream.read_u32().await.map_err(io)? as usize;
        if len > MAX_FRAME {
            return Err(Failure::new(
                Reason::Protocol,
                format!("the broker announced an answer of {len} bytes"),
            ));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await.map_err(io)?;
        let mut body = Bytes::from(body);
        let protocol = |e: anyhow::Error| {
            Failure::new(
                Reason::Protocol,
                format!("cannot decode the answer to API key {}: {e}", R::KEY),
            )
        };
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(protocol)?;
        if header.correlation_id != id {
            return Err(Failure::new(
                Reason::Protocol,
                format!(
                    "answer for request {} while waiting for {id}",
                    header.correlation_id
                ),
            ));
        }
        let answer = R::Response::decode(&mut body, version).map_err(protocol)?;
        if body.has_remaining() && R::KEY != 18 {
            tracing::debug!(
                api_key = R::KEY,
                left = body.remaining(),
                "answer longer than decoded"
            );
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that answers the first request with `reply`, then closes.
    async fn fake_broker(reply: Vec<u8>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut len = [0u8; 4];
            let _ = s.read_exact(&mut len).await;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            let _ = s.read_exact(&mut body).await;
            let _ = s.write_all(&reply).await;
        });
        port
    }

    async fn open(reply: Vec<u8>) -> Failure {
        let port = fake_broker(reply).await;
        let dialer = Dialer {
            tls: None,
            sasl: None,
        };
        match dialer.open("127.0.0.1", port).await {
            Ok(_) => panic!("a hostile broker was accepted"),
            Err(f) => f,
        }
    }

    #[tokio::test]
    async fn hostile_answers_fail_cleanly() {
        // A frame far larger than any answer: refused before allocating.
        let f = open(vec![0xff, 0xff, 0xff, 0xff]).await;
        assert_eq!(f.reason, Reason::Protocol, "{}", f.message);
        // A frame cut short inside the answer: not decodable.
        let mut short = 7u32.to_be_bytes().to_vec();
        short.extend([0, 0, 0, 1, 0, 0, 0]);
        let f = open(short).await;
        assert_eq!(f.reason, Reason::Protocol, "{}", f.message);
        // The wrong correlation id.
        let mut wrong = 4u32.to_be_bytes().to_vec();
        wrong.extend(99i32.to_be_bytes());
        let f = open(wrong).await;
        assert_eq!(f.reason, Reason::Protocol, "{}", f.message);
        // Closed mid-answer.
        let f = open(vec![0, 0, 0, 50, 1, 2]).await;
        assert_eq!(f.reason, Reason::Network, "{}", f.message);
    }
}
