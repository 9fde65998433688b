//! The `redis` kind against faults of real Redis servers: a wrong or
//! missing password, nothing listening, a restarted server, a run cancelled
//! by its timeout, and a mutual TLS server refusing clients without the
//! right certificate.

mod common;
mod redis_support;

use redis_support::*;

use std::time::{Duration, Instant};

use common::{build, ctx};
use runbook_exporter::checks::Reason;

#[tokio::test]
async fn a_wrong_or_missing_password_fails_with_reason_auth() {
    let wrong = build(&format!(
        "kind: redis\nurl: {}\npassword: not-the-password",
        primary_url()
    ));
    let failure = run(wrong.as_ref()).await.expect_err("wrong password");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(failure.samples.is_empty());
    // The scheduler scrubs messages of these.
    assert_eq!(wrong.secrets(), ["not-the-password"]);

    // The password may come in the URL, too.
    let url = primary_url().replacen("redis://", "redis://:not-the-password@", 1);
    let in_url = build(&format!("kind: redis\nurl: {url}"));
    let failure = run(in_url.as_ref()).await.expect_err("wrong password");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert_eq!(in_url.secrets(), ["not-the-password"]);

    let none = build(&format!("kind: redis\nurl: {}", primary_url()));
    let failure = run(none.as_ref()).await.expect_err("no password");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(failure.message.contains("NOAUTH"), "{}", failure.message);
}

#[tokio::test]
async fn an_acl_user_logs_in_and_one_without_info_fails_with_reason_auth() {
    let server = OwnRedis::start();
    let mut admin = client(&server.url()).await;
    let _: () = cmd(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "runbook-probe",
            "reset",
            "on",
            ">probe-pass",
            "+ping",
            "+info",
        ],
    )
    .await;
    let _: () = cmd(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "runbook-noinfo",
            "reset",
            "on",
            ">probe-pass",
            "+ping",
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "probe-pass\n").unwrap();

    let probe = build(&format!(
        "kind: redis\nurl: {}\nusername: runbook-probe\npassword_file: {}",
        server.url(),
        file.display()
    ));
    let samples = run(probe.as_ref())
        .await
        .expect("the ACL user may PING and INFO");
    assert!(must(&samples, "redis_ping_duration") > 0.0);

    let noinfo = build(&format!(
        "kind: redis\nurl: {}\nusername: runbook-noinfo\npassword_file: {}",
        server.url(),
        file.display()
    ));
    let failure = run(noinfo.as_ref()).await.expect_err("INFO is not allowed");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(failure.message.contains("INFO"), "{}", failure.message);
    // The PING still succeeded, so its round trip stays valid.
    assert!(value(&failure.samples, "redis_ping_duration", &[]).is_some());
}

#[tokio::test]
async fn nothing_listening_fails_refused_and_backs_off() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let check = build(&format!("kind: redis\nurl: redis://127.0.0.1:{port}"));
    let failure = run(check.as_ref()).await.expect_err("nothing listens");
    assert_eq!(failure.reason, Reason::ConnectionRefused);
    assert!(failure.message.contains(&format!("127.0.0.1:{port}")));
    // Right after a failed connect the check does not try again, but
    // reports the same reason and when it will: a listener now on the
    // port sees no connection attempt.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port} again: {e}"));
    listener.set_nonblocking(true).unwrap();
    let again = run(check.as_ref()).await.expect_err("still nothing");
    assert_eq!(again.reason, Reason::ConnectionRefused);
    assert!(
        again.message.contains("next reconnect attempt in"),
        "{}",
        again.message
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the check connected during its back-off: {other:?}"),
    }
}

#[tokio::test]
async fn a_restarted_server_is_down_then_up_again_without_a_new_check() {
    let mut server = OwnRedis::start();
    let check = check_on(&server.url());
    let before = run(check.as_ref()).await.expect("check passes");

    server.kill();
    let failure = run(check.as_ref())
        .await
        .expect_err("the check fails while Redis is down");
    assert!(
        matches!(failure.reason, Reason::ConnectionRefused | Reason::Network),
        "{failure:?}"
    );
    assert!(failure.samples.is_empty(), "{:?}", failure.samples);

    // Start times have a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.restart();
    // Reconnect attempts back off (1 s, 2 s, ...), so allow some time.
    let limit = Duration::from_secs(30);
    let deadline = Instant::now() + limit;
    let after = loop {
        match run(check.as_ref()).await {
            Ok(samples) => break samples,
            Err(f) => assert!(
                Instant::now() < deadline,
                "the same check did not recover within {limit:?} of the restart: {f:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        must(&after, "redis_start_timestamp") > must(&before, "redis_start_timestamp"),
        "the restart is visible in the start time"
    );
}

#[tokio::test]
async fn a_run_cancelled_by_its_timeout_leaves_a_working_check() {
    let server = OwnRedis::start();
    let check = check_on(&server.url());
    run(check.as_ref()).await.expect("check passes");
    let mut admin = client(&server.url()).await;
    // Every client's commands wait for a second.
    let _: () = cmd(&mut admin, &["CLIENT", "PAUSE", "1000", "ALL"]).await;
    let cancelled = tokio::time::timeout(Duration::from_millis(200), check.run(&ctx())).await;
    assert!(cancelled.is_err(), "the run waits for the paused server");
    // The next run works, on a connection without a stray reply in it.
    let samples = run(check.as_ref())
        .await
        .expect("check passes after the pause");
    assert!(must(&samples, "redis_ping_duration") > 0.0);
    let again = run(check.as_ref()).await.expect("and keeps passing");
    assert!(must(&again, "redis_ping_duration") > 0.0);
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate
/// signed by it, as PEM files in `dir` named `{prefix}ca.crt`,
/// `{prefix}server.crt`/`.key` and `{prefix}client.crt`/`.key`.
fn write_pki(dir: &std::path::Path, prefix: &str) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    // Distinct names: OpenSSL takes a certificate whose subject is its
    // issuer's for self-signed.
    let named = |sans: Vec<String>, cn: String| {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = named(Vec::new(), format!("{prefix}test CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let write = |name: &str, pem: String| std::fs::write(dir.join(format!("{prefix}{name}")), pem);
    write("ca.crt", ca.pem()).unwrap();
    for (name, san) in [("server", "127.0.0.1"), ("client", "runbook-exporter")] {
        let key = KeyPair::generate().unwrap();
        let cert = named(vec![san.to_string()], format!("{prefix}{name}"))
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        write(&format!("{name}.crt"), cert.pem()).unwrap();
        write(&format!("{name}.key"), key.serialize_pem()).unwrap();
    }
}

/// Mutual TLS against a real Redis that requires client certificates
/// (`tls-auth-clients yes`): the check's certificate gets it in, no
/// certificate or one from another CA does not, and the refusal is a `tls`
/// failure.
#[tokio::test]
async fn client_certificates_are_required_by_a_mutual_tls_server() {
    let pki = tempfile::tempdir().unwrap();
    write_pki(pki.path(), "");
    write_pki(pki.path(), "other-");
    let file = |name: &str| pki.path().join(name).display().to_string();
    let server = OwnRedis::start_with(&[
        "--tls-cert-file".into(),
        file("server.crt"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        file("ca.crt"),
        "--tls-auth-clients".into(),
        "yes".into(),
    ]);
    let url = format!("rediss://{}", server.addr);
    let with = |tls: String| {
        build(&format!(
            "kind: redis\nurl: {url}\npassword: {}\ntls: {{{tls}}}",
            password()
        ))
    };

    let good = with(format!(
        "ca_file: {}, cert_file: {}, key_file: {}",
        file("ca.crt"),
        file("client.crt"),
        file("client.key")
    ));
    let samples = run(good.as_ref())
        .await
        .expect("the CA's client certificate gets in");
    assert!(must(&samples, "redis_ping_duration") > 0.0);
    assert!(must(&samples, "tls_earliest_cert_expiry_timestamp") > 1.7e9);

    let cases = [
        (
            "no client certificate",
            format!("ca_file: {}", file("ca.crt")),
        ),
        (
            "a client certificate from another CA",
            format!(
                "ca_file: {}, cert_file: {}, key_file: {}",
                file("ca.crt"),
                file("other-client.crt"),
                file("other-client.key")
            ),
        ),
    ];
    for (what, tls) in cases {
        let check = with(tls);
        let failure = run(check.as_ref()).await.expect_err(what);
        assert_eq!(failure.reason, Reason::Tls, "{what}: {}", failure.message);
        // Only what is still true: the server's certificate, which it did
        // present; nothing from a session that never began.
        let names: Vec<&str> = failure.samples.iter().map(|s| s.desc.name).collect();
        assert_eq!(names, ["tls_earliest_cert_expiry_timestamp"], "{what}");
    }
}
