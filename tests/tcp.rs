//! The `tcp` kind against servers started by the tests on 127.0.0.1.

mod common;

use common::{build, ctx};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use runbook_exporter::checks::shared::dial::Dialer;
use runbook_exporter::checks::{Check, CheckSpec, Failure, Reason, Sample};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Run with a generous outer limit, so a hanging check fails the test
/// rather than the test run.
async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx()))
        .await
        .expect("run finishes")
}

fn phases(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| s.desc.name == "tcp_phase_duration")
        .map(|s| {
            // A phase lies within its run, bounded by `run` at 30 s (a
            // duration is never negative: asserting that proves nothing).
            assert!(s.value < 30.0, "phase longer than its run: {s:?}");
            assert_eq!(s.labels.len(), 1);
            assert_eq!(s.labels[0].0, "phase");
            s.labels[0].1.clone()
        })
        .collect()
}

/// A server that accepts connections and answers each with `reply(request)`
/// after reading one chunk (or nothing, if `read_first` is false).
async fn serve(
    read_first: bool,
    reply: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                let n = if read_first {
                    stream.read(&mut buf).await.unwrap_or(0)
                } else {
                    0
                };
                let _ = stream.write_all(&reply(&buf[..n])).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn connect_succeeds_with_phase_samples() {
    let addr = serve(false, |_| Vec::new()).await;
    let check = build(&format!("kind: tcp\naddress: {addr}"));
    let samples = run(check.as_ref()).await.expect("check passes");
    // An IP literal needs no resolving.
    assert_eq!(phases(&samples), ["connect"]);
    assert_eq!(samples.len(), 3);
}

#[tokio::test]
async fn a_host_name_adds_the_resolve_phase() {
    // `localhost` comes from /etc/hosts; it may list ::1 first, where nothing
    // listens, so the check moves on to 127.0.0.1.
    let addr = serve(false, |_| Vec::new()).await;
    let check = build(&format!("kind: tcp\naddress: localhost:{}", addr.port()));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(phases(&samples), ["resolve", "connect"]);
}

#[tokio::test]
async fn connection_refused() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let check = build(&format!("kind: tcp\naddress: 127.0.0.1:{port}"));
    let failure = run(check.as_ref()).await.expect_err("nothing listens");
    assert_eq!(failure.reason, Reason::ConnectionRefused);
    assert!(
        failure.message.contains(&format!("127.0.0.1:{port}")),
        "{}",
        failure.message
    );
    assert!(phases(&failure.samples).is_empty());
}

#[tokio::test]
async fn send_and_expect_pass() {
    let addr = serve(true, |req| {
        if req == b"PING\r\n" {
            b"+PONG\r\n".to_vec()
        } else {
            b"-ERR unknown\r\n".to_vec()
        }
    })
    .await;
    let check = build(&format!(
        "kind: tcp\naddress: {addr}\nsend: \"PING\\r\\n\"\nexpect: '^\\+PONG\\r\\n'"
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(phases(&samples), ["connect", "exchange"]);
}

#[tokio::test]
async fn expect_without_send_reads_the_greeting() {
    let addr = serve(false, |_| b"220 mail.test ESMTP ready\r\n".to_vec()).await;
    let check = build(&format!("kind: tcp\naddress: {addr}\nexpect: '^220 '"));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(phases(&samples), ["connect", "exchange"]);
}

#[tokio::test]
async fn a_wrong_answer_is_an_unexpected_response() {
    let addr = serve(true, |_| b"-ERR unknown command\r\n".to_vec()).await;
    let check = build(&format!(
        "kind: tcp\naddress: {addr}\nsend: \"PING\\r\\n\"\nexpect: '^\\+PONG'"
    ));
    let failure = run(check.as_ref())
        .await
        .expect_err("answer does not match");
    assert_eq!(failure.reason, Reason::UnexpectedResponse);
    assert!(
        failure.message.contains("-ERR unknown command"),
        "{}",
        failure.message
    );
    assert_eq!(phases(&failure.samples), ["connect", "exchange"]);
}

#[tokio::test]
async fn reading_stops_at_max_read_bytes() {
    let addr = serve(false, |_| vec![b'x'; 4096]).await;
    let check = build(&format!(
        "kind: tcp\naddress: {addr}\nexpect: 'never'\nmax_read_bytes: 100"
    ));
    let failure = run(check.as_ref()).await.expect_err("no match");
    assert_eq!(failure.reason, Reason::UnexpectedResponse);
    assert!(
        failure.message.contains("first 100 bytes"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_silent_server_leaves_the_timeout_to_the_scheduler() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            // Accept and hold the connection open without a word.
            let (stream, _) = listener.accept().await.unwrap();
            open.push(stream);
        }
    });
    let check = build(&format!("kind: tcp\naddress: {addr}\nexpect: 'hello'"));
    let outcome = tokio::time::timeout(Duration::from_millis(500), check.run(&ctx())).await;
    assert!(outcome.is_err(), "the run ended on its own: {outcome:?}");
    server.abort();
}

#[test]
fn validation_reports_problems() {
    let spec: CheckSpec = serde_saphyr::from_str(
        "kind: tcp\naddress: db.internal\ntls_config: {server_name: db}\nexpect: '('\nmax_read_bytes: 0",
    )
    .unwrap();
    let fields: Vec<String> = spec.validate().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        ["address", "tls_config", "expect", "max_read_bytes"]
    );

    let unknown = serde_saphyr::from_str::<CheckSpec>("kind: tcp\naddress: a:1\nport: 2");
    assert!(unknown.is_err());
}

// --- TLS ---------------------------------------------------------------

struct TestCert {
    pem: String,
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    not_after: i64,
}

fn self_signed() -> TestCert {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 6, 15);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        pem: cert.pem(),
        der: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_after: rcgen::date_time_ymd(2040, 6, 15).unix_timestamp(),
    }
}

/// A TLS server that answers `+OK` to whatever it reads.
async fn serve_tls(cert: &TestCert) -> SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                if stream.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = stream.write_all(b"+OK\r\n").await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tls_without_the_ca_fails() {
    let cert = self_signed();
    let addr = serve_tls(&cert).await;
    let check = build(&format!(
        "kind: tcp\naddress: {addr}\ntls: true\ntls_config:\n  server_name: localhost"
    ));
    let failure = run(check.as_ref())
        .await
        .expect_err("certificate is not trusted");
    assert_eq!(failure.reason, Reason::Tls);
    assert!(
        failure.message.contains("TLS handshake failed"),
        "{}",
        failure.message
    );
    assert_eq!(phases(&failure.samples), ["connect"]);
}

#[tokio::test]
async fn tls_with_the_ca_passes_and_reports_expiry() {
    let cert = self_signed();
    let addr = serve_tls(&cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    let check = build(&format!(
        "kind: tcp\naddress: {addr}\ntls: true\ntls_config:\n  ca_file: {}\n  server_name: localhost\nsend: \"hello\\n\"\nexpect: '^\\+OK'",
        ca.display()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(phases(&samples), ["connect", "tls", "exchange"]);
    let expiry: Vec<f64> = samples
        .iter()
        .filter(|s| s.desc.name == "tls_earliest_cert_expiry_timestamp")
        .map(|s| s.value)
        .collect();
    assert_eq!(expiry, [cert.not_after as f64]);
}

#[tokio::test]
async fn tls_name_mismatch_fails() {
    let cert = self_signed();
    let addr = serve_tls(&cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    // Without server_name the check verifies the certificate for 127.0.0.1.
    let check = build(&format!(
        "kind: tcp\naddress: {addr}\ntls: true\ntls_config:\n  ca_file: {}",
        ca.display()
    ));
    let failure = run(check.as_ref()).await.expect_err("name does not match");
    assert_eq!(failure.reason, Reason::Tls);
}

// --- Addresses: Happy Eyeballs and per-address deadlines -----------------

/// A listener with `listen(1)` whose queue is full: the kernel drops
/// further SYNs, so a connect to it hangs, like a blackholed address.
struct Blackhole {
    addr: SocketAddr,
    _listener: TcpListener,
    _held: Vec<std::net::TcpStream>,
}

fn blackhole(ip: &str) -> Blackhole {
    let bind = SocketAddr::new(ip.parse().unwrap(), 0);
    let socket = if bind.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .unwrap();
    socket.bind(bind).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => held.push(stream),
            Err(_) => {
                return Blackhole {
                    addr,
                    _listener: listener,
                    _held: held,
                }
            }
        }
    }
    panic!("the queue of {addr} never filled after 16 connections: no blackhole");
}

fn sample_value(samples: &[Sample], name: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.desc.name == name)
        .map(|s| s.value)
}

#[tokio::test]
async fn a_blackholed_address_before_a_working_one_connects_to_the_working_one() {
    let hole = blackhole("::1");
    let working = serve(false, |_| Vec::new()).await;
    // No per-address deadline: a dial that waited for the blackholed
    // address would hang until the test's 30 s bound.
    let dialer = Dialer::default();
    let connected = tokio::time::timeout(
        Duration::from_secs(30),
        dialer.connect("dual.test", &[hole.addr, working]),
    )
    .await
    .expect("the dial ends without waiting for the blackholed address")
    .expect("the working address connects");

    assert_eq!(connected.addr, working);
    assert_eq!(connected.lost.len(), 1, "{:?}", connected.lost);
    assert_eq!(connected.lost[0].0, hole.addr);
    assert!(
        connected.lost[0].1.starts_with("not connected yet"),
        "{:?}",
        connected.lost
    );
    let samples = connected.samples();
    assert_eq!(
        sample_value(&samples, "connect_failed_addresses"),
        Some(1.0)
    );
    assert_eq!(sample_value(&samples, "connect_ip_protocol"), Some(4.0));
}

#[tokio::test]
async fn each_address_has_its_own_connect_timeout() {
    let first = blackhole("127.0.0.1");
    let second = blackhole("::1");
    let dialer = Dialer {
        connect_timeout: Some(Duration::from_millis(300)),
        ..Dialer::default()
    };
    let failure = tokio::time::timeout(
        Duration::from_secs(30),
        dialer.connect("dual.test:80", &[first.addr, second.addr]),
    )
    .await
    .expect("the per-address deadlines end the dial")
    .expect_err("no address answers");

    assert_eq!(failure.reason, Reason::Timeout);
    assert_eq!(
        failure.message,
        format!(
            "connect to dual.test:80 failed on all 2 addresses: {}: no answer within 300ms (connect_timeout); {}: no answer within 300ms (connect_timeout)",
            first.addr, second.addr
        )
    );
}

#[tokio::test]
async fn a_refused_address_hands_over_at_once_and_is_reported() {
    let refused = closed_port_v6();
    let working = serve(false, |_| Vec::new()).await;
    let connected = Dialer::default()
        .connect("dual.test", &[refused, working])
        .await
        .expect("the working address connects");
    assert_eq!(connected.addr, working);
    assert_eq!(connected.lost.len(), 1);
    assert!(
        connected.lost[0].1.contains("refused"),
        "{:?}",
        connected.lost
    );
}

fn closed_port_v6() -> SocketAddr {
    let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn the_check_reports_the_ip_version_and_lost_addresses() {
    let addr = serve(false, |_| Vec::new()).await;
    let check = build(&format!("kind: tcp\naddress: {addr}\nip_protocol: ip4"));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(sample_value(&samples, "connect_ip_protocol"), Some(4.0));
    assert_eq!(
        sample_value(&samples, "connect_failed_addresses"),
        Some(0.0)
    );

    let check = build(&format!("kind: tcp\naddress: {addr}\nip_protocol: ip6"));
    let failure = run(check.as_ref()).await.expect_err("no IPv6 address");
    assert_eq!(failure.reason, Reason::Dns);
    assert!(
        failure.message.contains("has no IPv6 address"),
        "{}",
        failure.message
    );
}

// --- Certificates marked CA:TRUE, and expired ones ---------------------

/// A self-signed certificate for localhost marked `CA:TRUE`, as
/// `openssl req -x509` makes them.
fn ca_true_leaf() -> TestCert {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 6, 15);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        pem: cert.pem(),
        der: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_after: rcgen::date_time_ymd(2040, 6, 15).unix_timestamp(),
    }
}

/// A CA (its PEM) and a localhost leaf it signed that expired in 2021.
fn expired_leaf() -> (String, TestCert) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let leaf = TestCert {
        pem: cert.pem(),
        der: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_after: rcgen::date_time_ymd(2021, 1, 1).unix_timestamp(),
    };
    (ca.pem(), leaf)
}

fn tls_check(addr: SocketAddr, ca: &std::path::Path, extra: &str) -> Box<dyn Check> {
    build(&format!(
        "kind: tcp\naddress: {addr}\ntls: true\ntls_config:\n  ca_file: {}\n  server_name: localhost\n{extra}",
        ca.display()
    ))
}

#[tokio::test]
async fn a_ca_true_leaf_is_explained_and_accepted_only_when_pinned() {
    let cert = ca_true_leaf();
    let addr = serve_tls(&cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("leaf.pem");
    std::fs::write(&ca, &cert.pem).unwrap();

    // In ca_file but marked as a CA: refused, and the message says why and
    // what setting accepts it.
    let failure = run(tls_check(addr, &ca, "").as_ref())
        .await
        .expect_err("webpki refuses a CA as the server's certificate");
    assert_eq!(failure.reason, Reason::Tls);
    assert!(
        failure.message.contains("CA:TRUE")
            && failure.message.contains("CaUsedAsEndEntity")
            && failure.message.contains("accept_ca_leaf: true"),
        "{}",
        failure.message
    );

    let samples = run(tls_check(addr, &ca, "  accept_ca_leaf: true").as_ref())
        .await
        .expect("the pinned CA:TRUE leaf is accepted");
    assert_eq!(phases(&samples), ["connect", "tls"]);
    assert_eq!(
        sample_value(&samples, "tls_earliest_cert_expiry_timestamp"),
        Some(cert.not_after as f64)
    );

    // Still the name is checked...
    let wrong_name = build(&format!(
        "kind: tcp\naddress: {addr}\ntls: true\ntls_config:\n  ca_file: {}\n  server_name: db.example.com\n  accept_ca_leaf: true",
        ca.display()
    ));
    let failure = run(wrong_name.as_ref()).await.expect_err("wrong name");
    assert_eq!(failure.reason, Reason::Tls);
    assert!(
        failure.message.contains("NotValidForName"),
        "{}",
        failure.message
    );

    // ...and only the very certificate in ca_file is accepted.
    let other = dir.path().join("other.pem");
    std::fs::write(&other, ca_true_leaf().pem).unwrap();
    let failure = run(tls_check(addr, &other, "  accept_ca_leaf: true").as_ref())
        .await
        .expect_err("another CA:TRUE certificate is no pin for this one");
    assert_eq!(failure.reason, Reason::Tls);
}

#[tokio::test]
async fn an_expired_certificate_is_a_tls_failure() {
    let (ca_pem, leaf) = expired_leaf();
    let addr = serve_tls(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    for extra in ["", "  accept_ca_leaf: true"] {
        let failure = run(tls_check(addr, &ca, extra).as_ref())
            .await
            .expect_err("the certificate expired in 2021");
        assert_eq!(failure.reason, Reason::Tls);
        assert!(failure.message.contains("expired"), "{}", failure.message);
        assert_eq!(phases(&failure.samples), ["connect"]);
    }
}

// --- Through the real forward proxy (tinyproxy) -------------------------

#[tokio::test]
async fn a_tunnel_through_the_proxy_reads_the_greeting() {
    let proxy = std::env::var("RUNBOOK_TEST_PROXY_URL")
        .expect("RUNBOOK_TEST_PROXY_URL not set: run scripts/services.sh up proxy");
    let log = std::env::var("RUNBOOK_TEST_PROXY_LOG")
        .expect("RUNBOOK_TEST_PROXY_LOG not set: run scripts/services.sh up proxy");
    // The server speaks first: the tunnel must not swallow its greeting.
    let addr = serve(false, |_| b"220 mail.test ESMTP ready\r\n".to_vec()).await;
    let check = build(&format!(
        "kind: tcp\naddress: {addr}\nproxy_url: {proxy}\nexpect: '^220 '"
    ));
    let samples = run(check.as_ref())
        .await
        .expect("the tunnel carries the greeting");
    assert_eq!(phases(&samples), ["connect", "exchange"]);

    let needle = format!("CONNECT {addr} HTTP/1.1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(&needle)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy log {log} has no {needle:?} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let password = url::Url::parse(&proxy)
        .unwrap()
        .password()
        .unwrap()
        .to_string();
    assert!(check.secrets().contains(&password));
}
