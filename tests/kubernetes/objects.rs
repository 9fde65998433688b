//! Small Kubernetes objects in the API's JSON shapes: pods and their
//! container states, events, nodes, EndpointSlices and deployments.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::NS;

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RFC 3339 time `secs` seconds ago, as the API writes it.
pub(crate) fn ago(secs: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(now() - secs)
        .unwrap()
        .to_string()
}

/// A pod of the llm-research-api deployment with the given phase, Ready
/// condition and container statuses.
pub(crate) fn pod(name: &str, phase: &str, ready: bool, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": format!("uid-{name}"),
            "creationTimestamp": ago(3600),
            "labels": {"app": "llm-research-api"},
        },
        "spec": {"containers": [{"name": "api", "image": "registry.example/llm-research-api:1.4.2"}]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": containers,
        },
    })
}

/// A not-ready pod whose container `api` is in CrashLoopBackOff after
/// `restarts` restarts, its last termination `last` (see [`terminated`]).
pub(crate) fn crash_looping_pod(name: &str, restarts: u32, last: Value) -> Value {
    pod(
        name,
        "Running",
        false,
        vec![container(
            "api",
            restarts,
            waiting_state("CrashLoopBackOff"),
            last,
        )],
    )
}

/// A container status; `state` and `last_state` are ContainerState objects.
pub(crate) fn container(name: &str, restarts: u32, state: Value, last_state: Value) -> Value {
    json!({
        "name": name,
        "image": "registry.example/llm-research-api:1.4.2",
        "imageID": "registry.example/llm-research-api@sha256:0123",
        "ready": state.get("running").is_some(),
        "started": state.get("running").is_some(),
        "restartCount": restarts,
        "state": state,
        "lastState": last_state,
    })
}

pub(crate) fn running() -> Value {
    json!({"running": {"startedAt": ago(60)}})
}

pub(crate) fn waiting_state(reason: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": "back-off 40s restarting failed container"}})
}

/// A last state: the container ended with `reason` (like OOMKilled), as
/// the container with ID `id`.
pub(crate) fn terminated(reason: &str, exit_code: i32, id: &str) -> Value {
    json!({"terminated": {
        "reason": reason,
        "exitCode": exit_code,
        "startedAt": ago(300),
        "finishedAt": ago(120),
        "containerID": format!("containerd://{id}"),
    }})
}

pub(crate) fn event(name: &str, type_: &str, reason: &str, last_seen_ago: i64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": ago(last_seen_ago + 60)},
        "involvedObject": {"kind": "Pod", "namespace": NS, "name": "api-0"},
        "reason": reason,
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        "type": type_,
        "count": 3,
        "firstTimestamp": ago(last_seen_ago + 60),
        "lastTimestamp": ago(last_seen_ago),
        "source": {"component": "default-scheduler"},
    })
}

pub(crate) fn node(name: &str, ready: &str, pressure: &[&str], gpus: Option<&str>) -> Value {
    let mut conditions = vec![json!({"type": "Ready", "status": ready, "reason": "KubeletReady"})];
    for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let status = if pressure.contains(&kind) {
            "True"
        } else {
            "False"
        };
        conditions.push(json!({"type": kind, "status": status}));
    }
    let mut allocatable = json!({"cpu": "15900m", "memory": "62Gi", "pods": "110"});
    if let Some(n) = gpus {
        allocatable["nvidia.com/gpu"] = json!(n);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"conditions": conditions, "allocatable": allocatable},
    })
}

/// An EndpointSlice of `service` with one endpoint per `(pod, ready)`.
pub(crate) fn endpoint_slice(service: &str, endpoints: &[(&str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (pod, ready))| {
            json!({
                "addresses": [format!("10.244.1.{}", i + 10)],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "targetRef": {"kind": "Pod", "namespace": NS, "name": pod},
                "nodeName": "node-a",
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-x7k2p"),
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

pub(crate) fn deployment(name: &str, desired: u32, updated: u32, available: u32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "llm-research-api"}},
        "spec": {
            "replicas": desired,
            "selector": {"matchLabels": {"app": "llm-research-api"}},
            "template": {
                "metadata": {"labels": {"app": "llm-research-api"}},
                "spec": {"containers": [{"name": "api", "image": "registry.example/llm-research-api:1.4.2"}]},
            },
        },
        "status": {"replicas": desired, "updatedReplicas": updated, "availableReplicas": available},
    })
}

/// `pod` owned by the ReplicaSet `replica_set`, as a Deployment's pods are.
pub(crate) fn owned_by(mut pod: Value, replica_set: &str) -> Value {
    pod["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": replica_set,
        "uid": format!("uid-{replica_set}"),
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    pod
}

/// A ReplicaSet owned by the Deployment `deployment`.
pub(crate) fn replica_set(name: &str, deployment: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"pod-template-hash": "7d9f"},
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment,
                "uid": format!("uid-{deployment}"),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": {"pod-template-hash": "7d9f"}}},
        "status": {"replicas": 1},
    })
}

/// `pod` whose container `api` has these limits (`"500m"`, `"512Mi"`).
pub(crate) fn with_limits(mut pod: Value, cpu: &str, memory: &str) -> Value {
    pod["spec"]["containers"][0]["resources"] = json!({
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": cpu, "memory": memory},
    });
    pod
}

/// A PodMetrics object as metrics-server serves it: container `api` of
/// pod `name` using `cpu` and `memory` (working set).
pub(crate) fn pod_metrics(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": name,
            "namespace": NS,
            "creationTimestamp": ago(0),
            "labels": {"app": "llm-research-api"},
        },
        "timestamp": ago(12),
        "window": "15.018s",
        "containers": [{"name": "api", "usage": {"cpu": cpu, "memory": memory}}],
    })
}
