//! One `kafka` run, step by step, each step with its own deadline within
//! the run's budget, and every step keeping what it could read:
//!
//! | step | request(s) | deadline (share of the budget) |
//! |---|---|---|
//! | cluster metadata | Metadata, to one broker (two raced) | 30 % |
//! | broker reachability, concurrent with everything below | ApiVersions per known broker | 60 % |
//! | groups (only with `groups_regex` or no `groups`) | ListGroups per broker | 45 % |
//! | coordinators | one batched FindCoordinator | 55 % |
//! | state and committed offsets | DescribeGroups + OffsetFetch per coordinator | 70 % |
//! | end and start offsets | ListOffsets latest + earliest per partition leader | 85 % |
//! | next message's timestamp | one Fetch per leader of lagging partitions | 100 % |
//!
//! The budget is 90 % of the run's timeout, so samples are built before the
//! scheduler's deadline. Committed offsets are read before end offsets, so
//! lag is never negative by ordering. A broker that fails loses only what
//! it owns: its groups, or the partitions it leads. The requests are in
//! [`super::requests`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use regex::Regex;

use super::cluster::{Cluster, Target};
use super::requests;
use super::spec::KafkaSpec;
use crate::checks::{BuildError, Failure};

/// `(topic, partition)`.
pub(super) type Tp = (String, i32);

/// One group's committed offsets; partitions without a commit are absent.
pub(super) type Committed = HashMap<Tp, i64>;

/// The topic and group selection and the caps, compiled.
pub(super) struct Selection {
    topics: Vec<String>,
    topics_regex: Option<Regex>,
    pub(super) max_topics: usize,
    groups: Vec<String>,
    groups_regex: Option<Regex>,
    pub(super) max_groups: usize,
    pub(super) max_partition_series: usize,
    pub(super) max_time_lag_fetches: usize,
}

impl Selection {
    pub(super) fn new(spec: &KafkaSpec) -> Result<Self, BuildError> {
        let compile = |field: &str, re: &Option<String>| {
            re.as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| BuildError::new(field, format!("invalid regular expression: {e}")))
        };
        Ok(Selection {
            topics: spec.topics.clone(),
            topics_regex: compile("topics_regex", &spec.topics_regex)?,
            max_topics: spec.max_topics,
            groups: spec.groups.clone(),
            groups_regex: compile("groups_regex", &spec.groups_regex)?,
            max_groups: spec.max_groups,
            max_partition_series: spec.max_partition_series,
            max_time_lag_fetches: spec.max_time_lag_fetches,
        })
    }

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

    /// True when only the listed groups are wanted: no ListGroups needed.
    fn listed_only(&self) -> bool {
        !self.groups.is_empty() && self.groups_regex.is_none()
    }
}

/// A partition as the metadata describes it.
#[derive(Debug, Clone)]
pub(super) struct PartitionMeta {
    /// Leader's node id; -1 without a leader.
    pub(super) leader: i32,
    pub(super) replicas: usize,
    pub(super) isr: usize,
}

/// One selected group: state, members and committed offsets, or why they
/// could not be read.
pub(super) struct GroupData {
    pub(super) name: String,
    pub(super) state: String,
    pub(super) members: usize,
    pub(super) committed: Result<Committed, Failure>,
}

/// Everything one run read.
#[derive(Default)]
pub(super) struct Collected {
    pub(super) metadata_duration: Option<Duration>,
    pub(super) metadata: Option<Failure>,
    /// Brokers named by this run's metadata.
    pub(super) brokers: Vec<i32>,
    /// Every broker asked, and why it did not answer.
    pub(super) broker_up: BTreeMap<i32, Result<(), Failure>>,
    pub(super) partitions: BTreeMap<String, BTreeMap<i32, PartitionMeta>>,
    pub(super) topics: Vec<String>,
    pub(super) topics_matched: usize,
    pub(super) groups: Vec<GroupData>,
    pub(super) groups_matched: usize,
    pub(super) ends: HashMap<Tp, i64>,
    pub(super) starts: HashMap<Tp, i64>,
    /// Timestamp (ms since the epoch) of the next message a group will
    /// consume, per group and partition, for lagging partitions.
    pub(super) next_timestamps: HashMap<(String, Tp), i64>,
    /// Lagging partitions whose timestamp was not fetched: the per-run cap.
    pub(super) time_lag_capped: usize,
    pub(super) requests: usize,
}

/// The largest lag of the groups waiting at one `(partition, offset)`, and
/// those groups.
type Waiting = (i64, Vec<String>);

/// Budget shares: when each step must be done.
struct Plan {
    start: Instant,
    budget: Duration,
}

impl Plan {
    fn at(&self, share: f64) -> Instant {
        self.start + self.budget.mul_f64(share)
    }
}

/// Counts the requests a run sends.
pub(super) struct Counted<'a> {
    pub(super) cluster: &'a Cluster,
    pub(super) requests: AtomicUsize,
}

impl Counted<'_> {
    pub(super) fn count(&self, n: usize) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }
}

/// Run every step within `timeout`.
pub(super) async fn collect(cluster: &Cluster, sel: &Selection, timeout: Duration) -> Collected {
    let plan = Plan {
        start: Instant::now(),
        budget: timeout.mul_f64(0.9),
    };
    let c = Counted {
        cluster,
        requests: AtomicUsize::new(0),
    };
    let known = cluster.broker_ids();
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<i32>>();
    let up = async {
        let ids = if known.is_empty() {
            rx.await.unwrap_or_default()
        } else {
            known
        };
        requests::brokers_up(&c, &ids, plan.at(0.6)).await
    };
    let main = async {
        let mut out = Collected::default();
        let started = Instant::now();
        match requests::metadata(&c, plan.at(0.3)).await {
            Ok(m) => {
                out.metadata_duration = Some(started.elapsed());
                cluster.update(&m.brokers, Instant::now());
                out.brokers = m.brokers.iter().map(|b| b.0).collect();
                out.partitions = m.partitions;
            }
            Err(f) => {
                out.metadata = Some(f);
                let _ = tx.send(cluster.broker_ids());
                return out;
            }
        }
        let _ = tx.send(cluster.broker_ids());
        read_groups_and_offsets(&c, sel, &plan, &mut out).await;
        out
    };
    let (up, mut out) = futures::join!(up, main);
    out.broker_up = up;
    out.requests = c.requests.load(Ordering::Relaxed);
    out
}

/// Every step after the metadata.
async fn read_groups_and_offsets(
    c: &Counted<'_>,
    sel: &Selection,
    plan: &Plan,
    out: &mut Collected,
) {
    let selected: Vec<String> = out
        .partitions
        .keys()
        .filter(|t| sel.topic(t))
        .cloned()
        .collect();
    out.topics_matched = selected.len();
    out.topics = selected.into_iter().take(sel.max_topics).collect();

    let mut names: BTreeSet<String> = sel.groups.iter().cloned().collect();
    if !sel.listed_only() {
        let listed = requests::list_groups(c, &out.brokers, plan.at(0.45)).await;
        names.extend(listed.into_iter().filter(|g| sel.group(g)));
    }
    out.groups_matched = names.len();
    let names: Vec<String> = names.into_iter().take(sel.max_groups).collect();
    let coordinators = requests::coordinators(c, &out.brokers, &names, plan.at(0.55)).await;
    out.groups = requests::describe_and_fetch(c, &names, coordinators, plan.at(0.7)).await;

    // End offsets of the selected topics and of every committed partition.
    let mut wanted: BTreeSet<Tp> = BTreeSet::new();
    let mut committed: BTreeSet<Tp> = BTreeSet::new();
    for t in &out.topics {
        for p in out.partitions[t].keys() {
            wanted.insert((t.clone(), *p));
        }
    }
    for g in &out.groups {
        if let Ok(offsets) = &g.committed {
            for tp in offsets.keys() {
                if out
                    .partitions
                    .get(&tp.0)
                    .is_some_and(|ps| ps.contains_key(&tp.1))
                {
                    wanted.insert(tp.clone());
                    committed.insert(tp.clone());
                }
            }
        }
    }
    let leader = |tp: &Tp| out.partitions[&tp.0][&tp.1].leader;
    let (ends, starts) =
        requests::list_offsets(c, &wanted, &committed, &leader, plan.at(0.85)).await;
    out.ends = ends;
    out.starts = starts;

    // The next message of each lagging partition; groups that wait at the
    // same offset share one fetch; the cap keeps the largest lags.
    let mut waits: BTreeMap<(Tp, i64), Waiting> = BTreeMap::new();
    for g in &out.groups {
        let Ok(offsets) = &g.committed else { continue };
        for (tp, off) in offsets {
            let Some(end) = out.ends.get(tp) else {
                continue;
            };
            if end > off {
                let next = (*off).max(out.starts.get(tp).copied().unwrap_or(0));
                let w = waits.entry((tp.clone(), next)).or_default();
                w.0 = w.0.max(end - off);
                w.1.push(g.name.clone());
            }
        }
    }
    let mut lagging: Vec<((Tp, i64), Waiting)> = waits.into_iter().collect();
    lagging.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
    out.time_lag_capped = lagging.len().saturating_sub(sel.max_time_lag_fetches);
    lagging.truncate(sel.max_time_lag_fetches);
    let mut by_leader: BTreeMap<i32, BTreeMap<(Tp, i64), Vec<String>>> = BTreeMap::new();
    for (key, (_, groups)) in lagging {
        by_leader
            .entry(leader(&key.0))
            .or_default()
            .insert(key, groups);
    }
    let times = requests::fetch_timestamps(c, by_leader, plan.at(1.0)).await;
    out.next_timestamps = times;
}

/// A request to the broker `id`, counted.
pub(super) async fn call<R: kafka_protocol::protocol::Request>(
    c: &Counted<'_>,
    target: &Target,
    request: &R,
    versions: (i16, i16),
    deadline: Instant,
) -> Result<R::Response, Failure> {
    c.count(1);
    c.cluster
        .call(target, request, versions.0, versions.1, deadline)
        .await
}

/// Run `f` for each item concurrently and collect the answers in order.
pub(super) async fn each<T, F, O>(items: Vec<T>, f: impl Fn(T) -> F) -> Vec<O>
where
    F: std::future::Future<Output = O>,
{
    join_all(items.into_iter().map(f)).await
}
