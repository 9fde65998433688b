//! How runs fail and recover: a forbidden resource, a run cancelled by its
//! timeout, an unreachable or https API server, no service account.

use std::time::Duration;

use runbook_exporter::checks::{Reason, RunContext};
use serde_json::json;

use crate::common::build;
use crate::fake_api::*;
use crate::objects::*;
use crate::TOKEN;

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

    // Everything forbidden: nothing is left. Deployments are found
    // through the pods, so without pods they are not asked for.
    f.set(|c| c.forbidden = vec!["pods", "deployments", "events", "nodes"]);
    let failure = f.run().await.expect_err("a 403 fails the run");
    assert_eq!(failure.reason, Reason::Auth);
    assert!(
        failure.message.contains("(and 2 more failed requests)"),
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
    // A setup problem, not a bug in the exporter: never `internal`.
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(
        failure
            .message
            .starts_with("not in a Kubernetes cluster and no `kubeconfig` set")
            && failure.message.contains("set `kubeconfig`"),
        "{}",
        failure.message
    );
}
