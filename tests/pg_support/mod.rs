//! Shared by the postgres test binaries: a role and a database of the
//! test's own, sessions to open as them, samples to read, and bounded
//! polls. A check logged in as a role without pg_monitor sees the state,
//! wait event and query times of its own role's sessions only, so the
//! cluster-wide figures it reports (long queries, lock waits, transaction
//! ages, wait events) count the test's sessions and nobody else's, however
//! many other tests share the server.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::future::Future;
use std::time::{Duration, Instant};

use runbook_exporter::checks::{Check, Failure, RunContext, Sample};
use tokio_postgres::{Client, NoTls};

/// A variable written by `scripts/services.sh up postgres`.
pub fn env(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} not set: run scripts/services.sh up postgres"))
}

/// The superuser on the primary.
pub fn superuser_dsn() -> String {
    env("RUNBOOK_TEST_PG_SUPERUSER_DSN")
}

/// Connect to `dsn` without TLS, driving the connection in a task.
pub async fn connect(dsn: &str) -> Client {
    let (client, conn) =
        tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(dsn, NoTls))
            .await
            .unwrap_or_else(|_| panic!("connecting to the test server took over 10 s"))
            .unwrap_or_else(|e| panic!("connecting to the test server failed: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A role and a database named after the test, created afresh (any left
/// from an earlier run are dropped first) on the primary.
pub struct Scratch {
    pub name: String,
    pub password: String,
}

impl Scratch {
    /// Create role and database `runbook_t_<name>`; `setup` is run as the
    /// superuser after, e.g. `ALTER ROLE {role} SET ...` (`{role}` is
    /// replaced by the role's name).
    pub async fn new(name: &str, setup: &str) -> Self {
        let name = format!("runbook_t_{name}");
        let password = format!("{name}-pw");
        let su = connect(&superuser_dsn()).await;
        // One statement each: DROP and CREATE DATABASE refuse to run in
        // the implicit transaction of a multi-statement batch.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {name}"),
            format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"),
            format!("CREATE DATABASE {name} OWNER {name}"),
        ] {
            su.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
        if !setup.is_empty() {
            su.batch_execute(&setup.replace("{role}", &name))
                .await
                .unwrap_or_else(|e| panic!("setting up {name}: {e:?}"));
        }
        Self { name, password }
    }

    /// The DSN of the role on its database on the primary, with `extra`
    /// query parameters (`&key=value...`).
    pub fn dsn(&self) -> String {
        self.dsn_on(&primary_addr())
    }

    /// The same on another server or pooler (`host:port`).
    pub fn dsn_on(&self, addr: &str) -> String {
        format!(
            "postgres://{}:{}@{addr}/{}?sslmode=disable",
            self.name, self.password, self.name
        )
    }

    /// A session as the role, with `application_name`.
    pub async fn session(&self, application_name: &str) -> Client {
        connect(&format!(
            "{}&application_name={application_name}",
            self.dsn()
        ))
        .await
    }
}

/// `host:port` of the primary.
pub fn primary_addr() -> String {
    let url = url::Url::parse(&superuser_dsn()).expect("the superuser DSN is a URL");
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
}

/// A check built from `kind: postgres`, `dsn` and `extra` YAML lines.
pub fn check(dsn: &str, extra: &str) -> Box<dyn Check> {
    let spec: runbook_exporter::checks::CheckSpec =
        serde_saphyr::from_str(&format!("kind: postgres\ndsn: '{dsn}'\n{extra}"))
            .expect("spec parses");
    assert_eq!(spec.validate(), Vec::<(String, String)>::new());
    spec.build().expect("check builds")
}

/// One run with a 5 s timeout, bounded at 30 s.
pub async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    run_with(check, Duration::from_secs(5)).await
}

/// One run with `timeout`, bounded at 30 s more.
pub async fn run_with(check: &dyn Check, timeout: Duration) -> Result<Vec<Sample>, Failure> {
    tokio::time::timeout(
        timeout + Duration::from_secs(30),
        check.run(&RunContext { timeout }),
    )
    .await
    .expect("the run finishes")
}

pub async fn run_ok(check: &dyn Check) -> Vec<Sample> {
    match run(check).await {
        Ok(samples) => samples,
        Err(f) => panic!("check failed: {} {}", f.reason, f.message),
    }
}

/// Values of the samples of metric `name` whose labels include `labels`.
pub fn values(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.desc.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .collect()
}

/// The one sample of `name` with `labels`.
pub fn one(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = values(samples, name, labels);
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}

/// Run the check until `done` holds for its samples, or panic after 30 s
/// naming `what`.
pub async fn run_until(
    check: &dyn Check,
    what: &str,
    done: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let samples = run_ok(check).await;
        if done(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after 30 s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Poll `condition` every 100 ms until it holds, or panic after `secs`
/// naming `what`.
pub async fn wait_for<F, Fut>(what: &str, secs: u64, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sessions on the primary with `application_name`, as the superuser sees them.
pub async fn sessions_named(su: &Client, application_name: &str) -> i64 {
    su.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&application_name],
    )
    .await
    .expect("pg_stat_activity is readable")
    .get(0)
}
