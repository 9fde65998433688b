//! Sharding through the real binary: three replicas on one config run
//! every check exactly once between them, `--shard auto` takes a
//! StatefulSet pod's ordinal from its host name, and a bad shard is refused
//! with the parameter named.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{closed_port, get, sample, tcp_target};

const CHECKS: usize = 30;

/// A `serve` process, killed when the test ends however it ends.
struct Replica {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(config: &std::path::Path, shard: &str, hostname: Option<&str>) -> Replica {
    let addr = closed_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook-exporter"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .args(["--web.listen-address", &addr.to_string()])
        .args(["--shard", shard, "--total-shards", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(h) = hostname {
        cmd.env("HOSTNAME", h);
    }
    Replica {
        child: cmd.spawn().expect("the binary starts"),
        addr,
    }
}

/// Scrape `r` until every check it owns has run at least once (its runs
/// counter is at least 1 and it shows its shard), or panic after 20 s.
fn settled_scrape(r: &Replica) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Until the replica listens, a connection is refused.
        if std::net::TcpStream::connect(r.addr).is_ok() {
            let body = get(r.addr, "/metrics").body;
            let owned = owned_checks(&body);
            let all_ran = owned.values().all(|runs| *runs >= 1.0);
            if body.contains("runbook_exporter_shard_info") && !owned.is_empty() && all_ran {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica on {} did not serve a run of each of its checks within 20 s",
            r.addr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The checks a scrape shows, with their runs counter.
fn owned_checks(body: &str) -> BTreeMap<String, f64> {
    (0..CHECKS)
        .map(|i| format!("shard_check_{i}"))
        .filter_map(|name| {
            let runs = sample(
                body,
                "runbook_check_runs_total",
                &format!("check=\"{name}\""),
            )?;
            Some((name, runs))
        })
        .collect()
}

#[test]
fn three_shards_run_every_check_exactly_once_between_them() {
    let target = tcp_target();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let mut config = String::from("defaults: {interval: 500ms, timeout: 400ms}\nchecks:\n");
    for i in 0..CHECKS {
        config.push_str(&format!(
            "  - {{name: shard_check_{i}, kind: tcp, address: \"{target}\"}}\n"
        ));
    }
    std::fs::write(&path, config).unwrap();

    let replicas: Vec<Replica> = (0..3)
        .map(|i| replica(&path, &i.to_string(), None))
        .collect();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in replicas.iter().enumerate() {
        let body = settled_scrape(r);
        assert_eq!(
            sample(
                &body,
                "runbook_exporter_shard_info",
                &format!("shard=\"{i}\",total_shards=\"3\"")
            ),
            Some(1.0),
            "replica {i} says which shard it is"
        );
        for name in owned_checks(&body).into_keys() {
            if let Some(other) = owner.insert(name.clone(), i) {
                panic!("{name} runs on shards {other} and {i}");
            }
        }
    }
    assert_eq!(owner.len(), CHECKS, "every check runs somewhere: {owner:?}");
    for i in 0..3 {
        assert!(
            owner.values().any(|s| *s == i),
            "shard {i} runs no check: {owner:?}"
        );
    }

    // A StatefulSet pod named ...-1 is shard 1: the same checks as above.
    let auto = replica(&path, "auto", Some("runbook-exporter-1"));
    let body = settled_scrape(&auto);
    let mine: Vec<String> = owned_checks(&body).into_keys().collect();
    let expected: Vec<String> = owner
        .iter()
        .filter(|(_, s)| **s == 1)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(mine, expected);
}

#[test]
fn a_bad_shard_is_refused_with_the_parameter_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "checks: []\n").unwrap();
    // Bounded: coreutils' timeout ends it (exit 124) if it ever serves.
    let out = Command::new("timeout")
        .args([
            "--kill-after=5s",
            "30s",
            env!("CARGO_BIN_EXE_runbook-exporter"),
        ])
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--shard", "3", "--total-shards", "3"])
        .args(["--web.listen-address", &closed_port().to_string()])
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--shard: 3 is not below --total-shards 3"),
        "{stderr}"
    );
}
