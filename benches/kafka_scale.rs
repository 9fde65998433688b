//! Scale benchmark of the `kafka` kind against the real broker of
//! `scripts/services.sh up kafka`: 1,000 partitions (10 topics × 100) and
//! 100 consumer groups. Prints the run time, the series per run and the
//! memory; asserts only that every group's lag is the expected one, so the
//! figures are of correct runs.
//!
//! Run with `scripts/services.sh up kafka && eval "$(scripts/services.sh env)"
//! && cargo bench --bench kafka_scale`. It creates the topics once and takes
//! about a minute the first time.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use runbook_exporter::checks::{CheckSpec, RunContext};

const TOPICS: usize = 10;
const PARTITIONS: i32 = 100;
const GROUPS: usize = 100;
const MESSAGES_PER_PARTITION: i64 = 10;
const COMMITTED: i64 = 4;
const RUNS: usize = 5;

fn brokers() -> String {
    std::env::var("RUNBOOK_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("RUNBOOK_TEST_KAFKA_BROKERS not set: run scripts/services.sh up kafka")
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

/// Create the topics, fill each partition, and commit every group's offsets,
/// unless an earlier run did.
async fn setup() {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let names: Vec<String> = (0..TOPICS).map(|t| format!("bench-scale-{t}")).collect();
    let new: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(120)));
    let created = admin.create_topics(&new, &opts).await.unwrap();
    let fresh = created.iter().any(|r| r.is_ok());
    for r in &created {
        if let Err((_, code)) = r {
            assert_eq!(*code, RDKafkaErrorCode::TopicAlreadyExists);
        }
    }
    if !fresh {
        return;
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    for name in &names {
        for p in 0..PARTITIONS {
            for i in 0..MESSAGES_PER_PARTITION {
                let payload = format!("m{i}");
                loop {
                    match producer
                        .send(BaseRecord::to(name).partition(p).key("k").payload(&payload))
                    {
                        Ok(()) => break,
                        Err(_) => {
                            producer.poll(Duration::from_millis(50));
                        }
                    }
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    for g in 0..GROUPS {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", format!("bench-group-{g}"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&names[g % TOPICS], p, Offset::Offset(COMMITTED))
                .unwrap();
        }
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
    }
}

/// One kafka check over 1,000 partitions and 100 groups: a warm-up run,
/// then the measured runs.
#[tokio::main(flavor = "multi_thread")]
async fn main() {
    setup().await;
    let rss_before = rss_kib();
    let spec: CheckSpec = serde_saphyr::from_str(&format!(
        "kind: kafka\nbrokers: [{}]\ntopics_regex: '^bench-scale-'\ngroups_regex: '^bench-group-'\nmax_groups: {GROUPS}",
        brokers()
    ))
    .unwrap();
    let check = spec.build().unwrap();
    let ctx = RunContext {
        timeout: Duration::from_secs(30),
    };
    let mut times = Vec::new();
    let mut series = 0;
    // One warm-up run (connections, coordinators), then the measured runs.
    for run in 0..=RUNS {
        let start = Instant::now();
        let samples = check.run(&ctx).await.expect("run passes");
        let elapsed = start.elapsed();
        if run > 0 {
            times.push(elapsed.as_secs_f64());
        }
        series = samples.len();
        let total_lag = samples
            .iter()
            .filter(|s| s.desc.name == "kafka_consumergroup_total_lag")
            .map(|s| s.value)
            .collect::<Vec<_>>();
        assert_eq!(total_lag.len(), GROUPS);
        let expected = (PARTITIONS as i64 * (MESSAGES_PER_PARTITION - COMMITTED)) as f64;
        assert!(total_lag.iter().all(|l| *l == expected), "{total_lag:?}");
    }
    let rss_after = rss_kib();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "kafka scale: {} partitions, {GROUPS} groups, {series} series per run; run time over {RUNS} runs: min {:.3} s, median {:.3} s, max {:.3} s; RSS {} MiB before the check, {} MiB after (+{} MiB)",
        TOPICS as i32 * PARTITIONS,
        times[0],
        times[RUNS / 2],
        times[RUNS - 1],
        rss_before / 1024,
        rss_after / 1024,
        (rss_after.saturating_sub(rss_before)) / 1024
    );
}
