//! What the live mixin tests run: each kind's checks and the data they
//! describe, fixture servers for http, tcp and dns, a Redis and an exporter
//! of the test's own, and a Prometheus and an Alertmanager with the shipped
//! rules, with bounded waits and PromQL queries against them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{closed_port, get};
use crate::mixin_support::*;
use runbook_exporter::checks::KINDS;
use runbook_exporter::mixin::render_rules;
use serde_json::Value;

/// What one kind adds to the exporter's config in these tests.
pub struct KindChecks {
    pub kind: &'static str,
    /// The services script that provides `vars`.
    pub service: &'static str,
    pub vars: &'static [&'static str],
    /// Bash run once before the exporter starts, to create the data the
    /// kind's metrics describe (a bucket and object, a lagging group).
    pub setup: &'static str,
    /// Check entries; `${VAR}` is expanded by the exporter's config loader.
    pub checks: &'static str,
}

/// The checks of every kind. The kinds compiled into this build are looked
/// up here; a built-in kind missing from this table fails the tests, so
/// adding a kind means adding its entry here. http, tcp and dns run against
/// servers this test starts.
pub const KIND_CHECKS: &[KindChecks] = &[
    KindChecks { kind: "http", service: "", vars: &[], setup: "", checks: "" },
    KindChecks { kind: "tcp", service: "", vars: &[], setup: "", checks: "" },
    KindChecks { kind: "dns", service: "", vars: &[], setup: "", checks: "" },
    KindChecks {
        kind: "postgres",
        service: "postgres",
        vars: &["RUNBOOK_TEST_PG_PRIMARY_DSN", "RUNBOOK_TEST_PG_STANDBY_DSN"],
        // An active session that waits (Timeout/PgSleep) for the wait-event
        // series; bounded by pg_sleep and by coreutils' timeout.
        setup: "(timeout 200s psql \"$RUNBOOK_TEST_PG_PRIMARY_DSN\" -qAtc 'SELECT pg_sleep(180)' >/dev/null 2>&1) >/dev/null 2>&1 &",
        checks: "  - {name: pg_primary, kind: postgres, interval: 2s, timeout: 1500ms, dsn: '${RUNBOOK_TEST_PG_PRIMARY_DSN}', queries: [{name: api_keys, sql: \"SELECT 'ci' AS key_name, 4102444800::float8 AS expiry_timestamp_seconds\", values: [expiry_timestamp_seconds], labels: [key_name]}]}\n  - {name: pg_standby, kind: postgres, interval: 2s, timeout: 1500ms, dsn: '${RUNBOOK_TEST_PG_STANDBY_DSN}'}\n",
    },
    KindChecks {
        // A Redis of the test's own (see `PrivateRedis`): with maxmemory set,
        // so that the memory series exist, and stoppable.
        kind: "redis",
        service: "redis",
        vars: &["RUNBOOK_TEST_REDIS_URL"],
        setup: "",
        checks: "  - {name: cache, kind: redis, interval: 2s, timeout: 1500ms, url: 'redis://127.0.0.1:${MIXIN_REDIS_PORT}'}\n",
    },
    KindChecks {
        kind: "clickhouse",
        service: "clickhouse",
        vars: &["RUNBOOK_TEST_CLICKHOUSE_URL", "RUNBOOK_TEST_CLICKHOUSE_USER", "RUNBOOK_TEST_CLICKHOUSE_PASSWORD"],
        setup: "",
        checks: "  - {name: analytics, kind: clickhouse, interval: 2s, timeout: 1500ms, url: '${RUNBOOK_TEST_CLICKHOUSE_URL}', user: '${RUNBOOK_TEST_CLICKHOUSE_USER}', password: '${RUNBOOK_TEST_CLICKHOUSE_PASSWORD}', replica_delay: true, replicas: true, mutations: true}\n",
    },
    KindChecks {
        kind: "jwt",
        service: "none (a token made here, with exp in 2100, and its HMAC secret)",
        vars: &[],
        setup: "printf runbook-mixin-jwt-secret >/tmp/runbook-mixin-jwt.secret",
        checks: "  - {name: api_token, kind: jwt, token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtaXhpbiIsImlhdCI6MTc2NDcyMDAwMCwiZXhwIjo0MTAyNDQ0ODAwfQ.JEPTRJIXXH2t5D7BrNDyWtaJy8-FoXhsJ-3h2ITwpCU, verify: {hmac_secret_file: /tmp/runbook-mixin-jwt.secret}}\n",
    },
    KindChecks {
        kind: "s3",
        service: "s3",
        vars: &["RUNBOOK_TEST_S3_ENDPOINT", "RUNBOOK_TEST_S3_ACCESS_KEY", "RUNBOOK_TEST_S3_SECRET_KEY"],
        // A bucket with one object, through S3's own API (SigV4 by curl).
        setup: r#"
s3() { curl -sS -o /dev/null -w '%{http_code}' --aws-sigv4 aws:amz:us-east-1:s3 --user "$RUNBOOK_TEST_S3_ACCESS_KEY:$RUNBOOK_TEST_S3_SECRET_KEY" "$@"; }
code=$(s3 -X PUT "$RUNBOOK_TEST_S3_ENDPOINT/runbook-mixin")
case "$code" in 200|409) ;; *) echo "creating the bucket: HTTP $code" >&2; exit 1 ;; esac
f=$(mktemp); echo backup >"$f"
code=$(s3 -T "$f" -H "x-amz-content-sha256: $(sha256sum "$f" | cut -d' ' -f1)" "$RUNBOOK_TEST_S3_ENDPOINT/runbook-mixin/latest.dump")
rm -f "$f"
[ "$code" = 200 ] || { echo "putting the object: HTTP $code" >&2; exit 1; }
"#,
        checks: "  - {name: backups, kind: s3, interval: 2s, timeout: 1500ms, bucket: runbook-mixin, region: us-east-1, endpoint: '${RUNBOOK_TEST_S3_ENDPOINT}', path_style: true, access_key_id: '${RUNBOOK_TEST_S3_ACCESS_KEY}', secret_access_key: '${RUNBOOK_TEST_S3_SECRET_KEY}', head_key: latest.dump, round_trip: true}\n",
    },
    KindChecks {
        kind: "kafka",
        service: "kafka",
        vars: &["RUNBOOK_TEST_KAFKA_BROKERS", "RUNBOOK_TEST_KAFKA_LIBS"],
        // A topic, a group that committed half of it (lag), and a producer
        // that keeps appending for 40 s (time lag), with Kafka's own tools.
        setup: r#"
cp="$RUNBOOK_TEST_KAFKA_LIBS/*"; b="$RUNBOOK_TEST_KAFKA_BROKERS"
java -cp "$cp" org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --create --if-not-exists --topic runbook-mixin --partitions 1 >/dev/null 2>&1
printf 'a
b
c
d
' | java -cp "$cp" kafka.tools.ConsoleProducer --bootstrap-server "$b" --topic runbook-mixin >/dev/null 2>&1
java -cp "$cp" org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$b" --topic runbook-mixin --group runbook-mixin --from-beginning --max-messages 2 >/dev/null 2>&1
(for i in $(seq 40); do echo "m$i"; sleep 1; done | java -cp "$cp" kafka.tools.ConsoleProducer --bootstrap-server "$b" --topic runbook-mixin >/dev/null 2>&1) >/dev/null 2>&1 &
"#,
        checks: "  - {name: events, kind: kafka, interval: 2s, timeout: 1500ms, brokers: ['${RUNBOOK_TEST_KAFKA_BROKERS}'], topics: [runbook-mixin], groups: [runbook-mixin]}\n",
    },
];

/// Kinds whose metric names are checked against the registry only: no real
/// server can be installed here (TEST-SERVICES.md: no kube-apiserver).
pub const STATIC_ONLY: &[&str] = &["kubernetes"];

/// Every kind this codebase is getting; a `runbook_KIND_*` name of one of
/// these that is not compiled into this build is reported, not failed.
pub const PLANNED_KINDS: &[&str] = &[
    "http",
    "tcp",
    "dns",
    "postgres",
    "redis",
    "clickhouse",
    "s3",
    "kafka",
    "kubernetes",
    "jwt",
];

/// The kind a `runbook_*` metric belongs to; `None` for the core families.
pub fn kind_of(name: &str) -> Option<&'static str> {
    let rest = name.strip_prefix("runbook_")?;
    PLANNED_KINDS
        .iter()
        .copied()
        .find(|k| rest.starts_with(&format!("{k}_")))
}

// --- Local targets ---------------------------------------------------------

/// A TCP listener on 127.0.0.1 that accepts until stopped, then closes so
/// that connections are refused: a dependency we can take down.
pub struct Stoppable {
    pub addr: SocketAddr,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl Stoppable {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A small HTTP server: `/health` answers `ok`, `/metrics` serves a fixture
/// of application metrics whose counters grow with time, so that the
/// application dashboard and rules have something to compute.
pub fn fixture_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 2048];
            let n = conn.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let t = started.elapsed().as_secs_f64();
            let body = if head.starts_with("GET /metrics") {
                app_metrics(t)
            } else {
                "ok\n".to_string()
            };
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

pub fn app_metrics(t: f64) -> String {
    let n = |per_second: f64| (per_second * t).floor();
    let mut out = String::new();
    out.push_str("# TYPE http_requests_total counter\n");
    // `path` as the guides' `by (path)` expects; `endpoint` is what the
    // Prometheus Operator sets to the port name.
    for (path, status, rate) in [
        ("/orders", "200", 40.0),
        ("/orders", "500", 2.0),
        ("/users", "200", 20.0),
    ] {
        out.push_str(&format!(
            "http_requests_total{{path=\"{path}\",endpoint=\"http\",status=\"{status}\"}} {}\n",
            n(rate)
        ));
    }
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for (le, rate) in [("0.5", 50.0), ("2", 60.0), ("+Inf", 62.0)] {
        out.push_str(&format!(
            "http_request_duration_seconds_bucket{{le=\"{le}\"}} {}\n",
            n(rate)
        ));
    }
    out.push_str(&format!(
        "http_request_duration_seconds_sum {}\nhttp_request_duration_seconds_count {}\n",
        n(20.0),
        n(62.0)
    ));
    out.push_str("# TYPE db_pool_connections_active gauge\ndb_pool_connections_active 7\n");
    out.push_str("# TYPE db_pool_connections_max gauge\ndb_pool_connections_max 20\n");
    out.push_str(&format!(
        "# TYPE cache_hits_total counter\ncache_hits_total {}\n# TYPE cache_misses_total counter\ncache_misses_total {}\n",
        n(90.0),
        n(10.0)
    ));
    out.push_str("# TYPE container_memory_working_set_bytes gauge\ncontainer_memory_working_set_bytes{namespace=\"production\",pod=\"api-0\",container=\"api\"} 268435456\n");
    out.push_str("# TYPE kube_pod_container_resource_limits gauge\nkube_pod_container_resource_limits{namespace=\"production\",pod=\"api-0\",container=\"api\",resource=\"memory\",unit=\"byte\"} 536870912\n");
    out
}

/// A TLS listener with a fresh self-signed certificate, for the
/// certificate-expiry series.
pub fn tls_server(rt: &tokio::runtime::Runtime) -> SocketAddr {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    addr
}

// --- Processes -------------------------------------------------------------

/// A child process killed (by its id) when dropped.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> SocketAddr {
    closed_port()
}

/// The exporter on a free port, running the local checks plus one per
/// built-in kind from [`KIND_CHECKS`].
pub struct Exporter {
    pub addr: SocketAddr,
    /// The test's own Redis when the redis kind is built in.
    pub redis: Option<Proc>,
    pub _proc: Proc,
}

/// A redis-server of the test's own on a free loopback port, with
/// `maxmemory` set (the shared test Redis has none, and must keep it so).
pub fn private_redis(dir: &Path) -> (Proc, u16) {
    let port = free_port().port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--maxmemory", "64mb"])
        .args(["--dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-server: {e}: run scripts/services.sh up redis"));
    let proc = Proc(child);
    wait_until(
        "the private Redis to listen",
        Duration::from_secs(20),
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    (proc, port)
}

pub fn start_exporter(
    dir: &Path,
    fixture: SocketAddr,
    db: SocketAddr,
    tls: SocketAddr,
) -> Exporter {
    let mut yaml = format!(
        "defaults:\n  interval: 1s\n  timeout: 900ms\nchecks:\n\
         \x20 - {{name: web, kind: http, url: 'http://{fixture}/health'}}\n\
         \x20 - {{name: broken_web, kind: http, url: 'http://{broken}/health'}}\n\
         \x20 - {{name: db_port, kind: tcp, address: '{db}'}}\n\
         \x20 - {{name: tls_port, kind: tcp, address: '{tls}', tls: true, tls_config: {{insecure_skip_verify: true}}}}\n\
         \x20 - {{name: resolver, kind: dns, query_name: localhost}}\n",
        broken = closed_port(),
    );
    let mut missing = Vec::new();
    for kind in KINDS {
        if STATIC_ONLY.contains(kind) {
            continue;
        }
        match KIND_CHECKS.iter().find(|k| k.kind == *kind) {
            Some(k) => {
                for var in k.vars {
                    env(var, k.service);
                }
                if !k.setup.is_empty() {
                    // Bounded: the setup (topics, console clients) gets
                    // two minutes, then coreutils' timeout ends it.
                    let out = Command::new("timeout")
                        .args(["--kill-after=5s", "120s", "bash", "-euc", k.setup])
                        .stdout(Stdio::null())
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "setting up {}: {}",
                        k.kind,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                yaml.push_str(k.checks);
            }
            None => missing.push(*kind),
        }
    }
    assert!(
        missing.is_empty(),
        "kinds with no entry in KIND_CHECKS (tests/mixin_live.rs): {missing:?}"
    );
    let cfg = dir.join("exporter.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let redis = KINDS.contains(&"redis").then(|| private_redis(dir));
    let redis_port = redis.as_ref().map(|(_, port)| port.to_string());
    let addr = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_runbook-exporter"))
        .env("MIXIN_REDIS_PORT", redis_port.unwrap_or_default())
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--web.listen-address",
            &addr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let exporter = Exporter {
        addr,
        redis: redis.map(|(proc, _)| proc),
        _proc: Proc(child),
    };
    wait_until(
        "the exporter to serve /metrics",
        Duration::from_secs(30),
        || TcpStream::connect(addr).is_ok(),
    );
    exporter
}

pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Scrape the exporter once all checks have completed a few runs.
pub fn settled_metrics(exporter: &Exporter) -> String {
    let mut body = String::new();
    wait_until(
        "every check to run three times",
        Duration::from_secs(60),
        || {
            body = get(exporter.addr, "/metrics").body;
            let runs: Vec<f64> = body
                .lines()
                .filter(|l| l.starts_with("runbook_check_runs_total{"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
                .collect();
            !runs.is_empty() && runs.iter().all(|r| *r >= 3.0)
        },
    );
    body
}

pub fn http_get(base: &str, path_and_query: &str) -> Value {
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let resp = get(addr, path_and_query);
    assert_eq!(resp.status, 200, "{path_and_query}: {}", resp.body);
    serde_json::from_str(&resp.body)
        .unwrap_or_else(|e| panic!("{path_and_query}: {e}: {}", resp.body))
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn query(prom: &str, expr: &str) -> Vec<Value> {
    let v = http_get(prom, &format!("/api/v1/query?query={}", enc(expr)));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    match v["data"]["result"].as_array() {
        Some(a) => a.clone(),
        None => vec![v["data"]["result"].clone()],
    }
}

// --- Tests -----------------------------------------------------------------

/// The shipped rules with every `for` shortened, so that the test does not
/// wait minutes; thresholds and selectors stay as shipped. Returns the
/// files written into `dir`.
pub fn shortened_rules(dir: &Path) -> Vec<String> {
    let mut config = config();
    for t in config.alerts.values_mut() {
        t.for_ = "2s".into();
    }
    let mut rule_paths = Vec::new();
    for (path, text) in render_rules(&config) {
        let file = dir.join(Path::new(&path).file_name().unwrap());
        std::fs::write(&file, text).unwrap();
        rule_paths.push(file.display().to_string());
    }
    rule_paths
}

/// Alertmanager on a free loopback port, routing everything nowhere.
pub fn start_alertmanager(bin: &str, dir: &Path) -> (Proc, SocketAddr) {
    let am_addr = free_port();
    std::fs::write(
        dir.join("alertmanager.yml"),
        "route:\n  receiver: 'null'\n  group_wait: 0s\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    let am = Proc(
        Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}")),
    );
    (am, am_addr)
}

/// Prometheus on a free loopback port, scraping each `(job, target)` every
/// second, evaluating `rules` and sending alerts to `am_addr`.
pub fn start_prometheus(
    bin: &str,
    dir: &Path,
    am_addr: SocketAddr,
    rules: &[String],
    jobs: &[(&str, SocketAddr)],
) -> (Proc, SocketAddr) {
    let prom_addr = free_port();
    let scrape: String = jobs
        .iter()
        .map(|(job, target)| {
            format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n")
        })
        .collect();
    let rules = rules
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let prom_cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am_addr}']\n\
         rule_files: [{rules}]\n\
         scrape_configs:\n{scrape}"
    );
    std::fs::write(dir.join("prometheus.yml"), prom_cfg).unwrap();
    let prom = Proc(
        Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}")),
    );
    (prom, prom_addr)
}
