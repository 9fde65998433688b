//! The HTTP endpoints of a running exporter: /metrics in both exposition
//! formats, health and readiness, and reloads (good and bad files).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{closed_port, get, request, sample, tcp_target};
use runbook_exporter::app::App;

/// Checks on loopback with a timeout far above what a loopback connect
/// takes even on a loaded machine, so "up" means up.
fn config_text(up: SocketAddr, down: SocketAddr) -> String {
    format!(
        "defaults: {{interval: 500ms, timeout: 450ms}}\nchecks:\n\
         \x20 - name: up_check\n    kind: tcp\n    address: {up}\n    labels: {{team: core}}\n\
         \x20 - name: down_check\n    kind: tcp\n    address: {down}\n"
    )
}

async fn start(path: &Path) -> (Arc<App>, SocketAddr) {
    let app = App::start(path.to_path_buf()).await.expect("config loads");
    let addr = common::serve_plain(&app).await;
    (app, addr)
}

/// Scrape from a blocking thread, as Prometheus would from outside.
async fn scrape(addr: SocketAddr, accept: Option<&'static str>) -> common::Response {
    tokio::task::spawn_blocking(move || match accept {
        Some(a) => request(addr, "GET", "/metrics", &[("Accept", a)]),
        None => get(addr, "/metrics"),
    })
    .await
    .unwrap()
}

/// Wait until `cond` holds on a scrape, up to a generous limit; the panic
/// says what was awaited and shows the last scrape.
async fn wait_for(addr: SocketAddr, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let limit = Duration::from_secs(30);
    let deadline = std::time::Instant::now() + limit;
    loop {
        let body = scrape(addr, None).await.body;
        if cond(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last scrape:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reflect_check_results_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config_text(tcp_target(), closed_port())).unwrap();
    let (_app, addr) = start(&path).await;

    let body = wait_for(addr, "both checks to run", |b| {
        sample(b, "runbook_check_up", "check=\"down_check\"").is_some()
            && sample(b, "runbook_check_up", "check=\"up_check\"").is_some()
    })
    .await;
    assert_eq!(
        sample(
            &body,
            "runbook_check_up",
            "check=\"up_check\",kind=\"tcp\",team=\"core\""
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, "runbook_check_up", "check=\"down_check\""),
        Some(0.0)
    );
    assert!(
        sample(
            &body,
            "runbook_check_failures_total",
            "check=\"down_check\",kind=\"tcp\",reason=\"connection_refused\""
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(
            &body,
            "runbook_check_failures_total",
            "check=\"up_check\",kind=\"tcp\",team=\"core\",reason=\"timeout\""
        ),
        Some(0.0)
    );
    assert!(sample(&body, "runbook_check_runs_total", "check=\"up_check\"").unwrap() >= 1.0);
    assert!(sample(
        &body,
        "runbook_check_last_success_timestamp_seconds",
        "check=\"up_check\""
    )
    .is_some());
    assert!(sample(
        &body,
        "runbook_check_last_success_timestamp_seconds",
        "check=\"down_check\""
    )
    .is_none());
    assert!(sample(
        &body,
        "runbook_tcp_phase_duration_seconds",
        "check=\"up_check\",team=\"core\",phase=\"connect\""
    )
    .is_some());
    // A failed check's kind-specific measurements are not kept as if fresh.
    assert!(sample(
        &body,
        "runbook_tcp_phase_duration_seconds",
        "check=\"down_check\",phase=\"connect\""
    )
    .is_none());
    assert_eq!(
        sample(&body, "runbook_exporter_config_last_reload_successful", ""),
        Some(1.0)
    );
    assert_eq!(sample(&body, "runbook_exporter_checks", ""), Some(2.0));
    assert!(sample(&body, "runbook_exporter_build_info", "version=").is_some());
    assert!(sample(&body, "process_resident_memory_bytes", "").unwrap() > 0.0);
    both_formats_are_served(addr).await;
}

/// The classic text format by default, OpenMetrics when asked for.
async fn both_formats_are_served(addr: std::net::SocketAddr) {
    // Classic text format by default, with counters' metadata named _total.
    let text = scrape(addr, None).await;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text
        .body
        .contains("# TYPE runbook_check_runs_total counter\n"));
    assert!(!text.body.contains("# EOF"));
    assert!(!text.body.contains("# UNIT"));

    // OpenMetrics when Prometheus asks for it.
    let om = scrape(
        addr,
        Some("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"),
    )
    .await;
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om.body.contains("# TYPE runbook_check_runs counter\n"));
    assert!(om
        .body
        .contains("# UNIT runbook_check_duration_seconds seconds\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config_text(tcp_target(), closed_port())).unwrap();
    let (_app, addr) = start(&path).await;
    let (healthy, ready, index, reload_get) = tokio::task::spawn_blocking(move || {
        (
            get(addr, "/-/healthy"),
            get(addr, "/-/ready"),
            get(addr, "/"),
            get(addr, "/-/reload"),
        )
    })
    .await
    .unwrap();
    assert_eq!((healthy.status, healthy.body.as_str()), (200, "Healthy\n"));
    assert_eq!((ready.status, ready.body.as_str()), (200, "Ready\n"));
    assert_eq!(index.status, 200);
    assert!(
        index.body.contains("<p id=\"summary\">2 checks, "),
        "{}",
        index.body
    );
    assert_eq!(reload_get.status, 405);
}

fn runs(body: &str, check: &str) -> f64 {
    sample(
        body,
        "runbook_check_runs_total",
        &format!("check=\"{check}\""),
    )
    .unwrap_or_else(|| panic!("no runs_total for {check} in\n{body}"))
}

fn refused(body: &str, check: &str) -> f64 {
    sample(
        body,
        "runbook_check_failures_total",
        &format!("check=\"{check}\",kind=\"tcp\",reason=\"connection_refused\""),
    )
    .unwrap_or_else(|| panic!("no connection_refused failures for {check} in\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_keeps_the_old_config_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config_text(tcp_target(), closed_port())).unwrap();
    let (_app, addr) = start(&path).await;
    wait_for(addr, "two runs of up_check", |b| {
        sample(b, "runbook_check_runs_total", "check=\"up_check\"").unwrap_or(0.0) >= 2.0
    })
    .await;

    // A bad file: 500 with the problem, the old checks keep running.
    std::fs::write(
        &path,
        "checks:\n  - name: up_check\n    kind: tcp\n    adress: x\n",
    )
    .unwrap();
    let bad = tokio::task::spawn_blocking(move || request(addr, "POST", "/-/reload", &[]))
        .await
        .unwrap();
    assert_eq!(bad.status, 500);
    assert!(
        bad.body
            .contains("config.yaml:4:5: checks[0].adress: unknown field `adress`"),
        "{}",
        bad.body
    );
    let before = scrape(addr, None).await.body;
    assert_eq!(
        sample(
            &before,
            "runbook_exporter_config_last_reload_successful",
            ""
        ),
        Some(0.0)
    );
    assert_eq!(sample(&before, "runbook_exporter_checks", ""), Some(2.0));
    let runs_before = runs(&before, "up_check");
    let refused_before = refused(&before, "down_check");
    wait_for(addr, "both old checks to keep running", |b| {
        runs(b, "up_check") > runs_before && refused(b, "down_check") > refused_before
    })
    .await;
}

/// README: "Checks whose definition did not change keep running untouched
/// and keep their counters; changed checks restart and keep their counters;
/// removed checks disappear."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_counters_of_unchanged_and_changed_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let (up, down) = (tcp_target(), closed_port());
    let text = |down_interval: &str, extra: &str| {
        format!(
            "defaults: {{interval: 500ms, timeout: 450ms}}\nchecks:\n\
             \x20 - name: up_check\n    kind: tcp\n    address: {up}\n    labels: {{team: core}}\n\
             \x20 - name: down_check\n    kind: tcp\n    address: {down}\n    interval: {down_interval}\n{extra}"
        )
    };
    let gone = format!("\x20 - name: gone_check\n    kind: tcp\n    address: {up}\n");
    std::fs::write(&path, text("500ms", &gone)).unwrap();
    let (_app, addr) = start(&path).await;
    let before = wait_for(addr, "three runs of each check", |b| {
        runs(b, "up_check") >= 3.0
            && refused(b, "down_check") >= 3.0
            && runs(b, "gone_check") >= 1.0
    })
    .await;

    // up_check unchanged, down_check's interval changed, gone_check
    // removed, new_check added.
    let new = format!("\x20 - name: new_check\n    kind: tcp\n    address: {up}\n");
    std::fs::write(&path, text("700ms", &new)).unwrap();
    let good = tokio::task::spawn_blocking(move || request(addr, "POST", "/-/reload", &[]))
        .await
        .unwrap();
    assert_eq!(
        (good.status, good.body.as_str()),
        (200, "config reloaded: 3 checks\n")
    );
    // Right after the reload, before new runs could make up for a reset.
    let after = scrape(addr, None).await.body;
    for check in ["up_check", "down_check"] {
        assert!(
            runs(&after, check) >= runs(&before, check),
            "{check}'s runs_total was reset: {} before, {} after",
            runs(&before, check),
            runs(&after, check)
        );
    }
    assert!(
        refused(&after, "down_check") >= refused(&before, "down_check"),
        "down_check's failures_total was reset"
    );
    assert!(sample(&after, "runbook_check_runs_total", "check=\"gone_check\"").is_none());
    let later = wait_for(addr, "new_check to run and down_check to run again", |b| {
        sample(b, "runbook_check_up", "check=\"new_check\"").is_some()
            && refused(b, "down_check") > refused(&after, "down_check")
    })
    .await;
    assert_eq!(
        sample(&later, "runbook_exporter_config_last_reload_successful", ""),
        Some(1.0)
    );
    assert_eq!(sample(&later, "runbook_exporter_checks", ""), Some(3.0));
    assert_eq!(
        sample(&later, "runbook_check_up", "check=\"up_check\""),
        Some(1.0)
    );
}
