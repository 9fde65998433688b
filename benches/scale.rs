//! Scale benchmark: prints figures, asserts nothing.
//!
//! Runs the release binary with 1,000 and then 10,000 tcp checks (15 s
//! interval) against a local listener and reports:
//! - `/metrics` scrape latency p50/p99 with 1,000 checks;
//! - CPU time per 1,000 tcp probes;
//! - resident memory with 1,000 and 10,000 checks.
//!
//! Run with `cargo bench --bench scale`. Takes about two minutes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INTERVAL_SECS: u64 = 15;

fn main() {
    let target = tcp_target();
    let dir = std::env::temp_dir().join(format!("runbook-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    println!("runbook-exporter scale benchmark ({} cores)", num_cpus());
    for &n in &[1_000usize, 10_000] {
        let exporter = Exporter::start(&dir, n, target);
        let round = exporter.wait_for_runs(n as f64);
        println!("\n{n} tcp checks, interval {INTERVAL_SECS}s: first full round took {round:.1?}");
        println!(
            "  RSS after one round:          {:.1} MB",
            exporter.rss_bytes() as f64 / 1e6
        );

        if n == 1_000 {
            let mut latencies: Vec<Duration> =
                (0..300).map(|_| exporter.scrape_latency()).collect();
            latencies.sort();
            let p = |q: f64| {
                latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]
            };
            println!(
                "  /metrics scrape latency:      p50 {:.2} ms, p99 {:.2} ms ({} scrapes, {} bytes)",
                p(0.50).as_secs_f64() * 1e3,
                p(0.99).as_secs_f64() * 1e3,
                latencies.len(),
                exporter.scrape().len()
            );
        }

        // CPU per probe over two full intervals, without scrapes in between.
        let (cpu0, runs0) = (exporter.cpu_seconds(), exporter.runs_total());
        std::thread::sleep(Duration::from_secs(2 * INTERVAL_SECS));
        let (cpu1, runs1) = (exporter.cpu_seconds(), exporter.runs_total());
        let probes = runs1 - runs0;
        println!(
            "  CPU per 1,000 tcp probes:     {:.1} ms ({probes} probes in {}s used {:.2} s CPU)",
            (cpu1 - cpu0) / probes * 1e3 * 1e3,
            2 * INTERVAL_SECS,
            cpu1 - cpu0
        );
        println!(
            "  RSS after three rounds:       {:.1} MB",
            exporter.rss_bytes() as f64 / 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

struct Exporter {
    child: Child,
    addr: SocketAddr,
}

impl Exporter {
    fn start(dir: &std::path::Path, n: usize, target: SocketAddr) -> Self {
        let mut cfg = format!(
            "defaults: {{interval: {INTERVAL_SECS}s, timeout: 5s}}\nmax_concurrent_runs: 256\nchecks:\n"
        );
        for i in 0..n {
            cfg.push_str(&format!(
                "  - {{name: tcp_{i}, kind: tcp, address: \"{target}\"}}\n"
            ));
        }
        let path = dir.join(format!("bench-{n}.yaml"));
        std::fs::write(&path, cfg).unwrap();
        let addr = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_runbook-exporter"))
            .args(["serve", "--config"])
            .arg(&path)
            .args([
                "--web.listen-address",
                &addr.to_string(),
                "--log.level",
                "error",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the exporter");
        let e = Exporter { child, addr };
        for _ in 0..200 {
            if TcpStream::connect(addr).is_ok() {
                return e;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the exporter did not start");
    }

    fn scrape(&self) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }

    fn scrape_latency(&self) -> Duration {
        let start = Instant::now();
        let body = self.scrape();
        let took = start.elapsed();
        assert!(body.starts_with("HTTP/1.0 200"));
        took
    }

    fn runs_total(&self) -> f64 {
        self.scrape()
            .lines()
            .filter(|l| l.starts_with("runbook_check_runs_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    fn wait_for_runs(&self, n: f64) -> Duration {
        let start = Instant::now();
        while self.runs_total() < n {
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "checks did not run"
            );
        }
        start.elapsed()
    }

    fn proc_status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    fn rss_bytes(&self) -> u64 {
        self.proc_status("VmRSS:") * 1024
    }

    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name in parentheses; utime and stime are
        // the 14th and 15th fields of the line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tcp_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    addr
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
