//! The shipped rules and Alertmanager example end to end: a real exporter
//! scraped under an Operator-style job label (`monitoring/api-runbook-exporter`,
//! what a PodMonitor gives), a real Prometheus evaluating the rules, a real
//! Alertmanager running the generated routes and inhibitions, and a webhook
//! receiver that records every notification. A `/probe` target scraped as
//! a Prometheus Operator Probe (`probe/monitoring/pg-ports`, target as
//! instance) that does not answer pages P1 under that job. Stopping Redis, PostgreSQL,
//! ClickHouse and Kafka each sends exactly one notification, to the receiver
//! its priority and team route to; stopping the exporter sends the P0
//! exporter-down page, while the check alert already firing is silenced and
//! never resolved.
//!
//! Faults: Redis is the test's own server, stopped and started again;
//! PostgreSQL and ClickHouse are the shared servers behind a TCP proxy the
//! test owns, which it stops (refusing and cutting every connection) and
//! starts again; Kafka is the shared broker, stopped with
//! `scripts/services.sh down kafka` and started again even on panic (the
//! Kafka check's client talks to the broker's advertised address, so a proxy
//! cannot cut it). Every outage lasts only until its alert is seen.

mod common;
mod mixin_support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{closed_port, get};
use mixin_support::*;
use runbook_exporter::mixin::{alertmanager, render_rules};
use serde_json::Value;

const JOB: &str = "monitoring/api-runbook-exporter";
const PROBE_JOB: &str = "probe/monitoring/pg-ports";

/// A child process killed (by its id) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Proc {
    spawn_logged(cmd, None)
}

/// Like [`spawn`], with stderr into `log` (to show when a wait fails).
fn spawn_logged(cmd: &mut Command, log: Option<&Path>) -> Proc {
    let name = format!("{:?}", cmd.get_program());
    let stderr = match log {
        Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
        None => Stdio::null(),
    };
    Proc(
        cmd.stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}")),
    )
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs its closure when dropped: what a fault must undo, even on panic.
struct Restore(Option<Box<dyn FnOnce()>>);

impl Restore {
    fn new(f: impl FnOnce() + 'static) -> Self {
        Restore(Some(Box::new(f)))
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

// --- The webhook receiver ---------------------------------------------------

/// Every notification Alertmanager sent: (receiver path, JSON body).
type Received = Arc<Mutex<Vec<(String, Value)>>>;

fn webhook_receiver() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Received = Arc::default();
    let out = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            if let Some((path, body)) = read_request(&mut conn) {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    out.lock().unwrap().push((path, v));
                }
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, got)
}

/// The path and body of one HTTP request (bounded to 1 MiB).
fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })?
        .parse()
        .ok()?;
    while buf.len() < head_end + len && buf.len() <= 1 << 20 {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((path, buf[head_end..].to_vec()))
}

/// The notifications carrying `alertname` in `status` ("firing" or
/// "resolved"), as the receiver paths they reached.
fn notified(got: &Received, alertname: &str, status: &str) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(_, v)| {
            v["alerts"].as_array().is_some_and(|alerts| {
                alerts
                    .iter()
                    .any(|a| a["labels"]["alertname"] == alertname && a["status"] == status)
            })
        })
        .map(|(path, _)| path.trim_start_matches('/').to_string())
        .collect()
}

// --- A stoppable TCP proxy --------------------------------------------------

/// A running proxy: its stop flag, accept thread and open connections.
type Running = (
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
    Arc<Mutex<Vec<TcpStream>>>,
);

/// A TCP proxy on a fixed loopback port in front of a real server. Stopped,
/// it refuses new connections and cuts the open ones.
struct Proxy {
    port: u16,
    upstream: SocketAddr,
    running: Option<Running>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Self {
        let mut p = Proxy {
            port: closed_port().port(),
            upstream,
            running: None,
        };
        p.resume();
        p
    }

    fn resume(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (flag, open, upstream) = (stop.clone(), conns.clone(), self.upstream);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                for s in [&client, &server] {
                    open.lock().unwrap().push(s.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        self.running = Some((stop, thread, conns));
    }

    fn stop(&mut self) {
        if let Some((stop, thread, conns)) = self.running.take() {
            stop.store(true, Ordering::Relaxed);
            thread.join().unwrap();
            for c in conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

// --- Processes ----------------------------------------------------------------

fn redis_server(port: u16, dir: &Path) -> Proc {
    let p = spawn(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir.to_str().unwrap(),
            ]),
    );
    wait_until(
        "the test's Redis to listen",
        Duration::from_secs(20),
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    p
}

fn services(cmd: &str, name: &str) {
    let script = root().join("scripts/services.sh");
    // Bounded: five minutes (a cold start of the service), then coreutils'
    // timeout ends the script and the test fails on its status.
    let status = Command::new("timeout")
        .args(["--kill-after=5s", "300s"])
        .arg(script)
        .args([cmd, name])
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/services.sh");
    assert!(status.success(), "scripts/services.sh {cmd} {name} failed");
}

fn addr_of(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest
        .rsplit('@')
        .next()
        .unwrap()
        .split(['/', '?'])
        .next()
        .unwrap();
    hostport
        .parse()
        .unwrap_or_else(|e| panic!("{hostport}: {e}"))
}

fn exporter(cfg: &Path, addr: SocketAddr) -> Proc {
    let p = spawn(Command::new(env!("CARGO_BIN_EXE_runbook-exporter")).args([
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--web.listen-address",
        &addr.to_string(),
    ]));
    wait_until("the exporter to listen", Duration::from_secs(30), || {
        TcpStream::connect(addr).is_ok()
    });
    p
}

fn http_json(addr: SocketAddr, path: &str) -> Value {
    let resp = get(addr, path);
    assert_eq!(resp.status, 200, "{path}: {}", resp.body);
    serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn prom_alerts(prom: SocketAddr, alertname: &str, state: &str) -> usize {
    http_json(prom, "/api/v1/alerts")["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == alertname && a["state"] == state)
        .count()
}

/// The rules and Alertmanager config as shipped, with the windows shortened
/// so that the test takes seconds: checks run every 2 s, so 3 runs fit the
/// 12 s window.
fn write_configs(dir: &Path, receiver: SocketAddr) -> (Vec<String>, std::path::PathBuf) {
    let mut config = config();
    for t in config.alerts.values_mut() {
        t.for_ = "1s".into();
    }
    config.check_down.window = "12s".into();
    config.check_down.remember = "10m".into();
    config.check_down.keep_firing_for = "2s".into();
    config.alertmanager.receiver_url = format!("http://{receiver}/");
    config.alertmanager.group_wait = "1s".into();
    config.alertmanager.group_interval = "2s".into();
    let mut rules = Vec::new();
    for (path, text) in render_rules(&config) {
        let file = dir.join(Path::new(&path).file_name().unwrap());
        std::fs::write(&file, text).unwrap();
        rules.push(file.display().to_string());
    }
    let am = dir.join("alertmanager.yaml");
    std::fs::write(&am, alertmanager::config_yaml(&config)).unwrap();
    (rules, am)
}

/// Stop one dependency with `stop` (its restore guard returned), and wait
/// until exactly one firing notification of `alertname` has reached
/// `receiver` and no other receiver; then restore it and wait for the
/// resolved notification.
fn one_notification_per_outage(
    got: &Received,
    alertname: &str,
    receiver: &str,
    stop: impl FnOnce() -> Restore,
) {
    let before = notified(got, alertname, "firing").len();
    let outage = stop();
    wait_until(
        &format!("{alertname} to reach {receiver}"),
        Duration::from_secs(60),
        || notified(got, alertname, "firing").len() > before,
    );
    // Twice the group interval: a second notification would be sent by now.
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        let firing = notified(got, alertname, "firing");
        assert_eq!(
            firing[before..],
            [receiver.to_string()],
            "{alertname}: one notification, on {receiver}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let resolved = notified(got, alertname, "resolved").len();
    drop(outage);
    wait_until(
        &format!("{alertname} to resolve after the restore"),
        Duration::from_secs(90),
        || notified(got, alertname, "resolved").len() > resolved,
    );
}

#[test]
fn each_stopped_dependency_pages_once_on_its_route_and_a_stopped_exporter_silences_without_resolving(
) {
    let prometheus = env("RUNBOOK_TEST_PROMETHEUS", "prometheus");
    let am_bin = env("RUNBOOK_TEST_ALERTMANAGER", "prometheus");
    let pg_dsn = env("RUNBOOK_TEST_PG_PRIMARY_DSN", "postgres");
    let ch_url = env("RUNBOOK_TEST_CLICKHOUSE_URL", "clickhouse");
    let ch_user = env("RUNBOOK_TEST_CLICKHOUSE_USER", "clickhouse");
    let ch_password = env("RUNBOOK_TEST_CLICKHOUSE_PASSWORD", "clickhouse");
    let brokers = env("RUNBOOK_TEST_KAFKA_BROKERS", "kafka");
    let dir = tempfile::tempdir().unwrap();
    let (receiver, got) = webhook_receiver();

    let redis_port = closed_port().port();
    let redis: Arc<Mutex<Option<Proc>>> =
        Arc::new(Mutex::new(Some(redis_server(redis_port, dir.path()))));
    let pg = Arc::new(Mutex::new(Proxy::start(addr_of(&pg_dsn))));
    let ch = Arc::new(Mutex::new(Proxy::start(addr_of(&ch_url))));
    let pg_port = pg.lock().unwrap().port;
    let ch_port = ch.lock().unwrap().port;
    let pg_via_proxy = pg_dsn.replace(
        &addr_of(&pg_dsn).to_string(),
        &format!("127.0.0.1:{pg_port}"),
    );
    let cfg = dir.path().join("exporter.yaml");
    std::fs::write(
        &cfg,
        format!(
            "defaults: {{interval: 2s, timeout: 1500ms}}\n\
             modules:\n  - {{name: tcp_connect, kind: tcp, address: '127.0.0.1:1', timeout: 500ms}}\n\
             checks:\n\
             \x20 - {{name: cache, kind: redis, url: 'redis://127.0.0.1:{redis_port}'}}\n\
             \x20 - {{name: pg, kind: postgres, dsn: '{pg_via_proxy}'}}\n\
             \x20 - {{name: analytics, kind: clickhouse, url: 'http://127.0.0.1:{ch_port}', user: '{ch_user}', password: '{ch_password}'}}\n\
             \x20 - {{name: events, kind: kafka, brokers: ['{brokers}'], topics_regex: '^$', groups_regex: '^$'}}\n"
        ),
    )
    .unwrap();
    let exporter_addr = closed_port();
    // What a Prometheus Operator Probe scrapes: /probe of a module, under
    // job `probe/NAMESPACE/NAME`, with the target as instance. Nothing
    // listens on the target, so its check fails from the start.
    let closed_target = closed_port();
    let mut exporter_proc = Some(exporter(&cfg, exporter_addr));

    let (rules, am_cfg) = write_configs(dir.path(), receiver);
    let am_addr = closed_port();
    let am_log = dir.path().join("alertmanager.log");
    let _am = spawn_logged(
        Command::new(&am_bin)
            .arg(format!("--config.file={}", am_cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address="),
        Some(&am_log),
    );
    let prom_addr = closed_port();
    let rule_list = rules
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{am_addr}']}}]}}]}}\n\
             rule_files: [{rule_list}]\n\
             scrape_configs:\n  - job_name: '{JOB}'\n    static_configs: [{{targets: ['{exporter_addr}']}}]\n\
             \x20 - job_name: '{PROBE_JOB}'\n    metrics_path: /probe\n    params: {{module: [tcp_connect], target: ['{closed_target}']}}\n\
             \x20   static_configs: [{{targets: ['{exporter_addr}']}}]\n\
             \x20   relabel_configs: [{{target_label: instance, replacement: '{closed_target}'}}]\n"
        ),
    )
    .unwrap();
    let prom_log = dir.path().join("prometheus.log");
    let _prom = spawn_logged(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            // Re-send firing alerts every 2 s (default 1 m), so that one sent
            // before Alertmanager listened is not lost for a minute.
            .arg("--rules.alert.resend-delay=2s"),
        Some(&prom_log),
    );
    wait_until(
        "Prometheus and Alertmanager to listen",
        Duration::from_secs(30),
        || {
            TcpStream::connect(prom_addr).is_ok()
                && TcpStream::connect(am_addr).is_ok()
                && get(prom_addr, "/-/ready").status == 200
                && get(am_addr, "/-/ready").status == 200
        },
    );
    wait_until(
        &format!("all four checks up in Prometheus under job {JOB}"),
        Duration::from_secs(90),
        || {
            let q = http_json(
                prom_addr,
                &format!("/api/v1/query?query={}", "runbook_check_up%20%3D%3D%201"),
            );
            q["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["metric"]["job"] == JOB)
                .count()
                == 4
        },
    );
    // The Watchdog reaches its own receiver: the pipeline works.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !notified(&got, "RunbookWatchdog", "firing").contains(&"watchdog".to_string()) {
        assert!(
            Instant::now() < deadline,
            "the Watchdog did not reach its receiver in 30 s; got {:?}\nPrometheus alerts: {}\nAlertmanager: {}\nPrometheus: {}",
            got.lock().unwrap().iter().map(|(p, v)| format!("{p}: {}", v["alerts"][0]["labels"]["alertname"])).collect::<Vec<_>>(),
            http_json(prom_addr, "/api/v1/alerts"),
            std::fs::read_to_string(&am_log).unwrap_or_default(),
            std::fs::read_to_string(&prom_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The Probe's target is down: its alert fires under the Probe's job
    // label and pages P1 once.
    wait_until(
        &format!("RunbookTcpEndpointDown for {PROBE_JOB} to page"),
        Duration::from_secs(60),
        || {
            got.lock().unwrap().iter().any(|(path, v)| {
                path == "/oncall-page-p1"
                    && v["alerts"].as_array().unwrap().iter().any(|a| {
                        a["labels"]["alertname"] == "RunbookTcpEndpointDown"
                            && a["labels"]["job"] == PROBE_JOB
                            && a["labels"]["instance"] == closed_target.to_string().as_str()
                    })
            })
        },
    );

    let r = redis.clone();
    let dirpath = dir.path().to_path_buf();
    one_notification_per_outage(&got, "RunbookRedisDown", "oncall-page-p1", move || {
        r.lock().unwrap().take();
        Restore::new(move || *r.lock().unwrap() = Some(redis_server(redis_port, &dirpath)))
    });
    for (proxy, alertname) in [(&pg, "RunbookPostgresDown"), (&ch, "RunbookClickHouseDown")] {
        let p = proxy.clone();
        one_notification_per_outage(&got, alertname, "dba-page-p1", move || {
            p.lock().unwrap().stop();
            Restore::new(move || p.lock().unwrap().resume())
        });
    }
    one_notification_per_outage(&got, "RunbookKafkaDown", "oncall-page-p1", || {
        services("down", "kafka");
        Restore::new(|| services("up", "kafka"))
    });
    assert!(
        notified(&got, "RunbookDependenciesDown", "firing").is_empty(),
        "one dependency down at a time never raises the P0 aggregate"
    );

    // Redis down again, then the exporter: the P0 page arrives, RedisDown is
    // silenced in Alertmanager and stays firing in Prometheus, never resolved.
    let firing = notified(&got, "RunbookRedisDown", "firing").len();
    let resolved = notified(&got, "RunbookRedisDown", "resolved").len();
    let _redis_back = {
        let r = redis.clone();
        r.lock().unwrap().take();
        let dirpath = dir.path().to_path_buf();
        Restore::new(move || *r.lock().unwrap() = Some(redis_server(redis_port, &dirpath)))
    };
    wait_until(
        "RunbookRedisDown to be notified again",
        Duration::from_secs(60),
        || notified(&got, "RunbookRedisDown", "firing").len() > firing,
    );
    exporter_proc.take();
    wait_until(
        "RunbookExporterDown to page P0",
        Duration::from_secs(60),
        || notified(&got, "RunbookExporterDown", "firing").contains(&"oncall-page-p0".to_string()),
    );
    wait_until(
        "RunbookRedisDown to be inhibited by RunbookExporterDown",
        Duration::from_secs(30),
        || {
            http_json(am_addr, "/api/v2/alerts")
                .as_array()
                .unwrap()
                .iter()
                .any(|a| {
                    a["labels"]["alertname"] == "RunbookRedisDown"
                        && a["status"]["state"] == "suppressed"
                        && !a["status"]["inhibitedBy"].as_array().unwrap().is_empty()
                })
        },
    );
    // Past the window, keep_firing_for and several group intervals, the
    // check alert still fires and no RESOLVED was sent.
    let watch = Instant::now() + Duration::from_secs(20);
    while Instant::now() < watch {
        assert_eq!(
            prom_alerts(prom_addr, "RunbookRedisDown", "firing"),
            1,
            "RunbookRedisDown keeps firing while the exporter is down"
        );
        assert_eq!(
            notified(&got, "RunbookRedisDown", "resolved").len(),
            resolved,
            "no RESOLVED for Redis while the exporter is down"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
