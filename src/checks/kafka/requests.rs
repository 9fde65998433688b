//! The requests of a `kafka` run, each built, sent within its step's
//! deadline and read into plain data; a failed broker or partition is left
//! out of the answer (or carries its error), never fails the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequest, OffsetFetchRequestGroup};
use kafka_protocol::messages::{
    ApiVersionsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest, MetadataRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::Target;
use super::collect::{call, each, Committed, Counted, GroupData, PartitionMeta, Tp};
use super::conn::{error_name, error_reason};
use super::records;
use crate::checks::{Failure, Reason};

/// What the metadata answer says.
pub(super) struct Metadata {
    pub(super) brokers: Vec<(i32, String, u16)>,
    pub(super) partitions: BTreeMap<String, BTreeMap<i32, PartitionMeta>>,
}

/// Partition bytes asked per lagging partition: enough for a batch header
/// and usually the whole batch; the broker cuts larger batches short.
const FETCH_PARTITION_BYTES: i32 = 16 << 10;

/// Cluster metadata from the first of the two best targets that answers.
pub(super) async fn metadata(c: &Counted<'_>, deadline: Instant) -> Result<Metadata, Failure> {
    let targets: Vec<Target> = c.cluster.metadata_targets().into_iter().take(2).collect();
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let asks = targets.iter().map(|t| {
        let request = &request;
        Box::pin(async move { call(c, t, request, (12, 1), deadline).await })
    });
    if targets.is_empty() {
        return Err(Failure::new(Reason::Internal, "no broker address to ask"));
    }
    let answer = match futures::future::select_ok(asks).await {
        Ok((answer, _)) => answer,
        Err(f) => return Err(f),
    };
    let brokers = answer
        .brokers
        .iter()
        .map(|b| {
            (
                b.node_id.0,
                b.host.to_string(),
                b.port.clamp(0, 65535) as u16,
            )
        })
        .collect();
    let mut partitions = BTreeMap::new();
    for t in &answer.topics {
        let Some(name) = &t.name else { continue };
        if t.error_code != 0 {
            tracing::debug!(topic = %name.0, error = %error_name(t.error_code), "topic metadata error");
            continue;
        }
        let ps: BTreeMap<i32, PartitionMeta> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    PartitionMeta {
                        leader: p.leader_id.0,
                        replicas: p.replica_nodes.len(),
                        isr: p.isr_nodes.len(),
                    },
                )
            })
            .collect();
        partitions.insert(name.0.to_string(), ps);
    }
    Ok(Metadata {
        brokers,
        partitions,
    })
}

/// Ask every broker in `ids` whether it answers, concurrently.
pub(super) async fn brokers_up(
    c: &Counted<'_>,
    ids: &[i32],
    deadline: Instant,
) -> BTreeMap<i32, Result<(), Failure>> {
    let answers = each(ids.to_vec(), |id| async move {
        let request = ApiVersionsRequest::default();
        let r = call(c, &Target::Probe(id), &request, (3, 0), deadline).await;
        (id, r.map(|_| ()))
    })
    .await;
    answers.into_iter().collect()
}

/// The groups every broker coordinates, as far as brokers answered.
pub(super) async fn list_groups(
    c: &Counted<'_>,
    brokers: &[i32],
    deadline: Instant,
) -> Vec<String> {
    let answers = each(brokers.to_vec(), |id| async move {
        let r = call(
            c,
            &Target::Broker(id),
            &ListGroupsRequest::default(),
            (4, 0),
            deadline,
        )
        .await;
        match r {
            Ok(a) if a.error_code == 0 => a.groups.iter().map(|g| g.group_id.0.to_string()).collect(),
            Ok(a) => {
                tracing::debug!(broker = id, error = %error_name(a.error_code), "group list failed");
                Vec::new()
            }
            Err(f) => {
                tracing::debug!(broker = id, "group list failed: {}", f.message);
                Vec::new()
            }
        }
    })
    .await;
    answers.into_iter().flatten().collect()
}

/// The coordinator of each group, or why it is not known, from one
/// batched FindCoordinator (Kafka 3.0 and later) to the first broker that
/// answers; each broker tried gets an even share of the step's time left,
/// so a hung broker does not cost every group its coordinator.
pub(super) async fn coordinators(
    c: &Counted<'_>,
    brokers: &[i32],
    groups: &[String],
    deadline: Instant,
) -> HashMap<String, Result<i32, Failure>> {
    let mut out = HashMap::new();
    if groups.is_empty() {
        return out;
    }
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(
            groups
                .iter()
                .map(|g| StrBytes::from_string(g.clone()))
                .collect(),
        );
    let mut last = None;
    for (i, id) in brokers.iter().enumerate() {
        // Each broker asked gets an even share of what is left of the step,
        // so one hung broker cannot use it all up.
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = Instant::now() + left / (brokers.len() - i) as u32;
        match call(c, &Target::Broker(*id), &request, (4, 4), attempt).await {
            Ok(answer) => {
                let loading = answer
                    .coordinators
                    .iter()
                    .any(|k| COORDINATOR_LOADING.contains(&k.error_code));
                // A coordinator still loading (or the offsets topic still
                // being created) is asked once more, after a pause, if the
                // step's time allows.
                let pause = Instant::now() + std::time::Duration::from_millis(300);
                if loading && pause < deadline {
                    tokio::time::sleep_until(pause.into()).await;
                    if let Ok(again) =
                        call(c, &Target::Broker(*id), &request, (4, 4), deadline).await
                    {
                        return coordinators_of(again.coordinators);
                    }
                }
                return coordinators_of(answer.coordinators);
            }
            Err(f) if Instant::now() < deadline => last = Some(f),
            Err(f) => {
                last = Some(f);
                break;
            }
        }
    }
    let f = last.unwrap_or_else(|| Failure::new(Reason::Network, "no broker to ask"));
    for g in groups {
        out.insert(
            g.clone(),
            Err(Failure::new(
                f.reason,
                format!("coordinator of group {g}: {}", f.message),
            )),
        );
    }
    out
}

/// Errors of a coordinator that is not ready yet.
const COORDINATOR_LOADING: [i16; 2] = [14, 15];

fn coordinators_of(
    answer: Vec<kafka_protocol::messages::find_coordinator_response::Coordinator>,
) -> HashMap<String, Result<i32, Failure>> {
    let mut out = HashMap::new();
    for k in answer {
        let r = if k.error_code == 0 {
            Ok(k.node_id.0)
        } else {
            Err(Failure::new(
                error_reason(k.error_code),
                format!(
                    "coordinator of group {}: {}",
                    k.key,
                    error_name(k.error_code)
                ),
            ))
        };
        out.insert(k.key.to_string(), r);
    }
    out
}

/// State, members and committed offsets of every group, one DescribeGroups
/// and one OffsetFetch per coordinator, coordinators concurrently.
pub(super) async fn describe_and_fetch(
    c: &Counted<'_>,
    groups: &[String],
    coordinators: HashMap<String, Result<i32, Failure>>,
    deadline: Instant,
) -> Vec<GroupData> {
    let mut by_coordinator: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut out: BTreeMap<String, GroupData> = BTreeMap::new();
    for g in groups {
        match coordinators.get(g) {
            Some(Ok(id)) => by_coordinator.entry(*id).or_default().push(g.clone()),
            Some(Err(f)) => {
                out.insert(g.clone(), unread(g, f.clone()));
            }
            None => {
                let f = Failure::new(
                    Reason::UnexpectedResponse,
                    format!("no coordinator named for group {g}"),
                );
                out.insert(g.clone(), unread(g, f));
            }
        }
    }
    let answers = each(
        by_coordinator.into_iter().collect(),
        |(id, names)| async move { read_groups(c, id, names, deadline).await },
    )
    .await;
    for g in answers.into_iter().flatten() {
        out.insert(g.name.clone(), g);
    }
    out.into_values().collect()
}

fn unread(name: &str, f: Failure) -> GroupData {
    GroupData {
        name: name.to_string(),
        state: "Unknown".into(),
        members: 0,
        committed: Err(f),
    }
}

/// The groups of one coordinator.
async fn read_groups(
    c: &Counted<'_>,
    id: i32,
    names: Vec<String>,
    deadline: Instant,
) -> Vec<GroupData> {
    let target = Target::Broker(id);
    let ids: Vec<GroupId> = names
        .iter()
        .map(|g| GroupId(StrBytes::from_string(g.clone())))
        .collect();
    let describe = DescribeGroupsRequest::default().with_groups(ids.clone());
    let fetch = OffsetFetchRequest::default().with_groups(
        ids.iter()
            .map(|g| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(g.clone())
                    .with_topics(None)
            })
            .collect(),
    );
    let (described, fetched) = futures::join!(
        call(c, &target, &describe, (5, 0), deadline),
        call(c, &target, &fetch, (8, 8), deadline)
    );
    let mut states: HashMap<String, (String, usize)> = HashMap::new();
    if let Ok(d) = &described {
        for g in &d.groups {
            if g.error_code == 0 {
                states.insert(
                    g.group_id.0.to_string(),
                    (g.group_state.to_string(), g.members.len()),
                );
            }
        }
    }
    let mut committed: HashMap<String, Result<Committed, Failure>> = HashMap::new();
    match fetched {
        Ok(f) => {
            for g in f.groups {
                let name = g.group_id.0.to_string();
                if g.error_code != 0 {
                    let f = Failure::new(
                        error_reason(g.error_code),
                        format!(
                            "committed offsets of group {name}: {}",
                            error_name(g.error_code)
                        ),
                    );
                    committed.insert(name, Err(f));
                    continue;
                }
                let mut offsets = Committed::new();
                for t in &g.topics {
                    for p in &t.partitions {
                        if p.error_code == 0 && p.committed_offset >= 0 {
                            offsets.insert(
                                (t.name.0.to_string(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                    }
                }
                committed.insert(name, Ok(offsets));
            }
        }
        Err(f) => {
            for g in &names {
                let f = Failure::new(
                    f.reason,
                    format!("committed offsets of group {g}: {}", f.message),
                );
                committed.insert(g.clone(), Err(f));
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let (state, members) = states.remove(&name).unwrap_or(("Unknown".into(), 0));
            let committed = committed.remove(&name).unwrap_or_else(|| {
                Err(Failure::new(
                    Reason::UnexpectedResponse,
                    format!("committed offsets of group {name}: not in the answer"),
                ))
            });
            GroupData {
                name,
                state,
                members,
                committed,
            }
        })
        .collect()
}

/// End offsets of `wanted` and start offsets of `starts_of`, per leader:
/// one ListOffsets(latest) and one ListOffsets(earliest) to each leader,
/// leaders concurrently. Leaderless or failed partitions are absent.
pub(super) async fn list_offsets(
    c: &Counted<'_>,
    wanted: &BTreeSet<Tp>,
    starts_of: &BTreeSet<Tp>,
    leader: &(dyn Fn(&Tp) -> i32 + Sync),
    deadline: Instant,
) -> (HashMap<Tp, i64>, HashMap<Tp, i64>) {
    let mut by_leader: BTreeMap<i32, (Vec<Tp>, Vec<Tp>)> = BTreeMap::new();
    for tp in wanted {
        let l = leader(tp);
        if l >= 0 {
            let e = by_leader.entry(l).or_default();
            e.0.push(tp.clone());
            if starts_of.contains(tp) {
                e.1.push(tp.clone());
            }
        }
    }
    let answers = each(
        by_leader.into_iter().collect(),
        |(id, (latest, earliest))| async move {
            let target = Target::Broker(id);
            let ends = offsets_at(c, &target, &latest, -1, deadline);
            let starts = offsets_at(c, &target, &earliest, -2, deadline);
            futures::join!(ends, starts)
        },
    )
    .await;
    let mut ends = HashMap::new();
    let mut starts = HashMap::new();
    for (e, s) in answers {
        ends.extend(e);
        starts.extend(s);
    }
    (ends, starts)
}

/// One ListOffsets for `tps` at `timestamp` (-1 latest, -2 earliest).
async fn offsets_at(
    c: &Counted<'_>,
    target: &Target,
    tps: &[Tp],
    timestamp: i64,
    deadline: Instant,
) -> HashMap<Tp, i64> {
    let mut out = HashMap::new();
    if tps.is_empty() {
        return out;
    }
    let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (t, p) in tps {
        topics.entry(t).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(*p)
                .with_timestamp(timestamp),
        );
    }
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(0)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    match call(c, target, &request, (7, 1), deadline).await {
        Ok(answer) => {
            for t in answer.topics {
                for p in t.partitions {
                    if p.error_code == 0 && p.offset >= 0 {
                        out.insert((t.name.0.to_string(), p.partition_index), p.offset);
                    }
                }
            }
        }
        Err(f) => tracing::debug!("offset request failed: {}", f.message),
    }
    out
}

/// The timestamp of the message at each `(partition, offset)`, one Fetch per
/// leader, leaders concurrently; each answer is keyed by every group that
/// waits at that offset.
pub(super) async fn fetch_timestamps(
    c: &Counted<'_>,
    by_leader: BTreeMap<i32, BTreeMap<(Tp, i64), Vec<String>>>,
    deadline: Instant,
) -> HashMap<(String, Tp), i64> {
    let answers = each(
        by_leader.into_iter().collect(),
        |(id, mut wanted)| async move {
            let mut out = Vec::new();
            if id < 0 {
                return out;
            }
            // A request names each partition once: groups waiting at several
            // offsets of one partition take rounds, lowest offset first, and an
            // answer also serves every higher offset it reaches. Each round
            // settles at least the offsets it fetched from.
            while !wanted.is_empty() && Instant::now() < deadline {
                let mut first: BTreeMap<Tp, i64> = BTreeMap::new();
                for (tp, off) in wanted.keys() {
                    first.entry(tp.clone()).or_insert(*off);
                }
                let data = fetch(c, id, &first, deadline).await;
                wanted.retain(|(tp, off), groups| {
                    let ts = data
                        .get(tp)
                        .and_then(|records| records::timestamp_at(records, *off));
                    if let Some(ts) = ts {
                        for g in groups.iter() {
                            out.push(((g.clone(), tp.clone()), ts));
                        }
                    }
                    ts.is_none() && first.get(tp) != Some(off)
                });
            }
            out
        },
    )
    .await;
    answers.into_iter().flatten().collect()
}

/// One Fetch to broker `id` of a few KiB per partition from `offsets`.
async fn fetch(
    c: &Counted<'_>,
    id: i32,
    offsets: &BTreeMap<Tp, i64>,
    deadline: Instant,
) -> HashMap<Tp, bytes::Bytes> {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for ((t, p), off) in offsets {
        topics.entry(t).or_default().push(
            FetchPartition::default()
                .with_partition(*p)
                .with_fetch_offset(*off)
                .with_partition_max_bytes(FETCH_PARTITION_BYTES),
        );
    }
    let max_bytes = (offsets.len() as i64 * i64::from(FETCH_PARTITION_BYTES)).min(32 << 20) as i32;
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let mut out = HashMap::new();
    match call(c, &Target::Broker(id), &request, (12, 4), deadline).await {
        Ok(answer) => {
            for t in answer.responses {
                for p in t.partitions {
                    match (p.error_code, p.records) {
                        (0, Some(r)) => {
                            out.insert((t.topic.0.to_string(), p.partition_index), r);
                        }
                        (0, None) => {}
                        (e, _) => {
                            tracing::debug!(topic = %t.topic.0, partition = p.partition_index, error = %error_name(e), "fetch failed")
                        }
                    }
                }
            }
        }
        Err(f) => tracing::debug!("fetch failed: {}", f.message),
    }
    out
}

/// Milliseconds since the Unix epoch now.
pub(super) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
