//! Namespaces bigger than the caps: totals over every pod (OOM kills and
//! restarts included) however many get their own series, lists read page
//! by page, and Deployments found through their ReplicaSets.

use serde_json::{json, Value};

use crate::fake_api::*;
use crate::objects::*;
use crate::NS;

/// `n` running pods `api-0000` ... of the `api-7d9f` ReplicaSet, each
/// restarted once.
fn pods(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            owned_by(
                pod(
                    &format!("api-{i:04}"),
                    "Running",
                    true,
                    vec![container(
                        "api",
                        1,
                        running(),
                        terminated("Error", 1, &format!("e{i}")),
                    )],
                ),
                "llm-research-api-7d9f",
            )
        })
        .collect()
}

fn oom_killed(pods: &mut [Value], i: usize, id: &str) {
    pods[i]["status"]["containerStatuses"][0]["restartCount"] = json!(2);
    pods[i]["status"]["containerStatuses"][0]["lastState"] = terminated("OOMKilled", 137, id);
}

#[tokio::test]
async fn oom_kills_and_restarts_are_counted_on_both_sides_of_max_pods() {
    const PODS: usize = 1_203;
    let f =
        Fixture::new("nodes: false\nevents: false\nmax_pods: 50\nselector: app=llm-research-api")
            .await;
    f.set(|c| c.pods = pods(PODS));
    let s = f.run_ok().await;
    let ns = [("k8s_namespace", NS)];
    assert_eq!(
        value(&s, "kubernetes_namespace_container_restarts", &ns),
        Some(PODS as f64)
    );
    assert_eq!(value(&s, "kubernetes_namespace_oom_kills", &ns), Some(0.0));
    assert_eq!(
        value(&s, "kubernetes_pods", &[("phase", "Running")]),
        Some(PODS as f64)
    );
    assert_eq!(
        value(&s, "kubernetes_over_limit", &[("object", "pod")]),
        Some((PODS - 50) as f64)
    );

    // One pod inside the first 50 and two beyond them are OOM-killed.
    f.set(|c| {
        oom_killed(&mut c.pods, 7, "o7");
        oom_killed(&mut c.pods, 600, "o600");
        oom_killed(&mut c.pods, 1_202, "o1202");
    });
    let s = f.run_ok().await;
    assert_eq!(value(&s, "kubernetes_namespace_oom_kills", &ns), Some(3.0));
    assert_eq!(
        value(&s, "kubernetes_namespace_container_restarts", &ns),
        Some((PODS + 3) as f64)
    );
    let inside = [("k8s_pod", "api-0007"), ("k8s_container", "api")];
    assert_eq!(
        value(&s, "kubernetes_container_oom_kills", &inside),
        Some(1.0)
    );
    // Beyond the cut: no series of its own, but in the namespace total.
    let beyond = [("k8s_pod", "api-0600"), ("k8s_container", "api")];
    assert_eq!(value(&s, "kubernetes_container_oom_kills", &beyond), None);
    let series = s
        .iter()
        .filter(|s| s.desc.name == "kubernetes_container_restarts")
        .count();
    assert_eq!(series, 50);

    // The pods were read in pages of 500, following `continue`.
    let requests = f.cluster.lock().unwrap().requests.clone();
    let pod_lists: Vec<&Request0> = requests
        .iter()
        .filter(|r| r.path.ends_with(&format!("{NS}/pods")) && r.path.starts_with("/api/v1"))
        .collect();
    assert_eq!(pod_lists.len(), 6, "three pages per run: {pod_lists:?}");
    for r in &pod_lists {
        assert!(r.query.contains("limit=500"), "{r:?}");
    }
    assert!(
        pod_lists[1].query.contains("continue=500"),
        "{:?}",
        pod_lists[1]
    );
    assert!(
        pod_lists[2].query.contains("continue=1000"),
        "{:?}",
        pod_lists[2]
    );
}

#[tokio::test]
async fn deployments_are_matched_through_their_replica_sets() {
    let f = Fixture::new(
        "nodes: false\nevents: false\nselector: app=llm-research-api\nmax_deployments: 1",
    )
    .await;
    f.set(|c| {
        c.pods = vec![
            owned_by(
                pod(
                    "api-0",
                    "Running",
                    true,
                    vec![container("api", 0, running(), json!({}))],
                ),
                "llm-research-api-7d9f",
            ),
            owned_by(
                pod(
                    "canary-0",
                    "Running",
                    true,
                    vec![container("api", 0, running(), json!({}))],
                ),
                "llm-research-api-canary-5c4b",
            ),
        ];
        c.replica_sets = vec![
            replica_set("llm-research-api-7d9f", "llm-research-api"),
            replica_set("llm-research-api-canary-5c4b", "llm-research-api-canary"),
            replica_set("batch-worker-1a2b", "batch-worker"),
        ];
        let mut relabelled = deployment("llm-research-api", 3, 2, 1);
        // The Deployment's own labels need not match the pod selector.
        relabelled["metadata"]["labels"] = json!({"team": "research"});
        c.deployments = vec![
            relabelled,
            deployment("llm-research-api-canary", 1, 1, 1),
            // Labelled like the pods, but owning none of them.
            deployment("batch-worker", 2, 2, 2),
        ];
    });
    let s = f.run_ok().await;
    let d = [("k8s_deployment", "llm-research-api")];
    assert_eq!(
        value(&s, "kubernetes_deployment_desired_replicas", &d),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "kubernetes_deployment_available_replicas", &d),
        Some(1.0)
    );
    // The canary is matched but beyond max_deployments; batch-worker is
    // not matched at all.
    assert_eq!(
        value(&s, "kubernetes_over_limit", &[("object", "deployment")]),
        Some(1.0)
    );
    let batch = [("k8s_deployment", "batch-worker")];
    assert_eq!(
        value(&s, "kubernetes_deployment_desired_replicas", &batch),
        None
    );
    // The deployments were listed without the pod selector.
    let requests = f.cluster.lock().unwrap().requests.clone();
    let listed = requests
        .iter()
        .find(|r| r.path.ends_with("/deployments"))
        .unwrap();
    assert!(!listed.query.contains("labelSelector"), "{listed:?}");
}
