//! The binary as a user runs it: `check` (exit codes, table, JSON,
//! selection), `validate`, `--help`/`--version`, and `serve`: SIGHUP
//! reload (also with HTTP reload off, keeping counters), SIGTERM shutdown,
//! exit 1 when it cannot listen, and the documented environment variables.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{closed_port, output_within, request, run_exporter, sample, tcp_target, Exporter};

fn run(args: &[&str]) -> Output {
    run_exporter(args)
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn two_checks(up: SocketAddr, down: SocketAddr) -> String {
    format!(
        "checks:\n  - name: up_check\n    kind: tcp\n    address: {up}\n    labels: {{team: core}}\n\
         \x20 - name: down_check\n    kind: tcp\n    address: {down}\n"
    )
}

#[test]
fn check_exits_0_when_all_pass_and_prints_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &two_checks(tcp_target(), closed_port()));
    let out = run(&["check", "--config", &cfg, "--check", "up_check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("NAME      KIND  STATUS  DURATION"),
        "{table}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!((row[0], row[1], row[2]), ("up_check", "tcp", "ok"));
    assert_eq!((row[4], row[5]), ("-", "-"));
}

#[test]
fn check_exits_1_when_any_fails_and_json_has_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let down = closed_port();
    let cfg = write_config(dir.path(), &two_checks(tcp_target(), down));
    let out = run(&["check", "-c", &cfg, "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "up_check");
    assert_eq!(items[0]["status"], "ok");
    assert_eq!(items[0]["reason"], serde_json::Value::Null);
    assert_eq!(items[0]["labels"]["team"], "core");
    assert!(items[0]["duration_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(items[1]["name"], "down_check");
    assert_eq!(items[1]["kind"], "tcp");
    assert_eq!(items[1]["status"], "fail");
    assert_eq!(items[1]["reason"], "connection_refused");
    assert!(items[1]["message"]
        .as_str()
        .unwrap()
        .contains(&down.to_string()));
}

#[test]
fn check_exits_2_on_an_invalid_config_or_an_unknown_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "checks:\n  - name: a\n    kind: tcp\n");
    let out = run(&["check", "-c", &cfg]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{cfg}:2:5: checks[0]: missing field `address`\n")
    );

    let cfg = write_config(dir.path(), &two_checks(tcp_target(), closed_port()));
    let out = run(&["check", "-c", &cfg, "--check", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{cfg}: no check named \"nope\"\n")
    );
}

#[test]
fn validate_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n    timeout: 1\n  - name: b-c\n    kind: tcp\n    address: 127.0.0.1:1\n",
    );
    let out = run(&["validate", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{cfg}:5:14: checks[0].timeout: invalid duration 1: a unit is required, like 1s or 1ms\n\
             {cfg}:6:11: checks[1].name: invalid check name \"b-c\": use letters, digits and underscores, not starting with a digit\n"
        )
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let out = run(&["validate", "--config", example.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": OK, 14 checks\n"));
}

#[test]
fn help_and_version() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("runbook-exporter {}\n", env!("CARGO_PKG_VERSION"))
    );
    for cmd in [
        &["--help"][..],
        &["serve", "--help"],
        &["check", "--help"],
        &["validate", "--help"],
    ] {
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(0), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("--config"),
            "{cmd:?}"
        );
    }
}

const LIMIT: Duration = Duration::from_secs(30);

fn runs(body: &str, check: &str) -> f64 {
    sample(
        body,
        "runbook_check_runs_total",
        &format!("check=\"{check}\""),
    )
    .unwrap_or_else(|| panic!("no runs_total for {check} in\n{body}"))
}

#[test]
fn serve_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let up = tcp_target();
    let cfg = write_config(
        dir.path(),
        &format!("defaults: {{interval: 500ms, timeout: 450ms}}\nchecks:\n  - name: first\n    kind: tcp\n    address: {up}\n"),
    );
    let exporter = Exporter::serve(&["--config", &cfg]);
    exporter.wait_for_metrics(LIMIT, "the first check up", |b| {
        sample(b, "runbook_check_up", "check=\"first\"") == Some(1.0)
    });

    write_config(
        dir.path(),
        &format!("defaults: {{interval: 500ms, timeout: 450ms}}\nchecks:\n  - name: second\n    kind: tcp\n    address: {up}\n"),
    );
    exporter.signal("HUP");
    let body = exporter.wait_for_metrics(LIMIT, "the reloaded check up", |b| {
        sample(b, "runbook_check_up", "check=\"second\"") == Some(1.0)
    });
    assert!(sample(&body, "runbook_check_up", "check=\"first\"").is_none());
    exporter.stop();
}

/// With `--web.enable-reload=false`, `POST /-/reload` is refused and
/// changes nothing, SIGHUP still reloads, and a check whose interval
/// changed keeps its counters.
#[test]
fn sighup_reloads_with_http_reload_off_and_a_changed_check_keeps_its_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (up, down) = (tcp_target(), closed_port());
    let config = |interval: &str| {
        format!(
            "defaults: {{interval: {interval}, timeout: 450ms}}\nchecks:\n\
             \x20 - name: up_check\n    kind: tcp\n    address: {up}\n\
             \x20 - name: down_check\n    kind: tcp\n    address: {down}\n"
        )
    };
    let cfg = write_config(dir.path(), &config("500ms"));
    let exporter = Exporter::serve(&["--config", &cfg, "--web.enable-reload=false"]);
    let refused = |b: &str| {
        sample(
            b,
            "runbook_check_failures_total",
            "check=\"down_check\",kind=\"tcp\",reason=\"connection_refused\"",
        )
        .unwrap_or(0.0)
    };
    exporter.wait_for_metrics(LIMIT, "five runs of each check", |b| {
        runs(b, "up_check") >= 5.0 && refused(b) >= 5.0
    });

    // The interval changes: both checks' definitions differ now.
    write_config(dir.path(), &config("700ms"));
    let reloads = |b: &str| {
        sample(
            b,
            "runbook_exporter_config_last_reload_success_timestamp_seconds",
            "",
        )
        .expect("a last reload timestamp")
    };
    let first_load = reloads(&request(exporter.addr, "GET", "/metrics", &[]).body);
    let resp = request(exporter.addr, "POST", "/-/reload", &[]);
    assert_eq!(resp.status, 403, "{}", resp.body);
    let before = request(exporter.addr, "GET", "/metrics", &[]).body;
    assert_eq!(reloads(&before), first_load, "a refused POST reloaded");

    exporter.signal("HUP");
    let after = exporter.wait_for_metrics(LIMIT, "the SIGHUP reload", |b| reloads(b) > first_load);
    // Read right after the reload, before enough new runs could make up
    // for a reset: the counters carried over.
    assert!(
        runs(&after, "up_check") >= runs(&before, "up_check"),
        "up_check's runs_total was reset: {} before, {} after",
        runs(&before, "up_check"),
        runs(&after, "up_check")
    );
    assert!(
        refused(&after) >= refused(&before),
        "failures_total was reset"
    );
    let later = exporter.wait_for_metrics(LIMIT, "more runs after the reload", |b| {
        runs(b, "up_check") > runs(&after, "up_check") && refused(b) > refused(&after)
    });
    assert_eq!(
        sample(&later, "runbook_check_up", "check=\"up_check\""),
        Some(1.0)
    );
    exporter.stop();
}

#[test]
fn serve_refuses_an_invalid_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "checks: 5\n");
    let out = run(&[
        "serve",
        "--config",
        &cfg,
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{cfg}:1:9: checks: invalid type: integer `5`, expected a sequence\n")
    );
}

#[test]
fn serve_exits_1_when_it_cannot_listen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &two_checks(tcp_target(), closed_port()));
    // The port is held by this test for as long as the exporter runs.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["serve", "--config", &cfg, "--web.listen-address", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    drop(taken);
}

/// README: `RUNBOOK_CONFIG`, `RUNBOOK_LISTEN_ADDRESS` and
/// `RUNBOOK_LOG_LEVEL` stand in for `--config`, `--web.listen-address` and
/// `--log.level`; `RUNBOOK_WEB_CONFIG_FILE` for `--web.config.file`.
#[test]
fn serve_takes_its_settings_from_the_documented_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &two_checks(tcp_target(), closed_port()));
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "http_server_config:\n  headers: {X-From-Env: web-config}\n",
    )
    .unwrap();
    let exporter = Exporter::start(|cmd, addr| {
        cmd.env("RUNBOOK_CONFIG", &cfg)
            .env("RUNBOOK_LISTEN_ADDRESS", addr.to_string())
            .env("RUNBOOK_LOG_LEVEL", "debug")
            .env("RUNBOOK_WEB_CONFIG_FILE", &web);
    });
    // The config from RUNBOOK_CONFIG runs, on RUNBOOK_LISTEN_ADDRESS.
    exporter.wait_for_metrics(LIMIT, "up_check up and down_check down", |b| {
        sample(b, "runbook_check_up", "check=\"up_check\"") == Some(1.0)
            && sample(b, "runbook_check_up", "check=\"down_check\"") == Some(0.0)
    });
    // RUNBOOK_WEB_CONFIG_FILE's headers are on every answer.
    let resp = request(exporter.addr, "GET", "/-/healthy", &[]);
    assert_eq!(
        resp.header("x-from-env"),
        Some("web-config"),
        "{}",
        resp.headers
    );
    // RUNBOOK_LOG_LEVEL=debug: successful runs are logged only at debug.
    let deadline = std::time::Instant::now() + LIMIT;
    while !exporter.logs().contains("check succeeded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no debug line within {LIMIT:?}:\n{}",
            exporter.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    exporter.stop();

    // `validate` reads RUNBOOK_CONFIG too.
    let out = output_within(
        common::exporter()
            .arg("validate")
            .env("RUNBOOK_CONFIG", &cfg),
        LIMIT,
        "runbook-exporter validate",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{cfg}: OK, 2 checks\n")
    );
}
