//! `runbook-exporter diagnose` against real services on loopback: a lock
//! held on the PostgreSQL primary shows as blocked sessions, a lagging
//! Kafka group as its partitions, unreachable services and a wrong
//! password as their reason, runbook and filled-in commands; no secret in
//! the table or the JSON; every check runs at once, so the whole command
//! ends within about one timeout.

mod common;
#[path = "kafka_support/mod.rs"]
mod kafka_support;
mod pg_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{closed_port, run_exporter, silent_target};
use kafka_support::{unique, Admin};
use pg_support::{primary_addr, Scratch};
use serde_json::Value;

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `eval \"$(scripts/services.sh env)\"` first")
    })
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// `diagnose` in both formats: (exit code, table, parsed JSON).
fn diagnose(config: &str) -> (i32, String, Vec<Value>, String) {
    let table = run_exporter(&["diagnose", "--config", config]);
    let json = run_exporter(&["diagnose", "--config", config, "--output", "json"]);
    let text = String::from_utf8_lossy(&json.stdout).into_owned();
    let parsed: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "diagnose JSON does not parse: {e}\n{text}\nstderr: {}",
            String::from_utf8_lossy(&json.stderr)
        )
    });
    assert_eq!(
        table.status.code(),
        json.status.code(),
        "same exit code in both formats"
    );
    (
        json.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&table.stdout).into_owned(),
        parsed,
        text,
    )
}

fn entry<'a>(report: &'a [Value], name: &str) -> &'a Value {
    report
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry for check {name} in {report:?}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_shows_as_blocked_sessions_with_the_runbook_and_commands() {
    let db = Scratch::new("diagnose_lock", "").await;
    let holder = db.session("diag-holder").await;
    holder
        .batch_execute("CREATE TABLE held (id int PRIMARY KEY); INSERT INTO held VALUES (1)")
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let waiter = db.session("diag-waiter").await;
    let waiting = tokio::spawn(async move { waiter.batch_execute("SELECT * FROM held").await });
    let (host, port) = primary_addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "checks:\n  - name: pg\n    kind: postgres\n    host: {host}\n    port: {port}\n    user: {name}\n    password: '{pw}'\n    database: {name}\n    sslmode: disable\n    statements_top: 0\n    timeout: 10s\n",
            name = db.name,
            pw = db.password
        ),
    );
    // The waiter may not be queued yet on the first run: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, table, report, json) = loop {
        let out = tokio::task::spawn_blocking({
            let config = config.clone();
            move || diagnose(&config)
        })
        .await
        .unwrap();
        if entry(&out.2, "pg")["status"] == "degraded" {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "no blocked session reported within 30 s: {}",
            out.3
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(code, 0, "a passing (degraded) check exits 0 as in `check`");
    let pg = entry(&report, "pg");
    let evidence = strings(&pg["evidence"]);
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with("runbook_postgres_lock_waiting_sessions") && e.ends_with("= 1")),
        "blocked session in the evidence: {evidence:?}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with("runbook_postgres_longest_query_duration_seconds")),
        "longest query in the evidence: {evidence:?}"
    );
    assert_eq!(
        pg["runbook"],
        "docs/runbooks/RunbookPostgresSessionsBlocked.md"
    );
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(pg["runbook"].as_str().unwrap())
        .exists());
    let commands = strings(&pg["commands"]);
    assert!(
        commands.iter().any(|c| c.contains(&format!(
            "-h {host} -p {port} -U {} -d {}",
            db.name, db.name
        ))),
        "commands filled in with the check's target: {commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.contains("$PGPASSWORD")),
        "{commands:?}"
    );
    assert!(
        table.contains("runbook_postgres_lock_waiting_sessions"),
        "{table}"
    );
    assert!(
        table.contains("RunbookPostgresSessionsBlocked.md"),
        "{table}"
    );
    for out in [&table, &json] {
        assert!(!out.contains(&db.password), "password leaked:\n{out}");
    }
    holder.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiter ends once the lock is released")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_group_shows_its_partitions_most_lag_first() {
    let brokers = env("RUNBOOK_TEST_KAFKA_BROKERS");
    let topic = unique("diagnose-lag");
    let group = unique("diagnose-group");
    let (b, t, g) = (brokers.clone(), topic.clone(), group.clone());
    tokio::task::spawn_blocking(move || {
        let admin = Admin::new(&b);
        admin.create_topic(&t, 2, 1);
        admin.produce(&t, 0, 7000);
        admin.produce(&t, 1, 5000);
        admin.commit(&g, &t, 0, 0);
        admin.commit(&g, &t, 1, 0);
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("checks:\n  - name: events\n    kind: kafka\n    brokers: ['{brokers}']\n    topics: ['{topic}']\n    groups: ['{group}']\n    interval: 1m\n    timeout: 15s\n"),
    );
    let (code, table, report, _) = tokio::task::spawn_blocking(move || diagnose(&config))
        .await
        .unwrap();
    assert_eq!(code, 0, "{table}");
    let k = entry(&report, "events");
    assert_eq!(k["status"], "degraded", "{k}");
    let lag: Vec<String> = strings(&k["evidence"])
        .into_iter()
        .filter(|e| e.starts_with("runbook_kafka_consumergroup_lag{"))
        .collect();
    assert_eq!(lag.len(), 2, "both partitions in the evidence: {k}");
    assert!(
        lag[0].contains("partition=\"0\"") && lag[0].ends_with("= 7000"),
        "{lag:?}"
    );
    assert!(
        lag[1].contains("partition=\"1\"") && lag[1].ends_with("= 5000"),
        "{lag:?}"
    );
    assert_eq!(k["runbook"], "docs/runbooks/RunbookKafkaConsumerLagHigh.md");
    let commands = strings(&k["commands"]);
    assert!(
        commands.iter().any(|c| c.contains(&format!(
            "--bootstrap-server {brokers} --describe --group {group}"
        ))),
        "{commands:?}"
    );
    assert!(table.contains("partition=\"0\""), "{table}");
}

#[test]
fn unreachable_services_give_reason_runbook_and_commands_without_secrets_within_one_timeout() {
    let pg_closed = closed_port();
    let redis_url = env("RUNBOOK_TEST_REDIS_URL");
    let redis_password = env("RUNBOOK_TEST_REDIS_PASSWORD");
    let wrong = "diagnose-wrong-pw-7f3a";
    let pg_secret = "diagnose-pg-secret-91c2";
    // Silent targets: each run hangs until its 4 s timeout. Run one after
    // the other they would take 16 s; at once, about 4.
    let silent: Vec<_> = (0..4).map(|_| silent_target()).collect();
    let mut yaml = format!(
        "checks:\n  - name: pg_down\n    kind: postgres\n    host: 127.0.0.1\n    port: {}\n    user: app\n    password: '{pg_secret}'\n    database: orders\n    sslmode: disable\n    timeout: 4s\n  - name: redis_auth\n    kind: redis\n    url: '{redis_url}'\n    password: '{wrong}'\n    timeout: 4s\n",
        pg_closed.port()
    );
    for (i, s) in silent.iter().enumerate() {
        yaml.push_str(&format!("  - name: hang_{i}\n    kind: tcp\n    address: '{}'\n    send: 'x'\n    expect: 'never'\n    timeout: 4s\n", s.addr));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &yaml);
    let started = Instant::now();
    let (code, table, report, json) = diagnose(&config);
    let took = started.elapsed();
    // Two runs (table and JSON), each bounded by about one 4 s timeout.
    assert!(
        took < Duration::from_secs(2 * 4 + 6),
        "diagnose ran its checks one after the other: {took:?}"
    );
    assert_eq!(code, 1, "a failing check exits 1 as in `check`:\n{table}");

    let pg = entry(&report, "pg_down");
    assert_eq!(pg["status"], "fail");
    assert_eq!(pg["reason"], "connection_refused", "{pg}");
    assert_eq!(pg["runbook"], "docs/runbooks/RunbookPostgresDown.md");
    let commands = strings(&pg["commands"]);
    assert!(
        commands
            .iter()
            .any(|c| c == &format!("pg_isready -h 127.0.0.1 -p {} -d orders", pg_closed.port())),
        "{commands:?}"
    );

    let redis = entry(&report, "redis_auth");
    assert_eq!(redis["status"], "fail");
    assert_eq!(redis["reason"], "auth", "{redis}");
    assert_eq!(redis["runbook"], "docs/runbooks/RunbookRedisDown.md");
    let commands = strings(&redis["commands"]);
    let redis_port = redis_url.rsplit(':').next().unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c.contains(&format!("-p {redis_port}")) && c.contains("$REDIS_PASSWORD")),
        "{commands:?}"
    );

    for (i, target) in silent.iter().enumerate() {
        let h = entry(&report, &format!("hang_{i}"));
        assert_eq!(h["reason"], "timeout", "{h}");
        assert_eq!(h["runbook"], "docs/runbooks/RunbookTcpEndpointDown.md");
        assert!(strings(&h["commands"])
            .iter()
            .any(|c| c == &format!("nc -vz 127.0.0.1 {}", target.addr.port())));
    }
    assert!(
        table.contains("reason:  connection_refused") && table.contains("RunbookPostgresDown.md"),
        "{table}"
    );
    for out in [&table, &json] {
        for secret in [wrong, pg_secret, redis_password.as_str()] {
            assert!(!out.contains(secret), "secret leaked:\n{out}");
        }
    }
}

#[test]
fn check_selects_and_an_unknown_check_exits_2_as_in_check() {
    let refused = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "checks:\n  - name: one\n    kind: tcp\n    address: '{refused}'\n  - name: two\n    kind: tcp\n    address: '{refused}'\n"
        ),
    );
    let out = run_exporter(&[
        "diagnose", "--config", &config, "--check", "two", "-o", "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0]["name"], "two");
    assert_eq!(report[0]["reason"], "connection_refused");
    let out = run_exporter(&["diagnose", "--config", &config, "--check", "three"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no check named \"three\""));
}
