//! The `kafka` kind: broker health, topic partitions and end offsets, and
//! consumer group lag, replacing the guides' `kafka-broker-api-versions.sh`,
//! `kafka-topics.sh --describe` and `kafka-consumer-groups.sh --describe`.
//!
//! One run makes, in this order: a metadata request (brokers, topics,
//! partitions); a ListGroups/DescribeGroups round (state and members); one
//! OffsetFetch per selected group, all in flight at once ([`offsets`]); then
//! one ListOffsets(latest) per partition leader for every partition needed,
//! so end offsets are read after committed offsets and lag is never
//! negative; and one DescribeConfigs per broker, in parallel, to see that
//! each broker answers. Between runs the check keeps its librdkafka handles
//! (which reconnect by themselves) and a bounded [`history`] for lag in
//! seconds and the group status.

mod history;
mod offsets;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::registry::Unit;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use regex::Regex;
use serde::Deserialize;

use self::history::{lag_seconds, History, Status};
use self::offsets::Committed;
use super::tls::TlsSpec;
use super::{
    BuildError, Check, Failure, MetricDesc, MetricKind, Reason, RunContext, RunResult, Sample,
};
use crate::config::secret::{self, Secret};

/// Config of a `kafka` check.
///
/// ```yaml
/// - name: events
///   kind: kafka
///   brokers: [kafka-0:9092, kafka-1:9092]
///   groups: [user-service]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSpec {
    /// Bootstrap servers, as `host:port`. The check learns the other brokers
    /// from the cluster metadata.
    pub brokers: Vec<String>,

    /// Connect with TLS. Default: false.
    #[serde(default)]
    pub tls: bool,

    /// TLS settings used when `tls` is true: `ca_file`, `cert_file` and
    /// `key_file` (client certificate), `insecure_skip_verify`.
    /// `server_name` is not supported: librdkafka verifies the broker's
    /// advertised host name.
    pub tls_config: Option<TlsSpec>,

    /// SASL authentication: `mechanism` (`PLAIN`, `SCRAM-SHA-256` or
    /// `SCRAM-SHA-512`), `username`, and `password` or `password_file`.
    pub sasl: Option<SaslSpec>,

    /// Topics to report partitions and end offsets for. Default (with no
    /// `topics_regex` either): every topic except internal ones (`__*`).
    #[serde(default)]
    pub topics: Vec<String>,

    /// Regular expression selecting topics, in addition to `topics`.
    pub topics_regex: Option<String>,

    /// Most topics reported, in name order. Default: 100.
    #[serde(default = "default_max_topics")]
    pub max_topics: usize,

    /// Consumer groups to report lag for. Default (with no `groups_regex`
    /// either): every group the cluster lists. A listed group that does not
    /// exist is reported with state `dead`.
    #[serde(default)]
    pub groups: Vec<String>,

    /// Regular expression selecting groups, in addition to `groups`.
    pub groups_regex: Option<String>,

    /// Most groups reported, in name order. Default: 100.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,

    /// Number of runs the group status looks at (lagging: lag grew at each
    /// of them; stalled: lag at each of them and no commit). Default: 5.
    #[serde(default = "default_status_window")]
    pub status_window: usize,

    /// A group with lag whose committed offsets have not moved for this long
    /// is `stopped`. Default: 10m.
    #[serde(default = "default_stopped_after", with = "crate::config::duration")]
    pub stopped_after: Duration,
}

/// SASL settings of a `kafka` check (`sasl:`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSpec {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user name.
    pub username: String,
    /// The password; usually `${ENV}`.
    pub password: Option<Secret>,
    /// A file holding the password, instead of `password`.
    pub password_file: Option<PathBuf>,
}

const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

fn default_max_topics() -> usize {
    100
}
fn default_max_groups() -> usize {
    100
}
fn default_status_window() -> usize {
    5
}
fn default_stopped_after() -> Duration {
    Duration::from_secs(600)
}

impl super::ProbeSafety for KafkaSpec {
    fn credentials(&self) -> Vec<&'static str> {
        super::targets::set_fields(&[
            ("sasl", self.sasl.is_some()),
            (
                "tls_config.key_file",
                TlsSpec::has_client_key(self.tls_config.as_ref()),
            ),
        ])
    }

    /// The bootstrap servers; the brokers their metadata names come later.
    fn endpoints(&self) -> Vec<super::targets::Endpoint> {
        self.brokers
            .iter()
            .filter_map(|b| super::targets::Endpoint::parse(b).ok())
            .collect()
    }
}

impl KafkaSpec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |f: &str, m: String| problems.push((f.to_string(), m));
        if self.brokers.is_empty() {
            problem("brokers", "needs at least one host:port".into());
        }
        for (i, b) in self.brokers.iter().enumerate() {
            if b.contains(|c: char| c == ',' || c == '/' || c.is_whitespace()) {
                problem(
                    &format!("brokers[{i}]"),
                    format!("{b:?}: one host:port per entry, without `,`, `/` or spaces"),
                );
            } else if b
                .rsplit_once(':')
                .and_then(|(h, p)| (!h.is_empty()).then(|| p.parse::<u16>().ok())?)
                .is_none()
            {
                problem(
                    &format!("brokers[{i}]"),
                    format!("{b:?}: write host:port, like kafka-0:9092"),
                );
            }
        }
        if self.tls_config.is_some() && !self.tls {
            problem(
                "tls_config",
                "is set but tls is false; add `tls: true` to use TLS".into(),
            );
        }
        if self
            .tls_config
            .as_ref()
            .is_some_and(|t| t.server_name.is_some())
        {
            problem(
                "tls_config.server_name",
                "is not supported by the kafka kind: the broker's advertised host name is verified"
                    .into(),
            );
        }
        if let Some(sasl) = &self.sasl {
            if !SASL_MECHANISMS.contains(&sasl.mechanism.as_str()) {
                problem(
                    "sasl.mechanism",
                    format!(
                        "{:?}: must be one of {}",
                        sasl.mechanism,
                        SASL_MECHANISMS.join(", ")
                    ),
                );
            }
            if sasl.password.is_some() && sasl.password_file.is_some() {
                problem(
                    "sasl.password",
                    "set either password or password_file, not both".into(),
                );
            }
        }
        for (field, re) in [
            ("topics_regex", &self.topics_regex),
            ("groups_regex", &self.groups_regex),
        ] {
            if let Some(Err(e)) = re.as_deref().map(Regex::new) {
                problem(field, format!("invalid regular expression: {e}"));
            }
        }
        for (field, n) in [
            ("max_topics", self.max_topics),
            ("max_groups", self.max_groups),
        ] {
            if n == 0 {
                problem(field, "must be at least 1".into());
            }
        }
        if self.status_window < 2 {
            problem("status_window", "must be at least 2".into());
        }
        problems
    }
}

macro_rules! gauge {
    ($name:literal, $unit:expr, $help:literal) => {
        MetricDesc {
            name: $name,
            help: $help,
            unit: $unit,
            kind: MetricKind::Gauge,
        }
    };
}

pub static METADATA_DURATION: MetricDesc = gauge!(
    "kafka_metadata_duration",
    Some(Unit::Seconds),
    "Round trip of the cluster metadata request in the last scheduled run."
);
pub static BROKERS: MetricDesc = gauge!(
    "kafka_brokers",
    None,
    "Brokers in the cluster metadata in the last scheduled run."
);
pub static BROKER_UP: MetricDesc = gauge!(
    "kafka_broker_up",
    None,
    "1 if the broker (label broker: node id) answered a request in the last scheduled run, else 0."
);
pub static TOPICS_MATCHED: MetricDesc = gauge!(
    "kafka_topics_matched",
    None,
    "Topics that matched the selection in the last scheduled run, before the max_topics limit."
);
pub static TOPIC_PARTITIONS: MetricDesc = gauge!(
    "kafka_topic_partitions",
    None,
    "Partitions of the topic in the last scheduled run."
);
pub static PARTITION_END_OFFSET: MetricDesc = MetricDesc {
    name: "kafka_topic_partition_end_offset",
    help: "End offset (high watermark: offset of the next message) of the partition in the last scheduled run.",
    unit: None,
    kind: MetricKind::Counter,
};
pub static GROUPS_MATCHED: MetricDesc = gauge!(
    "kafka_consumergroups_matched",
    None,
    "Consumer groups that matched the selection in the last scheduled run, before the max_groups limit."
);
pub static GROUP_STATE: MetricDesc = gauge!(
    "kafka_consumergroup_state",
    None,
    "1 for the consumer group's state in the last scheduled run (stable, preparing_rebalance, completing_rebalance, empty, dead, unknown), 0 for the others."
);
pub static GROUP_MEMBERS: MetricDesc = gauge!(
    "kafka_consumergroup_members",
    None,
    "Members of the consumer group in the last scheduled run."
);
pub static PARTITION_COMMITTED: MetricDesc = gauge!(
    "kafka_consumergroup_committed_offset",
    None,
    "Committed offset of the group on the partition in the last scheduled run; absent when the group has none there."
);
pub static PARTITION_LAG: MetricDesc = gauge!(
    "kafka_consumergroup_lag",
    None,
    "Messages between the group's committed offset and the partition's end offset in the last scheduled run (never negative)."
);
pub static TOPIC_LAG: MetricDesc = gauge!(
    "kafka_consumergroup_topic_lag",
    None,
    "Sum of the group's lag over the topic's committed partitions in the last scheduled run."
);
pub static TOPIC_UNCOMMITTED: MetricDesc = gauge!(
    "kafka_consumergroup_topic_uncommitted_partitions",
    None,
    "Partitions of a topic the group consumes that have no committed offset, in the last scheduled run."
);
pub static GROUP_LAG: MetricDesc = gauge!(
    "kafka_consumergroup_total_lag",
    None,
    "Sum of the group's lag over all its committed partitions in the last scheduled run."
);
pub static TOPIC_LAG_SECONDS: MetricDesc = gauge!(
    "kafka_consumergroup_topic_time_lag",
    Some(Unit::Seconds),
    "Estimated time the group is behind on the topic in the last scheduled run: lag divided by the rate at which the topic's end offsets grew over the status window."
);
pub static GROUP_STATUS: MetricDesc = gauge!(
    "kafka_consumergroup_status",
    None,
    "1 for the group's status as of the last scheduled run, judged over the recent runs (ok, lagging, stalled, stopped), 0 for the others."
);

/// Every metric this kind can report.
pub static METRICS: [&MetricDesc; 16] = [
    &METADATA_DURATION,
    &BROKERS,
    &BROKER_UP,
    &TOPICS_MATCHED,
    &TOPIC_PARTITIONS,
    &PARTITION_END_OFFSET,
    &GROUPS_MATCHED,
    &GROUP_STATE,
    &GROUP_MEMBERS,
    &PARTITION_COMMITTED,
    &PARTITION_LAG,
    &TOPIC_LAG,
    &TOPIC_UNCOMMITTED,
    &GROUP_LAG,
    &TOPIC_LAG_SECONDS,
    &GROUP_STATUS,
];

/// Group states as Kafka names them, and their label values.
const GROUP_STATES: [(&str, &str); 5] = [
    ("Stable", "stable"),
    ("PreparingRebalance", "preparing_rebalance"),
    ("CompletingRebalance", "completing_rebalance"),
    ("Empty", "empty"),
    ("Dead", "dead"),
];

/// The label value of a group state; anything new is `unknown`.
fn state_label(state: &str) -> &'static str {
    GROUP_STATES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(state))
        .map_or("unknown", |(_, v)| v)
}

/// Remembers the last connection-level failure librdkafka logged, so a
/// request that fails because no broker is reachable is reported with the
/// reason the connection failed.
#[derive(Default)]
struct ErrorMemory {
    last: Mutex<Option<(Reason, String)>>,
}

/// The context of both librdkafka handles of a check, sharing one memory.
#[derive(Clone, Default)]
struct Context(Arc<ErrorMemory>);

impl ConsumerContext for Context {}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{message}");
        if level as i32 <= RDKafkaLogLevel::Error as i32 {
            self.0.remember(message);
        }
    }

    fn error(&self, _error: KafkaError, reason: &str) {
        self.0.remember(reason);
    }
}

/// The reason of a connection failure librdkafka logged, if `message` is one.
fn connection_failure(message: &str) -> Option<Reason> {
    let m = message.to_ascii_lowercase();
    if m.contains("connection refused") {
        Some(Reason::ConnectionRefused)
    } else if m.contains("resolve") {
        Some(Reason::Dns)
    } else if m.contains("ssl") || m.contains("certificate") {
        Some(Reason::Tls)
    } else if m.contains("sasl") || m.contains("authentication") {
        Some(Reason::Auth)
    } else if m.contains("connect to") || m.contains("disconnected") || m.contains("timed out") {
        Some(Reason::Network)
    } else {
        None
    }
}

impl ErrorMemory {
    fn remember(&self, message: &str) {
        if let Some(reason) = connection_failure(message) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((reason, message.to_string()));
        }
    }

    fn clear(&self) {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The librdkafka handles of a check, created on its first run.
struct Handles {
    consumer: BaseConsumer<Context>,
    admin: AdminClient<Context>,
}

impl Handles {
    /// The memory both handles' contexts share.
    fn errors(&self) -> &ErrorMemory {
        &self.consumer.context().0
    }
}

/// The topic and group selection, compiled.
struct Selection {
    topics: Vec<String>,
    topics_regex: Option<Regex>,
    max_topics: usize,
    groups: Vec<String>,
    groups_regex: Option<Regex>,
    max_groups: usize,
}

impl Selection {
    fn topic(&self, name: &str) -> bool {
        if self.topics.is_empty() && self.topics_regex.is_none() {
            return !name.starts_with("__");
        }
        self.topics.iter().any(|t| t == name)
            || self.topics_regex.as_ref().is_some_and(|r| r.is_match(name))
    }

    fn group(&self, name: &str) -> bool {
        (self.groups.is_empty() && self.groups_regex.is_none())
            || self.groups.iter().any(|g| g == name)
            || self.groups_regex.as_ref().is_some_and(|r| r.is_match(name))
    }
}

/// A built `kafka` check.
pub struct KafkaCheck {
    config: ClientConfig,
    selection: Arc<Selection>,
    handles: Mutex<Option<Arc<Handles>>>,
    history: Mutex<History>,
    secrets: Vec<String>,
}

impl KafkaCheck {
    pub fn new(spec: &KafkaSpec) -> Result<Self, BuildError> {
        if let Some((field, message)) = spec.validate().into_iter().next() {
            return Err(BuildError::new(field, message));
        }
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", spec.brokers.join(","))
            .set("client.id", "runbook-exporter")
            .set("reconnect.backoff.max.ms", "5000")
            .set_log_level(RDKafkaLogLevel::Error);
        let mut secrets = Vec::new();
        let sasl = spec.sasl.is_some();
        let protocol = match (spec.tls, sasl) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if spec.tls {
            let tls = spec.tls_config.clone().unwrap_or_default();
            for (field, key, path) in [
                ("tls_config.ca_file", "ssl.ca.location", &tls.ca_file),
                (
                    "tls_config.cert_file",
                    "ssl.certificate.location",
                    &tls.cert_file,
                ),
                ("tls_config.key_file", "ssl.key.location", &tls.key_file),
            ] {
                if let Some(path) = path {
                    std::fs::metadata(path).map_err(|e| {
                        BuildError::new(field, format!("cannot read {}: {e}", path.display()))
                    })?;
                    config.set(key, path.display().to_string());
                }
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(BuildError::new(
                    "tls_config.cert_file",
                    "set both cert_file and key_file, or neither",
                ));
            }
            if tls.insecure_skip_verify {
                config
                    .set("enable.ssl.certificate.verification", "false")
                    .set("ssl.endpoint.identification.algorithm", "none");
            }
        }
        if let Some(s) = &spec.sasl {
            let password = secret::resolve("sasl.password", &s.password, &s.password_file)?
                .ok_or_else(|| {
                    BuildError::new("sasl.password", "password or password_file is required")
                })?;
            config
                .set("sasl.mechanism", &s.mechanism)
                .set("sasl.username", &s.username)
                .set("sasl.password", password.expose());
            secrets.push(password.expose().to_string());
        }
        secrets.retain(|s| !s.is_empty());
        let compile = |field: &str, re: &Option<String>| {
            re.as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| BuildError::new(field, format!("invalid regular expression: {e}")))
        };
        let selection = Selection {
            topics: spec.topics.clone(),
            topics_regex: compile("topics_regex", &spec.topics_regex)?,
            max_topics: spec.max_topics,
            groups: spec.groups.clone(),
            groups_regex: compile("groups_regex", &spec.groups_regex)?,
            max_groups: spec.max_groups,
        };
        Ok(Self {
            config,
            selection: Arc::new(selection),
            handles: Mutex::new(None),
            history: Mutex::new(History::new(spec.status_window, spec.stopped_after)),
            secrets,
        })
    }

    /// The handles, created on first use; librdkafka reconnects them by
    /// itself when brokers go away and come back.
    fn handles(&self) -> Result<Arc<Handles>, Failure> {
        let mut slot = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = slot.as_ref() {
            return Ok(h.clone());
        }
        let context = Context::default();
        let mut consumer_config = self.config.clone();
        consumer_config
            .set("enable.auto.commit", "false")
            // End offsets as kafka-consumer-groups.sh shows them.
            .set("isolation.level", "read_uncommitted");
        let consumer = consumer_config
            .create_with_context(context.clone())
            .map_err(|e| {
                Failure::new(
                    Reason::Internal,
                    format!("cannot create the Kafka client: {e}"),
                )
            })?;
        let admin = self
            .config
            .create_with_context(context.clone())
            .map_err(|e| {
                Failure::new(
                    Reason::Internal,
                    format!("cannot create the Kafka client: {e}"),
                )
            })?;
        let h = Arc::new(Handles { consumer, admin });
        *slot = Some(h.clone());
        Ok(h)
    }

    async fn probe(&self, ctx: &RunContext) -> RunResult {
        let handles = self.handles()?;
        let deadline = Instant::now() + ctx.timeout;
        let collected = {
            let handles = handles.clone();
            let selection = self.selection.clone();
            tokio::task::spawn_blocking(move || collect(&handles, &selection, deadline))
                .await
                .map_err(|e| {
                    Failure::new(Reason::Internal, format!("collector task failed: {e}"))
                })?
        };
        let collected = collected?;
        let broker_up = brokers_up(&handles.admin, &collected.brokers, deadline).await;
        match self.samples(collected, broker_up) {
            (samples, None) => Ok(samples),
            (samples, Some((reason, message))) => {
                Err(Failure::new(reason, message).with_samples(samples))
            }
        }
    }

    /// Turn a run's data into samples, update the history, and name the
    /// first problem that should fail the run.
    fn samples(
        &self,
        c: Collected,
        broker_up: Vec<bool>,
    ) -> (Vec<Sample>, Option<(Reason, String)>) {
        let now = Instant::now();
        let mut problem = None;
        let mut out = vec![
            Sample::new(&METADATA_DURATION, c.metadata_duration.as_secs_f64()),
            Sample::new(&BROKERS, c.brokers.len() as f64),
            Sample::new(&TOPICS_MATCHED, c.topics_matched as f64),
        ];
        for (id, up) in c.brokers.iter().zip(&broker_up) {
            out.push(
                Sample::new(&BROKER_UP, f64::from(u8::from(*up)))
                    .with_label("broker", id.to_string()),
            );
            if !up && problem.is_none() {
                problem = Some((Reason::Network, format!("broker {id} did not answer")));
            }
        }
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        // Production rate of every topic whose end offsets are all known.
        let mut rates: HashMap<&str, Option<f64>> = HashMap::new();
        for (topic, partitions) in &c.partitions {
            let ends: Option<i64> = partitions
                .iter()
                .map(|p| c.ends.get(&(topic.clone(), *p)).copied())
                .sum();
            if let Some(sum) = ends {
                rates.insert(topic, history.topic_rate(topic, now, sum));
            }
        }
        for topic in &c.topics {
            let partitions = &c.partitions[topic];
            out.push(
                Sample::new(&TOPIC_PARTITIONS, partitions.len() as f64).with_label("topic", topic),
            );
            for p in partitions {
                if let Some(end) = c.ends.get(&(topic.clone(), *p)) {
                    out.push(
                        Sample::new(&PARTITION_END_OFFSET, *end as f64)
                            .with_label("topic", topic)
                            .with_label("partition", p.to_string()),
                    );
                }
            }
        }
        out.push(Sample::new(&GROUPS_MATCHED, c.groups_matched as f64));
        for g in &c.groups {
            let state = state_label(&g.state);
            for (_, label) in GROUP_STATES.iter().chain(&[("", "unknown")]) {
                out.push(
                    Sample::new(&GROUP_STATE, f64::from(u8::from(*label == state)))
                        .with_label("group", &g.name)
                        .with_label("state", *label),
                );
            }
            out.push(Sample::new(&GROUP_MEMBERS, g.members as f64).with_label("group", &g.name));
            let committed = match &g.committed {
                Ok(c) => c,
                Err(message) => {
                    problem.get_or_insert_with(|| {
                        let reason = if message.to_ascii_lowercase().contains("authoriz") {
                            Reason::Auth
                        } else {
                            Reason::UnexpectedResponse
                        };
                        (
                            reason,
                            format!("committed offsets of group {}: {message}", g.name),
                        )
                    });
                    continue;
                }
            };
            let lags = group_lags(committed, &c.partitions, &c.ends);
            let mut total = 0;
            let mut complete = true;
            for (topic, t) in &lags {
                for (p, off, lag) in &t.partitions {
                    let labels = |s: Sample| {
                        s.with_label("group", &g.name)
                            .with_label("topic", topic)
                            .with_label("partition", p.to_string())
                    };
                    out.push(labels(Sample::new(&PARTITION_COMMITTED, *off as f64)));
                    if let Some(lag) = lag {
                        out.push(labels(Sample::new(&PARTITION_LAG, *lag as f64)));
                    }
                }
                out.push(
                    Sample::new(&TOPIC_UNCOMMITTED, t.uncommitted as f64)
                        .with_label("group", &g.name)
                        .with_label("topic", topic),
                );
                let Some(lag) = t.lag else {
                    complete = false;
                    continue;
                };
                total += lag;
                out.push(
                    Sample::new(&TOPIC_LAG, lag as f64)
                        .with_label("group", &g.name)
                        .with_label("topic", topic),
                );
                if let Some(secs) = lag_seconds(lag, rates.get(topic.as_str()).copied().flatten()) {
                    out.push(
                        Sample::new(&TOPIC_LAG_SECONDS, secs)
                            .with_label("group", &g.name)
                            .with_label("topic", topic),
                    );
                }
            }
            if !complete {
                continue;
            }
            out.push(Sample::new(&GROUP_LAG, total as f64).with_label("group", &g.name));
            let committed_sum: i64 = committed.values().sum();
            let status = history.group_status(&g.name, now, total, committed_sum);
            for s in Status::ALL {
                out.push(
                    Sample::new(&GROUP_STATUS, f64::from(u8::from(s == status)))
                        .with_label("group", &g.name)
                        .with_label("status", s.as_str()),
                );
            }
        }
        let groups: HashSet<&str> = c.groups.iter().map(|g| g.name.as_str()).collect();
        let topics: HashSet<&str> = c.partitions.keys().map(String::as_str).collect();
        history.retain(&groups, &topics);
        (out, problem)
    }
}

impl Check for KafkaCheck {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe(ctx))
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

/// One selected group, as listed and with its committed offsets.
struct GroupData {
    name: String,
    state: String,
    members: usize,
    committed: Result<Committed, String>,
}

/// Everything one run read from the cluster.
struct Collected {
    metadata_duration: Duration,
    brokers: Vec<i32>,
    /// Partitions of every topic in the metadata.
    partitions: BTreeMap<String, Vec<i32>>,
    /// The selected topics, limited.
    topics: Vec<String>,
    topics_matched: usize,
    groups: Vec<GroupData>,
    groups_matched: usize,
    ends: HashMap<(String, i32), i64>,
}

/// The blocking part of a run: metadata, groups, committed offsets, then end
/// offsets.
fn collect(h: &Handles, sel: &Selection, deadline: Instant) -> Result<Collected, Failure> {
    let left = || deadline.saturating_duration_since(Instant::now());
    drain_events(h);
    let start = Instant::now();
    let metadata = h
        .consumer
        .fetch_metadata(None, left())
        .map_err(|e| failure(h, "metadata request", &e))?;
    let metadata_duration = start.elapsed();
    // The cluster answered: earlier connection errors are history.
    h.errors().clear();
    let brokers: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    let partitions: BTreeMap<String, Vec<i32>> = metadata
        .topics()
        .iter()
        .map(|t| {
            let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ps.sort_unstable();
            (t.name().to_string(), ps)
        })
        .collect();
    let selected: Vec<String> = partitions
        .keys()
        .filter(|t| sel.topic(t))
        .cloned()
        .collect();
    let topics_matched = selected.len();
    let topics: Vec<String> = selected.into_iter().take(sel.max_topics).collect();

    let list = h
        .consumer
        .fetch_group_list(None, left())
        .map_err(|e| failure(h, "group list request", &e))?;
    let mut listed: BTreeMap<String, (String, usize)> = list
        .groups()
        .iter()
        .filter(|g| sel.group(g.name()))
        .map(|g| {
            (
                g.name().to_string(),
                (g.state().to_string(), g.members().len()),
            )
        })
        .collect();
    for g in &sel.groups {
        listed
            .entry(g.clone())
            .or_insert_with(|| ("Dead".to_string(), 0));
    }
    let groups_matched = listed.len();
    let listed: Vec<(String, (String, usize))> = listed.into_iter().take(sel.max_groups).collect();
    let names: Vec<String> = listed.iter().map(|(n, _)| n.clone()).collect();

    // Committed offsets first, then end offsets: a commit made in between
    // can only make the lag smaller, never negative.
    let mut committed = offsets::list_committed(h.consumer.client(), &names, deadline);
    let groups: Vec<GroupData> = listed
        .into_iter()
        .map(|(name, (state, members))| {
            let committed = committed
                .remove(&name)
                .unwrap_or_else(|| Err("no answer before the timeout".to_string()));
            GroupData {
                name,
                state,
                members,
                committed,
            }
        })
        .collect();

    let mut wanted: HashSet<&str> = topics.iter().map(String::as_str).collect();
    for g in &groups {
        if let Ok(c) = &g.committed {
            wanted.extend(c.keys().map(|(t, _)| t.as_str()));
        }
    }
    let mut tpl = TopicPartitionList::new();
    for topic in wanted {
        for p in partitions.get(topic).into_iter().flatten() {
            tpl.add_partition_offset(topic, *p, Offset::End)
                .map_err(|e| Failure::new(Reason::Internal, format!("offset request: {e}")))?;
        }
    }
    let mut ends = HashMap::new();
    if tpl.count() > 0 {
        let answered = h
            .consumer
            .offsets_for_times(tpl, left())
            .map_err(|e| failure(h, "end offset request", &e))?;
        for e in answered.elements() {
            if let (Offset::Offset(o), Ok(())) = (e.offset(), e.error()) {
                ends.insert((e.topic().to_string(), e.partition()), o);
            }
        }
    }
    Ok(Collected {
        metadata_duration,
        brokers,
        partitions,
        topics,
        topics_matched,
        groups,
        groups_matched,
        ends,
    })
}

/// Ask every broker for its configuration, in parallel: true where it
/// answered (even with an authorization error).
async fn brokers_up(admin: &AdminClient<Context>, brokers: &[i32], deadline: Instant) -> Vec<bool> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let asks = brokers.iter().map(|id| {
        let opts = AdminOptions::new()
            .request_timeout(Some(timeout))
            .broker_id(*id);
        async move {
            let resource = [ResourceSpecifier::Broker(*id)];
            admin.describe_configs(&resource, &opts).await.is_ok()
        }
    });
    futures::future::join_all(asks).await
}

/// Lag of one group on one topic.
struct TopicLag {
    /// `(partition, committed offset, lag)`; lag is absent without an end
    /// offset.
    partitions: Vec<(i32, i64, Option<i64>)>,
    /// Partitions of the topic without a committed offset.
    uncommitted: usize,
    /// Sum of the lag; absent if any committed partition lacks an end offset.
    lag: Option<i64>,
}

/// Per topic the group has committed offsets on: each committed partition's
/// lag (end − committed, at least 0) and the count of partitions without a
/// commit. Topics no longer in the metadata are left out.
fn group_lags(
    committed: &Committed,
    partitions: &BTreeMap<String, Vec<i32>>,
    ends: &HashMap<(String, i32), i64>,
) -> BTreeMap<String, TopicLag> {
    let mut out = BTreeMap::new();
    let topics: HashSet<&String> = committed.keys().map(|(t, _)| t).collect();
    for topic in topics {
        let Some(ps) = partitions.get(topic) else {
            continue;
        };
        let mut t = TopicLag {
            partitions: Vec::new(),
            uncommitted: 0,
            lag: Some(0),
        };
        for p in ps {
            let key = (topic.clone(), *p);
            let Some(off) = committed.get(&key) else {
                t.uncommitted += 1;
                continue;
            };
            let lag = ends.get(&key).map(|end| (end - off).max(0));
            t.lag = t.lag.zip(lag).map(|(a, b)| a + b);
            t.partitions.push((*p, *off, lag));
        }
        out.insert(topic.clone(), t);
    }
    out
}

/// Serve the log and error events queued on the consumer handle: their
/// text reaches [`ErrorMemory`] through the context, and the queue does not
/// grow while brokers are down.
fn drain_events(h: &Handles) {
    while h.consumer.poll(Duration::ZERO).is_some() {}
    offsets::discard_main_queue(h.admin.inner());
}

/// Classify a failed request; a timeout while brokers are unreachable is
/// reported with the reason the connection failed.
fn failure(h: &Handles, what: &str, e: &KafkaError) -> Failure {
    drain_events(h);
    let code = e.rdkafka_error_code();
    let remembered = h
        .errors()
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (reason, detail) = match code {
        Some(RDKafkaErrorCode::OperationTimedOut)
        | Some(RDKafkaErrorCode::BrokerTransportFailure)
        | Some(RDKafkaErrorCode::AllBrokersDown) => match remembered {
            Some((reason, message)) => (reason, message),
            None => (
                if code == Some(RDKafkaErrorCode::OperationTimedOut) {
                    Reason::Timeout
                } else {
                    Reason::Network
                },
                e.to_string(),
            ),
        },
        Some(RDKafkaErrorCode::Resolve) => (Reason::Dns, e.to_string()),
        Some(RDKafkaErrorCode::SSL) => (Reason::Tls, e.to_string()),
        Some(
            RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed,
        ) => (Reason::Auth, e.to_string()),
        _ => (Reason::UnexpectedResponse, e.to_string()),
    };
    Failure::new(reason, format!("{what} failed: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_never_negative_and_uncommitted_partitions_are_counted() {
        let partitions = BTreeMap::from([("t".to_string(), vec![0, 1, 2])]);
        let committed = Committed::from([(("t".into(), 0), 10), (("t".into(), 1), 7)]);
        // Partition 0's end read before a later commit: clamp at 0.
        let ends = HashMap::from([
            (("t".into(), 0), 9),
            (("t".into(), 1), 12),
            (("t".into(), 2), 5),
        ]);
        let lags = group_lags(&committed, &partitions, &ends);
        let t = &lags["t"];
        assert_eq!(t.partitions, vec![(0, 10, Some(0)), (1, 7, Some(5))]);
        assert_eq!(t.uncommitted, 1);
        assert_eq!(t.lag, Some(5));
    }

    #[test]
    fn states_map_to_a_fixed_set() {
        assert_eq!(state_label("Stable"), "stable");
        assert_eq!(state_label("CompletingRebalance"), "completing_rebalance");
        assert_eq!(state_label("Assigning"), "unknown");
    }

    #[test]
    fn validation_names_fields() {
        let spec: KafkaSpec = serde_saphyr::from_str(
            "brokers: [nohost]\nsasl: {mechanism: GSSAPI, username: u}\ngroups_regex: '('\nstatus_window: 1",
        )
        .unwrap();
        let fields: Vec<String> = spec.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "brokers[0]",
                "sasl.mechanism",
                "groups_regex",
                "status_window"
            ]
        );
    }
}
