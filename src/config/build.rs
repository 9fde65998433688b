//! Building a [`Config`] from a parsed document: the raw structs (unknown
//! fields rejected), the defaults, and each check and module validated and
//! built, every problem reported with its position.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::errors::Errors;
use super::modules::{probe_rules, take_allowed_targets};
use super::yaml::{self, Document};
use super::{
    duration, files, CheckConfig, Config, Keep, ModuleParts, SettingsDigest, DEFAULT_INTERVAL,
    DEFAULT_MAX_CONCURRENT_RUNS, DEFAULT_TIMEOUT,
};
use crate::checks::shared::regex_problem;
use crate::checks::{CheckSpec, KINDS};
use crate::shard::stable_hash;

/// Label names the exporter sets itself; user labels may not use them.
const RESERVED_LABELS: &[&str] = &["check", "kind", "reason", "phase", "job", "instance"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default = "default_max_concurrent_runs")]
    max_concurrent_runs: usize,
    checks: Vec<Value>,
    #[serde(default)]
    modules: Vec<Value>,
    #[serde(default)]
    probe: RawProbe,
}

/// Settings of the `/probe` endpoint.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    /// Regexes a `target` must match entirely; empty allows any target.
    #[serde(default)]
    allowed_targets: Vec<String>,
}

fn default_max_concurrent_runs() -> usize {
    DEFAULT_MAX_CONCURRENT_RUNS
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default = "default_interval", with = "duration")]
    interval: Duration,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Default for RawDefaults {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            labels: BTreeMap::new(),
        }
    }
}

fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// The fields every check has, whatever its kind.
#[derive(Deserialize)]
struct RawCommon {
    name: String,
    #[serde(default, with = "duration::option")]
    interval: Option<Duration>,
    #[serde(default, with = "duration::option")]
    timeout: Option<Duration>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

const COMMON_FIELDS: &[&str] = &["name", "interval", "timeout", "labels"];

/// The validated config of `doc`, or `None` when its top level cannot be
/// read; other problems are added to `errors`. The document's value is
/// taken, not copied, and each entry's part of it is dropped once the entry
/// is built. Each check keeps what `keep` says.
pub(super) fn build(doc: &mut Document, errors: &mut Errors, keep: Keep) -> Option<Config> {
    if !doc.value.is_object() {
        errors.at(
            doc.position(""),
            "",
            "expected a mapping with `checks:` (and optionally `defaults:`) at the top level",
        );
        return None;
    }
    let top: RawTop = match serde_path_to_error::deserialize(std::mem::take(&mut doc.value)) {
        Ok(top) => top,
        Err(e) => {
            errors.serde(doc, "", e);
            return None;
        }
    };
    if top.max_concurrent_runs == 0 {
        errors.at(
            doc.position("max_concurrent_runs"),
            "max_concurrent_runs",
            "must be at least 1",
        );
    }
    if top.defaults.timeout >= top.defaults.interval {
        errors.at(
            doc.position("defaults.timeout"),
            "defaults.timeout",
            format!(
                "timeout ({}) must be less than interval ({})",
                humantime::format_duration(top.defaults.timeout),
                humantime::format_duration(top.defaults.interval)
            ),
        );
    }
    check_labels(doc, errors, "defaults.labels", &top.defaults.labels);

    let allowed_targets = probe_patterns(doc, errors, &top.probe.allowed_targets);

    // Checks and modules share one namespace: /probe?module= names either.
    // Where each name was first used: its section and index.
    let mut seen: HashMap<String, (&str, usize)> = HashMap::new();
    let mut other_shards_checks = Vec::new();
    let mut sections = [
        ("checks", top.checks, Vec::new()),
        ("modules", top.modules, Vec::new()),
    ];
    for (section, values, built) in sections.iter_mut() {
        for (i, value) in std::mem::take(values).into_iter().enumerate() {
            let path = format!("{section}[{i}]");
            let Some(check) = build_check(doc, errors, &path, value, &top.defaults, keep) else {
                continue;
            };
            let name_path = format!("{path}.name");
            if let Some((first_section, first)) = seen.get(&check.name) {
                let first_line = doc.position(&format!("{first_section}[{first}].name")).line;
                errors.at(
                    doc.position(&name_path),
                    &name_path,
                    format!(
                        "duplicate check name {:?} (first used at line {first_line})",
                        check.name
                    ),
                );
            } else {
                seen.insert(check.name.clone(), (section, i));
                if *section == "checks" && !keep.keeps(&check.name) {
                    other_shards_checks.push(stable_hash(&check.name));
                } else {
                    built.push(Arc::new(check));
                }
            }
        }
    }
    let [(_, _, checks), (_, _, modules)] = sections;
    Some(Config {
        max_concurrent_runs: top.max_concurrent_runs,
        checks,
        other_shards_checks,
        modules,
        probe_allowed_targets: allowed_targets,
    })
}

/// `probe.allowed_targets`, each anchored to match a whole target.
fn probe_patterns(doc: &Document, errors: &mut Errors, patterns: &[String]) -> Vec<regex::Regex> {
    let mut allowed_targets = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let field = format!("probe.allowed_targets[{i}]");
        // Check the pattern as written, so the error shows the user's text.
        match regex::Regex::new(pattern)
            .and_then(|_| regex::Regex::new(&format!("^(?:{pattern})$")))
        {
            Ok(re) => allowed_targets.push(re),
            Err(e) => errors.at(
                doc.position(&field),
                &field,
                format!("invalid regex {pattern:?}: {}", regex_problem(&e)),
            ),
        }
    }
    allowed_targets
}

/// Build one entry of `checks:` or `modules:` at `path`; `None` (with the
/// problems in `errors`) when it is not valid.
fn build_check(
    doc: &Document,
    errors: &mut Errors,
    path: &str,
    value: Value,
    defaults: &RawDefaults,
    keep: Keep,
) -> Option<CheckConfig> {
    let Value::Object(mut fields) = value else {
        errors.at(
            doc.position(path),
            path,
            "expected a mapping with name, kind and the kind's fields",
        );
        return None;
    };
    let before = errors.list.len();
    let common = take_common(doc, errors, path, &mut fields);
    let allowed_targets = take_allowed_targets(doc, errors, path, &mut fields);
    let kind_fields = {
        let mut f = fields.clone();
        f.remove("kind");
        f
    };
    let spec = deserialize_spec(doc, errors, path, fields);

    let (common, mut spec) = (common?, spec?);
    let name_path = format!("{path}.name");
    if !is_label_safe(&common.name) {
        errors.at(
            doc.position(&name_path),
            &name_path,
            format!(
                "invalid check name {:?}: use letters, digits and underscores, not starting with a digit",
                common.name
            ),
        );
    }
    let (interval, timeout) = schedule(doc, errors, path, &common, defaults);
    check_labels(doc, errors, &format!("{path}.labels"), &common.labels);
    for (field, message) in spec.validate() {
        let field = yaml::join(path, &field);
        errors.at(doc.position(&field), &field, message);
    }
    if path.starts_with("modules[") {
        probe_rules(doc, errors, path, &mut spec, allowed_targets.as_ref());
    }
    if errors.list.len() > before {
        return None;
    }
    // Before the build: a file rewritten meanwhile differs at the next reload.
    let files = files::FileFingerprint::of(&kind_fields);
    let settings = settings_digest(spec.kind(), &kind_fields);
    // Only a module derives checks from its fields (`/probe` never runs a
    // scheduled check); a check does not keep them.
    let module = path.starts_with("modules[").then(|| {
        Box::new(ModuleParts {
            fields: kind_fields,
            allowed_targets,
        })
    });
    let check = match spec.build() {
        Ok(c) => c,
        Err(problems) => {
            for e in problems {
                let field = yaml::join(path, &e.field);
                errors.at(doc.position(&field), &field, e.message);
            }
            return None;
        }
    };
    let mut labels = defaults.labels.clone();
    labels.extend(common.labels);
    Some(CheckConfig {
        name: common.name,
        interval,
        timeout,
        labels: labels.into_iter().collect(),
        kind: spec.kind(),
        spec: matches!(keep, Keep::Specs).then_some(spec),
        settings,
        check: Arc::from(check),
        module,
        files,
    })
}

/// [`SettingsDigest`] of `kind` and its `fields`: every key, string and
/// list is fed with its length and every value with its type, so that two
/// different settings never feed the same bytes; keys come sorted.
fn settings_digest(kind: &str, fields: &serde_json::Map<String, Value>) -> SettingsDigest {
    fn text(context: &mut ring::digest::Context, s: &str) {
        context.update(&(s.len() as u64).to_le_bytes());
        context.update(s.as_bytes());
    }
    fn map(context: &mut ring::digest::Context, fields: &serde_json::Map<String, Value>) {
        context.update(&(fields.len() as u64).to_le_bytes());
        for (key, value) in fields {
            text(context, key);
            feed(context, value);
        }
    }
    fn feed(context: &mut ring::digest::Context, value: &Value) {
        match value {
            Value::Null => context.update(b"n"),
            Value::Bool(b) => context.update(if *b { b"t" } else { b"f" }),
            Value::Number(n) => {
                context.update(b"#");
                text(context, &n.to_string());
            }
            Value::String(s) => {
                context.update(b"s");
                text(context, s);
            }
            Value::Array(items) => {
                context.update(b"[");
                context.update(&(items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| feed(context, v));
            }
            Value::Object(fields) => {
                context.update(b"{");
                map(context, fields);
            }
        }
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    text(&mut context, kind);
    map(&mut context, fields);
    let mut out = SettingsDigest::default();
    let len = out.len();
    out.copy_from_slice(&context.finish().as_ref()[..len]);
    out
}

/// Remove and parse the fields every check has ([`COMMON_FIELDS`]).
fn take_common(
    doc: &Document,
    errors: &mut Errors,
    path: &str,
    fields: &mut serde_json::Map<String, Value>,
) -> Option<RawCommon> {
    let mut common = serde_json::Map::new();
    for key in COMMON_FIELDS {
        if let Some(v) = fields.remove(*key) {
            common.insert(key.to_string(), v);
        }
    }
    match serde_path_to_error::deserialize(Value::Object(common)) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.serde(doc, path, e);
            None
        }
    }
}

/// The kind's spec from the remaining `fields` (`kind` and the kind's own).
fn deserialize_spec(
    doc: &Document,
    errors: &mut Errors,
    path: &str,
    mut fields: serde_json::Map<String, Value>,
) -> Option<CheckSpec> {
    let kind_path = format!("{path}.kind");
    match fields.remove("kind") {
        None => {
            errors.at(
                doc.position(path),
                path,
                format!("missing field `kind` (one of {})", KINDS.join(", ")),
            );
            None
        }
        Some(Value::String(kind)) => {
            let mut track = serde_path_to_error::Track::new();
            let de = serde_path_to_error::Deserializer::new(Value::Object(fields), &mut track);
            match CheckSpec::deserialize_kind(&kind, de) {
                None => {
                    errors.at(
                        doc.position(&kind_path),
                        &kind_path,
                        format!(
                            "unknown kind {kind:?}: expected one of {}",
                            KINDS.join(", ")
                        ),
                    );
                    None
                }
                Some(Ok(spec)) => Some(spec),
                Some(Err(e)) => {
                    errors.serde(doc, path, serde_path_to_error::Error::new(track.path(), e));
                    None
                }
            }
        }
        Some(_) => {
            errors.at(
                doc.position(&kind_path),
                &kind_path,
                format!("expected a string, one of {}", KINDS.join(", ")),
            );
            None
        }
    }
}

/// The check's interval and timeout (its own, else the defaults'); the
/// timeout must be shorter.
fn schedule(
    doc: &Document,
    errors: &mut Errors,
    path: &str,
    common: &RawCommon,
    defaults: &RawDefaults,
) -> (Duration, Duration) {
    let interval = common.interval.unwrap_or(defaults.interval);
    let timeout = common.timeout.unwrap_or(defaults.timeout);
    if timeout >= interval {
        let field = if common.timeout.is_some() {
            format!("{path}.timeout")
        } else {
            format!("{path}.interval")
        };
        errors.at(
            doc.position(&field),
            &field,
            format!(
                "timeout ({}) must be less than interval ({})",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        );
    }
    (interval, timeout)
}

fn check_labels(
    doc: &Document,
    errors: &mut Errors,
    path: &str,
    labels: &BTreeMap<String, String>,
) {
    for name in labels.keys() {
        let field = yaml::join(path, name);
        let pos = doc
            .key_position(&field)
            .unwrap_or_else(|| doc.position(path));
        if !is_label_safe(name) || name.starts_with("__") {
            errors.at(
                pos,
                &field,
                format!("invalid label name {name:?}: use letters, digits and underscores, not starting with a digit or __"),
            );
        } else if RESERVED_LABELS.contains(&name.as_str()) {
            errors.at(
                pos,
                &field,
                format!("label name {name:?} is reserved (the exporter or Prometheus sets it)"),
            );
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: valid as a Prometheus label name.
pub fn is_label_safe(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
