//! `/probe` never hands a module's credentials to a host the operator did
//! not list.
//!
//! Each test points the exporter at a capturing server on loopback that
//! records every byte it receives, and asserts what reached it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{request, sample, serve_config as start, Response};
use runbook_exporter::app::App;

/// A server that records every byte sent to it. It answers each request
/// head with `reply` (an empty 200 when `None`) and closes.
struct Capture {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Capture {
    fn start() -> Self {
        Self::replying(None)
    }

    fn replying(reply: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (rx, conns) = (received.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                *conns.lock().unwrap() += 1;
                let (rx, reply) = (rx.clone(), reply.clone());
                std::thread::spawn(move || capture(conn, &rx, reply));
            }
        });
        Self {
            addr,
            received,
            connections,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// Read what `conn` sends until a blank line or two seconds of silence,
/// then answer and close.
fn capture(mut conn: TcpStream, rx: &Mutex<Vec<u8>>, reply: Option<String>) {
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        rx.lock().unwrap().extend_from_slice(&buf[..n]);
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let reply = reply.unwrap_or_else(|| {
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    });
    let _ = conn.write_all(reply.as_bytes());
}

/// The error text of a config that must not load.
async fn refused(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    match App::start(path).await {
        Ok(_) => panic!("config loaded:\n{config}"),
        Err(e) => e.to_string(),
    }
}

async fn probe(addr: SocketAddr, module: &str, target: &str) -> Response {
    let path = format!("/probe?module={module}&target={target}");
    tokio::task::spawn_blocking(move || request(addr, "GET", &path, &[]))
        .await
        .unwrap()
}

const SECRET: &str = "s3cr3t-do-not-leak";

/// One credentialed module of each kind that talks to a server, its
/// credential field, and the `/probe` target that would send it to `to`.
fn credentialed_modules(to: SocketAddr) -> Vec<(&'static str, String, String)> {
    let port = to.port();
    vec![
        (
            "bearer_token",
            format!("kind: http\n    url: http://allowed.invalid/\n    bearer_token: {SECRET}"),
            format!("http://{to}/"),
        ),
        (
            "basic_auth",
            format!(
                "kind: http\n    url: http://allowed.invalid/\n    basic_auth: {{username: u, password: {SECRET}}}"
            ),
            format!("http://{to}/"),
        ),
        (
            "headers",
            format!("kind: http\n    url: http://allowed.invalid/\n    headers: {{X-Api-Key: {SECRET}}}"),
            format!("http://{to}/"),
        ),
        (
            "password",
            format!(
                "kind: postgres\n    host: allowed.invalid\n    port: {port}\n    user: monitor\n    password: {SECRET}\n    sslmode: disable"
            ),
            "127.0.0.1".to_string(),
        ),
        (
            "password",
            format!("kind: redis\n    url: redis://allowed.invalid:6379\n    password: {SECRET}"),
            format!("redis://{to}"),
        ),
        (
            "password",
            format!("kind: clickhouse\n    url: http://allowed.invalid:8123\n    password: {SECRET}"),
            format!("http://{to}"),
        ),
        (
            "headers",
            format!("kind: http\n    url: http://allowed.invalid/\n    headers: {{X-Honeycomb-Team: {SECRET}}}"),
            format!("http://{to}/"),
        ),
        (
            "body",
            format!("kind: http\n    url: http://allowed.invalid/\n    method: POST\n    body: '{{\"key\": \"{SECRET}\"}}'"),
            format!("http://{to}/"),
        ),
        (
            "send",
            format!("kind: tcp\n    address: allowed.invalid:6379\n    send: 'AUTH {SECRET}\\r\\n'"),
            to.to_string(),
        ),
        (
            "sasl",
            format!(
                "kind: kafka\n    brokers: [allowed.invalid:9092]\n    sasl: {{mechanism: PLAIN, username: u, password: {SECRET}}}"
            ),
            to.to_string(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentialed_module_without_allowed_targets_is_refused_at_load() {
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (field, module, _) in credentialed_modules(to) {
        let config = format!("checks: []\nmodules:\n  - name: m\n    {module}\n");
        let err = refused(&config).await;
        assert!(
            err.contains(": modules[0]: carries credentials (")
                && err.contains(field)
                && err.contains("but has no allowed_targets"),
            "{module}\n{err}"
        );
        assert!(!err.contains(SECRET), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_outside_allowed_targets_is_a_403_and_no_byte_leaves() {
    let capture = Capture::start();
    let modules = credentialed_modules(capture.addr);
    let mut config = String::from("checks: []\nmodules:\n");
    for (i, (_, module, _)) in modules.iter().enumerate() {
        config.push_str(&format!(
            "  - name: m{i}\n    {module}\n    allowed_targets: [allowed.invalid]\n"
        ));
    }
    let (_app, addr, _dir) = start(&config).await;
    for (i, (_, module, target)) in modules.iter().enumerate() {
        let resp = probe(addr, &format!("m{i}"), target).await;
        assert_eq!(resp.status, 403, "{module}: {}", resp.body);
        assert!(
            resp.body.contains("does not list in its allowed_targets"),
            "{}",
            resp.body
        );
    }
    assert_eq!(capture.connections(), 0, "{}", capture.text());
    assert!(!capture.text().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_is_on_the_parsed_host_and_port() {
    let capture = Capture::start();
    let allowed = Capture::start();
    let (_app, addr, _dir) = start(&format!(
        "checks: []\nmodules:\n  - name: api\n    kind: http\n    url: http://{}/\n    \
         bearer_token: {SECRET}\n    allowed_targets: ['{}']\n",
        allowed.addr, allowed.addr
    ))
    .await;
    // The allowed address in the text, the capture server as the host.
    for sneaky in [
        format!("http://{}/{}", capture.addr, allowed.addr),
        format!("http://{}/?u=http://{}/", capture.addr, allowed.addr),
    ] {
        let resp = probe(addr, "api", &sneaky).await;
        assert_eq!(resp.status, 403, "{sneaky}: {}", resp.body);
    }
    // As user info it is refused before any matching: no credentials in URLs.
    let sneaky = format!("http://{}@{}/", allowed.addr, capture.addr);
    let resp = probe(addr, "api", &sneaky).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    // Same host, another port.
    let resp = probe(addr, "api", &format!("http://{}/", capture.addr)).await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(capture.connections(), 0);

    // The allowed target gets the token: the capture really sees requests.
    let resp = probe(addr, "api", &format!("http://{}/", allowed.addr)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(sample(&resp.body, "runbook_check_up", ""), Some(1.0));
    assert!(
        allowed
            .text()
            .contains(&format!("authorization: Bearer {SECRET}")),
        "{}",
        allowed.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_host_the_module_does_not_allow_is_not_followed() {
    let capture = Capture::start();
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: http://{}/stolen\r\nContent-Length: 0\r\n\r\n",
        capture.addr
    );
    let allowed = Capture::replying(Some(redirect));
    let (_app, addr, _dir) = start(&format!(
        "checks: []\nmodules:\n  - name: api\n    kind: http\n    url: http://{}/\n    \
         bearer_token: {SECRET}\n    allowed_targets: ['{}']\n",
        allowed.addr, allowed.addr
    ))
    .await;
    let resp = probe(addr, "api", &format!("http://{}/", allowed.addr)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(sample(&resp.body, "runbook_check_up", ""), Some(0.0));
    assert_eq!(
        sample(
            &resp.body,
            "runbook_check_failures_total",
            "reason=\"unexpected_response\""
        ),
        Some(1.0)
    );
    assert_eq!(capture.connections(), 0, "{}", capture.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_headers_are_dropped_on_a_cross_origin_redirect() {
    let other = Capture::start();
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: http://{}/next\r\nContent-Length: 0\r\n\r\n",
        other.addr
    );
    let first = Capture::replying(Some(redirect));
    let (_app, addr, _dir) = start(&format!(
        "checks: []\nmodules:\n  - name: api\n    kind: http\n    url: http://{}/\n    \
         headers: {{X-Api-Key: {SECRET}, X-Request-Source: runbook}}\n    \
         allowed_targets: ['{}', '{}']\n",
        first.addr, first.addr, other.addr
    ))
    .await;
    let resp = probe(addr, "api", &format!("http://{}/", first.addr)).await;
    assert_eq!(
        sample(&resp.body, "runbook_check_up", ""),
        Some(1.0),
        "{}",
        resp.body
    );
    assert!(first.text().contains(SECRET), "{}", first.text());
    let second = other.text();
    assert!(second.contains("GET /next "), "{second}");
    assert!(second.contains("x-request-source: runbook"), "{second}");
    assert!(!second.contains(SECRET), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_list_smuggled_past_a_wildcard_is_refused() {
    let capture = Capture::start();
    let (_app, addr, _dir) = start(&format!(
        "checks: []\nmodules:\n  - name: kafka\n    kind: kafka\n    brokers: [kafka.allowed.invalid:9092]\n    \
         sasl: {{mechanism: PLAIN, username: u, password: {SECRET}}}\n    \
         allowed_targets: ['*.allowed.invalid']\n"
    ))
    .await;
    // librdkafka would split this on the comma and dial the first host.
    let target = format!("{},kafka.allowed.invalid:9092", capture.addr);
    let resp = probe(addr, "kafka", &target).await;
    assert!(
        matches!(resp.status, 400 | 403),
        "{}: {}",
        resp.status,
        resp.body
    );
    assert_eq!(capture.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_module_with_the_sdk_credential_chain_needs_allowed_targets() {
    let err = refused("checks: []\nmodules:\n  - name: s3\n    kind: s3\n    bucket: b\n").await;
    assert!(
        err.contains("modules[0]: carries credentials (the AWS credential chain)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_module_needs_allowed_targets_even_without_credentials() {
    // A caller-chosen broker could send forged answers to the decoder.
    let err =
        refused("checks: []\nmodules:\n  - name: kafka\n    kind: kafka\n    brokers: [k:9092]\n")
            .await;
    assert!(
        err.contains("modules[0]: kind kafka needs allowed_targets in a module"),
        "{err}"
    );
    // With its own list, the same module loads.
    let capture = Capture::start();
    let (_app, addr, _dir) = start(
        "checks: []\nmodules:\n  - name: kafka\n    kind: kafka\n    brokers: [k:9092]\n    \
         allowed_targets: ['kafka.allowed.invalid:9092']\n",
    )
    .await;
    let resp = probe(addr, "kafka", &capture.addr.to_string()).await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(capture.connections(), 0);
}
