//! The status page as an engineer sees it: rendered by headless Chromium,
//! a failing check shows as failing, with its reason and message.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{closed_port, get, output_within, status_row, tcp_target, wait_until};
use runbook_exporter::app::App;

fn chromium() -> String {
    std::env::var("RUNBOOK_TEST_CHROMIUM")
        .expect("RUNBOOK_TEST_CHROMIUM not set: run scripts/services.sh up chromium")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_is_rendered_as_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let down = closed_port();
    std::fs::write(
        &path,
        format!(
            "defaults: {{interval: 1s, timeout: 900ms}}\nchecks:\n\
             \x20 - name: healthy_dep\n    kind: tcp\n    address: {}\n\
             \x20 - name: broken_dep\n    kind: tcp\n    address: {down}\n",
            tcp_target()
        ),
    )
    .unwrap();
    let app: Arc<App> = App::start(path).await.unwrap();
    let addr = common::serve_plain(&app).await;
    // Wait until both checks have run.
    let store = app.store().clone();
    wait_until(
        Duration::from_secs(30),
        || store.checks().iter().all(|c| c.runs_total() >= 1),
        || "a first run of both checks".to_string(),
    )
    .await;

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/");
    let out = tokio::task::spawn_blocking(move || {
        let mut chromium = Command::new(chromium());
        chromium
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(&url);
        // Ours on the whole run, its helper processes included.
        output_within(
            &mut chromium,
            Duration::from_secs(90),
            "headless Chromium rendering the status page",
        )
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let row = |check: &str| -> String {
        status_row(&dom, check).unwrap_or_else(|| panic!("no row for {check} in {dom}"))
    };
    let broken = row("broken_dep");
    assert!(
        dom.contains("<tr class=\"fail\" data-check=\"broken_dep\">"),
        "{dom}"
    );
    assert!(broken.contains("<td class=\"state\">DOWN</td>"), "{broken}");
    assert!(broken.contains("<td>connection_refused</td>"), "{broken}");
    assert!(broken.contains(&down.to_string()), "{broken}");
    assert!(broken.contains("<td>never</td>"), "{broken}");
    assert!(broken.contains("<span class=\"fail\""), "{broken}");
    let healthy = row("healthy_dep");
    assert!(
        dom.contains("<tr class=\"ok\" data-check=\"healthy_dep\">"),
        "{dom}"
    );
    assert!(healthy.contains("<td class=\"state\">UP</td>"), "{healthy}");
    // Failing checks come first.
    assert!(dom.find("broken_dep").unwrap() < dom.find("healthy_dep").unwrap());
    assert!(
        dom.contains("2 checks, <strong>1 failing</strong>"),
        "{dom}"
    );
    // The page is also plain server-rendered HTML for curl users.
    let plain = tokio::task::spawn_blocking(move || get(addr, "/"))
        .await
        .unwrap();
    assert!(plain.body.contains("data-check=\"broken_dep\""));
}
