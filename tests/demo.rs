//! The first five minutes: `scripts/demo.sh` against the running test
//! services and on a machine where none runs (every check of
//! config/demo.yaml up, then a clean stop that leaves none of its processes
//! behind and the services running), and the reasons a newcomer sees in
//! `check` and `serve`: self-checks skipped in `check`, kubernetes outside
//! a cluster, Kafka connection refused.

mod common;
mod demo_support;

use std::time::{Duration, Instant};

use common::{
    closed_port, exporter, output_within, port_open, sample, service_ports, wait_ports_closed,
    Exporter, ServicesDown,
};
use demo_support::Demo;

#[test]
fn demo_is_green_within_one_interval_and_stops_cleanly() {
    // services.sh up leaves running services alone; the first run of every
    // check is within one 3s interval of the exporter's start.
    let mut demo = Demo::start();
    demo.wait_all_up(Duration::from_secs(120));
    demo.stop_cleanly();
}

/// Longest a cold `scripts/services.sh up` of every service may take on a
/// busy 2-core machine (three Kafka brokers and a single one, ClickHouse
/// and ZooKeeper, two PostgreSQL clusters...), and the demo's checks then;
/// also the bound of restoring the services if the test fails. Measured on
/// the shared 2-core machine: 44 s from no running service to every check
/// up, after a `down` of about 70 s. nextest ends the test after 20
/// minutes (.config/nextest.toml).
const COLD_START_LIMIT: Duration = Duration::from_secs(480);

#[test]
fn demo_starts_every_service_from_nothing_and_stops_cleanly() {
    let ports = service_ports();
    // Every service is started again when the test ends, however it ends.
    let _restore = ServicesDown::stop(&[], COLD_START_LIMIT);
    wait_ports_closed(
        &ports,
        Duration::from_secs(60),
        "every service after scripts/services.sh down",
    );
    let started = Instant::now();
    let mut demo = Demo::start();
    demo.wait_all_up(COLD_START_LIMIT);
    eprintln!(
        "demo.sh from no running service to every check up: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let closed: Vec<u16> = ports.iter().copied().filter(|p| !port_open(*p)).collect();
    assert!(
        closed.is_empty(),
        "demo.sh did not start every service of scripts/services.sh: closed {closed:?}"
    );
    demo.stop_cleanly();
    // The test services outlive the demo (its stop is not theirs).
    let closed: Vec<u16> = ports.iter().copied().filter(|p| !port_open(*p)).collect();
    assert!(closed.is_empty(), "stopped with the demo: {closed:?}");
}

fn check_json(args: &[&str], what: &str) -> (Option<i32>, serde_json::Value, String) {
    let out = output_within(
        exporter()
            .arg("check")
            .args(args)
            .args(["-o", "json"])
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env_remove("KUBECONFIG")
            .env_remove("RUNBOOK_LISTEN_ADDRESS"),
        Duration::from_secs(60),
        what,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_skips_self_checks_and_kubernetes_outside_a_cluster_is_auth() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml");
    let (code, json, stderr) = check_json(
        &[
            "-c",
            example,
            "--check",
            "exporter_health",
            "--check",
            "exporter_metrics",
            "--check",
            "exporter_port",
            "--check",
            "api_pods",
        ],
        "check of the self-checks and api_pods",
    );
    assert_eq!(code, Some(1), "{json}\n{stderr}");
    for name in ["exporter_health", "exporter_metrics", "exporter_port"] {
        assert!(
            stderr.contains(&format!("skipped {name}: a self-check")),
            "{stderr}"
        );
    }
    let results = json.as_array().unwrap();
    assert_eq!(results.len(), 1, "only api_pods runs: {json}");
    assert_eq!(results[0]["name"], "api_pods");
    assert_eq!(results[0]["reason"], "auth", "{json}");
    let message = results[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("not in a Kubernetes cluster and no `kubeconfig` set"),
        "{message}"
    );

    // Only self-checks selected: nothing fails, exit 0.
    let (code, json, _) = check_json(
        &["-c", example, "--check", "exporter_port"],
        "self-check only",
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json.as_array().unwrap().len(), 0);

    // On another listen port they are ordinary checks again (and refused).
    let (code, json, _) = check_json(
        &[
            "-c",
            example,
            "--check",
            "exporter_port",
            "--web.listen-address",
            "127.0.0.1:1",
        ],
        "self-check on another port",
    );
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json[0]["reason"], "connection_refused", "{json}");
}

#[test]
fn kafka_connection_refused_in_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let broker = closed_port();
    let path = dir.path().join("kafka.yaml");
    std::fs::write(
        &path,
        format!("checks:\n  - name: kafka_down\n    kind: kafka\n    brokers: [\"{broker}\"]\n    interval: 2s\n    timeout: 1s\n"),
    )
    .unwrap();
    let config = path.display().to_string();
    let (code, json, _) = check_json(&["-c", &config], "check of a refused kafka");
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json[0]["reason"], "connection_refused", "{json}");

    let serve = Exporter::serve(&["--config", &config]);
    let body = serve.wait_for_metrics(Duration::from_secs(30), "a refused kafka run", |b| {
        sample(
            b,
            "runbook_check_failures_total",
            "reason=\"connection_refused\"",
        )
        .unwrap_or(0.0)
            >= 1.0
    });
    assert_eq!(
        sample(&body, "runbook_check_failures_total", "reason=\"timeout\""),
        Some(0.0),
        "{body}"
    );
    serve.stop();
}
