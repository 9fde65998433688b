//! The `kafka` kind against the three-node KRaft cluster of
//! `scripts/services.sh up kafka_cluster`: one broker killed mid-run (the
//! check goes on, reports that broker down within one run, keeps the lag of
//! every partition with a live leader, counts the leaderless ones as
//! unreadable, and sees the broker up again after its restart), one broker
//! hung by SIGSTOP (down, while the healthy ones stay up with their lag;
//! up again after SIGCONT, which a guard sends even on panic), and
//! SCRAM-SHA-512, and TLS. The killed broker is started again even when the test
//! panics.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_support::{unique, Admin};
use runbook_exporter::checks::{Check, Reason, RunContext, Sample};

#[path = "kafka_support/mod.rs"]
mod kafka_support;

fn env(var: &str) -> String {
    common::service_env(var, "kafka_cluster")
}

fn brokers() -> String {
    env("RUNBOOK_TEST_KAFKA_CLUSTER_BROKERS")
}

/// The tests of this file take turns: one of them kills a broker, which
/// the others must not see (nextest runs each alone anyway).
static TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One run within its 5 s timeout; the samples whether it passed or not.
async fn run(check: &dyn Check) -> (bool, Vec<Sample>) {
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    match tokio::time::timeout(Duration::from_secs(10), check.run(&ctx))
        .await
        .expect("a kafka run ended within 10 s")
    {
        Ok(s) => (true, s),
        Err(f) => (false, f.samples),
    }
}

/// Run `check` until it passes with all three brokers in the metadata: a
/// broker an earlier test restarted may take a few seconds to be listed
/// again. Panics after 60 s with the last run's samples.
async fn run_with_all_brokers(check: &dyn Check, what: &str) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, samples) = run(check).await;
        if ok && value(&samples, "kafka_brokers", &[]) == Some(3.0) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no passing run listing 3 brokers within 60 s: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Run `check` until broker `broker` is up again, or panic after `limit`
/// naming what should have brought it back.
async fn wait_broker_up(check: &dyn Check, broker: &str, limit: Duration, after: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let (_, s) = run(check).await;
        if value(&s, "kafka_broker_up", &[("broker", broker)]) == Some(1.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "broker {broker} not up {limit:?} after {after}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.desc.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

/// Node `n` of the cluster killed (SIGKILL) until this is dropped; then it
/// is started again, even when the test panics.
struct NodeDown;

impl NodeDown {
    fn kill(n: i32) -> Self {
        let pid_file = format!(
            "{}/node{n}/kafka.pid",
            env("RUNBOOK_TEST_KAFKA_CLUSTER_STATE")
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{pid_file}: {e}"));
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 node {n}");
        NodeDown
    }
}

impl Drop for NodeDown {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
        let status = Command::new("timeout")
            .arg("240")
            .arg(script)
            .args(["up", "kafka_cluster"])
            .status()
            .expect("run scripts/services.sh");
        assert!(
            status.success(),
            "scripts/services.sh up kafka_cluster failed or took over 240 s"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_broker_is_down_and_the_rest_keeps_its_numbers() {
    let _turn = TURNS.lock().await;
    let admin = Admin::new(&brokers());
    let single = unique("rf1");
    let replicated = unique("rf3");
    let group = unique("cluster-group");
    admin.create_topic(&single, 6, 1);
    admin.create_topic(&replicated, 3, 3);
    for (topic, parts) in [(&single, 6), (&replicated, 3)] {
        for p in 0..parts {
            admin.produce(topic, p, 5);
            admin.commit(&group, topic, p, 1);
        }
    }
    // The victim leads some RF1 partitions and is not the group's coordinator.
    let coordinator = admin.coordinator(&group);
    let leaders = admin.leaders(&single);
    let victim_addr = leaders
        .values()
        .find(|a| **a != coordinator)
        .expect("an RF1 partition led by a broker other than the coordinator")
        .clone();
    let victim: i32 = victim_addr
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<i32>()
        .unwrap()
        - 59290;
    let dead_partitions: Vec<i32> = leaders
        .iter()
        .filter(|(_, a)| **a == victim_addr)
        .map(|(p, _)| *p)
        .collect();
    let check = common::build(&format!(
        "kind: kafka\nbrokers: [{}]\ngroups: [{group}]\ntopics: [{single}, {replicated}]",
        brokers().replace(',', ", ")
    ));
    let (ok, before) = run(check.as_ref()).await;
    assert!(ok, "healthy cluster: {before:?}");
    let g = ("group", group.as_str());
    let v = victim.to_string();
    assert_eq!(
        value(&before, "kafka_broker_up", &[("broker", &v)]),
        Some(1.0)
    );

    {
        // Killed while a run is in flight: that run ends within its bound.
        let (_, _down) = tokio::join!(run(check.as_ref()), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            NodeDown::kill(victim)
        });
        // Within one run after that: the dead broker is down, the process
        // goes on.
        let (ok, first) = run(check.as_ref()).await;
        assert!(!ok, "a run with a dead broker fails by the documented rule");
        assert_eq!(
            value(&first, "kafka_broker_up", &[("broker", &v)]),
            Some(0.0)
        );
        // Poll (bounded) until the cluster re-elected the RF3 leaders: the
        // lag of every partition with a live leader is there, the RF1
        // partitions of the dead broker are counted unreadable.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, s) = run(check.as_ref()).await;
            let lag = |t: &str, p: i32| {
                value(
                    &s,
                    "kafka_consumergroup_lag",
                    &[g, ("topic", t), ("partition", &p.to_string())],
                )
            };
            let live_ok = (0..6)
                .filter(|p| !dead_partitions.contains(p))
                .all(|p| lag(&single, p) == Some(4.0))
                && (0..3).all(|p| lag(&replicated, p) == Some(4.0));
            let unreadable = value(
                &s,
                "kafka_consumergroup_topic_unreadable_partitions",
                &[g, ("topic", single.as_str())],
            );
            if live_ok && unreadable == Some(dead_partitions.len() as f64) {
                assert!(dead_partitions.iter().all(|p| lag(&single, *p).is_none()));
                assert_eq!(value(&s, "kafka_broker_up", &[("broker", &v)]), Some(0.0));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "within 60 s, no run had the lag of every live partition and {} unreadable: {s:?}",
                dead_partitions.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Restarted: up again.
    wait_broker_up(check.as_ref(), &v, Duration::from_secs(90), "its restart").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scram_sha_512_works_and_a_wrong_password_fails_with_auth() {
    let _turn = TURNS.lock().await;
    let brokers = env("RUNBOOK_TEST_KAFKA_CLUSTER_SCRAM_BROKERS");
    let user = env("RUNBOOK_TEST_KAFKA_CLUSTER_SCRAM_USER");
    let password = env("RUNBOOK_TEST_KAFKA_CLUSTER_SCRAM_PASSWORD");
    let yaml = |pw: &str| {
        format!(
            "kind: kafka\nbrokers: [{}]\ntopics: [none]\nsasl:\n  mechanism: SCRAM-SHA-512\n  username: {user}\n  password: {pw}",
            brokers.replace(',', ", ")
        )
    };
    let check = common::build(&yaml(&password));
    run_with_all_brokers(check.as_ref(), "SCRAM-SHA-512 run").await;

    let wrong = "wrong-scram-password-4b1c";
    let check = common::build(&yaml(wrong));
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    let failure = check.run(&ctx).await.expect_err("a wrong password fails");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(!failure.message.contains(wrong));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_the_cluster_ca_works_and_an_unknown_ca_fails_with_tls() {
    let _turn = TURNS.lock().await;
    let brokers = env("RUNBOOK_TEST_KAFKA_CLUSTER_TLS_BROKERS").replace(',', ", ");
    let ca = env("RUNBOOK_TEST_KAFKA_CLUSTER_CA");
    let check = common::build(&format!(
        "kind: kafka\nbrokers: [{brokers}]\ntopics: [none]\ntls: true\ntls_config:\n  ca_file: {ca}"
    ));
    let samples = run_with_all_brokers(check.as_ref(), "TLS run").await;
    for b in ["1", "2", "3"] {
        assert_eq!(
            value(&samples, "kafka_broker_up", &[("broker", b)]),
            Some(1.0)
        );
    }

    // The system roots do not know the test CA.
    let check = common::build(&format!(
        "kind: kafka\nbrokers: [{brokers}]\ntopics: [none]\ntls: true"
    ));
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    let failure = check.run(&ctx).await.expect_err("an unknown CA fails");
    assert_eq!(failure.reason, Reason::Tls, "{}", failure.message);
}

/// Node `n`'s JVM stopped (SIGSTOP: alive, holding its connections, not
/// answering) until this is dropped; then SIGCONT, even when the test
/// panics.
struct NodePaused(String);

impl NodePaused {
    /// `kill -STOP` returns once the signal is queued; the group stop begins
    /// only when one of the JVM's threads is scheduled to take it, and on a
    /// busy machine the others meanwhile go on answering (a CI run once saw
    /// the "hung" broker answer the first probe). So this returns once every
    /// thread is stopped.
    async fn stop(n: i32) -> Self {
        let pid_file = format!(
            "{}/node{n}/kafka.pid",
            env("RUNBOOK_TEST_KAFKA_CLUSTER_STATE")
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{pid_file}: {e}"));
        let pid = pid.trim().to_string();
        let status = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
        assert!(status.success(), "kill -STOP node {n} (pid {pid})");
        let paused = NodePaused(pid);
        let pid = paused.0.as_str();
        common::wait_until(
            Duration::from_secs(10),
            || {
                let states = thread_states(pid);
                !states.is_empty() && states.iter().all(|s| *s == 'T')
            },
            || {
                format!(
                    "node {n} (pid {pid}) stopped by SIGSTOP: thread states {:?}",
                    thread_states(pid)
                )
            },
        )
        .await;
        paused
    }
}

/// The scheduler state (`R`, `S`, `T`, ...) of each thread of process
/// `pid`, from `/proc/PID/task/*/stat`; empty when the process is gone.
fn thread_states(pid: &str) -> Vec<char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        // `TID (COMM) STATE ...`: COMM may hold spaces and parentheses.
        .filter_map(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .collect()
}

impl Drop for NodePaused {
    fn drop(&mut self) {
        let status = Command::new("kill").args(["-CONT", &self.0]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "kill -CONT {} (the paused broker)",
            self.0
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_broker_is_down_and_the_healthy_ones_stay_up_with_their_lag() {
    let _turn = TURNS.lock().await;
    let admin = Admin::new(&brokers());
    let single = unique("hung-rf1");
    let group = unique("hung-group");
    admin.create_topic(&single, 6, 1);
    for p in 0..6 {
        admin.produce(&single, p, 5);
        admin.commit(&group, &single, p, 1);
    }
    let coordinator = admin.coordinator(&group);
    let leaders = admin.leaders(&single);
    let victim_addr = leaders
        .values()
        .find(|a| **a != coordinator)
        .expect("an RF1 partition led by a broker other than the coordinator")
        .clone();
    let node = |addr: &str| addr.rsplit(':').next().unwrap().parse::<i32>().unwrap() - 59290;
    let victim = node(&victim_addr);
    let healthy: Vec<String> = (1..=3)
        .filter(|n| *n != victim)
        .map(|n| n.to_string())
        .collect();
    let healthy_partitions: Vec<i32> = leaders
        .iter()
        .filter(|(_, a)| **a != victim_addr)
        .map(|(p, _)| *p)
        .collect();
    assert!(
        !healthy_partitions.is_empty(),
        "some RF1 partition is led by a healthy broker: {leaders:?}"
    );
    let check = common::build(&format!(
        "kind: kafka\nbrokers: [{}]\ngroups: [{group}]\ntopics: [{single}]",
        brokers().replace(',', ", ")
    ));
    let (ok, before) = run(check.as_ref()).await;
    assert!(ok, "healthy cluster: {before:?}");
    let v = victim.to_string();
    let g = ("group", group.as_str());
    {
        let _paused = NodePaused::stop(victim).await;
        // Two runs while it hangs (each bounded by `run`, well within the
        // broker session timeout, so the pause stays short).
        for i in 0..2 {
            let (_, s) = run(check.as_ref()).await;
            assert_eq!(
                value(&s, "kafka_broker_up", &[("broker", &v)]),
                Some(0.0),
                "run {i}: the hung broker {v} is down: {s:?}"
            );
            for b in &healthy {
                assert_eq!(
                    value(&s, "kafka_broker_up", &[("broker", b)]),
                    Some(1.0),
                    "run {i}: healthy broker {b} is up while {v} hangs: {s:?}"
                );
            }
            for p in &healthy_partitions {
                assert_eq!(
                    value(
                        &s,
                        "kafka_consumergroup_lag",
                        &[g, ("topic", &single), ("partition", &p.to_string())]
                    ),
                    Some(4.0),
                    "run {i}: lag of partition {p} (healthy leader) is exported: {s:?}"
                );
            }
        }
    }
    // Resumed: up again, within a bound.
    wait_broker_up(check.as_ref(), &v, Duration::from_secs(60), "SIGCONT").await;
}
