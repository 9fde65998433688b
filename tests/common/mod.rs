//! Helpers shared by the integration tests: building a check from YAML, a
//! minimal HTTP/1.0 client for the exporter's own endpoints (every step
//! bounded), TCP listeners, polling with a deadline, (in `process`) the
//! exporter binary and other child processes, each waited on with a bound,
//! and (in `services`) stopping and restoring the shared test services.
#![allow(dead_code)] // Each test crate uses a different subset.

mod process;
#[allow(unused_imports)] // Not every test crate starts processes.
pub use process::*;
mod services;
#[allow(unused_imports)] // Only the outage tests stop services.
pub use services::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use runbook_exporter::app::App;
use runbook_exporter::checks::{Check, CheckSpec, RunContext};
use runbook_exporter::server::Options;
use runbook_exporter::web::WebConfig;

/// Serve `app` on a free loopback port until the test ends.
pub async fn serve(app: &Arc<App>, options: Options, web: WebConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(runbook_exporter::server::serve(
        listener,
        app.clone(),
        options,
        web,
        std::future::pending(),
    ));
    addr
}

/// Start an app on `config` (written to a temporary file, kept while the
/// returned directory lives) and serve it over plain HTTP.
pub async fn serve_config(config: &str) -> (Arc<App>, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let app = App::start(path).await.expect("config loads");
    let addr = serve_plain(&app).await;
    (app, addr, dir)
}

/// Serve `app` over plain HTTP with the default options.
pub async fn serve_plain(app: &Arc<App>) -> SocketAddr {
    serve(app, Options::default(), WebConfig::insecure()).await
}

/// A variable written by `scripts/services.sh up SERVICE`.
pub fn service_env(name: &str, service: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set: run scripts/services.sh up {service}"))
}

/// Parse a check spec from YAML (with `kind:`), require it to validate,
/// and build it.
pub fn build(yaml: &str) -> Box<dyn Check> {
    let spec: CheckSpec = serde_saphyr::from_str(yaml).expect("spec parses");
    assert_eq!(spec.validate(), Vec::<(String, String)>::new());
    spec.build().expect("check builds")
}

/// A run context with a generous timeout.
pub fn ctx() -> RunContext {
    RunContext {
        timeout: Duration::from_secs(5),
    }
}

/// A response: status code, raw header block, body.
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// Longest one request to the exporter may take to connect, to send, or
/// between two reads of its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Send one request and read the whole response; panic, naming the request,
/// if the exporter does not connect or answer within [`REQUEST_TIMEOUT`].
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    try_request(addr, method, path, headers).unwrap_or_else(|e| {
        panic!("{method} {path} to {addr} (each step bounded by {REQUEST_TIMEOUT:?}): {e}")
    })
}

/// [`request`], returning an error instead of panicking (for polling an
/// exporter that may not listen yet).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no status line in {raw:?}"),
            )
        })?;
    Ok(Response {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    })
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[])
}

/// The value of the series `name{labels}` in a text exposition, where
/// `labels` is a substring of the label set (like `check="a"`).
pub fn sample(body: &str, name: &str, labels: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let series = l.rsplit_once(' ').map(|(s, _)| s).unwrap_or("");
            (series == name || series.starts_with(&format!("{name}{{"))) && series.contains(labels)
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// The status page's row of `check`, from its `<tr` to its `</tr>`.
pub fn status_row(page: &str, check: &str) -> Option<String> {
    let at = page.find(&format!("data-check=\"{check}\""))?;
    let start = page[..at].rfind("<tr")?;
    let end = at + page[at..].find("</tr>")?;
    Some(page[start..end].to_string())
}

/// A listener on 127.0.0.1 that accepts and drops connections forever, in a
/// background thread: a healthy TCP target.
pub fn tcp_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    addr
}

/// An address on 127.0.0.1 where nothing listens (connection refused).
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A target that accepts and never answers. Each connection is closed as
/// soon as the exporter closes its side.
pub struct SilentTarget {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections still open.
    pub open: Arc<std::sync::atomic::AtomicUsize>,
}

pub fn silent_target() -> SilentTarget {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (acc, counter) = (accepted.clone(), open.clone());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            acc.fetch_add(1, Ordering::SeqCst);
            counter.fetch_add(1, Ordering::SeqCst);
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    SilentTarget {
        addr,
        accepted,
        open,
    }
}

/// Wait until `done()` holds, polling every 50 ms; panic after `limit`
/// with `what()` describing the state it waited for.
pub async fn wait_until(
    limit: Duration,
    mut done: impl FnMut() -> bool,
    what: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "after {limit:?}: {}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
