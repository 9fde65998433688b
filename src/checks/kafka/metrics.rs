//! The metrics of the `kafka` kind, and the fixed set of group states.

use prometheus_client::registry::Unit;

use crate::checks::MetricDesc;

pub static METADATA_DURATION: MetricDesc = MetricDesc::gauge(
    "kafka_metadata_duration",
    Some(Unit::Seconds),
    "Round trip of the cluster metadata request in the last scheduled run.",
);
pub static BROKERS: MetricDesc = MetricDesc::gauge(
    "kafka_brokers",
    None,
    "Brokers in the cluster metadata in the last scheduled run.",
);
pub static BROKER_UP: MetricDesc = MetricDesc::gauge(
    "kafka_broker_up",
    None,
    "1 if the broker (label broker: node id) answered a request within its own budget in the last scheduled run, else 0; a broker the metadata stopped naming is kept for an hour.",
);
pub static TOPICS_MATCHED: MetricDesc = MetricDesc::gauge(
    "kafka_topics_matched",
    None,
    "Topics that matched the selection in the last scheduled run, before the max_topics limit.",
);
pub static TOPIC_PARTITIONS: MetricDesc = MetricDesc::gauge(
    "kafka_topic_partitions",
    None,
    "Partitions of the topic in the last scheduled run.",
);
pub static PARTITION_END_OFFSET: MetricDesc = MetricDesc::counter(
    "kafka_topic_partition_end_offset",
    None,
    "End offset (high watermark: offset of the next message) of the partition in the last scheduled run.",
);
pub static GROUPS_MATCHED: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroups_matched",
    None,
    "Consumer groups that matched the selection in the last scheduled run, before the max_groups limit."
);
pub static GROUP_STATE: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_state",
    None,
    "1 for the consumer group's state in the last scheduled run (stable, preparing_rebalance, completing_rebalance, empty, dead, unknown), 0 for the others."
);
pub static GROUP_MEMBERS: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_members",
    None,
    "Members of the consumer group in the last scheduled run.",
);
pub static PARTITION_COMMITTED: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_committed_offset",
    None,
    "Committed offset of the group on the partition in the last scheduled run; absent when the group has none there."
);
pub static PARTITION_LAG: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_lag",
    None,
    "Messages between the group's committed offset and the partition's end offset in the last scheduled run (never negative)."
);
pub static TOPIC_LAG: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_topic_lag",
    None,
    "Sum of the group's lag over the topic's committed partitions in the last scheduled run.",
);
pub static TOPIC_UNCOMMITTED: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_topic_uncommitted_partitions",
    None,
    "Partitions of a topic the group consumes that have no committed offset, in the last scheduled run."
);
pub static GROUP_LAG: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_total_lag",
    None,
    "Sum of the group's lag over all its committed partitions in the last scheduled run.",
);
pub static TOPIC_LAG_SECONDS: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_topic_time_lag",
    Some(Unit::Seconds),
    "Largest age, over the topic's lagging partitions, of the next message the group will consume (now minus its timestamp), in the last scheduled run; 0 without lag."
);
pub static PARTITION_LAG_SECONDS: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_time_lag",
    Some(Unit::Seconds),
    "Age of the next message the group will consume on the partition (now minus its timestamp) in the last scheduled run; 0 without lag."
);
pub static PARTITION_STATUS: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_partition_status",
    None,
    "1 for the partition's status (label status: ok, lagging, rewinding, stalled, stopped) as of the last scheduled run; one series per partition."
);
pub static TOPIC_UNREADABLE: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_topic_unreadable_partitions",
    None,
    "Committed partitions of the topic whose end offset could not be read (no leader, or the leader did not answer) in the last scheduled run; their lag is left out."
);
pub static TOPIC_NO_LEADER: MetricDesc = MetricDesc::gauge(
    "kafka_topic_partitions_without_leader",
    None,
    "Partitions of the topic without a leader (offline) in the last scheduled run's metadata.",
);
pub static TOPIC_UNDER_REPLICATED: MetricDesc = MetricDesc::gauge(
    "kafka_topic_under_replicated_partitions",
    None,
    "Partitions of the topic with fewer in-sync replicas than replicas in the last scheduled run's metadata.",
);
pub static TOPIC_MIN_ISR: MetricDesc = MetricDesc::gauge(
    "kafka_topic_min_in_sync_replicas",
    None,
    "Fewest in-sync replicas of any partition of the topic in the last scheduled run's metadata.",
);
pub static REQUESTS: MetricDesc = MetricDesc::gauge(
    "kafka_requests",
    None,
    "Kafka requests the last scheduled run sent (connection set-up not counted).",
);
pub static CAP_DROPPED: MetricDesc = MetricDesc::counter(
    "kafka_cap_dropped",
    None,
    "Items a cap left out since the exporter started, by cap (groups, topics, partition_series, time_lag_fetches), as of the last scheduled run."
);
pub static GROUP_STATUS: MetricDesc = MetricDesc::gauge(
    "kafka_consumergroup_status",
    None,
    "1 for the group's status as of the last scheduled run: the worst of its partitions' (ok, lagging, rewinding, stalled, stopped), or unknown without committed offsets; 0 for the others."
);

/// Every metric this kind can report.
pub static METRICS: [&MetricDesc; 24] = [
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
    &PARTITION_LAG_SECONDS,
    &PARTITION_STATUS,
    &TOPIC_UNREADABLE,
    &TOPIC_NO_LEADER,
    &TOPIC_UNDER_REPLICATED,
    &TOPIC_MIN_ISR,
    &REQUESTS,
    &CAP_DROPPED,
];

/// Group states as Kafka names them, and their label values.
pub(super) const GROUP_STATES: [(&str, &str); 5] = [
    ("Stable", "stable"),
    ("PreparingRebalance", "preparing_rebalance"),
    ("CompletingRebalance", "completing_rebalance"),
    ("Empty", "empty"),
    ("Dead", "dead"),
];

/// The label value of a group state; anything new is `unknown`.
pub(super) fn state_label(state: &str) -> &'static str {
    GROUP_STATES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(state))
        .map_or("unknown", |(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_a_fixed_set() {
        assert_eq!(state_label("Stable"), "stable");
        assert_eq!(state_label("CompletingRebalance"), "completing_rebalance");
        assert_eq!(state_label("Assigning"), "unknown");
    }
}
