//! The shipped deployment files: the Kubernetes manifests are well-formed
//! and consistent (every referenced ConfigMap, Secret, ServiceAccount and
//! port exists; monitors select what they should), `kubectl apply -k`
//! installs everything its workloads need, and the embedded config is
//! valid. How the exporter runs hardened is in `deploy_hardening.rs`.

mod deploy_support;

use std::collections::HashSet;

use deploy_support::*;
use serde_json::Value;

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
fn the_config_map_holds_a_valid_config() {
    let config = config_map_config(&documents());
    assert!(!config.checks.is_empty());
}

#[test]
fn every_manifest_is_applied_by_the_kustomization_or_named_as_opt_in() {
    let applied = applied_files();
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    let comment: String = text
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut files: Vec<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .filter(|n| n != "kustomization.yaml")
        .collect();
    files.sort();
    assert!(files.len() >= 10, "only {files:?}");
    for file in &files {
        let listed = applied.contains(file);
        let opt_in = OPT_IN.contains(&file.as_str());
        assert!(
            listed || opt_in,
            "{file} is neither in kustomization.yaml's resources nor an opt-in example"
        );
        assert!(
            !(listed && opt_in),
            "{file} is applied by the kustomization but also called opt-in"
        );
        if opt_in {
            assert!(
                comment.contains(file.as_str()),
                "kustomization.yaml's comment does not name the opt-in example {file}"
            );
        }
    }
    for file in OPT_IN {
        assert!(
            files.iter().any(|f| f == file),
            "opt-in {file} does not exist"
        );
    }
    // What the issue was about: the RBAC and the NetworkPolicy are applied.
    for file in ["rbac.yaml", "networkpolicy.yaml", "deployment.yaml"] {
        assert!(applied.iter().any(|f| f == file), "{file} not applied");
    }
}

#[test]
fn the_service_account_of_every_applied_workload_is_defined_in_an_applied_file() {
    let docs = applied_documents();
    let accounts = names_of(&docs, "ServiceAccount");
    let mut named = 0;
    for (file, pod) in pod_specs(&docs) {
        if let Some(sa) = pod["serviceAccountName"].as_str() {
            named += 1;
            assert!(
                accounts.contains(sa),
                "{file}: ServiceAccount {sa} is not defined by any file the kustomization applies"
            );
        }
    }
    assert!(named >= 1, "no applied workload names a ServiceAccount");
}

#[test]
fn config_maps_and_secrets_of_applied_workloads_are_applied_or_optional() {
    let docs = applied_documents();
    let config_maps = names_of(&docs, "ConfigMap");
    let secrets = names_of(&docs, "Secret");
    let mut references = 0;
    let mut check = |file: &str, defined: &HashSet<String>, r: &Value, key: &str, what: &str| {
        references += 1;
        assert!(
            resolves(defined, r, key),
            "{file}: {what} {} is neither applied by the kustomization nor optional",
            r[key]
        );
    };
    for (file, pod) in pod_specs(&docs) {
        for v in pod["volumes"].as_array().into_iter().flatten() {
            if v["configMap"].is_object() {
                check(&file, &config_maps, &v["configMap"], "name", "ConfigMap");
            }
            if v["secret"].is_object() {
                check(&file, &secrets, &v["secret"], "secretName", "Secret");
            }
        }
        for c in containers(pod) {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                if e["configMapRef"].is_object() {
                    check(&file, &config_maps, &e["configMapRef"], "name", "ConfigMap");
                }
                if e["secretRef"].is_object() {
                    check(&file, &secrets, &e["secretRef"], "name", "Secret");
                }
            }
            for e in c["env"].as_array().into_iter().flatten() {
                let from = &e["valueFrom"];
                if from["configMapKeyRef"].is_object() {
                    check(
                        &file,
                        &config_maps,
                        &from["configMapKeyRef"],
                        "name",
                        "ConfigMap",
                    );
                }
                if from["secretKeyRef"].is_object() {
                    check(&file, &secrets, &from["secretKeyRef"], "name", "Secret");
                }
            }
        }
    }
    assert!(references >= 2, "only {references} references checked");
}

#[test]
fn applied_files_agree_with_the_kustomization_namespace() {
    let namespace = kustomization()["namespace"]
        .as_str()
        .expect("kustomization.yaml sets namespace:, so the ServiceAccount lands next to the Deployment")
        .to_string();
    let mut written = 0;
    for (file, d) in applied_documents() {
        let kind = d["kind"].as_str().unwrap().to_string();
        if let Some(ns) = d["metadata"]["namespace"].as_str() {
            written += 1;
            assert_eq!(ns, namespace, "{file}: {kind} metadata.namespace");
        }
        for s in d["subjects"].as_array().into_iter().flatten() {
            if let Some(ns) = s["namespace"].as_str() {
                written += 1;
                assert_eq!(ns, namespace, "{file}: {kind} subject {}", s["name"]);
            }
        }
    }
    assert!(written >= 1, "no namespace written in the applied files");
}

#[test]
fn the_probe_resource_names_a_module_and_targets_the_config_allows() {
    let docs = documents();
    let (_, probe) = docs.iter().find(|(_, d)| d["kind"] == "Probe").unwrap();
    let config = config_map_config(&docs);
    let module = probe["spec"]["module"].as_str().unwrap();
    assert!(
        config.modules.iter().any(|m| m.name == module),
        "probe.yaml: {module} is not a module of configmap.yaml"
    );
    assert!(
        !config.checks.iter().any(|c| c.name == module),
        "probe.yaml: {module} is a scheduled check; only modules can be probed"
    );
    assert!(
        !config.probe_allowed_targets.is_empty(),
        "configmap.yaml: an empty probe.allowed_targets allows any target"
    );
    let targets = probe["spec"]["targets"]["staticConfig"]["static"]
        .as_array()
        .unwrap();
    assert!(!targets.is_empty());
    for t in targets {
        let t = t.as_str().unwrap();
        assert!(
            config.probe_allowed_targets.iter().any(|re| re.is_match(t)),
            "probe.yaml: target {t} is not allowed by configmap.yaml"
        );
    }
    // Prometheus runs in another namespace: the prober address names the
    // Service with its namespace, on the Service's port.
    let (_, service) = docs.iter().find(|(_, d)| d["kind"] == "Service").unwrap();
    let expected = format!(
        "{}.{}.svc:{}",
        service["metadata"]["name"].as_str().unwrap(),
        kustomization()["namespace"].as_str().unwrap(),
        service["spec"]["ports"][0]["port"]
    );
    assert_eq!(probe["spec"]["prober"]["url"], expected.as_str());
}

#[test]
fn the_sharded_statefulset_has_as_many_shards_as_replicas() {
    let docs = documents();
    let (_, set) = docs
        .iter()
        .find(|(f, d)| f == "sharded-statefulset.yaml" && d["kind"] == "StatefulSet")
        .expect("sharded-statefulset.yaml holds a StatefulSet");
    let replicas = set["spec"]["replicas"].as_u64().expect("replicas: set");
    let args: Vec<&str> = set["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the exporter has args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--shard=auto"), "{args:?}");
    assert!(
        args.contains(&format!("--total-shards={replicas}").as_str()),
        "--total-shards must equal replicas ({replicas}): {args:?}"
    );
    assert_eq!(
        set["spec"]["serviceName"], "runbook-exporter-sharded",
        "the headless Service gives each pod its own endpoint"
    );
}
