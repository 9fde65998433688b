//! The reading part of a `kafka` run: the topic and group selection, and
//! the requests of one run (metadata, groups, committed offsets, then end
//! offsets, and every broker asked whether it answers).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;

use super::client::{drain_events, failure, Context, Handles};
use super::offsets::{self, Committed};
use super::spec::KafkaSpec;
use crate::checks::{BuildError, Failure, Reason};

/// The topic and group selection, compiled.
pub(super) struct Selection {
    topics: Vec<String>,
    topics_regex: Option<Regex>,
    max_topics: usize,
    groups: Vec<String>,
    groups_regex: Option<Regex>,
    max_groups: usize,
}

impl Selection {
    /// The selection of `spec`, its regular expressions compiled.
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
}

/// One selected group, as listed and with its committed offsets.
pub(super) struct GroupData {
    pub(super) name: String,
    pub(super) state: String,
    pub(super) members: usize,
    pub(super) committed: Result<Committed, String>,
}

/// Everything one run read from the cluster.
pub(super) struct Collected {
    pub(super) metadata_duration: Duration,
    pub(super) brokers: Vec<i32>,
    /// Partitions of every topic in the metadata.
    pub(super) partitions: BTreeMap<String, Vec<i32>>,
    /// The selected topics, limited.
    pub(super) topics: Vec<String>,
    pub(super) topics_matched: usize,
    pub(super) groups: Vec<GroupData>,
    pub(super) groups_matched: usize,
    pub(super) ends: HashMap<(String, i32), i64>,
}

/// The blocking part of a run: metadata, groups, committed offsets, then end
/// offsets.
pub(super) fn collect(
    h: &Handles,
    sel: &Selection,
    deadline: Instant,
) -> Result<Collected, Failure> {
    drain_events(h);
    let start = Instant::now();
    let metadata = h
        .consumer
        .fetch_metadata(None, left(deadline))
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

    // Committed offsets first, then end offsets: a commit made in between
    // can only make the lag smaller, never negative.
    let (groups, groups_matched) = list_groups(h, sel, deadline)?;
    let ends = end_offsets(h, &topics, &groups, &partitions, deadline)?;
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

/// The time left before `deadline`.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The selected groups, limited, with their state, members and committed
/// offsets (a listed group the cluster does not know is `Dead`), and how
/// many matched before the limit.
fn list_groups(
    h: &Handles,
    sel: &Selection,
    deadline: Instant,
) -> Result<(Vec<GroupData>, usize), Failure> {
    let list = h
        .consumer
        .fetch_group_list(None, left(deadline))
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

    let mut committed = offsets::list_committed(h.consumer.client(), &names, deadline);
    let groups = listed
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
    Ok((groups, groups_matched))
}

/// The end offsets of every partition of the selected topics and of the
/// topics the groups committed on, in one request per partition leader.
fn end_offsets(
    h: &Handles,
    topics: &[String],
    groups: &[GroupData],
    partitions: &BTreeMap<String, Vec<i32>>,
    deadline: Instant,
) -> Result<HashMap<(String, i32), i64>, Failure> {
    let mut wanted: HashSet<&str> = topics.iter().map(String::as_str).collect();
    for g in groups {
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
            .offsets_for_times(tpl, left(deadline))
            .map_err(|e| failure(h, "end offset request", &e))?;
        for e in answered.elements() {
            if let (Offset::Offset(o), Ok(())) = (e.offset(), e.error()) {
                ends.insert((e.topic().to_string(), e.partition()), o);
            }
        }
    }
    Ok(ends)
}

/// Ask every broker for its configuration, in parallel: true where it
/// answered (even with an authorization error).
pub(super) async fn brokers_up(
    admin: &AdminClient<Context>,
    brokers: &[i32],
    deadline: Instant,
) -> Vec<bool> {
    let timeout = left(deadline);
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
