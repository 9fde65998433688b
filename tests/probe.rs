//! `/probe?module=&target=`: one check run on demand against a target,
//! blackbox_exporter style, with only that run's metrics in the answer.

mod common;

use std::net::{SocketAddr, TcpListener};

use common::{closed_port, request, sample, serve_config as start, tcp_target, Response};

async fn probe(
    addr: SocketAddr,
    query: String,
    headers: Vec<(&'static str, &'static str)>,
) -> Response {
    tokio::task::spawn_blocking(move || request(addr, "GET", &format!("/probe?{query}"), &headers))
        .await
        .unwrap()
}

const CONFIG: &str = "defaults: {interval: 1m, timeout: 5s}\n\
    probe:\n  allowed_targets: ['127\\.0\\.0\\.1:\\d+']\n\
    checks: []\n\
    modules:\n\
    \x20 - name: tcp_connect\n    kind: tcp\n    address: 127.0.0.1:1\n    labels: {team: core}\n\
    \x20 - name: banner\n    kind: tcp\n    address: 127.0.0.1:1\n    expect: '^HELLO'\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_runs_the_module_against_the_target() {
    let (_app, addr, _dir) = start(CONFIG).await;
    let target = tcp_target();
    let resp = probe(addr, format!("module=tcp_connect&target={target}"), vec![]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        sample(
            &resp.body,
            "runbook_check_up",
            "check=\"tcp_connect\",kind=\"tcp\",team=\"core\""
        ),
        Some(1.0)
    );
    assert!(sample(
        &resp.body,
        "runbook_tcp_phase_duration_seconds",
        "phase=\"connect\""
    )
    .is_some());
    // Only the probed check's metrics: the exporter's own stay on /metrics.
    assert!(!resp.body.contains("runbook_exporter_"), "{}", resp.body);
    assert!(!resp.body.contains("process_"), "{}", resp.body);

    let down = closed_port();
    let resp = probe(addr, format!("module=tcp_connect&target={down}"), vec![]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        sample(&resp.body, "runbook_check_up", "check=\"tcp_connect\""),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &resp.body,
            "runbook_check_failures_total",
            "reason=\"connection_refused\""
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_timeout_header_bounds_the_probe() {
    let (_app, addr, _dir) = start(CONFIG).await;
    // A server that accepts and never says HELLO.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().take(4) {
            held.push(conn);
        }
    });
    let resp = probe(
        addr,
        format!("module=banner&target={target}"),
        vec![("X-Prometheus-Scrape-Timeout-Seconds", "0.5")],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(sample(&resp.body, "runbook_check_up", ""), Some(0.0));
    assert_eq!(
        sample(
            &resp.body,
            "runbook_check_failures_total",
            "reason=\"timeout\""
        ),
        Some(1.0)
    );
    // The module's 5s timeout was cut to the scrape's 0.5s minus a margin.
    let took = sample(&resp.body, "runbook_check_duration_seconds", "").unwrap();
    assert!((0.39..4.0).contains(&took), "probe took {took}s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let (_app, addr, _dir) = start(CONFIG).await;
    let cases = [
        ("target=127.0.0.1:1", 400, "missing parameter: module\n"),
        ("module=tcp_connect", 400, "missing parameter: target\n"),
        (
            "module=nope&target=127.0.0.1:1",
            400,
            "unknown module \"nope\": define it under modules: in the config\n",
        ),
        (
            "module=tcp_connect&target=10.1.2.3:5432",
            403,
            "target \"10.1.2.3:5432\" is not allowed by probe.allowed_targets\n",
        ),
    ];
    for (query, status, body) in cases {
        let resp = probe(addr, query.to_string(), vec![]).await;
        assert_eq!((resp.status, resp.body.as_str()), (status, body), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_target_is_a_400() {
    let (_app, addr, _dir) = start(
        "checks: []\nmodules:\n  - name: tcp_connect\n    kind: tcp\n    address: 127.0.0.1:1\n",
    )
    .await;
    let resp = probe(
        addr,
        "module=tcp_connect&target=no-port-here".into(),
        vec![],
    )
    .await;
    assert_eq!(resp.status, 400);
    assert!(
        resp.body
            .starts_with("invalid target \"no-port-here\": address: "),
        "{}",
        resp.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_checks_cannot_be_probed_and_modules_are_not_scheduled() {
    let target = tcp_target();
    let (app, addr, _dir) = start(&format!(
        "defaults: {{interval: 200ms, timeout: 100ms}}\n\
         checks:\n  - name: scheduled\n    kind: tcp\n    address: {target}\n\
         modules:\n  - name: on_demand\n    kind: tcp\n    address: {target}\n"
    ))
    .await;
    let resp = probe(addr, format!("module=scheduled&target={target}"), vec![]).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(
        resp.body.starts_with(
            "\"scheduled\" is a scheduled check, and scheduled checks cannot be probed"
        ) && resp.body.contains("define a module under modules:"),
        "{}",
        resp.body
    );
    let resp = probe(addr, format!("module=on_demand&target={target}"), vec![]).await;
    assert_eq!(
        sample(&resp.body, "runbook_check_up", "check=\"on_demand\""),
        Some(1.0)
    );
    let names: Vec<String> = app
        .store()
        .checks()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["scheduled"]);
}
