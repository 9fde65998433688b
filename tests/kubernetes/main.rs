//! The `kubernetes` kind: the real kube client against a fake API server
//! started by each test, serving genuine Kubernetes list JSON.

#[path = "../common/mod.rs"]
mod common;

use common::build;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use runbook_exporter::checks::kubernetes::{API_RESOURCES, API_VERB};
use runbook_exporter::checks::{Check, CheckSpec, Failure, Reason, RunContext, Sample};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tempfile::TempDir;

const NS: &str = "llm-research";
const TOKEN: &str = "kube-test-token-5f1c";

// ---------------------------------------------------------------------------
// The fake API server

/// What the fake API server holds: the items of each list, which resources
/// answer 403, and the requests it received.
#[derive(Default)]
struct Cluster {
    pods: Vec<Value>,
    deployments: Vec<Value>,
    events: Vec<Value>,
    endpoint_slices: Vec<Value>,
    nodes: Vec<Value>,
    forbidden: Vec<&'static str>,
    /// Answer nothing, ever (a hung API server).
    hang: bool,
    requests: Vec<Request0>,
}

/// One request as received: path, query, and whether it carried our token.
#[derive(Debug, Clone)]
struct Request0 {
    path: String,
    query: String,
    authorized: bool,
}

type Shared = Arc<Mutex<Cluster>>;

async fn api(State(cluster): State<Shared>, request: Request) -> Response {
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
        query,
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
    json_response(json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": "48213"},
        "items": items,
    }))
}

/// A JSON body with the API server's content type.
fn json_response(body: Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A `v1 Status` error body, as the API server sends it.
fn status(code: u16, reason: &str, message: &str) -> Value {
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
async fn start(cluster: Shared) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(api).with_state(cluster);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A TLS front for `backend` on 127.0.0.1, with a certificate for
/// 127.0.0.1 whose PEM is returned: the fake API server over https.
async fn start_tls(backend: SocketAddr) -> (SocketAddr, String) {
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
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, cert.pem())
}

/// A kubeconfig pointing at `server`, with a bearer token and the namespace.
fn kubeconfig(dir: &TempDir, server: &str) -> PathBuf {
    kubeconfig_with(dir, server, "")
}

/// A kubeconfig with extra lines in its cluster entry (like
/// `certificate-authority: FILE`).
fn kubeconfig_with(dir: &TempDir, server: &str, cluster_extra: &str) -> PathBuf {
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
struct Fixture {
    cluster: Shared,
    check: Box<dyn Check>,
    _dir: TempDir,
}

impl Fixture {
    /// A check with the given extra YAML fields, against an empty cluster.
    async fn new(extra: &str) -> Fixture {
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

    fn set(&self, f: impl FnOnce(&mut Cluster)) {
        f(&mut self.cluster.lock().unwrap());
    }

    async fn run(&self) -> Result<Vec<Sample>, Failure> {
        run(self.check.as_ref()).await
    }

    async fn run_ok(&self) -> Vec<Sample> {
        self.run().await.expect("the check passes")
    }
}

async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx))
        .await
        .expect("run finishes")
}

/// The value of the one sample of `metric` (full name without `runbook_`
/// and unit suffix) whose labels include all of `labels`.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
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

fn waiting(samples: &[Sample], reason: &str) -> Option<f64> {
    value(
        samples,
        "kubernetes_containers_waiting",
        &[("k8s_namespace", NS), ("reason", reason)],
    )
}

// ---------------------------------------------------------------------------
// Fixtures: small objects in the API's JSON shapes

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RFC 3339 time `secs` seconds ago, as the API writes it.
fn ago(secs: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(now() - secs)
        .unwrap()
        .to_string()
}

/// A pod of the llm-research-api deployment with the given phase, Ready
/// condition and container statuses.
fn pod(name: &str, phase: &str, ready: bool, containers: Vec<Value>) -> Value {
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

/// A container status; `state` and `last_state` are ContainerState objects.
fn container(name: &str, restarts: u32, state: Value, last_state: Value) -> Value {
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

fn running() -> Value {
    json!({"running": {"startedAt": ago(60)}})
}

fn waiting_state(reason: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": "back-off 40s restarting failed container"}})
}

/// A last state: the container ended with `reason` (like OOMKilled), as
/// the container with ID `id`.
fn terminated(reason: &str, exit_code: i32, id: &str) -> Value {
    json!({"terminated": {
        "reason": reason,
        "exitCode": exit_code,
        "startedAt": ago(300),
        "finishedAt": ago(120),
        "containerID": format!("containerd://{id}"),
    }})
}

fn event(name: &str, type_: &str, reason: &str, last_seen_ago: i64) -> Value {
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

fn node(name: &str, ready: &str, pressure: &[&str], gpus: Option<&str>) -> Value {
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
fn endpoint_slice(service: &str, endpoints: &[(&str, bool)]) -> Value {
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

fn deployment(name: &str, desired: u32, updated: u32, available: u32) -> Value {
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

// ---------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_pod_going_into_crash_loop_back_off_and_out() {
    let f = Fixture::new("selector: app=llm-research-api").await;
    f.set(|c| {
        c.pods = vec![pod(
            "api-0",
            "Running",
            true,
            vec![container("api", 0, running(), json!({}))],
        )]
    });
    let s = f.run_ok().await;
    assert_eq!(
        value(&s, "kubernetes_pods", &[("phase", "Running")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "kubernetes_pods", &[("phase", "Pending")]),
        Some(0.0)
    );
    assert_eq!(waiting(&s, "CrashLoopBackOff"), Some(0.0));
    assert_eq!(value(&s, "kubernetes_pods_not_ready", &[]), Some(0.0));

    f.set(|c| {
        c.pods = vec![pod(
            "api-0",
            "Running",
            false,
            vec![container(
                "api",
                4,
                waiting_state("CrashLoopBackOff"),
                terminated("Error", 1, "c4"),
            )],
        )]
    });
    let s = f.run_ok().await;
    assert_eq!(waiting(&s, "CrashLoopBackOff"), Some(1.0));
    assert_eq!(waiting(&s, "other"), Some(0.0));
    assert_eq!(value(&s, "kubernetes_pods_not_ready", &[]), Some(1.0));
    let restarts = [("k8s_pod", "api-0"), ("k8s_container", "api")];
    assert_eq!(
        value(&s, "kubernetes_container_restarts", &restarts),
        Some(4.0)
    );
    // An exit with an error is no OOM kill.
    assert_eq!(
        value(&s, "kubernetes_container_oom_kills", &restarts),
        Some(0.0)
    );

    f.set(|c| {
        c.pods = vec![pod(
            "api-0",
            "Running",
            true,
            vec![container("api", 4, running(), terminated("Error", 1, "c4"))],
        )]
    });
    let s = f.run_ok().await;
    assert_eq!(waiting(&s, "CrashLoopBackOff"), Some(0.0));
    assert_eq!(value(&s, "kubernetes_pods_not_ready", &[]), Some(0.0));
    assert_eq!(
        value(&s, "kubernetes_container_restarts", &restarts),
        Some(4.0)
    );

    // Every list asked the API server's cache, with the selector.
    let requests = f.cluster.lock().unwrap().requests.clone();
    let pods: Vec<&Request0> = requests
        .iter()
        .filter(|r| r.path.ends_with("/pods"))
        .collect();
    assert_eq!(pods.len(), 3);
    for r in &requests {
        assert!(r.authorized, "{r:?} without the kubeconfig's token");
        assert!(r.query.contains("resourceVersion=0"), "{r:?}");
    }
    assert!(
        pods[0]
            .query
            .contains("labelSelector=app%3Dllm-research-api"),
        "{:?}",
        pods[0]
    );
}

#[tokio::test]
async fn waiting_reasons_outside_the_fixed_set_count_as_other() {
    let f = Fixture::new("nodes: false\nevents: false").await;
    f.set(|c| {
        c.pods = vec![
            pod(
                "api-0",
                "Pending",
                false,
                vec![container(
                    "api",
                    0,
                    waiting_state("ImagePullBackOff"),
                    json!({}),
                )],
            ),
            pod(
                "api-1",
                "Pending",
                false,
                vec![container(
                    "api",
                    0,
                    waiting_state("InvalidImageName"),
                    json!({}),
                )],
            ),
            pod(
                "api-2",
                "Pending",
                false,
                vec![container(
                    "api",
                    0,
                    waiting_state("ContainerCreating"),
                    json!({}),
                )],
            ),
        ]
    });
    let s = f.run_ok().await;
    assert_eq!(waiting(&s, "ImagePullBackOff"), Some(1.0));
    assert_eq!(waiting(&s, "ContainerCreating"), Some(1.0));
    assert_eq!(waiting(&s, "other"), Some(1.0));
    assert_eq!(waiting(&s, "ErrImagePull"), Some(0.0));
    assert_eq!(
        value(&s, "kubernetes_pods", &[("phase", "Pending")]),
        Some(3.0)
    );
    // The oldest Pending pod was created an hour ago.
    let created = value(&s, "kubernetes_oldest_pending_pod_creation_timestamp", &[]).unwrap();
    assert!((created - (now() - 3600) as f64).abs() < 5.0, "{created}");
    // Nothing asked for, nothing listed.
    let requests = f.cluster.lock().unwrap().requests.clone();
    assert!(requests
        .iter()
        .all(|r| !r.path.ends_with("/nodes") && !r.path.ends_with("/events")));
}

#[tokio::test]
async fn warning_events_are_counted_by_reason() {
    let f = Fixture::new("nodes: false\nevents_window: 10m").await;
    f.set(|c| {
        c.events = vec![
            event("api-0.1", "Warning", "FailedScheduling", 30),
            event("api-1.1", "Warning", "FailedScheduling", 90),
            event("api-0.2", "Warning", "BackOff", 10),
            event("api-0.3", "Warning", "Evicted", 200),
            event("api-0.4", "Warning", "NodeNotReady", 20),
            // Too old for the window.
            event("api-0.5", "Warning", "Unhealthy", 3600),
            // Not a warning (a real server would not send it: the check asks
            // for type=Warning; it is ignored anyway).
            event("api-0.6", "Normal", "Pulled", 5),
        ]
    });
    let s = f.run_ok().await;
    let events = |reason| {
        value(
            &s,
            "kubernetes_warning_events",
            &[("k8s_namespace", NS), ("reason", reason)],
        )
    };
    assert_eq!(events("FailedScheduling"), Some(2.0));
    assert_eq!(events("BackOff"), Some(1.0));
    assert_eq!(events("Evicted"), Some(1.0));
    assert_eq!(events("other"), Some(1.0));
    assert_eq!(events("Unhealthy"), Some(0.0));
    assert_eq!(events("FailedMount"), Some(0.0));
    assert_eq!(events("FailedCreatePodSandBox"), Some(0.0));
    let requests = f.cluster.lock().unwrap().requests.clone();
    let events_request = requests
        .iter()
        .find(|r| r.path.ends_with("/events"))
        .unwrap();
    assert!(
        events_request
            .query
            .contains("fieldSelector=type%3DWarning"),
        "{events_request:?}"
    );

    // Once they age out of the window, the counts return to zero.
    f.set(|c| c.events = vec![event("api-0.1", "Warning", "FailedScheduling", 1200)]);
    let s = f.run_ok().await;
    assert_eq!(
        value(
            &s,
            "kubernetes_warning_events",
            &[("reason", "FailedScheduling")]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn an_oom_killed_restart_is_counted_once() {
    let f = Fixture::new("nodes: false").await;
    let api0 = [("k8s_pod", "api-0"), ("k8s_container", "api")];
    let api1 = [("k8s_pod", "api-1"), ("k8s_container", "api")];
    // api-1 was OOM-killed before the exporter started: not counted, as the
    // exporter cannot tell when that happened.
    f.set(|c| {
        c.pods = vec![
            pod(
                "api-0",
                "Running",
                true,
                vec![container("api", 0, running(), json!({}))],
            ),
            pod(
                "api-1",
                "Running",
                true,
                vec![container(
                    "api",
                    1,
                    running(),
                    terminated("OOMKilled", 137, "b1"),
                )],
            ),
        ]
    });
    let s = f.run_ok().await;
    assert_eq!(
        value(&s, "kubernetes_container_oom_kills", &api0),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "kubernetes_container_oom_kills", &api1),
        Some(0.0)
    );

    // api-0 is OOM-killed and restarted.
    f.set(|c| {
        c.pods[0] = pod(
            "api-0",
            "Running",
            true,
            vec![container(
                "api",
                1,
                running(),
                terminated("OOMKilled", 137, "a1"),
            )],
        );
    });
    let s = f.run_ok().await;
    assert_eq!(
        value(&s, "kubernetes_container_oom_kills", &api0),
        Some(1.0)
    );
    assert_eq!(value(&s, "kubernetes_container_restarts", &api0), Some(1.0));

    // The next run sees the same last state: no new kill.
    let s = f.run_ok().await;
    assert_eq!(
        value(&s, "kubernetes_container_oom_kills", &api0),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "kubernetes_container_oom_kills", &api1),
        Some(0.0)
    );

    // A crash that is no OOM kill leaves the counter alone; another OOM
    // kill adds one.
    f.set(|c| {
        c.pods[0] = pod(
            "api-0",
            "Running",
            true,
            vec![container("api", 2, running(), terminated("Error", 1, "a2"))],
        );
    });
    assert_eq!(
        value(&f.run_ok().await, "kubernetes_container_oom_kills", &api0),
        Some(1.0)
    );
    f.set(|c| {
        c.pods[0] = pod(
            "api-0",
            "Running",
            true,
            vec![container(
                "api",
                3,
                running(),
                terminated("OOMKilled", 137, "a3"),
            )],
        );
    });
    assert_eq!(
        value(&f.run_ok().await, "kubernetes_container_oom_kills", &api0),
        Some(2.0)
    );

    // A pod created after the first run that was already OOM-killed once
    // when first seen: that kill counts.
    f.set(|c| {
        c.pods.push(pod(
            "api-2",
            "Running",
            true,
            vec![container(
                "api",
                1,
                running(),
                terminated("OOMKilled", 137, "c1"),
            )],
        ));
    });
    let s = f.run_ok().await;
    let api2 = [("k8s_pod", "api-2"), ("k8s_container", "api")];
    assert_eq!(
        value(&s, "kubernetes_container_oom_kills", &api2),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "kubernetes_container_oom_kills", &api0),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_node_turning_not_ready() {
    let f = Fixture::new("events: false").await;
    f.set(|c| {
        c.nodes = vec![
            node("node-a", "True", &[], None),
            node("gpu-node-1", "True", &[], Some("4")),
            node("gpu-node-2", "True", &[], Some("2")),
        ]
    });
    let s = f.run_ok().await;
    assert_eq!(value(&s, "kubernetes_nodes", &[]), Some(3.0));
    assert_eq!(value(&s, "kubernetes_nodes_not_ready", &[]), Some(0.0));
    assert_eq!(
        value(
            &s,
            "kubernetes_nodes_under_pressure",
            &[("condition", "MemoryPressure")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "kubernetes_nodes_allocatable_gpus", &[]),
        Some(6.0)
    );

    f.set(|c| {
        c.nodes[1] = node(
            "gpu-node-1",
            "Unknown",
            &["MemoryPressure", "PIDPressure"],
            Some("4"),
        );
        c.nodes[2] = node("gpu-node-2", "False", &["DiskPressure"], Some("2"));
    });
    let s = f.run_ok().await;
    assert_eq!(value(&s, "kubernetes_nodes_not_ready", &[]), Some(2.0));
    assert_eq!(
        value(
            &s,
            "kubernetes_nodes_under_pressure",
            &[("condition", "MemoryPressure")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "kubernetes_nodes_under_pressure",
            &[("condition", "DiskPressure")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "kubernetes_nodes_under_pressure",
            &[("condition", "PIDPressure")]
        ),
        Some(1.0)
    );

    // No node advertises GPUs: the sum is absent, not 0.
    f.set(|c| c.nodes = vec![node("node-a", "True", &[], None)]);
    let s = f.run_ok().await;
    assert_eq!(value(&s, "kubernetes_nodes_allocatable_gpus", &[]), None);
}

#[tokio::test]
async fn a_service_losing_its_last_ready_endpoint() {
    let f = Fixture::new("nodes: false\nservices: [llm-research-api, llm-research-worker]").await;
    let api = [("k8s_namespace", NS), ("k8s_service", "llm-research-api")];
    let worker = [("k8s_service", "llm-research-worker")];
    f.set(|c| {
        c.endpoint_slices = vec![endpoint_slice(
            "llm-research-api",
            &[("api-0", true), ("api-1", false)],
        )]
    });
    let s = f.run_ok().await;
    assert_eq!(
        value(&s, "kubernetes_service_ready_endpoints", &api),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "kubernetes_service_not_ready_endpoints", &api),
        Some(1.0)
    );
    // A service without any EndpointSlice: explicit zeros.
    assert_eq!(
        value(&s, "kubernetes_service_ready_endpoints", &worker),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "kubernetes_service_not_ready_endpoints", &worker),
        Some(0.0)
    );

    f.set(|c| {
        c.endpoint_slices = vec![endpoint_slice(
            "llm-research-api",
            &[("api-0", false), ("api-1", false)],
        )]
    });
    let s = f.run_ok().await;
    assert_eq!(
        value(&s, "kubernetes_service_ready_endpoints", &api),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "kubernetes_service_not_ready_endpoints", &api),
        Some(2.0)
    );

    // One request for both services, selected by the service-name label.
    let requests = f.cluster.lock().unwrap().requests.clone();
    let slices: Vec<&Request0> = requests
        .iter()
        .filter(|r| r.path.ends_with("/endpointslices"))
        .collect();
    assert_eq!(slices.len(), 2);
    assert!(
        slices[0].query.contains("labelSelector=kubernetes.io%2Fservice-name+in+%28llm-research-api%2Cllm-research-worker%29"),
        "{:?}",
        slices[0]
    );
}

#[tokio::test]
async fn deployments_report_desired_updated_and_available_replicas() {
    let f = Fixture::new("nodes: false\nselector: app=llm-research-api\nmax_deployments: 1").await;
    f.set(|c| {
        c.deployments = vec![
            deployment("llm-research-api", 3, 2, 1),
            deployment("llm-research-api-canary", 1, 1, 1),
        ]
    });
    let s = f.run_ok().await;
    let d = [("k8s_deployment", "llm-research-api")];
    assert_eq!(
        value(&s, "kubernetes_deployment_desired_replicas", &d),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "kubernetes_deployment_updated_replicas", &d),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "kubernetes_deployment_available_replicas", &d),
        Some(1.0)
    );
    // The second is beyond max_deployments.
    let canary = [("k8s_deployment", "llm-research-api-canary")];
    assert_eq!(
        value(&s, "kubernetes_deployment_desired_replicas", &canary),
        None
    );
    assert_eq!(
        value(&s, "kubernetes_over_limit", &[("object", "deployment")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn per_pod_series_stop_at_max_pods() {
    let f = Fixture::new("nodes: false\nmax_pods: 2").await;
    f.set(|c| {
        c.pods = ["api-c", "api-a", "api-b"]
            .iter()
            .map(|name| {
                pod(
                    name,
                    "Running",
                    true,
                    vec![container("api", 0, running(), json!({}))],
                )
            })
            .collect()
    });
    let s = f.run_ok().await;
    let pods: Vec<&str> = s
        .iter()
        .filter(|s| s.desc.name == "kubernetes_container_restarts")
        .map(|s| {
            s.labels
                .iter()
                .find(|(k, _)| *k == "k8s_pod")
                .unwrap()
                .1
                .as_str()
        })
        .collect();
    assert_eq!(pods, ["api-a", "api-b"]);
    assert_eq!(
        value(&s, "kubernetes_over_limit", &[("object", "pod")]),
        Some(1.0)
    );
    // Totals still count every pod.
    assert_eq!(
        value(&s, "kubernetes_pods", &[("phase", "Running")]),
        Some(3.0)
    );
}

#[tokio::test]
async fn forbidden_nodes_fail_with_auth_and_keep_the_namespace_values() {
    let f = Fixture::new("").await;
    f.set(|c| {
        c.pods = vec![pod(
            "api-0",
            "Running",
            true,
            vec![container("api", 0, running(), json!({}))],
        )];
        c.forbidden = vec!["nodes"];
    });
    let failure = f.run().await.expect_err("a 403 fails the run");
    assert_eq!(failure.reason, Reason::Auth);
    assert!(
        failure
            .message
            .starts_with("list nodes: 403 Forbidden: nodes is forbidden"),
        "{}",
        failure.message
    );
    assert!(
        failure
            .message
            .ends_with("(the check needs `list` on nodes in the core API group: see deploy/kubernetes/rbac.yaml)"),
        "{}",
        failure.message
    );
    // What could be listed is still reported; the nodes are absent.
    assert_eq!(
        value(&failure.samples, "kubernetes_pods", &[("phase", "Running")]),
        Some(1.0)
    );
    assert_eq!(value(&failure.samples, "kubernetes_nodes", &[]), None);

    // Everything forbidden: nothing is left.
    f.set(|c| c.forbidden = vec!["pods", "deployments", "events", "nodes"]);
    let failure = f.run().await.expect_err("a 403 fails the run");
    assert_eq!(failure.reason, Reason::Auth);
    assert!(
        failure.message.contains("(and 3 more failed requests)"),
        "{}",
        failure.message
    );
    assert!(failure.samples.is_empty(), "{:?}", failure.samples);

    // Granted again: the check recovers.
    f.set(|c| c.forbidden.clear());
    f.run_ok().await;
}

#[tokio::test]
async fn a_run_cancelled_by_the_timeout_leaves_the_next_run_working() {
    let f = Fixture::new("nodes: false").await;
    f.set(|c| {
        c.pods = vec![pod(
            "api-0",
            "Running",
            true,
            vec![container("api", 0, running(), json!({}))],
        )];
        c.hang = true;
    });
    let ctx = RunContext {
        timeout: Duration::from_millis(300),
    };
    // What the scheduler does at the timeout: drop the run.
    let cancelled = tokio::time::timeout(ctx.timeout, f.check.run(&ctx)).await;
    assert!(cancelled.is_err(), "the hung server cannot answer");

    f.set(|c| c.hang = false);
    let s = f.run_ok().await;
    assert_eq!(
        value(&s, "kubernetes_pods", &[("phase", "Running")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_unreachable_api_server_fails_with_connection_refused() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(&dir, &format!("http://{addr}"));
    let check = build(&format!("kind: kubernetes\nkubeconfig: {}", path.display()));
    let failure = run(check.as_ref()).await.expect_err("nothing listens");
    assert_eq!(
        failure.reason,
        Reason::ConnectionRefused,
        "{}",
        failure.message
    );
    assert!(failure.message.starts_with("list "), "{}", failure.message);
    assert!(failure.samples.is_empty());
    // The token never shows, and the scheduler knows to scrub it.
    assert!(!failure.message.contains(TOKEN));
    assert_eq!(check.secrets(), [TOKEN]);
}

#[tokio::test]
async fn https_with_the_kubeconfig_ca_and_without() {
    let cluster = Shared::default();
    cluster.lock().unwrap().nodes = vec![node("node-a", "True", &[], None)];
    let (addr, ca_pem) = start_tls(start(cluster.clone()).await).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let server = format!("https://{addr}");

    let path = kubeconfig_with(
        &dir,
        &server,
        &format!("    certificate-authority: {}\n", ca.display()),
    );
    let check = build(&format!("kind: kubernetes\nkubeconfig: {}", path.display()));
    let samples = run(check.as_ref())
        .await
        .expect("the CA verifies the server");
    assert_eq!(value(&samples, "kubernetes_nodes", &[]), Some(1.0));

    // Without the CA, the self-signed certificate is refused.
    let path = kubeconfig(&dir, &server);
    let check = build(&format!("kind: kubernetes\nkubeconfig: {}", path.display()));
    let failure = run(check.as_ref()).await.expect_err("an unknown issuer");
    assert_eq!(failure.reason, Reason::Tls, "{}", failure.message);
}

#[tokio::test]
async fn without_kubeconfig_or_service_account_the_run_fails_not_the_build() {
    // Outside a cluster: no KUBERNETES_SERVICE_HOST, no token file.
    assert!(std::env::var_os("KUBERNETES_SERVICE_HOST").is_none());
    let check = build("kind: kubernetes\nnamespace: llm-research");
    let failure = run(check.as_ref())
        .await
        .expect_err("no cluster to talk to");
    assert_eq!(failure.reason, Reason::Internal);
    assert!(
        failure.message.contains("set `kubeconfig`"),
        "{}",
        failure.message
    );
}

#[test]
fn config_problems_name_their_field() {
    let problems = |yaml: &str| {
        let spec: CheckSpec = serde_saphyr::from_str(yaml).expect("spec parses");
        spec.validate()
    };
    let p = |f: &str, m: &str| vec![(f.to_string(), m.to_string())];
    assert_eq!(
        problems("kind: kubernetes\ncontext: prod"),
        p(
            "context",
            "needs `kubeconfig`: the in-cluster config has no contexts"
        )
    );
    assert_eq!(
        problems("kind: kubernetes\nnamespace: a\nnamespaces: [b]"),
        p("namespaces", "set either namespace or namespaces, not both")
    );
    assert_eq!(
        problems("kind: kubernetes\nnamespaces: [a, b]\nservices: [api]"),
        p(
            "services[0]",
            "\"api\": with several namespaces, write namespace/api"
        )
    );
    assert_eq!(
        problems("kind: kubernetes\nnamespaces: [a, b]\nservices: [c/api]"),
        p(
            "services[0]",
            "\"c/api\": namespace \"c\" is not one of the check's namespaces"
        )
    );
    assert_eq!(
        problems("kind: kubernetes\nnamespaces: [a, b]\nservices: [b/api]"),
        vec![]
    );
    assert_eq!(
        problems("kind: kubernetes\nnamespace: Prod")[0].0,
        "namespace"
    );
    assert_eq!(
        problems("kind: kubernetes\nnodes: false\nnode_selector: gpu=true"),
        p("node_selector", "is set but nodes is false")
    );
    assert!(serde_saphyr::from_str::<CheckSpec>("kind: kubernetes\nlabel_selector: a=b").is_err());
}

#[test]
fn a_missing_kubeconfig_or_context_fails_the_build() {
    let spec: CheckSpec =
        serde_saphyr::from_str("kind: kubernetes\nkubeconfig: /nonexistent/kubeconfig").unwrap();
    let err = spec.build().err().expect("no such file");
    assert_eq!(err.field, "kubeconfig");
    assert!(
        err.message
            .starts_with("cannot read /nonexistent/kubeconfig"),
        "{}",
        err.message
    );

    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(&dir, "http://127.0.0.1:1");
    let spec: CheckSpec = serde_saphyr::from_str(&format!(
        "kind: kubernetes\nkubeconfig: {}\ncontext: prod",
        path.display()
    ))
    .unwrap();
    let err = spec.build().err().expect("no such context");
    assert_eq!(err.field, "context");
    assert!(
        err.message.starts_with("no context \"prod\""),
        "{}",
        err.message
    );
    assert!(err.message.ends_with("it has: test"), "{}", err.message);
}

/// deploy/kubernetes/rbac.yaml grants exactly what the code reads, and only
/// read verbs.
#[test]
fn the_shipped_rbac_grants_exactly_the_resources_read() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("rbac.yaml parses");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding"
        ]
    );

    // (namespaced, group, resource) granted, with the verbs of each rule.
    let mut granted = Vec::new();
    for doc in &docs {
        let namespaced = match doc["kind"].as_str().unwrap() {
            "Role" => true,
            "ClusterRole" => false,
            _ => continue,
        };
        for rule in doc["rules"].as_array().unwrap() {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(verbs, [API_VERB], "{rule}");
            assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    granted.push((
                        namespaced,
                        group.as_str().unwrap().to_string(),
                        resource.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    granted.sort();
    let mut read: Vec<(bool, String, String)> = API_RESOURCES
        .iter()
        .map(|r| (r.namespaced, r.group.to_string(), r.resource.to_string()))
        .collect();
    read.sort();
    assert_eq!(granted, read);

    // Each binding binds its role to the service account.
    let account = docs[0]["metadata"]["name"].as_str().unwrap();
    for (binding, role) in [(&docs[2], &docs[1]), (&docs[4], &docs[3])] {
        assert_eq!(binding["roleRef"]["kind"], role["kind"]);
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
        assert_eq!(binding["subjects"][0]["name"], account);
    }
}
