//! Child processes of the tests, every one bounded: the exporter binary
//! (`serve` in the background, killed when the test ends however it ends,
//! restarted on another port if its port was taken meanwhile) and one-shot
//! commands run to completion under a time limit (`check`, `validate`,
//! Chromium), killed with their whole process group when it runs out.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{closed_port, try_request};

/// The exporter binary under test.
pub fn exporter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_runbook-exporter"))
}

/// Send `signal` (a name such as `HUP`) to the process group `pgid`, or to
/// one process when `group` is false.
fn send_signal(pid: u32, group: bool, signal: &str) -> bool {
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    Command::new("kill")
        .args([&format!("-{signal}"), "--", &target])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Wait for `child` to exit, up to `limit`; `None` if it is still running.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `cmd` to completion in its own process group, its output captured
/// in files (so no pipe can block it). After `limit` the whole group is
/// killed and the test fails, naming `what` and showing the output so far.
pub fn output_within(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let status = wait_bounded(&mut child, limit);
    let read = |p: &Path| std::fs::read(p).unwrap_or_default();
    match status {
        Some(status) => {
            // Anything the command left behind in its group goes too.
            send_signal(child.id(), true, "KILL");
            Output {
                status,
                stdout: read(&out_path),
                stderr: read(&err_path),
            }
        }
        None => {
            send_signal(child.id(), true, "KILL");
            let _ = child.wait();
            panic!(
                "{what}: still running after {limit:?}, killed\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&read(&out_path)),
                String::from_utf8_lossy(&read(&err_path))
            );
        }
    }
}

/// Run the exporter with `args` to completion, bounded by 60 s.
pub fn run_exporter<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    output_within(
        exporter().args(args),
        Duration::from_secs(60),
        &format!("runbook-exporter {}", shown.join(" ")),
    )
}

/// `runbook-exporter serve` in the background on a free loopback port, its
/// output in a log file. Killed (and reaped) when dropped, so a failing
/// test leaves no server behind.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// How long the exporter may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(30);

impl Exporter {
    /// `serve --web.listen-address ADDR` plus `args`, on a free port.
    pub fn serve<S: AsRef<OsStr>>(args: &[S]) -> Self {
        Self::start(|cmd, addr| {
            cmd.arg("serve")
                .args(args)
                .args(["--web.listen-address", &addr.to_string()]);
        })
    }

    /// Start the exporter as `setup` arranges the command (arguments,
    /// environment) for the free port it is given, and wait until it
    /// listens. A free port can be taken by another process between the
    /// test choosing it and the exporter binding it; then the exporter
    /// exits with "cannot listen" and is started again on another port.
    pub fn start(setup: impl Fn(&mut Command, SocketAddr)) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("exporter.log");
            let addr = closed_port();
            let mut cmd = exporter();
            setup(&mut cmd, addr);
            let file = std::fs::File::create(&log).unwrap();
            let child = cmd
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("the exporter binary starts");
            let mut me = Self {
                child,
                addr,
                log,
                _dir: dir,
            };
            match me.wait_listening() {
                Ok(()) => return me,
                Err(logs) if logs.contains("cannot listen") => last = logs,
                Err(logs) => panic!("the exporter exited before listening on {addr}:\n{logs}"),
            }
        }
        panic!("the exporter could not listen on 5 free ports in a row:\n{last}");
    }

    /// Wait until the exporter accepts connections; `Err(logs)` if it exits.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("{status}\n{}", self.logs()));
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "the exporter did not listen on {} within {START_LIMIT:?}:\n{}",
                self.addr,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the exporter has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        assert!(
            send_signal(self.child.id(), false, name),
            "kill -{name} {}",
            self.child.id()
        );
    }

    /// Scrape `/metrics` until `cond` holds on the body; panic after
    /// `limit`, saying what was awaited, with the last body and the logs.
    pub fn wait_for_metrics(
        &self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        loop {
            if let Ok(resp) = try_request(self.addr, "GET", "/metrics", &[]) {
                if cond(&resp.body) {
                    return resp.body;
                }
                last = resp.body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}\nlast /metrics:\n{last}\nlogs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait (bounded by `limit`) for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration, what: &str) -> ExitStatus {
        wait_bounded(&mut self.child, limit).unwrap_or_else(|| {
            panic!(
                "the exporter did not exit within {limit:?} ({what}):\n{}",
                self.logs()
            )
        })
    }

    /// SIGTERM, then require a clean exit (0) within 10 s.
    pub fn stop(mut self) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(10), "after SIGTERM");
        assert_eq!(status.code(), Some(0), "{}", self.logs());
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
