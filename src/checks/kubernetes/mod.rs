//! The `kubernetes` kind: the guides' first kubectl commands in an incident
//! (`kubectl get pods -l app=...`, `kubectl describe pod`, `kubectl get
//! nodes`, `kubectl get events`, `kubectl get endpoints`) as metrics.
//!
//! Each run lists, with one request per resource and namespace, the pods and
//! deployments matching the selector, the namespace's Warning events, the
//! EndpointSlices of the configured services and the nodes, then folds the
//! lists into bounded series: counts by fixed sets of phases and reasons,
//! per-pod series for at most `max_pods` pods, and labels only from object
//! names. Lists ask for `resourceVersion=0`, so the API server answers from
//! its watch cache without a read from etcd.
//!
//! `spec` holds the config and its validation, `metrics` the metrics and
//! the API resources read, `client` the API client and its errors, `fold`
//! the turning of lists into samples, and `oom` the OOM-kill counter; this
//! module builds and runs the check.
//!
//! The only state kept between runs is the API client (its connection pool
//! is reused) and what the OOM-kill counter needs: the last termination seen
//! for each container.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::Client;

use super::{BuildError, Check, Failure, Reason, RunContext, RunResult, Sample};

mod client;
mod fold;
mod metrics;
mod oom;
mod spec;

use client::{list, lock, Connection, DropOnCancel, NamespaceLists, Source};
use fold::{
    container_key, container_statuses, deployment_samples, endpoint_samples, event_samples,
    node_samples, pod_name, pod_totals,
};
pub use metrics::*;
use oom::OomState;
pub use spec::KubernetesSpec;

/// A built `kubernetes` check.
pub struct KubernetesCheck {
    source: Source,
    namespaces: Vec<String>,
    selector: Option<String>,
    /// Services by namespace (`None`: the default namespace).
    services: Vec<(Option<String>, String)>,
    deployments: bool,
    nodes: bool,
    node_selector: Option<String>,
    events: bool,
    events_window: Duration,
    max_pods: usize,
    max_deployments: usize,
    secrets: Vec<String>,
    /// The client, built on the first run and dropped after a TLS failure
    /// or a run that did not finish.
    connection: Mutex<Option<Connection>>,
    oom: Mutex<OomState>,
}

impl KubernetesCheck {
    pub fn new(spec: &KubernetesSpec) -> Result<Self, BuildError> {
        let (source, secrets) = Source::new(spec)?;
        let mut services = Vec::new();
        for (i, entry) in spec.services.iter().enumerate() {
            services.push(
                spec.service_ref(entry)
                    .map_err(|e| BuildError::new(format!("services[{i}]"), e))?,
            );
        }
        let namespaces = match &spec.namespace {
            Some(ns) => vec![ns.clone()],
            None => spec.namespaces.clone(),
        };
        Ok(Self {
            source,
            namespaces,
            selector: spec.selector.clone(),
            services,
            deployments: spec.deployments,
            nodes: spec.nodes,
            node_selector: spec.node_selector.clone(),
            events: spec.events,
            events_window: spec.events_window,
            max_pods: spec.max_pods,
            max_deployments: spec.max_deployments,
            secrets,
            connection: Mutex::new(None),
            oom: Mutex::new(OomState::default()),
        })
    }

    /// The client of earlier runs, or a new one.
    async fn connect(&self) -> Result<Connection, Failure> {
        if let Some(conn) = lock(&self.connection).clone() {
            return Ok(conn);
        }
        let conn = self.source.connect().await?;
        *lock(&self.connection) = Some(conn.clone());
        Ok(conn)
    }

    async fn probe(&self) -> RunResult {
        let conn = self.connect().await?;
        // Dropped without `disarm` when the scheduler cancels the run: the
        // next run starts with a fresh client.
        let guard = DropOnCancel::armed(&self.connection);
        let namespaces = if self.namespaces.is_empty() {
            vec![conn.default_namespace.clone()]
        } else {
            self.namespaces.clone()
        };
        let client = &conn.client;
        let first_namespace = namespaces[0].as_str();
        let per_namespace = join_all(
            namespaces
                .iter()
                .map(|ns| self.list_namespace(client, ns, first_namespace)),
        );
        let nodes = self.list_nodes(client);
        let (per_namespace, nodes) = futures::join!(per_namespace, nodes);
        guard.disarm();

        let result = self.fold(per_namespace, nodes, crate::clock::unix_now());
        // The connection pool replaces broken connections by itself; a TLS
        // failure may come from a rotated CA, which a new client reloads.
        if result.as_ref().is_err_and(|f| f.reason == Reason::Tls) {
            lock(&self.connection).take();
        }
        result
    }

    /// The lists of one namespace, all asked at once. Services written
    /// without a namespace belong to `first_namespace`.
    async fn list_namespace(
        &self,
        client: &Client,
        ns: &str,
        first_namespace: &str,
    ) -> NamespaceLists {
        let services: Vec<String> = self
            .services
            .iter()
            .filter(|(sns, _)| sns.as_deref().unwrap_or(first_namespace) == ns)
            .map(|(_, name)| name.clone())
            .collect();
        let pods = list(
            Api::<Pod>::namespaced(client.clone(), ns),
            PODS_RESOURCE,
            Some(ns),
            self.pod_params(),
        );
        let deployments = async {
            if !self.deployments {
                return None;
            }
            let api = Api::<Deployment>::namespaced(client.clone(), ns);
            Some(list(api, DEPLOYMENTS_RESOURCE, Some(ns), self.pod_params()).await)
        };
        let events = async {
            if !self.events {
                return None;
            }
            let api = Api::<Event>::namespaced(client.clone(), ns);
            let params = ListParams::default().fields("type=Warning");
            Some(list(api, EVENTS_RESOURCE, Some(ns), params).await)
        };
        let slices = async {
            if services.is_empty() {
                return None;
            }
            let selector = format!("{SERVICE_NAME_LABEL} in ({})", services.join(","));
            Some(
                list(
                    Api::<EndpointSlice>::namespaced(client.clone(), ns),
                    ENDPOINT_SLICES_RESOURCE,
                    Some(ns),
                    ListParams::default().labels(&selector),
                )
                .await,
            )
        };
        let (pods, deployments, events, slices) = futures::join!(pods, deployments, events, slices);
        NamespaceLists {
            namespace: ns.to_string(),
            services,
            pods,
            deployments,
            events,
            slices,
        }
    }

    /// The nodes matching `node_selector`; `None` when `nodes` is false.
    async fn list_nodes(&self, client: &Client) -> Option<Result<Vec<Node>, Failure>> {
        if !self.nodes {
            return None;
        }
        let mut params = ListParams::default();
        if let Some(selector) = &self.node_selector {
            params = params.labels(selector);
        }
        Some(
            list(
                Api::<Node>::all(client.clone()),
                NODES_RESOURCE,
                None,
                params,
            )
            .await,
        )
    }

    /// Turn the lists of one run into samples, or a failure carrying the
    /// samples of the lists that succeeded.
    fn fold(
        &self,
        per_namespace: Vec<NamespaceLists>,
        nodes: Option<Result<Vec<Node>, Failure>>,
        now: f64,
    ) -> RunResult {
        let mut samples = Vec::new();
        let mut failures: Vec<Failure> = Vec::new();
        let mut pods_by_ns: Vec<(String, Vec<Pod>)> = Vec::new();
        let mut deployments: Vec<(String, Deployment)> = Vec::new();
        let mut deployments_listed = false;
        for lists in per_namespace {
            let ns = lists.namespace;
            match lists.pods {
                Ok(pods) => pods_by_ns.push((ns.clone(), pods)),
                Err(f) => failures.push(f),
            }
            match lists.deployments {
                Some(Ok(list)) => {
                    deployments_listed = true;
                    deployments.extend(list.into_iter().map(|d| (ns.clone(), d)));
                }
                Some(Err(f)) => failures.push(f),
                None => {}
            }
            match lists.events {
                Some(Ok(events)) => samples.extend(event_samples(
                    &ns,
                    &events,
                    now - self.events_window.as_secs_f64(),
                )),
                Some(Err(f)) => failures.push(f),
                None => {}
            }
            match lists.slices {
                Some(Ok(slices)) => samples.extend(endpoint_samples(&ns, &lists.services, &slices)),
                Some(Err(f)) => failures.push(f),
                None => {}
            }
        }
        if !pods_by_ns.is_empty() {
            samples.extend(self.pod_samples(&pods_by_ns));
        }
        if deployments_listed {
            samples.extend(deployment_samples(deployments, self.max_deployments));
        }
        match nodes {
            Some(Ok(nodes)) => samples.extend(node_samples(&nodes)),
            Some(Err(f)) => failures.push(f),
            None => {}
        }
        let mut failures = failures.into_iter();
        match failures.next() {
            None => Ok(samples),
            Some(first) => {
                let others = failures.count();
                let message = match others {
                    0 => first.message,
                    n => format!("{} (and {n} more failed requests)", first.message),
                };
                Err(Failure::new(first.reason, message).with_samples(samples))
            }
        }
    }

    fn pod_params(&self) -> ListParams {
        let params = ListParams::default();
        match &self.selector {
            Some(selector) => params.labels(selector),
            None => params,
        }
    }

    /// Pod totals per namespace, then per-container series for the first
    /// `max_pods` pods, and the OOM-kill bookkeeping.
    fn pod_samples(&self, pods_by_ns: &[(String, Vec<Pod>)]) -> Vec<Sample> {
        let mut samples = Vec::new();
        for (ns, pods) in pods_by_ns {
            samples.extend(pod_totals(ns, pods));
        }
        let oom = lock(&self.oom).track(pods_by_ns);
        let mut all: Vec<(&str, &Pod)> = pods_by_ns
            .iter()
            .flat_map(|(ns, pods)| pods.iter().map(move |p| (ns.as_str(), p)))
            .collect();
        all.sort_by(|a, b| (a.0, pod_name(a.1)).cmp(&(b.0, pod_name(b.1))));
        let over = all.len().saturating_sub(self.max_pods);
        for (ns, pod) in all.into_iter().take(self.max_pods) {
            for status in container_statuses(pod) {
                let labels = |sample: Sample| {
                    sample
                        .with_label("k8s_namespace", ns)
                        .with_label("k8s_pod", pod_name(pod))
                        .with_label("k8s_container", status.name.as_str())
                };
                samples.push(labels(Sample::new(
                    &CONTAINER_RESTARTS,
                    f64::from(status.restart_count.max(0)),
                )));
                let kills = oom
                    .get(&container_key(ns, pod, &status.name))
                    .copied()
                    .unwrap_or(0);
                samples.push(labels(Sample::new(&CONTAINER_OOM_KILLS, kills as f64)));
            }
        }
        samples.push(Sample::new(&OVER_LIMIT, over as f64).with_label("object", "pod"));
        samples
    }
}

impl Check for KubernetesCheck {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe())
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

crate::checks::kind!(KubernetesSpec => KubernetesCheck, "kubernetes");
