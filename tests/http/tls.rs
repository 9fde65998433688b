//! The `http` check over TLS: untrusted, pinned, insecure, `CA:TRUE` and
//! expired certificates.

use super::*;

#[tokio::test]
async fn https_with_an_untrusted_certificate_fails_tls() {
    let cert = self_signed();
    let server = serve_tls(cert.acceptor, |_| reply(200, "secure")).await;
    let check = build(&format!("kind: http\nurl: {}", server.url("https", "/")));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::Tls);
    assert!(
        f.message.starts_with("TLS handshake failed"),
        "{}",
        f.message
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn https_with_the_ca_file_passes_and_reports_the_expiry() {
    let cert = self_signed();
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    ca.write_all(cert.cert_pem.as_bytes()).unwrap();
    let server = serve_tls(cert.acceptor, |_| reply(200, "secure")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\ntls: {{ca_file: {:?}}}",
        server.url("https", "/"),
        ca.path()
    ));

    let samples = run(&*check).await.expect("the CA is trusted");

    assert_eq!(
        phases(&samples),
        ["resolve", "connect", "tls", "processing", "transfer"]
    );
    assert_eq!(value(&samples, "http_ssl", &[]), Some(1.0));
    assert_eq!(
        value(&samples, "tls_earliest_cert_expiry_timestamp", &[]),
        Some(cert.not_after as f64)
    );
}

#[tokio::test]
async fn https_with_the_ca_file_verifies_the_configured_server_name() {
    let cert = self_signed();
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    ca.write_all(cert.cert_pem.as_bytes()).unwrap();
    let server = serve_tls(cert.acceptor, |_| reply(200, "secure")).await;
    let url = server.url("https", "/");
    let with_name = |name: &str| {
        build(&format!(
            "kind: http\nurl: {url}\ntls: {{ca_file: {:?}, server_name: {name}}}",
            ca.path()
        ))
    };

    run(&*with_name("localhost"))
        .await
        .expect("localhost is in the certificate");
    let f = failure(run(&*with_name("db.example.com")).await);
    assert_eq!(f.reason, Reason::Tls);
}

#[tokio::test]
async fn https_with_insecure_skip_verify_passes() {
    let cert = self_signed();
    let server = serve_tls(cert.acceptor, |_| reply(200, "secure")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\ntls: {{insecure_skip_verify: true}}",
        server.url("https", "/")
    ));

    let samples = run(&*check).await.expect("verification is skipped");

    assert_eq!(value(&samples, "http_ssl", &[]), Some(1.0));
    assert_eq!(
        value(&samples, "tls_earliest_cert_expiry_timestamp", &[]),
        Some(cert.not_after as f64)
    );
}

// Certificates marked CA:TRUE, and expired ones

/// A self-signed certificate for 127.0.0.1 marked `CA:TRUE`, as
/// `openssl req -x509` makes them: its PEM and an acceptor serving it.
fn ca_true_leaf() -> (String, TlsAcceptor) {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), acceptor(&cert, &key))
}

#[tokio::test]
async fn a_ca_true_leaf_is_explained_and_accepted_only_when_pinned() {
    let (pem, tls) = ca_true_leaf();
    let server = serve_tls(tls, |_| reply(200, "legacy")).await;
    let ca = pem_file(&pem);
    let url = server.url("https", "/");

    let refused = build(&format!(
        "kind: http\nurl: {url}\ntls: {{ca_file: {:?}}}",
        ca.path()
    ));
    let f = failure(run(&*refused).await);
    assert_eq!(f.reason, Reason::Tls);
    assert!(
        f.message.contains("CA:TRUE") && f.message.contains("accept_ca_leaf: true"),
        "{}",
        f.message
    );

    let accepted = build(&format!(
        "kind: http\nurl: {url}\ntls: {{ca_file: {:?}, accept_ca_leaf: true}}",
        ca.path()
    ));
    let samples = run(&*accepted).await.expect("the pinned leaf is accepted");
    assert_eq!(value(&samples, "http_status_code", &[]), Some(200.0));
    assert_eq!(server.requests().len(), 1);

    // Another CA:TRUE certificate in ca_file pins nothing for this server.
    let other = pem_file(&ca_true_leaf().0);
    let check = build(&format!(
        "kind: http\nurl: {url}\ntls: {{ca_file: {:?}, accept_ca_leaf: true}}",
        other.path()
    ));
    assert_eq!(failure(run(&*check).await).reason, Reason::Tls);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn accept_ca_leaf_without_ca_file_is_a_config_error() {
    let spec: CheckSpec =
        serde_saphyr::from_str("kind: http\nurl: https://127.0.0.1/\ntls: {accept_ca_leaf: true}")
            .unwrap();
    let err = &spec.build().err().expect("the build fails")[0];
    assert_eq!(err.field, "tls.accept_ca_leaf");
}

#[tokio::test]
async fn an_expired_certificate_is_a_tls_failure() {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    let server = serve_tls(acceptor(&leaf, &key), |_| reply(200, "stale")).await;
    let ca_file = pem_file(&ca.pem());
    let check = build(&format!(
        "kind: http\nurl: {}\ntls: {{ca_file: {:?}}}",
        server.url("https", "/"),
        ca_file.path()
    ));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::Tls);
    assert!(f.message.contains("expired"), "{}", f.message);
    assert_eq!(
        value(&f.samples, "tls_earliest_cert_expiry_timestamp", &[]),
        None
    );
    assert!(server.requests().is_empty());
}
