//! Helpers shared by the mixin tests: reading the generated rules and
//! dashboards, and walking their PromQL with promql-parser.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use promql_parser::parser::{self, Expr, VectorSelector};
use runbook_exporter::mixin::{MixinConfig, RULE_FILES};
use serde::Deserialize;
use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn config() -> MixinConfig {
    MixinConfig::parse(&read("alerts/config.yaml")).expect("alerts/config.yaml is valid")
}

/// An environment variable a services script exports; panics with how to
/// get it when it is missing.
pub fn env(var: &str, service: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} not set: run scripts/services.sh up {service}"))
}

#[derive(Debug, Deserialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize, PartialEq)]
pub struct Rule {
    /// Empty for a recording rule.
    #[serde(default)]
    pub alert: String,
    #[serde(default)]
    pub record: Option<String>,
    pub expr: String,
    #[serde(rename = "for", default)]
    pub for_: String,
    #[serde(default)]
    pub keep_firing_for: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Every rules file as `(path, parsed)`.
pub fn rule_files() -> Vec<(String, RuleFile)> {
    RULE_FILES
        .iter()
        .map(|(path, _)| {
            let parsed: RuleFile =
                serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            (path.to_string(), parsed)
        })
        .collect()
}

/// Every alerting rule (recording rules left out).
pub fn rules() -> Vec<Rule> {
    all_rules()
        .into_iter()
        .filter(|r| r.record.is_none())
        .collect()
}

/// Every rule, recording rules included.
pub fn all_rules() -> Vec<Rule> {
    rule_files()
        .into_iter()
        .flat_map(|(_, f)| f.groups)
        .flat_map(|g| g.rules)
        .collect()
}

/// Every dashboard under dashboards/ as `(file name, JSON)`.
pub fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let json: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));
            out.push((name, json));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every query of every dashboard panel, as `(where, expr)`.
pub fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for panel in d["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                out.push((
                    format!("{file}: {}", panel["title"]),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

/// A dashboard query with its Grafana variables replaced so that it parses
/// (and runs) as PromQL: every `$var` matches anything, and
/// `$__rate_interval` becomes `rate_interval`.
pub fn substitute(expr: &str, rate_interval: &str) -> String {
    let mut out = expr.replace("$__rate_interval", rate_interval);
    for var in [
        "$job",
        "$instance",
        "$check",
        "$container_job",
        "$container_instance",
    ] {
        out = out.replace(&format!("\"{var}\""), "\".+\"");
    }
    out
}

/// One selector of an expression, with the function it is the argument of
/// (through a range selector), if any.
pub struct Use {
    pub selector: VectorSelector,
    pub range: Option<std::time::Duration>,
    pub function: Option<&'static str>,
}

fn walk(e: &Expr, function: Option<&'static str>, out: &mut Vec<Use>) {
    match e {
        Expr::Aggregate(a) => {
            walk(&a.expr, None, out);
            if let Some(p) = &a.param {
                walk(p, None, out);
            }
        }
        Expr::Unary(u) => walk(&u.expr, None, out),
        Expr::Binary(b) => {
            walk(&b.lhs, None, out);
            walk(&b.rhs, None, out);
        }
        Expr::Paren(p) => walk(&p.expr, None, out),
        Expr::Subquery(s) => walk(&s.expr, None, out),
        Expr::VectorSelector(vs) => out.push(Use {
            selector: vs.clone(),
            range: None,
            function,
        }),
        Expr::MatrixSelector(ms) => out.push(Use {
            selector: ms.vs.clone(),
            range: Some(ms.range),
            function,
        }),
        Expr::Call(c) => {
            for arg in &c.args.args {
                walk(arg, Some(c.func.name), out);
            }
        }
        _ => {}
    }
}

/// Parse `expr` and list its selectors.
pub fn uses(expr: &str) -> Result<Vec<Use>, String> {
    let parsed = parser::parse(expr)?;
    let mut out = Vec::new();
    walk(&parsed, None, &mut out);
    Ok(out)
}

/// The metric name of a selector (from `name` or a `__name__` matcher).
pub fn metric_name(vs: &VectorSelector) -> Option<String> {
    vs.name.clone().or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__")
            .map(|m| m.value.clone())
    })
}

/// Every `runbook_*` metric name used by the rules and the dashboards,
/// with one place that uses it.
pub fn runbook_metrics_used() -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let mut exprs: Vec<(String, String)> = rules().into_iter().map(|r| (r.alert, r.expr)).collect();
    exprs.extend(
        dashboard_queries()
            .into_iter()
            .map(|(w, e)| (w, substitute(&e, "5m"))),
    );
    for (place, expr) in exprs {
        for u in uses(&expr).unwrap_or_else(|e| panic!("{place}: {expr}: {e}")) {
            // `{__name__=~"a|b"}` names each alternative.
            let Some(names_of) = metric_name(&u.selector) else {
                continue;
            };
            for name in names_of.split('|').filter(|n| n.starts_with("runbook_")) {
                names
                    .entry(name.to_string())
                    .or_insert_with(|| place.clone());
            }
        }
    }
    names
}

/// The metric names in a text exposition.
pub fn exposed_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

pub fn exists(rel: &str) -> bool {
    Path::new(&root()).join(rel).exists()
}
