//! How the `http` check fails: a silent server, a refused connection, bad
//! config, and responses that are not HTTP or end early.

use super::*;

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
