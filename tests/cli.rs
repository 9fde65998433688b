//! The binary as a user runs it: `check` (exit codes, table, JSON,
//! selection), `validate`, `--help`/`--version`, and `serve` with SIGHUP
//! reload and SIGTERM shutdown.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{closed_port, get, sample, tcp_target};

fn exporter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_runbook-exporter"))
}

fn run(args: &[&str]) -> Output {
    exporter().args(args).output().expect("the binary runs")
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

/// Poll `/metrics` until `cond` holds.
fn wait_for(addr: SocketAddr, what: &str, cond: impl Fn(&str) -> bool) -> String {
    for _ in 0..100 {
        if let Ok(stream) = std::net::TcpStream::connect(addr) {
            drop(stream);
            let body = get(addr, "/metrics").body;
            if cond(&body) {
                return body;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

#[test]
fn serve_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let up = tcp_target();
    let cfg = write_config(
        dir.path(),
        &format!("defaults: {{interval: 200ms, timeout: 100ms}}\nchecks:\n  - name: first\n    kind: tcp\n    address: {up}\n"),
    );
    let addr = closed_port();
    let mut child = exporter()
        .args([
            "serve",
            "--config",
            &cfg,
            "--web.listen-address",
            &addr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(addr, "the first check", |b| {
        sample(b, "runbook_check_up", "check=\"first\"") == Some(1.0)
    });

    write_config(
        dir.path(),
        &format!("defaults: {{interval: 200ms, timeout: 100ms}}\nchecks:\n  - name: second\n    kind: tcp\n    address: {up}\n"),
    );
    signal(&child, libc::SIGHUP);
    let body = wait_for(addr, "the reloaded check", |b| {
        sample(b, "runbook_check_up", "check=\"second\"") == Some(1.0)
    });
    assert!(sample(&body, "runbook_check_up", "check=\"first\"").is_none());

    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
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
