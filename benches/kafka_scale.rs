//! Scale benchmark of the `kafka` kind against the three-node cluster of
//! `scripts/services.sh up kafka_cluster`: 1,000 partitions (10 topics ×
//! 100, replication factor 1, spread over the three brokers) and 100
//! consumer groups, each with committed offsets on the 100 partitions of one
//! topic and lag on all of them. Prints the requests, time and series per
//! run and the memory; asserts only that every group's lag is the expected
//! one, so the figures are of correct runs.
//!
//! Run with `scripts/services.sh up kafka_cluster && eval
//! "$(scripts/services.sh env)" && cargo bench --bench kafka_scale`. It
//! creates the topics once.

use std::time::{Duration, Instant};

use runbook_exporter::checks::{CheckSpec, RunContext};

#[path = "../tests/kafka_support/mod.rs"]
mod kafka_support;

use kafka_support::Admin;

const TOPICS: usize = 10;
const PARTITIONS: i32 = 100;
const GROUPS: usize = 100;
const MESSAGES_PER_PARTITION: i64 = 10;
const COMMITTED: i64 = 4;
const RUNS: usize = 5;

fn brokers() -> String {
    std::env::var("RUNBOOK_TEST_KAFKA_CLUSTER_BROKERS").unwrap_or_else(|_| {
        panic!(
            "RUNBOOK_TEST_KAFKA_CLUSTER_BROKERS not set: run scripts/services.sh up kafka_cluster"
        )
    })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// Create the topics, fill each partition, and commit every group's
/// offsets, unless an earlier run did.
fn setup(admin: &Admin) {
    // Topics are created and filled in order: the last one existing means
    // an earlier run finished the setup.
    if admin
        .leader(&format!("bench-scale-v2-{}", TOPICS - 1), 0)
        .is_some()
    {
        return;
    }
    for t in 0..TOPICS {
        let topic = format!("bench-scale-v2-{t}");
        admin.create_topic(&topic, PARTITIONS, 1);
        for p in 0..PARTITIONS {
            admin.produce(&topic, p, MESSAGES_PER_PARTITION as usize);
        }
    }
    for g in 0..GROUPS {
        let topic = format!("bench-scale-v2-{}", g % TOPICS);
        admin.commit_all(&format!("bench-group-{g}"), &topic, PARTITIONS, COMMITTED);
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let admin = Admin::new(&brokers());
    tokio::task::spawn_blocking(move || setup(&admin))
        .await
        .unwrap();
    let rss_before = rss_kib();
    let spec: CheckSpec = serde_saphyr::from_str(&format!(
        "kind: kafka\nbrokers: [{}]\ntopics_regex: '^bench-scale-v2-'\ngroups_regex: '^bench-group-'\nmax_groups: {GROUPS}\nmax_partition_series: 20000\nmax_time_lag_fetches: 1000",
        brokers().replace(',', ", ")
    ))
    .unwrap();
    let check = spec.build().unwrap();
    let ctx = RunContext {
        timeout: Duration::from_secs(30),
    };
    let mut times = Vec::new();
    let (mut series, mut requests) = (0, 0.0);
    // One warm-up run (connections), then the measured runs.
    for run in 0..=RUNS {
        let start = Instant::now();
        let samples = check.run(&ctx).await.expect("run passes");
        let elapsed = start.elapsed();
        if run > 0 {
            times.push(elapsed.as_secs_f64());
        }
        series = samples.len();
        let one = |name: &str| {
            samples
                .iter()
                .find(|s| s.desc.name == name)
                .map(|s| s.value)
        };
        requests = one("kafka_requests").unwrap();
        let total_lag: Vec<f64> = samples
            .iter()
            .filter(|s| s.desc.name == "kafka_consumergroup_total_lag")
            .map(|s| s.value)
            .collect();
        assert_eq!(total_lag.len(), GROUPS);
        let expected = (PARTITIONS as i64 * (MESSAGES_PER_PARTITION - COMMITTED)) as f64;
        assert!(total_lag.iter().all(|l| *l == expected), "{total_lag:?}");
        let time_lags = samples
            .iter()
            .filter(|s| s.desc.name == "kafka_consumergroup_time_lag")
            .count();
        assert_eq!(
            time_lags,
            GROUPS * PARTITIONS as usize,
            "time lag per partition"
        );
    }
    let rss_after = rss_kib();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "kafka scale: 3 brokers, {} partitions, {GROUPS} groups, {series} series and {requests} requests per run; run time over {RUNS} runs: min {:.3} s, median {:.3} s, max {:.3} s; RSS {} MiB before the check, {} MiB after (+{} MiB)",
        TOPICS as i32 * PARTITIONS,
        times[0],
        times[RUNS / 2],
        times[RUNS - 1],
        rss_before / 1024,
        rss_after / 1024,
        (rss_after.saturating_sub(rss_before)) / 1024
    );
}
