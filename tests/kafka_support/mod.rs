//! A small blocking Kafka client for the kafka tests and the benchmark,
//! over the same `kafka-protocol` crate as the exporter but written
//! separately (so a bug in the exporter's client cannot hide itself): it
//! creates topics, produces, commits offsets as a group that never joins,
//! and deletes records (a truncated log). Every socket read and write is
//! bounded, and every wait for the cluster polls with a deadline; Kafka's
//! own tools run bounded too ([`kafka_tool`]).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, MetadataRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Socket timeout of every request.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A name no earlier test run used.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// One request on a fresh connection to `addr`.
pub fn send<R: Request>(addr: &str, request: &R, version: i16) -> R::Response {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("test-admin")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, R::header_version(version)).unwrap();
    request.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&buf).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .unwrap_or_else(|e| panic!("answer of {addr} to API key {}: {e}", R::KEY));
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, R::Response::header_version(version)).unwrap();
    let answer = R::Response::decode(&mut body, version).unwrap();
    assert!(!body.has_remaining() || R::KEY == 18);
    answer
}

/// The test's view of a cluster, through one bootstrap address.
pub struct Admin {
    pub bootstrap: String,
}

impl Admin {
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap.split(',').next().unwrap().to_string(),
        }
    }

    /// `(leader address, leader id)` of a partition, or None without one.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<(String, i32)> {
        let md = send(
            &self.bootstrap,
            &MetadataRequest::default().with_topics(None),
            9,
        );
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition_index == partition)?;
        let b = md.brokers.iter().find(|b| b.node_id == p.leader_id)?;
        Some((format!("{}:{}", b.host, b.port), b.node_id.0))
    }

    /// Create a topic and wait (at most 30 s) until every partition has a
    /// leader. `replicas`: replication factor.
    pub fn create_topic(&self, name: &str, partitions: i32, replicas: i16) {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(20_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(str(name)))
                .with_num_partitions(partitions)
                .with_replication_factor(replicas)]);
        let answer = send(&self.bootstrap, &request, 5);
        assert_eq!(answer.topics[0].error_code, 0, "create topic {name}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while (0..partitions).any(|p| self.leader(name, p).is_none()) {
            assert!(
                Instant::now() < deadline,
                "topic {name}: not every partition had a leader within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Produce `n` messages with timestamp `timestamp` (ms) to one
    /// partition in one batch; returns the offset of the first.
    pub fn produce_at(&self, topic: &str, partition: i32, n: usize, timestamp: i64) -> i64 {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from(format!("message {i}"))),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(15_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(str(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(buf.freeze()))])]);
        // A new topic's leader may not know it yet: retry retriable
        // errors (unknown partition, not the leader) for up to 30 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (leader, _) = self
                .leader(topic, partition)
                .unwrap_or_else(|| panic!("{topic}/{partition} has no leader to produce to"));
            let answer = send(&leader, &request, 8);
            let p = &answer.responses[0].partition_responses[0];
            if p.error_code == 0 {
                return p.base_offset;
            }
            assert!(
                [3, 6].contains(&p.error_code) && Instant::now() < deadline,
                "produce to {topic}/{partition}: error {} {:?} {:?}",
                p.error_code,
                p.error_message,
                p.record_errors
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every partition's leader address.
    pub fn leaders(&self, topic: &str) -> std::collections::BTreeMap<i32, String> {
        let md = send(
            &self.bootstrap,
            &MetadataRequest::default().with_topics(None),
            9,
        );
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
            .unwrap_or_else(|| panic!("topic {topic} not in the metadata"));
        t.partitions
            .iter()
            .filter_map(|p| {
                let b = md.brokers.iter().find(|b| b.node_id == p.leader_id)?;
                Some((p.partition_index, format!("{}:{}", b.host, b.port)))
            })
            .collect()
    }

    /// Commit `offset` on every partition in `partitions` of `topic` as
    /// `group`, in one request.
    pub fn commit_all(&self, group: &str, topic: &str, partitions: i32, offset: i64) {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(str(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(str(topic)))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                        })
                        .collect(),
                )]);
        let a = send(&self.coordinator(group), &request, 7);
        assert!(
            a.topics[0].partitions.iter().all(|p| p.error_code == 0),
            "commit of {group} on {topic}"
        );
    }

    /// Produce `n` messages stamped now.
    pub fn produce(&self, topic: &str, partition: i32, n: usize) -> i64 {
        self.produce_at(topic, partition, n, now_millis())
    }

    /// The address of the coordinator of `group`.
    pub fn coordinator(&self, group: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let request = FindCoordinatorRequest::default()
                .with_key(str(group))
                .with_key_type(0);
            let a = send(&self.bootstrap, &request, 3);
            if a.error_code == 0 {
                return format!("{}:{}", a.host, a.port);
            }
            assert!(
                Instant::now() < deadline,
                "no coordinator for group {group} within 30 s: error {}",
                a.error_code
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Commit `offset` on one partition as `group`, which never joins (so
    /// it has no members).
    pub fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(str(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(str(topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)])]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = send(&self.coordinator(group), &request, 7);
            let code = a.topics[0].partitions[0].error_code;
            if code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "commit of {group} on {topic}/{partition} still failing after 30 s: error {code}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Delete the records of a partition before `offset` (the log start
    /// moves there, as retention would move it).
    pub fn delete_records(&self, topic: &str, partition: i32, offset: i64) {
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(15_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName(str(topic)))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset)])]);
        let (leader, _) = self.leader(topic, partition).expect("leader");
        let a = send(&leader, &request, 1);
        assert_eq!(a.topics[0].partitions[0].error_code, 0, "delete records");
    }
}

/// Run a Kafka tool class from the jars in `libs`, at most `secs` seconds;
/// `what` says what it waited for. Returns stdout.
pub fn kafka_tool(libs: &str, class: &str, args: &[&str], secs: u64, what: &str) -> String {
    let mut child = Command::new("java")
        .args([
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            &format!("{libs}/*"),
            class,
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run java");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                status.success(),
                "{what}: {class} failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return text;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: {class} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// LAG per `(topic, partition)` as kafka-consumer-groups reports it.
pub fn kafka_tool_lag(libs: &str, bootstrap: &str, group: &str) -> Vec<(String, i32, i64)> {
    let text = kafka_tool(
        libs,
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
            "--timeout",
            "20000",
        ],
        90,
        "kafka-consumer-groups --describe",
    );
    let mut header: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.first() == Some(&"GROUP") {
            header = cols;
        } else if !header.is_empty() && cols.len() >= header.len() {
            let col = |name| cols[header.iter().position(|h| *h == name).unwrap()];
            if let Ok(lag) = col("LAG").parse() {
                rows.push((
                    col("TOPIC").to_string(),
                    col("PARTITION").parse().unwrap(),
                    lag,
                ));
            }
        }
    }
    rows.sort();
    rows
}
