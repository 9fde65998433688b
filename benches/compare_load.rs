//! The load client and loopback targets of `benches/compare.sh`: prints
//! figures, asserts nothing. Run through the script, not alone:
//!
//! - `compare_load targets N SECONDS`: N TCP listeners on free loopback
//!   ports that accept and close (what a tcp probe connects to) and an HTTP
//!   server answering `200 ok` (what an http probe fetches), for at most
//!   SECONDS. Prints `tcp_ports=P1,P2,.. http_port=P` once they listen.
//! - `compare_load load URL REQUESTS CONCURRENCY PID...`: send REQUESTS GETs
//!   of URL, with the `Accept` header Prometheus sends, over CONCURRENCY
//!   keep-alive connections (one each, requests in sequence), then print one
//!   line: `ok=.. failed=.. p50_ms=.. p99_ms=.. cpu_s=..`, where cpu_s is
//!   the user + system CPU time the processes PID spent meanwhile (from
//!   /proc/PID/stat). In URL, `{port}` cycles through the ports
//!   `COMPARE_PORTS=P1,P2,..` lists, so probes spread over several
//!   listeners.
//! - `compare_load connect N`: N plain connects and closes to the listeners
//!   `COMPARE_PORTS` lists, one after another, then `ok=.. failed=..
//!   cpu_s=..` with this process's own CPU time: the floor under any tcp
//!   probe, the kernel's work for the loopback handshake and close.
//!
//! Every loop is bounded: a fixed number of requests, a timeout on each.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The most one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Accept` header Prometheus 2.42 (Debian's) sends on every scrape,
/// captured from a real one; each exporter answers in the format it would
/// serve Prometheus.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match args.first().map(String::as_str) {
        Some("targets") if args.len() == 3 => {
            let num = |i: usize| args[i].parse::<u64>().expect("a number");
            rt.block_on(targets(num(1) as usize, num(2)));
        }
        Some("connect") if args.len() == 2 => {
            connect_floor(args[1].parse().expect("a number"));
        }
        Some("load") if args.len() >= 4 => {
            let num = |i: usize| args[i].parse::<usize>().expect("a number");
            let pids: Vec<u32> = args[4..]
                .iter()
                .map(|p| p.parse().expect("a pid"))
                .collect();
            rt.block_on(load(&args[1], num(2), num(3).max(1), &pids));
        }
        _ => eprintln!(
            "compare_load: a helper of benches/compare.sh\n  \
             compare_load targets N SECONDS\n  \
             compare_load load URL REQUESTS CONCURRENCY PID...\n  \
             compare_load connect N"
        ),
    }
}

async fn targets(n: usize, seconds: u64) {
    let mut ports = Vec::new();
    for _ in 0..n.max(1) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("listen on 127.0.0.1: {e}"));
        ports.push(
            listener
                .local_addr()
                .expect("an address")
                .port()
                .to_string(),
        );
        tokio::spawn(async move {
            loop {
                if let Ok((conn, _)) = listener.accept().await {
                    drop(conn);
                }
            }
        });
    }
    let http = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("listen on 127.0.0.1: {e}"));
    let http_port = http.local_addr().expect("an address").port();
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = http.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"ok\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    println!("tcp_ports={} http_port={http_port}", ports.join(","));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

/// User + system CPU seconds of `pid` (all its threads), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The command name may hold spaces; fields count from after its ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); rest starts at 3.
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    let hz = rustix::param::clock_ticks_per_second() as f64;
    match (ticks(14), ticks(15)) {
        (Some(u), Some(s)) => (u + s) / hz,
        _ => f64::NAN,
    }
}

/// `n` blocking connects and closes, spread over the `COMPARE_PORTS`
/// listeners; prints how many worked and the CPU this process spent.
fn connect_floor(n: usize) {
    let (_, ports) = spread("");
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().expect("a port"))
        .collect();
    assert!(!addrs.is_empty(), "COMPARE_PORTS lists no port");
    let cpu0 = cpu_seconds(std::process::id());
    let mut failed = 0;
    for i in 0..n {
        match std::net::TcpStream::connect_timeout(&addrs[i % addrs.len()], REQUEST_TIMEOUT) {
            Ok(conn) => drop(conn),
            Err(_) => failed += 1,
        }
    }
    let cpu = cpu_seconds(std::process::id()) - cpu0;
    println!("ok={} failed={failed} cpu_s={cpu:.3}", n - failed);
}

async fn load(url: &str, requests: usize, concurrency: usize, pids: &[u32]) {
    let (url, ports) = spread(url);
    let uri: hyper::Uri = url.replace("{port}", "0").parse().expect("a URL");
    let addr: SocketAddr = format!(
        "{}:{}",
        uri.host().expect("a host"),
        uri.port_u16().unwrap_or(80)
    )
    .parse()
    .expect("an IP address and port");
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, url, ports) = (next.clone(), url.clone(), ports.clone());
        workers.push(tokio::spawn(async move {
            worker(addr, &url, ports, requests, &next).await
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut failed = 0;
    for w in workers {
        let (ok, bad) = w.await.expect("worker");
        latencies.extend(ok);
        failed += bad;
    }
    let cpu: f64 = pids
        .iter()
        .zip(&cpu0)
        .map(|(&p, c0)| cpu_seconds(p) - c0)
        .sum();
    latencies.sort();
    let q = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
        latencies[i].as_secs_f64() * 1e3
    };
    println!(
        "ok={} failed={failed} p50_ms={:.3} p99_ms={:.3} cpu_s={cpu:.3}",
        latencies.len(),
        q(0.5),
        q(0.99)
    );
}

/// The URL and the ports `{port}` in it cycles through, from
/// `COMPARE_PORTS=P1,P2,..`.
fn spread(url: &str) -> (String, Arc<Vec<String>>) {
    let ports = std::env::var("COMPARE_PORTS").unwrap_or_default();
    let ports = ports
        .split(',')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    (url.to_string(), Arc::new(ports))
}

/// Send requests on one keep-alive connection until `requests` have been
/// taken (reconnecting if the server closes it); returns the latencies of
/// the successful ones and the number that failed.
async fn worker(
    addr: SocketAddr,
    url: &str,
    ports: Arc<Vec<String>>,
    requests: usize,
    next: &AtomicUsize,
) -> (Vec<Duration>, usize) {
    let mut ok = Vec::new();
    let mut failed = 0;
    let mut sender = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= requests {
            return (ok, failed);
        }
        if sender.is_none() {
            sender = connect(addr).await;
        }
        let Some(s) = sender.as_mut() else {
            failed += 1;
            continue;
        };
        let path = match ports.get(i % ports.len().max(1)) {
            Some(port) => url.replace("{port}", port),
            None => url.to_string(),
        };
        let started = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, send(s, &path)).await {
            Ok(Ok(true)) => ok.push(started.elapsed()),
            Ok(Ok(false)) => failed += 1,
            _ => {
                failed += 1;
                sender = None;
            }
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let tcp = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    tcp.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// One GET; whether it answered 200 (the body is read in full).
async fn send(sender: &mut Sender, url: &str) -> hyper::Result<bool> {
    sender.ready().await?;
    let uri: hyper::Uri = url.parse().expect("a URL");
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let req = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, PROMETHEUS_ACCEPT)
        .body(Empty::new())
        .expect("a request");
    let response = sender.send_request(req).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status == hyper::StatusCode::OK)
}
