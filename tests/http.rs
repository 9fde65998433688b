//! The `http` check against real servers on 127.0.0.1: plain HTTP servers
//! written directly on a TcpListener, and an HTTPS one with a self-signed
//! certificate made by rcgen.

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
    SelfSigned {
        cert_pem: cert.pem(),
        not_after,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
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

#[tokio::test]
async fn redirects_are_followed() {
    let server = serve(|r| match r.path.as_str() {
        "/old" => redirect(301, "/moved"),
        "/moved" => redirect(302, "./final"),
        _ => reply(200, "here"),
    })
    .await;
    let check = build(&format!("kind: http\nurl: {}", server.url("http", "/old")));

    let samples = run(&*check).await.expect("the redirects lead to a 200");

    assert_eq!(value(&samples, "http_redirects", &[]), Some(2.0));
    assert_eq!(value(&samples, "http_status_code", &[]), Some(200.0));
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/old", "/moved", "/final"]);
}

#[tokio::test]
async fn see_other_turns_a_post_into_a_get() {
    let server = serve(|r| match r.path.as_str() {
        "/submit" => redirect(303, "/result"),
        _ => reply(200, "done"),
    })
    .await;
    let check = build(&format!(
        "kind: http\nurl: {}\nmethod: POST\nbody: payload",
        server.url("http", "/submit")
    ));

    run(&*check).await.expect("the 303 is followed");

    let seen = server.requests();
    assert_eq!((seen[0].method.as_str(), seen[0].body.len()), ("POST", 7));
    assert_eq!((seen[1].method.as_str(), seen[1].body.len()), ("GET", 0));
}

#[tokio::test]
async fn too_many_redirects_fail() {
    let server = serve(|_| redirect(302, "/again")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\nmax_redirects: 3",
        server.url("http", "/again")
    ));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert_eq!(f.message, "too many redirects (more than 3)");
    assert_eq!(value(&f.samples, "http_redirects", &[]), Some(3.0));
    assert_eq!(value(&f.samples, "http_status_code", &[]), Some(302.0));
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn redirects_are_not_followed_when_disabled() {
    let server = serve(|_| redirect(302, "/elsewhere")).await;
    let url = server.url("http", "/");

    let strict = build(&format!("kind: http\nurl: {url}\nfollow_redirects: false"));
    let f = failure(run(&*strict).await);
    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert_eq!(f.message, "HTTP 302 Found (expected 2xx)");

    let accepting = build(&format!(
        "kind: http\nurl: {url}\nfollow_redirects: false\nvalid_status_codes: [3xx]"
    ));
    run(&*accepting).await.expect("3xx is listed");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn credentials_are_not_sent_to_another_origin() {
    let other = serve(|_| reply(200, "other")).await;
    let target = other.url("http", "/landing");
    let first = serve(move |_| redirect(307, target.clone())).await;
    let check = build(&format!(
        "kind: http\nurl: {}\nbearer_token: s3cret\nheaders: {{X-Trace: abc}}",
        first.url("http", "/")
    ));

    run(&*check).await.expect("the redirect is followed");

    assert_eq!(
        first.requests()[0].header("authorization"),
        Some("Bearer s3cret")
    );
    let landed = &other.requests()[0];
    assert_eq!(landed.header("authorization"), None);
    assert_eq!(landed.header("x-trace"), Some("abc"));
    assert_eq!(landed.header("host"), Some(other.addr.to_string().as_str()));
}

#[tokio::test]
async fn a_server_that_never_answers_leaves_the_timeout_to_the_scheduler() {
    let addr = serve_silence().await;
    let check = build(&format!("kind: http\nurl: http://{addr}/"));
    let timeout = Duration::from_millis(300);

    let outcome = tokio::time::timeout(timeout, check.run(&RunContext { timeout })).await;

    assert!(
        outcome.is_err(),
        "the check returned on its own: {outcome:?}"
    );
}

#[tokio::test]
async fn connection_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let check = build(&format!("kind: http\nurl: http://{addr}/"));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::ConnectionRefused);
    assert!(f.message.contains(&addr.to_string()), "{}", f.message);
    assert_eq!(value(&f.samples, "http_status_code", &[]), None);
    assert_eq!(phases(&f.samples), ["resolve", "connect"]);
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_fails_tls() {
    let cert = self_signed();
    let server = serve_tls(cert.acceptor, |_| reply(200, "secure")).await;
    let check = build(&format!("kind: http\nurl: {}", server.url("https", "/")));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::Tls);
    assert!(
        f.message.starts_with("TLS handshake failed"),
        "{}",
        f.message
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn https_with_the_ca_file_passes_and_reports_the_expiry() {
    let cert = self_signed();
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    ca.write_all(cert.cert_pem.as_bytes()).unwrap();
    let server = serve_tls(cert.acceptor, |_| reply(200, "secure")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\ntls: {{ca_file: {:?}}}",
        server.url("https", "/"),
        ca.path()
    ));

    let samples = run(&*check).await.expect("the CA is trusted");

    assert_eq!(
        phases(&samples),
        ["resolve", "connect", "tls", "processing", "transfer"]
    );
    assert_eq!(value(&samples, "http_ssl", &[]), Some(1.0));
    assert_eq!(
        value(&samples, "tls_earliest_cert_expiry_timestamp", &[]),
        Some(cert.not_after as f64)
    );
}

#[tokio::test]
async fn https_with_the_ca_file_verifies_the_configured_server_name() {
    let cert = self_signed();
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    ca.write_all(cert.cert_pem.as_bytes()).unwrap();
    let server = serve_tls(cert.acceptor, |_| reply(200, "secure")).await;
    let url = server.url("https", "/");
    let with_name = |name: &str| {
        build(&format!(
            "kind: http\nurl: {url}\ntls: {{ca_file: {:?}, server_name: {name}}}",
            ca.path()
        ))
    };

    run(&*with_name("localhost"))
        .await
        .expect("localhost is in the certificate");
    let f = failure(run(&*with_name("db.example.com")).await);
    assert_eq!(f.reason, Reason::Tls);
}

#[tokio::test]
async fn https_with_insecure_skip_verify_passes() {
    let cert = self_signed();
    let server = serve_tls(cert.acceptor, |_| reply(200, "secure")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\ntls: {{insecure_skip_verify: true}}",
        server.url("https", "/")
    ));

    let samples = run(&*check).await.expect("verification is skipped");

    assert_eq!(value(&samples, "http_ssl", &[]), Some(1.0));
    assert_eq!(
        value(&samples, "tls_earliest_cert_expiry_timestamp", &[]),
        Some(cert.not_after as f64)
    );
}

#[test]
fn bad_regex_names_the_field_at_build() {
    let spec: CheckSpec = serde_saphyr::from_str(
        "kind: http\nurl: http://127.0.0.1/\nbody_must_match: [ok, '(unclosed']",
    )
    .unwrap();
    let err = &spec.build().err().expect("the build fails")[0];
    assert_eq!(err.field, "body_must_match[1]");
}

#[test]
fn unknown_fields_are_rejected() {
    let parsed =
        serde_saphyr::from_str::<CheckSpec>("kind: http\nurl: http://127.0.0.1/\nmethd: GET");
    assert!(parsed.is_err());
}

/// A server that answers each connection with `raw` bytes and closes it.
async fn serve_raw(raw: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut head = [0u8; 1024];
            let _ = tcp.read(&mut head).await;
            let _ = tcp.write_all(raw).await;
            let _ = tcp.shutdown().await;
        }
    });
    addr
}

#[tokio::test]
async fn a_response_that_is_not_http_is_a_protocol_failure() {
    let addr = serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let check = build(&format!("kind: http\nurl: http://{addr}/"));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::Protocol, "{}", f.message);
}

#[tokio::test]
async fn a_connection_closed_before_the_response_is_a_network_failure() {
    let addr = serve_raw(b"").await;
    let check = build(&format!("kind: http\nurl: http://{addr}/"));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::Network, "{}", f.message);
}

#[tokio::test]
async fn a_body_cut_short_is_a_network_failure_after_the_status() {
    let addr = serve_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort").await;
    let check = build(&format!("kind: http\nurl: http://{addr}/"));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::Network, "{}", f.message);
    assert_eq!(value(&f.samples, "http_status_code", &[]), Some(200.0));
}

// ---------------------------------------------------------------------------
// Certificates marked CA:TRUE, and expired ones

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

/// A self-signed certificate for 127.0.0.1 marked `CA:TRUE`, as
/// `openssl req -x509` makes them: its PEM and an acceptor serving it.
fn ca_true_leaf() -> (String, TlsAcceptor) {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), acceptor(&cert, &key))
}

fn pem_file(pem: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(pem.as_bytes()).unwrap();
    file
}

#[tokio::test]
async fn a_ca_true_leaf_is_explained_and_accepted_only_when_pinned() {
    let (pem, tls) = ca_true_leaf();
    let server = serve_tls(tls, |_| reply(200, "legacy")).await;
    let ca = pem_file(&pem);
    let url = server.url("https", "/");

    let refused = build(&format!(
        "kind: http\nurl: {url}\ntls: {{ca_file: {:?}}}",
        ca.path()
    ));
    let f = failure(run(&*refused).await);
    assert_eq!(f.reason, Reason::Tls);
    assert!(
        f.message.contains("CA:TRUE") && f.message.contains("accept_ca_leaf: true"),
        "{}",
        f.message
    );

    let accepted = build(&format!(
        "kind: http\nurl: {url}\ntls: {{ca_file: {:?}, accept_ca_leaf: true}}",
        ca.path()
    ));
    let samples = run(&*accepted).await.expect("the pinned leaf is accepted");
    assert_eq!(value(&samples, "http_status_code", &[]), Some(200.0));
    assert_eq!(server.requests().len(), 1);

    // Another CA:TRUE certificate in ca_file pins nothing for this server.
    let other = pem_file(&ca_true_leaf().0);
    let check = build(&format!(
        "kind: http\nurl: {url}\ntls: {{ca_file: {:?}, accept_ca_leaf: true}}",
        other.path()
    ));
    assert_eq!(failure(run(&*check).await).reason, Reason::Tls);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn accept_ca_leaf_without_ca_file_is_a_config_error() {
    let spec: CheckSpec =
        serde_saphyr::from_str("kind: http\nurl: https://127.0.0.1/\ntls: {accept_ca_leaf: true}")
            .unwrap();
    let err = &spec.build().err().expect("the build fails")[0];
    assert_eq!(err.field, "tls.accept_ca_leaf");
}

#[tokio::test]
async fn an_expired_certificate_is_a_tls_failure() {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    let server = serve_tls(acceptor(&leaf, &key), |_| reply(200, "stale")).await;
    let ca_file = pem_file(&ca.pem());
    let check = build(&format!(
        "kind: http\nurl: {}\ntls: {{ca_file: {:?}}}",
        server.url("https", "/"),
        ca_file.path()
    ));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::Tls);
    assert!(f.message.contains("expired"), "{}", f.message);
    assert_eq!(
        value(&f.samples, "tls_earliest_cert_expiry_timestamp", &[]),
        None
    );
    assert!(server.requests().is_empty());
}

// ---------------------------------------------------------------------------
// Through the real forward proxy (tinyproxy, `scripts/services.sh up proxy`)

fn proxy_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} not set: run scripts/services.sh up proxy"))
}

/// The proxy URL with `password` instead of the real one.
fn proxy_with_password(password: &str) -> String {
    let mut url = url::Url::parse(&proxy_env("RUNBOOK_TEST_PROXY_URL")).unwrap();
    url.set_password(Some(password)).unwrap();
    url.to_string()
}

/// Wait until the proxy's log has a line containing `needle`.
fn assert_proxy_logged(needle: &str) {
    let path = proxy_env("RUNBOOK_TEST_PROXY_LOG");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.lines().any(|l| l.contains(needle)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy log {path} has no line with {needle:?} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn nonce() -> String {
    format!("{}-{:x}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn http_goes_through_the_proxy_with_its_credentials() {
    let server = serve(|_| reply(200, "via proxy")).await;
    let path = format!("/proxied-{}", nonce());
    let proxy = proxy_env("RUNBOOK_TEST_PROXY_URL");
    let check = build(&format!(
        "kind: http\nurl: {}\nproxy_url: {proxy}",
        server.url("http", &path)
    ));

    let samples = run(&*check).await.expect("the proxy forwards the request");

    assert_eq!(value(&samples, "http_status_code", &[]), Some(200.0));
    let seen = &server.requests()[0];
    assert_eq!(seen.path, path);
    let via = seen.header("via").unwrap_or_default();
    assert!(
        via.contains("runbook-test-proxy"),
        "no Via from the proxy: {seen:?}"
    );
    assert_proxy_logged(&format!("GET http://{}{path} HTTP/1.1", server.addr));
    let password = url::Url::parse(&proxy)
        .unwrap()
        .password()
        .unwrap()
        .to_string();
    assert!(check.secrets().contains(&password));
}

#[tokio::test]
async fn https_is_tunnelled_through_the_proxy() {
    let cert = self_signed();
    let ca = pem_file(&cert.cert_pem);
    let server = serve_tls(cert.acceptor, |_| reply(200, "secure")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\nproxy_url: {}\ntls: {{ca_file: {:?}}}",
        server.url("https", "/tunnelled"),
        proxy_env("RUNBOOK_TEST_PROXY_URL"),
        ca.path()
    ));

    let samples = run(&*check).await.expect("the tunnel carries TLS");

    assert_eq!(value(&samples, "http_ssl", &[]), Some(1.0));
    assert_eq!(
        value(&samples, "tls_earliest_cert_expiry_timestamp", &[]),
        Some(cert.not_after as f64)
    );
    assert_eq!(server.requests()[0].path, "/tunnelled");
    assert_proxy_logged(&format!("CONNECT {} HTTP/1.1", server.addr));
}

#[tokio::test]
async fn a_wrong_proxy_password_is_auth_and_never_shown() {
    let wrong = format!("wrong-proxy-pw-{}", nonce());
    let proxy = proxy_with_password(&wrong);
    let plain = serve(|_| reply(200, "unreachable")).await;
    let cert = self_signed();
    let tls = serve_tls(cert.acceptor, |_| reply(200, "unreachable")).await;

    for url in [plain.url("http", "/"), tls.url("https", "/")] {
        let check = build(&format!(
            "kind: http\nurl: {url}\nproxy_url: {proxy}\ntls: {{insecure_skip_verify: true}}"
        ));
        let f = failure(run(&*check).await);
        assert_eq!(f.reason, Reason::Auth, "{url}: {}", f.message);
        // 407, or tinyproxy's 401 for wrong credentials.
        assert!(
            f.message.contains("407") || f.message.contains("401"),
            "{}",
            f.message
        );
        assert!(!f.message.contains(&wrong), "{}", f.message);
        assert!(check.secrets().contains(&wrong));
    }
    assert!(plain.requests().is_empty() && tls.requests().is_empty());
}

#[tokio::test]
async fn no_proxy_hosts_are_requested_directly() {
    let server = serve(|_| reply(200, "direct")).await;
    // A proxy where nothing listens: the request can only pass directly.
    let nowhere = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let check = build(&format!(
        "kind: http\nurl: {}\nproxy_url: http://{nowhere}\nno_proxy: [10.0.0.0/8, 127.0.0.1]",
        server.url("http", "/")
    ));
    run(&*check).await.expect("127.0.0.1 is in no_proxy");
    assert_eq!(server.requests()[0].header("via"), None);

    let proxied = build(&format!(
        "kind: http\nurl: {}\nproxy_url: http://{nowhere}\nno_proxy: [example.internal]",
        server.url("http", "/")
    ));
    let f = failure(run(&*proxied).await);
    assert_eq!(f.reason, Reason::ConnectionRefused);
    assert!(f.message.contains(&nowhere.to_string()), "{}", f.message);
}
