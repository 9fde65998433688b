//! The one way kinds reach a server over TCP: resolve the name (an IP
//! literal needs no lookup), connect to each address in turn as `nc` does,
//! and optionally a TLS handshake that also reads the certificate's expiry.
//! Each step is its own function so kinds that time phases (tcp, http) can
//! time them, and every failure comes back classified the same way.

use std::net::{IpAddr, SocketAddr};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::tls;
use crate::checks::{Failure, Reason, Sample};

/// The addresses of `host:port`: the literal itself for an IP address,
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

/// Connect to the first of `addrs` that accepts, trying each in turn;
/// `target` names the server in the message when all of them fail. The
/// stream has Nagle turned off: checks exchange small messages.
pub async fn connect(target: &str, addrs: &[SocketAddr]) -> Result<TcpStream, Failure> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some((*addr, e)),
        }
    }
    let Some((addr, e)) = last else {
        return Err(Failure::new(
            Reason::Dns,
            format!("cannot resolve {target}: no addresses"),
        ));
    };
    let message = if addrs.len() == 1 {
        format!("connect to {addr} failed: {e}")
    } else {
        format!(
            "connect to {target} failed on all {} addresses; last, {addr}: {e}",
            addrs.len()
        )
    };
    Err(Failure::new(Reason::from_io(&e), message))
}

/// A TLS handshake over `stream`, and the expiry of the certificate the
/// server presented.
pub async fn handshake(
    connector: &TlsConnector,
    server_name: ServerName<'static>,
    stream: TcpStream,
) -> Result<(TlsStream<TcpStream>, Option<Sample>), Failure> {
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

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        let addrs = resolve("::1", 5432).await.unwrap();
        assert_eq!(addrs, ["[::1]:5432".parse().unwrap()]);
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
