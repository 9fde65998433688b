//! `scripts/demo.sh` as the demo tests run it: on free loopback ports, in a
//! temporary state directory, with the test build of the exporter and a
//! short interval; waits (each bounded, failing early if the script exits)
//! for every check of config/demo.yaml to be up, and the clean stop the
//! README promises: exit on SIGTERM, none of its processes left, its ports
//! released.
#![allow(dead_code)] // Each demo test binary uses a different subset.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{closed_port, try_request, wait_ports_closed};

/// The checks of config/demo.yaml.
pub const CHECKS: usize = 12;

/// The demo's check interval in the tests, and its run timeout.
pub const INTERVAL: &str = "3s";
const TIMEOUT: &str = "2s";

/// The processes demo.sh starts and records in `DEMO_STATE/NAME.pid`.
const PROCESSES: [&str; 4] = ["exporter", "prometheus", "alertmanager", "receiver"];

/// A running scripts/demo.sh; its process group is killed if the test
/// ends before [`Demo::stop_cleanly`].
pub struct Demo {
    child: Child,
    state: tempfile::TempDir,
    pub exporter: SocketAddr,
    pub prometheus: SocketAddr,
    pub alertmanager: SocketAddr,
    pub receiver: SocketAddr,
}

impl Demo {
    /// Start scripts/demo.sh in its own process group, its output in the
    /// state directory.
    pub fn start() -> Demo {
        let state = tempfile::tempdir().unwrap();
        let ports: Vec<SocketAddr> = (0..4).map(|_| closed_port()).collect();
        let root = env!("CARGO_MANIFEST_DIR");
        let child = Command::new(format!("{root}/scripts/demo.sh"))
            .env("DEMO_BINARY", env!("CARGO_BIN_EXE_runbook-exporter"))
            .env("DEMO_STATE", state.path())
            .env("DEMO_PORT", ports[0].port().to_string())
            .env("DEMO_PROM_PORT", ports[1].port().to_string())
            .env("DEMO_AM_PORT", ports[2].port().to_string())
            .env("DEMO_HOOK_PORT", ports[3].port().to_string())
            .env("DEMO_INTERVAL", INTERVAL)
            .env("DEMO_TIMEOUT", TIMEOUT)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(state.path().join("demo.out")).unwrap())
            .stderr(std::fs::File::create(state.path().join("demo.err")).unwrap())
            .process_group(0)
            .spawn()
            .expect("scripts/demo.sh starts");
        Demo {
            child,
            state,
            exporter: ports[0],
            prometheus: ports[1],
            alertmanager: ports[2],
            receiver: ports[3],
        }
    }

    pub fn state(&self) -> &Path {
        self.state.path()
    }

    /// What demo.sh has printed so far (its log and the exporter's).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.state().join("demo.err")).unwrap_or_default()
    }

    /// Poll `probe` every 200 ms until it returns `Ok`; panic after `limit`
    /// with `what`, the last `Err` and the demo's output, or as soon as
    /// demo.sh exits.
    pub fn wait_for<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let last = match probe() {
                Ok(v) => return v,
                Err(last) => last,
            };
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "demo.sh exited ({status}) while waiting for {what}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}\nlast: {last}\ndemo output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// GET `path` from `addr`, the body of a 200 or the error as a string.
    pub fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
        match try_request(addr, "GET", path, &[]) {
            Ok(r) if r.status == 200 => Ok(r.body),
            Ok(r) => Err(format!("GET {path}: {} {}", r.status, r.body)),
            Err(e) => Err(format!("GET {path} from {addr}: {e}")),
        }
    }

    /// Wait until every check of config/demo.yaml is up, then until the
    /// demo Prometheus has loaded the shipped rules and scraped the
    /// exporter; returns the `/metrics` body.
    pub fn wait_all_up(&mut self, limit: Duration) -> String {
        let exporter = self.exporter;
        let body = self.wait_for(limit, &format!("all {CHECKS} demo checks up"), || {
            let body = Demo::get(exporter, "/metrics")?;
            let up: Vec<&str> = body
                .lines()
                .filter(|l| l.starts_with("runbook_check_up{"))
                .collect();
            let green = up.iter().filter(|l| l.ends_with(" 1.0")).count();
            if green == CHECKS {
                Ok(body)
            } else {
                Err(up.join("\n"))
            }
        });
        let prom = self.prometheus;
        let rules = self.wait_for(
            Duration::from_secs(30),
            "the demo Prometheus' rules",
            || Demo::get(prom, "/api/v1/rules"),
        );
        assert!(rules.contains("RunbookRedisDown"), "{rules}");
        self.wait_for(
            Duration::from_secs(30),
            "the demo Prometheus scraping the exporter",
            || {
                let targets = Demo::get(prom, "/api/v1/targets")?;
                if targets.contains("\"health\":\"up\"") {
                    Ok(())
                } else {
                    Err(targets)
                }
            },
        );
        body
    }

    /// The PIDs demo.sh recorded for its own processes.
    fn pids(&self) -> Vec<String> {
        PROCESSES
            .iter()
            .map(|p| {
                std::fs::read_to_string(self.state().join(format!("{p}.pid")))
                    .unwrap_or_else(|e| panic!("{p}.pid: {e}"))
                    .trim()
                    .to_owned()
            })
            .collect()
    }

    /// SIGTERM to the script alone, as a user's `kill` would send: it must
    /// exit with the shell's status for SIGTERM (143), stop the exporter,
    /// Prometheus, Alertmanager and receiver it started, and free their
    /// ports.
    pub fn stop_cleanly(mut self) {
        let pids = self.pids();
        assert!(pids.iter().all(|p| alive(p)), "demo processes {pids:?}");
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "demo.sh did not exit within 30s of SIGTERM:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(143), "{}", self.output());
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| alive(p)) {
            assert!(
                Instant::now() < deadline,
                "left running after demo.sh stopped: {:?}",
                pids.iter().filter(|p| alive(p)).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let ports: Vec<u16> = [
            self.exporter,
            self.prometheus,
            self.alertmanager,
            self.receiver,
        ]
        .iter()
        .map(|a| a.port())
        .collect();
        wait_ports_closed(&ports, Duration::from_secs(10), "the demo's ports");
        assert!(
            !self.state().join("exporter.pid").exists(),
            "demo.sh left its PID files behind"
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}
