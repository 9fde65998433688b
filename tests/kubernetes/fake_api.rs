//! The fake Kubernetes API server the tests run the real kube client
//! against (plain HTTP, or behind a TLS front), the kubeconfig pointing at
//! it, the check fixture, and the helpers that read samples.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use runbook_exporter::checks::{Check, Failure, RunContext, Sample};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::common::build;
use crate::{NS, TOKEN};

/// What the fake API server holds: the items of each list, which resources
/// answer 403, and the requests it received.
#[derive(Default)]
pub(crate) struct Cluster {
    pub(crate) pods: Vec<Value>,
    pub(crate) deployments: Vec<Value>,
    pub(crate) events: Vec<Value>,
    pub(crate) endpoint_slices: Vec<Value>,
    pub(crate) nodes: Vec<Value>,
    pub(crate) replica_sets: Vec<Value>,
    /// PodMetrics of metrics.k8s.io; `None`: the API group is not served
    /// (no metrics-server), as the API server answers then: 404.
    pub(crate) pod_metrics: Option<Vec<Value>>,
    pub(crate) forbidden: Vec<&'static str>,
    /// Answer nothing, ever (a hung API server).
    pub(crate) hang: bool,
    pub(crate) requests: Vec<Request0>,
}

/// One request as received: path, query, and whether it carried our token.
#[derive(Debug, Clone)]
pub(crate) struct Request0 {
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) authorized: bool,
}

pub(crate) type Shared = Arc<Mutex<Cluster>>;

pub(crate) async fn api(State(cluster): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if cluster.lock().unwrap().hang {
        std::future::pending::<()>().await;
    }
    let mut cluster = cluster.lock().unwrap();
    cluster.requests.push(Request0 {
        path: path.clone(),
        query: query.clone(),
        authorized,
    });
    let ns_path = |group: &str, resource: &str| format!("{group}/namespaces/{NS}/{resource}");
    let (resource, api_version, kind, items) = if path == ns_path("/api/v1", "pods") {
        ("pods", "v1", "PodList", &cluster.pods)
    } else if path == ns_path("/apis/apps/v1", "deployments") {
        (
            "deployments",
            "apps/v1",
            "DeploymentList",
            &cluster.deployments,
        )
    } else if path == ns_path("/api/v1", "events") {
        ("events", "v1", "EventList", &cluster.events)
    } else if path == ns_path("/apis/discovery.k8s.io/v1", "endpointslices") {
        (
            "endpointslices",
            "discovery.k8s.io/v1",
            "EndpointSliceList",
            &cluster.endpoint_slices,
        )
    } else if path == "/api/v1/nodes" {
        ("nodes", "v1", "NodeList", &cluster.nodes)
    } else if path == ns_path("/apis/apps/v1", "replicasets") {
        (
            "replicasets",
            "apps/v1",
            "ReplicaSetList",
            &cluster.replica_sets,
        )
    } else if let (true, Some(metrics)) = (
        path == ns_path("/apis/metrics.k8s.io/v1beta1", "pods"),
        cluster.pod_metrics.as_ref(),
    ) {
        (
            "pods.metrics.k8s.io",
            "metrics.k8s.io/v1beta1",
            "PodMetricsList",
            metrics,
        )
    } else {
        return (
            StatusCode::NOT_FOUND,
            json_response(status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        )
            .into_response();
    };
    if cluster.forbidden.contains(&resource) {
        let scope = if resource == "nodes" {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{NS}\"")
        };
        let message = format!(
            "{resource} is forbidden: User \"system:serviceaccount:{NS}:runbook-exporter\" cannot list resource \"{resource}\" in API group \"\" {scope}"
        );
        return (
            StatusCode::FORBIDDEN,
            json_response(status(403, "Forbidden", &message)),
        )
            .into_response();
    }
    json_response(page(api_version, kind, items, &query))
}

/// One page of a list, with `limit` and `continue` as the API server
/// pages it; the token is the offset of the next page here.
fn page(api_version: &str, kind: &str, items: &[Value], query: &str) -> Value {
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let offset: usize = param("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: Option<usize> = param("limit").and_then(|l| l.parse().ok());
    let end = limit.map_or(items.len(), |l| (offset + l).min(items.len()));
    let mut metadata = json!({"resourceVersion": "48213"});
    if end < items.len() {
        metadata["continue"] = json!(end.to_string());
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": metadata,
        "items": &items[offset.min(end)..end],
    })
}

/// A JSON body with the API server's content type.
pub(crate) fn json_response(body: Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A `v1 Status` error body, as the API server sends it.
pub(crate) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// Start the fake API server on 127.0.0.1.
pub(crate) async fn start(cluster: Shared) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(api).with_state(cluster);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Longest the TLS front waits to connect to its backend.
const BACKEND_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TLS front for `backend` on 127.0.0.1, with a certificate for
/// 127.0.0.1 whose PEM is returned: the fake API server over https.
pub(crate) async fn start_tls(backend: SocketAddr) -> (SocketAddr, String) {
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let connect = tokio::net::TcpStream::connect(backend);
                let mut plain = tokio::time::timeout(BACKEND_CONNECT_TIMEOUT, connect)
                    .await
                    .unwrap_or_else(|_| {
                        panic!("TLS front: no connection to the fake API server {backend} within {BACKEND_CONNECT_TIMEOUT:?}")
                    })
                    .unwrap_or_else(|e| {
                        panic!("TLS front: connecting to the fake API server {backend}: {e}")
                    });
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, cert.pem())
}

/// A kubeconfig pointing at `server`, with a bearer token and the namespace.
pub(crate) fn kubeconfig(dir: &TempDir, server: &str) -> PathBuf {
    kubeconfig_with(dir, server, "")
}

/// A kubeconfig with extra lines in its cluster entry (like
/// `certificate-authority: FILE`).
pub(crate) fn kubeconfig_with(dir: &TempDir, server: &str, cluster_extra: &str) -> PathBuf {
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: test\n  cluster:\n    server: {server}\n{cluster_extra}\
             users:\n- name: exporter\n  user:\n    token: {TOKEN}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: exporter\n    namespace: {NS}\n\
             current-context: test\n"
        ),
    )
    .unwrap();
    path
}

/// A running fake API server and a check pointed at it.
pub(crate) struct Fixture {
    pub(crate) cluster: Shared,
    pub(crate) check: Box<dyn Check>,
    pub(crate) _dir: TempDir,
}

impl Fixture {
    /// A check with the given extra YAML fields, against an empty cluster.
    pub(crate) async fn new(extra: &str) -> Fixture {
        let cluster = Shared::default();
        let addr = start(cluster.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let path = kubeconfig(&dir, &format!("http://{addr}"));
        let check = build(&format!(
            "kind: kubernetes\nkubeconfig: {}\n{extra}",
            path.display()
        ));
        Fixture {
            cluster,
            check,
            _dir: dir,
        }
    }

    pub(crate) fn set(&self, f: impl FnOnce(&mut Cluster)) {
        f(&mut self.cluster.lock().unwrap());
    }

    pub(crate) async fn run(&self) -> Result<Vec<Sample>, Failure> {
        run(self.check.as_ref()).await
    }

    pub(crate) async fn run_ok(&self) -> Vec<Sample> {
        self.run().await.expect("the check passes")
    }
}

pub(crate) async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx))
        .await
        .expect("run finishes")
}

/// The value of the one sample of `metric` (full name without `runbook_`
/// and unit suffix) whose labels include all of `labels`.
pub(crate) fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.desc.name == metric)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?} matches {found:?}");
    found.first().copied()
}

pub(crate) fn waiting(samples: &[Sample], reason: &str) -> Option<f64> {
    value(
        samples,
        "kubernetes_containers_waiting",
        &[("k8s_namespace", NS), ("reason", reason)],
    )
}
