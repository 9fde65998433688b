//! The `postgres` kind with a client certificate against the real primary
//! of `scripts/services.sh up postgres`, which verifies client
//! certificates against a CA of the script's own (`ssl_ca_file`) and lets
//! one role in by certificate only (`hostssl ... cert`).

mod pg_support;

use pg_support::{env, one, run, superuser_dsn};
use runbook_exporter::checks::Reason;

/// A check as the certificate role, offering `cert` (and its key) if given.
fn check(cert: Option<(&str, &str)>) -> Box<dyn runbook_exporter::checks::Check> {
    let addr = pg_support::primary_addr();
    let (host, port) = addr.split_once(':').unwrap();
    let tls = match cert {
        Some((cert, key)) => format!("tls: {{cert_file: '{cert}', key_file: '{key}'}}\n"),
        None => String::new(),
    };
    pg_support::check(
        &format!(
            "host={host} port={port} dbname=postgres user={}",
            env("RUNBOOK_TEST_PG_CERT_USER")
        ),
        &format!("sslmode: require\nstatements_top: 0\napplication_name: runbook-cert-test\n{tls}"),
    )
}

#[tokio::test]
async fn a_client_certificate_from_the_trusted_ca_logs_in_and_others_are_refused() {
    let (cert, key) = (
        env("RUNBOOK_TEST_PG_CLIENT_CERT"),
        env("RUNBOOK_TEST_PG_CLIENT_KEY"),
    );
    let good = check(Some((&cert, &key)));
    let samples = match run(good.as_ref()).await {
        Ok(samples) => samples,
        Err(f) => panic!("with the client certificate: {} {}", f.reason, f.message),
    };
    assert_eq!(one(&samples, "postgres_in_recovery", &[]), 0.0);
    // The server saw the certificate on the session.
    let su = pg_support::connect(&superuser_dsn()).await;
    let seen: Vec<String> = su
        .query(
            "SELECT coalesce(s.client_dn, '') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'runbook-cert-test'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, ["/CN=runbook_cert"]);
    drop(good);

    // Without a certificate the `cert` hba line refuses the login.
    let failure = run(check(None).as_ref())
        .await
        .expect_err("no certificate offered");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);

    // A certificate with the right name from a CA the server does not
    // trust fails the handshake.
    let (cert, key) = (
        env("RUNBOOK_TEST_PG_FOREIGN_CLIENT_CERT"),
        env("RUNBOOK_TEST_PG_FOREIGN_CLIENT_KEY"),
    );
    let failure = run(check(Some((&cert, &key))).as_ref())
        .await
        .expect_err("a foreign CA's certificate");
    assert!(
        failure.reason == Reason::Tls,
        "{} {}",
        failure.reason,
        failure.message
    );
    assert!(
        failure.message.to_lowercase().contains("unknown"),
        "{}",
        failure.message
    );
}
