//! The `redis` kind against the real Redis primary and replica started by
//! `scripts/services.sh up redis`.
//!
//! Tests that need the primary to themselves (exact counter deltas, the
//! restart) take [`EXCLUSIVE`] for writing; the others share it.

mod common;

use common::{build, ctx};

use std::process::Command;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use runbook_exporter::checks::{Check, Failure, Reason, Sample};
use tokio::sync::RwLock;

static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

fn env(name: &str) -> String {
    common::service_env(name, "redis")
}

fn primary_url() -> String {
    env("RUNBOOK_TEST_REDIS_URL")
}

fn replica_url() -> String {
    env("RUNBOOK_TEST_REDIS_REPLICA_URL")
}

fn password() -> String {
    env("RUNBOOK_TEST_REDIS_PASSWORD")
}

/// A check on `url` logging in with the test password.
fn check_on(url: &str) -> Box<dyn Check> {
    build(&format!(
        "kind: redis\nurl: {url}\npassword: {}",
        password()
    ))
}

/// Run with a generous outer limit, so a hanging check fails the test
/// rather than the test run.
async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx()))
        .await
        .expect("run finishes")
}

/// The value of the sample `name` (as in `MetricDesc::name`) whose labels
/// include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.desc.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

fn must(samples: &[Sample], name: &str) -> f64 {
    value(samples, name, &[]).unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
}

/// A plain client connection for the test to act as an application.
async fn client(url: &str) -> MultiplexedConnection {
    let url = url.replacen("redis://", &format!("redis://:{}@", password()), 1);
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            // Blocking commands wait longer than the default 500 ms.
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .expect("test client connects")
}

async fn cmd<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(conn).await.expect("test command succeeds")
}

#[tokio::test]
async fn hits_and_misses_move_exactly_with_the_clients_gets() {
    let _only_us = EXCLUSIVE.write().await;
    let check = check_on(&primary_url());
    let mut app = client(&primary_url()).await;
    let _: () = cmd(&mut app, &["SET", "runbook:test:hit", "1"]).await;

    let before = run(check.as_ref()).await.expect("check passes");
    for _ in 0..3 {
        let _: Option<String> = cmd(&mut app, &["GET", "runbook:test:hit"]).await;
    }
    for _ in 0..2 {
        let _: Option<String> = cmd(&mut app, &["GET", "runbook:test:absent"]).await;
    }
    let after = run(check.as_ref()).await.expect("check passes");

    let delta = |name| must(&after, name) - must(&before, name);
    assert_eq!(delta("redis_keyspace_hits"), 3.0);
    assert_eq!(delta("redis_keyspace_misses"), 2.0);
    // Both are counters, so the guides' rate(hits)/(rate(hits)+rate(misses)) works.
    for s in &after {
        if s.desc.name.starts_with("redis_keyspace_") {
            assert_eq!(s.desc.kind, runbook_exporter::checks::MetricKind::Counter);
        }
    }
}

#[tokio::test]
async fn the_connection_is_reused_across_runs() {
    let _only_us = EXCLUSIVE.write().await;
    let check = check_on(&primary_url());
    let first = run(check.as_ref()).await.expect("check passes");
    let mut last = first.clone();
    for _ in 0..5 {
        last = run(check.as_ref()).await.expect("check passes");
    }
    // The first run opened the connection (and counted itself); the next
    // five opened none.
    assert_eq!(
        must(&last, "redis_connections_received"),
        must(&first, "redis_connections_received")
    );
}

#[tokio::test]
async fn ping_memory_clients_keys_and_role_are_reported() {
    let _shared = EXCLUSIVE.read().await;
    let mut app = client(&primary_url()).await;
    let _: () = cmd(&mut app, &["SET", "runbook:test:key", "1"]).await;
    let check = check_on(&primary_url());
    let samples = run(check.as_ref()).await.expect("check passes");

    let ping = must(&samples, "redis_ping_duration");
    assert!(ping > 0.0 && ping < 5.0, "{ping}");
    assert!(must(&samples, "redis_memory_used") > 0.0);
    assert!(must(&samples, "redis_memory_rss") > 0.0);
    assert!(must(&samples, "redis_memory_fragmentation_ratio") > 0.0);
    // The test server runs without maxmemory: no limit, no series.
    assert_eq!(value(&samples, "redis_memory_max", &[]), None);
    // This test's client and the check's own connection.
    assert!(must(&samples, "redis_connected_clients") >= 2.0);
    assert_eq!(must(&samples, "redis_blocked_clients"), 0.0);
    assert_eq!(must(&samples, "redis_max_clients"), 10000.0);
    assert!(value(&samples, "redis_db_keys", &[("db", "0")]).is_some_and(|n| n >= 1.0));
    assert_eq!(
        value(&samples, "redis_role", &[("role", "master")]),
        Some(1.0)
    );
    let started = must(&samples, "redis_start_timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 30.0 * 86400.0,
        "{started}"
    );
    for s in &samples {
        assert!(s.value.is_finite(), "{s:?}");
    }
}

#[tokio::test]
async fn blocked_clients_are_counted() {
    let _shared = EXCLUSIVE.read().await;
    let mut app = client(&primary_url()).await;
    let check = check_on(&primary_url());
    // A BLPOP that waits up to 3 s on a list nobody pushes to.
    let blocker = tokio::spawn(async move {
        let _: Option<Vec<String>> = cmd(&mut app, &["BLPOP", "runbook:test:never", "3"]).await;
    });
    let mut seen = 0.0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let samples = run(check.as_ref()).await.expect("check passes");
        seen = must(&samples, "redis_blocked_clients");
        if seen >= 1.0 {
            break;
        }
    }
    assert!(seen >= 1.0, "the BLPOP client was never reported blocked");
    blocker.await.unwrap();
}

#[tokio::test]
async fn replication_is_reported_on_the_primary_and_the_replica() {
    let _shared = EXCLUSIVE.read().await;
    // After a restart of the primary the replica may still be syncing.
    let replica = check_on(&replica_url());
    let mut samples = Vec::new();
    for _ in 0..100 {
        samples = run(replica.as_ref()).await.expect("replica check passes");
        if value(&samples, "redis_master_link_up", &[]) == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        value(&samples, "redis_role", &[("role", "replica")]),
        Some(1.0)
    );
    assert_eq!(must(&samples, "redis_master_link_up"), 1.0);
    assert_eq!(must(&samples, "redis_master_sync_in_progress"), 0.0);
    assert!(must(&samples, "redis_master_last_io_timestamp") > 0.0);
    assert_eq!(value(&samples, "redis_replica_offset_lag", &[]), None);

    let primary = check_on(&primary_url());
    let samples = run(primary.as_ref()).await.expect("primary check passes");
    assert!(must(&samples, "redis_connected_replicas") >= 1.0);
    let port = replica_url().rsplit(':').next().unwrap().to_string();
    let lag = value(
        &samples,
        "redis_replica_offset_lag",
        &[("replica", &format!("127.0.0.1:{port}"))],
    )
    .unwrap_or_else(|| panic!("no lag for the replica in {samples:#?}"));
    assert!(lag >= 0.0);
    assert_eq!(value(&samples, "redis_master_link_up", &[]), None);
}

#[tokio::test]
async fn a_wrong_or_missing_password_fails_with_reason_auth() {
    let _shared = EXCLUSIVE.read().await;
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
    let _shared = EXCLUSIVE.read().await;
    let mut admin = client(&primary_url()).await;
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
        primary_url(),
        file.display()
    ));
    let samples = run(probe.as_ref())
        .await
        .expect("the ACL user may PING and INFO");
    assert!(must(&samples, "redis_ping_duration") > 0.0);

    let noinfo = build(&format!(
        "kind: redis\nurl: {}\nusername: runbook-noinfo\npassword_file: {}",
        primary_url(),
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
    // reports the same reason and when it will.
    let again = run(check.as_ref()).await.expect_err("still nothing");
    assert_eq!(again.reason, Reason::ConnectionRefused);
    assert!(
        again.message.contains("next reconnect attempt in"),
        "{}",
        again.message
    );
}

#[tokio::test]
async fn a_restarted_primary_is_down_then_up_again_without_a_new_check() {
    let _only_us = EXCLUSIVE.write().await;
    let check = check_on(&primary_url());
    let before = run(check.as_ref()).await.expect("check passes");

    let mut admin = client(&primary_url()).await;
    // The server closes the connection instead of answering.
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async::<()>(&mut admin)
        .await;
    drop(admin);
    let mut failure = None;
    for _ in 0..50 {
        match run(check.as_ref()).await {
            Err(f) => {
                failure = Some(f);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let failure = failure.expect("the check fails while Redis is down");
    assert!(
        matches!(failure.reason, Reason::ConnectionRefused | Reason::Network),
        "{failure:?}"
    );
    assert!(failure.samples.is_empty(), "{:?}", failure.samples);

    let services = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    let status = Command::new(services)
        .args(["up", "redis"])
        .status()
        .expect("run scripts/services.sh");
    assert!(status.success());

    // Reconnect attempts back off (1 s, 2 s, ...), so allow some time.
    let mut after = None;
    for _ in 0..300 {
        if let Ok(samples) = run(check.as_ref()).await {
            after = Some(samples);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = after.expect("the same check recovers after the restart");
    assert!(
        must(&after, "redis_start_timestamp") >= must(&before, "redis_start_timestamp"),
        "the restart is visible in the start time"
    );
}

#[tokio::test]
async fn tls_with_a_ca_file_passes_and_reports_the_certificate_expiry() {
    let _shared = EXCLUSIVE.read().await;
    let url = env("RUNBOOK_TEST_REDIS_TLS_URL");
    let ca = env("RUNBOOK_TEST_REDIS_CA_FILE");
    let check = build(&format!(
        "kind: redis\nurl: {url}\npassword: {}\ntls:\n  ca_file: {ca}",
        password()
    ));
    let samples = run(check.as_ref()).await.expect("check passes over TLS");
    assert!(must(&samples, "redis_ping_duration") > 0.0);
    assert!(must(&samples, "tls_earliest_cert_expiry_timestamp") > 1.7e9);

    // Without the test CA the certificate is not trusted.
    let untrusted = build(&format!(
        "kind: redis\nurl: {url}\npassword: {}",
        password()
    ));
    let failure = run(untrusted.as_ref()).await.expect_err("unknown CA");
    assert_eq!(failure.reason, Reason::Tls, "{}", failure.message);
}

#[tokio::test]
async fn a_run_cancelled_by_its_timeout_leaves_a_working_check() {
    let _only_us = EXCLUSIVE.write().await;
    let check = check_on(&primary_url());
    run(check.as_ref()).await.expect("check passes");
    let mut admin = client(&primary_url()).await;
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
