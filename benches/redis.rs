//! Redis benchmark against Debian's `prometheus-redis-exporter`: prints
//! figures, asserts nothing.
//!
//! In one run, against the same Redis (the test primary of
//! `scripts/services.sh up redis`), scrapes each exporter's `/metrics` 100
//! times in a row and reports the scrape latency (p50, p90, max) and
//! how many connections Redis accepted during those 100 scrapes (from
//! `INFO stats` `total_connections_received`, read on one connection opened
//! before and kept open, so reading it adds none).
//!
//! Run with `scripts/services.sh up redis && eval "$(scripts/services.sh env)"
//! && cargo bench --bench redis`. Takes about half a minute once built.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRAPES: usize = 100;
const WARMUP_SCRAPES: usize = 5;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set: run scripts/services.sh up redis"))
}

fn main() {
    let url = env("RUNBOOK_TEST_REDIS_URL");
    let password = env("RUNBOOK_TEST_REDIS_PASSWORD");
    let addr = url.trim_start_matches("redis://").trim_end_matches('/');
    let admin_url = format!("redis://:{password}@{addr}/");
    let mut admin = redis::Client::open(admin_url)
        .unwrap()
        .get_connection()
        .expect("connect to the test Redis");
    let connections = |admin: &mut redis::Connection| -> u64 {
        let stats: String = redis::cmd("INFO").arg("stats").query(admin).unwrap();
        stats
            .lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("total_connections_received in INFO stats")
    };

    let dir = std::env::temp_dir().join(format!("runbook-redis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("redis.yaml");
    std::fs::write(
        &config,
        format!(
            "defaults: {{interval: 15s, timeout: 5s}}\nchecks:\n  - name: cache\n    kind: redis\n    url: {url}\n    password: {password}\n"
        ),
    )
    .unwrap();

    println!(
        "redis benchmark: {SCRAPES} sequential scrapes of /metrics per exporter, same Redis ({addr})"
    );

    let ours_addr = free_port();
    let ours = Process::start(
        Command::new(env!("CARGO_BIN_EXE_runbook-exporter"))
            .args(["serve", "--config"])
            .arg(&config)
            .args([
                "--web.listen-address",
                &ours_addr.to_string(),
                "--log.level",
                "error",
            ]),
        ours_addr,
    );
    // Wait for the first run of the check.
    let deadline = Instant::now() + Duration::from_secs(60);
    let check_up = |l: &str| {
        l.starts_with("runbook_check_up{")
            && l.contains("check=\"cache\"")
            && l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()) == Some(1.0)
    };
    while !scrape(ours_addr).lines().any(check_up) {
        assert!(Instant::now() < deadline, "the redis check never passed");
        std::thread::sleep(Duration::from_millis(200));
    }
    report("runbook-exporter", ours_addr, &mut admin, &connections);
    drop(ours);

    let theirs_addr = free_port();
    let theirs = Process::start(
        Command::new("prometheus-redis-exporter").args([
            format!("-web.listen-address={theirs_addr}"),
            format!("-redis.addr=redis://{addr}"),
            format!("-redis.password={password}"),
        ]),
        theirs_addr,
    );
    report(
        "prometheus-redis-exporter",
        theirs_addr,
        &mut admin,
        &connections,
    );
    drop(theirs);
    let _ = std::fs::remove_dir_all(&dir);
}

fn report(
    name: &str,
    addr: SocketAddr,
    admin: &mut redis::Connection,
    connections: &dyn Fn(&mut redis::Connection) -> u64,
) {
    for _ in 0..WARMUP_SCRAPES {
        scrape(addr);
    }
    let before = connections(admin);
    let mut latencies: Vec<Duration> = (0..SCRAPES)
        .map(|_| {
            let start = Instant::now();
            let body = scrape(addr);
            let took = start.elapsed();
            assert!(body.starts_with("HTTP/1."), "{name} did not answer");
            took
        })
        .collect();
    let opened = connections(admin) - before;
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p =
        |q: f64| ms(latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]);
    println!(
        "{name:<26} scrape latency p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms; \
         Redis connections opened per {SCRAPES} scrapes: {opened}",
        p(0.50),
        p(0.90),
        ms(*latencies.last().unwrap()),
    );
}

/// A child process, killed when dropped.
struct Process(Child);

impl Process {
    fn start(command: &mut Command, addr: SocketAddr) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the exporter");
        let process = Process(child);
        for _ in 0..200 {
            if TcpStream::connect(addr).is_ok() {
                return process;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the exporter did not listen on {addr}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
