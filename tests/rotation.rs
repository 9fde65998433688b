//! Rotated secret files are picked up on reload: a postgres check with
//! `password_file` against the real primary (`App::reload`), and an http
//! check with `bearer_token_file` in the real binary reloaded by SIGHUP.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{sample, Exporter};
use runbook_exporter::app::App;
use runbook_exporter::checks::Reason;
use runbook_exporter::metrics::CheckState;
use tokio_postgres::NoTls;

/// Poll `cond` every 100 ms until it holds, or panic after `limit`.
async fn wait_until(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state(app: &App, name: &str) -> Arc<CheckState> {
    app.store()
        .checks()
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .expect("the check is scheduled")
}

fn last_ok(state: &CheckState) -> Option<bool> {
    state.last().map(|r| r.result.is_ok())
}

/// A role name no other test (or earlier run) uses.
fn unique_role() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("rotation_{}_{nanos}", std::process::id())
}

async fn superuser() -> tokio_postgres::Client {
    let dsn = common::service_env("RUNBOOK_TEST_PG_SUPERUSER_DSN", "postgres");
    let (client, conn) = tokio_postgres::connect(&dsn, NoTls)
        .await
        .expect("superuser connects");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn primary_port() -> u16 {
    let dsn = common::service_env("RUNBOOK_TEST_PG_PRIMARY_DSN", "postgres");
    tokio_postgres::Config::from_str(&dsn).unwrap().get_ports()[0]
}

/// Force the role's sessions to end, so its next run must log in again.
async fn terminate_sessions(admin: &tokio_postgres::Client, role: &str) {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_password_file_rotation_is_picked_up_on_reload() {
    let admin = superuser().await;
    let role = unique_role();
    // The role name is ours (letters, digits, underscores); passwords are
    // literals without quotes.
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'first-pw'; GRANT pg_monitor TO {role};"
        ))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pg-password");
    std::fs::write(&pw, "first-pw\n").unwrap();
    let interval = Duration::from_secs(2);
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "defaults: {{interval: 2s, timeout: 1500ms}}\nchecks:\n  - name: rotated_pg\n    kind: postgres\n\
             \x20   host: 127.0.0.1\n    port: {}\n    user: {role}\n    database: postgres\n\
             \x20   sslmode: disable\n    statements_top: 0\n    password_file: {}\n",
            primary_port(),
            pw.display()
        ),
    )
    .unwrap();
    let app = App::start(path).await.expect("config loads");
    let check = state(&app, "rotated_pg");
    wait_until(Duration::from_secs(30), "the check to be up", || {
        last_ok(&check) == Some(true)
    })
    .await;

    // The password changes on the server; the file still has the old one.
    admin
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD 'second-pw'"))
        .await
        .unwrap();
    terminate_sessions(&admin, &role).await;
    wait_until(Duration::from_secs(30), "an auth failure", || {
        check.failures_total(Reason::Auth) >= 1 && last_ok(&check) == Some(false)
    })
    .await;
    let last = check.last().unwrap();
    let failure = last.failure().unwrap();
    assert_eq!(failure.reason, Reason::Auth);
    assert!(!failure.message.contains("-pw"), "{}", failure.message);

    // A reload with the files unchanged leaves the check alone: its last
    // run is not forgotten, as it is for a rebuilt check.
    app.reload().await.unwrap();
    assert!(check.last().is_some(), "an unchanged check was rebuilt");

    std::fs::write(&pw, "second-pw\n").unwrap();
    let runs_before = check.runs_total();
    let auth_failures = check.failures_total(Reason::Auth);
    let reloaded = Instant::now();
    app.reload().await.unwrap();
    let after = state(&app, "rotated_pg");
    assert!(Arc::ptr_eq(&check, &after), "the counters carry over");
    // The rebuilt check's first run comes within one interval, and passes.
    wait_until(interval * 3, "the first run after the reload", || {
        check.last().is_some()
    })
    .await;
    assert_eq!(
        last_ok(&check),
        Some(true),
        "{:?}",
        check.last().unwrap().failure()
    );
    assert!(
        reloaded.elapsed() < interval + Duration::from_secs(2),
        "up {:?} after the reload",
        reloaded.elapsed()
    );
    assert!(check.runs_total() > runs_before, "runs_total did not reset");
    assert_eq!(check.failures_total(Reason::Auth), auth_failures);

    app.shutdown().await;
    terminate_sessions(&admin, &role).await;
    // Sessions may take a moment to go; the role is unique either way.
    let _ = admin.batch_execute(&format!("DROP ROLE {role}")).await;
}

/// A loopback HTTP server answering 200 to `Authorization: Bearer <token>`
/// with the current token and 401 to anything else, one request per
/// connection.
fn token_server(token: Arc<Mutex<String>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut authorized = false;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    let expected = format!("Bearer {}", token.lock().unwrap());
                    if name.eq_ignore_ascii_case("authorization") && value.trim() == expected {
                        authorized = true;
                    }
                }
                line.clear();
            }
            let status = if authorized {
                "200 OK"
            } else {
                "401 Unauthorized"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    addr
}

#[test]
fn http_bearer_token_file_rotation_is_picked_up_on_sighup() {
    let token = Arc::new(Mutex::new("first-token".to_string()));
    let target = token_server(token.clone());
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "defaults: {{interval: 500ms, timeout: 400ms}}\nchecks:\n  - name: api\n    kind: http\n\
             \x20   url: http://{target}/health\n    bearer_token_file: {}\n",
            token_file.display()
        ),
    )
    .unwrap();
    let exporter = Exporter::serve(&[OsStr::new("--config"), config.as_os_str()]);
    let up = |b: &str| sample(b, "runbook_check_up", "check=\"api\"");
    let auth = |b: &str| sample(b, "runbook_check_failures_total", "reason=\"auth\"");
    let runs = |b: &str| sample(b, "runbook_check_runs_total", "check=\"api\"").unwrap_or(0.0);
    let limit = Duration::from_secs(20);
    exporter.wait_for_metrics(limit, "the check to be up", |b| up(b) == Some(1.0));

    // The server's token rotates; the file still holds the old one. The
    // http kind classifies 401 (and 403) as `auth`.
    *token.lock().unwrap() = "second-token".to_string();
    let failed = exporter.wait_for_metrics(limit, "an auth failure", |b| {
        up(b) == Some(0.0) && auth(b) >= Some(1.0)
    });

    std::fs::write(&token_file, "second-token\n").unwrap();
    exporter.signal("HUP");
    let body = exporter.wait_for_metrics(limit, "the check up again", |b| up(b) == Some(1.0));
    assert!(runs(&body) > runs(&failed), "runs_total did not reset");
    assert!(auth(&body) >= auth(&failed));
    assert_eq!(
        sample(&body, "runbook_exporter_config_last_reload_successful", ""),
        Some(1.0)
    );
    exporter.stop();
}
