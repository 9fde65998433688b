//! The `postgres` kind against the real PostgreSQL primary and streaming
//! standby started by `scripts/services.sh up postgres`: what a run reports
//! on each side. Faults (a restart, paused replay, a cancelled run) are in
//! `postgres_faults.rs`.

mod common;
mod pg_support;

use common::build;
use pg_support::{
    check as check_for, connect, one, run, run_ok, run_until, values, wait_for, Scratch,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use runbook_exporter::checks::{Check, CheckSpec, Reason, Sample};
use runbook_exporter::scheduler::run_once;

fn env(var: &str) -> String {
    common::service_env(var, "postgres")
}

fn primary() -> String {
    env("RUNBOOK_TEST_PG_PRIMARY_DSN")
}

#[tokio::test]
async fn select_1_and_the_primarys_metrics() {
    let check = check_for(&primary(), "");
    let first = run_ok(check.as_ref()).await;
    assert_eq!(values(&first, "postgres_connect_duration", &[]).len(), 1);
    let samples = run_ok(check.as_ref()).await;
    // The session is reused: no connect in the second run.
    assert!(values(&samples, "postgres_connect_duration", &[]).is_empty());
    assert!(one(&samples, "postgres_select1_duration", &[]) > 0.0);
    assert_eq!(one(&samples, "postgres_info", &[]), 1.0);
    let version = &samples
        .iter()
        .find(|s| s.desc.name == "postgres_info")
        .unwrap()
        .labels[0];
    assert_eq!(version.0, "version");
    assert!(version.1.starts_with("15"), "{version:?}");
    assert_eq!(one(&samples, "postgres_in_recovery", &[]), 0.0);
    assert_eq!(one(&samples, "postgres_max_connections", &[]), 100.0);
    assert_eq!(
        one(&samples, "postgres_superuser_reserved_connections", &[]),
        3.0
    );
    // Our own session is active while it asks.
    assert!(one(&samples, "postgres_connections", &[("state", "active")]) >= 1.0);
    // Every state is reported, even one no session is in (`one` panics on
    // a missing series), as a whole count.
    let aborted = one(
        &samples,
        "postgres_connections",
        &[("state", "idle in transaction (aborted)")],
    );
    assert_eq!(aborted.fract(), 0.0, "{aborted}");
    assert!(
        one(
            &samples,
            "postgres_database_backends",
            &[("database", "postgres")]
        ) >= 1.0
    );
    assert!(
        one(
            &samples,
            "postgres_database_commits",
            &[("database", "postgres")]
        ) > 0.0
    );
    one(
        &samples,
        "postgres_database_deadlocks",
        &[("database", "postgres")],
    );
    // The streaming standby and its slot.
    assert_eq!(
        values(
            &samples,
            "postgres_replication_state",
            &[("state", "streaming")]
        ),
        [1.0]
    );
    assert_eq!(
        one(
            &samples,
            "postgres_replication_slot_active",
            &[("slot", "runbook_standby")]
        ),
        1.0
    );
    for position in ["sent", "write", "flush", "replay"] {
        assert_eq!(
            values(
                &samples,
                "postgres_replication_lag",
                &[("position", position)]
            )
            .len(),
            1,
            "{position}"
        );
    }
    // pg_stat_statements is installed: at most 10 statements, by query id.
    assert_eq!(
        one(
            &samples,
            "postgres_feature_available",
            &[("feature", "pg_stat_statements")]
        ),
        1.0
    );
    let calls = values(&samples, "postgres_statement_calls", &[]);
    assert!(!calls.is_empty() && calls.len() <= 10, "{calls:?}");
    // No standby metrics on a primary.
    assert!(values(&samples, "postgres_standby_unreplayed", &[]).is_empty());
}

#[tokio::test]
async fn the_standby_reports_itself_and_its_replay() {
    let check = check_for(&env("RUNBOOK_TEST_PG_STANDBY_DSN"), "statements_top: 3");
    let samples = run_ok(check.as_ref()).await;
    assert_eq!(one(&samples, "postgres_in_recovery", &[]), 1.0);
    assert_eq!(
        one(&samples, "postgres_standby_wal_receiver_streaming", &[]),
        1.0
    );
    one(&samples, "postgres_standby_unreplayed", &[]);
    assert!(values(&samples, "postgres_replication_state", &[]).is_empty());
    assert!(values(&samples, "postgres_statement_calls", &[]).len() <= 3);
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_failure_that_never_shows_the_password() {
    let dsn = primary().replace("runbook-monitor-pw", "Wr0ng-S3cret-pw");
    let spec: CheckSpec = serde_saphyr::from_str(&format!("kind: postgres\ndsn: '{dsn}'")).unwrap();
    assert!(!format!("{spec:?}").contains("Wr0ng-S3cret-pw"));
    let check: Arc<dyn Check> = Arc::from(spec.build().unwrap());
    let record = run_once(check.clone(), Duration::from_secs(5)).await;
    let failure = record.failure().expect("the password is wrong");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(
        failure
            .message
            .contains("connect to 127.0.0.1:55432/postgres failed"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("28P01"), "{}", failure.message);
    assert!(!format!("{failure:?}").contains("Wr0ng-S3cret-pw"));

    // The same with the password given separately.
    let check = build(
        "kind: postgres\nhost: 127.0.0.1\nport: 55432\nuser: runbook_monitor\npassword: Wr0ng-S3cret-pw\nsslmode: disable",
    );
    let failure = run(check.as_ref()).await.expect_err("wrong password");
    assert_eq!(failure.reason, Reason::Auth);
    assert!(check.secrets().contains(&"Wr0ng-S3cret-pw".to_string()));
    assert!(!failure.message.contains("Wr0ng-S3cret-pw"));
}

#[tokio::test]
async fn nothing_listening_is_connection_refused() {
    let check = build("kind: postgres\nhost: 127.0.0.1\nport: 1\nuser: nobody\nsslmode: disable");
    let failure = run(check.as_ref()).await.expect_err("nothing listens");
    assert_eq!(
        failure.reason,
        Reason::ConnectionRefused,
        "{}",
        failure.message
    );
    // The next run within the backoff does not hammer the server.
    let again = run(check.as_ref()).await.expect_err("still down");
    assert!(
        again.message.contains("next reconnect attempt"),
        "{}",
        again.message
    );
}

#[tokio::test]
async fn a_long_query_is_counted_from_query_start() {
    // A role of the test's own, without pg_monitor: the check sees its
    // sessions' query times and nobody else's.
    let db = Scratch::new("long_query", "").await;
    let su = connect(&env("RUNBOOK_TEST_PG_SUPERUSER_DSN")).await;
    let sleeper = db.session("long-query-sleeper").await;
    // A transaction that started long before the slow query: the age
    // counts from the query, not from BEGIN.
    sleeper.batch_execute("BEGIN").await.unwrap();
    wait_for("the transaction to be 4 s old", 30, || async {
        su.query_one(
            "SELECT coalesce(bool_or(now() - xact_start > interval '4 seconds'), false) \
             FROM pg_stat_activity WHERE application_name = 'long-query-sleeper'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
    })
    .await;
    let query_started = Instant::now();
    let sleeping = tokio::spawn(async move {
        let _ = sleeper.batch_execute("SELECT pg_sleep(6); COMMIT").await;
    });
    let check = check_for(&db.dsn(), "long_query_threshold: 2s\nstatements_top: 0");
    let samples = run_until(check.as_ref(), "a long-running query", |s| {
        values(s, "postgres_long_running_queries", &[]) == [1.0]
    })
    .await;
    let longest = one(&samples, "postgres_longest_query_duration", &[]);
    // Counted from BEGIN it would be at least 4 s more than the query's age.
    let query_age = query_started.elapsed().as_secs_f64();
    assert!(
        longest >= 2.0 && longest <= query_age + 0.5,
        "longest {longest} s, query running for {query_age} s"
    );
    // The transaction's age is the other figure, from BEGIN.
    assert!(one(&samples, "postgres_oldest_transaction_age", &[]) >= longest + 4.0);
    sleeping.await.unwrap();
}

#[tokio::test]
async fn a_session_waiting_for_a_row_lock_is_reported() {
    let db = Scratch::new("row_lock", "").await;
    let holder = db.session("row-lock-holder").await;
    holder
        .batch_execute(
            "CREATE TABLE runbook_lock_test (id int PRIMARY KEY, v int);
             INSERT INTO runbook_lock_test VALUES (1, 0);",
        )
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN; UPDATE runbook_lock_test SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    let waiter = db.session("row-lock-waiter").await;
    let waiting = tokio::spawn(async move {
        waiter
            .batch_execute("UPDATE runbook_lock_test SET v = v + 1 WHERE id = 1")
            .await
    });
    // The check's role sees only the test's sessions: exact counts.
    let check = check_for(&db.dsn(), "statements_top: 0");
    let samples = run_until(check.as_ref(), "a blocked session", |s| {
        values(s, "postgres_lock_waiting_sessions", &[]) == [1.0]
            && values(s, "postgres_longest_lock_wait", &[])
                .first()
                .is_some_and(|v| *v > 0.0)
    })
    .await;
    assert!(one(&samples, "postgres_longest_lock_wait", &[]) < 60.0);
    assert_eq!(
        values(
            &samples,
            "postgres_active_wait_events",
            &[("wait_event_type", "Lock"), ("wait_event", "transactionid")]
        ),
        [1.0]
    );
    holder.batch_execute("COMMIT").await.unwrap();
    waiting.await.unwrap().expect("the waiter gets the lock");
    run_until(check.as_ref(), "the lock wait to end", |s| {
        values(s, "postgres_lock_waiting_sessions", &[]) == [0.0]
    })
    .await;
}

#[tokio::test]
async fn a_deadlock_increments_the_counter() {
    // A database of the test's own: its deadlock counter moves by exactly
    // the test's deadlock.
    let db = Scratch::new("deadlock", "").await;
    let check = check_for(&db.dsn(), "statements_top: 0");
    let name = db.name.clone();
    let deadlocks = |s: &[Sample]| one(s, "postgres_database_deadlocks", &[("database", &name)]);
    let before = deadlocks(&run_ok(check.as_ref()).await);

    let a = db.session("deadlock-a").await;
    let b = db.session("deadlock-b").await;
    a.batch_execute(
        "CREATE TABLE runbook_deadlock_test (id int PRIMARY KEY, v int);
         INSERT INTO runbook_deadlock_test VALUES (1, 0), (2, 0);",
    )
    .await
    .unwrap();
    a.batch_execute("BEGIN; UPDATE runbook_deadlock_test SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    b.batch_execute("BEGIN; UPDATE runbook_deadlock_test SET v = v + 1 WHERE id = 2")
        .await
        .unwrap();
    let a_task = tokio::spawn(async move {
        let r = a
            .batch_execute("UPDATE runbook_deadlock_test SET v = v + 1 WHERE id = 2")
            .await;
        let _ = a.batch_execute("ROLLBACK").await;
        r
    });
    // b closes the cycle only once a waits for b's row.
    wait_for("session a to wait for b's row lock", 30, || async {
        b.query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'deadlock-a' AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
            == 1
    })
    .await;
    let b_result = b
        .batch_execute("UPDATE runbook_deadlock_test SET v = v + 1 WHERE id = 1")
        .await;
    let _ = b.batch_execute("ROLLBACK").await;
    let a_result = a_task.await.unwrap();
    let errors: Vec<String> = [a_result, b_result]
        .into_iter()
        .filter_map(|r| r.err())
        .map(|e| {
            e.as_db_error()
                .map(|d| d.code().code().to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        errors,
        ["40P01"],
        "exactly one session is the deadlock victim"
    );

    run_until(check.as_ref(), "the deadlock counter to rise", |s| {
        deadlocks(s) > before
    })
    .await;
    assert_eq!(deadlocks(&run_ok(check.as_ref()).await), before + 1.0);
}

#[tokio::test]
async fn without_pg_stat_statements_the_part_is_unavailable_not_failing() {
    let dsn = primary().replace("/postgres?", "/runbook_plain?");
    let check = check_for(&dsn, "");
    for _ in 0..2 {
        let samples = run_ok(check.as_ref()).await;
        assert_eq!(
            one(
                &samples,
                "postgres_feature_available",
                &[("feature", "pg_stat_statements")]
            ),
            0.0
        );
        assert!(values(&samples, "postgres_statement_calls", &[]).is_empty());
    }
}

#[tokio::test]
async fn custom_queries_export_rows_up_to_the_limit() {
    let check = check_for(
        &primary(),
        "statements_top: 0
queries:
  - name: api_keys
    sql: \"SELECT 'alpha' AS key_name, 3 AS days_left, true AS active UNION ALL SELECT 'beta', 9, false ORDER BY 1\"
    values: [days_left, active]
    labels: [key_name]
    max_rows: 1
  - name: broken
    sql: SELECT * FROM no_such_table
    values: [n_rows]",
    );
    let samples = run_ok(check.as_ref()).await;
    let rows: Vec<(Vec<(&str, String)>, f64)> = samples
        .iter()
        .filter(|s| s.desc.name == "postgres_query_value")
        .map(|s| (s.labels.clone(), s.value))
        .collect();
    assert_eq!(
        rows,
        [
            (
                vec![
                    ("query", "api_keys".to_string()),
                    ("key_name", "alpha".to_string()),
                    ("column", "days_left".to_string())
                ],
                3.0
            ),
            (
                vec![
                    ("query", "api_keys".to_string()),
                    ("key_name", "alpha".to_string()),
                    ("column", "active".to_string())
                ],
                1.0
            ),
        ]
    );
    assert_eq!(
        one(
            &samples,
            "postgres_feature_available",
            &[("feature", "query:api_keys")]
        ),
        1.0
    );
    assert_eq!(
        one(
            &samples,
            "postgres_feature_available",
            &[("feature", "query:broken")]
        ),
        0.0
    );
}

#[tokio::test]
async fn the_monitoring_session_is_read_only_and_bounded_by_statement_timeout() {
    let su = connect(&env("RUNBOOK_TEST_PG_SUPERUSER_DSN")).await;
    let check = build(&format!(
        "kind: postgres\ndsn: '{}'\napplication_name: runbook-settings-test\nstatements_top: 0",
        primary()
    ));
    run_ok(check.as_ref()).await;
    // A write through the monitoring session is refused, and leaves nothing,
    // even when its role (a superuser here) could write.
    let writer = check_for(
        &env("RUNBOOK_TEST_PG_SUPERUSER_DSN"),
        "statements_top: 0\nqueries:\n  - {name: write, sql: CREATE TABLE runbook_read_only_probe AS SELECT 1 AS x, values: [x]}",
    );
    let samples = run_ok(writer.as_ref()).await;
    assert_eq!(
        one(
            &samples,
            "postgres_feature_available",
            &[("feature", "query:write")]
        ),
        0.0
    );
    let created = su
        .query_one(
            "SELECT to_regclass('runbook_read_only_probe') IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    assert!(
        !created.get::<_, bool>(0),
        "the monitoring session wrote a table"
    );
    let row = su
        .query_one(
            "SELECT count(*), min(application_name) FROM pg_stat_activity WHERE application_name = 'runbook-settings-test'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    // statement_timeout is 80% of the 5 s run timeout.
    let check = check_for(
        &primary(),
        "statements_top: 0\nqueries:\n  - {name: slow, sql: SELECT pg_sleep(10) IS NULL AS x, values: [x]}",
    );
    let start = Instant::now();
    let samples = run_ok(check.as_ref()).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        one(
            &samples,
            "postgres_feature_available",
            &[("feature", "query:slow")]
        ),
        0.0
    );
}

#[tokio::test]
async fn tls_modes_encrypt_and_verify() {
    // The Debian cluster serves its self-signed "snakeoil" certificate.
    let dsn = primary().replace("sslmode=disable", "sslmode=require");
    let check = build(&format!(
        "kind: postgres\ndsn: '{dsn}'\napplication_name: runbook-tls-test\nstatements_top: 0"
    ));
    run_ok(check.as_ref()).await;
    let su = connect(&env("RUNBOOK_TEST_PG_SUPERUSER_DSN")).await;
    let encrypted: Vec<bool> = su
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'runbook-tls-test'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(encrypted, [true]);

    // verify-full refuses a certificate no trusted CA signed.
    let dsn = primary().replace("sslmode=disable", "sslmode=verify-full");
    let failure = run(check_for(&dsn, "").as_ref())
        .await
        .expect_err("the certificate is not trusted");
    assert_eq!(failure.reason, Reason::Tls, "{}", failure.message);
}

#[test]
fn validation_reports_problems() {
    let spec: CheckSpec = serde_saphyr::from_str(
        "kind: postgres
password: a
password_file: /nonexistent
tls: {server_name: db, insecure_skip_verify: true}
sslmode: disable
max_databases: 0
max_clients: 0
max_wait_events: 0
queries:
  - {name: q, sql: ' ', values: []}
  - {name: q, sql: SELECT 1, values: [x], labels: [check, x], max_rows: 0}",
    )
    .unwrap();
    let fields: Vec<String> = spec.validate().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "dsn",
            "password",
            "tls.insecure_skip_verify",
            "tls.server_name",
            "tls",
            "max_databases",
            "max_clients",
            "max_wait_events",
            "queries[0].sql",
            "queries[0].values",
            "queries[1].name",
            "queries[1].labels",
            "queries[1].labels",
            "queries[1].max_rows",
        ]
    );

    let spec: CheckSpec = serde_saphyr::from_str(
        "kind: postgres\ndsn: 'postgres://u:hunter2@db/x?sslmode=verify-ca'",
    )
    .unwrap();
    let problems = spec.validate();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, "dsn");
    assert!(problems[0].1.contains("verify-ca"), "{}", problems[0].1);
    assert!(!problems[0].1.contains("hunter2"));

    assert!(
        serde_saphyr::from_str::<CheckSpec>("kind: postgres\nhost: db\nport_number: 1").is_err()
    );
    assert!(
        serde_saphyr::from_str::<CheckSpec>("kind: postgres\nhost: db\npooler: statement").is_err(),
        "only none, session and transaction pooling are known"
    );
}
