//! The other resources a run lists: Warning events by reason, nodes, a
//! service's ready endpoints and deployments' replicas.

use crate::fake_api::*;
use crate::objects::*;
use crate::NS;

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
        let running = || vec![container("api", 0, running(), serde_json::json!({}))];
        c.pods = vec![
            owned_by(pod("api-0", "Running", true, running()), "api-7d9f"),
            owned_by(pod("canary-0", "Running", true, running()), "canary-5c4b"),
        ];
        c.replica_sets = vec![
            replica_set("api-7d9f", "llm-research-api"),
            replica_set("canary-5c4b", "llm-research-api-canary"),
        ];
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
