//! Pods: phases and readiness, containers waiting by reason (crash loops
//! included), restarts, OOM kills counted once, and the `max_pods` limit.

use serde_json::{json, Value};

use crate::fake_api::*;
use crate::objects::*;

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

    f.set(|c| c.pods = vec![crash_looping_pod("api-0", 4, terminated("Error", 1, "c4"))]);
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
    // The pod itself is named, with its last termination.
    let named = [("k8s_pod", "api-0"), ("reason", "CrashLoopBackOff")];
    assert_eq!(value(&s, "kubernetes_container_waiting", &named), Some(1.0));
    let last = [("k8s_pod", "api-0"), ("reason", "Error")];
    assert_eq!(
        value(&s, "kubernetes_container_last_termination_exit_code", &last),
        Some(1.0)
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
    // Running again: no longer waiting; the last termination stays.
    assert_eq!(value(&s, "kubernetes_container_waiting", &named), None);
    assert_eq!(
        value(&s, "kubernetes_container_last_termination_exit_code", &last),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "kubernetes_container_restarts", &restarts),
        Some(4.0)
    );

    // Pods are listed in pages with the selector; the small lists ask the
    // API server's cache.
    let requests = f.cluster.lock().unwrap().requests.clone();
    let pods: Vec<&Request0> = requests
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/") && r.path.ends_with("/pods"))
        .collect();
    assert_eq!(pods.len(), 3);
    for r in &requests {
        assert!(r.authorized, "{r:?} without the kubeconfig's token");
        let paged = r.path.ends_with("/deployments") || pods.iter().any(|p| p.path == r.path);
        if paged {
            assert!(r.query.contains("limit=500"), "{r:?}");
        } else if !r.path.contains("metrics.k8s.io") {
            assert!(r.query.contains("resourceVersion=0"), "{r:?}");
        }
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

/// A running, ready pod with one container `api` that restarted `restarts`
/// times, last ending as `last_state`.
fn running_pod(name: &str, restarts: u32, last_state: Value) -> Value {
    pod(
        name,
        "Running",
        true,
        vec![container("api", restarts, running(), last_state)],
    )
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
            running_pod("api-0", 0, json!({})),
            running_pod("api-1", 1, terminated("OOMKilled", 137, "b1")),
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
        c.pods[0] = running_pod("api-0", 1, terminated("OOMKilled", 137, "a1"));
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
        c.pods[0] = running_pod("api-0", 2, terminated("Error", 1, "a2"));
    });
    assert_eq!(
        value(&f.run_ok().await, "kubernetes_container_oom_kills", &api0),
        Some(1.0)
    );
    f.set(|c| {
        c.pods[0] = running_pod("api-0", 3, terminated("OOMKilled", 137, "a3"));
    });
    assert_eq!(
        value(&f.run_ok().await, "kubernetes_container_oom_kills", &api0),
        Some(2.0)
    );

    // A pod created after the first run that was already OOM-killed once
    // when first seen: that kill counts.
    f.set(|c| {
        c.pods
            .push(running_pod("api-2", 1, terminated("OOMKilled", 137, "c1")));
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
