//! `runbook-exporter diagnose` (the real binary) against the fake API
//! server: a crash-looping pod is named with its last termination, the
//! crash-loop runbook and the kubectl commands filled in with the namespace
//! (from the kubeconfig) and the pod, in the table and in the JSON, and the
//! bearer token appears in neither.

use serde_json::{json, Value};

use crate::common::run_exporter;
use crate::fake_api::*;
use crate::objects::*;
use crate::{NS, TOKEN};

/// `diagnose` of `config` in `format`: (exit code, stdout).
async fn diagnose(config: &std::path::Path, format: &str) -> (Option<i32>, String) {
    let config = config.to_path_buf();
    let format = format.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_exporter(&[
            "diagnose".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--output".as_ref(),
            std::ffi::OsStr::new(&format),
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(TOKEN), "token in stderr:\n{stderr}");
    (out.status.code(), stdout)
}

/// The strings of a JSON array.
fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_looping_pod_is_named_with_its_last_termination_runbook_and_commands() {
    let cluster = Shared::default();
    cluster.lock().unwrap().pods = vec![
        crash_looping_pod("api-0", 6, terminated("OOMKilled", 137, "c6")),
        pod(
            "api-1",
            "Running",
            true,
            vec![container("api", 0, running(), json!({}))],
        ),
    ];
    let addr = start(cluster.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(&dir, &format!("http://{addr}"));
    // No namespace here: the check takes the kubeconfig's.
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "checks:\n  - name: research_pods\n    kind: kubernetes\n    kubeconfig: {}\n    selector: app=llm-research-api\n    timeout: 10s\n",
            kubeconfig.display()
        ),
    )
    .unwrap();

    let (code, table) = diagnose(&config, "table").await;
    let (json_code, json) = diagnose(&config, "json").await;
    assert_eq!(
        code,
        Some(0),
        "a degraded check passes, as in `check`:\n{table}"
    );
    assert_eq!(json_code, code, "same exit code in both formats");
    let report: Vec<Value> = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(report.len(), 1, "{json}");
    let d = &report[0];
    assert_eq!(d["name"], "research_pods");
    assert_eq!(d["status"], "degraded", "{d}");
    let degraded = d["degraded_by"][0].as_str().unwrap_or_default();
    assert!(
        degraded.starts_with("RunbookKubePodCrashLooping: ")
            && degraded.contains("reason=\"CrashLoopBackOff\""),
        "{d}"
    );
    assert_eq!(d["runbook"], "docs/runbooks/RunbookKubePodCrashLooping.md");

    let waiting = format!(
        "runbook_kubernetes_container_waiting{{k8s_namespace=\"{NS}\",k8s_pod=\"api-0\",k8s_container=\"api\",reason=\"CrashLoopBackOff\"}} = 1"
    );
    let last = format!(
        "runbook_kubernetes_container_last_termination_exit_code{{k8s_namespace=\"{NS}\",k8s_pod=\"api-0\",k8s_container=\"api\",reason=\"OOMKilled\"}} = 137"
    );
    let evidence = strings(&d["evidence"]);
    assert_eq!(
        evidence[..2],
        [waiting.as_str(), last.as_str()],
        "the crash-looping pod and its last termination first: {evidence:#?}"
    );
    assert!(
        !evidence.iter().any(|e| e.contains("api-1")),
        "the healthy pod is no evidence: {evidence:#?}"
    );
    let commands = strings(&d["commands"]);
    for expected in [
        format!("kubectl -n {NS} get pods -o wide"),
        format!("kubectl -n {NS} logs api-0 --previous --all-containers"),
        format!("kubectl -n {NS} describe pod api-0 | grep -A5 'Last State'"),
    ] {
        assert!(
            commands.contains(&expected.as_str()),
            "{expected} in {commands:#?}"
        );
    }

    // The table carries the same.
    for line in [
        "DEGRADED research_pods (kubernetes)",
        "== research_pods (kubernetes): degraded",
        waiting.as_str(),
        last.as_str(),
        "runbook: docs/runbooks/RunbookKubePodCrashLooping.md",
    ] {
        assert!(table.contains(line), "{line:?} not in:\n{table}");
    }
    assert!(
        table.contains(&format!("$ kubectl -n {NS} logs api-0 --previous")),
        "{table}"
    );
    for out in [&table, &json] {
        assert!(!out.contains(TOKEN), "token leaked:\n{out}");
    }
    // It really asked the fake API server, with the token.
    let requests = cluster.lock().unwrap().requests.clone();
    assert!(
        requests
            .iter()
            .any(|r| r.path == format!("/api/v1/namespaces/{NS}/pods") && r.authorized),
        "{requests:?}"
    );
}
