//! The web config (`--web.config.file`): TLS, client-certificate
//! verification and bcrypt basic auth on every endpoint, and turning HTTP
//! reloads off. The exporter's own `http` check kind is the TLS client.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use common::{request, tcp_target};
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
async fn tls_serves_every_endpoint_over_https() {
    let pki = Pki::new();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        pki.path("server.crt"),
        pki.path("server.key")
    );
    let (_app, addr) = start(&web, pki.dir.path(), Options::default()).await;
    for path in ["/metrics", "/-/healthy", "/"] {
        let ok = http_check(format!(
            "url: https://{addr}{path}\ntls: {{ca_file: {}}}\n",
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
    // TLS alert on the first read.
    assert!(
        matches!(without.0, Reason::Tls | Reason::Network | Reason::Protocol),
        "{without:?}"
    );
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
    assert!(
        matches!(foreign.0, Reason::Tls | Reason::Network | Reason::Protocol),
        "{foreign:?}"
    );
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
