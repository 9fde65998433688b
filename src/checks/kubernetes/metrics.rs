//! The metrics of the `kubernetes` kind, the fixed sets their labels come
//! from, and the API resources the check reads (the RBAC rules it needs).

use prometheus_client::registry::Unit;

use crate::checks::MetricDesc;

/// Pods by phase.
pub static PODS: MetricDesc = MetricDesc::gauge(
    "kubernetes_pods",
    None,
    "Pods matching the selector, by namespace and phase (Pending, Running, Succeeded, Failed, Unknown), in the last scheduled run.",
);

/// Pods not ready.
pub static PODS_NOT_READY: MetricDesc = MetricDesc::gauge(
    "kubernetes_pods_not_ready",
    None,
    "Pods matching the selector that have not finished (not Succeeded or Failed) and whose Ready condition is not True, by namespace, in the last scheduled run.",
);

/// Creation time of the oldest Pending pod.
pub static OLDEST_PENDING: MetricDesc = MetricDesc::gauge(
    "kubernetes_oldest_pending_pod_creation_timestamp",
    Some(Unit::Seconds),
    "Creation time of the oldest pod still Pending, by namespace, as a Unix timestamp, in the last scheduled run; absent when no pod is Pending. time() minus this is how long it has been Pending.",
);

/// Containers waiting, by reason.
pub static CONTAINERS_WAITING: MetricDesc = MetricDesc::gauge(
    "kubernetes_containers_waiting",
    None,
    "Containers (init containers included) currently waiting, by namespace and reason (CrashLoopBackOff, ImagePullBackOff, ErrImagePull, CreateContainerConfigError, ContainerCreating, other), in the last scheduled run.",
);

/// Restarts per container, as reported by the kubelet.
pub static CONTAINER_RESTARTS: MetricDesc = MetricDesc::counter(
    "kubernetes_container_restarts",
    None,
    "Restarts of each container, as the kubelet counts them (restartCount), in the last scheduled run; at most max_pods pods.",
);

/// OOM-killed restarts per container, counted by the exporter.
pub static CONTAINER_OOM_KILLS: MetricDesc = MetricDesc::counter(
    "kubernetes_container_oom_kills",
    None,
    "Terminations of each container with reason OOMKilled seen by the exporter (each counted once) up to the last scheduled run; at most max_pods pods.",
);

/// One container waiting, with its reason.
pub static CONTAINER_WAITING: MetricDesc = MetricDesc::gauge(
    "kubernetes_container_waiting",
    None,
    "1 for each container (init containers included) of the first max_pods pods that is waiting, with its reason (CrashLoopBackOff, ImagePullBackOff, ErrImagePull, CreateContainerConfigError, ContainerCreating, other), in the last scheduled run; absent for a container that is not waiting.",
);

/// Exit code of a container's latest termination, with its reason.
pub static CONTAINER_LAST_EXIT_CODE: MetricDesc = MetricDesc::gauge(
    "kubernetes_container_last_termination_exit_code",
    None,
    "Exit code of the latest termination of each container of the first max_pods pods (its current terminated state, else its last state), with its reason (OOMKilled, Error, Completed, ContainerCannotRun, DeadlineExceeded, other), in the last scheduled run; absent for a container that never terminated.",
);

/// Objects without their own series because of a limit.
pub static OVER_LIMIT: MetricDesc = MetricDesc::gauge(
    "kubernetes_over_limit",
    None,
    "Objects (pod, deployment) beyond max_pods or max_deployments that got no series of their own in the last scheduled run; they still count in every total.",
);

/// Desired replicas of a deployment.
pub static DEPLOYMENT_DESIRED: MetricDesc = MetricDesc::gauge(
    "kubernetes_deployment_desired_replicas",
    None,
    "Desired replicas (spec.replicas) of each deployment matching the selector, in the last scheduled run.",
);

/// Updated replicas of a deployment.
pub static DEPLOYMENT_UPDATED: MetricDesc = MetricDesc::gauge(
    "kubernetes_deployment_updated_replicas",
    None,
    "Replicas running the deployment's current pod template (status.updatedReplicas), in the last scheduled run.",
);

/// Available replicas of a deployment.
pub static DEPLOYMENT_AVAILABLE: MetricDesc = MetricDesc::gauge(
    "kubernetes_deployment_available_replicas",
    None,
    "Available replicas (status.availableReplicas) of each deployment matching the selector, in the last scheduled run.",
);

/// Nodes listed.
pub static NODES: MetricDesc = MetricDesc::gauge(
    "kubernetes_nodes",
    None,
    "Nodes matching node_selector, in the last scheduled run.",
);

/// Nodes whose Ready condition is not True.
pub static NODES_NOT_READY: MetricDesc = MetricDesc::gauge(
    "kubernetes_nodes_not_ready",
    None,
    "Nodes whose Ready condition is not True (False, Unknown or missing), in the last scheduled run.",
);

/// Nodes under a pressure condition.
pub static NODES_PRESSURE: MetricDesc = MetricDesc::gauge(
    "kubernetes_nodes_under_pressure",
    None,
    "Nodes with the condition (MemoryPressure, DiskPressure, PIDPressure) True, in the last scheduled run.",
);

/// Allocatable GPUs, summed over the nodes.
pub static NODES_GPUS: MetricDesc = MetricDesc::gauge(
    "kubernetes_nodes_allocatable_gpus",
    None,
    "Allocatable nvidia.com/gpu summed over the nodes that advertise it, in the last scheduled run; absent when no node does.",
);

/// Recent Warning events, by reason.
pub static WARNING_EVENTS: MetricDesc = MetricDesc::gauge(
    "kubernetes_warning_events",
    None,
    "Warning events last seen within events_window, by namespace and reason (FailedScheduling, BackOff, Unhealthy, FailedMount, FailedCreatePodSandBox, Evicted, other), in the last scheduled run.",
);

/// Ready endpoints of a service.
pub static SERVICE_READY: MetricDesc = MetricDesc::gauge(
    "kubernetes_service_ready_endpoints",
    None,
    "Ready endpoints of each configured service (0 when it has none, or no such service), in the last scheduled run.",
);

/// Not-ready endpoints of a service.
pub static SERVICE_NOT_READY: MetricDesc = MetricDesc::gauge(
    "kubernetes_service_not_ready_endpoints",
    None,
    "Endpoints of each configured service that are not ready (0 when there are none), in the last scheduled run.",
);

/// OOM kills in a namespace, counted by the exporter over every pod.
pub static NAMESPACE_OOM_KILLS: MetricDesc = MetricDesc::counter(
    "kubernetes_namespace_oom_kills",
    None,
    "Terminations with reason OOMKilled seen by the exporter (each counted once) in every pod matching the selector, by namespace, up to the last scheduled run; not limited by max_pods.",
);

/// Restarts summed over a namespace's pods.
pub static NAMESPACE_RESTARTS: MetricDesc = MetricDesc::gauge(
    "kubernetes_namespace_container_restarts",
    None,
    "Sum of restartCount over every container of the pods matching the selector, by namespace, in the last scheduled run; not limited by max_pods, and lower when pods are replaced.",
);

/// Terminations by reason.
pub static TERMINATIONS: MetricDesc = MetricDesc::counter(
    "kubernetes_container_terminations",
    None,
    "Container terminations seen by the exporter (each counted once, from the current or last terminated state), by namespace and reason (OOMKilled, Error, Completed, ContainerCannotRun, DeadlineExceeded, other), up to the last scheduled run.",
);

/// Terminations by exit-code class.
pub static EXIT_CODES: MetricDesc = MetricDesc::counter(
    "kubernetes_container_exit_codes",
    None,
    "Container terminations seen by the exporter, by namespace and exit code class (0, 1, 101 a Rust panic, 137 SIGKILL, 143 SIGTERM, other), up to the last scheduled run.",
);

/// Working-set memory of a container, from metrics.k8s.io.
pub static MEMORY_WORKING_SET: MetricDesc = MetricDesc::gauge(
    "kubernetes_container_memory_working_set",
    Some(Unit::Bytes),
    "Working-set memory of each container as metrics.k8s.io (metrics-server) reports it (kubectl top), in the last scheduled run; at most max_pods pods; absent without metrics-server.",
);

/// Memory limit of a container.
pub static MEMORY_LIMIT: MetricDesc = MetricDesc::gauge(
    "kubernetes_container_memory_limit",
    Some(Unit::Bytes),
    "Memory limit (resources.limits.memory) of each container with one, in the last scheduled run; at most max_pods pods.",
);

/// CPU use of a container, from metrics.k8s.io.
pub static CPU_USAGE: MetricDesc = MetricDesc::gauge(
    "kubernetes_container_cpu_usage_cores",
    None,
    "CPU use of each container in cores as metrics.k8s.io (metrics-server) reports it (kubectl top, averaged over its window), in the last scheduled run; at most max_pods pods; absent without metrics-server.",
);

/// CPU limit of a container.
pub static CPU_LIMIT: MetricDesc = MetricDesc::gauge(
    "kubernetes_container_cpu_limit_cores",
    None,
    "CPU limit (resources.limits.cpu) of each container with one, in cores, in the last scheduled run; at most max_pods pods.",
);

/// Every metric this kind can report.
pub static METRICS: [&MetricDesc; 27] = [
    &PODS,
    &PODS_NOT_READY,
    &OLDEST_PENDING,
    &CONTAINERS_WAITING,
    &CONTAINER_RESTARTS,
    &CONTAINER_OOM_KILLS,
    &CONTAINER_WAITING,
    &CONTAINER_LAST_EXIT_CODE,
    &OVER_LIMIT,
    &DEPLOYMENT_DESIRED,
    &DEPLOYMENT_UPDATED,
    &DEPLOYMENT_AVAILABLE,
    &NODES,
    &NODES_NOT_READY,
    &NODES_PRESSURE,
    &NODES_GPUS,
    &WARNING_EVENTS,
    &SERVICE_READY,
    &SERVICE_NOT_READY,
    &NAMESPACE_OOM_KILLS,
    &NAMESPACE_RESTARTS,
    &TERMINATIONS,
    &EXIT_CODES,
    &MEMORY_WORKING_SET,
    &MEMORY_LIMIT,
    &CPU_USAGE,
    &CPU_LIMIT,
];

/// Pod phases, as the `phase` label.
pub const PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

/// Waiting reasons with their own `reason` label value; any other is `other`.
pub const WAITING_REASONS: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "ContainerCreating",
    "other",
];

/// Warning event reasons with their own `reason` label value.
pub const EVENT_REASONS: [&str; 7] = [
    "FailedScheduling",
    "BackOff",
    "Unhealthy",
    "FailedMount",
    "FailedCreatePodSandBox",
    "Evicted",
    "other",
];

/// Termination reasons with their own `reason` label value.
pub const TERMINATION_REASONS: [&str; 6] = [
    "OOMKilled",
    "Error",
    "Completed",
    "ContainerCannotRun",
    "DeadlineExceeded",
    "other",
];

/// Exit-code classes, as the `exit_code` label.
pub const EXIT_CODE_CLASSES: [&str; 6] = ["0", "1", "101", "137", "143", "other"];

/// Node conditions counted by `kubernetes_nodes_under_pressure`.
pub const PRESSURES: [&str; 3] = ["MemoryPressure", "DiskPressure", "PIDPressure"];

/// The extended resource name of NVIDIA GPUs.
pub(super) const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// The label EndpointSlices carry with the name of their service.
pub(super) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The label value for `value` from a fixed set whose last entry is `other`.
pub(super) fn bucket(set: &'static [&'static str], value: &str) -> &'static str {
    set.iter()
        .find(|s| **s == value)
        .copied()
        .unwrap_or(set[set.len() - 1])
}

// ---------------------------------------------------------------------------
// The API resources the check reads

/// One API resource the check lists: the RBAC rule it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiResource {
    /// The API group (`""` for the core group).
    pub group: &'static str,
    /// The resource, plural, as in RBAC rules.
    pub resource: &'static str,
    /// Whether it lives in a namespace (a Role) or the cluster (a ClusterRole).
    pub namespaced: bool,
    /// The verbs the check uses on it, as in RBAC rules.
    pub verbs: &'static [&'static str],
}

pub const PODS_RESOURCE: ApiResource = ApiResource {
    group: "",
    resource: "pods",
    namespaced: true,
    verbs: &[API_VERB],
};
pub const EVENTS_RESOURCE: ApiResource = ApiResource {
    group: "",
    resource: "events",
    namespaced: true,
    verbs: &[API_VERB],
};
pub const DEPLOYMENTS_RESOURCE: ApiResource = ApiResource {
    group: "apps",
    resource: "deployments",
    namespaced: true,
    verbs: &[API_VERB],
};
pub const ENDPOINT_SLICES_RESOURCE: ApiResource = ApiResource {
    group: "discovery.k8s.io",
    resource: "endpointslices",
    namespaced: true,
    verbs: &[API_VERB],
};
pub const NODES_RESOURCE: ApiResource = ApiResource {
    group: "",
    resource: "nodes",
    namespaced: false,
    verbs: &[API_VERB],
};
pub const REPLICA_SETS_RESOURCE: ApiResource = ApiResource {
    group: "apps",
    resource: "replicasets",
    namespaced: true,
    verbs: &[API_VERB],
};
/// PodMetrics of metrics-server (`kubectl top pod`); the API group grants
/// `get` with `list`, as `kubectl top pod NAME` needs it.
pub const POD_METRICS_RESOURCE: ApiResource = ApiResource {
    group: "metrics.k8s.io",
    resource: "pods",
    namespaced: true,
    verbs: &["get", API_VERB],
};

/// Every resource the check reads; each is only ever listed.
pub const API_RESOURCES: [ApiResource; 7] = [
    PODS_RESOURCE,
    EVENTS_RESOURCE,
    DEPLOYMENTS_RESOURCE,
    REPLICA_SETS_RESOURCE,
    ENDPOINT_SLICES_RESOURCE,
    NODES_RESOURCE,
    POD_METRICS_RESOURCE,
];

/// The verb the check uses on every resource.
pub const API_VERB: &str = "list";
