//! The `postgres` kind against faults of the real PostgreSQL primary and
//! standby started by `scripts/services.sh up postgres`: a restart of the
//! primary, replay paused on the standby, and a run cancelled mid-query.

mod common;
mod pg_support;

use common::{build, ctx};
use pg_support::{check as check_for, connect, one, run_ok, run_until, values};

use std::sync::Arc;
use std::time::{Duration, Instant};

use runbook_exporter::checks::{Check, Sample};
use runbook_exporter::scheduler::run_once;
use tokio::sync::RwLock;

/// The test that restarts the primary takes this for writing; the others
/// for reading, so they never see the restart.
static SERVER: RwLock<()> = RwLock::const_new(());

fn env(var: &str) -> String {
    common::service_env(var, "postgres")
}

fn primary() -> String {
    env("RUNBOOK_TEST_PG_PRIMARY_DSN")
}

/// Resumes replay on the standby even when the test fails half-way.
struct ResumeReplay(String);

impl Drop for ResumeReplay {
    fn drop(&mut self) {
        // Bounded, so a hung server cannot hang the test's end.
        let _ = std::process::Command::new("timeout")
            .args(["--kill-after=5s", "30s", "psql"])
            .args([&self.0, "-Xqc", "SELECT pg_wal_replay_resume()"])
            .output();
    }
}

#[tokio::test]
async fn paused_replay_shows_lag_on_both_sides_and_it_returns_to_zero() {
    let _server = SERVER.read().await;
    let standby_su = env("RUNBOOK_TEST_PG_STANDBY_SUPERUSER_DSN");
    let on_primary = check_for(&primary(), "statements_top: 0");
    let on_standby = check_for(&env("RUNBOOK_TEST_PG_STANDBY_DSN"), "statements_top: 0");
    let replay_bytes =
        |s: &[Sample]| values(s, "postgres_replication_lag", &[("position", "replay")]);
    let replay_seconds = |s: &[Sample]| {
        values(
            s,
            "postgres_replication_lag_time",
            &[("position", "replay")],
        )
    };
    let unreplayed = |s: &[Sample]| one(s, "postgres_standby_unreplayed", &[]);
    let standby_lag = |s: &[Sample]| one(s, "postgres_standby_replay_lag", &[]);

    let standby = connect(&standby_su).await;
    let _resume = ResumeReplay(standby_su.clone());
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let writer = connect(&env("RUNBOOK_TEST_PG_SUPERUSER_DSN")).await;
    writer
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS runbook_lag_test (id bigserial, payload text);
             INSERT INTO runbook_lag_test (payload) SELECT repeat('x', 100) FROM generate_series(1, 50000);",
        )
        .await
        .unwrap();

    let primary_side = run_until(
        on_primary.as_ref(),
        "replay lag in bytes on the primary",
        |s| replay_bytes(s).first().is_some_and(|v| *v > 1_000_000.0),
    )
    .await;
    assert!(!replay_seconds(&primary_side).is_empty());
    run_until(
        on_standby.as_ref(),
        "unreplayed WAL and replay lag on the standby",
        |s| unreplayed(s) > 1_000_000.0 && standby_lag(s) > 0.0,
    )
    .await;

    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    run_until(on_standby.as_ref(), "the standby to catch up", |s| {
        unreplayed(s) == 0.0 && standby_lag(s) == 0.0
    })
    .await;
    run_until(
        on_primary.as_ref(),
        "the primary to see the standby caught up",
        |s| replay_bytes(s) == [0.0],
    )
    .await;
}

#[tokio::test]
async fn a_primary_restart_takes_the_check_down_and_back_up_with_one_session() {
    let _server = SERVER.write().await;
    let cluster = env("RUNBOOK_TEST_PG_PRIMARY_CLUSTER");
    let su_dsn = env("RUNBOOK_TEST_PG_SUPERUSER_DSN");
    let check: Arc<dyn Check> = Arc::from(build(&format!(
        "kind: postgres\ndsn: '{}'\napplication_name: runbook-restart-test\nstatements_top: 0",
        primary()
    )));
    let up = |check: Arc<dyn Check>| async move {
        run_once(check, Duration::from_secs(5)).await.result.is_ok()
    };
    let sessions = || {
        let su_dsn = su_dsn.clone();
        async move {
            let su = connect(&su_dsn).await;
            su.query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runbook-restart-test'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    let pg_ctl = |action: &str| {
        let mut args: Vec<String> = cluster.split_whitespace().map(String::from).collect();
        args.push(action.to_string());
        if action == "stop" {
            args.extend(["-m".to_string(), "fast".to_string()]);
        }
        let status = std::process::Command::new("timeout")
            .args(["--kill-after=5s", "120s", "pg_ctlcluster"])
            .args(&args)
            .status()
            .expect("pg_ctlcluster runs");
        assert!(status.success(), "pg_ctlcluster {args:?}");
    };

    for _ in 0..3 {
        assert!(up(check.clone()).await);
    }
    assert_eq!(sessions().await, 1);

    pg_ctl("stop");
    let down = up(check.clone()).await;
    pg_ctl("start");
    assert!(!down, "the check failed while the primary was stopped");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut max_sessions = 0;
    loop {
        let ok = up(check.clone()).await;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), async {
            Ok::<_, ()>(sessions().await)
        })
        .await
        {
            max_sessions = max_sessions.max(n);
        }
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the check did not come back");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for _ in 0..3 {
        assert!(up(check.clone()).await);
        max_sessions = max_sessions.max(sessions().await);
    }
    assert_eq!(max_sessions, 1, "never more than one monitoring session");

    // Leave the standby streaming again for whoever runs next.
    let check = check_for(&primary(), "statements_top: 0");
    run_until(check.as_ref(), "the standby to stream again", |s| {
        values(s, "postgres_replication_state", &[("state", "streaming")]) == [1.0]
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_run_leaves_no_session_behind() {
    let _server = SERVER.read().await;
    let su = connect(&env("RUNBOOK_TEST_PG_SUPERUSER_DSN")).await;
    let sessions = || async {
        su.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runbook-cancel-test'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    let check = check_for(
        &primary(),
        "application_name: runbook-cancel-test\nstatements_top: 0\nqueries:\n  - {name: slow, sql: SELECT pg_sleep(1.5) IS NULL AS x, values: [x]}",
    );
    // The scheduler gives up on the run while the slow query runs.
    let cancelled = tokio::time::timeout(Duration::from_millis(700), check.run(&ctx())).await;
    assert!(cancelled.is_err(), "the run ended on its own");
    // The next run opens a new session instead of reusing the broken one.
    let samples = run_ok(check.as_ref()).await;
    assert_eq!(values(&samples, "postgres_connect_duration", &[]).len(), 1);
    assert_eq!(
        one(
            &samples,
            "postgres_feature_available",
            &[("feature", "query:slow")]
        ),
        1.0
    );
    // The old session is gone (its query was cancelled), the new one stays.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sessions().await != 1 {
        assert!(Instant::now() < deadline, "the old session lingers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
