//! What is checked before any run: config problems name their field, a
//! missing kubeconfig or context fails the build, and the shipped RBAC
//! grants exactly the resources the check reads.

use runbook_exporter::checks::kubernetes::{API_RESOURCES, API_VERB};
use runbook_exporter::checks::CheckSpec;
use serde_json::Value;

use crate::fake_api::*;

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
    let err = &spec.build().err().expect("no such file")[0];
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
    let err = &spec.build().err().expect("no such context")[0];
    assert_eq!(err.field, "context");
    assert!(
        err.message.starts_with("no context \"prod\""),
        "{}",
        err.message
    );
    assert!(err.message.ends_with("it has: test"), "{}", err.message);
}

/// deploy/kubernetes/rbac.yaml grants exactly what the code reads (with
/// the verbs each resource needs), and only read verbs.
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
            assert!(verbs.contains(&API_VERB), "{rule}");
            assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    granted.push((
                        namespaced,
                        group.as_str().unwrap().to_string(),
                        resource.as_str().unwrap().to_string(),
                        verbs.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                    ));
                }
            }
        }
    }
    granted.sort();
    let mut read: Vec<(bool, String, String, Vec<String>)> = API_RESOURCES
        .iter()
        .map(|r| {
            let verbs = r.verbs.iter().map(|v| v.to_string()).collect();
            (
                r.namespaced,
                r.group.to_string(),
                r.resource.to_string(),
                verbs,
            )
        })
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

/// What a run really calls is what rbac.yaml grants: every request of a
/// run with every feature on is to a resource of `API_RESOURCES`, and
/// every one of them is called.
#[tokio::test]
async fn a_run_calls_exactly_the_resources_of_the_rbac_rules() {
    use crate::objects::*;
    let f = Fixture::new("selector: app=llm-research-api\nservices: [llm-research-api]").await;
    f.set(|c| {
        let running = || vec![container("api", 0, running(), serde_json::json!({}))];
        c.pods = vec![owned_by(
            pod("api-0", "Running", true, running()),
            "api-7d9f",
        )];
        c.replica_sets = vec![replica_set("api-7d9f", "llm-research-api")];
        c.pod_metrics = Some(vec![pod_metrics("api-0", "10m", "64Mi")]);
    });
    f.run_ok().await;
    let requests = f.cluster.lock().unwrap().requests.clone();
    let mut called: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
            let (group, rest) = match parts[0] {
                "api" => ("", &parts[2..]),
                _ => (parts[1], &parts[3..]),
            };
            let resource = rest.last().copied().unwrap_or_default();
            (group.to_string(), resource.to_string())
        })
        .collect();
    called.sort();
    called.dedup();
    let mut granted: Vec<(String, String)> = API_RESOURCES
        .iter()
        .map(|r| (r.group.to_string(), r.resource.to_string()))
        .collect();
    granted.sort();
    assert_eq!(called, granted);
}
