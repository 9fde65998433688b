//! Folding a namespace's pods page by page: totals over every pod (phases,
//! readiness, waiting reasons, the oldest Pending pod, restarts), the
//! first `max_pods` pods by name kept for per-container series, and the
//! ReplicaSets that own them (to find their Deployments). Memory is bounded
//! by `max_pods`, whatever the size of the namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Pod;

use super::fold::{container_statuses, pod_name, seconds};
use super::metrics::*;
use super::terminations::{latest_termination, NamespaceCounts};
use super::usage::{limits, NamespaceUsage};
use crate::checks::Sample;

/// The most ReplicaSet names remembered per namespace to match
/// Deployments; owners beyond it are not followed.
pub(super) const MAX_OWNERS: usize = 1000;

/// One container of a kept pod.
#[derive(Debug, Clone)]
pub(super) struct KeptContainer {
    name: String,
    restarts: i32,
    oom_kills: u64,
    /// The reason it waits for, from [`WAITING_REASONS`].
    waiting: Option<&'static str>,
    /// Its latest termination: reason (from [`TERMINATION_REASONS`]) and
    /// exit code.
    last_termination: Option<(&'static str, i32)>,
    cpu_limit: Option<f64>,
    memory_limit: Option<f64>,
}

/// The pods of one namespace, folded.
#[derive(Debug)]
pub(super) struct NamespacePods {
    pub(super) namespace: String,
    phases: [u32; PHASES.len()],
    waiting: [u32; WAITING_REASONS.len()],
    not_ready: u32,
    oldest_pending: Option<f64>,
    restarts: u64,
    /// The first `max_pods` pods by name, with their containers.
    pub(super) kept: BTreeMap<String, Vec<KeptContainer>>,
    /// Every pod listed.
    pub(super) total: usize,
    /// Names of the ReplicaSets owning the pods.
    pub(super) owners: BTreeSet<String>,
    max_pods: usize,
}

impl NamespacePods {
    pub(super) fn new(namespace: &str, max_pods: usize) -> Self {
        Self {
            namespace: namespace.to_string(),
            phases: [0; PHASES.len()],
            waiting: [0; WAITING_REASONS.len()],
            not_ready: 0,
            oldest_pending: None,
            restarts: 0,
            kept: BTreeMap::new(),
            total: 0,
            owners: BTreeSet::new(),
            max_pods,
        }
    }

    /// Fold one pod; `oom_kills` are its containers' counts, in
    /// [`container_statuses`] order.
    pub(super) fn add(&mut self, pod: &Pod, oom_kills: &[u64]) {
        self.total += 1;
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
        let index = PHASES.iter().position(|p| *p == phase).unwrap_or(4);
        self.phases[index] += 1;
        if phase == "Pending" {
            if let Some(created) = &pod.metadata.creation_timestamp {
                let t = seconds(&created.0);
                self.oldest_pending = Some(self.oldest_pending.map_or(t, |o| o.min(t)));
            }
        }
        let finished = phase == "Succeeded" || phase == "Failed";
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        if !finished && !ready {
            self.not_ready += 1;
        }
        for container in container_statuses(pod) {
            self.restarts += u64::try_from(container.restart_count).unwrap_or(0);
            if let Some(w) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                let reason = bucket(&WAITING_REASONS, w.reason.as_deref().unwrap_or(""));
                let i = WAITING_REASONS
                    .iter()
                    .position(|r| *r == reason)
                    .unwrap_or(0);
                self.waiting[i] += 1;
            }
        }
        for owner in pod.metadata.owner_references.iter().flatten() {
            if owner.kind == "ReplicaSet" && self.owners.len() < MAX_OWNERS {
                self.owners.insert(owner.name.clone());
            }
        }
        self.keep(pod, oom_kills);
    }

    /// Keep `pod` if it is among the first `max_pods` by name so far.
    fn keep(&mut self, pod: &Pod, oom_kills: &[u64]) {
        let name = pod_name(pod);
        if self.kept.len() >= self.max_pods {
            match self.kept.last_key_value() {
                Some((last, _)) if name < last.as_str() => {
                    self.kept.pop_last();
                }
                _ => return,
            }
        }
        let limits = limits(pod);
        let containers = container_statuses(pod)
            .zip(oom_kills.iter().copied().chain(std::iter::repeat(0)))
            .map(|(status, kills)| {
                let (cpu_limit, memory_limit) = limits
                    .get(status.name.as_str())
                    .copied()
                    .unwrap_or_default();
                let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
                KeptContainer {
                    name: status.name.clone(),
                    restarts: status.restart_count.max(0),
                    oom_kills: kills,
                    waiting: waiting
                        .map(|w| bucket(&WAITING_REASONS, w.reason.as_deref().unwrap_or(""))),
                    last_termination: latest_termination(status)
                        .map(|t| (bucket(&TERMINATION_REASONS, &t.reason), t.exit_code)),
                    cpu_limit,
                    memory_limit,
                }
            })
            .collect();
        self.kept.insert(name.to_string(), containers);
    }

    /// The namespace's totals and counters; every fixed label value present.
    pub(super) fn samples(&self, counts: &NamespaceCounts) -> Vec<Sample> {
        let ns = self.namespace.as_str();
        let with_ns = |s: Sample| s.with_label("k8s_namespace", ns);
        let mut samples = Vec::new();
        for (phase, n) in PHASES.iter().zip(self.phases) {
            samples.push(with_ns(Sample::new(&PODS, f64::from(n))).with_label("phase", *phase));
        }
        samples.push(with_ns(Sample::new(
            &PODS_NOT_READY,
            f64::from(self.not_ready),
        )));
        for (reason, n) in WAITING_REASONS.iter().zip(self.waiting) {
            samples.push(
                with_ns(Sample::new(&CONTAINERS_WAITING, f64::from(n)))
                    .with_label("reason", *reason),
            );
        }
        if let Some(t) = self.oldest_pending {
            samples.push(with_ns(Sample::new(&OLDEST_PENDING, t)));
        }
        samples.push(with_ns(Sample::new(
            &NAMESPACE_RESTARTS,
            self.restarts as f64,
        )));
        samples.push(with_ns(Sample::new(
            &NAMESPACE_OOM_KILLS,
            counts.oom_kills as f64,
        )));
        for (reason, n) in TERMINATION_REASONS.iter().zip(counts.reasons) {
            samples
                .push(with_ns(Sample::new(&TERMINATIONS, n as f64)).with_label("reason", *reason));
        }
        for (class, n) in EXIT_CODE_CLASSES.iter().zip(counts.exit_codes) {
            samples
                .push(with_ns(Sample::new(&EXIT_CODES, n as f64)).with_label("exit_code", *class));
        }
        samples
    }
}

/// Per-container series of the first `max_pods` pods by namespace and
/// name over all namespaces, with their resource use where metrics-server
/// reported it, and the count of pods left out.
pub(super) fn per_pod_samples(
    namespaces: &[&NamespacePods],
    usage: &HashMap<String, NamespaceUsage>,
    max_pods: usize,
) -> Vec<Sample> {
    let mut all: Vec<(&str, &str, &Vec<KeptContainer>)> = namespaces
        .iter()
        .flat_map(|ns| {
            ns.kept
                .iter()
                .map(move |(pod, c)| (ns.namespace.as_str(), pod.as_str(), c))
        })
        .collect();
    all.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let total: usize = namespaces.iter().map(|ns| ns.total).sum();
    let mut samples = Vec::new();
    let mut kept = 0;
    for (ns, pod, containers) in all.into_iter().take(max_pods) {
        kept += 1;
        let ns_usage = usage.get(ns);
        for c in containers {
            let labels = |s: Sample| {
                s.with_label("k8s_namespace", ns)
                    .with_label("k8s_pod", pod)
                    .with_label("k8s_container", c.name.as_str())
            };
            samples.push(labels(Sample::new(
                &CONTAINER_RESTARTS,
                f64::from(c.restarts),
            )));
            samples.push(labels(Sample::new(
                &CONTAINER_OOM_KILLS,
                c.oom_kills as f64,
            )));
            if let Some(reason) = c.waiting {
                samples.push(
                    labels(Sample::new(&CONTAINER_WAITING, 1.0)).with_label("reason", reason),
                );
            }
            if let Some((reason, code)) = c.last_termination {
                samples.push(
                    labels(Sample::new(&CONTAINER_LAST_EXIT_CODE, f64::from(code)))
                        .with_label("reason", reason),
                );
            }
            let used = ns_usage.and_then(|u| u.get(&(pod.to_string(), c.name.clone())));
            let values = [
                (&MEMORY_WORKING_SET, used.and_then(|u| u.memory_bytes)),
                (&MEMORY_LIMIT, c.memory_limit),
                (&CPU_USAGE, used.and_then(|u| u.cpu_cores)),
                (&CPU_LIMIT, c.cpu_limit),
            ];
            for (desc, value) in values {
                if let Some(v) = value {
                    samples.push(labels(Sample::new(desc, v)));
                }
            }
        }
    }
    samples.push(
        Sample::new(&OVER_LIMIT, total.saturating_sub(kept) as f64).with_label("object", "pod"),
    );
    samples
}
