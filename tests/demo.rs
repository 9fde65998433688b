//! The first five minutes: `scripts/demo.sh` against the running test
//! services (every check of config/demo.yaml up, then a clean stop that
//! leaves none of its processes behind), and the reasons a newcomer sees in
//! `check` and `serve`: self-checks skipped in `check`, kubernetes outside
//! a cluster, Kafka connection refused.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{closed_port, exporter, output_within, sample, try_request, Exporter};

const CHECKS: usize = 12;

/// The demo script's process group, killed if the test ends early.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn demo_is_green_within_one_interval_and_stops_cleanly() {
    let state = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| closed_port().port()).collect();
    let root = env!("CARGO_MANIFEST_DIR");
    let log = state.path().join("demo.out");
    let child = Command::new(format!("{root}/scripts/demo.sh"))
        .env("DEMO_BINARY", env!("CARGO_BIN_EXE_runbook-exporter"))
        .env("DEMO_STATE", state.path())
        .env("DEMO_PORT", ports[0].to_string())
        .env("DEMO_PROM_PORT", ports[1].to_string())
        .env("DEMO_AM_PORT", ports[2].to_string())
        .env("DEMO_HOOK_PORT", ports[3].to_string())
        .env("DEMO_INTERVAL", "3s")
        .env("DEMO_TIMEOUT", "2s")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(state.path().join("demo.err")).unwrap())
        .process_group(0)
        .spawn()
        .expect("scripts/demo.sh starts");
    let mut demo = Demo(child);
    let addr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let output = || std::fs::read_to_string(state.path().join("demo.err")).unwrap_or_default();

    // services.sh up leaves running services alone; the first run of every
    // check is within one 3s interval of the start.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        if let Ok(resp) = try_request(addr, "GET", "/metrics", &[]) {
            let up = resp
                .body
                .lines()
                .filter(|l| l.starts_with("runbook_check_up{") && l.ends_with(" 1.0"))
                .count();
            if up == CHECKS {
                break;
            }
            last = resp.body;
        }
        assert!(
            demo.0.try_wait().unwrap().is_none(),
            "demo.sh exited early:\n{}",
            output()
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for all {CHECKS} demo checks up\n{}\n{}",
            last.lines()
                .filter(|l| l.starts_with("runbook_check_up{"))
                .collect::<Vec<_>>()
                .join("\n"),
            output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The demo Prometheus loaded the shipped rules and scrapes the exporter.
    let prom = format!("127.0.0.1:{}", ports[1]).parse().unwrap();
    let rules = try_request(prom, "GET", "/api/v1/rules", &[]).expect("demo Prometheus answers");
    assert!(rules.body.contains("RunbookRedisDown"), "{}", rules.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let targets = try_request(prom, "GET", "/api/v1/targets", &[]).expect("targets");
        if targets.body.contains("\"health\":\"up\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "demo Prometheus never scraped the exporter: {}",
            targets.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let pids: Vec<String> = ["exporter", "prometheus", "alertmanager", "receiver"]
        .iter()
        .map(|p| {
            std::fs::read_to_string(state.path().join(format!("{p}.pid")))
                .unwrap_or_else(|e| panic!("{p}.pid: {e}"))
                .trim()
                .to_owned()
        })
        .collect();
    assert!(pids.iter().all(|p| alive(p)), "demo processes {pids:?}");

    // SIGTERM to the script alone: it must stop what it started.
    let ok = Command::new("kill")
        .args(["-TERM", &demo.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while demo.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "demo.sh did not exit within 30s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "left running after demo.sh stopped: {:?}",
            pids.iter().filter(|p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "something still listens on the demo port"
    );
}

fn check_json(args: &[&str], what: &str) -> (Option<i32>, serde_json::Value, String) {
    let out = output_within(
        exporter()
            .arg("check")
            .args(args)
            .args(["-o", "json"])
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env_remove("KUBECONFIG")
            .env_remove("RUNBOOK_LISTEN_ADDRESS"),
        Duration::from_secs(60),
        what,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_skips_self_checks_and_kubernetes_outside_a_cluster_is_auth() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml");
    let (code, json, stderr) = check_json(
        &[
            "-c",
            example,
            "--check",
            "exporter_health",
            "--check",
            "exporter_metrics",
            "--check",
            "exporter_port",
            "--check",
            "api_pods",
        ],
        "check of the self-checks and api_pods",
    );
    assert_eq!(code, Some(1), "{json}\n{stderr}");
    for name in ["exporter_health", "exporter_metrics", "exporter_port"] {
        assert!(
            stderr.contains(&format!("skipped {name}: a self-check")),
            "{stderr}"
        );
    }
    let results = json.as_array().unwrap();
    assert_eq!(results.len(), 1, "only api_pods runs: {json}");
    assert_eq!(results[0]["name"], "api_pods");
    assert_eq!(results[0]["reason"], "auth", "{json}");
    let message = results[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("not in a Kubernetes cluster and no `kubeconfig` set"),
        "{message}"
    );

    // Only self-checks selected: nothing fails, exit 0.
    let (code, json, _) = check_json(
        &["-c", example, "--check", "exporter_port"],
        "self-check only",
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json.as_array().unwrap().len(), 0);

    // On another listen port they are ordinary checks again (and refused).
    let (code, json, _) = check_json(
        &[
            "-c",
            example,
            "--check",
            "exporter_port",
            "--web.listen-address",
            "127.0.0.1:1",
        ],
        "self-check on another port",
    );
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json[0]["reason"], "connection_refused", "{json}");
}

#[test]
fn kafka_connection_refused_in_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let broker = closed_port();
    let path = dir.path().join("kafka.yaml");
    std::fs::write(
        &path,
        format!("checks:\n  - name: kafka_down\n    kind: kafka\n    brokers: [\"{broker}\"]\n    interval: 2s\n    timeout: 1s\n"),
    )
    .unwrap();
    let config = path.display().to_string();
    let (code, json, _) = check_json(&["-c", &config], "check of a refused kafka");
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json[0]["reason"], "connection_refused", "{json}");

    let serve = Exporter::serve(&["--config", &config]);
    let body = serve.wait_for_metrics(Duration::from_secs(30), "a refused kafka run", |b| {
        sample(
            b,
            "runbook_check_failures_total",
            "reason=\"connection_refused\"",
        )
        .unwrap_or(0.0)
            >= 1.0
    });
    assert_eq!(
        sample(&body, "runbook_check_failures_total", "reason=\"timeout\""),
        Some(0.0),
        "{body}"
    );
    serve.stop();
}
