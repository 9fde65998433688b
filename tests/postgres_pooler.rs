//! The `postgres` kind through real PgBouncer (`scripts/services.sh up
//! pgbouncer`) in transaction and in session pooling mode, in front of the
//! test primary: the session settings hold in both, the DSN's own
//! `options` are kept on a direct connection, and behind the transaction
//! pooler no named prepared statement is needed.

mod pg_support;

use pg_support::{check, connect, one, run, run_ok, superuser_dsn, values, wait_for};
use runbook_exporter::checks::Reason;

fn pooler_env(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} not set: run scripts/services.sh up pgbouncer"))
}

/// A database of the test's own, owned by the pooler tests' role, and the
/// DSN of that role on it through the pooler of `dsn_var`.
async fn own_database(name: &str, dsn_var: &str) -> (String, String) {
    let role = pooler_env("RUNBOOK_TEST_PGBOUNCER_ROLE");
    let db = format!("runbook_t_{name}");
    let su = connect(&superuser_dsn()).await;
    for sql in [
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("CREATE DATABASE {db} OWNER {role}"),
    ] {
        su.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let dsn = pooler_env(dsn_var).replace("/postgres?", &format!("/{db}?"));
    (db, dsn)
}

/// Terminate every server connection the poolers hold to `db`, and wait
/// until they are gone.
async fn kill_server_connections(db: &str) {
    let su = connect(&superuser_dsn()).await;
    su.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        &[&db],
    )
    .await
    .expect("terminating the pooler's server connections");
    wait_for("the pooler's server connections to end", 10, || async {
        let n: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .await
            .unwrap()
            .get(0);
        n == 0
    })
    .await;
}

/// The session's own settings, read by a custom query of the check.
const SETTINGS_QUERY: &str = "queries:
  - name: settings
    sql: \"SELECT extract(epoch FROM current_setting('statement_timeout')::interval)::float8 AS statement_timeout, extract(epoch FROM current_setting('lock_timeout')::interval)::float8 AS lock_timeout, current_setting('transaction_read_only') = 'on' AS read_only, current_setting('work_mem') = '7MB' AS work_mem_7mb\"
    values: [statement_timeout, lock_timeout, read_only, work_mem_7mb]";

fn setting(samples: &[runbook_exporter::checks::Sample], column: &str) -> f64 {
    one(
        samples,
        "postgres_query_value",
        &[("query", "settings"), ("column", column)],
    )
}

/// With the check's 5 s timeout: statement_timeout 4 s, lock_timeout
/// 2.5 s, read-only transactions.
fn assert_limits(samples: &[runbook_exporter::checks::Sample], path: &str) {
    assert_eq!(
        one(
            samples,
            "postgres_feature_available",
            &[("feature", "query:settings")]
        ),
        1.0,
        "{path}: the settings query failed"
    );
    assert_eq!(setting(samples, "statement_timeout"), 4.0, "{path}");
    assert_eq!(setting(samples, "lock_timeout"), 2.5, "{path}");
    assert_eq!(setting(samples, "read_only"), 1.0, "{path}");
}

#[tokio::test]
async fn the_settings_hold_through_both_poolers_and_the_dsns_options_are_kept() {
    // Direct, with options of the DSN's own: they are kept, and the
    // check's limits are set on top of them.
    let (_, _) = own_database("pooler_settings", "RUNBOOK_TEST_PGBOUNCER_SESSION_DSN").await;
    let direct = format!(
        "{}&options=-c%20work_mem%3D7MB",
        pg_support::env("RUNBOOK_TEST_PG_PRIMARY_DSN")
    );
    let c = check(&direct, &format!("statements_top: 0\n{SETTINGS_QUERY}"));
    for _ in 0..2 {
        let samples = run_ok(c.as_ref()).await;
        assert_limits(&samples, "direct");
        assert_eq!(
            setting(&samples, "work_mem_7mb"),
            1.0,
            "the DSN's options were dropped"
        );
    }
    for (var, pooler) in [
        ("RUNBOOK_TEST_PGBOUNCER_SESSION_DSN", "session"),
        ("RUNBOOK_TEST_PGBOUNCER_TRANSACTION_DSN", "transaction"),
    ] {
        let (_, dsn) = own_database(&format!("pooler_settings_{pooler}"), var).await;
        let c = check(
            &dsn,
            &format!("pooler: {pooler}\nstatements_top: 0\n{SETTINGS_QUERY}"),
        );
        for _ in 0..3 {
            let samples = run_ok(c.as_ref()).await;
            assert_limits(&samples, pooler);
            assert_eq!(one(&samples, "postgres_in_recovery", &[]), 0.0);
            assert_eq!(
                values(
                    &samples,
                    "postgres_replication_slot_active",
                    &[("slot", "runbook_standby")]
                ),
                [1.0],
                "{pooler}: the standby's slot (pg_replication_slots needs no pg_monitor)"
            );
        }
    }
}

#[tokio::test]
async fn behind_the_transaction_pooler_no_named_prepared_statement_is_needed() {
    let (db, dsn) = own_database("pooler_tx", "RUNBOOK_TEST_PGBOUNCER_TRANSACTION_DSN").await;
    let tx = check(
        &dsn,
        "pooler: transaction\nstatements_top: 0\napplication_name: runbook-pooler-tx",
    );
    // The same through the same pooler, as if it were a direct connection.
    let named = check(
        &dsn,
        "statements_top: 0\napplication_name: runbook-pooler-named",
    );
    run_ok(tx.as_ref()).await;
    run_ok(named.as_ref()).await;
    // The pooler's server connections go away (as after its
    // server_idle_timeout or a server restart): the next transactions run
    // on new server connections, where no statement was ever prepared.
    kill_server_connections(&db).await;
    for _ in 0..3 {
        let samples = run_ok(tx.as_ref()).await;
        assert!(
            values(&samples, "postgres_connect_duration", &[]).is_empty(),
            "the client session stays"
        );
        one(&samples, "postgres_connections", &[("state", "active")]);
        kill_server_connections(&db).await;
    }
    let failure = run(named.as_ref())
        .await
        .expect_err("named statements prepared on a server connection that is gone");
    assert_eq!(
        failure.reason,
        Reason::UnexpectedResponse,
        "{}",
        failure.message
    );
    assert!(failure.message.contains("26000"), "{}", failure.message);
}

#[tokio::test]
async fn a_session_pooler_that_loses_its_server_connection_is_reconnected_within_the_run() {
    let (db, dsn) = own_database("pooler_session", "RUNBOOK_TEST_PGBOUNCER_SESSION_DSN").await;
    let c = check(&dsn, "pooler: session\nstatements_top: 0");
    run_ok(c.as_ref()).await;
    // In session mode the client's session is tied to one server
    // connection: PgBouncer closes the client's when it ends.
    kill_server_connections(&db).await;
    let samples = run_ok(c.as_ref()).await;
    assert_eq!(
        values(&samples, "postgres_connect_duration", &[]).len(),
        1,
        "the run reconnected"
    );
}
