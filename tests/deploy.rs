//! The shipped deployment files: the Kubernetes manifests are well-formed
//! and consistent (every referenced ConfigMap, Secret, ServiceAccount and
//! port exists; monitors select what they should), `kubectl apply -k`
//! installs everything its workloads need, the exporter runs hardened and
//! only Prometheus may reach it, the embedded config is valid, and the
//! Dockerfile builds a non-root image.

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

/// Kinds whose pods are described by `spec.template`.
const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

fn is_workload(d: &Value) -> bool {
    WORKLOADS.iter().any(|k| d["kind"] == *k)
}

/// Pod specs of every workload.
fn pod_specs(docs: &[(String, Value)]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|(_, d)| is_workload(d))
        .map(|(f, d)| (f.clone(), &d["spec"]["template"]["spec"]))
        .collect()
}

/// Whether a container runs runbook-exporter (by name or image).
fn is_exporter(container: &Value) -> bool {
    container["name"] == "runbook-exporter"
        || container["image"]
            .as_str()
            .is_some_and(|i| i.contains("/runbook-exporter:"))
}

/// The containers of a pod spec, init containers included.
fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(|k| pod[k].as_array().into_iter().flatten())
}

fn kustomization() -> Value {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// The files `kubectl apply -k deploy/kubernetes` applies.
fn applied_files() -> Vec<String> {
    kustomization()["resources"]
        .as_array()
        .expect("kustomization.yaml has resources:")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// The documents of the applied files only.
fn applied_documents() -> Vec<(String, Value)> {
    let applied = applied_files();
    documents()
        .into_iter()
        .filter(|(f, _)| applied.contains(f))
        .collect()
}

/// Examples deliberately left out of the kustomization. Each must be named
/// in kustomization.yaml's header comment, which says why.
const OPT_IN: &[&str] = &[
    "sidecar-deployment.yaml",
    "podmonitor.yaml",
    "secret.example.yaml",
    "probe.yaml",
    "sharded-statefulset.yaml",
    "alertmanager-secret.yaml",
];

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
        .filter(|(_, d)| is_workload(d))
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
    assert_eq!(
        seen, 3,
        "the sidecar, the standalone and the sharded exporter"
    );
}

/// The exporter config embedded in configmap.yaml, parsed and validated.
fn config_map_config(docs: &[(String, Value)]) -> runbook_exporter::config::Config {
    let (_, cm) = docs
        .iter()
        .find(|(_, d)| {
            d["kind"] == "ConfigMap" && d["metadata"]["name"] == "runbook-exporter-config"
        })
        .unwrap();
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    runbook_exporter::config::parse("configmap.yaml", text, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_config_map_holds_a_valid_config() {
    let config = config_map_config(&documents());
    assert!(!config.checks.is_empty());
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

/// Whether `name` is in `defined`, or the reference is marked optional
/// (Kubernetes then starts the pod without it).
fn resolves(defined: &HashSet<String>, reference: &Value, name_key: &str) -> bool {
    let name = reference[name_key].as_str().unwrap();
    defined.contains(name) || reference["optional"] == true
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

/// Every exporter container with the pod spec it runs in.
fn exporter_containers(docs: &[(String, Value)]) -> Vec<(String, &Value, &Value)> {
    pod_specs(docs)
        .into_iter()
        .flat_map(|(file, pod)| {
            containers(pod)
                .filter(|c| is_exporter(c))
                .map(move |c| (file.clone(), pod, c))
        })
        .collect()
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

/// The one NetworkPolicy shipped, and the file it is in.
fn network_policy(docs: &[(String, Value)]) -> (&str, &Value) {
    let policies: Vec<_> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "NetworkPolicy")
        .collect();
    assert_eq!(policies.len(), 1, "one example NetworkPolicy");
    (policies[0].0.as_str(), &policies[0].1)
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
