//! The `s3` kind against the real MinIO server started by
//! `scripts/services.sh up s3`, which verifies SigV4 signatures: list, head
//! and round trip, and the classification of a wrong secret, a missing
//! bucket and a missing key, with the secret never in any output.

mod common;

use common::build;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use runbook_exporter::checks::{redact, Check, CheckSpec, Failure, Reason, RunContext, Sample};

fn env(var: &str) -> String {
    common::service_env(var, "s3")
}

struct Server {
    endpoint: String,
    access_key: String,
    secret_key: String,
}

fn server() -> Server {
    Server {
        endpoint: env("RUNBOOK_TEST_S3_ENDPOINT"),
        access_key: env("RUNBOOK_TEST_S3_ACCESS_KEY"),
        secret_key: env("RUNBOOK_TEST_S3_SECRET_KEY"),
    }
}

/// A fresh bucket holding `data.csv`; its name.
async fn bucket_with_object(s: &Server) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let bucket = format!("runbook-test-{}-{nanos}", std::process::id());
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&s.endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            &s.access_key,
            &s.secret_key,
            None,
            None,
            "test",
        ))
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    client
        .put_object()
        .bucket(&bucket)
        .key("data.csv")
        .body(ByteStream::from_static(b"a,b\n1,2\n"))
        .send()
        .await
        .unwrap();
    bucket
}

fn yaml(s: &Server, bucket: &str, secret: &str, extra: &str) -> String {
    format!(
        "kind: s3\nbucket: {bucket}\nendpoint: {}\npath_style: true\naccess_key_id: {}\nsecret_access_key: {secret}\n{extra}",
        s.endpoint, s.access_key
    )
}

async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    let ctx = RunContext {
        timeout: Duration::from_secs(10),
    };
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx))
        .await
        .expect("run finishes")
}

fn operations(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| s.desc.name == "s3_operation_duration")
        .map(|s| s.labels[0].1.clone())
        .collect()
}

#[tokio::test]
async fn list_head_and_round_trip_succeed() {
    let s = server();
    let bucket = bucket_with_object(&s).await;
    let check = build(&yaml(
        &s,
        &bucket,
        &s.secret_key,
        "head_key: data.csv\nround_trip: true",
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(
        operations(&samples),
        ["list", "head", "put", "get", "delete"]
    );
    let size = samples
        .iter()
        .find(|s| s.desc.name == "s3_object_size")
        .unwrap();
    assert_eq!(size.value, 8.0);
    let modified = samples
        .iter()
        .find(|s| s.desc.name == "s3_object_last_modified_timestamp")
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - modified.value).abs() < 3600.0);
    // The round trip cleaned up after itself; a second run works the same.
    let again = run(check.as_ref()).await.expect("second run passes");
    assert_eq!(operations(&again).len(), 5);
}

#[tokio::test]
async fn a_wrong_secret_fails_with_auth_and_never_shows_the_secret() {
    let s = server();
    let bucket = bucket_with_object(&s).await;
    let wrong = "wrong-secret-d41d8cd98f00b204";
    let check = build(&yaml(&s, &bucket, wrong, ""));
    let failure = run(check.as_ref()).await.expect_err("check fails");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(
        failure.message.contains("SignatureDoesNotMatch"),
        "{}",
        failure.message
    );
    assert!(!failure.message.contains(wrong));
    // The scheduler scrubs messages with the check's secrets.
    assert_eq!(check.secrets(), [wrong.to_string()]);
    assert!(!redact(&format!("{failure:?}"), &check.secrets()).contains(wrong));
    // Debug of the config never shows it.
    let spec: CheckSpec = serde_saphyr::from_str(&yaml(&s, &bucket, wrong, "")).unwrap();
    assert!(!format!("{spec:?}").contains(wrong));
}

#[tokio::test]
async fn a_missing_bucket_and_a_missing_key_are_classified() {
    let s = server();
    let bucket = bucket_with_object(&s).await;

    let check = build(&yaml(&s, &format!("{bucket}-absent"), &s.secret_key, ""));
    let failure = run(check.as_ref()).await.expect_err("missing bucket fails");
    assert_eq!(failure.reason, Reason::UnexpectedResponse);
    assert!(
        failure.message.starts_with("list s3://") && failure.message.contains("NoSuchBucket"),
        "{}",
        failure.message
    );

    let check = build(&yaml(&s, &bucket, &s.secret_key, "head_key: absent.csv"));
    let failure = run(check.as_ref()).await.expect_err("missing key fails");
    assert_eq!(failure.reason, Reason::UnexpectedResponse);
    assert!(
        failure.message.contains("NoSuchKey") || failure.message.contains("NotFound"),
        "{}",
        failure.message
    );
    // The list before the head succeeded and stays reported.
    assert_eq!(operations(&failure.samples), ["list"]);
}

#[tokio::test]
async fn nothing_listening_fails_with_connection_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let check = build(&format!(
        "kind: s3\nbucket: b\nendpoint: http://127.0.0.1:{port}\npath_style: true\naccess_key_id: k\nsecret_access_key: s"
    ));
    let failure = run(check.as_ref()).await.expect_err("check fails");
    assert_eq!(
        failure.reason,
        Reason::ConnectionRefused,
        "{}",
        failure.message
    );
}

// --- A second MinIO, with a region of its own ---------------------------

/// A MinIO this test starts with `MINIO_SITE_REGION`, on its own port,
/// killed when dropped.
struct RegionalMinio {
    child: std::process::Child,
    endpoint: String,
    _data: tempfile::TempDir,
}

impl Drop for RegionalMinio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MINIO_USER: &str = "runbook-region-test";
const MINIO_PASSWORD: &str = "runbook-region-secret";

fn minio_binary() -> std::path::PathBuf {
    let bin = std::path::PathBuf::from(std::env::var("HOME").expect("HOME is set"))
        .join(".cache/runbook-exporter/bin/minio");
    // It may still be building (scripts/services.sh up s3).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !bin.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} not there after 120 s: run scripts/services.sh up s3",
            bin.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    bin
}

async fn regional_minio(region: &str) -> RegionalMinio {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(minio_binary())
        .args(["server", "--quiet", "--address"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(data.path())
        .env("MINIO_ROOT_USER", MINIO_USER)
        .env("MINIO_ROOT_PASSWORD", MINIO_PASSWORD)
        .env("MINIO_SITE_REGION", region)
        .env("MINIO_BROWSER", "off")
        .env("MINIO_UPDATE", "off")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("minio starts");
    let minio = RegionalMinio {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _data: data,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(
                b"GET /minio/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head)?;
            Ok(head.ends_with(b"200"))
        });
        if matches!(ready, Ok(true)) {
            return minio;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "MinIO on 127.0.0.1:{port} not ready after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn client(endpoint: &str, region: &str, user: &str, password: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(user, password, None, None, "test"))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn the_configured_region_signs_for_a_regional_store() {
    let minio = regional_minio("eu-test-1").await;
    let bucket = unique("regional");
    client(&minio.endpoint, "eu-test-1", MINIO_USER, MINIO_PASSWORD)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("the bucket is created in eu-test-1");
    let base = format!(
        "kind: s3\nbucket: {bucket}\nendpoint: {}\npath_style: true\naccess_key_id: {MINIO_USER}\nsecret_access_key: {MINIO_PASSWORD}\n",
        minio.endpoint
    );

    let check = build(&format!("{base}region: eu-test-1\nround_trip: true"));
    let samples = run(check.as_ref())
        .await
        .expect("signed for eu-test-1, it passes");
    assert_eq!(operations(&samples), ["list", "put", "get", "delete"]);

    // Signed for the default us-east-1: the message says what to set.
    let check = build(&base);
    let failure = run(check.as_ref()).await.expect_err("the region is wrong");
    println!("failure: {}: {}", failure.reason, failure.message);
    assert!(
        failure
            .message
            .contains("the check signs for region us-east-1")
            && failure.message.contains("eu-test-1")
            && failure.message.contains("set `region`"),
        "{}: {}",
        failure.reason,
        failure.message
    );
}

// --- Faults between the check and MinIO ---------------------------------

/// What the forwarder does with a request that reads a round-trip object.
#[derive(Clone, Copy, PartialEq)]
enum OnGet {
    Forward,
    /// Close the connection: the get fails.
    Reset,
    /// Say nothing, hold the connection: the run runs into its timeout.
    Hang,
}

/// A TCP forwarder to MinIO that records what the check sent and can break
/// the get of round-trip objects (`GET /{bucket}/{prefix}`).
struct Forwarder {
    endpoint: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

async fn forwarder(upstream: &str, get_needle: String, on_get: OnGet) -> Forwarder {
    let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (log, needle) = (log.clone(), get_needle.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let back = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match client_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &buf[..n];
                    log.lock().unwrap().extend_from_slice(chunk);
                    let is_get = chunk.windows(needle.len()).any(|w| w == needle.as_bytes());
                    match (is_get, on_get) {
                        (true, OnGet::Reset) => break,
                        (true, OnGet::Hang) => std::future::pending::<()>().await,
                        _ => {
                            if server_write.write_all(chunk).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                back.abort();
            });
        }
    });
    Forwarder {
        endpoint: format!("http://{addr}"),
        sent,
    }
}

/// The keys under `prefix` in `bucket`, read from MinIO directly.
async fn keys(s: &Server, bucket: &str, prefix: &str) -> Vec<String> {
    client(&s.endpoint, "us-east-1", &s.access_key, &s.secret_key)
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list the probe prefix")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

fn round_trip_yaml(s: &Server, endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        "kind: s3\nbucket: {bucket}\nendpoint: {endpoint}\npath_style: true\naccess_key_id: {}\nsecret_access_key: {}\nround_trip: true\nround_trip_prefix: probe/\n{extra}",
        s.access_key, s.secret_key
    )
}

#[tokio::test]
async fn a_round_trip_whose_get_fails_leaves_no_object() {
    let s = server();
    let bucket = bucket_with_object(&s).await;
    let fwd = forwarder(&s.endpoint, format!("GET /{bucket}/probe/"), OnGet::Reset).await;
    let check = build(&round_trip_yaml(&s, &fwd.endpoint, &bucket, ""));

    let failure = run(check.as_ref()).await.expect_err("the get is cut off");
    assert!(
        failure.message.starts_with("get s3://"),
        "{}: {}",
        failure.reason,
        failure.message
    );
    assert_eq!(operations(&failure.samples), ["list", "put"]);
    assert_eq!(keys(&s, &bucket, "probe/").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_round_trip_cut_by_its_timeout_leaves_no_object() {
    let s = server();
    let bucket = bucket_with_object(&s).await;
    let fwd = forwarder(&s.endpoint, format!("GET /{bucket}/probe/"), OnGet::Hang).await;
    let check: Arc<dyn Check> = Arc::from(build(&round_trip_yaml(&s, &fwd.endpoint, &bucket, "")));

    // Through the scheduler's run path: the run is dropped at its timeout.
    let record = runbook_exporter::scheduler::run_once(check, Duration::from_secs(2)).await;
    let failure = record.failure().expect("the hung get times out");
    assert_eq!(failure.reason, Reason::Timeout, "{}", failure.message);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = keys(&s, &bucket, "probe/").await;
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled run's object is still there after 20 s: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn checksum_headers(sent: &[u8]) -> bool {
    let text = String::from_utf8_lossy(sent).to_ascii_lowercase();
    text.contains("x-amz-checksum-") || text.contains("x-amz-sdk-checksum-algorithm")
}

#[tokio::test]
async fn checksum_headers_go_to_a_custom_endpoint_only_when_asked() {
    let s = server();
    let bucket = bucket_with_object(&s).await;

    let plain = forwarder(&s.endpoint, "never-matches".into(), OnGet::Forward).await;
    let check = build(&round_trip_yaml(&s, &plain.endpoint, &bucket, ""));
    run(check.as_ref()).await.expect("the round trip passes");
    let sent = plain.sent.lock().unwrap().clone();
    assert!(
        String::from_utf8_lossy(&sent).contains("PUT /"),
        "no put was seen"
    );
    assert!(!checksum_headers(&sent), "checksum headers sent by default");

    let asked = forwarder(&s.endpoint, "never-matches".into(), OnGet::Forward).await;
    let check = build(&round_trip_yaml(
        &s,
        &asked.endpoint,
        &bucket,
        "request_checksum_calculation: when_supported\nresponse_checksum_validation: when_supported",
    ));
    run(check.as_ref()).await.expect("MinIO supports them");
    assert!(
        checksum_headers(&asked.sent.lock().unwrap()),
        "no checksum header sent"
    );
}

// --- No metadata service unless asked (#19 claim 3) ---------------------

/// Run `runbook-exporter check` on an s3 check without keys, with the
/// SDK's metadata endpoints (IMDS and the ECS container endpoint) pointed
/// at a loopback listener and no other credential source; the number of
/// connections the listener saw, and the check's JSON result.
fn metadata_connections(s: &Server, metadata_credentials: bool) -> (usize, serde_json::Value) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (peers, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Accept and close: a metadata service that gives nothing.
        while let Ok((conn, peer)) = listener.accept() {
            drop(conn);
            if peers.send(peer).is_err() {
                return;
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "checks:\n  - name: bucket\n    kind: s3\n    bucket: b\n    endpoint: {}\n    path_style: true\n    metadata_credentials: {metadata_credentials}\n    timeout: 10s\n",
            s.endpoint
        ),
    )
    .unwrap();
    // Bounded: coreutils' timeout ends the run (exit 124) after a minute.
    let mut command = std::process::Command::new("timeout");
    command.args([
        "--kill-after=5s",
        "60s",
        env!("CARGO_BIN_EXE_runbook-exporter"),
    ]);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        command.env_remove(var);
    }
    let output = command
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-credentials"),
        )
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{addr}"),
        )
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{addr}/credentials"),
        )
        .args(["check", "-o", "json", "--config"])
        .arg(&config)
        .output()
        .expect("the binary runs");
    let results: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    // A last connection of our own: accepted in order, so once it is seen
    // every connection the check made before it has been counted.
    let sentinel = std::net::TcpStream::connect(addr).unwrap();
    let mark = sentinel.local_addr().unwrap();
    let mut seen = 0;
    loop {
        let peer = accepted
            .recv_timeout(Duration::from_secs(10))
            .expect("the listener accepts the test's own connection within 10 s");
        if peer == mark {
            break;
        }
        seen += 1;
    }
    (seen, results[0].clone())
}

#[test]
fn no_metadata_service_is_contacted_unless_asked() {
    let s = server();
    let (seen, result) = metadata_connections(&s, false);
    assert_eq!(result["reason"], "auth", "{result}");
    assert_eq!(seen, 0, "the metadata listener was contacted: {result}");

    // The control: asked, the SDK does go to the listener, so the
    // endpoint variables really point it there.
    let (seen, result) = metadata_connections(&s, true);
    assert_eq!(result["status"], "fail", "{result}");
    assert!(
        seen > 0,
        "with metadata_credentials the listener saw nothing: {result}"
    );
}
