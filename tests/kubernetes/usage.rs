//! Resource use against limits from metrics.k8s.io (served and absent),
//! and how containers die: terminations by reason and exit-code class.

use runbook_exporter::checks::Sample;
use serde_json::{json, Value};

use crate::fake_api::*;
use crate::objects::*;
use crate::NS;

fn api(name: &str) -> [(&'static str, &str); 2] {
    [("k8s_pod", name), ("k8s_container", "api")]
}

#[tokio::test]
async fn memory_and_cpu_use_against_their_limits_from_pod_metrics() {
    let f = Fixture::new("nodes: false\nevents: false\nselector: app=llm-research-api").await;
    f.set(|c| {
        c.pods = vec![
            with_limits(running_pod0("api-0"), "500m", "512Mi"),
            running_pod0("api-1"),
        ];
        c.pod_metrics = Some(vec![
            pod_metrics("api-0", "487m", "495Mi"),
            pod_metrics("api-1", "1200000n", "128974848"),
        ]);
    });
    let s = f.run_ok().await;
    let a0 = api("api-0");
    assert_eq!(
        value(&s, "kubernetes_container_memory_working_set", &a0),
        Some(495.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        value(&s, "kubernetes_container_memory_limit", &a0),
        Some(512.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        value(&s, "kubernetes_container_cpu_usage_cores", &a0),
        Some(0.487)
    );
    assert_eq!(
        value(&s, "kubernetes_container_cpu_limit_cores", &a0),
        Some(0.5)
    );
    // No limits: usage only.
    let a1 = api("api-1");
    assert_eq!(
        value(&s, "kubernetes_container_memory_working_set", &a1),
        Some(128_974_848.0)
    );
    assert_eq!(value(&s, "kubernetes_container_memory_limit", &a1), None);
    assert!(
        (value(&s, "kubernetes_container_cpu_usage_cores", &a1).unwrap() - 0.0012).abs() < 1e-12
    );
    assert!(f.check.notes().is_empty(), "{:?}", f.check.notes());
    // The PodMetrics were asked for with the selector.
    let requests = f.cluster.lock().unwrap().requests.clone();
    let metrics = requests
        .iter()
        .find(|r| r.path == format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods"))
        .expect("PodMetrics listed");
    assert!(
        metrics
            .query
            .contains("labelSelector=app%3Dllm-research-api"),
        "{metrics:?}"
    );
}

#[tokio::test]
async fn without_metrics_server_usage_is_absent_and_the_run_passes_with_a_note() {
    let f = Fixture::new("nodes: false\nevents: false").await;
    f.set(|c| c.pods = vec![with_limits(running_pod0("api-0"), "500m", "512Mi")]);
    let s = f.run_ok().await;
    let a0 = api("api-0");
    assert_eq!(
        value(&s, "kubernetes_container_memory_working_set", &a0),
        None
    );
    assert_eq!(value(&s, "kubernetes_container_cpu_usage_cores", &a0), None);
    // The limits are in the pod spec: still reported.
    assert_eq!(
        value(&s, "kubernetes_container_cpu_limit_cores", &a0),
        Some(0.5)
    );
    let notes = f.check.notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with(&format!(
            "no resource use: metrics.k8s.io is not served (list pods in namespace {NS}: 404 NotFound"
        )),
        "{notes:?}"
    );
    assert!(notes[0].ends_with("install metrics-server for kubectl top and these metrics"));

    // metrics-server appears: the note goes, the usage comes.
    f.set(|c| c.pod_metrics = Some(vec![pod_metrics("api-0", "10m", "64Mi")]));
    let s = f.run_ok().await;
    assert_eq!(
        value(&s, "kubernetes_container_cpu_usage_cores", &a0),
        Some(0.01)
    );
    assert!(f.check.notes().is_empty());

    // resource_usage: false never asks.
    let quiet = Fixture::new("nodes: false\nevents: false\nresource_usage: false").await;
    quiet.run_ok().await;
    let requests = quiet.cluster.lock().unwrap().requests.clone();
    assert!(requests.iter().all(|r| !r.path.contains("metrics.k8s.io")));
}

fn running_pod0(name: &str) -> serde_json::Value {
    pod(
        name,
        "Running",
        true,
        vec![container("api", 0, running(), json!({}))],
    )
}

/// A pod with one container `api` in `state`, last ended as `last`.
fn one(name: &str, phase: &str, restarts: u32, state: Value, last: Value) -> Value {
    pod(
        name,
        phase,
        phase == "Running",
        vec![container("api", restarts, state, last)],
    )
}

#[tokio::test]
async fn terminations_are_counted_by_reason_and_exit_code_class() {
    let f = Fixture::new("nodes: false\nevents: false").await;
    let exit = |s: &[Sample], code: &str| {
        let labels = [("k8s_namespace", NS), ("exit_code", code)];
        value(s, "kubernetes_container_exit_codes", &labels)
    };
    let reason = |s: &[Sample], r: &str| {
        let labels = [("k8s_namespace", NS), ("reason", r)];
        value(s, "kubernetes_container_terminations", &labels)
    };
    // The first list records what is there without counting it.
    f.set(|c| {
        c.pods = vec![
            one(
                "api-0",
                "Running",
                1,
                running(),
                terminated("Error", 101, "p0"),
            ),
            one("api-1", "Running", 0, running(), json!({})),
        ]
    });
    let s = f.run_ok().await;
    assert_eq!(exit(&s, "101"), Some(0.0));
    assert_eq!(reason(&s, "Error"), Some(0.0));

    // api-0 panics again (exit 101), api-1 is OOM-killed (137), and a
    // Job's pod ends OOM-killed in its current state, never restarted.
    f.set(|c| {
        c.pods = vec![
            one(
                "api-0",
                "Running",
                2,
                running(),
                terminated("Error", 101, "p1"),
            ),
            one(
                "api-1",
                "Running",
                1,
                running(),
                terminated("OOMKilled", 137, "q1"),
            ),
            one(
                "migrate-x",
                "Failed",
                0,
                terminated("OOMKilled", 137, "j1"),
                json!({}),
            ),
        ]
    });
    let s = f.run_ok().await;
    assert_eq!(exit(&s, "101"), Some(1.0));
    assert_eq!(exit(&s, "137"), Some(2.0));
    assert_eq!(exit(&s, "143"), Some(0.0));
    assert_eq!(reason(&s, "Error"), Some(1.0));
    assert_eq!(reason(&s, "OOMKilled"), Some(2.0));
    let ns = [("k8s_namespace", NS)];
    assert_eq!(value(&s, "kubernetes_namespace_oom_kills", &ns), Some(2.0));
    let job = [("k8s_pod", "migrate-x"), ("k8s_container", "api")];
    assert_eq!(value(&s, "kubernetes_container_oom_kills", &job), Some(1.0));

    // The Job's container restarts: its termination moves to the last
    // state, the same one, not counted twice. Another Job completes.
    f.set(|c| {
        c.pods[2] = one(
            "migrate-x",
            "Running",
            1,
            running(),
            terminated("OOMKilled", 137, "j1"),
        );
        let done = terminated("Completed", 0, "k1");
        c.pods
            .push(one("migrate-y", "Succeeded", 0, done, json!({})));
    });
    let s = f.run_ok().await;
    assert_eq!(exit(&s, "137"), Some(2.0));
    assert_eq!(exit(&s, "0"), Some(1.0));
    assert_eq!(reason(&s, "Completed"), Some(1.0));
    assert_eq!(exit(&s, "other"), Some(0.0));
    assert_eq!(reason(&s, "other"), Some(0.0));
}

/// Without metrics-server, what the user reads: the check is up, and the
/// status page and `check` say why resource use is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_missing_metrics_server_is_explained_on_the_status_page_and_by_check() {
    let cluster = Shared::default();
    cluster.lock().unwrap().pods = vec![running_pod0("api-0")];
    let addr = start(cluster.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(&dir, &format!("http://{addr}"));
    let config = format!(
        "checks:\n  - name: kube\n    kind: kubernetes\n    kubeconfig: {}\n    nodes: false\n    events: false\n    interval: 1s\n    timeout: 900ms\n",
        kubeconfig.display()
    );
    let (_app, web, config_dir) = crate::common::serve_config(&config).await;
    let page = std::cell::RefCell::new(String::new());
    crate::common::wait_until(
        std::time::Duration::from_secs(10),
        || {
            *page.borrow_mut() = crate::common::get(web, "/").body;
            let page = page.borrow();
            page.contains("metrics.k8s.io is not served") && page.contains("UP")
        },
        || {
            format!(
                "the check UP with the note on the status page:\n{}",
                page.borrow()
            )
        },
    )
    .await;
    let metrics = crate::common::get(web, "/metrics").body;
    assert_eq!(
        crate::common::sample(&metrics, "runbook_check_up", "check=\"kube\""),
        Some(1.0)
    );

    let path = config_dir.path().join("config.yaml");
    let out = tokio::task::spawn_blocking(move || {
        // Bounded: coreutils' timeout ends the run (exit 124) after a minute.
        std::process::Command::new("timeout")
            .args([
                "--kill-after=5s",
                "60s",
                env!("CARGO_BIN_EXE_runbook-exporter"),
            ])
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(
        table.contains("ok") && table.contains("no resource use: metrics.k8s.io is not served"),
        "{table}"
    );
}
