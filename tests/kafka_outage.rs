//! The `kafka` kind while the real broker of `scripts/services.sh up kafka`
//! is stopped and started again: the check fails with a connection reason,
//! then recovers on the same check instance. A file of its own, so no other
//! test runs while the broker is down.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runbook_exporter::checks::{CheckSpec, Reason, RunContext};

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} not set: run scripts/services.sh up kafka"))
}

fn services(cmd: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
    let status = Command::new(script)
        .args([cmd, "kafka"])
        .status()
        .expect("run scripts/services.sh");
    assert!(status.success(), "scripts/services.sh {cmd} kafka failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_down_fails_with_a_connection_reason_and_recovers() {
    let spec: CheckSpec = serde_saphyr::from_str(&format!(
        "kind: kafka\nbrokers: [{}]",
        env("RUNBOOK_TEST_KAFKA_BROKERS")
    ))
    .unwrap();
    let check = spec.build().unwrap();
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    check.run(&ctx).await.expect("healthy before the outage");

    services("down");
    let failure = check
        .run(&ctx)
        .await
        .expect_err("fails while the broker is down");
    let result = std::panic::catch_unwind(|| {
        assert!(
            matches!(failure.reason, Reason::ConnectionRefused | Reason::Network),
            "reason {:?}: {}",
            failure.reason,
            failure.message
        );
    });
    services("up");
    result.unwrap();

    // librdkafka reconnects by itself (backoff at most 5 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match check.run(&ctx).await {
            Ok(_) => break,
            Err(f) => assert!(Instant::now() < deadline, "not recovered: {}", f.message),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
