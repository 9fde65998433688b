//! Turning what a `kafka` run read into samples: cluster, topic and group
//! series, the lag of each group per partition, topic and in total (in
//! seconds too, from the [`History`]), the group status, and the first
//! problem that should fail the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use super::collect::{Collected, GroupData};
use super::history::{lag_seconds, History, Status};
use super::metrics::*;
use super::offsets::Committed;
use crate::checks::{Reason, Sample};

/// Production rate per topic, where every end offset of the topic is known.
type Rates<'a> = HashMap<&'a str, Option<f64>>;

/// Turn a run's data into samples, update the history, and name the first
/// problem that should fail the run.
pub(super) fn samples(
    history: &mut History,
    c: &Collected,
    broker_up: &[bool],
) -> (Vec<Sample>, Option<(Reason, String)>) {
    let now = Instant::now();
    let (mut out, mut problem) = cluster_samples(c, broker_up);
    let rates = topic_rates(history, c, now);
    out.extend(topic_samples(c));
    out.push(Sample::new(&GROUPS_MATCHED, c.groups_matched as f64));
    for g in &c.groups {
        out.extend(group_state_samples(g));
        match &g.committed {
            Ok(committed) => out.extend(group_lag_samples(history, g, committed, c, &rates, now)),
            Err(message) => {
                problem.get_or_insert_with(|| committed_failure(&g.name, message));
            }
        }
    }
    let groups: HashSet<&str> = c.groups.iter().map(|g| g.name.as_str()).collect();
    let topics: HashSet<&str> = c.partitions.keys().map(String::as_str).collect();
    history.retain(&groups, &topics);
    (out, problem)
}

/// The metadata round trip, the brokers and whether each answered (the
/// first that did not is the run's problem), and the topics matched.
fn cluster_samples(c: &Collected, broker_up: &[bool]) -> (Vec<Sample>, Option<(Reason, String)>) {
    let mut problem = None;
    let mut out = vec![
        Sample::new(&METADATA_DURATION, c.metadata_duration.as_secs_f64()),
        Sample::new(&BROKERS, c.brokers.len() as f64),
        Sample::new(&TOPICS_MATCHED, c.topics_matched as f64),
    ];
    for (id, up) in c.brokers.iter().zip(broker_up) {
        out.push(
            Sample::new(&BROKER_UP, f64::from(u8::from(*up))).with_label("broker", id.to_string()),
        );
        if !up && problem.is_none() {
            problem = Some((Reason::Network, format!("broker {id} did not answer")));
        }
    }
    (out, problem)
}

/// Production rate of every topic whose end offsets are all known.
fn topic_rates<'a>(history: &mut History, c: &'a Collected, now: Instant) -> Rates<'a> {
    let mut rates = HashMap::new();
    for (topic, partitions) in &c.partitions {
        let ends: Option<i64> = partitions
            .iter()
            .map(|p| c.ends.get(&(topic.clone(), *p)).copied())
            .sum();
        if let Some(sum) = ends {
            rates.insert(topic.as_str(), history.topic_rate(topic, now, sum));
        }
    }
    rates
}

/// Partitions and end offsets of the selected topics.
fn topic_samples(c: &Collected) -> Vec<Sample> {
    let mut out = Vec::new();
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
    out
}

/// A group's state (1 for its own, 0 for the others) and members.
fn group_state_samples(g: &GroupData) -> Vec<Sample> {
    let state = state_label(&g.state);
    let mut out: Vec<Sample> = GROUP_STATES
        .iter()
        .chain(&[("", "unknown")])
        .map(|(_, label)| {
            Sample::new(&GROUP_STATE, f64::from(u8::from(*label == state)))
                .with_label("group", &g.name)
                .with_label("state", *label)
        })
        .collect();
    out.push(Sample::new(&GROUP_MEMBERS, g.members as f64).with_label("group", &g.name));
    out
}

/// The problem of a group whose committed offsets could not be read.
fn committed_failure(group: &str, message: &str) -> (Reason, String) {
    let reason = if message.to_ascii_lowercase().contains("authoriz") {
        Reason::Auth
    } else {
        Reason::UnexpectedResponse
    };
    (
        reason,
        format!("committed offsets of group {group}: {message}"),
    )
}

/// A group's committed offsets and lag per partition, its lag per topic (in
/// seconds too where the rate is known), and, when every topic's lag is
/// known, its total lag and status.
fn group_lag_samples(
    history: &mut History,
    g: &GroupData,
    committed: &Committed,
    c: &Collected,
    rates: &Rates,
    now: Instant,
) -> Vec<Sample> {
    let mut out = Vec::new();
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
        return out;
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
    out
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
}
