//! The `http` check through the real forward proxy (tinyproxy,
//! `scripts/services.sh up proxy`).

use super::*;

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
