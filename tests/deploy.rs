//! The shipped deployment files: the Kubernetes manifests are well-formed
//! and consistent (every referenced ConfigMap, Secret, ServiceAccount and
//! port exists; monitors select what they should), the embedded config is
//! valid, and the Dockerfile builds a non-root image.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every document of every YAML file in deploy/kubernetes.
fn documents() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for (i, part) in text.split("\n---\n").enumerate() {
            let value: Value =
                serde_saphyr::from_str(part).unwrap_or_else(|e| panic!("{name} document {i}: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

fn names_of(docs: &[(String, Value)], kind: &str) -> HashSet<String> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Pod specs of every workload.
fn pod_specs(docs: &[(String, Value)]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == "Deployment")
        .map(|(f, d)| (f.clone(), &d["spec"]["template"]["spec"]))
        .collect()
}

#[test]
fn every_document_has_api_version_kind_and_name() {
    let docs = documents();
    assert!(docs.len() >= 8, "only {} documents", docs.len());
    for (file, d) in &docs {
        if d["kind"] == "Kustomization" {
            continue;
        }
        assert!(d["apiVersion"].is_string(), "{file}: apiVersion");
        assert!(d["kind"].is_string(), "{file}: kind");
        assert!(d["metadata"]["name"].is_string(), "{file}: metadata.name");
    }
}

#[test]
fn kustomization_lists_existing_files() {
    for (file, d) in documents() {
        if d["kind"] == "Kustomization" {
            for r in d["resources"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                assert!(deploy_dir().join(r).exists(), "{file}: {r} does not exist");
            }
        }
    }
}

#[test]
fn references_resolve() {
    let docs = documents();
    let config_maps = names_of(&docs, "ConfigMap");
    let secrets = names_of(&docs, "Secret");
    let accounts = names_of(&docs, "ServiceAccount");
    for (file, pod) in pod_specs(&docs) {
        if let Some(sa) = pod["serviceAccountName"].as_str() {
            assert!(accounts.contains(sa), "{file}: ServiceAccount {sa} missing");
        }
        for v in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                assert!(config_maps.contains(cm), "{file}: ConfigMap {cm} missing");
            }
        }
        let volumes: HashSet<&str> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        for c in pod["containers"].as_array().unwrap() {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                if let Some(s) = e["secretRef"]["name"].as_str() {
                    assert!(secrets.contains(s), "{file}: Secret {s} missing");
                }
            }
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let v = m["name"].as_str().unwrap();
                assert!(volumes.contains(v), "{file}: volume {v} missing");
            }
            let ports: HashSet<&str> = c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str())
                .collect();
            for probe in ["readinessProbe", "livenessProbe"] {
                if let Some(port) = c[probe]["httpGet"]["port"].as_str() {
                    assert!(ports.contains(port), "{file}: {probe} port {port} missing");
                }
            }
        }
    }
}

/// Labels of the pods of every workload, and the names of their ports.
fn pods(docs: &[(String, Value)]) -> Vec<(&Value, HashSet<String>)> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == "Deployment")
        .map(|(_, d)| {
            let ports = d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            (&d["spec"]["template"]["metadata"]["labels"], ports)
        })
        .collect()
}

fn matches(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels[k] == *v)
}

#[test]
fn services_and_monitors_select_ports_that_exist() {
    let docs = documents();
    let pods = pods(&docs);
    for (file, d) in &docs {
        match d["kind"].as_str().unwrap() {
            "Service" => {
                let selected: Vec<_> = pods
                    .iter()
                    .filter(|(l, _)| matches(&d["spec"]["selector"], l))
                    .collect();
                assert!(!selected.is_empty(), "{file}: Service selects no pods");
                for p in d["spec"]["ports"].as_array().unwrap() {
                    let target = p["targetPort"].as_str().unwrap();
                    assert!(
                        selected.iter().all(|(_, ports)| ports.contains(target)),
                        "{file}: targetPort {target}"
                    );
                }
            }
            "ServiceMonitor" => {
                let services: Vec<&Value> = docs
                    .iter()
                    .filter(|(_, s)| s["kind"] == "Service")
                    .map(|(_, s)| s)
                    .filter(|s| {
                        matches(
                            &d["spec"]["selector"]["matchLabels"],
                            &s["metadata"]["labels"],
                        )
                    })
                    .collect();
                assert!(!services.is_empty(), "{file}: selects no Service");
                for e in d["spec"]["endpoints"].as_array().unwrap() {
                    let port = e["port"].as_str().unwrap();
                    assert!(
                        services.iter().all(|s| s["spec"]["ports"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| p["name"] == port)),
                        "{file}: port {port}"
                    );
                }
            }
            "PodMonitor" => {
                let selected: Vec<_> = pods
                    .iter()
                    .filter(|(l, _)| matches(&d["spec"]["selector"]["matchLabels"], l))
                    .collect();
                assert!(!selected.is_empty(), "{file}: selects no pods");
                for e in d["spec"]["podMetricsEndpoints"].as_array().unwrap() {
                    let port = e["port"].as_str().unwrap();
                    assert!(
                        selected.iter().all(|(_, ports)| ports.contains(port)),
                        "{file}: port {port}"
                    );
                }
            }
            _ => {}
        }
    }
}

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
    assert_eq!(seen, 2, "the sidecar and the standalone exporter");
}

#[test]
fn the_config_map_holds_a_valid_config() {
    let docs = documents();
    let (_, cm) = docs
        .iter()
        .find(|(_, d)| {
            d["kind"] == "ConfigMap" && d["metadata"]["name"] == "runbook-exporter-config"
        })
        .unwrap();
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    let config = runbook_exporter::config::parse("configmap.yaml", text, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.checks.is_empty());
}

#[test]
fn the_dockerfile_builds_a_small_non_root_image() {
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
