//! The API side of a `kubernetes` check: where the client configuration
//! comes from (a kubeconfig or the service account), the client itself,
//! listing one resource, and the classification of client errors.

use std::path::PathBuf;
use std::sync::Mutex;

use hyper_util::rt::TokioExecutor;
use kube::api::{Api, ListParams, ObjectList};
use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::metrics::{ApiResource, API_VERB};
use super::spec::KubernetesSpec;
use crate::checks::shared::errors;
use crate::checks::{BuildError, Failure, Reason};

/// Where the client configuration comes from.
pub(super) enum Source {
    InCluster,
    Kubeconfig {
        path: PathBuf,
        kubeconfig: Box<Kubeconfig>,
        options: KubeConfigOptions,
    },
}

/// A client and the namespace its configuration defaults to.
#[derive(Clone)]
pub(super) struct Connection {
    pub(super) client: Client,
    pub(super) default_namespace: String,
}

impl Source {
    /// Where the client configuration of `spec` comes from: the kubeconfig
    /// is read and its context checked now. Also the tokens it holds, which
    /// are secrets.
    pub(super) fn new(spec: &KubernetesSpec) -> Result<(Self, Vec<String>), BuildError> {
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
        Ok((source, secrets))
    }

    /// A new client and the namespace its configuration defaults to.
    pub(super) async fn connect(&self) -> Result<Connection, Failure> {
        let config = match self {
            // Not a bug but a setup problem: no credentials for any API
            // server. `auth`, like credentials that cannot be loaded.
            Source::InCluster => Config::incluster().map_err(|e| {
                Failure::new(
                    Reason::Auth,
                    format!(
                        "not in a Kubernetes cluster and no `kubeconfig` set: set `kubeconfig` to a kubeconfig file when the exporter runs outside Kubernetes ({e})"
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
        Ok(Connection {
            client,
            default_namespace,
        })
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
pub(super) struct DropOnCancel<'a>(&'a Mutex<Option<Connection>>, bool);

impl<'a> DropOnCancel<'a> {
    /// Armed: clears `slot` when dropped before [`Self::disarm`].
    pub(super) fn armed(slot: &'a Mutex<Option<Connection>>) -> Self {
        Self(slot, true)
    }

    pub(super) fn disarm(mut self) {
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
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Something a passing run could not measure, shown with its result (on
/// the status page and by `check`) without failing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Note(pub(super) String);

/// The most objects a paginated list asks for per request.
pub(super) const PAGE_SIZE: u32 = 500;

/// The most pages one list reads: 100,000 objects. A list that has more
/// fails, and says to narrow the selector.
pub(super) const MAX_PAGES: usize = 200;

/// List one resource with `resourceVersion=0`, mapping errors to a failure
/// that names what was listed.
pub(super) async fn list<K>(
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
            let (reason, detail) = list_error(&e, resource, namespace);
            Err(Failure::new(reason, detail))
        }
    }
}

/// List one resource page by page (`limit` and `continue`), handing each
/// page to `each` as it arrives, so a namespace of 50,000 pods is never
/// held in memory at once. Pages come from a consistent snapshot; the API
/// server's watch cache would ignore `limit`.
pub(super) async fn list_pages<K>(
    api: &Api<K>,
    resource: ApiResource,
    namespace: Option<&str>,
    params: ListParams,
    mut each: impl FnMut(Vec<K>),
) -> Result<(), Failure>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(PAGE_SIZE);
    for _ in 0..MAX_PAGES {
        let page = api.list(&params).await.map_err(|e| {
            let (reason, detail) = list_error(&e, resource, namespace);
            Failure::new(reason, detail)
        })?;
        each(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
    let what = match namespace {
        Some(ns) => format!("{} in namespace {ns}", resource.resource),
        None => resource.resource.to_string(),
    };
    Err(Failure::new(
        Reason::UnexpectedResponse,
        format!(
            "list {what}: more than {} objects ({MAX_PAGES} pages); narrow the selector",
            MAX_PAGES * PAGE_SIZE as usize
        ),
    ))
}

/// The reason and message of a failed list, naming what was listed and,
/// on a 403, the RBAC rule it needs.
pub(super) fn list_error(
    e: &kube::Error,
    resource: ApiResource,
    namespace: Option<&str>,
) -> (Reason, String) {
    let what = match namespace {
        Some(ns) => format!("list {} in namespace {ns}", resource.resource),
        None => format!("list {}", resource.resource),
    };
    let (reason, mut detail) = classify(e);
    if matches!(e, kube::Error::Api(status) if status.code == 403) {
        let group = match resource.group {
            "" => "core",
            group => group,
        };
        detail.push_str(&format!(
            " (the check needs `{API_VERB}` on {} in the {group} API group: see deploy/kubernetes/rbac.yaml)",
            resource.resource
        ));
    }
    (reason, format!("{what}: {detail}"))
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
        kube::Error::SerdeError(_) => (Reason::Protocol, errors::describe(e)),
        kube::Error::RustlsTls(_) => (Reason::Tls, errors::describe(e)),
        kube::Error::Auth(_) => (Reason::Auth, errors::describe(e)),
        kube::Error::HyperError(_) | kube::Error::Service(_) => (
            errors::transport_reason(e).unwrap_or(Reason::Network),
            errors::describe(e),
        ),
        _ => (Reason::Internal, errors::describe(e)),
    }
}
