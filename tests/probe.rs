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
        "defaults: {{interval: 1s, timeout: 900ms}}\n\
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

/// On a shard that does not run it, a scheduled check is still known as
/// one (by its name's hash), so `/probe` gives the same explanation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_explains_a_refusal_of_a_check_another_shard_runs() {
    use runbook_exporter::app::App;
    use runbook_exporter::shard::Shard;

    let target = tcp_target();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "defaults: {{interval: 1s, timeout: 900ms}}\n\
             checks:\n  - name: scheduled\n    kind: tcp\n    address: {target}\n"
        ),
    )
    .unwrap();
    let shard = (0..2)
        .map(|index| Shard { index, total: 2 })
        .find(|s| !s.owns("scheduled"))
        .unwrap();
    let app = App::start_shard(path, shard).await.expect("config loads");
    assert!(app.store().checks().is_empty(), "the other shard runs it");
    let addr = common::serve_plain(&app).await;
    let resp = probe(addr, format!("module=scheduled&target={target}"), vec![]).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(
        resp.body.starts_with(
            "\"scheduled\" is a scheduled check, and scheduled checks cannot be probed"
        ),
        "{}",
        resp.body
    );
}

/// README: "more than 64 probes in flight, a 503". 64 probes hang on a
/// target that never answers; the 65th is refused at once; when their
/// callers hang up the runs drain and probes are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_in_flight_cap_a_probe_gets_503_until_the_others_drain() {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let cap = runbook_exporter::app::MAX_CONCURRENT_PROBES;
    assert_eq!(cap, 64, "the README states 64");
    let silent = common::silent_target();
    // A 60 s module timeout: the held probes can only end by being aborted.
    let (app, addr, _dir) = start(
        "defaults: {interval: 5m, timeout: 60s}\nchecks: []\nmodules:\n\
         \x20 - name: banner\n    kind: tcp\n    address: 127.0.0.1:1\n    expect: '^HELLO'\n\
         \x20 - name: tcp_connect\n    kind: tcp\n    address: 127.0.0.1:1\n",
    )
    .await;
    let target = silent.addr;
    let held: Vec<std::net::TcpStream> = tokio::task::spawn_blocking(move || {
        (0..cap)
            .map(|_| {
                let mut s =
                    std::net::TcpStream::connect_timeout(&addr, common::REQUEST_TIMEOUT).unwrap();
                write!(
                    s,
                    "GET /probe?module=banner&target={target} HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                .unwrap();
                s
            })
            .collect()
    })
    .await
    .unwrap();
    let store = app.store().clone();
    common::wait_until(
        Duration::from_secs(30),
        || store.probes_in_flight() == cap as i64 && silent.open.load(Ordering::SeqCst) == cap,
        || {
            format!(
                "{cap} probes in flight; {} are, the target holds {} connections",
                store.probes_in_flight(),
                silent.open.load(Ordering::SeqCst)
            )
        },
    )
    .await;

    let healthy = tcp_target();
    let refused = probe(addr, format!("module=tcp_connect&target={healthy}"), vec![]).await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (503, "too many probes in flight (limit 64)\n")
    );
    // The refusal started no run.
    assert_eq!(store.probes_in_flight(), cap as i64);

    drop(held);
    common::wait_until(
        Duration::from_secs(30),
        || store.probes_in_flight() == 0 && silent.open.load(Ordering::SeqCst) == 0,
        || {
            format!(
                "the held probes to drain; {} still in flight, {} target connections open",
                store.probes_in_flight(),
                silent.open.load(Ordering::SeqCst)
            )
        },
    )
    .await;
    let served = probe(addr, format!("module=tcp_connect&target={healthy}"), vec![]).await;
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(
        sample(&served.body, "runbook_check_up", "check=\"tcp_connect\""),
        Some(1.0)
    );
}
