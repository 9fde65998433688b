//! The config of a `kubernetes` check: its fields, the semantic validation
//! (Kubernetes names, selectors, `services` entries), and what `/probe` must
//! know of it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::checks::shared::targets::{self, ProbeSafety};

/// Config of a `kubernetes` check.
///
/// ```yaml
/// - name: api_pods
///   kind: kubernetes
///   namespace: llm-research
///   selector: app=llm-research-api
///   services: [llm-research-api]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// A kubeconfig file to connect with, read when the check is built.
    /// Default: the in-cluster service account (the token, CA and API server
    /// address Kubernetes mounts into every pod).
    pub kubeconfig: Option<PathBuf>,

    /// The context of `kubeconfig` to use. Default: its `current-context`.
    pub context: Option<String>,

    /// The namespace to watch over. Default: the namespace of the kubeconfig
    /// context, or of the service account in a cluster.
    pub namespace: Option<String>,

    /// Several namespaces to watch over, instead of `namespace`.
    #[serde(default)]
    pub namespaces: Vec<String>,

    /// A label selector for the pods and deployments, as in `kubectl get pods
    /// -l app=llm-research-api`. Default: every pod and deployment of the
    /// namespaces.
    pub selector: Option<String>,

    /// Services whose ready and not-ready endpoints to count, like `kubectl
    /// get endpoints NAME`. With several `namespaces`, write them as
    /// `namespace/name`. Default: none.
    #[serde(default)]
    pub services: Vec<String>,

    /// Report the deployments matching `selector`. Default: true.
    #[serde(default = "default_true")]
    pub deployments: bool,

    /// Report the cluster's nodes (needs the ClusterRole of
    /// deploy/kubernetes/rbac.yaml). Default: true.
    #[serde(default = "default_true")]
    pub nodes: bool,

    /// A label selector for the nodes, like
    /// `nvidia.com/gpu.present=true`. Default: every node.
    pub node_selector: Option<String>,

    /// Count the namespaces' Warning events. Default: true.
    #[serde(default = "default_true")]
    pub events: bool,

    /// How recent a Warning event must be to be counted: its last occurrence
    /// lies within this window before the run. Default: 15m.
    #[serde(
        default = "default_events_window",
        with = "crate::checks::shared::duration"
    )]
    pub events_window: Duration,

    /// Report each container's CPU and working-set memory from
    /// metrics.k8s.io (`kubectl top pod --containers`) next to its limits.
    /// Without metrics-server the usage is absent and the run passes with a
    /// note saying why. Default: true.
    #[serde(default = "default_true")]
    pub resource_usage: bool,

    /// At most this many pods (the first by namespace and name) get
    /// per-container series (restarts, OOM kills, resource use and limits);
    /// the rest are still counted in every namespace total. Default: 50.
    #[serde(default = "default_max_pods")]
    pub max_pods: usize,

    /// At most this many deployments (the first by namespace and name) get
    /// series. Default: 20.
    #[serde(default = "default_max_deployments")]
    pub max_deployments: usize,
}

fn default_true() -> bool {
    true
}

fn default_events_window() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_max_pods() -> usize {
    50
}

fn default_max_deployments() -> usize {
    20
}

impl ProbeSafety for KubernetesSpec {
    fn credentials(&self) -> Vec<&'static str> {
        vec![if self.kubeconfig.is_some() {
            "kubeconfig"
        } else {
            "the service account token"
        }]
    }

    /// The API server comes from the kubeconfig or the cluster.
    fn endpoints(&self) -> Vec<targets::Endpoint> {
        Vec::new()
    }
}

impl KubernetesSpec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.context.is_some() && self.kubeconfig.is_none() {
            problems.push((
                "context".to_string(),
                "needs `kubeconfig`: the in-cluster config has no contexts".to_string(),
            ));
        }
        if self.namespace.is_some() && !self.namespaces.is_empty() {
            problems.push((
                "namespaces".to_string(),
                "set either namespace or namespaces, not both".to_string(),
            ));
        }
        if let Some(ns) = &self.namespace {
            if let Err(e) = check_name(ns) {
                problems.push(("namespace".to_string(), e));
            }
        }
        for (i, ns) in self.namespaces.iter().enumerate() {
            if let Err(e) = check_name(ns) {
                problems.push((format!("namespaces[{i}]"), e));
            }
        }
        for (field, selector) in [
            ("selector", &self.selector),
            ("node_selector", &self.node_selector),
        ] {
            if selector.as_deref().is_some_and(|s| s.trim().is_empty()) {
                problems.push((
                    field.to_string(),
                    "is empty; leave it out to select everything".to_string(),
                ));
            }
        }
        if self.node_selector.is_some() && !self.nodes {
            problems.push((
                "node_selector".to_string(),
                "is set but nodes is false".to_string(),
            ));
        }
        for (i, service) in self.services.iter().enumerate() {
            if let Err(e) = self.service_ref(service) {
                problems.push((format!("services[{i}]"), e));
            }
        }
        problems
    }

    /// Split a `services` entry into an optional namespace and a name.
    pub(super) fn service_ref(&self, entry: &str) -> Result<(Option<String>, String), String> {
        match entry.split_once('/') {
            Some((ns, name)) => {
                check_name(ns)?;
                check_name(name)?;
                let known = self.namespace.as_deref() == Some(ns)
                    || self.namespaces.iter().any(|n| n == ns);
                if !known {
                    return Err(format!(
                        "{entry:?}: namespace {ns:?} is not one of the check's namespaces"
                    ));
                }
                Ok((Some(ns.to_string()), name.to_string()))
            }
            None => {
                check_name(entry)?;
                if self.namespaces.len() > 1 {
                    return Err(format!(
                        "{entry:?}: with several namespaces, write namespace/{entry}"
                    ));
                }
                Ok((None, entry.to_string()))
            }
        }
    }
}

/// A namespace or object name: a DNS-1123 label or subdomain.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a Kubernetes name: lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit"
        ))
    }
}
