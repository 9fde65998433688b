//! The OOM-kill counter: the one piece of state a `kubernetes` check keeps
//! between runs besides its client. A container's last termination is
//! remembered, and each new one with reason `OOMKilled` is counted once.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Pod;

use super::fold::{container_key, container_statuses, last_termination};

/// A container: namespace, pod UID (or name) and container name.
type ContainerKey = (String, String, String);

/// The last termination seen of one container, and the OOM kills counted.
#[derive(Debug, Default)]
struct ContainerTrack {
    last_termination: Option<String>,
    oom_kills: u64,
}

/// What the OOM-kill counter remembers between runs, per namespace.
#[derive(Debug, Default)]
pub(super) struct OomState {
    /// Namespaces whose pods were listed at least once: the first list
    /// only records the terminations already there.
    seen_namespaces: BTreeSet<String>,
    /// Keyed by namespace, pod UID (or name) and container name.
    containers: HashMap<ContainerKey, ContainerTrack>,
}

impl OomState {
    /// Count each new OOMKilled termination once; return the counts of the
    /// containers listed in this run. Containers that are gone are forgotten.
    pub(super) fn track(
        &mut self,
        pods_by_ns: &[(String, Vec<Pod>)],
    ) -> HashMap<ContainerKey, u64> {
        let mut counts = HashMap::new();
        let mut seen = BTreeSet::new();
        for (ns, pods) in pods_by_ns {
            let first_look = self.seen_namespaces.insert(ns.clone());
            for pod in pods {
                for status in container_statuses(pod) {
                    let key = container_key(ns, pod, &status.name);
                    let termination = last_termination(status);
                    let track = self.containers.entry(key.clone()).or_default();
                    if let Some((id, reason)) = termination {
                        let new = track.last_termination.as_deref() != Some(id.as_str());
                        if new && reason == "OOMKilled" && !first_look {
                            track.oom_kills += 1;
                        }
                        track.last_termination = Some(id);
                    }
                    counts.insert(key.clone(), track.oom_kills);
                    seen.insert(key);
                }
            }
        }
        let listed: BTreeSet<&String> = pods_by_ns.iter().map(|(ns, _)| ns).collect();
        self.containers
            .retain(|key, _| !listed.contains(&key.0) || seen.contains(key));
        counts
    }
}
