//! Benchmark of the `kubernetes` kind: prints figures, asserts nothing.
//!
//! Runs one check against an in-process fake API server (plain HTTP on
//! 127.0.0.1) that serves a namespace of 1,000 pods (one container each, a
//! tenth of them in CrashLoopBackOff), 20 deployments, 500 Warning events,
//! one service with 1,000 endpoints and 100 nodes, plus the pods'
//! ReplicaSets and their PodMetrics, and reports:
//! - the API requests and response bytes of one run;
//! - run latency p50/p99 over 200 runs;
//! - CPU time per run (exporter and fake server together, the upper bound);
//! - the series one run produces with `max_pods: 50`.
//!
//! Run with `cargo bench --bench kubernetes`. Takes well under a minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use runbook_exporter::checks::{CheckSpec, RunContext};
use serde_json::{json, Value};

const NS: &str = "llm-research";
const PODS: usize = 1_000;
const RUNS: usize = 200;

/// Pre-serialised list bodies by path, and counters of what was served.
struct Server {
    bodies: Vec<(String, String)>,
    requests: AtomicU64,
    bytes: AtomicU64,
}

async fn api(State(server): State<Arc<Server>>, request: Request) -> Response {
    let path = request.uri().path();
    let body = server
        .bodies
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, b)| b.clone())
        .unwrap_or_else(|| "{}".to_string());
    server.requests.fetch_add(1, Ordering::Relaxed);
    server.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn list(api_version: &str, kind: &str, items: Vec<Value>) -> String {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
        .to_string()
}

fn ago(secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    k8s_openapi::jiff::Timestamp::from_second(now - secs)
        .unwrap()
        .to_string()
}

fn bodies() -> Vec<(String, String)> {
    let pods = (0..PODS)
        .map(|i| {
            let crashing = i % 10 == 0;
            let state = if crashing {
                json!({"waiting": {"reason": "CrashLoopBackOff"}})
            } else {
                json!({"running": {"startedAt": ago(600)}})
            };
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("api-{i:04}"), "namespace": NS, "uid": format!("uid-{i}"),
                             "creationTimestamp": ago(3600), "labels": {"app": "llm-research-api"},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": format!("api-{}-7d9f", i % 20), "uid": format!("rs-{}", i % 20)}]},
                "spec": {"containers": [{"name": "api", "image": "registry.example/api:1",
                             "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]},
                "status": {"phase": "Running",
                           "conditions": [{"type": "Ready", "status": if crashing { "False" } else { "True" }}],
                           "containerStatuses": [{"name": "api", "image": "registry.example/api:1", "imageID": "",
                               "ready": !crashing, "restartCount": i % 7, "state": state,
                               "lastState": {"terminated": {"reason": if i % 3 == 0 { "OOMKilled" } else { "Error" },
                                   "exitCode": 137, "containerID": format!("containerd://{i}"), "finishedAt": ago(900)}}}]},
            })
        })
        .collect();
    let deployments = (0..20)
        .map(|i| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("api-{i}"), "namespace": NS},
            "spec": {"replicas": 50, "selector": {"matchLabels": {"app": "llm-research-api"}},
                     "template": {"spec": {"containers": [{"name": "api"}]}}},
            "status": {"updatedReplicas": 50, "availableReplicas": 45}})
        })
        .collect();
    let replica_sets = (0..20)
        .map(|i| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("api-{i}-7d9f"), "namespace": NS,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                    "name": format!("api-{i}"), "uid": format!("d-{i}")}]}})
        })
        .collect();
    let pod_metrics = (0..PODS)
        .map(|i| {
            json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": format!("api-{i:04}"), "namespace": NS},
            "timestamp": ago(10), "window": "15s",
            "containers": [{"name": "api", "usage": {"cpu": "250m", "memory": "512Mi"}}]})
        })
        .collect();
    let reasons = [
        "FailedScheduling",
        "BackOff",
        "Unhealthy",
        "FailedMount",
        "NodeNotReady",
    ];
    let events = (0..500)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("api.{i}"), "namespace": NS},
            "involvedObject": {"kind": "Pod", "name": format!("api-{i:04}")},
            "reason": reasons[i % reasons.len()], "type": "Warning", "count": 3,
            "lastTimestamp": ago((i as i64) * 3)})
        })
        .collect();
    let endpoints: Vec<Value> = (0..PODS)
        .map(|i| {
            json!({"addresses": [format!("10.244.{}.{}", i / 250, i % 250)],
            "conditions": {"ready": i % 10 != 0},
            "targetRef": {"kind": "Pod", "name": format!("api-{i:04}")}})
        })
        .collect();
    let slices = vec![
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "api-1", "namespace": NS, "labels": {"kubernetes.io/service-name": "llm-research-api"}},
        "addressType": "IPv4", "endpoints": endpoints}),
    ];
    let nodes = (0..100)
        .map(|i| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{i}")},
            "status": {"conditions": [{"type": "Ready", "status": if i == 7 { "Unknown" } else { "True" }},
                                      {"type": "MemoryPressure", "status": "False"}],
                       "allocatable": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": if i < 10 { "8" } else { "0" }}}}))
        .collect();
    vec![
        (
            format!("/api/v1/namespaces/{NS}/pods"),
            list("v1", "PodList", pods),
        ),
        (
            format!("/apis/apps/v1/namespaces/{NS}/deployments"),
            list("apps/v1", "DeploymentList", deployments),
        ),
        (
            format!("/apis/apps/v1/namespaces/{NS}/replicasets"),
            list("apps/v1", "ReplicaSetList", replica_sets),
        ),
        (
            format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods"),
            list("metrics.k8s.io/v1beta1", "PodMetricsList", pod_metrics),
        ),
        (
            format!("/api/v1/namespaces/{NS}/events"),
            list("v1", "EventList", events),
        ),
        (
            format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"),
            list("discovery.k8s.io/v1", "EndpointSliceList", slices),
        ),
        ("/api/v1/nodes".to_string(), list("v1", "NodeList", nodes)),
    ]
}

/// CPU time of this process (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::main]
async fn main() {
    let server = Arc::new(Server {
        bodies: bodies(),
        requests: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(api).with_state(server.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("runbook-kube-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: b\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: b\n  user:\n    token: bench\n\
             contexts:\n- name: b\n  context: {{cluster: b, user: b, namespace: {NS}}}\ncurrent-context: b\n"
        ),
    )
    .unwrap();
    let spec: CheckSpec = serde_saphyr::from_str(&format!(
        "kind: kubernetes\nkubeconfig: {}\nselector: app=llm-research-api\nservices: [llm-research-api]\nmax_pods: 50",
        kubeconfig.display()
    ))
    .unwrap();
    let check = spec.build().unwrap();
    let ctx = RunContext {
        timeout: Duration::from_secs(10),
    };

    let first = check.run(&ctx).await.expect("the check passes");
    let requests = server.requests.swap(0, Ordering::Relaxed);
    let bytes = server.bytes.swap(0, Ordering::Relaxed);
    println!("runbook-exporter kubernetes benchmark: {PODS} pods, 20 deployments, 500 Warning events, 1 service with {PODS} endpoints, 100 nodes");
    println!(
        "  API requests per run:   {requests} ({:.2} MB of JSON)",
        bytes as f64 / 1e6
    );
    println!("  series per run:         {} (max_pods: 50)", first.len());

    let cpu0 = cpu_seconds();
    let mut latencies = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        check.run(&ctx).await.expect("the check passes");
        latencies.push(start.elapsed());
    }
    let cpu = cpu_seconds() - cpu0;
    latencies.sort();
    let p = |q: f64| latencies[((RUNS as f64 * q) as usize).min(RUNS - 1)].as_secs_f64() * 1e3;
    println!(
        "  run latency:            p50 {:.1} ms, p99 {:.1} ms ({RUNS} runs)",
        p(0.5),
        p(0.99)
    );
    println!(
        "  CPU per run:            {:.1} ms (exporter and fake API server together)",
        cpu / RUNS as f64 * 1e3
    );
    std::fs::remove_dir_all(&dir).ok();
}
