//! `runbook_exporter_schedule_lag_seconds` shows runs starting late when
//! the concurrency cap starves them: three checks that each hold the only
//! permit for 300 ms of every 500 ms cannot all start on time.

mod common;

use std::time::Duration;

use common::{get, sample, serve_config, silent_target, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn runs_starved_of_permits_show_as_schedule_lag() {
    let target = silent_target();
    let mut config = String::from(
        "max_concurrent_runs: 1\ndefaults: {interval: 500ms, timeout: 300ms}\nchecks:\n",
    );
    for i in 0..3 {
        // The target never answers, so each run holds its permit until
        // its timeout.
        config.push_str(&format!(
            "  - {{name: starved_{i}, kind: tcp, address: \"{}\", expect: never}}\n",
            target.addr
        ));
    }
    let (_app, addr, _dir) = serve_config(&config).await;
    let lag = |body: &str, series: &str| sample(body, series, "").unwrap_or(0.0);
    wait_until(
        Duration::from_secs(20),
        || {
            let body = get(addr, "/metrics").body;
            let count = lag(&body, "runbook_exporter_schedule_lag_seconds_count");
            let on_time = sample(
                &body,
                "runbook_exporter_schedule_lag_seconds_bucket",
                "le=\"0.05\"",
            )
            .unwrap_or(0.0);
            // At least a few runs, and some of them waited over 50 ms.
            count >= 6.0 && on_time < count
        },
        || {
            let body = get(addr, "/metrics").body;
            let lines: Vec<&str> = body
                .lines()
                .filter(|l| l.contains("schedule_lag"))
                .collect();
            format!("no late runs in the schedule lag histogram: {lines:#?}")
        },
    )
    .await;
    let body = get(addr, "/metrics").body;
    assert!(body.contains("# TYPE runbook_exporter_schedule_lag_seconds histogram"));
    assert!(lag(&body, "runbook_exporter_schedule_lag_seconds_sum") > 0.05);
}
