//! Resource use against limits, the guides' `kubectl top pod --containers`:
//! the PodMetrics of metrics.k8s.io (served by metrics-server), and the
//! limits in the pods' specs, as numbers. Without metrics-server the usage
//! is simply absent, and the run passes with a note saying why.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::Client;
use serde::Deserialize;

use super::client::{list_error, Note};
use super::metrics::POD_METRICS_RESOURCE;

/// CPU cores and working-set bytes of one container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Usage {
    pub(super) cpu_cores: Option<f64>,
    pub(super) memory_bytes: Option<f64>,
}

/// Usage by pod and container name, of one namespace.
pub(super) type NamespaceUsage = HashMap<(String, String), Usage>;

/// The `containers` of a PodMetrics object.
#[derive(Debug, Deserialize)]
struct ContainerMetrics {
    name: String,
    #[serde(default)]
    usage: HashMap<String, String>,
}

/// The PodMetrics of the pods of `ns` matching `selector`. An error is a
/// note, not a failure: metrics-server is optional.
pub(super) async fn list_usage(
    client: &Client,
    ns: &str,
    selector: Option<&str>,
) -> Result<NamespaceUsage, Note> {
    let resource = ApiResource {
        group: POD_METRICS_RESOURCE.group.to_string(),
        version: "v1beta1".to_string(),
        api_version: format!("{}/v1beta1", POD_METRICS_RESOURCE.group),
        kind: "PodMetrics".to_string(),
        plural: POD_METRICS_RESOURCE.resource.to_string(),
    };
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource);
    let mut params = ListParams::default();
    if let Some(selector) = selector {
        params = params.labels(selector);
    }
    let list = api.list(&params).await.map_err(|e| {
        let (_, detail) = list_error(&e, POD_METRICS_RESOURCE, Some(ns));
        let absent = matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 503);
        Note(if absent {
            format!("no resource use: metrics.k8s.io is not served ({detail}); install metrics-server for kubectl top and these metrics")
        } else {
            format!("no resource use: {detail}")
        })
    })?;
    let mut usage = NamespaceUsage::new();
    for item in list.items {
        let pod = item.metadata.name.clone().unwrap_or_default();
        let containers: Vec<ContainerMetrics> = item
            .data
            .get("containers")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| {
                Note(format!(
                    "no resource use: PodMetrics {ns}/{pod} is malformed: {e}"
                ))
            })?
            .unwrap_or_default();
        for c in containers {
            let get = |k: &str| c.usage.get(k).and_then(|q| quantity(q));
            usage.insert(
                (pod.clone(), c.name.clone()),
                Usage {
                    cpu_cores: get("cpu"),
                    memory_bytes: get("memory"),
                },
            );
        }
    }
    Ok(usage)
}

/// The CPU (cores) and memory (bytes) limits of each container of `pod`,
/// by container name.
pub(super) fn limits(pod: &Pod) -> HashMap<&str, (Option<f64>, Option<f64>)> {
    let mut out = HashMap::new();
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let get = |k: &str| limits.and_then(|l| l.get(k)).and_then(|q| quantity(&q.0));
        out.insert(c.name.as_str(), (get("cpu"), get("memory")));
    }
    out
}

/// A Kubernetes quantity as a number: `250m` cores, `12345n`, `1.5`,
/// `512Mi`, `1G`, `1e3`. `None` when it does not parse.
pub(super) fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    const SUFFIXES: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1.0));
    let value = number.parse::<f64>().ok()? * factor;
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::quantity;

    #[test]
    fn quantities_as_the_api_writes_them() {
        assert_eq!(quantity("250m"), Some(0.25));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1500000000n"), Some(1.5));
        assert_eq!(quantity("512Mi"), Some(536_870_912.0));
        assert_eq!(quantity("123456Ki"), Some(126_418_944.0));
        assert_eq!(quantity("1G"), Some(1e9));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("lots"), None);
    }
}
