//! The shared test services of `scripts/services.sh`, for tests that stop
//! and start them: the script run under a time limit, a guard that starts
//! the stopped services again however the test ends, and the ports the
//! script's header lists.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `scripts/services.sh CMD NAMES...` (no names: every service), ended by
/// coreutils' `timeout` after `limit`; whether it succeeded in time.
pub fn try_services(cmd: &str, names: &[&str], limit: Duration) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
    Command::new("timeout")
        .args(["--kill-after=5s", &format!("{}s", limit.as_secs())])
        .arg(script)
        .arg(cmd)
        .args(names)
        .status()
        .is_ok_and(|s| s.success())
}

/// [`try_services`], failing the test when the script fails or runs out
/// of time.
pub fn services(cmd: &str, names: &[&str], limit: Duration) {
    assert!(
        try_services(cmd, names, limit),
        "scripts/services.sh {cmd} {} failed or ran longer than {limit:?}",
        names.join(" ")
    );
}

/// Services stopped until this is dropped: `scripts/services.sh up` runs
/// again (bounded by `restore_limit`) even when the test panics, so no
/// later test finds them down.
pub struct ServicesDown {
    names: Vec<String>,
    restore_limit: Duration,
}

impl ServicesDown {
    /// Stop `names` (none: every service). The guard exists before the
    /// script runs, so a `down` that fails half-way is restored too.
    pub fn stop(names: &[&str], restore_limit: Duration) -> Self {
        let guard = ServicesDown {
            names: names.iter().map(|n| n.to_string()).collect(),
            restore_limit,
        };
        services("down", names, Duration::from_secs(300));
        guard
    }
}

impl Drop for ServicesDown {
    fn drop(&mut self) {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        if std::thread::panicking() {
            // A second panic would abort the test binary: report only.
            if !try_services("up", &names, self.restore_limit) {
                eprintln!("scripts/services.sh up {} failed", names.join(" "));
            }
        } else {
            services("up", &names, self.restore_limit);
        }
    }
}

/// Every port in the service table of `scripts/services.sh`'s header
/// (ranges like `59291-59293` expanded).
pub fn service_ports() -> Vec<u16> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    let text = std::fs::read_to_string(script).unwrap();
    let table = text
        .lines()
        .skip_while(|l| !l.starts_with("#   service "))
        .skip(1)
        .take_while(|l| l.starts_with("#   "));
    let mut ports = Vec::new();
    for line in table {
        let cleaned: String = line
            .chars()
            .map(|c| {
                if c.is_ascii_digit() || c == '-' {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        for word in cleaned.split_whitespace() {
            let mut ends = word.split('-').filter_map(|p| p.parse::<u16>().ok());
            match (ends.next(), ends.next()) {
                (Some(a), Some(b)) if a >= 1024 => ports.extend(a..=b),
                (Some(a), None) if a >= 1024 => ports.push(a),
                _ => {}
            }
        }
    }
    assert!(ports.len() > 10, "no port table in {script}: {ports:?}");
    ports
}

/// Whether something accepts connections on 127.0.0.1:`port` now.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Wait (bounded by `limit`) until none of `ports` accepts connections.
pub fn wait_ports_closed(ports: &[u16], limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let open: Vec<u16> = ports.iter().copied().filter(|p| port_open(*p)).collect();
        if open.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still listening on 127.0.0.1 after {limit:?}: {open:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
