//! Folding the lists of one run into samples: pure functions of the API
//! objects, with every fixed label value present.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;

use super::metrics::*;
use crate::checks::Sample;

pub(super) fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// The statuses of a pod's init containers and containers.
pub(super) fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_deref());
    let main = status.and_then(|s| s.container_statuses.as_deref());
    init.unwrap_or_default()
        .iter()
        .chain(main.unwrap_or_default())
}

pub(super) fn seconds(t: &Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// The replica counts of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DeploymentRow {
    pub(super) name: String,
    pub(super) desired: i32,
    pub(super) updated: i32,
    pub(super) available: i32,
}

impl DeploymentRow {
    pub(super) fn of(d: &Deployment) -> Self {
        let status = d.status.as_ref();
        Self {
            name: d.metadata.name.clone().unwrap_or_default(),
            // spec.replicas defaults to 1 when left out.
            desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            updated: status.and_then(|s| s.updated_replicas).unwrap_or(0),
            available: status.and_then(|s| s.available_replicas).unwrap_or(0),
        }
    }
}

/// Replica counts of the first `max` deployments by namespace and name;
/// `total` is every deployment matched, series or not.
pub(super) fn deployment_samples(
    mut deployments: Vec<(String, DeploymentRow)>,
    total: usize,
    max: usize,
) -> Vec<Sample> {
    deployments.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
    deployments.truncate(max);
    let over = total.saturating_sub(deployments.len());
    let mut samples = Vec::new();
    for (ns, d) in &deployments {
        for (desc, value) in [
            (&DEPLOYMENT_DESIRED, d.desired),
            (&DEPLOYMENT_UPDATED, d.updated),
            (&DEPLOYMENT_AVAILABLE, d.available),
        ] {
            samples.push(
                Sample::new(desc, f64::from(value))
                    .with_label("k8s_namespace", ns.as_str())
                    .with_label("k8s_deployment", d.name.as_str()),
            );
        }
    }
    samples.push(Sample::new(&OVER_LIMIT, over as f64).with_label("object", "deployment"));
    samples
}

/// Node totals: all, not ready, under each pressure, allocatable GPUs.
pub(super) fn node_samples(nodes: &[Node]) -> Vec<Sample> {
    let mut not_ready = 0u32;
    let mut pressure = [0u32; PRESSURES.len()];
    let mut gpus: Option<f64> = None;
    for node in nodes {
        let status = node.status.as_ref();
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let is_true = |kind: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == kind && c.status == "True")
        };
        if !is_true("Ready") {
            not_ready += 1;
        }
        for (i, kind) in PRESSURES.iter().enumerate() {
            if is_true(kind) {
                pressure[i] += 1;
            }
        }
        if let Some(q) = status
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(GPU_RESOURCE))
        {
            // GPUs are whole devices: the quantity is a plain integer.
            if let Ok(n) = q.0.trim().parse::<f64>() {
                *gpus.get_or_insert(0.0) += n;
            }
        }
    }
    let mut samples = vec![
        Sample::new(&NODES, nodes.len() as f64),
        Sample::new(&NODES_NOT_READY, f64::from(not_ready)),
    ];
    for (kind, n) in PRESSURES.iter().zip(pressure) {
        samples.push(Sample::new(&NODES_PRESSURE, f64::from(n)).with_label("condition", *kind));
    }
    if let Some(n) = gpus {
        samples.push(Sample::new(&NODES_GPUS, n));
    }
    samples
}

/// When an event last happened: the newest of its timestamps.
pub(super) fn event_last_seen(event: &Event) -> Option<f64> {
    let series = event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| seconds(&t.0));
    let last = event.last_timestamp.as_ref().map(|t| seconds(&t.0));
    let time = event.event_time.as_ref().map(|t| seconds(&t.0));
    let created = event
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| seconds(&t.0));
    [series, last, time]
        .into_iter()
        .flatten()
        .reduce(f64::max)
        .or(created)
}

/// Warning events last seen at or after `since`, by reason bucket.
pub(super) fn event_samples(ns: &str, events: &[Event], since: f64) -> Vec<Sample> {
    let mut counts = [0u32; EVENT_REASONS.len()];
    for event in events {
        if event.type_.as_deref() != Some("Warning") {
            continue;
        }
        if event_last_seen(event).is_none_or(|t| t < since) {
            continue;
        }
        let reason = bucket(&EVENT_REASONS, event.reason.as_deref().unwrap_or(""));
        let i = EVENT_REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        counts[i] += 1;
    }
    EVENT_REASONS
        .iter()
        .zip(counts)
        .map(|(reason, n)| {
            Sample::new(&WARNING_EVENTS, f64::from(n))
                .with_label("k8s_namespace", ns)
                .with_label("reason", *reason)
        })
        .collect()
}

/// Ready and not-ready endpoints of each service, explicit zeros included.
/// An endpoint that appears in several slices (one per address family) is
/// counted once, by its target or first address.
pub(super) fn endpoint_samples(
    ns: &str,
    services: &[String],
    slices: &[EndpointSlice],
) -> Vec<Sample> {
    let mut by_service: BTreeMap<&str, BTreeMap<String, bool>> = services
        .iter()
        .map(|s| (s.as_str(), BTreeMap::new()))
        .collect();
    for slice in slices {
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let Some(endpoints) = by_service.get_mut(service.as_str()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let identity = match &endpoint.target_ref {
                Some(r) => format!(
                    "{}/{}",
                    r.kind.as_deref().unwrap_or(""),
                    r.name.as_deref().unwrap_or("")
                ),
                None => endpoint.addresses.first().cloned().unwrap_or_default(),
            };
            // An unknown readiness means ready, as the API documents.
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            *endpoints.entry(identity).or_insert(ready) |= ready;
        }
    }
    let mut samples = Vec::new();
    for (service, endpoints) in by_service {
        let ready = endpoints.values().filter(|r| **r).count();
        let not_ready = endpoints.len() - ready;
        for (desc, n) in [(&SERVICE_READY, ready), (&SERVICE_NOT_READY, not_ready)] {
            samples.push(
                Sample::new(desc, n as f64)
                    .with_label("k8s_namespace", ns)
                    .with_label("k8s_service", service),
            );
        }
    }
    samples
}
