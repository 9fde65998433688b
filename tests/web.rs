//! The web config (`--web.config.file`): TLS, client-certificate
//! verification (required, or verified if given), `min_version`, bcrypt
//! basic auth and response headers on every endpoint, turning HTTP reloads
//! off, and all of it through the real binary. The TLS clients are the
//! exporter's own `http` check kind and a rustls client whose protocol
//! versions and certificate the test chooses.

mod common;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use common::{request, sample, tcp_target, Exporter};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use runbook_exporter::app::App;
use runbook_exporter::checks::{CheckSpec, Reason, RunContext};
use runbook_exporter::server::Options;
use runbook_exporter::web::WebConfig;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 signed by it, and a client
    /// certificate signed by it, as PEM files.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["prometheus".to_string()])
            .unwrap()
            .signed_by(&client_key, &ca, &ca_key)
            .unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.crt", ca.pem());
        write("server.crt", server.pem());
        write("server.key", server_key.serialize_pem());
        write("client.crt", client.pem());
        write("client.key", client_key.serialize_pem());
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

async fn start(web_yaml: &str, dir: &Path, options: Options) -> (Arc<App>, SocketAddr) {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "checks:\n  - name: up_check\n    kind: tcp\n    address: {0}\n\
             modules:\n  - name: up\n    kind: tcp\n    address: {0}\n",
            tcp_target()
        ),
    )
    .unwrap();
    let web_path = dir.join("web.yml");
    std::fs::write(&web_path, web_yaml).unwrap();
    let web = WebConfig::load(&web_path).expect("web config loads");
    let app = App::start(config).await.unwrap();
    let addr = common::serve(&app, options, web).await;
    (app, addr)
}

/// Run an `http` check with the given YAML fields against the exporter.
async fn http_check(yaml: String) -> Result<(), (Reason, String)> {
    let spec: CheckSpec = serde_saphyr::from_str(&format!("kind: http\n{yaml}")).unwrap();
    let check = spec.build().unwrap();
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    let run = tokio::time::timeout(ctx.timeout, check.run(&ctx)).await;
    match run.expect("the check finishes") {
        Ok(_) => Ok(()),
        Err(f) => Err((f.reason, f.message)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_every_get_endpoint_over_https() {
    let pki = Pki::new();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        pki.path("server.crt"),
        pki.path("server.key")
    );
    let (_app, addr) = start(&web, pki.dir.path(), Options::default()).await;
    let probe = format!("/probe?module=up&target={}", tcp_target());
    for path in ["/metrics", "/-/healthy", "/-/ready", "/", probe.as_str()] {
        let ok = http_check(format!(
            "url: 'https://{addr}{path}'\ntls: {{ca_file: {}}}\n",
            pki.path("ca.crt")
        ))
        .await;
        assert_eq!(ok, Ok(()), "{path}");
    }
    // Without trusting the CA the handshake fails.
    let err = http_check(format!("url: https://{addr}/metrics\n"))
        .await
        .unwrap_err();
    assert_eq!(err.0, Reason::Tls, "{}", err.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_verified() {
    let pki = Pki::new();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt")
    );
    let (_app, addr) = start(&web, pki.dir.path(), Options::default()).await;
    let with_cert = http_check(format!(
        "url: https://{addr}/metrics\ntls: {{ca_file: {}, cert_file: {}, key_file: {}}}\n",
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key")
    ))
    .await;
    assert_eq!(with_cert, Ok(()));
    let without = http_check(format!(
        "url: https://{addr}/metrics\ntls: {{ca_file: {}}}\n",
        pki.path("ca.crt")
    ))
    .await
    .unwrap_err();
    // TLS 1.3 reports the missing certificate after the handshake, as a
    // TLS alert on the first read; it is still a `tls` failure.
    assert_eq!(without.0, Reason::Tls, "{without:?}");
    // A client certificate signed by another CA is refused too.
    let stranger = Pki::new();
    let foreign = http_check(format!(
        "url: https://{addr}/metrics\ntls: {{ca_file: {}, cert_file: {}, key_file: {}}}\n",
        pki.path("ca.crt"),
        stranger.path("client.crt"),
        stranger.path("client.key")
    ))
    .await
    .unwrap_err();
    assert_eq!(foreign.0, Reason::Tls, "{foreign:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret-pw", 4).unwrap();
    let web = format!("basic_auth_users:\n  prometheus: '{hash}'\n");
    let (_app, addr) = start(&web, dir.path(), Options::default()).await;
    let auth =
        |user: &str, pw: &str| format!("Basic {}", BASE64_STANDARD.encode(format!("{user}:{pw}")));
    let right = auth("prometheus", "s3cret-pw");
    let wrong = auth("prometheus", "guess");
    let stranger = auth("mallory", "s3cret-pw");
    let results = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (method, path) in [
            ("GET", "/metrics"),
            ("GET", "/"),
            ("GET", "/-/healthy"),
            ("GET", "/-/ready"),
            ("GET", "/probe?module=up&target=127.0.0.1:1"),
            ("POST", "/-/reload"),
        ] {
            let none = request(addr, method, path, &[]);
            assert_eq!(
                none.header("www-authenticate"),
                Some("Basic realm=\"runbook-exporter\""),
                "{path}"
            );
            out.push((path, "none", none.status));
            for (label, value) in [
                ("wrong", &wrong),
                ("stranger", &stranger),
                ("right", &right),
            ] {
                out.push((
                    path,
                    label,
                    request(addr, method, path, &[("Authorization", value)]).status,
                ));
            }
        }
        out
    })
    .await
    .unwrap();
    for (path, who, status) in results {
        let expected = if who == "right" { 200 } else { 401 };
        assert_eq!(status, expected, "{who} on {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reload_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = start(
        "",
        dir.path(),
        Options {
            enable_reload: false,
            ..Options::default()
        },
    )
    .await;
    let resp = tokio::task::spawn_blocking(move || request(addr, "POST", "/-/reload", &[]))
        .await
        .unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.body,
        "reload over HTTP is disabled (--web.enable-reload=false); send SIGHUP instead\n"
    );
}

#[test]
fn invalid_web_configs_are_reported_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    let cases = [
        (
            "basic_auth_users:\n  alice: plaintext\n",
            "basic_auth_users.alice: not a bcrypt hash (create one with `htpasswd -nBC 10 USER`)",
        ),
        (
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
            "tls_server_config.cert_file: /nonexistent.crt: I/O error: No such file or directory (os error 2)",
        ),
        (
            "tls_server_confg: {}\n",
            "1:1: tls_server_confg: unknown field `tls_server_confg`, expected one of `tls_server_config`, `basic_auth_users`, `http_server_config`",
        ),
    ];
    for (yaml, expected) in cases {
        std::fs::write(&path, yaml).unwrap();
        let err = WebConfig::load(&path).err().expect("an error").to_string();
        assert!(err.ends_with(expected), "{err}");
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
}

/// A TLS client for [`https`]: the protocol versions it offers and the
/// client certificate (PEM cert and key) it presents, if any.
struct Client<'a> {
    versions: &'a [&'static rustls::SupportedProtocolVersion],
    cert: Option<(String, String)>,
}

impl Client<'_> {
    fn anonymous() -> Self {
        Client {
            versions: rustls::DEFAULT_VERSIONS,
            cert: None,
        }
    }

    fn with_cert(pki: &Pki) -> Self {
        Client {
            versions: rustls::DEFAULT_VERSIONS,
            cert: Some((pki.path("client.crt"), pki.path("client.key"))),
        }
    }
}

/// One HTTP/1.0 request over TLS, trusting `ca`. `Err` when the handshake
/// fails or the server ends the connection before answering (how TLS 1.3
/// refuses a client certificate: an alert after the client's handshake).
/// Bounded by 30 s in all.
async fn https(
    addr: SocketAddr,
    ca: &str,
    client: &Client<'_>,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<common::Response> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(client.versions)
    .unwrap()
    .with_root_certificates(roots);
    let config = match &client.cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(cert).unwrap()],
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw).await {
            Ok(_) => {}
            // A server that closes without close_notify, after answering.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e),
        }
        let raw = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        let Some(status) = status else {
            return Err(std::io::Error::other(format!("no answer: {raw:?}")));
        };
        Ok(common::Response {
            status,
            headers: head.to_string(),
            body: body.to_string(),
        })
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to GET {path} over TLS from {addr} within 30 s"))
}

fn tls_web(pki: &Pki, extra: &str) -> String {
    format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra}",
        pki.path("server.crt"),
        pki.path("server.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_client_cert_if_given_accepts_none_and_a_good_one_and_refuses_a_bad_one() {
    let pki = Pki::new();
    let web = tls_web(
        &pki,
        &format!(
            "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {}\n",
            pki.path("ca.crt")
        ),
    );
    let (_app, addr) = start(&web, pki.dir.path(), Options::default()).await;
    let ca = pki.path("ca.crt");
    let none = https(addr, &ca, &Client::anonymous(), "/metrics", &[]).await;
    assert_eq!(none.map(|r| r.status).ok(), Some(200), "no certificate");
    let good = https(addr, &ca, &Client::with_cert(&pki), "/metrics", &[]).await;
    assert_eq!(
        good.map(|r| r.status).ok(),
        Some(200),
        "a certificate of the CA"
    );
    let stranger = Pki::new();
    let bad = https(addr, &ca, &Client::with_cert(&stranger), "/metrics", &[]).await;
    assert!(
        bad.is_err(),
        "a certificate of another CA was let in: {:?}",
        bad.map(|r| r.status)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_tls13_refuses_a_tls12_only_client() {
    let pki = Pki::new();
    let ca = pki.path("ca.crt");
    let tls12_only = Client {
        versions: &[&rustls::version::TLS12],
        cert: None,
    };
    let tls13_only = Client {
        versions: &[&rustls::version::TLS13],
        cert: None,
    };
    // With min_version TLS12 the TLS 1.2 client is served, so a refusal
    // below comes from min_version alone.
    let dir12 = tempfile::tempdir().unwrap();
    let (_app12, addr12) = start(
        &tls_web(&pki, "  min_version: TLS12\n"),
        dir12.path(),
        Options::default(),
    )
    .await;
    let ok = https(addr12, &ca, &tls12_only, "/-/healthy", &[]).await;
    assert_eq!(
        ok.map(|r| r.status).ok(),
        Some(200),
        "TLS 1.2 with min TLS12"
    );

    let dir13 = tempfile::tempdir().unwrap();
    let (_app13, addr13) = start(
        &tls_web(&pki, "  min_version: TLS13\n"),
        dir13.path(),
        Options::default(),
    )
    .await;
    let refused = https(addr13, &ca, &tls12_only, "/-/healthy", &[]).await;
    assert!(
        refused.is_err(),
        "a TLS 1.2 client was served with min_version TLS13: {:?}",
        refused.map(|r| r.status)
    );
    let ok = https(addr13, &ca, &tls13_only, "/-/healthy", &[]).await;
    assert_eq!(
        ok.map(|r| r.status).ok(),
        Some(200),
        "TLS 1.3 with min TLS13"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_response_headers_are_on_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret-pw", 4).unwrap();
    let web = format!(
        "basic_auth_users:\n  prometheus: '{hash}'\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
         \x20   Strict-Transport-Security: max-age=31536000\n"
    );
    let (_app, addr) = start(&web, dir.path(), Options::default()).await;
    let auth = format!("Basic {}", BASE64_STANDARD.encode("prometheus:s3cret-pw"));
    let answers = tokio::task::spawn_blocking(move || {
        [
            (
                "/metrics with auth",
                request(addr, "GET", "/metrics", &[("Authorization", &auth)]),
            ),
            (
                "/ with auth",
                request(addr, "GET", "/", &[("Authorization", &auth)]),
            ),
            (
                "/metrics without auth",
                request(addr, "GET", "/metrics", &[]),
            ),
            (
                "an unknown path",
                request(addr, "GET", "/nope", &[("Authorization", &auth)]),
            ),
        ]
    })
    .await
    .unwrap();
    let statuses: Vec<u16> = answers.iter().map(|(_, r)| r.status).collect();
    assert_eq!(statuses, [200, 200, 401, 404]);
    for (what, resp) in &answers {
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{what}: {}",
            resp.headers
        );
        assert_eq!(
            resp.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{what}: {}",
            resp.headers
        );
    }
}

/// `serve --web.config.file` through the real binary: TLS with a client
/// certificate required, basic auth and headers, paths relative to the web
/// config file.
#[test]
fn the_binary_serves_with_its_web_config_file() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let hash = bcrypt::hash("s3cret-pw", 4).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             \x20 client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
             \x20 min_version: TLS12\n\
             basic_auth_users:\n  prometheus: '{hash}'\n\
             http_server_config:\n  headers: {{X-Frame-Options: deny}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "defaults: {{interval: 500ms, timeout: 450ms}}\nchecks:\n  - name: up_check\n    kind: tcp\n    address: {}\n",
            tcp_target()
        ),
    )
    .unwrap();
    let (config, web) = (dir.join("config.yaml"), dir.join("web.yml"));
    let exporter = Exporter::serve(&[
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--web.config.file"),
        web.as_os_str(),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = pki.path("ca.crt");
    let auth = format!("Basic {}", BASE64_STANDARD.encode("prometheus:s3cret-pw"));
    let client = Client::with_cert(&pki);
    let authed = [("Authorization", auth.as_str())];

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let resp = rt
            .block_on(https(exporter.addr, &ca, &client, "/metrics", &authed))
            .expect("served over TLS to a client with a certificate");
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(
            resp.header("x-frame-options"),
            Some("deny"),
            "{}",
            resp.headers
        );
        if sample(&resp.body, "runbook_check_up", "check=\"up_check\"") == Some(1.0) {
            break resp.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "up_check not up within 30 s:\n{}",
            resp.body
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(metrics.contains("runbook_exporter_build_info"));

    let no_password = rt
        .block_on(https(exporter.addr, &ca, &client, "/metrics", &[]))
        .expect("an answer");
    assert_eq!(no_password.status, 401);
    assert_eq!(no_password.header("x-frame-options"), Some("deny"));
    let no_cert = rt.block_on(https(
        exporter.addr,
        &ca,
        &Client::anonymous(),
        "/metrics",
        &authed,
    ));
    assert!(no_cert.is_err(), "served without a client certificate");
    // Plain HTTP gets no metrics.
    let plain = common::try_request(exporter.addr, "GET", "/metrics", &[]);
    assert!(
        !matches!(plain, Ok(ref r) if r.status == 200),
        "served over plain HTTP"
    );
    exporter.stop();

    // A broken web config: exit 2 before listening, naming the field.
    std::fs::write(
        dir.join("web.yml"),
        "tls_server_config:\n  cert_file: server.crt\n",
    )
    .unwrap();
    let out = common::run_exporter(&[
        OsStr::new("serve"),
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--web.config.file"),
        web.as_os_str(),
        OsStr::new("--web.listen-address"),
        OsStr::new("127.0.0.1:0"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with(&web.display().to_string()), "{stderr}");
    assert!(stderr.contains("tls_server_config"), "{stderr}");
}
