//! Scale benchmark: prints figures, asserts nothing.
//!
//! Runs the release binary with 1,000 and then 10,000 tcp checks (15 s
//! interval; 60 s from 100,000 checks) against a local listener and reports:
//! - how long the config took to load (until the port listens);
//! - `/metrics` scrape latency p50/p99 with 1,000 checks (every scrape
//!   asks for gzip, as Prometheus does; the figure includes the client's
//!   decompression);
//! - CPU time per 1,000 tcp probes, and the share of one core;
//! - the p99 schedule lag (`runbook_exporter_schedule_lag_seconds`);
//! - resident memory, and how much of it is file-backed (the binary's own
//!   code pages, shared and reclaimable).
//!
//! Run with `cargo bench --bench scale` (about two minutes), or choose the
//! sizes: `RUNBOOK_BENCH_CHECKS=100000 cargo bench --bench scale`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The interval of a benchmark with `n` checks: 15 s, or 60 s from
/// 100,000 checks (the scale figure).
fn interval_secs(n: usize) -> u64 {
    if n >= 100_000 {
        60
    } else {
        15
    }
}

fn main() {
    let target = tcp_target();
    let dir = std::env::temp_dir().join(format!("runbook-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sizes: Vec<usize> = std::env::var("RUNBOOK_BENCH_CHECKS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("RUNBOOK_BENCH_CHECKS: numbers, comma-separated")
        })
        .collect();

    println!("runbook-exporter scale benchmark ({} cores)", num_cpus());
    for &n in &sizes {
        let interval = interval_secs(n);
        let (exporter, loaded) = Exporter::start(&dir, n, target);
        println!("\n{n} tcp checks, interval {interval}s: config loaded and listening after {loaded:.2?}");
        let round = exporter.wait_for_runs(n as f64, interval);
        println!("  first full round took {round:.1?}");
        println!(
            "  RSS after one round:          {:.1} MB ({:.1} MB of it file-backed)",
            exporter.rss_bytes() as f64 / 1e6,
            exporter.proc_status("RssFile:") as f64 * 1024.0 / 1e6
        );

        if n == 1_000 {
            let mut latencies: Vec<Duration> =
                (0..300).map(|_| exporter.scrape_latency()).collect();
            latencies.sort();
            let p = |q: f64| {
                latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]
            };
            println!(
                "  /metrics scrape latency:      p50 {:.2} ms, p99 {:.2} ms ({} gzip scrapes, {} bytes decompressed)",
                p(0.50).as_secs_f64() * 1e3,
                p(0.99).as_secs_f64() * 1e3,
                latencies.len(),
                exporter.scrape().len()
            );
        }

        // CPU per probe over two full intervals, without scrapes in between.
        let (cpu0, runs0) = (exporter.cpu_seconds(), exporter.runs_total());
        std::thread::sleep(Duration::from_secs(2 * interval));
        let (cpu1, runs1) = (exporter.cpu_seconds(), exporter.runs_total());
        let probes = runs1 - runs0;
        println!(
            "  CPU per 1,000 tcp probes:     {:.1} ms ({probes} probes in {}s used {:.2} s CPU, {:.1} % of one core)",
            (cpu1 - cpu0) / probes * 1e3 * 1e3,
            2 * interval,
            cpu1 - cpu0,
            (cpu1 - cpu0) / (2 * interval) as f64 * 100.0
        );
        println!(
            "  schedule lag p99:             {}",
            exporter.schedule_lag_p99()
        );
        println!(
            "  RSS after three rounds:       {:.1} MB ({:.1} MB of it file-backed)",
            exporter.rss_bytes() as f64 / 1e6,
            exporter.proc_status("RssFile:") as f64 * 1024.0 / 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

struct Exporter {
    child: Child,
    addr: SocketAddr,
}

impl Exporter {
    fn start(dir: &std::path::Path, n: usize, target: SocketAddr) -> (Self, Duration) {
        let mut cfg = format!(
            "defaults: {{interval: {}s, timeout: 5s}}\nmax_concurrent_runs: 256\nchecks:\n",
            interval_secs(n)
        );
        for i in 0..n {
            cfg.push_str(&format!(
                "  - {{name: tcp_{i}, kind: tcp, address: \"{target}\"}}\n"
            ));
        }
        let path = dir.join(format!("bench-{n}.yaml"));
        std::fs::write(&path, cfg).unwrap();
        let addr = free_port();
        let started = Instant::now();
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
        while started.elapsed() < Duration::from_secs(120) {
            if TcpStream::connect(addr).is_ok() {
                return (e, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the exporter did not listen within 120 s");
    }

    /// One scrape as Prometheus makes it (gzip), decompressed.
    fn scrape(&self) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        .unwrap();
        let mut response = Vec::new();
        s.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response");
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let mut body = String::new();
        flate2::read::GzDecoder::new(&response[split + 4..])
            .read_to_string(&mut body)
            .expect("a gzip body");
        format!("{head}\r\n\r\n{body}")
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

    fn wait_for_runs(&self, n: f64, interval: u64) -> Duration {
        let start = Instant::now();
        let limit = Duration::from_secs(2 * interval + 60);
        while self.runs_total() < n {
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                start.elapsed() < limit,
                "checks did not all run within {limit:?}"
            );
        }
        start.elapsed()
    }

    /// The upper bound of the histogram bucket holding the 99th percentile
    /// of schedule lag (the exporter's own histogram, so a bucket bound).
    fn schedule_lag_p99(&self) -> String {
        let body = self.scrape();
        let buckets: Vec<(String, f64)> = body
            .lines()
            .filter_map(|l| l.strip_prefix("runbook_exporter_schedule_lag_seconds_bucket{le=\""))
            .filter_map(|l| {
                let (le, rest) = l.split_once('"')?;
                Some((le.to_string(), rest.rsplit_once(' ')?.1.parse().ok()?))
            })
            .collect();
        let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
        match buckets.iter().find(|(_, count)| *count >= 0.99 * total) {
            Some((le, _)) if total > 0.0 => format!("<= {le} s ({total} runs)"),
            _ => "no runs recorded".into(),
        }
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
        ticks / rustix::param::clock_ticks_per_second() as f64
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
