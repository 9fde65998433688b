//! The server's defences against misbehaving clients, on a real listener:
//! header-read and idle timeouts (plain and TLS), the connection cap, a
//! client that stops reading its response, shutdown with idle connections
//! open, unusable scrape-timeout headers on
//! /probe, and a flood of wrong passwords.

mod common;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use common::{request, sample, Response};
use runbook_exporter::app::App;
use runbook_exporter::server::Options;
use runbook_exporter::web::WebConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// Longest any single wait in these tests may take.
const BOUND: Duration = Duration::from_secs(10);

const CONFIG: &str = "defaults: {interval: 1m, timeout: 5s}\n\
    probe:\n  allowed_targets: ['127\\.0\\.0\\.1:\\d+']\n\
    checks: []\n\
    modules:\n\
    \x20 - name: banner\n    kind: tcp\n    address: 127.0.0.1:1\n    expect: '^HELLO'\n";

struct Server {
    addr: SocketAddr,
    _app: Arc<App>,
    _dir: tempfile::TempDir,
}

/// Serve `CONFIG` with `options` and, if given, this web config.
async fn start(options: Options, web_yaml: Option<&str>) -> Server {
    start_config(CONFIG, options, web_yaml).await
}

/// Serve `config` with `options` and, if given, this web config.
async fn start_config(config: &str, options: Options, web_yaml: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let web = match web_yaml {
        None => WebConfig::insecure(),
        Some(yaml) => {
            let web_path = dir.path().join("web.yml");
            std::fs::write(&web_path, yaml).unwrap();
            WebConfig::load(&web_path).expect("web config loads")
        }
    };
    let app = App::start(path).await.expect("config loads");
    let addr = common::serve(&app, options, web).await;
    Server {
        addr,
        _app: app,
        _dir: dir,
    }
}

fn options(header_read: Duration, idle: Duration, max_connections: usize) -> Options {
    Options {
        header_read_timeout: header_read,
        idle_timeout: idle,
        max_connections,
        ..Options::default()
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(BOUND, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Read until the server closes the connection (end of stream or reset),
/// failing after `BOUND`. Anything the server sends first is discarded.
async fn wait_closed(stream: &mut (impl AsyncRead + Unpin)) {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {BOUND:?}"),
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => continue,
            // TLS without close_notify ends in UnexpectedEof.
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                ) =>
            {
                return
            }
            Ok(Err(e)) => panic!("read failed: {e}"),
        }
    }
}

/// Send `GET path` over HTTP/1.1 (keep-alive) and read one response: its
/// status. Each read is bounded by `BOUND`.
async fn get(stream: &mut TcpStream, path: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read a response");
        assert!(n > 0, "connection closed before a full response");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("a content-length");
        if body.len() >= length {
            return head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("a status line");
        }
    }
}

/// Wait for the server to close `stream`, and check that it did not do so
/// before `at_least` had passed since `start` (less a little for the
/// client's own delays).
async fn closes_after(stream: &mut (impl AsyncRead + Unpin), start: Instant, at_least: Duration) {
    wait_closed(stream).await;
    let took = start.elapsed();
    assert!(
        took + Duration::from_millis(300) >= at_least,
        "closed after {took:?}, before {at_least:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_is_cut_off_after_the_header_read_timeout() {
    // The idle timeout is far longer, so only the header clock can close it.
    let server = start(options(Duration::from_secs(1), BOUND * 3, 8), None).await;
    let mut slow = connect(server.addr).await;
    let start = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    closes_after(&mut slow, start, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_over_tls_is_cut_off_after_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        cert_path.display(),
        key_path.display()
    );
    let server = start(options(Duration::from_secs(1), BOUND * 3, 8), Some(&web)).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = connect(server.addr).await;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut slow = timeout(BOUND, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let start = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    closes_after(&mut slow, start, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_dripping_in_byte_by_byte_is_cut_off_after_the_header_read_timeout() {
    let server = start(options(Duration::from_secs(1), BOUND * 3, 8), None).await;
    let mut drip = connect(server.addr).await;
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}", "a".repeat(500));
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    for byte in head.bytes() {
        assert!(start.elapsed() < BOUND, "still open after {BOUND:?}");
        if drip.write_all(&[byte]).await.is_err() {
            break; // closed (reset) while writing
        }
        match timeout(Duration::from_millis(100), drip.read(&mut buf)).await {
            Err(_) => continue, // still open: one more byte
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue, // an error response before the close
        }
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "open for {took:?}");
    assert!(
        took + Duration::from_millis(300) >= Duration::from_secs(1),
        "closed after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_a_request_is_closed_after_the_header_read_timeout() {
    let server = start(options(Duration::from_secs(1), BOUND * 3, 8), None).await;
    let start = Instant::now();
    let mut silent = connect(server.addr).await;
    closes_after(&mut silent, start, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header clock is far longer, so only the idle clock can close it.
    let idle = Duration::from_millis(1500);
    let server = start(options(BOUND * 3, idle, 8), None).await;
    let mut conn = connect(server.addr).await;
    assert_eq!(get(&mut conn, "/-/healthy").await, 200);
    // Kept alive: a second request on the same connection is served.
    assert_eq!(get(&mut conn, "/-/healthy").await, 200);
    let start = Instant::now();
    closes_after(&mut conn, start, idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_an_earlier_one_closes() {
    let server = start(options(BOUND * 3, BOUND * 3, 2), None).await;
    // Two keep-alive connections, each served once, hold the two slots.
    let mut first = connect(server.addr).await;
    let mut second = connect(server.addr).await;
    assert_eq!(get(&mut first, "/-/healthy").await, 200);
    assert_eq!(get(&mut second, "/-/healthy").await, 200);
    // A third connects (the listen backlog takes it) but is not served...
    let mut third = connect(server.addr).await;
    let req = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n";
    third.write_all(req).await.unwrap();
    let mut buf = [0u8; 64];
    let early = timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(early.is_err(), "served over the cap: {early:?}");
    // ...until one of the first two closes.
    drop(first);
    let n = timeout(BOUND, third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The slot of the second is still held and still serves.
    assert_eq!(get(&mut second, "/-/healthy").await, 200);
}

/// A config whose `/metrics` body (about 45 MB) is far larger than what the
/// kernel buffers on a loopback connection: 1,000 checks, each line of
/// which carries a 4 KB label.
fn large_body_config() -> String {
    let mut config = format!(
        "defaults: {{interval: 1h, timeout: 5s, labels: {{padding: {}}}}}\nchecks:\n",
        "x".repeat(4096)
    );
    for i in 0..1000 {
        config.push_str(&format!(
            "  - {{name: c{i}, kind: tcp, address: '127.0.0.1:1'}}\n"
        ));
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_large_response_is_closed_after_the_write_stall_timeout() {
    let stall = Duration::from_secs(2);
    let server = start_config(
        &large_body_config(),
        Options {
            write_stall_timeout: stall,
            ..options(BOUND * 3, BOUND * 3, 1)
        },
        None,
    )
    .await;
    // A client with a small receive buffer asks for /metrics and reads
    // nothing: the server's writes soon wait on it. It holds the only slot.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = timeout(BOUND, socket.connect(server.addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let asked = Instant::now();
    stuck
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A scrape waiting for the slot is served once the stall clock has
    // closed the stuck connection, not before.
    let mut next = connect(server.addr).await;
    assert_eq!(get(&mut next, "/-/healthy").await, 200);
    let waited = asked.elapsed();
    assert!(
        waited + Duration::from_millis(300) >= stall,
        "served after {waited:?}, before the stall timeout {stall:?}"
    );
    // The stuck client finds its response cut off: the chunked body never
    // reaches its last, empty chunk.
    let mut received = Vec::new();
    let deadline = Instant::now() + BOUND;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stuck.read(&mut buf)).await {
            Err(_) => panic!("the stuck connection is still open after {BOUND:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    assert!(received.starts_with(b"HTTP/1.1 200"), "no response head");
    assert!(
        !received.ends_with(b"\r\n0\r\n\r\n"),
        "the whole body arrived ({} bytes): the server never waited on the client",
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_returns_without_waiting_out_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    let app = App::start(path).await.expect("config loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runbook_exporter::server::serve(
        listener,
        app,
        Options::default(),
        WebConfig::insecure(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut idle = connect(addr).await;
    assert_eq!(get(&mut idle, "/-/healthy").await, 200);
    let start = Instant::now();
    stop.send(()).unwrap();
    wait_closed(&mut idle).await;
    // The drain timeout is 10 s; an idle connection must not hold it up.
    let served = timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once connections are closed");
    served.unwrap().expect("serve ends cleanly");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

/// A TCP server that greets each connection with `HELLO` after `delay`.
fn slow_greeter(delay: Duration) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::Write;
                std::thread::sleep(delay);
                let _ = (&conn).write_all(b"HELLO\n");
                std::thread::sleep(Duration::from_secs(1));
            });
        }
    });
    addr
}

async fn blocking_request(
    addr: SocketAddr,
    path: String,
    headers: Vec<(&'static str, String)>,
) -> Response {
    let call = tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(addr, "GET", &path, &headers)
    });
    timeout(BOUND, call)
        .await
        .expect("answered in time")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_ignores_scrape_timeout_headers_it_cannot_use() {
    let server = start(Options::default(), None).await;
    // The greeting takes 300 ms: within the module's 5 s, not within a
    // scrape timeout of 0.15 s less the 0.1 s kept for the answer.
    let target = slow_greeter(Duration::from_millis(300));
    let path = format!("/probe?module=banner&target={target}");
    let up = |resp: &Response| sample(&resp.body, "runbook_check_up", "check=\"banner\"");
    let header = |v: &str| vec![("X-Prometheus-Scrape-Timeout-Seconds", v.to_string())];

    let usable = blocking_request(server.addr, path.clone(), header("0.15")).await;
    assert_eq!(
        (usable.status, up(&usable)),
        (200, Some(0.0)),
        "{}",
        usable.body
    );
    for value in ["1e300", "-5", "NaN", "abc", "0", "inf"] {
        let resp = blocking_request(server.addr, path.clone(), header(value)).await;
        assert_eq!(
            (resp.status, up(&resp)),
            (200, Some(1.0)),
            "{value}: {}",
            resp.body
        );
    }
    let healthy = blocking_request(server.addr, "/-/healthy".into(), vec![]).await;
    assert_eq!(healthy.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_is_refused_while_cached_credentials_do_not_queue_behind_it() {
    // Cost 8: each verification is slow enough that twenty one after the
    // other take far longer than one cached check.
    let hash = bcrypt::hash("s3cret-pw", 8).unwrap();
    let web = format!("basic_auth_users:\n  prometheus: '{hash}'\n");
    let server = start(Options::default(), Some(&web)).await;
    let auth = |pw: &str| {
        format!(
            "Basic {}",
            BASE64_STANDARD.encode(format!("prometheus:{pw}"))
        )
    };
    let authed = |pw: &str| vec![("Authorization", auth(pw))];
    let addr = server.addr;

    // Verified once, then cached.
    let first = blocking_request(addr, "/-/healthy".into(), authed("s3cret-pw")).await;
    assert_eq!(first.status, 200);

    let refused = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..20)
        .map(|i| {
            let (refused, headers) = (refused.clone(), authed(&format!("guess-{i}")));
            tokio::spawn(async move {
                let resp = blocking_request(addr, "/-/healthy".into(), headers).await;
                refused.fetch_add(1, Ordering::SeqCst);
                resp.status
            })
        })
        .collect();
    // Once the flood is being verified, the cached credentials get in
    // without queueing behind it.
    let deadline = Instant::now() + BOUND;
    while refused.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no wrong password answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cached = blocking_request(addr, "/-/healthy".into(), authed("s3cret-pw")).await;
    let answered_before = refused.load(Ordering::SeqCst);
    assert_eq!(cached.status, 200);
    assert!(
        answered_before < 20,
        "the cached request waited for the whole flood"
    );
    for attempt in flood {
        assert_eq!(timeout(BOUND, attempt).await.unwrap().unwrap(), 401);
    }
    let after = blocking_request(addr, "/-/healthy".into(), authed("s3cret-pw")).await;
    assert_eq!(after.status, 200);
}
