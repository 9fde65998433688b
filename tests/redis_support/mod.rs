//! Shared by the redis test binaries: the shared servers' addresses and
//! password, servers of a test's own ([`OwnRedis`]), and runs and samples.
//!
//! A test that asserts exact server-wide numbers (hits, misses, connections,
//! blocked clients, keys), pauses or restarts a server, or needs mutual TLS
//! starts its own `redis-server` ([`OwnRedis`], the same Debian binary), so
//! no other test can move its numbers and no other test sees its faults.
//! The shared servers serve only tests whose assertions hold whatever else
//! runs against them.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use runbook_exporter::checks::{Check, Failure, Sample};

use crate::common::{self, build, ctx};

pub fn env(name: &str) -> String {
    common::service_env(name, "redis")
}

pub fn primary_url() -> String {
    env("RUNBOOK_TEST_REDIS_URL")
}

pub fn replica_url() -> String {
    env("RUNBOOK_TEST_REDIS_REPLICA_URL")
}

pub fn password() -> String {
    env("RUNBOOK_TEST_REDIS_PASSWORD")
}

/// A `redis-server` of one test's own on a free loopback port, requiring
/// [`password()`]; killed when dropped.
pub struct OwnRedis {
    child: Child,
    pub addr: SocketAddr,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

/// How long a server may take to listen.
pub const REDIS_START: Duration = Duration::from_secs(30);

impl OwnRedis {
    /// A plain server.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with `extra` arguments; with `tls` the port given is the
    /// TLS port and the plain one is off. A free port may be taken by
    /// another process before the server binds it; then another is tried.
    pub fn start_with(extra: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut last = String::new();
        for _ in 0..5 {
            let addr = common::closed_port();
            let mut args: Vec<String> = extra.to_vec();
            args.push("--port".into());
            args.push(addr.port().to_string());
            if extra.iter().any(|a| a == "--tls-cert-file") {
                // The port given is the TLS one; no plain port.
                let n = args.len();
                args[n - 2] = "--tls-port".into();
                args.extend(["--port".into(), "0".into()]);
            }
            match Self::spawn(&dir, addr, &args) {
                Ok(child) => {
                    return Self {
                        child,
                        addr,
                        args,
                        dir,
                    }
                }
                Err(log) => last = log,
            }
        }
        panic!("redis-server would not start on 5 free ports:\n{last}");
    }

    /// Start the server and wait until it listens; `Err(log)` if it exits.
    pub fn spawn(
        dir: &tempfile::TempDir,
        addr: SocketAddr,
        args: &[String],
    ) -> Result<Child, String> {
        let log = dir.path().join("redis.log");
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--requirepass", &password()])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/services.sh up redis installs it)");
        let deadline = Instant::now() + REDIS_START;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("redis-server exited ({status}):\n{log}"));
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("redis-server did not listen on {addr} within {REDIS_START:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kill the server (as a crash would) and wait until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port, retrying while the port is still
    /// briefly taken (the old socket closing), up to [`REDIS_START`].
    pub fn restart(&mut self) {
        let deadline = Instant::now() + REDIS_START;
        loop {
            match Self::spawn(&self.dir, self.addr, &self.args) {
                Ok(child) => {
                    self.child = child;
                    return;
                }
                Err(log) => assert!(
                    Instant::now() < deadline,
                    "redis-server would not start again on {} within {REDIS_START:?}:\n{log}",
                    self.addr
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A check on `url` logging in with the test password.
pub fn check_on(url: &str) -> Box<dyn Check> {
    build(&format!(
        "kind: redis\nurl: {url}\npassword: {}",
        password()
    ))
}

/// Run with a generous outer limit, so a hanging check fails the test
/// rather than the test run.
pub async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx()))
        .await
        .expect("run finishes")
}

/// The value of the sample `name` (as in `MetricDesc::name`) whose labels
/// include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.desc.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

pub fn must(samples: &[Sample], name: &str) -> f64 {
    value(samples, name, &[]).unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
}

/// A plain client connection for the test to act as an application.
pub async fn client(url: &str) -> MultiplexedConnection {
    let url = url.replacen("redis://", &format!("redis://:{}@", password()), 1);
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            // Blocking commands wait longer than the default 500 ms.
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .expect("test client connects")
}

pub async fn cmd<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(conn).await.expect("test command succeeds")
}
