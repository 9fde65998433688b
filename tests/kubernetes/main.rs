//! The `kubernetes` kind: the real kube client against a fake API server
//! started by each test, serving genuine Kubernetes list JSON.
//!
//! `fake_api` holds the fake API server and the check fixture, `objects`
//! the API objects; the tests are grouped by topic in `pods`, `resources`
//! (events, nodes, services, deployments), `failures` and `config`.

#[path = "../common/mod.rs"]
mod common;
mod config;
mod failures;
mod fake_api;
mod objects;
mod pods;
mod resources;
mod scale;
mod usage;

const NS: &str = "llm-research";
const TOKEN: &str = "kube-test-token-5f1c";
