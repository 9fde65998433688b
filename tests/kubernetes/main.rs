//! The `kubernetes` kind: the real kube client against a fake API server
//! started by each test, serving genuine Kubernetes list JSON.
//!
//! `fake_api` holds the fake API server (lists paged with `limit` and
//! `continue`, PodMetrics of metrics.k8s.io or a 404 without them) and the
//! check fixture, `objects` the API objects; the tests are grouped by topic
//! in `pods`, `resources` (events, nodes, services, deployments), `usage`
//! (resource use against limits, terminations by reason and exit code),
//! `scale` (namespaces beyond the caps, paging, Deployments through their
//! ReplicaSets), `failures`, `config` (with the RBAC rules) and `diagnose`
//! (the `diagnose` command's evidence for a crash-looping pod).

#[path = "../common/mod.rs"]
mod common;
mod config;
mod diagnose;
mod failures;
mod fake_api;
mod objects;
mod pods;
mod resources;
mod scale;
mod usage;

const NS: &str = "llm-research";
const TOKEN: &str = "kube-test-token-5f1c";
