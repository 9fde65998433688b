//! The README's walkthrough ("an outage, end to end"), step by step, with
//! the real demo of scripts/demo.sh (its Prometheus with the shipped rules,
//! its Alertmanager with the shipped routing, its webhook receiver):
//! `scripts/services.sh down redis`, then what the README says the user
//! sees on the status page, in `/metrics`, in Prometheus' alerts and in the
//! receiver's log, then `scripts/services.sh up redis` and the check green
//! again. Redis is started again even if the test panics.

mod common;
mod demo_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{sample, status_row, ServicesDown};
use demo_support::Demo;
use serde_json::Value;

/// Longest `scripts/services.sh up redis` may take.
const REDIS_RESTORE_LIMIT: Duration = Duration::from_secs(120);

/// The status page's redis row, once `ready` holds for it.
fn redis_row(demo: &mut Demo, limit: Duration, what: &str, ready: fn(&str) -> bool) -> String {
    let exporter = demo.exporter;
    demo.wait_for(limit, what, || {
        let page = Demo::get(exporter, "/")?;
        let row = status_row(&page, "redis").ok_or_else(|| format!("no redis row in {page}"))?;
        if ready(&row) {
            Ok(row)
        } else {
            Err(row)
        }
    })
}

/// The alerts of the demo Prometheus' `/api/v1/alerts` named `name`.
fn prometheus_alerts(prometheus: SocketAddr, name: &str) -> Result<Vec<Value>, String> {
    let body = Demo::get(prometheus, "/api/v1/alerts")?;
    let json: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(json["data"]["alerts"]
        .as_array()
        .ok_or_else(|| body.clone())?
        .iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .cloned()
        .collect())
}

#[test]
fn the_readme_redis_outage_walkthrough() {
    let mut demo = Demo::start();
    demo.wait_all_up(Duration::from_secs(180));

    // 1. The status page: everything green.
    let row = redis_row(&mut demo, Duration::from_secs(10), "redis UP", |r| {
        r.starts_with("<tr class=\"ok\"")
    });
    assert!(row.contains("<td class=\"state\">UP</td>"), "{row}");

    // 2. Break Redis.
    let outage = Instant::now();
    let restore = ServicesDown::stop(&["redis"], REDIS_RESTORE_LIMIT);

    // 3. Within one interval (3s here; the run timeout is 2s) the row is
    // red with reason connection_refused, and /metrics says so.
    let row = redis_row(
        &mut demo,
        Duration::from_secs(15),
        "the status page's redis row DOWN with reason connection_refused",
        |r| r.starts_with("<tr class=\"fail\"") && r.contains("<td>connection_refused</td>"),
    );
    assert!(row.contains("<td class=\"state\">DOWN</td>"), "{row}");
    let metrics = Demo::get(demo.exporter, "/metrics").unwrap();
    assert_eq!(
        sample(&metrics, "runbook_check_up", "check=\"redis\""),
        Some(0.0),
        "{metrics}"
    );
    let refused = metrics.lines().find(|l| {
        l.starts_with("runbook_check_failures_total{")
            && l.contains("check=\"redis\"")
            && l.contains("reason=\"connection_refused\"")
    });
    assert!(
        refused.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()) >= Some(1.0),
        "{metrics}"
    );
    let red = outage.elapsed();

    // 4. After three failed intervals and the rule's `for: 1m` the alert
    // fires in Prometheus...
    let prometheus = demo.prometheus;
    let alert = demo.wait_for(
        Duration::from_secs(240),
        "RunbookRedisDown{check=\"redis\"} firing in the demo Prometheus",
        || {
            let alerts = prometheus_alerts(prometheus, "RunbookRedisDown")?;
            alerts
                .into_iter()
                .find(|a| a["labels"]["check"] == "redis" && a["state"] == "firing")
                .ok_or_else(|| "not firing yet".to_string())
        },
    );
    assert_eq!(alert["labels"]["priority"], "P1", "{alert}");
    let firing = outage.elapsed();

    // ...and Alertmanager routes it by priority to the receiver, which
    // logs one notification for it.
    let log = demo.state().join("notifications.log");
    let log = log.as_path();
    let lines = demo.wait_for(
        Duration::from_secs(120),
        "a RunbookRedisDown notification in the receiver's log",
        || {
            let text = std::fs::read_to_string(log).map_err(|e| e.to_string())?;
            let lines: Vec<String> = text
                .lines()
                .filter(|l| l.contains("RunbookRedisDown"))
                .map(String::from)
                .collect();
            if lines.is_empty() {
                Err(text)
            } else {
                Ok(lines)
            }
        },
    );
    assert_eq!(lines.len(), 1, "one notification: {lines:#?}");
    assert!(
        lines[0].contains(" /hook/oncall-page-p1 firing:RunbookRedisDown{check=redis}"),
        "routed as the README says: {lines:#?}"
    );
    let notified = outage.elapsed();

    // 5. Bring it back: green on its next run.
    let back = Instant::now();
    drop(restore);
    let row = redis_row(
        &mut demo,
        Duration::from_secs(30),
        "the status page's redis row UP again",
        |r| r.starts_with("<tr class=\"ok\""),
    );
    assert!(row.contains("<td class=\"state\">UP</td>"), "{row}");
    let metrics = Demo::get(demo.exporter, "/metrics").unwrap();
    assert_eq!(
        sample(&metrics, "runbook_check_up", "check=\"redis\""),
        Some(1.0)
    );
    eprintln!(
        "redis down: row red after {:.1}s, alert firing after {:.1}s, notification after {:.1}s; green {:.1}s after services.sh up redis began",
        red.as_secs_f64(),
        firing.as_secs_f64(),
        notified.as_secs_f64(),
        back.elapsed().as_secs_f64()
    );
    demo.stop_cleanly();
}
