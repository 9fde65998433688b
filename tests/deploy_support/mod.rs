//! Shared by the deployment test binaries: the documents of
//! deploy/kubernetes, which of them the kustomization applies, and the
//! exporter's workloads, pods, containers and network policy in them.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every document of every YAML file in deploy/kubernetes.
pub fn documents() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for (i, part) in text.split("\n---\n").enumerate() {
            let value: Value =
                serde_saphyr::from_str(part).unwrap_or_else(|e| panic!("{name} document {i}: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

pub fn names_of(docs: &[(String, Value)], kind: &str) -> HashSet<String> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Kinds whose pods are described by `spec.template`.
pub const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

pub fn is_workload(d: &Value) -> bool {
    WORKLOADS.iter().any(|k| d["kind"] == *k)
}

/// Pod specs of every workload.
pub fn pod_specs(docs: &[(String, Value)]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|(_, d)| is_workload(d))
        .map(|(f, d)| (f.clone(), &d["spec"]["template"]["spec"]))
        .collect()
}

/// Whether a container runs runbook-exporter (by name or image).
pub fn is_exporter(container: &Value) -> bool {
    container["name"] == "runbook-exporter"
        || container["image"]
            .as_str()
            .is_some_and(|i| i.contains("/runbook-exporter:"))
}

/// The containers of a pod spec, init containers included.
pub fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(|k| pod[k].as_array().into_iter().flatten())
}

pub fn kustomization() -> Value {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// The files `kubectl apply -k deploy/kubernetes` applies.
pub fn applied_files() -> Vec<String> {
    kustomization()["resources"]
        .as_array()
        .expect("kustomization.yaml has resources:")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// The documents of the applied files only.
pub fn applied_documents() -> Vec<(String, Value)> {
    let applied = applied_files();
    documents()
        .into_iter()
        .filter(|(f, _)| applied.contains(f))
        .collect()
}

/// Examples deliberately left out of the kustomization. Each must be named
/// in kustomization.yaml's header comment, which says why.
pub const OPT_IN: &[&str] = &[
    "sidecar-deployment.yaml",
    "podmonitor.yaml",
    "secret.example.yaml",
    "probe.yaml",
    "sharded-statefulset.yaml",
    "alertmanager-secret.yaml",
];

/// Labels of the pods of every workload, and the names of their ports.
pub fn pods(docs: &[(String, Value)]) -> Vec<(&Value, HashSet<String>)> {
    docs.iter()
        .filter(|(_, d)| is_workload(d))
        .map(|(_, d)| {
            let ports = d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            (&d["spec"]["template"]["metadata"]["labels"], ports)
        })
        .collect()
}

pub fn matches(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels[k] == *v)
}

/// The exporter config embedded in configmap.yaml, parsed and validated.
pub fn config_map_config(docs: &[(String, Value)]) -> runbook_exporter::config::Config {
    let (_, cm) = docs
        .iter()
        .find(|(_, d)| {
            d["kind"] == "ConfigMap" && d["metadata"]["name"] == "runbook-exporter-config"
        })
        .unwrap();
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    runbook_exporter::config::parse("configmap.yaml", text, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether `name` is in `defined`, or the reference is marked optional
/// (Kubernetes then starts the pod without it).
pub fn resolves(defined: &HashSet<String>, reference: &Value, name_key: &str) -> bool {
    let name = reference[name_key].as_str().unwrap();
    defined.contains(name) || reference["optional"] == true
}

/// Every exporter container with the pod spec it runs in.
pub fn exporter_containers(docs: &[(String, Value)]) -> Vec<(String, &Value, &Value)> {
    pod_specs(docs)
        .into_iter()
        .flat_map(|(file, pod)| {
            containers(pod)
                .filter(|c| is_exporter(c))
                .map(move |c| (file.clone(), pod, c))
        })
        .collect()
}

/// The one NetworkPolicy shipped, and the file it is in.
pub fn network_policy(docs: &[(String, Value)]) -> (&str, &Value) {
    let policies: Vec<_> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "NetworkPolicy")
        .collect();
    assert_eq!(policies.len(), 1, "one example NetworkPolicy");
    (policies[0].0.as_str(), &policies[0].1)
}
