//! The `postgres` kind's session lifecycle and "who and how old"
//! diagnostics against the real primary and standby of `scripts/services.sh
//! up postgres`. Each test logs in as a role and database of its own
//! (without pg_monitor), so the cluster-wide figures it asserts count its
//! own sessions only.

mod pg_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_support::{
    check, connect, env, one, run_ok, run_until, run_with, sessions_named, superuser_dsn, values,
    wait_for, Scratch,
};
use runbook_exporter::checks::Check;
use runbook_exporter::scheduler::run_once;

#[tokio::test]
async fn a_session_closed_by_idle_session_timeout_is_replaced_within_the_run() {
    // Shorter than the gap between runs, for the test's role only.
    let db = Scratch::new("idle", "ALTER ROLE {role} SET idle_session_timeout = '1s'").await;
    let su = connect(&superuser_dsn()).await;
    let c: Arc<dyn Check> = Arc::from(check(
        &db.dsn(),
        "statements_top: 0\napplication_name: runbook-idle-test",
    ));
    for i in 0..10 {
        let record = run_once(c.clone(), Duration::from_secs(5)).await;
        if let Some(f) = record.failure() {
            panic!("run {i} failed (up 0): {} {}", f.reason, f.message);
        }
        assert_eq!(
            values(record.samples(), "postgres_connect_duration", &[]).len(),
            1,
            "run {i} opened the session it used"
        );
        // Idle until the server has closed the session.
        wait_for("the server to close the idle session", 15, || async {
            sessions_named(&su, "runbook-idle-test").await == 0
        })
        .await;
    }
}

#[tokio::test]
async fn who_and_how_old_count_the_tests_own_sessions_with_bounded_groups() {
    let db = Scratch::new("who", "").await;
    let a1 = db.session("who-a").await;
    let _a2 = db.session("who-a").await;
    let b = db.session("who-b").await;
    // b: a transaction left open, idle.
    b.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let began = Instant::now();
    // a1: an active query waiting on a timer.
    let sleeping = tokio::spawn(async move { a1.batch_execute("SELECT pg_sleep(10)").await });
    let c = check(
        &db.dsn(),
        "statements_top: 0\napplication_name: who-monitor\nmax_clients: 1000",
    );
    let samples = run_until(
        c.as_ref(),
        "the sleeping query and an idle transaction older than 1 s",
        |s| {
            values(
                s,
                "postgres_active_wait_events",
                &[("wait_event_type", "Timeout"), ("wait_event", "PgSleep")],
            ) == [1.0]
                && one(s, "postgres_oldest_idle_in_transaction", &[]) >= 1.0
        },
    )
    .await;
    let user = db.name.as_str();
    let clients = |app: &str| {
        one(
            &samples,
            "postgres_client_connections",
            &[
                ("user", user),
                ("application_name", app),
                ("client_addr", "127.0.0.1"),
            ],
        )
    };
    assert_eq!(
        (clients("who-a"), clients("who-b"), clients("who-monitor")),
        (2.0, 1.0, 1.0)
    );
    // Only the test's own sessions are visible to its role: one active
    // session, which waits on its timer.
    let waits: f64 = values(&samples, "postgres_active_wait_events", &[])
        .iter()
        .sum();
    assert_eq!(waits, 1.0);
    let idle = one(&samples, "postgres_oldest_idle_in_transaction", &[]);
    let oldest = one(&samples, "postgres_oldest_transaction_age", &[]);
    let bound = began.elapsed().as_secs_f64() + 1.0;
    assert!(
        idle <= oldest && oldest <= bound,
        "idle {idle} s, oldest transaction {oldest} s, bound {bound} s"
    );
    assert_eq!(
        one(&samples, "postgres_dropped_rows", &[("part", "clients")]),
        0.0
    );

    // Caps of one: one series each, and the cut groups counted.
    let capped = check(
        &db.dsn(),
        "statements_top: 0\napplication_name: who-monitor\nmax_clients: 1\nmax_wait_events: 1",
    );
    let samples = run_ok(capped.as_ref()).await;
    assert_eq!(
        values(&samples, "postgres_client_connections", &[]).len(),
        1
    );
    // At least who-b and who-monitor are left out (who-a is the largest
    // of the test's groups; other roles' groups may be larger still).
    assert!(one(&samples, "postgres_dropped_rows", &[("part", "clients")]) >= 2.0);
    assert_eq!(
        values(&samples, "postgres_active_wait_events", &[]).len(),
        1
    );
    assert_eq!(
        one(
            &samples,
            "postgres_dropped_rows",
            &[("part", "wait_events")]
        ),
        0.0
    );
    b.batch_execute("ROLLBACK").await.unwrap();
    sleeping.abort();
}

#[tokio::test]
async fn the_monitoring_sessions_lock_timeout_ends_a_blocked_query_before_the_statement_timeout() {
    let db = Scratch::new("lock_timeout", "").await;
    let holder = db.session("lock-holder").await;
    holder
        .batch_execute("CREATE TABLE held (x int)")
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // A 10 s run timeout: lock_timeout 5 s, statement_timeout 8 s. Both
    // ways of applying them: SET for the session, and SET LOCAL per
    // transaction (`pooler: transaction`, on a direct connection here).
    for pooler in ["none", "transaction"] {
        let c = check(
            &db.dsn(),
            &format!(
                "pooler: {pooler}\nstatements_top: 0\nqueries:\n  - {{name: held, sql: SELECT count(*) AS held_rows FROM held, values: [held_rows]}}"
            ),
        );
        let start = Instant::now();
        let samples = run_with(c.as_ref(), Duration::from_secs(10))
            .await
            .unwrap_or_else(|f| panic!("{pooler}: {} {}", f.reason, f.message));
        let took = start.elapsed();
        assert_eq!(
            one(
                &samples,
                "postgres_feature_available",
                &[("feature", "query:held")]
            ),
            0.0,
            "{pooler}: the query got the lock"
        );
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_secs(8),
            "{pooler}: the blocked query ended after {took:?}, not at lock_timeout (5 s)"
        );
    }
    holder.batch_execute("ROLLBACK").await.unwrap();
}

/// Drops the test's replication slots even when the test fails half-way,
/// so that they do not hold WAL back.
struct DropSlots(&'static [&'static str]);

impl Drop for DropSlots {
    fn drop(&mut self) {
        for slot in self.0 {
            let _ = std::process::Command::new("timeout")
                .args(["--kill-after=5s", "30s", "psql"])
                .args([
                    &superuser_dsn(),
                    "-Xqc",
                    &format!("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'"),
                ])
                .output();
        }
    }
}

#[tokio::test]
async fn slots_are_read_largest_retained_first_with_their_wal_status() {
    const SLOTS: &[&str] = &["runbook_t_slot_old", "runbook_t_slot_new"];
    let su = connect(&superuser_dsn()).await;
    drop(DropSlots(SLOTS));
    let _drop = DropSlots(SLOTS);
    // A physical slot reserves WAL from the last checkpoint's redo
    // position: a checkpoint between the two sets them 2 MB apart.
    for sql in [
        "SELECT pg_create_physical_replication_slot('runbook_t_slot_old', true)",
        "SELECT pg_logical_emit_message(false, 'runbook-test', repeat('x', 2000000))",
        "CHECKPOINT",
        "SELECT pg_create_physical_replication_slot('runbook_t_slot_new', true)",
    ] {
        su.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let dsn = env("RUNBOOK_TEST_PG_PRIMARY_DSN");
    let all = run_ok(check(&dsn, "statements_top: 0").as_ref()).await;
    let retained = |slot: &str| {
        one(
            &all,
            "postgres_replication_slot_retained",
            &[("slot", slot)],
        )
    };
    assert!(
        retained("runbook_t_slot_old") > retained("runbook_t_slot_new") + 1_000_000.0,
        "old {} new {}",
        retained("runbook_t_slot_old"),
        retained("runbook_t_slot_new")
    );
    for slot in SLOTS {
        for (status, v) in [
            ("reserved", 1.0),
            ("extended", 0.0),
            ("unreserved", 0.0),
            ("lost", 0.0),
        ] {
            assert_eq!(
                one(
                    &all,
                    "postgres_replication_slot_wal_status",
                    &[("slot", slot), ("wal_status", status)]
                ),
                v,
                "{slot} {status}"
            );
        }
    }
    // A cap of one keeps the slot holding the most WAL, not the first by
    // name, and counts the others.
    let capped = run_ok(check(&dsn, "statements_top: 0\nmax_standbys: 1").as_ref()).await;
    let kept: Vec<String> = capped
        .iter()
        .filter(|s| s.desc.name == "postgres_replication_slot_active")
        .map(|s| s.labels[0].1.clone())
        .collect();
    assert_eq!(kept, ["runbook_t_slot_old"]);
    assert!(one(&capped, "postgres_dropped_rows", &[("part", "slots")]) >= 2.0);
}

/// Puts the standby's primary_conninfo back, and reloads, even when the
/// test fails half-way.
struct RestoreConninfo {
    dsn: String,
    conninfo: String,
}

impl Drop for RestoreConninfo {
    fn drop(&mut self) {
        let _ = std::process::Command::new("timeout")
            .args(["--kill-after=5s", "30s", "psql"])
            .args([
                &self.dsn,
                "-Xq",
                "-c",
                &format!(
                    "ALTER SYSTEM SET primary_conninfo = '{}'",
                    self.conninfo.replace('\'', "''")
                ),
                "-c",
                "SELECT pg_reload_conf()",
            ])
            .output();
    }
}

#[tokio::test]
async fn a_standby_whose_wal_receiver_is_disconnected_reports_a_growing_replay_lag() {
    let standby_su = env("RUNBOOK_TEST_PG_STANDBY_SUPERUSER_DSN");
    let su = connect(&standby_su).await;
    let conninfo: String = su
        .query_one("SHOW primary_conninfo", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        conninfo.contains("port="),
        "the standby streams: {conninfo:?}"
    );
    let c = check(&env("RUNBOOK_TEST_PG_STANDBY_DSN"), "statements_top: 0");
    let restore = RestoreConninfo {
        dsn: standby_su.clone(),
        conninfo,
    };
    // Cut the standby off from its primary: its WAL receiver stops.
    su.batch_execute("ALTER SYSTEM SET primary_conninfo = ''")
        .await
        .unwrap();
    su.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let lag =
        |s: &[runbook_exporter::checks::Sample]| values(s, "postgres_standby_replay_lag", &[]);
    let cut = run_until(
        c.as_ref(),
        "the WAL receiver to stop and the replay lag to show",
        |s| {
            one(s, "postgres_standby_wal_receiver_streaming", &[]) == 0.0
                && lag(s).first().is_some_and(|v| *v > 0.0)
        },
    )
    .await;
    let first = lag(&cut)[0];
    run_until(c.as_ref(), "the replay lag to keep growing", |s| {
        lag(s).first().is_some_and(|v| *v > first + 0.5)
    })
    .await;
    drop(restore);
    run_until(c.as_ref(), "the WAL receiver to stream again", |s| {
        one(s, "postgres_standby_wal_receiver_streaming", &[]) == 1.0
    })
    .await;
}

/// The `queries:` block of docs/checks/postgres.md's API-key example.
fn documented_api_keys_example() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/checks/postgres.md"
    ))
    .expect("docs/checks/postgres.md is readable");
    let after = doc
        .split_once("<!-- api-keys-example")
        .expect("the docs mark the API-key example")
        .1;
    let block = after
        .split_once("```yaml\n")
        .expect("a yaml block follows the marker")
        .1
        .split_once("```")
        .expect("the yaml block ends")
        .0;
    // The block is indented as under a check; unindent it by its first line.
    let indent = block.len() - block.trim_start().len();
    block
        .lines()
        .map(|l| l.get(indent..).unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_documented_api_key_expiry_query_reports_each_active_key_for_the_alert() {
    let db = Scratch::new("api_keys", "").await;
    let owner = db.session("api-keys-setup").await;
    owner
        .batch_execute(
            "CREATE TABLE api_keys (key_name text, secret text, expires_at timestamptz, is_active bool);
             INSERT INTO api_keys VALUES
               ('deploy-bot', 'sk-live-0001', now() + interval '2 days', true),
               ('ci', 'sk-live-0002', now() + interval '30 days', true),
               ('retired', 'sk-live-0003', now() - interval '1 day', false),
               ('never-expires', 'sk-live-0004', NULL, true);",
        )
        .await
        .unwrap();
    let c = check(
        &db.dsn(),
        &format!("statements_top: 0\n{}", documented_api_keys_example()),
    );
    let samples = run_ok(c.as_ref()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expiry = |key: &str| {
        values(
            &samples,
            "postgres_query_value",
            &[
                ("query", "api_keys"),
                ("column", "expiry_timestamp_seconds"),
                ("key_name", key),
            ],
        )
    };
    let deploy = expiry("deploy-bot");
    let ci = expiry("ci");
    assert_eq!(deploy.len(), 1, "{samples:#?}");
    assert!(
        (deploy[0] - (now + 2.0 * 86400.0)).abs() < 120.0,
        "{deploy:?}"
    );
    assert!((ci[0] - (now + 30.0 * 86400.0)).abs() < 120.0, "{ci:?}");
    // Inactive and never-expiring keys are not watched.
    assert!(expiry("retired").is_empty() && expiry("never-expires").is_empty());
    assert_eq!(
        values(&samples, "postgres_query_value", &[("query", "api_keys")]).len(),
        2
    );
    // The alert's condition (value < time() + 7 days) holds for deploy-bot
    // only; and no key's secret reached a sample.
    let week = 7.0 * 86400.0;
    assert!(deploy[0] < now + week && ci[0] >= now + week);
    assert!(!format!("{samples:?}").contains("sk-live"));
}
