//! The `kafka` kind against the real Apache Kafka broker started by
//! `scripts/services.sh up kafka`: exact lag per partition and in total
//! (cross-checked with Kafka's own kafka-consumer-groups tool), groups with
//! no members, the group status when consumption stops, and SASL/PLAIN
//! authentication with the right and a wrong password.

mod common;

use common::build;
use std::time::Duration;

use kafka_support::{kafka_tool_lag, unique, Admin};
use runbook_exporter::checks::{Check, CheckSpec, Failure, RunContext, Sample};

#[path = "kafka_support/mod.rs"]
mod kafka_support;

fn env(var: &str) -> String {
    common::service_env(var, "kafka")
}

fn brokers() -> String {
    env("RUNBOOK_TEST_KAFKA_BROKERS")
}

fn admin() -> Admin {
    Admin::new(&brokers())
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
    let name = name.to_string();
    tokio::task::spawn_blocking(move || admin().create_topic(&name, partitions, 1))
        .await
        .unwrap();
}

/// Produce `n` messages to one partition, acknowledged by the broker.
fn produce(topic: &str, partition: i32, n: usize) {
    admin().produce(topic, partition, n);
}

/// Commit offset `n` on one partition as `group`, which never joins as a
/// member, so it is empty afterwards.
fn consume_and_commit(group: &str, topic: &str, partition: i32, n: usize) {
    admin().commit(group, topic, partition, n as i64);
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
    let tool = kafka_tool_lag(&env("RUNBOOK_TEST_KAFKA_LIBS"), &brokers(), &group);
    assert!(
        tool.contains(&(topic.clone(), 0, 6)),
        "kafka-consumer-groups: {tool:?}"
    );
    assert!(
        tool.contains(&(topic.clone(), 1, 0)),
        "kafka-consumer-groups: {tool:?}"
    );
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

/// Produce `n` messages stamped `age_ms` ago.
fn produce_aged(topic: &str, partition: i32, n: usize, age_ms: i64) {
    admin().produce_at(topic, partition, n, kafka_support::now_millis() - age_ms);
}

#[tokio::test(flavor = "multi_thread")]
async fn time_lag_is_the_age_of_the_next_message_even_with_producers_paused() {
    let topic = unique("timelag");
    let other = unique("timelag-other");
    let group = unique("timelag-group");
    create_topic(&topic, 3).await;
    create_topic(&other, 2).await;
    // Partition 0: 5 messages 60 s old, then 15 that are 25 s old; the
    // group committed 5, so its next message is 25 s old.
    produce_aged(&topic, 0, 5, 60_000);
    produce_aged(&topic, 0, 15, 25_000);
    consume_and_commit(&group, &topic, 0, 5);
    // Partition 1: 5 at 90 s, 5 at 80 s, 10 at 40 s; committed 5, then the
    // log is truncated to offset 10: the next message is at the log start,
    // 40 s old, and lag is still 15 as kafka-consumer-groups counts it.
    produce_aged(&topic, 1, 5, 90_000);
    produce_aged(&topic, 1, 5, 80_000);
    produce_aged(&topic, 1, 10, 40_000);
    consume_and_commit(&group, &topic, 1, 5);
    admin().delete_records(&topic, 1, 10);
    // Partition 2: produced to, never committed. Second topic, uneven:
    // 7 and 3 messages, committed 7 (caught up) and 1.
    produce_aged(&topic, 2, 4, 1_000);
    produce_aged(&other, 0, 7, 5_000);
    produce_aged(&other, 1, 3, 5_000);
    consume_and_commit(&group, &other, 0, 7);
    consume_and_commit(&group, &other, 1, 1);

    let check = build(&format!(
        "kind: kafka\nbrokers: [{}]\ngroups: [{group}]",
        brokers()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    let g = ("group", group.as_str());
    let t = ("topic", topic.as_str());
    let o = ("topic", other.as_str());
    let secs = |topic: (&str, &str), p: &str| {
        value(
            &samples,
            "kafka_consumergroup_time_lag",
            &[g, topic, ("partition", p)],
        )
    };
    let near = |got: Option<f64>, want: f64| {
        let got = got.expect("time lag present while lag > 0");
        assert!(
            (got - want).abs() <= 2.0,
            "time lag {got} s, want {want} s ± 2"
        );
    };
    near(secs(t, "0"), 25.0);
    near(secs(t, "1"), 40.0);
    near(secs(o, "1"), 5.0);
    assert_eq!(secs(o, "0"), Some(0.0));
    near(
        value(&samples, "kafka_consumergroup_topic_time_lag", &[g, t]),
        40.0,
    );
    // Per-partition lag equals kafka-consumer-groups on every committed
    // partition of both topics.
    let tool = kafka_tool_lag(&env("RUNBOOK_TEST_KAFKA_LIBS"), &brokers(), &group);
    let mut ours = Vec::new();
    for (topic, parts) in [(&topic, 3), (&other, 2)] {
        for p in 0..parts {
            let lag = value(
                &samples,
                "kafka_consumergroup_lag",
                &[g, ("topic", topic), ("partition", &p.to_string())],
            );
            if let Some(lag) = lag {
                ours.push((topic.clone(), p, lag as i64));
            }
        }
    }
    ours.sort();
    assert_eq!(ours.len(), 4, "committed partitions: {ours:?}");
    for row in &ours {
        assert!(
            tool.contains(row),
            "ours {row:?}, kafka-consumer-groups {tool:?}"
        );
    }
    assert!(ours.contains(&(topic.clone(), 1, 15)), "{ours:?}");
    assert_eq!(
        value(
            &samples,
            "kafka_consumergroup_topic_uncommitted_partitions",
            &[g, t]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_stuck_partition_makes_the_group_stalled() {
    let topic = unique("stuck");
    let group = unique("stuck-group");
    create_topic(&topic, 3).await;
    for p in 0..3 {
        produce(&topic, p, 2);
        consume_and_commit(&group, &topic, p, 1);
    }
    let check = build(&format!(
        "kind: kafka\nbrokers: [{}]\ngroups: [{group}]\nstatus_window: 3",
        brokers()
    ));
    let g = ("group", group.as_str());
    let mut last = Vec::new();
    // Partitions 1 and 2 keep consuming what is produced; 0 is stuck on its
    // message at offset 1.
    for round in 0..3usize {
        for p in 0..3 {
            produce(&topic, p, 3);
            if p > 0 {
                consume_and_commit(&group, &topic, p, 5 + 3 * round);
            }
        }
        last = run(check.as_ref()).await.expect("check passes");
    }
    let status = |labels: &[(&str, &str)]| {
        [
            "ok",
            "lagging",
            "rewinding",
            "stalled",
            "stopped",
            "unknown",
        ]
        .into_iter()
        .filter(|s| {
            let mut l = labels.to_vec();
            l.push(("status", s));
            let name = if labels.len() == 1 {
                "kafka_consumergroup_status"
            } else {
                "kafka_consumergroup_partition_status"
            };
            value(&last, name, &l) == Some(1.0)
        })
        .collect::<Vec<_>>()
    };
    let t = ("topic", topic.as_str());
    assert_eq!(status(&[g]), ["stalled"]);
    assert_eq!(status(&[g, t, ("partition", "0")]), ["stalled"]);
    assert_eq!(status(&[g, t, ("partition", "1")]), ["ok"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_group_without_offsets_is_unknown_without_lag() {
    let group = unique("ghost-group");
    // No topic of that name: no end offsets to read.
    let check = build(&format!(
        "kind: kafka\nbrokers: [{}]\ngroups: [{group}]\ntopics: [{group}]",
        brokers()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    let g = ("group", group.as_str());
    assert_eq!(
        value(
            &samples,
            "kafka_consumergroup_status",
            &[g, ("status", "unknown")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "kafka_consumergroup_status",
            &[g, ("status", "ok")]
        ),
        Some(0.0)
    );
    assert_eq!(value(&samples, "kafka_consumergroup_total_lag", &[g]), None);
    // Only the configured group was asked about: one broker, so metadata,
    // ApiVersions, FindCoordinator, DescribeGroups and OffsetFetch.
    assert_eq!(value(&samples, "kafka_requests", &[]), Some(5.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_cancelled_at_any_point_leave_the_check_working() {
    let topic = unique("cancel");
    let group = unique("cancel-group");
    create_topic(&topic, 2).await;
    produce(&topic, 0, 5);
    consume_and_commit(&group, &topic, 0, 2);
    let check = build(&format!(
        "kind: kafka\nbrokers: [{}]\ngroups: [{group}]\ntopics: [{topic}]",
        brokers()
    ));
    let ctx = RunContext {
        timeout: Duration::from_secs(15),
    };
    // Cut runs short at growing points: mid-connect, mid-request, mid-answer.
    let mut cut = 0;
    for ms in 0..40u64 {
        let r = tokio::time::timeout(Duration::from_millis(ms), check.run(&ctx)).await;
        cut += usize::from(r.is_err());
    }
    assert!(cut > 0, "no run was cancelled");
    // The next whole run reads the same numbers as a fresh check.
    let samples = run(check.as_ref())
        .await
        .expect("check passes after cancelled runs");
    let g = ("group", group.as_str());
    let lag = value(
        &samples,
        "kafka_consumergroup_lag",
        &[g, ("topic", topic.as_str()), ("partition", "0")],
    );
    assert_eq!(lag, Some(3.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_waiting_far_apart_on_one_partition_both_get_their_time_lag() {
    let topic = unique("apart");
    let (near, far) = (unique("apart-a"), unique("apart-b"));
    create_topic(&topic, 1).await;
    // 5 messages 60 s old, 4,000 that are 30 s old (far more than one
    // fetch's 16 KiB), then 5 that are 10 s old.
    produce_aged(&topic, 0, 5, 60_000);
    for _ in 0..4 {
        produce_aged(&topic, 0, 1000, 30_000);
    }
    produce_aged(&topic, 0, 5, 10_000);
    consume_and_commit(&near, &topic, 0, 2);
    consume_and_commit(&far, &topic, 0, 4005);
    let check = build(&format!(
        "kind: kafka\nbrokers: [{}]\ngroups: [{near}, {far}]\ntopics: [{topic}]",
        brokers()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    for (group, want) in [(&near, 60.0), (&far, 10.0)] {
        let got = value(
            &samples,
            "kafka_consumergroup_time_lag",
            &[("group", group), ("topic", &topic), ("partition", "0")],
        )
        .expect("time lag present while lag > 0");
        assert!(
            (got - want).abs() <= 2.0,
            "{group}: {got} s, want {want} s ± 2"
        );
    }
}
