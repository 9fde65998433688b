//! The `redis` kind against real Redis servers: the primary, its replica
//! and its TLS port started by `scripts/services.sh up redis`, which every
//! test binary (and every worktree) shares, and servers of a test's own.
//!
//! A test that asserts exact server-wide numbers (hits, misses, connections,
//! blocked clients, keys), pauses or restarts a server, or needs mutual TLS
//! starts its own `redis-server` ([`OwnRedis`], the same Debian binary), so
//! no other test can move its numbers and no other test sees its faults.
//! The shared servers serve only tests whose assertions hold whatever else
//! runs against them.

mod common;

use common::{build, ctx};

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use runbook_exporter::checks::{Check, Failure, Reason, Sample};

fn env(name: &str) -> String {
    common::service_env(name, "redis")
}

fn primary_url() -> String {
    env("RUNBOOK_TEST_REDIS_URL")
}

fn replica_url() -> String {
    env("RUNBOOK_TEST_REDIS_REPLICA_URL")
}

fn password() -> String {
    env("RUNBOOK_TEST_REDIS_PASSWORD")
}

/// A `redis-server` of one test's own on a free loopback port, requiring
/// [`password()`]; killed when dropped.
struct OwnRedis {
    child: Child,
    addr: SocketAddr,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

/// How long a server may take to listen.
const REDIS_START: Duration = Duration::from_secs(30);

impl OwnRedis {
    /// A plain server.
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with `extra` arguments; with `tls` the port given is the
    /// TLS port and the plain one is off. A free port may be taken by
    /// another process before the server binds it; then another is tried.
    fn start_with(extra: &[String]) -> Self {
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
    fn spawn(dir: &tempfile::TempDir, addr: SocketAddr, args: &[String]) -> Result<Child, String> {
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

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kill the server (as a crash would) and wait until it is gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port, retrying while the port is still
    /// briefly taken (the old socket closing), up to [`REDIS_START`].
    fn restart(&mut self) {
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
fn check_on(url: &str) -> Box<dyn Check> {
    build(&format!(
        "kind: redis\nurl: {url}\npassword: {}",
        password()
    ))
}

/// Run with a generous outer limit, so a hanging check fails the test
/// rather than the test run.
async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx()))
        .await
        .expect("run finishes")
}

/// The value of the sample `name` (as in `MetricDesc::name`) whose labels
/// include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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

fn must(samples: &[Sample], name: &str) -> f64 {
    value(samples, name, &[]).unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
}

/// A plain client connection for the test to act as an application.
async fn client(url: &str) -> MultiplexedConnection {
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

async fn cmd<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(conn).await.expect("test command succeeds")
}

#[tokio::test]
async fn hits_and_misses_move_exactly_with_the_clients_gets() {
    let server = OwnRedis::start();
    let check = check_on(&server.url());
    let mut app = client(&server.url()).await;
    let _: () = cmd(&mut app, &["SET", "runbook:test:hit", "1"]).await;

    let before = run(check.as_ref()).await.expect("check passes");
    for _ in 0..3 {
        let _: Option<String> = cmd(&mut app, &["GET", "runbook:test:hit"]).await;
    }
    for _ in 0..2 {
        let _: Option<String> = cmd(&mut app, &["GET", "runbook:test:absent"]).await;
    }
    let after = run(check.as_ref()).await.expect("check passes");

    let delta = |name| must(&after, name) - must(&before, name);
    assert_eq!(delta("redis_keyspace_hits"), 3.0);
    assert_eq!(delta("redis_keyspace_misses"), 2.0);
    // Both are counters, so the guides' rate(hits)/(rate(hits)+rate(misses)) works.
    for s in &after {
        if s.desc.name.starts_with("redis_keyspace_") {
            assert_eq!(s.desc.kind, runbook_exporter::checks::MetricKind::Counter);
        }
    }
}

#[tokio::test]
async fn the_connection_is_reused_across_runs() {
    let server = OwnRedis::start();
    let check = check_on(&server.url());
    let first = run(check.as_ref()).await.expect("check passes");
    let mut last = first.clone();
    for _ in 0..5 {
        last = run(check.as_ref()).await.expect("check passes");
    }
    // The first run opened the connection (and counted itself); the next
    // five opened none.
    assert_eq!(
        must(&last, "redis_connections_received"),
        must(&first, "redis_connections_received")
    );
}

#[tokio::test]
async fn ping_memory_clients_keys_and_role_are_reported() {
    let server = OwnRedis::start();
    let mut app = client(&server.url()).await;
    let _: () = cmd(&mut app, &["SET", "runbook:test:key", "1"]).await;
    let check = check_on(&server.url());
    let samples = run(check.as_ref()).await.expect("check passes");

    let ping = must(&samples, "redis_ping_duration");
    assert!(ping > 0.0 && ping < 5.0, "{ping}");
    assert!(must(&samples, "redis_memory_used") > 0.0);
    assert!(must(&samples, "redis_memory_rss") > 0.0);
    assert!(must(&samples, "redis_memory_fragmentation_ratio") > 0.0);
    // The server runs without maxmemory: no limit, no series.
    assert_eq!(value(&samples, "redis_memory_max", &[]), None);
    // This test's client and the check's own connection; nobody else
    // uses this server.
    assert_eq!(must(&samples, "redis_connected_clients"), 2.0);
    assert_eq!(must(&samples, "redis_blocked_clients"), 0.0);
    assert_eq!(must(&samples, "redis_max_clients"), 10000.0);
    assert_eq!(value(&samples, "redis_db_keys", &[("db", "0")]), Some(1.0));
    assert_eq!(
        value(&samples, "redis_role", &[("role", "master")]),
        Some(1.0)
    );
    let started = must(&samples, "redis_start_timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Started by this test, moments ago.
    assert!(
        started <= now + 1.0 && started > now - 60.0,
        "{started} vs {now}"
    );
    for s in &samples {
        assert!(s.value.is_finite(), "{s:?}");
    }
}

#[tokio::test]
async fn blocked_clients_are_counted() {
    let server = OwnRedis::start();
    let mut app = client(&server.url()).await;
    let check = check_on(&server.url());
    let blocked = |samples: &[Sample]| must(samples, "redis_blocked_clients");
    assert_eq!(
        blocked(&run(check.as_ref()).await.expect("check passes")),
        0.0
    );
    // A BLPOP that waits up to 3 s on a list nobody pushes to.
    let blocker = tokio::spawn(async move {
        let _: Option<Vec<String>> = cmd(&mut app, &["BLPOP", "runbook:test:never", "3"]).await;
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = 0.0;
    while seen < 1.0 && Instant::now() < deadline {
        seen = blocked(&run(check.as_ref()).await.expect("check passes"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen, 1.0,
        "the BLPOP client was not reported blocked within 3 s"
    );
    tokio::time::timeout(Duration::from_secs(10), blocker)
        .await
        .expect("the BLPOP ends after its own 3 s")
        .unwrap();
    assert_eq!(
        blocked(&run(check.as_ref()).await.expect("check passes")),
        0.0
    );
}

#[tokio::test]
async fn replication_is_reported_on_the_primary_and_the_replica() {
    // After a restart of the primary the replica may still be syncing.
    let replica = check_on(&replica_url());
    let limit = Duration::from_secs(30);
    let deadline = Instant::now() + limit;
    let samples = loop {
        let samples = run(replica.as_ref()).await.expect("replica check passes");
        if value(&samples, "redis_master_link_up", &[]) == Some(1.0) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "the shared replica's link to its primary not up within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        value(&samples, "redis_role", &[("role", "replica")]),
        Some(1.0)
    );
    assert_eq!(must(&samples, "redis_master_link_up"), 1.0);
    assert_eq!(must(&samples, "redis_master_sync_in_progress"), 0.0);
    assert!(must(&samples, "redis_master_last_io_timestamp") > 0.0);
    assert_eq!(value(&samples, "redis_replica_offset_lag", &[]), None);

    let primary = check_on(&primary_url());
    let samples = run(primary.as_ref()).await.expect("primary check passes");
    assert!(must(&samples, "redis_connected_replicas") >= 1.0);
    let port = replica_url().rsplit(':').next().unwrap().to_string();
    let lag = value(
        &samples,
        "redis_replica_offset_lag",
        &[("replica", &format!("127.0.0.1:{port}"))],
    )
    .unwrap_or_else(|| panic!("no lag for the replica in {samples:#?}"));
    // The shared primary's writes come from every test; the exact value
    // is proven on a pair of this test's own below.
    assert!(lag.is_finite(), "{lag}");
    assert_eq!(value(&samples, "redis_master_link_up", &[]), None);
}

/// The primary's offset minus the offset its replica acknowledged, from
/// `INFO replication` read by the test itself.
async fn offset_gap(primary: &mut MultiplexedConnection) -> f64 {
    let info: String = cmd(primary, &["INFO", "replication"]).await;
    let field = |line: &str, key: &str| -> Option<f64> {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.trim().parse().ok())
    };
    let mut own = None;
    let mut replica = None;
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("master_repl_offset:") {
            own = v.trim().parse::<f64>().ok();
        }
        if line.starts_with("slave0:") {
            replica = field(line, "offset");
        }
    }
    own.expect("master_repl_offset") - replica.expect("a replica in INFO")
}

/// A replica that stops acknowledging (it is busy for 3 s) falls behind by
/// exactly the bytes written meanwhile, and catches up afterwards.
#[tokio::test]
async fn a_replica_that_falls_behind_shows_its_exact_offset_lag() {
    let debug = ["--enable-debug-command".to_string(), "yes".to_string()];
    let primary = OwnRedis::start_with(&debug);
    let mut args = debug.to_vec();
    args.extend([
        "--replicaof".into(),
        "127.0.0.1".into(),
        primary.addr.port().to_string(),
        "--masterauth".into(),
        password(),
    ]);
    let replica = OwnRedis::start_with(&args);
    let (primary_check, replica_check) = (check_on(&primary.url()), check_on(&replica.url()));
    let limit = Duration::from_secs(30);
    let deadline = Instant::now() + limit;
    while run(replica_check.as_ref())
        .await
        .ok()
        .and_then(|s| value(&s, "redis_master_link_up", &[]))
        != Some(1.0)
    {
        assert!(
            Instant::now() < deadline,
            "the replica did not sync within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = format!("127.0.0.1:{}", replica.addr.port());
    let lag = |samples: &[Sample]| {
        value(samples, "redis_replica_offset_lag", &[("replica", &name)])
            .unwrap_or_else(|| panic!("no lag for {name} in {samples:#?}"))
    };
    let mut app = client(&primary.url()).await;
    let mut busy = client(&replica.url()).await;
    let mut probe = client(&replica.url()).await;
    let sleeper = tokio::spawn(async move {
        let _: () = cmd(&mut busy, &["DEBUG", "SLEEP", "3"]).await;
    });
    // The replica is asleep once it stops answering; the sleep lasts 3 s,
    // and everything below until the comparison takes a fraction of that.
    let deadline = Instant::now() + limit;
    while tokio::time::timeout(
        Duration::from_millis(100),
        cmd::<String>(&mut probe, &["PING"]),
    )
    .await
    .is_ok()
    {
        assert!(Instant::now() < deadline, "the replica never went to sleep");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(probe);
    let value_1k = "x".repeat(1024);
    for i in 0..20 {
        let _: () = cmd(
            &mut app,
            &["SET", &format!("runbook:test:lag:{i}"), &value_1k],
        )
        .await;
    }
    let samples = run(primary_check.as_ref())
        .await
        .expect("primary check passes");
    let expected = offset_gap(&mut app).await;
    assert!(
        expected > 20.0 * 1024.0,
        "the replica kept up: gap {expected}"
    );
    assert_eq!(lag(&samples), expected);

    tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("DEBUG SLEEP 3 ends")
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        let samples = run(primary_check.as_ref())
            .await
            .expect("primary check passes");
        if lag(&samples) == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up within {limit:?}: lag {}",
            lag(&samples)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_wrong_or_missing_password_fails_with_reason_auth() {
    let wrong = build(&format!(
        "kind: redis\nurl: {}\npassword: not-the-password",
        primary_url()
    ));
    let failure = run(wrong.as_ref()).await.expect_err("wrong password");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(failure.samples.is_empty());
    // The scheduler scrubs messages of these.
    assert_eq!(wrong.secrets(), ["not-the-password"]);

    // The password may come in the URL, too.
    let url = primary_url().replacen("redis://", "redis://:not-the-password@", 1);
    let in_url = build(&format!("kind: redis\nurl: {url}"));
    let failure = run(in_url.as_ref()).await.expect_err("wrong password");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert_eq!(in_url.secrets(), ["not-the-password"]);

    let none = build(&format!("kind: redis\nurl: {}", primary_url()));
    let failure = run(none.as_ref()).await.expect_err("no password");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(failure.message.contains("NOAUTH"), "{}", failure.message);
}

#[tokio::test]
async fn an_acl_user_logs_in_and_one_without_info_fails_with_reason_auth() {
    let server = OwnRedis::start();
    let mut admin = client(&server.url()).await;
    let _: () = cmd(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "runbook-probe",
            "reset",
            "on",
            ">probe-pass",
            "+ping",
            "+info",
        ],
    )
    .await;
    let _: () = cmd(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "runbook-noinfo",
            "reset",
            "on",
            ">probe-pass",
            "+ping",
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "probe-pass\n").unwrap();

    let probe = build(&format!(
        "kind: redis\nurl: {}\nusername: runbook-probe\npassword_file: {}",
        server.url(),
        file.display()
    ));
    let samples = run(probe.as_ref())
        .await
        .expect("the ACL user may PING and INFO");
    assert!(must(&samples, "redis_ping_duration") > 0.0);

    let noinfo = build(&format!(
        "kind: redis\nurl: {}\nusername: runbook-noinfo\npassword_file: {}",
        server.url(),
        file.display()
    ));
    let failure = run(noinfo.as_ref()).await.expect_err("INFO is not allowed");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(failure.message.contains("INFO"), "{}", failure.message);
    // The PING still succeeded, so its round trip stays valid.
    assert!(value(&failure.samples, "redis_ping_duration", &[]).is_some());
}

#[tokio::test]
async fn nothing_listening_fails_refused_and_backs_off() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let check = build(&format!("kind: redis\nurl: redis://127.0.0.1:{port}"));
    let failure = run(check.as_ref()).await.expect_err("nothing listens");
    assert_eq!(failure.reason, Reason::ConnectionRefused);
    assert!(failure.message.contains(&format!("127.0.0.1:{port}")));
    // Right after a failed connect the check does not try again, but
    // reports the same reason and when it will: a listener now on the
    // port sees no connection attempt.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port} again: {e}"));
    listener.set_nonblocking(true).unwrap();
    let again = run(check.as_ref()).await.expect_err("still nothing");
    assert_eq!(again.reason, Reason::ConnectionRefused);
    assert!(
        again.message.contains("next reconnect attempt in"),
        "{}",
        again.message
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the check connected during its back-off: {other:?}"),
    }
}

#[tokio::test]
async fn a_restarted_server_is_down_then_up_again_without_a_new_check() {
    let mut server = OwnRedis::start();
    let check = check_on(&server.url());
    let before = run(check.as_ref()).await.expect("check passes");

    server.kill();
    let failure = run(check.as_ref())
        .await
        .expect_err("the check fails while Redis is down");
    assert!(
        matches!(failure.reason, Reason::ConnectionRefused | Reason::Network),
        "{failure:?}"
    );
    assert!(failure.samples.is_empty(), "{:?}", failure.samples);

    // Start times have a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.restart();
    // Reconnect attempts back off (1 s, 2 s, ...), so allow some time.
    let limit = Duration::from_secs(30);
    let deadline = Instant::now() + limit;
    let after = loop {
        match run(check.as_ref()).await {
            Ok(samples) => break samples,
            Err(f) => assert!(
                Instant::now() < deadline,
                "the same check did not recover within {limit:?} of the restart: {f:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        must(&after, "redis_start_timestamp") > must(&before, "redis_start_timestamp"),
        "the restart is visible in the start time"
    );
}

#[tokio::test]
async fn tls_with_a_ca_file_passes_and_reports_the_certificate_expiry() {
    let url = env("RUNBOOK_TEST_REDIS_TLS_URL");
    let ca = env("RUNBOOK_TEST_REDIS_CA_FILE");
    let check = build(&format!(
        "kind: redis\nurl: {url}\npassword: {}\ntls:\n  ca_file: {ca}",
        password()
    ));
    let samples = run(check.as_ref()).await.expect("check passes over TLS");
    assert!(must(&samples, "redis_ping_duration") > 0.0);
    assert!(must(&samples, "tls_earliest_cert_expiry_timestamp") > 1.7e9);

    // Without the test CA the certificate is not trusted.
    let untrusted = build(&format!(
        "kind: redis\nurl: {url}\npassword: {}",
        password()
    ));
    let failure = run(untrusted.as_ref()).await.expect_err("unknown CA");
    assert_eq!(failure.reason, Reason::Tls, "{}", failure.message);
}

#[tokio::test]
async fn a_run_cancelled_by_its_timeout_leaves_a_working_check() {
    let server = OwnRedis::start();
    let check = check_on(&server.url());
    run(check.as_ref()).await.expect("check passes");
    let mut admin = client(&server.url()).await;
    // Every client's commands wait for a second.
    let _: () = cmd(&mut admin, &["CLIENT", "PAUSE", "1000", "ALL"]).await;
    let cancelled = tokio::time::timeout(Duration::from_millis(200), check.run(&ctx())).await;
    assert!(cancelled.is_err(), "the run waits for the paused server");
    // The next run works, on a connection without a stray reply in it.
    let samples = run(check.as_ref())
        .await
        .expect("check passes after the pause");
    assert!(must(&samples, "redis_ping_duration") > 0.0);
    let again = run(check.as_ref()).await.expect("and keeps passing");
    assert!(must(&again, "redis_ping_duration") > 0.0);
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate
/// signed by it, as PEM files in `dir` named `{prefix}ca.crt`,
/// `{prefix}server.crt`/`.key` and `{prefix}client.crt`/`.key`.
fn write_pki(dir: &std::path::Path, prefix: &str) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    // Distinct names: OpenSSL takes a certificate whose subject is its
    // issuer's for self-signed.
    let named = |sans: Vec<String>, cn: String| {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = named(Vec::new(), format!("{prefix}test CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let write = |name: &str, pem: String| std::fs::write(dir.join(format!("{prefix}{name}")), pem);
    write("ca.crt", ca.pem()).unwrap();
    for (name, san) in [("server", "127.0.0.1"), ("client", "runbook-exporter")] {
        let key = KeyPair::generate().unwrap();
        let cert = named(vec![san.to_string()], format!("{prefix}{name}"))
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        write(&format!("{name}.crt"), cert.pem()).unwrap();
        write(&format!("{name}.key"), key.serialize_pem()).unwrap();
    }
}

/// Mutual TLS against a real Redis that requires client certificates
/// (`tls-auth-clients yes`): the check's certificate gets it in, no
/// certificate or one from another CA does not, and the refusal is a `tls`
/// failure.
#[tokio::test]
async fn client_certificates_are_required_by_a_mutual_tls_server() {
    let pki = tempfile::tempdir().unwrap();
    write_pki(pki.path(), "");
    write_pki(pki.path(), "other-");
    let file = |name: &str| pki.path().join(name).display().to_string();
    let server = OwnRedis::start_with(&[
        "--tls-cert-file".into(),
        file("server.crt"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        file("ca.crt"),
        "--tls-auth-clients".into(),
        "yes".into(),
    ]);
    let url = format!("rediss://{}", server.addr);
    let with = |tls: String| {
        build(&format!(
            "kind: redis\nurl: {url}\npassword: {}\ntls: {{{tls}}}",
            password()
        ))
    };

    let good = with(format!(
        "ca_file: {}, cert_file: {}, key_file: {}",
        file("ca.crt"),
        file("client.crt"),
        file("client.key")
    ));
    let samples = run(good.as_ref())
        .await
        .expect("the CA's client certificate gets in");
    assert!(must(&samples, "redis_ping_duration") > 0.0);
    assert!(must(&samples, "tls_earliest_cert_expiry_timestamp") > 1.7e9);

    let cases = [
        (
            "no client certificate",
            format!("ca_file: {}", file("ca.crt")),
        ),
        (
            "a client certificate from another CA",
            format!(
                "ca_file: {}, cert_file: {}, key_file: {}",
                file("ca.crt"),
                file("other-client.crt"),
                file("other-client.key")
            ),
        ),
    ];
    for (what, tls) in cases {
        let check = with(tls);
        let failure = run(check.as_ref()).await.expect_err(what);
        assert_eq!(failure.reason, Reason::Tls, "{what}: {}", failure.message);
        // Only what is still true: the server's certificate, which it did
        // present; nothing from a session that never began.
        let names: Vec<&str> = failure.samples.iter().map(|s| s.desc.name).collect();
        assert_eq!(names, ["tls_earliest_cert_expiry_timestamp"], "{what}");
    }
}
