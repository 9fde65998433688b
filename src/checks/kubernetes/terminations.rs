//! Counting how containers die: the one piece of state a `kubernetes` check
//! keeps between runs besides its client. Each container's latest
//! termination (its current terminated state, else its last state, so a
//! Job's container that ended and never restarted counts too) is
//! remembered by a hash of its identity, and each new one is counted once:
//! per container for OOM kills, and per namespace by reason and exit-code
//! class. A namespace's first list only records the terminations already
//! there, since the exporter cannot tell when they happened.
//!
//! Memory is bounded by the containers listed: two 64-bit hashes and a
//! counter each, and containers that are gone are forgotten.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::fold::{container_statuses, pod_name};
use super::metrics::{bucket, EXIT_CODE_CLASSES, TERMINATION_REASONS};

/// Exporter-counted terminations of one namespace, since the exporter
/// started.
#[derive(Debug, Clone, Default)]
pub(super) struct NamespaceCounts {
    pub(super) oom_kills: u64,
    pub(super) reasons: [u64; TERMINATION_REASONS.len()],
    pub(super) exit_codes: [u64; EXIT_CODE_CLASSES.len()],
}

#[derive(Debug, Default)]
struct Track {
    last_termination: u64,
    oom_kills: u64,
}

/// What is remembered between runs.
#[derive(Debug, Default)]
pub(super) struct Terminations {
    seen_namespaces: BTreeSet<String>,
    /// By namespace, then by a hash of pod UID (or name) and container.
    containers: HashMap<String, HashMap<u64, Track>>,
    namespaces: BTreeMap<String, NamespaceCounts>,
}

/// The bookkeeping of one namespace's list in one run.
#[derive(Debug, Default)]
pub(super) struct Listing {
    first_look: bool,
    seen: HashSet<u64>,
}

impl Terminations {
    /// Start listing `ns` in this run.
    pub(super) fn begin(&self, ns: &str) -> Listing {
        Listing {
            first_look: !self.seen_namespaces.contains(ns),
            seen: HashSet::new(),
        }
    }

    /// Count the new terminations of `pod`'s containers; return the OOM
    /// kills counted for each container, in [`container_statuses`] order.
    pub(super) fn observe(&mut self, listing: &mut Listing, ns: &str, pod: &Pod) -> Vec<u64> {
        let mut kills = Vec::new();
        if !self.containers.contains_key(ns) {
            self.containers.insert(ns.to_string(), HashMap::new());
        }
        let Some(containers) = self.containers.get_mut(ns) else {
            return kills;
        };
        let pod_id = pod.metadata.uid.as_deref().unwrap_or(pod_name(pod));
        for status in container_statuses(pod) {
            let key = hash(&(pod_id, &status.name));
            listing.seen.insert(key);
            let track = containers.entry(key).or_default();
            if let Some(t) = latest_termination(status) {
                if t.identity != track.last_termination {
                    track.last_termination = t.identity;
                    if !listing.first_look {
                        let counts = self.namespaces.entry(ns.to_string()).or_default();
                        if t.reason == "OOMKilled" {
                            track.oom_kills += 1;
                            counts.oom_kills += 1;
                        }
                        counts.reasons[index(&TERMINATION_REASONS, &t.reason)] += 1;
                        counts.exit_codes[index(&EXIT_CODE_CLASSES, &exit_class(t.exit_code))] += 1;
                    }
                }
            }
            kills.push(track.oom_kills);
        }
        kills
    }

    /// A namespace's list completed: forget its containers that are gone;
    /// its next list counts what is new.
    pub(super) fn finish(&mut self, ns: &str, listing: Listing) {
        self.seen_namespaces.insert(ns.to_string());
        if let Some(containers) = self.containers.get_mut(ns) {
            containers.retain(|key, _| listing.seen.contains(key));
        }
    }

    /// The counts of `ns` so far (zeros before its first new termination).
    pub(super) fn counts(&self, ns: &str) -> NamespaceCounts {
        self.namespaces.get(ns).cloned().unwrap_or_default()
    }
}

/// One termination: a hash of its identity (the terminated container's ID,
/// else its finish time), its reason and exit code.
pub(super) struct Termination {
    identity: u64,
    pub(super) reason: String,
    pub(super) exit_code: i32,
}

/// A container's latest termination: its current terminated state, else
/// its last state.
pub(super) fn latest_termination(status: &ContainerStatus) -> Option<Termination> {
    let current = status.state.as_ref().and_then(|s| s.terminated.as_ref());
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let t = current.or(last)?;
    let identity = match (&t.container_id, &t.finished_at) {
        (Some(id), _) => hash(id),
        (None, Some(at)) => hash(&at.0.to_string()),
        (None, None) => hash(&("restart", status.restart_count)),
    };
    Some(Termination {
        identity,
        reason: t.reason.clone().unwrap_or_default(),
        exit_code: t.exit_code,
    })
}

/// The exit-code class label of `code`: the codes the guides name
/// (1 an error exit, 101 a Rust panic, 137 SIGKILL (OOM or a failed
/// liveness probe), 143 SIGTERM), 0, or `other`.
pub(super) fn exit_class(code: i32) -> String {
    code.to_string()
}

fn index(set: &'static [&'static str], value: &str) -> usize {
    let label = bucket(set, value);
    set.iter()
        .position(|s| *s == label)
        .unwrap_or(set.len() - 1)
}

fn hash(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}
