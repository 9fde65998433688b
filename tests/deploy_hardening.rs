//! The shipped deployment runs the exporter hardened: non-root with a
//! read-only root filesystem, the runtime's default seccomp profile, no
//! capabilities, a distroless image, and a network policy that lets only
//! Prometheus in, on the metrics port.

mod deploy_support;

use std::path::Path;

use deploy_support::*;
use serde_json::Value;

#[test]
fn the_exporter_runs_as_non_root_with_a_read_only_root() {
    let docs = documents();
    let mut seen = 0;
    for (file, pod) in pod_specs(&docs) {
        for c in pod["containers"].as_array().unwrap() {
            if c["name"] == "runbook-exporter" {
                seen += 1;
                let sc = &c["securityContext"];
                assert_eq!(sc["runAsNonRoot"], true, "{file}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{file}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{file}");
            }
        }
    }
    assert_eq!(
        seen, 3,
        "the sidecar, the standalone and the sharded exporter"
    );
}

#[test]
fn the_dockerfile_is_multi_stage_distroless_and_non_root() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(froms.last().unwrap().contains("distroless"), "{froms:?}");
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    assert!(text.contains("EXPOSE 9745"));
    assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/runbook-exporter\"]"));
    assert!(text.contains("--from=build /runbook-exporter /usr/local/bin/runbook-exporter"));
}

#[test]
fn every_exporter_container_uses_the_runtime_default_seccomp_profile() {
    let docs = documents();
    let exporters = exporter_containers(&docs);
    assert_eq!(
        exporters.len(),
        3,
        "the sidecar, the standalone and the sharded exporter"
    );
    for (file, pod, c) in exporters {
        // The container's own profile wins over the pod's.
        let profile = c["securityContext"]["seccompProfile"]["type"]
            .as_str()
            .or(pod["securityContext"]["seccompProfile"]["type"].as_str());
        assert_eq!(profile, Some("RuntimeDefault"), "{file}: {}", c["name"]);
    }
}

#[test]
fn every_exporter_container_drops_all_capabilities_and_cannot_escalate() {
    let docs = documents();
    let exporters = exporter_containers(&docs);
    assert_eq!(
        exporters.len(),
        3,
        "the sidecar, the standalone and the sharded exporter"
    );
    for (file, _, c) in exporters {
        let sc = &c["securityContext"];
        let drop: Vec<&str> = sc["capabilities"]["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(drop, ["ALL"], "{file}: capabilities.drop");
        assert!(
            sc["capabilities"]["add"].is_null(),
            "{file}: capabilities.add"
        );
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{file}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{file}");
        assert_eq!(sc["runAsNonRoot"], true, "{file}");
        assert!(
            sc["privileged"].is_null() || sc["privileged"] == false,
            "{file}"
        );
    }
}

#[test]
fn the_network_policy_selects_the_exporter_pods_and_no_application_pod() {
    let docs = documents();
    let applied = applied_files();
    let (file, policy) = network_policy(&docs);
    assert!(applied.iter().any(|f| f == file), "{file} is not applied");
    let selector = &policy["spec"]["podSelector"];
    assert!(
        selector["matchExpressions"].is_null(),
        "podSelector: matchLabels only"
    );
    let labels = &selector["matchLabels"];
    assert!(
        labels.as_object().is_some_and(|m| !m.is_empty()),
        "an empty podSelector would isolate every pod of the namespace"
    );
    let mut selected = 0;
    for (workload_file, d) in docs.iter().filter(|(_, d)| is_workload(d)) {
        let pod = &d["spec"]["template"]["spec"];
        let only_exporter = containers(pod).all(is_exporter);
        if matches(labels, &d["spec"]["template"]["metadata"]["labels"]) {
            selected += 1;
            // A policy allowing only 9745 would cut an application off.
            assert!(
                only_exporter,
                "{workload_file}: the policy selects pods that run more than the exporter"
            );
        } else {
            assert!(
                !(only_exporter && applied.contains(workload_file)),
                "{workload_file}: the exporter's pods are not selected by {file}"
            );
        }
    }
    assert_eq!(selected, 1, "the standalone exporter's pods");
}

#[test]
fn the_network_policy_lets_only_prometheus_pods_in_and_only_on_port_9745() {
    let docs = documents();
    let (file, policy) = network_policy(&docs);
    let spec = &policy["spec"];
    assert!(
        spec["policyTypes"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "Ingress")),
        "{file}: policyTypes must include Ingress"
    );
    let rules = spec["ingress"].as_array().expect("ingress rules");
    assert!(!rules.is_empty(), "{file}: no rule");
    for rule in rules {
        let ports = rule["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(
            !ports.is_empty(),
            "{file}: a rule without ports allows every port"
        );
        for p in ports {
            assert_eq!(p["port"], 9745, "{file}: {p}");
            assert!(p["endPort"].is_null(), "{file}: a port range");
            assert!(
                p["protocol"].is_null() || p["protocol"] == "TCP",
                "{file}: {p}"
            );
        }
        let peers = rule["from"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(
            !peers.is_empty(),
            "{file}: a rule without from allows every source"
        );
        for peer in peers {
            assert!(peer["ipBlock"].is_null(), "{file}: ipBlock peer");
            // Both selectors in one peer: Prometheus pods in the monitoring
            // namespace. Either alone would let in far more.
            assert_eq!(
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                "monitoring",
                "{file}: {peer}"
            );
            assert_eq!(
                peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "prometheus",
                "{file}: {peer}"
            );
        }
    }
    // 9745 is the port the exporter actually listens on.
    for (workload, _, c) in exporter_containers(&docs) {
        assert!(
            c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["containerPort"] == 9745),
            "{workload}: no containerPort 9745"
        );
        assert!(
            c["args"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "--web.listen-address=0.0.0.0:9745"),
            "{workload}: not listening on 9745"
        );
    }
}
