//! The `kafka` kind against the real Apache Kafka broker started by
//! `scripts/services.sh up kafka`: exact lag per partition and in total
//! (cross-checked with Kafka's own kafka-consumer-groups tool), groups with
//! no members, the group status when consumption stops, and SASL/PLAIN
//! authentication with the right and a wrong password.

mod common;

use common::build;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use runbook_exporter::checks::{Check, CheckSpec, Failure, RunContext, Sample};

fn env(var: &str) -> String {
    common::service_env(var, "kafka")
}

fn brokers() -> String {
    env("RUNBOOK_TEST_KAFKA_BROKERS")
}

/// A name no earlier test run used.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    let ctx = RunContext {
        timeout: Duration::from_secs(15),
    };
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx))
        .await
        .expect("run finishes")
}

/// The value of the sample `name` whose labels include all of `labels`.
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

async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("create topic");
    results[0].as_ref().expect("topic created");
}

/// Produce `n` messages to one partition and wait until all are acknowledged.
fn produce(topic: &str, partition: i32, n: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    for i in 0..n {
        let payload = format!("message {i}");
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(partition)
                    .key("k")
                    .payload(&payload),
            )
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(20)).expect("flush");
}

/// Consume `n` messages of one partition as `group` (reading them for real),
/// then commit the position and leave. The group never joins as a member
/// (partitions are assigned by hand), so it is empty afterwards.
fn consume_and_commit(group: &str, topic: &str, partition: i32, n: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while read < n {
        assert!(Instant::now() < deadline, "consumed only {read} of {n}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.expect("message");
            read += 1;
        }
    }
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(topic, partition, Offset::Offset(n as i64))
        .unwrap();
    consumer.commit(&commit, CommitMode::Sync).expect("commit");
}

/// LAG per partition as Kafka's own kafka-consumer-groups tool reports it.
fn kafka_tool_lag(group: &str) -> Vec<(i32, i64)> {
    let libs = env("RUNBOOK_TEST_KAFKA_LIBS");
    let out = Command::new("java")
        .args(["-Xmx256m", "-cp", &format!("{libs}/*")])
        .arg("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand")
        .args([
            "--bootstrap-server",
            &brokers(),
            "--describe",
            "--group",
            group,
        ])
        .output()
        .expect("run kafka-consumer-groups");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kafka-consumer-groups failed: {text}");
    let mut header: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.first() == Some(&"GROUP") {
            header = cols;
        } else if !header.is_empty() && cols.len() >= header.len() {
            let col = |name| cols[header.iter().position(|h| *h == name).unwrap()];
            rows.push((
                col("PARTITION").parse().unwrap(),
                col("LAG").parse().unwrap(),
            ));
        }
    }
    rows.sort_unstable();
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn lag_is_exact_for_a_group_without_members_and_matches_kafka_tool() {
    let topic = unique("lag");
    let group = unique("lag-group");
    create_topic(&topic, 3).await;
    // N = 10 per partition; M = 4, 10 and 0 consumed (partition 2 never
    // committed).
    for p in 0..3 {
        produce(&topic, p, 10);
    }
    consume_and_commit(&group, &topic, 0, 4);
    consume_and_commit(&group, &topic, 1, 10);

    let check = build(&format!(
        "kind: kafka\nbrokers: [{}]\ntopics: [{topic}]\ngroups: [{group}]",
        brokers()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    let g = ("group", group.as_str());
    let t = ("topic", topic.as_str());
    assert_eq!(value(&samples, "kafka_brokers", &[]), Some(1.0));
    assert_eq!(
        value(&samples, "kafka_broker_up", &[("broker", "1")]),
        Some(1.0)
    );
    assert_eq!(value(&samples, "kafka_topic_partitions", &[t]), Some(3.0));
    for p in ["0", "1", "2"] {
        assert_eq!(
            value(
                &samples,
                "kafka_topic_partition_end_offset",
                &[t, ("partition", p)]
            ),
            Some(10.0)
        );
    }
    let lag = |p: &str| {
        value(
            &samples,
            "kafka_consumergroup_lag",
            &[g, t, ("partition", p)],
        )
    };
    assert_eq!(lag("0"), Some(6.0));
    assert_eq!(lag("1"), Some(0.0));
    // No committed offset: reported as uncommitted, never as −1.
    assert_eq!(lag("2"), None);
    assert_eq!(
        value(
            &samples,
            "kafka_consumergroup_committed_offset",
            &[g, t, ("partition", "0")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &samples,
            "kafka_consumergroup_topic_uncommitted_partitions",
            &[g, t]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "kafka_consumergroup_topic_lag", &[g, t]),
        Some(6.0)
    );
    assert_eq!(
        value(&samples, "kafka_consumergroup_total_lag", &[g]),
        Some(6.0)
    );
    // The group has no members and still reports lag.
    assert_eq!(
        value(&samples, "kafka_consumergroup_members", &[g]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "kafka_consumergroup_state",
            &[g, ("state", "empty")]
        ),
        Some(1.0)
    );
    assert!(samples
        .iter()
        .all(|s| s.value >= 0.0 && s.value.is_finite()));

    // Kafka's own tool agrees on every committed partition.
    let tool = kafka_tool_lag(&group);
    assert!(tool.contains(&(0, 6)), "kafka-consumer-groups: {tool:?}");
    assert!(tool.contains(&(1, 0)), "kafka-consumer-groups: {tool:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_turns_stalled_or_lagging_when_consumption_stops() {
    let topic = unique("status");
    let group = unique("status-group");
    create_topic(&topic, 2).await;
    produce(&topic, 0, 5);
    produce(&topic, 1, 5);
    consume_and_commit(&group, &topic, 0, 5);
    consume_and_commit(&group, &topic, 1, 5);

    let check = build(&format!(
        "kind: kafka\nbrokers: [{}]\ngroups_regex: '^{group}$'\ntopics: [{topic}]\nstatus_window: 3",
        brokers()
    ));
    let g = ("group", group.as_str());
    let status = |samples: &[Sample]| {
        ["ok", "lagging", "stalled", "stopped"]
            .into_iter()
            .find(|s| {
                value(samples, "kafka_consumergroup_status", &[g, ("status", s)]) == Some(1.0)
            })
            .expect("one status is 1")
    };
    let first = run(check.as_ref()).await.expect("check passes");
    assert_eq!(status(&first), "ok");
    assert_eq!(
        value(&first, "kafka_consumergroup_total_lag", &[g]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &first,
            "kafka_consumergroup_topic_time_lag",
            &[g, ("topic", topic.as_str())]
        ),
        Some(0.0)
    );
    // Production goes on; nobody consumes.
    let mut last = first;
    for round in 1..=3 {
        produce(&topic, round % 2, 7);
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = run(check.as_ref()).await.expect("check passes");
        assert_eq!(
            value(&last, "kafka_consumergroup_total_lag", &[g]),
            Some(7.0 * round as f64)
        );
    }
    let s = status(&last);
    assert!(s == "stalled" || s == "lagging", "status {s}");
    // Production was measured, so lag in seconds is known and positive.
    let secs = value(
        &last,
        "kafka_consumergroup_topic_time_lag",
        &[g, ("topic", topic.as_str())],
    )
    .expect("lag in seconds");
    assert!(secs > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_broker_address_fails_with_a_connection_reason() {
    // A loopback port where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let check = build(&format!("kind: kafka\nbrokers: [127.0.0.1:{port}]"));
    let ctx = RunContext {
        timeout: Duration::from_secs(3),
    };
    let failure = check.run(&ctx).await.expect_err("check fails");
    assert_eq!(
        failure.reason,
        runbook_exporter::checks::Reason::ConnectionRefused,
        "{}",
        failure.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_plain_works_and_a_wrong_password_fails_with_auth() {
    let brokers = env("RUNBOOK_TEST_KAFKA_SASL_BROKERS");
    let user = env("RUNBOOK_TEST_KAFKA_SASL_USER");
    let password = env("RUNBOOK_TEST_KAFKA_SASL_PASSWORD");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kafka-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let check = build(&format!(
        "kind: kafka\nbrokers: [{brokers}]\nsasl:\n  mechanism: PLAIN\n  username: {user}\n  password_file: {}",
        file.display()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(value(&samples, "kafka_brokers", &[]), Some(1.0));

    let wrong = "wrong-kafka-password-7f3a";
    let yaml = format!(
        "kind: kafka\nbrokers: [{brokers}]\nsasl:\n  mechanism: PLAIN\n  username: {user}\n  password: {wrong}"
    );
    let check = build(&yaml);
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    let failure = check.run(&ctx).await.expect_err("check fails");
    assert_eq!(
        failure.reason,
        runbook_exporter::checks::Reason::Auth,
        "{}",
        failure.message
    );
    assert!(!failure.message.contains(wrong));
    assert_eq!(check.secrets(), [wrong.to_string()]);
    let spec: CheckSpec = serde_saphyr::from_str(&yaml).unwrap();
    assert!(!format!("{spec:?}").contains(wrong));
}
