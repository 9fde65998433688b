//! The mixin against the real exporter and a real Prometheus and
//! Alertmanager: every `runbook_*` metric the rules and dashboards name is in
//! the exporter's real /metrics output (the Kubernetes kind's, which need a
//! cluster, against the registry); every dashboard query returns data, but
//! those on Kubernetes metrics, which are skipped and counted;
//! stopping a real dependency makes its alert fire in Prometheus and arrive
//! at Alertmanager.

mod common;
mod mixin_live_support;
mod mixin_support;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::time::Duration;

use common::get;
use mixin_live_support::*;
use mixin_support::*;
use runbook_exporter::checks::{metric_descs, KINDS};
use serde_json::Value;

#[test]
fn every_runbook_metric_in_rules_and_dashboards_is_really_exported() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fixture = fixture_server();
    let db = Stoppable::start();
    let tls = tls_server(&rt);
    let exporter = start_exporter(dir.path(), fixture, db.addr, tls);
    let body = settled_metrics(&exporter);
    let exposed = exposed_names(&body);
    let failing: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("runbook_check_up{") && l.ends_with(" 0"))
        .collect();

    let registered: BTreeSet<String> = metric_descs().iter().map(|d| d.exposed_name()).collect();
    let mut missing = Vec::new();
    let mut not_built = BTreeSet::new();
    for (name, place) in runbook_metrics_used() {
        match kind_of(&name) {
            Some(kind) if !KINDS.contains(&kind) => {
                not_built.insert(kind);
            }
            Some(kind) if STATIC_ONLY.contains(&kind) => {
                if !registered.contains(&name) {
                    missing.push(format!("{name} (used in {place}) is not a {kind} metric"));
                }
            }
            _ => {
                if !exposed.contains(&name) {
                    missing.push(format!("{name} (used in {place}) is not in /metrics"));
                }
            }
        }
    }
    if !not_built.is_empty() {
        eprintln!("kinds not compiled into this build, their names checked after the merge: {not_built:?}");
    }
    assert!(
        missing.is_empty(),
        "{missing:#?}\nchecks failing (a failed run omits what it could not measure; broken_web fails on purpose): {failing:#?}"
    );
}

/// Query every dashboard query; a trailing `> 0` or `== 1` (panels that show
/// only problems) is dropped so the data itself must be there.
fn dashboard_queries_return_data(prom: &str) {
    let mut empty = Vec::new();
    let mut not_run = Vec::new();
    for (place, expr) in dashboard_queries() {
        let built = |k: &str| KINDS.contains(&k) && !STATIC_ONLY.contains(&k);
        let skipped = uses(&substitute(&expr, "5m")).unwrap().iter().any(|u| {
            // Selects a kind's own metric, or core metrics of chosen kinds
            // (`kind=~"clickhouse|s3"`), none of which is built in.
            let own = metric_name(&u.selector)
                .and_then(|n| kind_of(&n))
                .is_some_and(|k| !built(k));
            let by_label = u
                .selector
                .matchers
                .matchers
                .iter()
                .any(|m| m.name == "kind" && !m.value.split('|').any(built));
            own || by_label
        });
        if skipped {
            not_run.push(place);
            continue;
        }
        let mut q = substitute(&expr, "10s");
        for filter in [" > 0", " == 1"] {
            if let Some(stripped) = q.strip_suffix(filter) {
                q = stripped.to_string();
            }
        }
        if query(prom, &q).is_empty() {
            empty.push(format!("{place}: {q}"));
        }
    }
    if !not_run.is_empty() {
        eprintln!(
            "{} dashboard queries on kinds without a server here (kubernetes) not run: {not_run:#?}",
            not_run.len()
        );
    }
    assert!(empty.is_empty(), "queries without data: {empty:#?}");
}

#[test]
fn prometheus_scrapes_dashboards_show_data_and_a_stopped_dependency_alerts() {
    let prometheus_bin = env("RUNBOOK_TEST_PROMETHEUS", "prometheus");
    let alertmanager_bin = env("RUNBOOK_TEST_ALERTMANAGER", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fixture = fixture_server();
    let mut db = Stoppable::start();
    let tls = tls_server(&rt);
    let mut exporter = start_exporter(dir.path(), fixture, db.addr, tls);

    let rule_paths = shortened_rules(dir.path());
    let (_am, am_addr) = start_alertmanager(&alertmanager_bin, dir.path());
    let (_prom, prom_addr) = start_prometheus(
        &prometheus_bin,
        dir.path(),
        am_addr,
        &rule_paths,
        &[("runbook-exporter", exporter.addr), ("api", fixture)],
    );
    let prom = format!("http://{prom_addr}");
    let am = format!("http://{am_addr}");

    // Both targets up, and enough samples for rates over 10s.
    wait_until("both scrape targets up", Duration::from_secs(60), || {
        TcpStream::connect(prom_addr).is_ok()
            && get(prom_addr, "/-/ready").status == 200
            && query(&prom, "up == 1").len() == 2
    });
    wait_until(
        "the db_port check to succeed in Prometheus",
        Duration::from_secs(60),
        || query(&prom, "runbook_check_up{check=\"db_port\"} == 1").len() == 1,
    );
    // Rates over 10s need samples spanning 10s: wait for them, not a clock.
    wait_until(
        "10 s of samples of both targets",
        Duration::from_secs(60),
        || query(&prom, "count_over_time(up[10s]) >= 9").len() == 2,
    );
    dashboard_queries_return_data(&prom);

    // Quiet while the dependency is up.
    let alerts = http_get(&prom, "/api/v1/alerts");
    assert!(
        !alerts.to_string().contains("\"check\":\"db_port\""),
        "no alert for db_port while it is up: {alerts}"
    );

    // Stop the dependency: its alert fires in Prometheus and reaches
    // Alertmanager.
    db.stop();
    stopped_dependency_alerts(
        &prom,
        &am,
        "RunbookTcpEndpointDown",
        "db_port",
        "Check db_port (tcp)",
    );

    // With the redis kind built in, stop the test's own Redis as well.
    if let Some(redis) = exporter.redis.take() {
        drop(redis);
        stopped_dependency_alerts(
            &prom,
            &am,
            "RunbookRedisDown",
            "cache",
            "Check cache (redis)",
        );
    }
}

/// Wait until `alertname` for `check` is firing in Prometheus and has
/// arrived at Alertmanager with its severity and annotations.
fn stopped_dependency_alerts(prom: &str, am: &str, alertname: &str, check: &str, says: &str) {
    let is_it = |a: &Value| a["labels"]["alertname"] == alertname && a["labels"]["check"] == check;
    wait_until(
        &format!("{alertname} to fire in Prometheus"),
        Duration::from_secs(60),
        || {
            http_get(prom, "/api/v1/alerts")["data"]["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| is_it(a) && a["state"] == "firing")
        },
    );
    let mut received = Value::Null;
    wait_until(
        &format!("{alertname} to arrive at Alertmanager"),
        Duration::from_secs(60),
        || {
            received = http_get(am, "/api/v2/alerts");
            received.as_array().unwrap().iter().any(is_it)
        },
    );
    let alert = received
        .as_array()
        .unwrap()
        .iter()
        .find(|a| is_it(a))
        .unwrap();
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(alert["annotations"]["runbook_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("docs/runbooks/{alertname}.md")));
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains(says),
        "{alert}"
    );
}
