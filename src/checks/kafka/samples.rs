//! Turning what a `kafka` run read into samples: cluster, broker, topic
//! and partition-health series; each group's lag per partition, topic and
//! in total, in messages and in seconds; the status per partition and
//! group; the caps' counters; and the rule that decides whether the run
//! failed.
//!
//! The rule: a run fails when no broker answered the metadata request, when
//! a broker did not answer within its budget, or when a selected group's
//! committed offsets could not be read; everything it measured is exported
//! all the same. Partitions whose end offset could not be read (no leader,
//! or a leader that did not answer) never fail a run: they are counted in
//! `kafka_consumergroup_topic_unreadable_partitions` and left out of the
//! sums.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use super::collect::{Collected, Committed, GroupData, Selection};
use super::history::{History, Status};
use super::metrics::*;
use super::requests::now_millis;
use crate::checks::{Reason, Sample};

/// The caps, in the order of [`Dropped`].
const CAPS: [&str; 4] = ["groups", "topics", "partition_series", "time_lag_fetches"];

/// What each cap left out since the check was built.
#[derive(Debug, Default)]
pub(super) struct Dropped(pub(super) [u64; 4]);

/// The per-partition series still allowed in this run.
struct Budget {
    left: usize,
    dropped: usize,
}

impl Budget {
    fn take(&mut self) -> bool {
        if self.left == 0 {
            self.dropped += 1;
            false
        } else {
            self.left -= 1;
            true
        }
    }
}

/// Turn a run's data into samples, update the history, and name the
/// problem that fails the run, if any.
pub(super) fn samples(
    history: &mut History,
    dropped: &mut Dropped,
    c: &Collected,
    sel: &Selection,
) -> (Vec<Sample>, Option<(Reason, String)>) {
    let mut out = vec![Sample::new(&REQUESTS, c.requests as f64)];
    let mut problem = c
        .metadata
        .as_ref()
        .map(|f| (f.reason, format!("metadata request failed: {}", f.message)));
    for (id, up) in &c.broker_up {
        out.push(
            Sample::new(&BROKER_UP, f64::from(u8::from(up.is_ok())))
                .with_label("broker", id.to_string()),
        );
        if let Err(f) = up {
            problem.get_or_insert_with(|| {
                (
                    f.reason,
                    format!("broker {id} did not answer: {}", f.message),
                )
            });
        }
    }
    let mut budget = Budget {
        left: sel.max_partition_series,
        dropped: 0,
    };
    if c.metadata.is_none() {
        if let Some(d) = c.metadata_duration {
            out.push(Sample::new(&METADATA_DURATION, d.as_secs_f64()));
        }
        out.push(Sample::new(&BROKERS, c.brokers.len() as f64));
        out.push(Sample::new(&TOPICS_MATCHED, c.topics_matched as f64));
        out.extend(topic_samples(c, &mut budget));
        out.push(Sample::new(&GROUPS_MATCHED, c.groups_matched as f64));
        let mut seen = HashSet::new();
        for g in &c.groups {
            out.extend(group_state_samples(g));
            match &g.committed {
                Ok(committed) => out.extend(group_lag_samples(
                    history,
                    g,
                    committed,
                    c,
                    &mut budget,
                    &mut seen,
                )),
                Err(f) => {
                    problem.get_or_insert_with(|| (f.reason, f.message.clone()));
                }
            }
        }
        history.retain(&seen);
    }
    let counts = [
        c.groups_matched.saturating_sub(c.groups.len()),
        c.topics_matched.saturating_sub(c.topics.len()),
        budget.dropped,
        c.time_lag_capped,
    ];
    for (i, n) in counts.iter().enumerate() {
        dropped.0[i] += *n as u64;
        out.push(Sample::new(&CAP_DROPPED, dropped.0[i] as f64).with_label("cap", CAPS[i]));
    }
    (out, problem)
}

/// Partitions, health and end offsets of the selected topics.
fn topic_samples(c: &Collected, budget: &mut Budget) -> Vec<Sample> {
    let mut out = Vec::new();
    for topic in &c.topics {
        let partitions = &c.partitions[topic];
        let t = |s: Sample| s.with_label("topic", topic);
        out.push(t(Sample::new(&TOPIC_PARTITIONS, partitions.len() as f64)));
        let no_leader = partitions.values().filter(|p| p.leader < 0).count();
        let under = partitions.values().filter(|p| p.isr < p.replicas).count();
        out.push(t(Sample::new(&TOPIC_NO_LEADER, no_leader as f64)));
        out.push(t(Sample::new(&TOPIC_UNDER_REPLICATED, under as f64)));
        if let Some(min) = partitions.values().map(|p| p.isr).min() {
            out.push(t(Sample::new(&TOPIC_MIN_ISR, min as f64)));
        }
        for p in partitions.keys() {
            if let Some(end) = c.ends.get(&(topic.clone(), *p)) {
                if budget.take() {
                    out.push(
                        t(Sample::new(&PARTITION_END_OFFSET, *end as f64))
                            .with_label("partition", p.to_string()),
                    );
                }
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

/// One group on one topic.
#[derive(Default)]
struct TopicSums {
    lag: i64,
    uncommitted: usize,
    unreadable: usize,
    /// Largest age among lagging partitions with a known next message.
    time_lag: Option<f64>,
    /// Whether any partition lagged.
    lagging: bool,
}

/// A group's series per partition (within the budget), per topic, in total,
/// and its status.
fn group_lag_samples(
    history: &mut History,
    g: &GroupData,
    committed: &Committed,
    c: &Collected,
    budget: &mut Budget,
    seen: &mut HashSet<(String, String, i32)>,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let group = |s: Sample| s.with_label("group", &g.name);
    if committed.is_empty() {
        out.extend(status_samples(&g.name, Status::Unknown));
        return out;
    }
    let now = Instant::now();
    let now_ms = now_millis();
    let topics: BTreeSet<&String> = committed.keys().map(|(t, _)| t).collect();
    let mut worst = Status::Ok;
    let mut total = 0;
    for topic in topics {
        let Some(ps) = c.partitions.get(topic) else {
            continue;
        };
        let mut sums = TopicSums::default();
        for p in ps.keys() {
            let tp = (topic.clone(), *p);
            let Some(off) = committed.get(&tp) else {
                sums.uncommitted += 1;
                continue;
            };
            let Some(end) = c.ends.get(&tp) else {
                sums.unreadable += 1;
                continue;
            };
            let lag = (end - off).max(0);
            sums.lag += lag;
            let status = history.partition_status((&g.name, topic, *p), now, *off, lag);
            seen.insert((g.name.clone(), topic.clone(), *p));
            worst = worst.max(status);
            let seconds = if lag == 0 {
                Some(0.0)
            } else {
                sums.lagging = true;
                c.next_timestamps
                    .get(&(g.name.clone(), tp.clone()))
                    .map(|ts| (now_ms - ts).max(0) as f64 / 1000.0)
            };
            if let (true, Some(s)) = (lag > 0, seconds) {
                sums.time_lag = Some(sums.time_lag.map_or(s, |m: f64| m.max(s)));
            }
            if budget.take() {
                let labels = |s: Sample| {
                    group(s)
                        .with_label("topic", topic)
                        .with_label("partition", p.to_string())
                };
                out.push(labels(Sample::new(&PARTITION_COMMITTED, *off as f64)));
                out.push(labels(Sample::new(&PARTITION_LAG, lag as f64)));
                if let Some(s) = seconds {
                    out.push(labels(Sample::new(&PARTITION_LAG_SECONDS, s)));
                }
                out.push(
                    labels(Sample::new(&PARTITION_STATUS, 1.0))
                        .with_label("status", status.as_str()),
                );
            }
        }
        total += sums.lag;
        let t = |s: Sample| group(s).with_label("topic", topic);
        out.push(t(Sample::new(&TOPIC_LAG, sums.lag as f64)));
        out.push(t(Sample::new(&TOPIC_UNCOMMITTED, sums.uncommitted as f64)));
        out.push(t(Sample::new(&TOPIC_UNREADABLE, sums.unreadable as f64)));
        // No lag is 0 s; lag whose next message could not be read is absent.
        let time_lag = if sums.lagging {
            sums.time_lag
        } else {
            Some(0.0)
        };
        if let Some(s) = time_lag {
            out.push(t(Sample::new(&TOPIC_LAG_SECONDS, s)));
        }
    }
    out.push(group(Sample::new(&GROUP_LAG, total as f64)));
    out.extend(status_samples(&g.name, worst));
    out
}

/// The group status series: 1 for `status`, 0 for the others.
fn status_samples(group: &str, status: Status) -> Vec<Sample> {
    Status::ALL
        .iter()
        .map(|s| {
            Sample::new(&GROUP_STATUS, f64::from(u8::from(*s == status)))
                .with_label("group", group)
                .with_label("status", s.as_str())
        })
        .collect()
}
