//! The `redis` kind against real Redis servers: the primary, its replica
//! and its TLS port started by `scripts/services.sh up redis`, which every
//! test binary (and every worktree) shares, and servers of a test's own
//! (`redis_support`). What a run reports; faults (a wrong password, a dead
//! or restarted server, a cancelled run, mutual TLS refusals) are in
//! `redis_faults.rs`.

mod common;
mod redis_support;

use redis_support::*;

use std::time::{Duration, Instant};

use common::build;
use redis::aio::MultiplexedConnection;
use runbook_exporter::checks::{Reason, Sample};

#[tokio::test]
async fn hits_and_misses_move_exactly_with_the_clients_gets() {
    let server = OwnRedis::start();
    let check = check_on(&server.url());
    let mut app = client(&server.url()).await;
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
    let server = OwnRedis::start();
    let check = check_on(&server.url());
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
    let server = OwnRedis::start();
    let mut app = client(&server.url()).await;
    let _: () = cmd(&mut app, &["SET", "runbook:test:key", "1"]).await;
    let check = check_on(&server.url());
    let samples = run(check.as_ref()).await.expect("check passes");

    let ping = must(&samples, "redis_ping_duration");
    assert!(ping > 0.0 && ping < 5.0, "{ping}");
    assert!(must(&samples, "redis_memory_used") > 0.0);
    assert!(must(&samples, "redis_memory_rss") > 0.0);
    assert!(must(&samples, "redis_memory_fragmentation_ratio") > 0.0);
    // The server runs without maxmemory: no limit, no series.
    assert_eq!(value(&samples, "redis_memory_max", &[]), None);
    // This test's client and the check's own connection; nobody else
    // uses this server.
    assert_eq!(must(&samples, "redis_connected_clients"), 2.0);
    assert_eq!(must(&samples, "redis_blocked_clients"), 0.0);
    assert_eq!(must(&samples, "redis_max_clients"), 10000.0);
    assert_eq!(value(&samples, "redis_db_keys", &[("db", "0")]), Some(1.0));
    assert_eq!(
        value(&samples, "redis_role", &[("role", "master")]),
        Some(1.0)
    );
    let started = must(&samples, "redis_start_timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Started by this test, moments ago.
    assert!(
        started <= now + 1.0 && started > now - 60.0,
        "{started} vs {now}"
    );
    for s in &samples {
        assert!(s.value.is_finite(), "{s:?}");
    }
}

#[tokio::test]
async fn blocked_clients_are_counted() {
    let server = OwnRedis::start();
    let mut app = client(&server.url()).await;
    let check = check_on(&server.url());
    let blocked = |samples: &[Sample]| must(samples, "redis_blocked_clients");
    assert_eq!(
        blocked(&run(check.as_ref()).await.expect("check passes")),
        0.0
    );
    // A BLPOP that waits up to 3 s on a list nobody pushes to.
    let blocker = tokio::spawn(async move {
        let _: Option<Vec<String>> = cmd(&mut app, &["BLPOP", "runbook:test:never", "3"]).await;
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = 0.0;
    while seen < 1.0 && Instant::now() < deadline {
        seen = blocked(&run(check.as_ref()).await.expect("check passes"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen, 1.0,
        "the BLPOP client was not reported blocked within 3 s"
    );
    tokio::time::timeout(Duration::from_secs(10), blocker)
        .await
        .expect("the BLPOP ends after its own 3 s")
        .unwrap();
    assert_eq!(
        blocked(&run(check.as_ref()).await.expect("check passes")),
        0.0
    );
}

#[tokio::test]
async fn replication_is_reported_on_the_primary_and_the_replica() {
    // After a restart of the primary the replica may still be syncing.
    let replica = check_on(&replica_url());
    let limit = Duration::from_secs(30);
    let deadline = Instant::now() + limit;
    let samples = loop {
        let samples = run(replica.as_ref()).await.expect("replica check passes");
        if value(&samples, "redis_master_link_up", &[]) == Some(1.0) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "the shared replica's link to its primary not up within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
    // The shared primary's writes come from every test; the exact value
    // is proven on a pair of this test's own below.
    assert!(lag.is_finite(), "{lag}");
    assert_eq!(value(&samples, "redis_master_link_up", &[]), None);
}

/// The primary's offset minus the offset its replica acknowledged, from
/// `INFO replication` read by the test itself.
async fn offset_gap(primary: &mut MultiplexedConnection) -> f64 {
    let info: String = cmd(primary, &["INFO", "replication"]).await;
    let field = |line: &str, key: &str| -> Option<f64> {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.trim().parse().ok())
    };
    let mut own = None;
    let mut replica = None;
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("master_repl_offset:") {
            own = v.trim().parse::<f64>().ok();
        }
        if line.starts_with("slave0:") {
            replica = field(line, "offset");
        }
    }
    own.expect("master_repl_offset") - replica.expect("a replica in INFO")
}

/// A replica that stops acknowledging (it is busy for 3 s) falls behind by
/// exactly the bytes written meanwhile, and catches up afterwards.
#[tokio::test]
async fn a_replica_that_falls_behind_shows_its_exact_offset_lag() {
    let debug = ["--enable-debug-command".to_string(), "yes".to_string()];
    let primary = OwnRedis::start_with(&debug);
    let mut args = debug.to_vec();
    args.extend([
        "--replicaof".into(),
        "127.0.0.1".into(),
        primary.addr.port().to_string(),
        "--masterauth".into(),
        password(),
    ]);
    let replica = OwnRedis::start_with(&args);
    let (primary_check, replica_check) = (check_on(&primary.url()), check_on(&replica.url()));
    let limit = Duration::from_secs(30);
    let deadline = Instant::now() + limit;
    while run(replica_check.as_ref())
        .await
        .ok()
        .and_then(|s| value(&s, "redis_master_link_up", &[]))
        != Some(1.0)
    {
        assert!(
            Instant::now() < deadline,
            "the replica did not sync within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = format!("127.0.0.1:{}", replica.addr.port());
    let lag = |samples: &[Sample]| {
        value(samples, "redis_replica_offset_lag", &[("replica", &name)])
            .unwrap_or_else(|| panic!("no lag for {name} in {samples:#?}"))
    };
    let mut app = client(&primary.url()).await;
    let mut busy = client(&replica.url()).await;
    let mut probe = client(&replica.url()).await;
    let sleeper = tokio::spawn(async move {
        let _: () = cmd(&mut busy, &["DEBUG", "SLEEP", "3"]).await;
    });
    // The replica is asleep once it stops answering; the sleep lasts 3 s,
    // and everything below until the comparison takes a fraction of that.
    let deadline = Instant::now() + limit;
    while tokio::time::timeout(
        Duration::from_millis(100),
        cmd::<String>(&mut probe, &["PING"]),
    )
    .await
    .is_ok()
    {
        assert!(Instant::now() < deadline, "the replica never went to sleep");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(probe);
    let value_1k = "x".repeat(1024);
    for i in 0..20 {
        let _: () = cmd(
            &mut app,
            &["SET", &format!("runbook:test:lag:{i}"), &value_1k],
        )
        .await;
    }
    let samples = run(primary_check.as_ref())
        .await
        .expect("primary check passes");
    let expected = offset_gap(&mut app).await;
    assert!(
        expected > 20.0 * 1024.0,
        "the replica kept up: gap {expected}"
    );
    assert_eq!(lag(&samples), expected);

    tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("DEBUG SLEEP 3 ends")
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        let samples = run(primary_check.as_ref())
            .await
            .expect("primary check passes");
        if lag(&samples) == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up within {limit:?}: lag {}",
            lag(&samples)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tls_with_a_ca_file_passes_and_reports_the_certificate_expiry() {
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
