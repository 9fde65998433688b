//! Servers that require a client certificate, against the `tcp`, the
//! `clickhouse` (https) and the `kafka` kinds. With TLS 1.3 the server's refusal of a
//! missing or foreign client certificate arrives as an alert after the
//! client has finished its handshake, on the first read; the check must
//! still report `tls`, not `protocol` or `network`. The servers are rustls
//! servers started by the test on 127.0.0.1.

mod common;

use common::{build, ctx};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use runbook_exporter::checks::{Check, Failure, Reason, Sample};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Run with an outer limit, so a hanging check fails the test.
async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx()))
        .await
        .expect("the check run finishes within 30 s")
}

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca() -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf certificate signed by `ca`: (PEM certificate, PEM key, DER, key).
struct Leaf {
    pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn leaf(ca: &Ca, names: &[&str], client: bool) -> Leaf {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    Leaf {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// A TLS 1.3 server that requires a client certificate from `ca`, and
/// answers each connection's first read with `reply`.
async fn serve_mtls(ca: &Ca, server: &Leaf, reply: &'static [u8]) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.der.clone()], server.key.clone_key())
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
                let mut buf = [0u8; 4096];
                if stream.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = stream.write_all(reply).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// The three client setups: none, one from another CA, the right one.
/// Writes the PEM files to `dir` and returns the `tls` YAML of each.
fn client_setups(dir: &Path, server_ca: &Ca, client_ca: &Ca) -> [(String, &'static str); 3] {
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, server_ca.cert.pem()).unwrap();
    let write = |name: &str, leaf: &Leaf| {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &leaf.pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        format!(
            "ca_file: {}, cert_file: {}, key_file: {}",
            ca_file.display(),
            cert.display(),
            key.display()
        )
    };
    let foreign = write("foreign", &leaf(&ca(), &["client"], true));
    let trusted = write("trusted", &leaf(client_ca, &["client"], true));
    [
        (format!("ca_file: {}", ca_file.display()), "no client cert"),
        (foreign, "a client cert from another CA"),
        (trusted, "the trusted client cert"),
    ]
}

/// The trusted client setup, for a control run after the refusals; the
/// directory holds its certificate files.
struct Trusted {
    yaml: String,
    what: &'static str,
    _dir: tempfile::TempDir,
}

/// Start a server that requires a client certificate from its own CA and
/// answers `reply`; run the check `yaml` makes of `(addr, tls)` with no
/// client certificate and with a foreign one, asserting each fails with
/// `tls`; and return the check's config with the trusted certificate.
async fn refused_unless_trusted(
    names: &[&str],
    reply: &'static [u8],
    yaml: impl Fn(SocketAddr, &str) -> String,
) -> Trusted {
    let ca = ca();
    let server = leaf(&ca, names, false);
    let addr = serve_mtls(&ca, &server, reply).await;
    let dir = tempfile::tempdir().unwrap();
    let [none, foreign, (tls, what)] = client_setups(dir.path(), &ca, &ca);
    for (tls, what) in [none, foreign] {
        let failure = run(build(&yaml(addr, &tls)).as_ref())
            .await
            .expect_err(&format!("{what}: the server refuses the connection"));
        assert_eq!(failure.reason, Reason::Tls, "{what}: {}", failure.message);
    }
    Trusted {
        yaml: yaml(addr, &tls),
        what,
        _dir: dir,
    }
}

#[tokio::test]
async fn tcp_a_refused_or_missing_client_certificate_is_tls() {
    let trusted = refused_unless_trusted(&["localhost"], b"+OK\r\n", |addr, tls| {
        format!(
            "kind: tcp\naddress: {addr}\ntls: true\ntls_config: {{{tls}, server_name: localhost}}\nsend: \"hello\\n\"\nexpect: '^\\+OK'"
        )
    })
    .await;
    // The control: the same server accepts the trusted certificate.
    if let Err(f) = run(build(&trusted.yaml).as_ref()).await {
        panic!("{}: {} {}", trusted.what, f.reason, f.message);
    }
}

#[tokio::test]
async fn clickhouse_https_a_refused_or_missing_client_certificate_is_tls() {
    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nOk.";
    let trusted = refused_unless_trusted(&["127.0.0.1"], reply, |addr, tls| {
        format!("kind: clickhouse\nurl: https://{addr}\nuser: runbook\ntls: {{{tls}}}")
    })
    .await;
    // The control: with the trusted certificate TLS succeeds, and the run
    // gets as far as this server's non-ClickHouse answers.
    if let Err(f) = run(build(&trusted.yaml).as_ref()).await {
        assert_ne!(f.reason, Reason::Tls, "{}: {}", trusted.what, f.message);
    }
}

#[tokio::test]
async fn kafka_a_refused_or_missing_client_certificate_is_tls() {
    // Never gets as far as a Kafka answer: the refusal comes first (this
    // server has no Kafka answers, so there is no control run).
    refused_unless_trusted(&["localhost"], b"", |addr, tls| {
        format!(
            "kind: kafka\nbrokers: ['{addr}']\ntopics: [none]\ntls: true\ntls_config: {{{tls}, server_name: localhost}}"
        )
    })
    .await;
}
