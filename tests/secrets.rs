//! Secrets never reach what a user reads: every credentialed kind runs
//! against its real server with a distinctive wrong secret, and neither
//! `validate`, `check` (table and JSON), the `serve` logs at debug level,
//! `/metrics` nor the status page may contain it.

mod common;

use std::time::Duration;

use common::{closed_port, get, run_exporter, sample, service_env, Exporter};

/// The checks of [`config`].
const CHECKS: [&str; 8] = [
    "pg",
    "cache",
    "ch",
    "bus",
    "bucket",
    "api",
    "api_basic",
    "token",
];

/// Every secret below contains this, so one search finds any of them.
const MARK: &str = "zq-leak-";

/// One check per credentialed kind, each with a wrong secret, against the
/// test services.
fn config() -> String {
    let pg = url::Url::parse(&service_env("RUNBOOK_TEST_PG_PRIMARY_DSN", "postgres")).unwrap();
    let redis = service_env("RUNBOOK_TEST_REDIS_URL", "redis");
    let clickhouse = service_env("RUNBOOK_TEST_CLICKHOUSE_URL", "clickhouse");
    let ch_user = service_env("RUNBOOK_TEST_CLICKHOUSE_USER", "clickhouse");
    let sasl = service_env("RUNBOOK_TEST_KAFKA_SASL_BROKERS", "kafka");
    let sasl_user = service_env("RUNBOOK_TEST_KAFKA_SASL_USER", "kafka");
    let s3 = service_env("RUNBOOK_TEST_S3_ENDPOINT", "s3");
    let s3_key = service_env("RUNBOOK_TEST_S3_ACCESS_KEY", "s3");
    let http = closed_port();
    format!(
        "defaults: {{interval: 30s, timeout: 5s}}\nchecks:\n\
         \x20 - name: pg\n    kind: postgres\n    host: {host}\n    port: {port}\n    user: {user}\n    password: {MARK}postgres\n    sslmode: disable\n\
         \x20 - name: cache\n    kind: redis\n    url: {redis}\n    password: {MARK}redis\n\
         \x20 - name: ch\n    kind: clickhouse\n    url: {clickhouse}\n    user: {ch_user}\n    password: {MARK}clickhouse\n\
         \x20 - name: bus\n    kind: kafka\n    brokers: [{sasl}]\n    sasl: {{mechanism: PLAIN, username: {sasl_user}, password: {MARK}kafka}}\n\
         \x20 - name: bucket\n    kind: s3\n    endpoint: {s3}\n    bucket: runbook-secrets\n    path_style: true\n    access_key_id: {s3_key}\n    secret_access_key: {MARK}s3\n\
         \x20 - name: api\n    kind: http\n    url: http://{http}/\n    bearer_token: {MARK}http\n\
         \x20 - name: api_basic\n    kind: http\n    url: http://{http}/\n    basic_auth: {{username: u, password: {MARK}basic}}\n\
         \x20 - name: token\n    kind: jwt\n    token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjEwMDB9.{MARK}jwt\n",
        host = pg.host_str().unwrap(),
        port = pg.port().unwrap_or(5432),
        user = pg.username(),
    )
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(MARK), "{what} shows a secret:\n{text}");
}

#[test]
fn validate_and_check_output_never_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config()).unwrap();
    let path = path.display().to_string();
    for args in [
        vec!["validate", "--config", &path],
        vec!["check", "--config", &path],
        vec!["check", "--config", &path, "--output", "json"],
    ] {
        let out = run_exporter(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(&args.join(" "), &text);
        if args[0] == "check" {
            // Every check really ran and failed (wrong secrets), so the
            // failure messages were there to leak.
            assert_eq!(out.status.code(), Some(1), "{text}");
        }
    }
}

#[test]
fn serve_logs_metrics_and_status_page_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config()).unwrap();
    let path = path.display().to_string();
    let served = Exporter::serve(&["--config", &path, "--log.level", "debug"]);

    // Wait until every check has run and failed.
    let metrics = served.wait_for_metrics(
        Duration::from_secs(60),
        "every check to have run and failed",
        |last| {
            CHECKS.iter().all(|c| {
                let check = format!("check=\"{c}\"");
                sample(last, "runbook_check_runs_total", &check).is_some_and(|n| n >= 1.0)
                    && sample(last, "runbook_check_up", &check) == Some(0.0)
            })
        },
    );
    assert_clean("/metrics", &metrics);
    assert_clean("the status page", &get(served.addr, "/").body);

    let logs = served.logs();
    drop(served);
    assert!(
        logs.contains("check failed"),
        "no failure was logged:\n{logs}"
    );
    assert_clean("the logs", &logs);
}
