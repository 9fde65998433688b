//! The rules that make a `/probe` module safe: its own `allowed_targets`
//! (host patterns, parsed here), required whenever it carries credentials,
//! and a kind that has a target to probe.

use serde_json::Value;

use super::errors::Errors;
use super::yaml::{self, Document};
use crate::checks::shared::targets::{AllowedTargets, HostPattern};
use crate::checks::CheckSpec;

/// Remove and parse an entry's `allowed_targets`, which only modules take.
pub(super) fn take_allowed_targets(
    doc: &Document,
    errors: &mut Errors,
    path: &str,
    fields: &mut serde_json::Map<String, Value>,
) -> Option<AllowedTargets> {
    let value = fields.remove("allowed_targets")?;
    let field = format!("{path}.allowed_targets");
    if !path.starts_with("modules[") {
        errors.at(
            doc.key_position(&field)
                .unwrap_or_else(|| doc.position(path)),
            &field,
            "only modules take allowed_targets: scheduled checks cannot be probed; \
             define a module under modules: for /probe",
        );
        return None;
    }
    let Value::Array(items) = value else {
        errors.at(
            doc.position(&field),
            &field,
            "expected a list of hosts, like [\"db.internal:5432\", \"*.db.internal\"]",
        );
        return None;
    };
    if items.is_empty() {
        errors.at(
            doc.position(&field),
            &field,
            "list at least one host, like [\"db.internal:5432\"]",
        );
        return None;
    }
    let mut patterns = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let parsed = match item {
            Value::String(text) => HostPattern::parse(text),
            _ => Err("expected a string: host, host:port or *.domain[:port]".to_string()),
        };
        match parsed {
            Ok(p) => patterns.push(p),
            Err(message) => errors.at(doc.position(&item_field), &item_field, message),
        }
    }
    (patterns.len() == items.len()).then_some(AllowedTargets(patterns))
}

/// What makes a module safe to probe: a kind with a target, and
/// `allowed_targets` whenever it carries credentials, so `/probe` can never
/// hand them to a host the operator did not list.
pub(super) fn probe_rules(
    doc: &Document,
    errors: &mut Errors,
    path: &str,
    spec: &mut CheckSpec,
    allowed: Option<&AllowedTargets>,
) {
    let kind = spec.kind();
    if CheckSpec::probe_target_field(kind).is_none() {
        let field = format!("{path}.kind");
        errors.at(
            doc.position(&field),
            &field,
            format!("kind {kind} has no target to probe; define it under checks: instead"),
        );
        return;
    }
    match allowed {
        Some(allowed) => spec.confine(allowed),
        None => {
            let credentials = spec.credentials();
            if let Some(first) = credentials.first() {
                let at = yaml::join(path, first);
                errors.at(
                    doc.key_position(&at).unwrap_or_else(|| doc.position(path)),
                    path,
                    format!(
                        "carries credentials ({}) but has no allowed_targets: /probe could send \
                         them to any host a caller names; list the hosts they may reach, like \
                         allowed_targets: [\"db.internal:5432\"]",
                        credentials.join(", ")
                    ),
                );
            } else if let Some(why) = spec.trusts_its_server() {
                let field = format!("{path}.kind");
                errors.at(
                    doc.position(&field),
                    path,
                    format!(
                        "kind {kind} needs allowed_targets in a module: {why}; list the \
                         servers it may reach, like allowed_targets: [\"server.internal:9092\"]"
                    ),
                );
            }
        }
    }
}
