//! The one way kinds reach a server over TCP: resolve the name (an IP
//! literal needs no lookup) and keep the addresses of the family asked for
//! (`ip_protocol`), connect to them the way Happy Eyeballs does (RFC 8305:
//! addresses of both families interleaved, the next attempt started when
//! the previous one fails or after [`ATTEMPT_DELAY`], the first to connect
//! wins and the others are dropped, each attempt with its own deadline),
//! and optionally a TLS handshake that also reads the certificate's expiry.
//! Each step is its own function so kinds that time phases (tcp, http) can
//! time them, and every failure comes back classified the same way.
//! Reaching the server through an HTTP proxy is in [`super::proxy`].

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::tls;
use crate::checks::{Failure, MetricDesc, Reason, Sample};

/// How long an attempt may go unanswered before the next address is tried
/// alongside it: RFC 8305's recommended "Connection Attempt Delay".
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// IP version of the address connected to.
pub static IP_PROTOCOL: MetricDesc = MetricDesc::gauge(
    "connect_ip_protocol",
    None,
    "IP version (4 or 6) of the address the connection was made to in the last scheduled run.",
);

/// Addresses that did not give the connection.
pub static FAILED_ADDRESSES: MetricDesc = MetricDesc::gauge(
    "connect_failed_addresses",
    None,
    "Number of addresses tried in the last scheduled run that failed, timed out, or had not connected when another one did.",
);

/// Which addresses of a name to connect to (`ip_protocol:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    /// Both families, interleaved, starting with the family the resolver
    /// lists first (Happy Eyeballs).
    #[default]
    Auto,
    /// IPv4 addresses only.
    Ip4,
    /// IPv6 addresses only.
    Ip6,
}

impl IpProtocol {
    fn keeps(self, ip: IpAddr) -> bool {
        match self {
            IpProtocol::Auto => true,
            IpProtocol::Ip4 => ip.is_ipv4(),
            IpProtocol::Ip6 => ip.is_ipv6(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            IpProtocol::Auto => "auto",
            IpProtocol::Ip4 => "ip4",
            IpProtocol::Ip6 => "ip6",
        }
    }
}

/// How a kind connects: the family preference and each address's deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dialer {
    pub ip_protocol: IpProtocol,
    /// The most one address may take to accept; `None`: until the run's
    /// own timeout ends it.
    pub connect_timeout: Option<Duration>,
}

/// A connection and how it was made.
#[derive(Debug)]
pub struct Connected {
    pub stream: TcpStream,
    /// The address that accepted.
    pub addr: SocketAddr,
    /// The addresses tried that did not give the connection, with what
    /// happened to each, in the order they were tried.
    pub lost: Vec<(SocketAddr, String)>,
}

impl Connected {
    /// The IP version connected over and the count of addresses lost.
    pub fn samples(&self) -> Vec<Sample> {
        let version = if self.addr.is_ipv4() { 4.0 } else { 6.0 };
        vec![
            Sample::new(&IP_PROTOCOL, version),
            Sample::new(&FAILED_ADDRESSES, self.lost.len() as f64),
        ]
    }
}

/// The outcome of one connection attempt.
enum Outcome {
    Connected(TcpStream),
    Failed(std::io::Error),
    TimedOut(Duration),
}

impl Dialer {
    /// The addresses of `host:port` this dialer may use: the literal itself
    /// for an IP address, else every address the system resolver gives, in
    /// its order; only those of the family `ip_protocol` asks for.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
        let all = resolve(host, port).await?;
        let kept: Vec<SocketAddr> = all
            .iter()
            .copied()
            .filter(|a| self.ip_protocol.keeps(a.ip()))
            .collect();
        if kept.is_empty() {
            let family = match self.ip_protocol {
                IpProtocol::Ip6 => "IPv6",
                _ => "IPv4",
            };
            let found: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
            return Err(Failure::new(
                Reason::Dns,
                format!(
                    "{host} has no {family} address (ip_protocol: {}); it resolved to {}",
                    self.ip_protocol.name(),
                    found.join(", ")
                ),
            ));
        }
        Ok(kept)
    }

    /// Connect to the first of `addrs` that accepts, Happy Eyeballs style:
    /// the addresses of the two families interleaved, one attempt started
    /// every [`ATTEMPT_DELAY`] (or as soon as the previous one failed), each
    /// with its own `connect_timeout`. The first connection wins and the
    /// attempts still running are dropped. `target` names the server in
    /// the message when every address fails. The stream has Nagle turned
    /// off: checks exchange small messages.
    pub async fn connect(&self, target: &str, addrs: &[SocketAddr]) -> Result<Connected, Failure> {
        let order = interleave(addrs);
        let mut ended: Vec<Option<String>> = vec![None; order.len()];
        let mut last_reason = Reason::Dns;
        let mut running = FuturesUnordered::new();
        let mut next = 0;
        let mut next_start = Instant::now();
        loop {
            if next < order.len() && (running.is_empty() || Instant::now() >= next_start) {
                running.push(self.attempt(next, order[next]));
                next += 1;
                next_start = Instant::now() + ATTEMPT_DELAY;
                continue;
            }
            let Some((index, started, outcome)) = (tokio::select! {
                done = running.next() => done,
                () = tokio::time::sleep_until(next_start), if next < order.len() => continue,
            }) else {
                break;
            };
            let addr: SocketAddr = order[index];
            match outcome {
                Outcome::Connected(stream) => {
                    let _ = stream.set_nodelay(true);
                    let lost = lost_attempts(&order[..next], index, &ended, started);
                    if !lost.is_empty() {
                        tracing::debug!(%addr, ?lost, "connected; other addresses did not");
                    }
                    return Ok(Connected { stream, addr, lost });
                }
                Outcome::Failed(e) => {
                    last_reason = Reason::from_io(&e);
                    ended[index] = Some(e.to_string());
                }
                Outcome::TimedOut(after) => {
                    last_reason = Reason::Timeout;
                    ended[index] = Some(format!(
                        "no answer within {} (connect_timeout)",
                        humantime::format_duration(after)
                    ));
                }
            }
            // A failed attempt starts the next one at once.
            next_start = Instant::now();
        }
        Err(all_failed(target, &order, &ended, last_reason))
    }

    /// One attempt on `addr` (the `index`-th in order), under
    /// `connect_timeout`; returns when it started and how it ended.
    async fn attempt(&self, index: usize, addr: SocketAddr) -> (usize, Instant, Outcome) {
        let started = Instant::now();
        let connect = TcpStream::connect(addr);
        let outcome = match self.connect_timeout {
            None => connect
                .await
                .map_or_else(Outcome::Failed, Outcome::Connected),
            Some(limit) => match tokio::time::timeout(limit, connect).await {
                Ok(result) => result.map_or_else(Outcome::Failed, Outcome::Connected),
                Err(_) => Outcome::TimedOut(limit),
            },
        };
        (index, started, outcome)
    }
}

/// RFC 8305 section 4: alternate the families, starting with the family of
/// the first address; within a family keep the resolver's order.
fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut preferred, mut other): (Vec<&SocketAddr>, Vec<&SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv4() == first.is_ipv4());
    preferred.reverse();
    other.reverse();
    let mut order = Vec::with_capacity(addrs.len());
    while let Some(a) = preferred.pop() {
        order.push(*a);
        if let Some(b) = other.pop() {
            order.push(*b);
        }
    }
    order.extend(other.into_iter().rev());
    order
}

/// What happened to the attempts started before the connection was made,
/// other than the winner: their error, or that they were still waiting.
fn lost_attempts(
    started: &[SocketAddr],
    winner: usize,
    ended: &[Option<String>],
    winner_started: Instant,
) -> Vec<(SocketAddr, String)> {
    let waited = winner_started.elapsed();
    started
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != winner)
        .map(|(i, addr)| {
            let what = ended[i].clone().unwrap_or_else(|| {
                format!(
                    "not connected yet (dropped {} after the winner started)",
                    humantime::format_duration(round_ms(waited))
                )
            });
            (*addr, what)
        })
        .collect()
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// The failure when no address connected, naming each address tried; the
/// reason is that of the last attempt to end.
fn all_failed(
    target: &str,
    order: &[SocketAddr],
    ended: &[Option<String>],
    reason: Reason,
) -> Failure {
    match order {
        [] => Failure::new(
            Reason::Dns,
            format!("cannot resolve {target}: no addresses"),
        ),
        [addr] => Failure::new(
            reason,
            format!(
                "connect to {addr} failed: {}",
                ended[0].as_deref().unwrap_or("no answer")
            ),
        ),
        _ => {
            let mut message = format!(
                "connect to {target} failed on all {} addresses:",
                order.len()
            );
            for (addr, what) in order.iter().zip(ended) {
                let _ = write!(
                    message,
                    " {addr}: {};",
                    what.as_deref().unwrap_or("no answer")
                );
            }
            message.pop();
            Failure::new(reason, message)
        }
    }
}

/// Every address of `host:port`: the literal itself for an IP address,
/// else every address the system resolver gives, in its order.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Failure::new(Reason::Dns, format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Failure::new(
            Reason::Dns,
            format!("cannot resolve {host}: no addresses"),
        ));
    }
    Ok(addrs)
}

/// Connect with the default [`Dialer`] (both families, no per-address
/// deadline), for kinds without dial settings of their own.
pub async fn connect(target: &str, addrs: &[SocketAddr]) -> Result<TcpStream, Failure> {
    Dialer::default()
        .connect(target, addrs)
        .await
        .map(|c| c.stream)
}

/// A TLS handshake over `stream`, and the expiry of the certificate the
/// server presented.
pub async fn handshake<S>(
    connector: &TlsConnector,
    server_name: ServerName<'static>,
    stream: S,
) -> Result<(TlsStream<S>, Option<Sample>), Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let stream = connector
        .connect(server_name, stream)
        .await
        .map_err(|e| Failure::new(Reason::Tls, tls::describe_error(&e)))?;
    let expiry = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(tls::expiry_sample);
    Ok((stream, expiry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        let addrs = resolve("::1", 5432).await.unwrap();
        assert_eq!(addrs, ["[::1]:5432".parse().unwrap()]);
    }

    #[tokio::test]
    async fn a_literal_of_the_other_family_is_refused_with_dns() {
        let dialer = Dialer {
            ip_protocol: IpProtocol::Ip4,
            ..Dialer::default()
        };
        let f = dialer.resolve("::1", 80).await.unwrap_err();
        assert_eq!(f.reason, Reason::Dns);
        assert_eq!(
            f.message,
            "::1 has no IPv4 address (ip_protocol: ip4); it resolved to ::1"
        );
    }

    #[test]
    fn families_alternate_starting_with_the_first() {
        let v6a = addr("[2001:db8::1]:80");
        let v6b = addr("[2001:db8::2]:80");
        let v4a = addr("192.0.2.1:80");
        let v4b = addr("192.0.2.2:80");
        let v4c = addr("192.0.2.3:80");
        assert_eq!(
            interleave(&[v6a, v6b, v4a, v4b, v4c]),
            [v6a, v4a, v6b, v4b, v4c]
        );
        assert_eq!(interleave(&[v4a, v6a, v4b]), [v4a, v6a, v4b]);
        assert_eq!(interleave(&[]), Vec::<SocketAddr>::new());
    }

    #[tokio::test]
    async fn a_refused_connect_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let f = connect("db", &[addr]).await.unwrap_err();
        assert_eq!(f.reason, Reason::ConnectionRefused);
        assert!(f
            .message
            .starts_with(&format!("connect to {addr} failed: ")));
    }
}
