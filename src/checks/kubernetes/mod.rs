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
//! `metrics` declares the metrics and the API resources read; `fold` turns
//! lists into samples; this module holds the config, the client and the run.
//!
//! The only state kept between runs is the API client (its connection pool
//! is reused) and what the OOM-kill counter needs: the last termination seen
//! for each container.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, ObjectList};
use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{BuildError, Check, Failure, Reason, RunContext, RunResult, Sample};

mod fold;
mod metrics;

use fold::{
    container_key, container_statuses, deployment_samples, endpoint_samples, event_samples,
    last_termination, node_samples, pod_name, pod_totals,
};
pub use metrics::*;

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
    #[serde(default = "default_events_window", with = "crate::config::duration")]
    pub events_window: Duration,

    /// At most this many pods (the first by namespace and name) get
    /// per-pod series (restarts, OOM kills); the rest are still counted in
    /// every total. Default: 50.
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

impl super::ProbeSafety for KubernetesSpec {
    fn credentials(&self) -> Vec<&'static str> {
        vec![if self.kubeconfig.is_some() {
            "kubeconfig"
        } else {
            "the service account token"
        }]
    }

    /// The API server comes from the kubeconfig or the cluster.
    fn endpoints(&self) -> Vec<super::targets::Endpoint> {
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
    fn service_ref(&self, entry: &str) -> Result<(Option<String>, String), String> {
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

/// Where the client configuration comes from.
enum Source {
    InCluster,
    Kubeconfig {
        path: PathBuf,
        kubeconfig: Box<Kubeconfig>,
        options: KubeConfigOptions,
    },
}

/// A client and the namespace its configuration defaults to.
#[derive(Clone)]
struct Connection {
    client: Client,
    default_namespace: String,
}

/// The last termination seen of one container, and the OOM kills counted.
#[derive(Debug, Default)]
struct ContainerTrack {
    last_termination: Option<String>,
    oom_kills: u64,
}

/// What the OOM-kill counter remembers between runs, per namespace.
#[derive(Debug, Default)]
struct OomState {
    /// Namespaces whose pods were listed at least once: the first list
    /// only records the terminations already there.
    seen_namespaces: BTreeSet<String>,
    /// Keyed by namespace, pod UID (or name) and container name.
    containers: HashMap<(String, String, String), ContainerTrack>,
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
        let mut secrets = Vec::new();
        let source = match &spec.kubeconfig {
            None => Source::InCluster,
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                    BuildError::new("kubeconfig", format!("cannot read {}: {e}", path.display()))
                })?;
                let context = spec
                    .context
                    .clone()
                    .or_else(|| kubeconfig.current_context.clone());
                let Some(context) = context else {
                    return Err(BuildError::new(
                        "context",
                        format!("{} has no current-context: set `context`", path.display()),
                    ));
                };
                if !kubeconfig.contexts.iter().any(|c| c.name == context) {
                    let known: Vec<&str> = kubeconfig
                        .contexts
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    return Err(BuildError::new(
                        "context",
                        format!(
                            "no context {context:?} in {}; it has: {}",
                            path.display(),
                            known.join(", ")
                        ),
                    ));
                }
                for user in &kubeconfig.auth_infos {
                    if let Some(token) = user.auth_info.as_ref().and_then(|a| a.token.as_ref()) {
                        secrets.push(token.expose_secret().to_string());
                    }
                }
                Source::Kubeconfig {
                    path: path.clone(),
                    kubeconfig: Box::new(kubeconfig),
                    options: KubeConfigOptions {
                        context: Some(context),
                        cluster: None,
                        user: None,
                    },
                }
            }
        };
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
        let config = match &self.source {
            Source::InCluster => Config::incluster().map_err(|e| {
                Failure::new(
                    Reason::Internal,
                    format!(
                        "no in-cluster service account ({e}); set `kubeconfig` when the exporter runs outside Kubernetes"
                    ),
                )
            })?,
            Source::Kubeconfig {
                path,
                kubeconfig,
                options,
            } => Config::from_custom_kubeconfig((**kubeconfig).clone(), options)
                .await
                .map_err(|e| {
                    Failure::new(
                        Reason::Internal,
                        format!("cannot use kubeconfig {}: {e}", path.display()),
                    )
                })?,
        };
        let default_namespace = config.default_namespace.clone();
        let client = client_from(&config).map_err(|e| {
            let (reason, detail) = classify(&e);
            Failure::new(
                reason,
                format!("cannot create the Kubernetes client: {detail}"),
            )
        })?;
        let conn = Connection {
            client,
            default_namespace,
        };
        *lock(&self.connection) = Some(conn.clone());
        Ok(conn)
    }

    async fn probe(&self) -> RunResult {
        let conn = self.connect().await?;
        // Dropped without `disarm` when the scheduler cancels the run: the
        // next run starts with a fresh client.
        let guard = DropOnCancel(&self.connection, true);
        let namespaces = if self.namespaces.is_empty() {
            vec![conn.default_namespace.clone()]
        } else {
            self.namespaces.clone()
        };
        let client = &conn.client;
        let first_namespace = namespaces[0].as_str();
        let per_namespace = join_all(namespaces.iter().map(|ns| async move {
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
            let (pods, deployments, events, slices) =
                futures::join!(pods, deployments, events, slices);
            NamespaceLists {
                namespace: ns.clone(),
                services,
                pods,
                deployments,
                events,
                slices,
            }
        }));
        let nodes = async {
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
        };
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
        let oom = self.track_oom_kills(pods_by_ns);
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

    /// Count each new OOMKilled termination once; return the counts of the
    /// containers listed in this run. Containers that are gone are forgotten.
    fn track_oom_kills(
        &self,
        pods_by_ns: &[(String, Vec<Pod>)],
    ) -> HashMap<(String, String, String), u64> {
        let mut state = lock(&self.oom);
        let mut counts = HashMap::new();
        let mut seen = BTreeSet::new();
        for (ns, pods) in pods_by_ns {
            let first_look = state.seen_namespaces.insert(ns.clone());
            for pod in pods {
                for status in container_statuses(pod) {
                    let key = container_key(ns, pod, &status.name);
                    let termination = last_termination(status);
                    let track = state.containers.entry(key.clone()).or_default();
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
        state
            .containers
            .retain(|key, _| !listed.contains(&key.0) || seen.contains(key));
        counts
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

/// A client for `config`: kube's own stack (base URL, credentials, extra
/// headers, rustls) without its retry layer, since the schedule is the
/// retry, and without its tracing layer, which logs every failed request at
/// ERROR level; the scheduler reports failures once, classified. Requests
/// need no timeouts of their own: the scheduler cancels a run at its timeout.
fn client_from(config: &Config) -> Result<Client, kube::Error> {
    let connector = config.rustls_https_connector()?;
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, kube::client::Body>(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace.clone()))
}

/// Clears the stored client when dropped armed (a cancelled run).
struct DropOnCancel<'a>(&'a Mutex<Option<Connection>>, bool);

impl DropOnCancel<'_> {
    fn disarm(mut self) {
        self.1 = false;
    }
}

impl Drop for DropOnCancel<'_> {
    fn drop(&mut self) {
        if self.1 {
            lock(self.0).take();
        }
    }
}

/// Lock a mutex, ignoring poisoning (the data stays consistent: every
/// critical section is a plain assignment or a loop without panics).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The results of the lists of one namespace (`None`: not asked for).
struct NamespaceLists {
    namespace: String,
    services: Vec<String>,
    pods: Result<Vec<Pod>, Failure>,
    deployments: Option<Result<Vec<Deployment>, Failure>>,
    events: Option<Result<Vec<Event>, Failure>>,
    slices: Option<Result<Vec<EndpointSlice>, Failure>>,
}

/// List one resource with `resourceVersion=0`, mapping errors to a failure
/// that names what was listed.
async fn list<K>(
    api: Api<K>,
    resource: ApiResource,
    namespace: Option<&str>,
    params: ListParams,
) -> Result<Vec<K>, Failure>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = params.match_any();
    match api.list(&params).await {
        Ok(ObjectList { items, .. }) => Ok(items),
        Err(e) => {
            let what = match namespace {
                Some(ns) => format!("list {} in namespace {ns}", resource.resource),
                None => format!("list {}", resource.resource),
            };
            let (reason, mut detail) = classify(&e);
            if matches!(&e, kube::Error::Api(status) if status.code == 403) {
                let group = match resource.group {
                    "" => "core",
                    group => group,
                };
                detail.push_str(&format!(
                    " (the check needs `{API_VERB}` on {} in the {group} API group: see deploy/kubernetes/rbac.yaml)",
                    resource.resource
                ));
            }
            Err(Failure::new(reason, format!("{what}: {detail}")))
        }
    }
}

/// The reason and a one-line description of a client error.
fn classify(e: &kube::Error) -> (Reason, String) {
    match e {
        kube::Error::Api(status) => {
            let reason = match status.code {
                401 | 403 => Reason::Auth,
                _ => Reason::UnexpectedResponse,
            };
            let mut detail = format!("{} {}", status.code, status.reason);
            if !status.message.is_empty() {
                detail.push_str(": ");
                detail.push_str(&status.message);
            }
            (reason, detail)
        }
        kube::Error::SerdeError(_) => (Reason::Protocol, error_chain(e)),
        kube::Error::RustlsTls(_) => (Reason::Tls, error_chain(e)),
        kube::Error::Auth(_) => (Reason::Auth, error_chain(e)),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            (transport_reason(e), error_chain(e))
        }
        _ => (Reason::Internal, error_chain(e)),
    }
}

/// Classify a transport error by the first I/O or TLS error in its chain.
fn transport_reason(e: &(dyn std::error::Error + 'static)) -> Reason {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return Reason::Tls;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        current = err.source();
    }
    Reason::Network
}

/// Classify an I/O error, looking through the I/O errors wrapped in it (the
/// TLS connector wraps rustls errors twice).
fn io_reason(io: &std::io::Error) -> Reason {
    match io.get_ref() {
        Some(inner) if inner.downcast_ref::<rustls::Error>().is_some() => Reason::Tls,
        Some(inner) => match inner.downcast_ref::<std::io::Error>() {
            Some(inner) => io_reason(inner),
            None => Reason::from_io(io),
        },
        None => Reason::from_io(io),
    }
}

/// An error and its causes on one line, without repeats.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}
