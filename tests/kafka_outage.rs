//! The `kafka` kind while the real broker of `scripts/services.sh up kafka`
//! is stopped and started again: the check fails with a connection reason,
//! then recovers on the same check instance. The broker is started again
//! even if the test panics; nextest runs no other service test meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::{service_env, ServicesDown};
use runbook_exporter::checks::{Check, CheckSpec, Failure, Reason, RunContext};

/// `scripts/services.sh up kafka` may take this long to start the broker.
const RESTORE_LIMIT: Duration = Duration::from_secs(300);

/// One run, bounded: a run that never ends is a failure, not a hang.
async fn run(check: &dyn Check, ctx: &RunContext) -> Result<(), Failure> {
    tokio::time::timeout(Duration::from_secs(30), check.run(ctx))
        .await
        .expect("a kafka run ended within 30 s")
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_down_fails_with_a_connection_reason_and_recovers() {
    let spec: CheckSpec = serde_saphyr::from_str(&format!(
        "kind: kafka\nbrokers: [{}]",
        service_env("RUNBOOK_TEST_KAFKA_BROKERS", "kafka")
    ))
    .unwrap();
    let check = spec.build().unwrap();
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    run(check.as_ref(), &ctx)
        .await
        .expect("healthy before the outage");

    {
        let _down = ServicesDown::stop(&["kafka"], RESTORE_LIMIT);
        let failure = run(check.as_ref(), &ctx)
            .await
            .expect_err("fails while the broker is down");
        assert!(
            matches!(failure.reason, Reason::ConnectionRefused | Reason::Network),
            "reason {:?}: {}",
            failure.reason,
            failure.message
        );
    }

    // The next run dials again: a connection that failed is never reused.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match run(check.as_ref(), &ctx).await {
            Ok(()) => break,
            Err(f) => assert!(Instant::now() < deadline, "not recovered: {}", f.message),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
