//! The `s3` kind against the real MinIO server started by
//! `scripts/services.sh up s3`, which verifies SigV4 signatures: list, head
//! and round trip, and the classification of a wrong secret, a missing
//! bucket and a missing key, with the secret never in any output.

mod common;

use common::build;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
