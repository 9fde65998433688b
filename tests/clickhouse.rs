//! The `clickhouse` kind against the real ClickHouse server started by
//! `scripts/services.sh up clickhouse`.

mod common;

use common::build;

use std::time::Duration;

use runbook_exporter::checks::{Check, Failure, Reason, RunContext, Sample};

fn env(name: &str) -> String {
    common::service_env(name, "clickhouse")
}

fn url() -> String {
    env("RUNBOOK_TEST_CLICKHOUSE_URL")
}

fn user() -> String {
    env("RUNBOOK_TEST_CLICKHOUSE_USER")
}

fn password() -> String {
    env("RUNBOOK_TEST_CLICKHOUSE_PASSWORD")
}

async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx))
        .await
        .expect("run finishes")
}

fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.desc.name == name)
        .map(|s| s.value)
}

fn must(samples: &[Sample], name: &str) -> f64 {
    value(samples, name).unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
}

#[tokio::test]
async fn ping_and_query_are_both_measured_with_version_and_start_time() {
    let check = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword: {}",
        url(),
        user(),
        password()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    let ping = must(&samples, "clickhouse_ping_duration");
    let query = must(&samples, "clickhouse_query_duration");
    assert!(ping > 0.0 && ping < 5.0, "{ping}");
    assert!(query > 0.0 && query < 5.0, "{query}");
    let version = samples
        .iter()
        .find(|s| s.desc.name == "clickhouse_version_info")
        .expect("a version");
    assert_eq!(version.value, 1.0);
    assert_eq!(version.labels[0].0, "version");
    assert!(
        version.labels[0].1.split('.').count() >= 3,
        "{:?}",
        version.labels
    );
    let started = must(&samples, "clickhouse_start_timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 30.0 * 86400.0,
        "{started}"
    );
    // Not asked for.
    assert_eq!(value(&samples, "clickhouse_replica_max_delay"), None);
    assert_eq!(check.secrets(), [password()]);
}

#[tokio::test]
async fn a_wrong_password_fails_with_reason_auth_although_ping_answers() {
    let check = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword: not-the-password",
        url(),
        user()
    ));
    let failure = run(check.as_ref()).await.expect_err("wrong password");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    // /ping still answered, and its measurement stays; the query's does not.
    assert!(value(&failure.samples, "clickhouse_ping_duration").is_some());
    assert_eq!(value(&failure.samples, "clickhouse_query_duration"), None);
    assert_eq!(check.secrets(), ["not-the-password"]);

    let unknown = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: nobody-here",
        url()
    ));
    let failure = run(unknown.as_ref()).await.expect_err("unknown user");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
}

#[tokio::test]
async fn the_password_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{}\n", password())).unwrap();
    let check = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword_file: {}",
        url(),
        user(),
        file.display()
    ));
    run(check.as_ref()).await.expect("check passes");
}

#[tokio::test]
async fn a_configured_query_runs_and_a_broken_one_fails() {
    let check = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword: {}\n\
         query: SELECT count() FROM system.tables\ndatabase: system\nreplica_delay: true",
        url(),
        user(),
        password()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert!(must(&samples, "clickhouse_query_duration") > 0.0);
    // The test server has no replicated tables.
    assert_eq!(must(&samples, "clickhouse_replica_max_delay"), 0.0);

    let broken = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword: {}\nquery: SELECT * FROM no_such_table",
        url(),
        user(),
        password()
    ));
    let failure = run(broken.as_ref()).await.expect_err("unknown table");
    assert_eq!(failure.reason, Reason::UnexpectedResponse);
    assert!(
        failure.message.contains("no_such_table"),
        "{}",
        failure.message
    );
    assert!(value(&failure.samples, "clickhouse_ping_duration").is_some());
}

#[tokio::test]
async fn nothing_listening_fails_refused() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let check = build(&format!("kind: clickhouse\nurl: http://127.0.0.1:{port}"));
    let failure = run(check.as_ref()).await.expect_err("nothing listens");
    assert_eq!(
        failure.reason,
        Reason::ConnectionRefused,
        "{}",
        failure.message
    );
    assert!(failure.samples.is_empty());
}

#[tokio::test]
async fn the_native_port_instead_of_the_http_one_fails_the_ping() {
    // A common mistake: port 9000 (native protocol) for 8123 (HTTP).
    let native = env("RUNBOOK_TEST_CLICKHOUSE_NATIVE_ADDR");
    let check = build(&format!("kind: clickhouse\nurl: http://{native}"));
    let failure = run(check.as_ref())
        .await
        .expect_err("not the HTTP interface");
    assert_eq!(
        failure.reason,
        Reason::UnexpectedResponse,
        "{}",
        failure.message
    );
    assert!(failure.message.contains("/ping"), "{}", failure.message);
    assert!(failure.message.contains("400"), "{}", failure.message);
}
