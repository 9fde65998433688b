//! The `http` check against real servers on 127.0.0.1: plain HTTP servers
//! written directly on a TcpListener, and an HTTPS one with a self-signed
//! certificate made by rcgen.
//!
//! The test servers and helpers are here; the tests are split by topic:
//! the exchange itself (here), redirects, failures, TLS, and the forward
//! proxy.

mod failures;
mod proxy;
mod redirects;
mod tls;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runbook_exporter::checks::{Check, CheckSpec, Failure, Reason, RunContext, RunResult, Sample};
use rustls::pki_types::PrivateKeyDer;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------------------
// Test servers

/// A request as the test server saw it; header names in lower case.
#[derive(Debug, Clone)]
struct SeenRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl SeenRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the test server answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn reply(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

fn redirect(status: u16, location: impl Into<String>) -> Reply {
    Reply {
        status,
        headers: vec![("Location", location.into())],
        body: Vec::new(),
    }
}

type Handler = Arc<dyn Fn(&SeenRequest) -> Reply + Send + Sync>;

/// A running test server: its address and the requests it received.
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
}

impl Server {
    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<SeenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serve HTTP on 127.0.0.1, answering each request with `handler`.
async fn serve(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Server {
    serve_with(None, Arc::new(handler)).await
}

/// Like [`serve`], over TLS.
async fn serve_tls(
    acceptor: TlsAcceptor,
    handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
) -> Server {
    serve_with(Some(acceptor), Arc::new(handler)).await
}

async fn serve_with(tls: Option<TlsAcceptor>, handler: Handler) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tls, handler, log) = (tls.clone(), handler.clone(), log.clone());
            tokio::spawn(async move {
                match tls {
                    None => answer_one(tcp, &*handler, &log).await,
                    // A failed handshake (the client rejected our
                    // certificate) just ends the connection.
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            answer_one(stream, &*handler, &log).await;
                        }
                    }
                }
            });
        }
    });
    Server { addr, requests }
}

/// Read one request, log it, write the reply and close the connection.
async fn answer_one<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    handler: &(dyn Fn(&SeenRequest) -> Reply + Send + Sync),
    log: &Mutex<Vec<SeenRequest>>,
) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break; // the empty line ending the head
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut request = SeenRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    request.body = vec![0; length];
    if stream.read_exact(&mut request.body).await.is_err() {
        return;
    }
    log.lock().unwrap().push(request.clone());

    let reply = handler(&request);
    let mut out = format!(
        "HTTP/1.1 {} Test\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut stream = stream.into_inner();
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&reply.body);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

/// A server that accepts connections, reads, and never answers.
async fn serve_silence() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = tcp.read_to_end(&mut sink).await;
            });
        }
    });
    addr
}

/// A self-signed certificate for 127.0.0.1 and localhost.
struct SelfSigned {
    cert_pem: String,
    /// `notAfter`, as a Unix timestamp.
    not_after: i64,
    acceptor: TlsAcceptor,
}

fn self_signed() -> SelfSigned {
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    params.not_after = rcgen::date_time_ymd(2040, 6, 1);
    let not_after = params.not_after.unix_timestamp();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    SelfSigned {
        cert_pem: cert.pem(),
        not_after,
        acceptor: acceptor(&cert, &key),
    }
}

/// A TLS acceptor for `cert` signed or self-signed with `key`.
fn acceptor(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

// ---------------------------------------------------------------------------
// Helpers

fn build(yaml: &str) -> Box<dyn Check> {
    let spec: CheckSpec = serde_saphyr::from_str(yaml).expect("the spec parses");
    assert_eq!(spec.validate(), Vec::<(String, String)>::new());
    spec.build().expect("the check builds")
}

/// Run once, under a generous timeout as the scheduler would.
async fn run(check: &dyn Check) -> RunResult {
    let timeout = Duration::from_secs(20);
    tokio::time::timeout(timeout, check.run(&RunContext { timeout }))
        .await
        .expect("the check finishes on its own")
}

fn failure(result: RunResult) -> Failure {
    match result {
        Ok(samples) => panic!("expected a failure, got {samples:?}"),
        Err(f) => {
            // Shown when a test fails, and with --nocapture.
            println!("failure: {}: {}", f.reason, f.message);
            f
        }
    }
}

/// The value of the sample of metric `name` with the given labels.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.desc.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

fn phases(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| s.desc.name == "http_phase_duration")
        .map(|s| {
            // A phase lies within its run, bounded by `run` at 20 s (a
            // duration is never negative: asserting that proves nothing).
            assert!(s.value < 20.0, "phase longer than its run: {s:?}");
            s.labels[0].1.clone()
        })
        .collect()
}

fn pem_file(pem: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(pem.as_bytes()).unwrap();
    file
}

// ---------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn ok_response_passes_with_status_and_phases() {
    let server = serve(|_| reply(200, "ok")).await;
    let check = build(&format!(
        "kind: http\nurl: {}",
        server.url("http", "/health")
    ));

    let samples = run(&*check).await.expect("200 passes");

    assert_eq!(value(&samples, "http_status_code", &[]), Some(200.0));
    assert_eq!(
        phases(&samples),
        ["resolve", "connect", "processing", "transfer"]
    );
    assert_eq!(value(&samples, "http_redirects", &[]), Some(0.0));
    assert_eq!(value(&samples, "http_response_body_size", &[]), Some(2.0));
    assert_eq!(value(&samples, "http_ssl", &[]), Some(0.0));

    let seen = &server.requests()[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/health");
    assert_eq!(seen.header("host"), Some(server.addr.to_string().as_str()));
    let agent = seen.header("user-agent").unwrap();
    assert!(agent.starts_with("runbook-exporter/"), "{agent}");
}

#[tokio::test]
async fn method_headers_and_body_are_sent() {
    let server = serve(|_| reply(201, "")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\nmethod: post\nheaders: {{X-Probe: 'yes', Content-Type: application/json}}\nbody: '{{\"ping\": 1}}'\nvalid_status_codes: [201]",
        server.url("http", "/api?x=1")
    ));

    run(&*check).await.expect("201 is listed");

    let seen = &server.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/api?x=1");
    assert_eq!(seen.header("x-probe"), Some("yes"));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.body, b"{\"ping\": 1}");
}

#[tokio::test]
async fn server_error_fails_and_still_reports_the_status() {
    let server = serve(|_| reply(500, "boom")).await;
    let check = build(&format!("kind: http\nurl: {}", server.url("http", "/")));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert_eq!(f.message, "HTTP 500 Internal Server Error (expected 2xx)");
    assert_eq!(value(&f.samples, "http_status_code", &[]), Some(500.0));
    assert!(phases(&f.samples).contains(&"processing".to_string()));
}

#[tokio::test]
async fn listed_status_codes_and_classes_pass() {
    let server = serve(|_| reply(503, "maintenance")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\nvalid_status_codes: [2xx, 503]",
        server.url("http", "/")
    ));

    let samples = run(&*check).await.expect("503 is listed");
    assert_eq!(value(&samples, "http_status_code", &[]), Some(503.0));
}

#[tokio::test]
async fn unauthorized_is_an_auth_failure_and_the_password_stays_secret() {
    let server = serve(|_| reply(401, "who are you? hunter2-secret")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\nbasic_auth: {{username: user, password: hunter2-secret}}",
        server.url("http", "/")
    ));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::Auth);
    assert!(f.message.contains("401"), "{}", f.message);
    assert!(!f.message.contains("hunter2"), "{}", f.message);
    assert!(check.secrets().contains(&"hunter2-secret".to_string()));
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Basic dXNlcjpodW50ZXIyLXNlY3JldA==")
    );
}

#[tokio::test]
async fn bearer_token_is_read_from_a_file() {
    let server = serve(|r| match r.header("authorization") {
        Some("Bearer t0ken") => reply(200, "ok"),
        _ => reply(403, "no"),
    })
    .await;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "t0ken").unwrap();
    let check = build(&format!(
        "kind: http\nurl: {}\nbearer_token_file: {:?}",
        server.url("http", "/"),
        file.path()
    ));

    run(&*check).await.expect("the token is accepted");
    assert_eq!(check.secrets(), ["t0ken"]);
}

#[tokio::test]
async fn body_must_match_and_must_not_match() {
    let server = serve(|_| reply(200, "status: ok\nversion: 1.2.3\n")).await;
    let url = server.url("http", "/");
    let with = |rules: &str| build(&format!("kind: http\nurl: {url}\n{rules}"));

    let passing =
        with("body_must_match: ['status: ok', 'version: \\d+']\nbody_must_not_match: [ERROR]");
    run(&*passing).await.expect("the body matches");

    let f = failure(run(&*with("body_must_match: ['status: down']")).await);
    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert_eq!(f.message, "body does not match \"status: down\"");
    assert_eq!(value(&f.samples, "http_status_code", &[]), Some(200.0));
    assert_eq!(
        value(&f.samples, "http_response_body_size", &[]),
        Some(26.0)
    );

    let f = failure(run(&*with("body_must_not_match: ['version: 1\\.']")).await);
    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert!(f.message.contains("body_must_not_match"), "{}", f.message);
}

#[tokio::test]
async fn json_pointers_must_exist_and_equal() {
    let server = serve(|r| match r.path.as_str() {
        "/json" => reply(
            200,
            r#"{"status": "ok", "checks": {"db": {"up": true, "latency_ms": 3}}}"#,
        ),
        _ => reply(200, "<html>not json</html>"),
    })
    .await;
    let with = |path: &str, json: &str| {
        build(&format!(
            "kind: http\nurl: {}\njson: {json}",
            server.url("http", path)
        ))
    };

    let passing = with(
        "/json",
        "[{pointer: /status, equals: ok}, {pointer: /checks/db/up, equals: true}, {pointer: /checks/db/latency_ms, equals: 3.0}, {pointer: /checks}]",
    );
    run(&*passing).await.expect("the JSON matches");

    let f = failure(run(&*with("/json", "[{pointer: /status, equals: degraded}]")).await);
    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert_eq!(f.message, "JSON /status is \"ok\", expected \"degraded\"");

    let f = failure(run(&*with("/json", "[{pointer: /checks/cache}]")).await);
    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert_eq!(f.message, "JSON body has no /checks/cache");

    let f = failure(run(&*with("/html", "[{pointer: /status}]")).await);
    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert!(
        f.message.starts_with("body is not valid JSON"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn body_larger_than_max_body_bytes_fails() {
    let server = serve(|_| reply(200, vec![b'x'; 100])).await;
    let check = build(&format!(
        "kind: http\nurl: {}\nmax_body_bytes: 10",
        server.url("http", "/")
    ));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert!(f.message.contains("max_body_bytes"), "{}", f.message);
    assert_eq!(value(&f.samples, "http_status_code", &[]), Some(200.0));
}
