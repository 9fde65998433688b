//! The `postgres` kind's `host:` and `port:` replace the DSN's hosts and
//! ports (never add to them), against the real primary and standby of
//! `scripts/services.sh up postgres`.

mod common;

use std::str::FromStr;
use std::time::Duration;

use common::{build, closed_port, ctx};
use runbook_exporter::checks::{Check, Failure, Reason, Sample};

fn env(var: &str) -> String {
    common::service_env(var, "postgres")
}

fn port_of(dsn: &str) -> u16 {
    tokio_postgres::Config::from_str(dsn).unwrap().get_ports()[0]
}

/// `dsn` with its port replaced by `port`.
fn with_port(dsn: &str, port: u16) -> String {
    let from = format!(":{}/", port_of(dsn));
    assert!(dsn.contains(&from), "the DSN names its port");
    dsn.replacen(&from, &format!(":{port}/"), 1)
}

async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx()))
        .await
        .expect("run finishes")
}

fn in_recovery(samples: &[Sample]) -> f64 {
    samples
        .iter()
        .find(|s| s.desc.name == "postgres_in_recovery")
        .expect("postgres_in_recovery")
        .value
}

fn check(dsn: &str, extra: &str) -> Box<dyn Check> {
    build(&format!(
        "kind: postgres\ndsn: '{dsn}'\nstatements_top: 0\n{extra}"
    ))
}

#[tokio::test]
async fn host_and_port_replace_a_dsn_naming_a_closed_port() {
    let primary = env("RUNBOOK_TEST_PG_PRIMARY_DSN");
    let dsn = with_port(&primary, closed_port().port());
    let check = check(
        &dsn,
        &format!("host: 127.0.0.1\nport: {}\n", port_of(&primary)),
    );
    match run(check.as_ref()).await {
        Ok(samples) => assert_eq!(in_recovery(&samples), 0.0, "the primary answered"),
        Err(f) => panic!("check failed: {} {}", f.reason, f.message),
    }
}

#[tokio::test]
async fn host_and_port_win_over_a_dsn_naming_another_live_server() {
    // The DSN names the standby; host/port name the primary. Were they
    // added to the DSN's list, the standby (tried first) would answer.
    let standby = env("RUNBOOK_TEST_PG_STANDBY_DSN");
    let primary_port = port_of(&env("RUNBOOK_TEST_PG_PRIMARY_DSN"));
    let check = check(
        &standby,
        &format!("host: 127.0.0.1\nport: {primary_port}\n"),
    );
    match run(check.as_ref()).await {
        Ok(samples) => assert_eq!(in_recovery(&samples), 0.0, "the primary answered"),
        Err(f) => panic!("check failed: {} {}", f.reason, f.message),
    }
}

#[tokio::test]
async fn a_closed_port_is_not_rescued_by_the_dsns_live_server() {
    let primary = env("RUNBOOK_TEST_PG_PRIMARY_DSN");
    let closed = closed_port().port();
    for extra in [
        format!("port: {closed}\n"),
        format!("host: 127.0.0.1\nport: {closed}\n"),
    ] {
        let check = check(&primary, &extra);
        match run(check.as_ref()).await {
            Ok(_) => panic!("up through the DSN's server with {extra:?}"),
            Err(f) => {
                assert_eq!(
                    f.reason,
                    Reason::ConnectionRefused,
                    "{extra:?}: {}",
                    f.message
                );
                assert!(f.message.contains(&closed.to_string()), "{}", f.message);
            }
        }
    }
}
