//! The `kubernetes` kind: the guides' first kubectl commands in an incident
//! (`kubectl get pods -l app=...`, `kubectl describe pod`, `kubectl get
//! nodes`, `kubectl get events`, `kubectl get endpoints`) as metrics.
//!
//! Each run lists, per namespace, the pods matching the selector (page by
//! page, `limit`/`continue`, folded as they arrive so memory stays bounded
//! by `max_pods`), their PodMetrics from metrics.k8s.io, the Deployments
//! owning them through their ReplicaSets (`ownerReferences`), the Warning
//! events, the EndpointSlices of the configured services, and the nodes;
//! then it folds them into bounded series: namespace totals over every pod,
//! counts by fixed sets of phases and reasons, per-container series for at
//! most `max_pods` pods, and labels only from object names. Small lists ask
//! for `resourceVersion=0`, so the API server answers from its watch cache.
//!
//! `spec` holds the config and its validation, `metrics` the metrics and
//! the API resources read, `client` the API client, paginated lists and
//! errors, `pods` the folding of pods, `usage` resource use from
//! metrics.k8s.io, `fold` the other lists, and `terminations` the counters
//! of how containers die; this module builds and runs the check.
//!
//! The only state kept between runs is the API client (its connection pool
//! is reused) and what the termination counters need: a hash of the last
//! termination seen for each container.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::Client;

use super::{BuildError, Check, Failure, Reason, RunContext, RunResult};

mod client;
mod fold;
mod metrics;
mod pods;
mod spec;
mod terminations;
mod usage;

use client::{list, list_pages, lock, Connection, DropOnCancel, Note, Source};
use fold::{deployment_samples, endpoint_samples, event_samples, node_samples, DeploymentRow};
pub use metrics::*;
use pods::{per_pod_samples, NamespacePods};
pub use spec::KubernetesSpec;
use terminations::Terminations;
use usage::NamespaceUsage;

/// The results of the lists of one namespace (`None`: not asked for).
struct NamespaceLists {
    namespace: String,
    services: Vec<String>,
    pods: Result<NamespacePods, Failure>,
    usage: Option<Result<NamespaceUsage, Note>>,
    /// The deployments kept (the first `max_deployments` by name) and how
    /// many matched.
    deployments: Option<Result<(Vec<DeploymentRow>, usize), Failure>>,
    events: Option<Result<Vec<Event>, Failure>>,
    slices: Option<Result<Vec<EndpointSlice>, Failure>>,
}

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
    resource_usage: bool,
    max_pods: usize,
    max_deployments: usize,
    secrets: Vec<String>,
    /// The client, built on the first run and dropped after a TLS failure
    /// or a run that did not finish.
    connection: Mutex<Option<Connection>>,
    terminations: Mutex<Terminations>,
    /// What the last run could not measure though it passed.
    notes: Mutex<Vec<String>>,
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
            resource_usage: spec.resource_usage,
            max_pods: spec.max_pods,
            max_deployments: spec.max_deployments,
            secrets,
            connection: Mutex::new(None),
            terminations: Mutex::new(Terminations::default()),
            notes: Mutex::new(Vec::new()),
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

        let (result, notes) = self.fold(per_namespace, nodes, crate::clock::unix_now());
        *lock(&self.notes) = notes;
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
        let pods = async {
            let pods = self.list_pods(client, ns).await;
            let deployments = match (&pods, self.deployments) {
                (Ok(p), true) => Some(self.list_deployments(client, ns, &p.owners).await),
                _ => None,
            };
            (pods, deployments)
        };
        let usage = async {
            if !self.resource_usage {
                return None;
            }
            Some(usage::list_usage(client, ns, self.selector.as_deref()).await)
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
        let ((pods, deployments), usage, events, slices) =
            futures::join!(pods, usage, events, slices);
        NamespaceLists {
            namespace: ns.to_string(),
            services,
            pods,
            usage,
            deployments,
            events,
            slices,
        }
    }

    /// The pods of `ns` matching the selector, page by page, counting
    /// their new terminations as they arrive.
    async fn list_pods(&self, client: &Client, ns: &str) -> Result<NamespacePods, Failure> {
        let api = Api::<Pod>::namespaced(client.clone(), ns);
        let mut listing = lock(&self.terminations).begin(ns);
        let mut pods = NamespacePods::new(ns, self.max_pods);
        list_pages(&api, PODS_RESOURCE, Some(ns), self.pod_params(), |page| {
            let mut terminations = lock(&self.terminations);
            for pod in &page {
                let kills = terminations.observe(&mut listing, ns, pod);
                pods.add(pod, &kills);
            }
        })
        .await?;
        lock(&self.terminations).finish(ns, listing);
        Ok(pods)
    }

    /// The deployments of `ns` owning the selected pods through their
    /// ReplicaSets (`owners`), or every deployment without a selector: the
    /// first `max_deployments` by name, and how many there are.
    async fn list_deployments(
        &self,
        client: &Client,
        ns: &str,
        owners: &BTreeSet<String>,
    ) -> Result<(Vec<DeploymentRow>, usize), Failure> {
        let wanted = match &self.selector {
            None => None,
            Some(_) if owners.is_empty() => return Ok((Vec::new(), 0)),
            Some(_) => {
                let mut names = BTreeSet::new();
                let api = Api::<ReplicaSet>::namespaced(client.clone(), ns);
                let params = ListParams::default();
                list_pages(&api, REPLICA_SETS_RESOURCE, Some(ns), params, |page| {
                    for rs in page {
                        if !rs
                            .metadata
                            .name
                            .as_ref()
                            .is_some_and(|n| owners.contains(n))
                        {
                            continue;
                        }
                        for owner in rs.metadata.owner_references.iter().flatten() {
                            if owner.kind == "Deployment" {
                                names.insert(owner.name.clone());
                            }
                        }
                    }
                })
                .await?;
                Some(names)
            }
        };
        let mut rows: Vec<DeploymentRow> = Vec::new();
        let mut total = 0;
        let api = Api::<Deployment>::namespaced(client.clone(), ns);
        list_pages(
            &api,
            DEPLOYMENTS_RESOURCE,
            Some(ns),
            ListParams::default(),
            |page| {
                for d in &page {
                    let name = d.metadata.name.as_deref().unwrap_or("");
                    if wanted.as_ref().is_some_and(|w| !w.contains(name)) {
                        continue;
                    }
                    total += 1;
                    rows.push(DeploymentRow::of(d));
                }
                // Keep the first max_deployments by name only.
                rows.sort_by(|a, b| a.name.cmp(&b.name));
                rows.truncate(self.max_deployments);
            },
        )
        .await?;
        Ok((rows, total))
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
    /// samples of the lists that succeeded. Notes say what a passing run
    /// could not measure.
    fn fold(
        &self,
        per_namespace: Vec<NamespaceLists>,
        nodes: Option<Result<Vec<Node>, Failure>>,
        now: f64,
    ) -> (RunResult, Vec<String>) {
        let mut samples = Vec::new();
        let mut failures: Vec<Failure> = Vec::new();
        let mut notes = Vec::new();
        let mut pods: Vec<NamespacePods> = Vec::new();
        let mut usage: HashMap<String, NamespaceUsage> = HashMap::new();
        let mut deployments: Vec<(String, DeploymentRow)> = Vec::new();
        let mut deployments_total = 0;
        let mut deployments_listed = false;
        for lists in per_namespace {
            let ns = lists.namespace;
            match lists.pods {
                Ok(p) => pods.push(p),
                Err(f) => failures.push(f),
            }
            match lists.usage {
                Some(Ok(u)) => {
                    usage.insert(ns.clone(), u);
                }
                Some(Err(Note(note))) => notes.push(note),
                None => {}
            }
            match lists.deployments {
                Some(Ok((rows, total))) => {
                    deployments_listed = true;
                    deployments_total += total;
                    deployments.extend(rows.into_iter().map(|d| (ns.clone(), d)));
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
        if !pods.is_empty() {
            let terminations = lock(&self.terminations);
            for p in &pods {
                samples.extend(p.samples(&terminations.counts(&p.namespace)));
            }
            drop(terminations);
            let all: Vec<&NamespacePods> = pods.iter().collect();
            samples.extend(per_pod_samples(&all, &usage, self.max_pods));
        }
        if deployments_listed {
            samples.extend(deployment_samples(
                deployments,
                deployments_total,
                self.max_deployments,
            ));
        }
        match nodes {
            Some(Ok(nodes)) => samples.extend(node_samples(&nodes)),
            Some(Err(f)) => failures.push(f),
            None => {}
        }
        let mut failures = failures.into_iter();
        let result = match failures.next() {
            None => Ok(samples),
            Some(first) => {
                let others = failures.count();
                let message = match others {
                    0 => first.message,
                    n => format!("{} (and {n} more failed requests)", first.message),
                };
                Err(Failure::new(first.reason, message).with_samples(samples))
            }
        };
        (result, notes)
    }

    fn pod_params(&self) -> ListParams {
        let params = ListParams::default();
        match &self.selector {
            Some(selector) => params.labels(selector),
            None => params,
        }
    }
}

impl Check for KubernetesCheck {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe())
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }

    fn notes(&self) -> Vec<String> {
        lock(&self.notes).clone()
    }
}

crate::checks::kind!(KubernetesSpec => KubernetesCheck, "kubernetes");
