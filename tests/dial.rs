//! The shared dial path of the `http` and `tcp` kinds as the binary runs it
//! (`runbook-exporter check`), with name resolution kept on loopback: the
//! binary runs in a private mount namespace (`unshare --mount`, as root)
//! where the test's own `/etc/hosts` and `/etc/resolv.conf` replace the
//! system's, so names resolve to loopback addresses and DNS queries go to
//! a name server the test runs on a 127.53.x.y address, never off the
//! machine. Blackholes are real: a listener with `listen(1)` whose queue
//! is full, so the kernel drops further SYNs and a connect hangs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use serde_json::Value;

/// A listener that never accepts, with its queue full: connects to it hang.
struct Blackhole {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _held: Vec<TcpStream>,
}

/// A blackhole on `ip`, on a port that is also free on `also_free_on` (so
/// a working server can take the same port there).
async fn blackhole(ip: &str, also_free_on: &str) -> (Blackhole, TcpListener) {
    for _ in 0..20 {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let bind = SocketAddr::new(ip, 0);
        let socket = if bind.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .unwrap();
        socket.bind(bind).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let other: std::net::IpAddr = also_free_on.parse().unwrap();
        let Ok(working) = TcpListener::bind(SocketAddr::new(other, addr.port())) else {
            continue;
        };
        let mut held = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(stream) => held.push(stream),
                Err(_) => {
                    let hole = Blackhole {
                        addr,
                        _listener: listener,
                        _held: held,
                    };
                    return (hole, working);
                }
            }
        }
        panic!("the queue of {addr} never filled after 16 connections: no blackhole");
    }
    panic!("no port free on both {ip} and {also_free_on} after 20 tries");
}

/// Answer every connection on `listener` with a 200 (for http) or just
/// accept and close it (tcp), in a background thread.
fn serve_ok(listener: TcpListener) {
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = [0u8; 2048];
            let _ = conn.read(&mut head);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
}

/// Names the test's name server was asked, in order.
type Asked = Arc<Mutex<Vec<String>>>;

/// A name server on a 127.53.x.y address (port 53, as resolv.conf has no
/// port) that answers NXDOMAIN to everything and notes each name asked.
fn nxdomain_server() -> (String, Asked) {
    let asked: Asked = Arc::default();
    let pid = std::process::id();
    for attempt in 0..50u32 {
        let ip = format!("127.53.{}.{}", (pid + attempt) % 250 + 1, attempt % 250 + 1);
        let Ok(socket) = UdpSocket::bind(format!("{ip}:53")) else {
            continue;
        };
        let log = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::new();
                reply
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(query.op_code())
                    .set_recursion_desired(query.recursion_desired())
                    .set_recursion_available(true)
                    .set_response_code(ResponseCode::NXDomain)
                    .add_queries(query.queries().to_vec());
                for q in query.queries() {
                    log.lock().unwrap().push(q.name().to_ascii());
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer);
                }
            }
        });
        return (ip, asked);
    }
    panic!("no free 127.53.x.y:53 for the test's name server");
}

/// Run `runbook-exporter check -o json` on `config` in a private mount
/// namespace with `hosts` as /etc/hosts and a resolv.conf naming only
/// `nameserver`; the JSON results, by check name.
fn check_in_namespace(dir: &Path, config: &str, hosts: &str, nameserver: &str) -> Vec<Value> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let config = write("config.yaml", config);
    let hosts = write("hosts", hosts);
    let resolv = write(
        "resolv.conf",
        &format!("nameserver {nameserver}\noptions timeout:1 attempts:1\n"),
    );
    let script = "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf \
                  && shift 2 && exec \"$@\"";
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&hosts)
        .arg(&resolv)
        .arg(env!("CARGO_BIN_EXE_runbook-exporter"))
        .args(["check", "-o", "json", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs (util-linux, as root)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("runbook-exporter check did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let results: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("check printed no JSON ({e}); stdout: {stdout}; stderr: {stderr}")
    });
    results.as_array().cloned().expect("a JSON array")
}

fn result<'a>(results: &'a [Value], name: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no result for {name}: {results:?}"))
}

#[tokio::test]
async fn a_blackholed_ipv6_address_before_a_working_ipv4_one_passes_both_kinds() {
    let (hole, working) = blackhole("::1", "127.0.0.1").await;
    let port = hole.addr.port();
    serve_ok(working);
    let (nameserver, _asked) = nxdomain_server();
    let dir = tempfile::tempdir().unwrap();
    // The resolver sorts ::1 before 127.0.0.1 (RFC 6724), so the
    // blackholed address comes first, as a broken IPv6 path does.
    let hosts = "::1 dual.test\n127.0.0.1 dual.test\n";
    // Sequential connects would wait on [::1] until the 3 s timeout.
    let config = format!(
        "checks:
  - name: tcp_auto
    kind: tcp
    address: dual.test:{port}
    timeout: 3s
  - name: http_auto
    kind: http
    url: http://dual.test:{port}/
    timeout: 3s
  - name: tcp_ip4
    kind: tcp
    address: dual.test:{port}
    ip_protocol: ip4
    timeout: 3s
  - name: tcp_ip6
    kind: tcp
    address: dual.test:{port}
    ip_protocol: ip6
    connect_timeout: 500ms
    timeout: 3s
  - name: http_ip6
    kind: http
    url: http://dual.test:{port}/
    ip_protocol: ip6
    connect_timeout: 500ms
    timeout: 3s
"
    );
    let results = check_in_namespace(dir.path(), &config, hosts, &nameserver);

    for name in ["tcp_auto", "http_auto", "tcp_ip4"] {
        let r = result(&results, name);
        assert_eq!(r["status"], "ok", "{r}");
    }
    // Only the blackholed address is left: its own deadline ends the run
    // with the address named, before the check's timeout.
    for name in ["tcp_ip6", "http_ip6"] {
        let r = result(&results, name);
        assert_eq!(r["reason"], "timeout", "{r}");
        let message = r["message"].as_str().unwrap();
        assert_eq!(
            message,
            format!("connect to [::1]:{port} failed: no answer within 500ms (connect_timeout)"),
        );
    }
}

#[tokio::test]
async fn an_unresolvable_host_is_a_dns_failure_for_http_and_tcp() {
    let (nameserver, asked) = nxdomain_server();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("nx-{}.invalid", std::process::id());
    let config = format!(
        "checks:
  - name: tcp_nx
    kind: tcp
    address: {name}:443
    timeout: 5s
  - name: http_nx
    kind: http
    url: https://{name}/health
    timeout: 5s
"
    );
    let results = check_in_namespace(dir.path(), &config, "127.0.0.1 localhost\n", &nameserver);

    for check in ["tcp_nx", "http_nx"] {
        let r = result(&results, check);
        assert_eq!(r["reason"], "dns", "{r}");
        let message = r["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("cannot resolve {name}: ")),
            "{message}"
        );
    }
    // The queries went to the loopback name server, which answered them.
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked.iter().any(|q| q.trim_end_matches('.') == name),
        "the name server was not asked for {name}: {asked:?}"
    );
}
