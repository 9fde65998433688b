//! The `tcp` kind: connect to `host:port` (the guides' `nc -zv host port`),
//! directly or through an HTTP proxy's `CONNECT`, optionally complete a TLS
//! handshake, and optionally exchange a request and a response (`send` /
//! `expect`).
//!
//! Every run resolves the host again, opens a fresh connection and closes it
//! at the end; nothing is kept between runs except the TLS client config and
//! the compiled `expect` regex.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::registry::Unit;
use regex::bytes::Regex;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::shared::dial::{self, Dialer, IpProtocol};
use super::shared::errors;
use super::shared::proxy::Proxy;
use super::shared::secret::Secret;
use super::shared::tls::{TlsClient, TlsSpec};
use super::{BuildError, Check, Failure, MetricDesc, Reason, RunContext, RunResult, Sample};

/// Default of `max_read_bytes`: 64 KiB.
const DEFAULT_MAX_READ_BYTES: usize = 64 * 1024;

/// How much of the received data a mismatch message quotes.
const SNIPPET_BYTES: usize = 120;

/// Config of a `tcp` check.
///
/// ```yaml
/// - name: redis
///   kind: tcp
///   address: redis.internal:6379
///   send: "PING\r\n"
///   expect: "^\\+PONG"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    /// Where to connect, as `host:port`: `db.internal:5432`, `10.0.0.5:6379`,
    /// or `[2001:db8::5]:443` (IPv6 addresses in brackets). A host name is
    /// resolved with the system resolver on every run, and its addresses are
    /// tried as `ip_protocol` says until one accepts the connection.
    pub address: String,

    /// Complete a TLS handshake after connecting, verifying the server's
    /// certificate, and report the earliest certificate expiry. Default:
    /// false.
    #[serde(default)]
    pub tls: bool,

    /// TLS settings used when `tls` is true: `ca_file`, `cert_file` and
    /// `key_file` (mutual TLS), `server_name` (default: the host of
    /// `address`), `insecure_skip_verify`.
    pub tls_config: Option<Box<TlsSpec>>,

    /// Data to send once connected (after the TLS handshake with `tls`).
    /// Write control characters with a double-quoted YAML string:
    /// `send: "PING\r\n"`.
    pub send: Option<String>,

    /// Regular expression the data received (after `send`, if any) must
    /// match. The check reads until the expression matches, the server closes
    /// the connection, or `max_read_bytes` have arrived; the last two fail the
    /// run as an unexpected response. Without `send`, this checks the greeting
    /// of protocols whose server speaks first (SMTP `^220 `, SSH `^SSH-2\.0-`).
    /// The expression is matched against the raw bytes, so `^` anchors at the
    /// start of the response; use `(?m)` to anchor at line starts.
    pub expect: Option<String>,

    /// Most bytes to read while waiting for `expect` to match. Default: 65536.
    #[serde(default = "default_max_read_bytes")]
    pub max_read_bytes: usize,

    /// Which addresses of a host name to connect to: `ip4`, `ip6`, or
    /// `auto` (both, Happy Eyeballs: the next address is tried 250 ms after
    /// the previous one if it has not connected, and the first to connect
    /// wins). Default: `auto`.
    #[serde(default)]
    pub ip_protocol: IpProtocol,

    /// The most time one address may take to accept the connection, like
    /// `2s`. Default: none, so only the check's `timeout` ends an attempt.
    #[serde(default, with = "super::shared::duration::option")]
    pub connect_timeout: Option<Duration>,

    /// An HTTP forward proxy to tunnel through with `CONNECT`, like
    /// `http://proxy.internal:3128`; user info (`http://user:password@...`)
    /// is sent as `Proxy-Authorization` and is a secret.
    pub proxy_url: Option<Secret>,

    /// Hosts reached directly despite `proxy_url`: names (matching the name
    /// and every name under it), IP addresses, CIDR networks, or `*`.
    #[serde(default)]
    pub no_proxy: Vec<String>,
}

fn default_max_read_bytes() -> usize {
    DEFAULT_MAX_READ_BYTES
}

impl super::shared::targets::ProbeSafety for TcpSpec {
    /// A client key, and `send`, which may hold a password (`AUTH ...`).
    fn credentials(&self) -> Vec<&'static str> {
        super::shared::targets::set_fields(&[
            (
                "tls_config.key_file",
                TlsSpec::has_client_key(self.tls_config.as_deref()),
            ),
            ("send", self.send.is_some()),
            (
                "proxy_url",
                super::shared::proxy::has_credentials(self.proxy_url.as_ref()),
            ),
        ])
    }

    fn endpoints(&self) -> Vec<super::shared::targets::Endpoint> {
        super::shared::targets::Endpoint::parse(&self.address)
            .into_iter()
            .collect()
    }
}

impl TcpSpec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err(e) = split_host_port(&self.address) {
            problems.push(("address".to_string(), e));
        }
        if self.tls_config.is_some() && !self.tls {
            problems.push((
                "tls_config".to_string(),
                "is set but tls is false; add `tls: true` to use TLS".to_string(),
            ));
        }
        if let Some(expect) = &self.expect {
            if let Err(e) = Regex::new(expect) {
                problems.push((
                    "expect".to_string(),
                    format!(
                        "invalid regular expression: {}",
                        crate::checks::shared::regex_problem(&e)
                    ),
                ));
            }
        }
        if self.max_read_bytes == 0 {
            problems.push((
                "max_read_bytes".to_string(),
                "must be at least 1".to_string(),
            ));
        }
        match &self.proxy_url {
            Some(url) => problems.extend(
                Proxy::parse(url.expose(), &self.no_proxy)
                    .err()
                    .unwrap_or_default(),
            ),
            None if !self.no_proxy.is_empty() => problems.push((
                "no_proxy".to_string(),
                "is set but proxy_url is not".to_string(),
            )),
            None => {}
        }
        problems
    }
}

/// Duration of each phase of a tcp check.
pub static PHASE_DURATION: MetricDesc = MetricDesc::gauge(
    "tcp_phase_duration",
    Some(Unit::Seconds),
    "Duration of each phase of the TCP check in the last scheduled run (resolve, connect, tls, exchange); only the phases that ran.",
);

/// Every metric this kind can report, besides the TLS certificate expiry and
/// the connection's (`dial::IP_PROTOCOL`, `dial::FAILED_ADDRESSES`).
pub static METRICS: [&MetricDesc; 1] = [&PHASE_DURATION];

fn phase_sample(phase: &'static str, elapsed: Duration) -> Sample {
    Sample::new(&PHASE_DURATION, elapsed.as_secs_f64()).with_label("phase", phase)
}

/// A built `tcp` check.
pub struct TcpCheck {
    host: String,
    port: u16,
    /// Set when the host is an IP literal: no resolve phase.
    ip: Option<IpAddr>,
    tls: Option<TlsClient>,
    send: Option<Vec<u8>>,
    expect: Option<Regex>,
    max_read_bytes: usize,
    dialer: Dialer,
    /// Boxed: most checks have none, and thousands of checks are built.
    proxy: Option<Box<Proxy>>,
}

impl TcpCheck {
    pub fn new(spec: &TcpSpec) -> Result<Self, BuildError> {
        let (host, port) =
            split_host_port(&spec.address).map_err(|e| BuildError::new("address", e))?;
        let ip = host.parse::<IpAddr>().ok();
        let tls = if spec.tls {
            let tls_spec = spec.tls_config.as_deref().cloned().unwrap_or_default();
            Some(tls_spec.connector("tls_config", "address", &host)?)
        } else {
            None
        };
        let expect = spec
            .expect
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|e| BuildError::new("expect", format!("invalid regular expression: {e}")))?;
        if spec.max_read_bytes == 0 {
            return Err(BuildError::new("max_read_bytes", "must be at least 1"));
        }
        let proxy = Proxy::from_spec(spec.proxy_url.as_ref(), &spec.no_proxy)?;
        Ok(Self {
            host,
            port,
            ip,
            tls,
            send: spec.send.as_ref().map(|s| s.as_bytes().to_vec()),
            expect,
            max_read_bytes: spec.max_read_bytes,
            dialer: Dialer {
                ip_protocol: spec.ip_protocol,
                connect_timeout: spec.connect_timeout,
            },
            proxy: proxy.map(Box::new),
        })
    }

    async fn probe(&self) -> RunResult {
        let mut samples = Vec::new();
        let proxy = self.proxy.as_deref().filter(|p| p.applies_to(&self.host));
        let (host, port, ip) = match proxy {
            Some(p) => {
                let (host, port) = p.host_port();
                (host, port, host.parse::<IpAddr>().ok())
            }
            None => (self.host.as_str(), self.port, self.ip),
        };

        // Resolve (only for host names).
        let addrs: Vec<SocketAddr> = match ip {
            Some(_) => self.dialer.resolve(host, port).await?,
            None => {
                let start = Instant::now();
                let addrs = self.dialer.resolve(host, port).await?;
                samples.push(phase_sample("resolve", start.elapsed()));
                addrs
            }
        };

        // Connect: Happy Eyeballs over the addresses, then the tunnel.
        let start = Instant::now();
        let target = format!("{host}:{port}");
        let connected = match self.dialer.connect(&target, &addrs).await {
            Ok(connected) => connected,
            Err(f) => return Err(f.with_samples(samples)),
        };
        samples.extend(connected.samples());
        let stream = match proxy {
            None => connected.stream,
            Some(p) => match p.tunnel(connected.stream, &self.host, self.port).await {
                Ok(stream) => stream,
                Err(f) => return Err(f.with_samples(samples)),
            },
        };
        samples.push(phase_sample("connect", start.elapsed()));

        match &self.tls {
            None => self.finish(stream, samples).await,
            Some(tls) => {
                let start = Instant::now();
                match dial::handshake(&tls.connector, tls.server_name.clone(), stream).await {
                    Ok((stream, expiry)) => {
                        samples.push(phase_sample("tls", start.elapsed()));
                        samples.extend(expiry);
                        self.finish(stream, samples).await
                    }
                    Err(f) => Err(f.with_samples(samples)),
                }
            }
        }
    }

    /// The optional exchange, then a polite close.
    async fn finish<S>(&self, mut stream: S, mut samples: Vec<Sample>) -> RunResult
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.send.is_some() || self.expect.is_some() {
            let start = Instant::now();
            match self.exchange(&mut stream).await {
                Ok(()) => samples.push(phase_sample("exchange", start.elapsed())),
                Err((reason, message)) => {
                    // A wrong answer is a complete exchange; an I/O error is not.
                    if reason == Reason::UnexpectedResponse {
                        samples.push(phase_sample("exchange", start.elapsed()));
                    }
                    return Err(Failure::new(reason, message).with_samples(samples));
                }
            }
        }
        // Sends FIN (and close_notify with TLS); errors are of no interest.
        let _ = stream.shutdown().await;
        Ok(samples)
    }

    async fn exchange<S>(&self, stream: &mut S) -> Result<(), (Reason, String)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(data) = &self.send {
            stream.write_all(data).await.map_err(|e| send_error(&e))?;
            stream.flush().await.map_err(|e| send_error(&e))?;
        }
        let Some(expect) = &self.expect else {
            return Ok(());
        };
        let mut received = Vec::new();
        let mut chunk = vec![0u8; self.max_read_bytes.min(8192)];
        loop {
            if expect.is_match(&received) {
                return Ok(());
            }
            if received.len() >= self.max_read_bytes {
                return Err((
                    Reason::UnexpectedResponse,
                    format!(
                        "no match for /{}/ in the first {} bytes received: {}",
                        expect.as_str(),
                        received.len(),
                        snippet(&received)
                    ),
                ));
            }
            let want = chunk.len().min(self.max_read_bytes - received.len());
            let n = match stream.read(&mut chunk[..want]).await {
                Ok(n) => n,
                // A TLS peer that closes without close_notify: still a close.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                // A TLS alert after the handshake (TLS 1.3 reports a refused
                // client certificate so) is wrapped in the I/O error.
                Err(e) => {
                    return Err((
                        errors::io_reason(&e),
                        format!("read failed after {} bytes: {e}", received.len()),
                    ))
                }
            };
            if n == 0 {
                return Err((
                    Reason::UnexpectedResponse,
                    format!(
                        "connection closed after {} bytes without a match for /{}/: {}",
                        received.len(),
                        expect.as_str(),
                        snippet(&received)
                    ),
                ));
            }
            received.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Check for TcpCheck {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe())
    }

    fn secrets(&self) -> Vec<String> {
        self.proxy
            .as_deref()
            .map(Proxy::secrets)
            .unwrap_or_default()
    }
}

fn send_error(e: &std::io::Error) -> (Reason, String) {
    (errors::io_reason(e), format!("send failed: {e}"))
}

/// The start of `data`, escaped for a one-line message.
fn snippet(data: &[u8]) -> String {
    if data.is_empty() {
        return "nothing received".to_string();
    }
    let shown = &data[..data.len().min(SNIPPET_BYTES)];
    let mut text = format!("\"{}\"", shown.escape_ascii());
    if data.len() > SNIPPET_BYTES {
        text.push_str("...");
    }
    text
}

/// Split `host:port`. IPv6 literals must be in brackets; the returned host
/// has them removed.
fn split_host_port(address: &str) -> Result<(String, u16), String> {
    super::shared::targets::Endpoint::parse(address).map(|e| (e.host, e.port))
}

crate::checks::kind!(TcpSpec => TcpCheck, "tcp", probe "address");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_addresses() {
        assert_eq!(
            split_host_port("db.internal:5432").unwrap(),
            ("db.internal".to_string(), 5432)
        );
        assert_eq!(
            split_host_port("[::1]:5432").unwrap(),
            ("::1".to_string(), 5432)
        );
        assert!(split_host_port("db.internal")
            .unwrap_err()
            .contains("missing port"));
        assert!(split_host_port("::1:5432")
            .unwrap_err()
            .contains("brackets"));
        assert!(split_host_port("[::1]")
            .unwrap_err()
            .contains("missing port"));
        assert!(split_host_port("host:0")
            .unwrap_err()
            .contains("1 to 65535"));
        assert!(split_host_port(":80").unwrap_err().contains("missing host"));
    }

    #[test]
    fn snippet_escapes_and_truncates() {
        assert_eq!(snippet(b"+OK\r\n"), "\"+OK\\r\\n\"");
        assert!(snippet(&[b'a'; 500]).ends_with("..."));
        assert_eq!(snippet(b""), "nothing received");
    }
}
