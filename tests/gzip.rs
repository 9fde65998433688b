//! `/metrics` with `Accept-Encoding: gzip`, read by an independent client
//! (curl, which Go-style multi-member gzip must satisfy as Prometheus does),
//! and the plain body for clients that do not ask for gzip.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{serve_config, tcp_target, wait_until};

/// `curl` with a hard time limit; returns (headers, body bytes).
fn curl(addr: SocketAddr, args: &[&str]) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--dump-header",
        ])
        .arg(&headers)
        .args(args)
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (std::fs::read_to_string(headers).unwrap(), out.stdout)
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_gzipped_when_the_scraper_accepts_it() {
    let target = tcp_target();
    let config = format!(
        "defaults: {{interval: 200ms, timeout: 100ms}}\nchecks:\n  - name: gz_tcp\n    kind: tcp\n    address: {target}\n"
    );
    let (_app, addr, _dir) = serve_config(&config).await;
    wait_until(
        Duration::from_secs(10),
        || {
            let body = common::get(addr, "/metrics").body;
            body.contains("runbook_check_up{check=\"gz_tcp\",kind=\"tcp\"} 1")
        },
        || "the first successful run of gz_tcp".to_string(),
    )
    .await;

    let (plain_headers, plain) = tokio::task::spawn_blocking(move || curl(addr, &[]))
        .await
        .unwrap();
    assert_eq!(header(&plain_headers, "content-encoding"), None);
    assert!(
        header(&plain_headers, "content-length").is_some(),
        "a small body comes whole, with its length"
    );
    let plain = String::from_utf8(plain).expect("an uncompressed body");
    assert!(plain.contains("runbook_check_up{check=\"gz_tcp\",kind=\"tcp\"} 1"));

    // --compressed sends Accept-Encoding and decodes what comes back.
    let (gz_headers, decoded) = tokio::task::spawn_blocking(move || curl(addr, &["--compressed"]))
        .await
        .unwrap();
    assert_eq!(header(&gz_headers, "content-encoding"), Some("gzip"));
    assert!(header(&gz_headers, "vary")
        .unwrap_or("")
        .contains("accept-encoding"));
    let decoded = String::from_utf8(decoded).expect("curl decoded the gzip body");
    assert!(decoded.contains("runbook_check_up{check=\"gz_tcp\",kind=\"tcp\"} 1"));
    assert!(
        decoded.contains("runbook_exporter_build_info"),
        "the exporter's own metrics too"
    );

    // The raw body really is compressed, and smaller.
    let (_, raw) =
        tokio::task::spawn_blocking(move || curl(addr, &["-H", "Accept-Encoding: gzip"]))
            .await
            .unwrap();
    assert_eq!(&raw[..2], &[0x1f, 0x8b], "gzip magic bytes");
    assert!(
        raw.len() < decoded.len() / 2,
        "{} vs {}",
        raw.len(),
        decoded.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_plain_body_is_sent_in_chunks_and_whole() {
    let target = tcp_target();
    let mut config = String::from("defaults: {interval: 1h, timeout: 5s}\nchecks:\n");
    for i in 0..1500 {
        config.push_str(&format!(
            "  - {{name: big_{i}, kind: tcp, address: \"{target}\"}}\n"
        ));
    }
    let (_app, addr, _dir) = serve_config(&config).await;

    let (headers, body) = tokio::task::spawn_blocking(move || curl(addr, &[]))
        .await
        .unwrap();
    let body = String::from_utf8(body).expect("an uncompressed body");
    assert!(body.len() > 10 * 64 * 1024, "{} bytes", body.len());
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&headers, "content-length"), None);
    for i in 0..1500 {
        let line = format!("runbook_check_runs_total{{check=\"big_{i}\",kind=\"tcp\"}} ");
        assert_eq!(body.matches(&line).count(), 1, "{line}");
    }
    let types = body
        .lines()
        .filter(|l| l.starts_with("# TYPE runbook_check_runs_total"))
        .count();
    assert_eq!(types, 1, "each family's metadata once");
    let own = body
        .find("# TYPE runbook_exporter_build_info")
        .expect("the exporter's own metrics");
    let last_check = body.rfind("{check=\"big_").expect("check series");
    assert!(
        last_check < own,
        "the exporter's own metrics come after every check's series"
    );
}
