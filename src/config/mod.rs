//! Loading the config file: text → `${ENV}` interpolation → YAML with
//! positions → raw structs (unknown fields rejected) → validated [`Config`]
//! with every check built and ready to run.
//!
//! Every problem found is reported, each with the file, line, column and
//! field path (`config.yaml:12:14: checks[1].timeout: ...`), and no message
//! echoes a value that came from the environment.

mod errors;
mod modules;

pub mod duration;
pub mod files;
pub mod interpolate;
pub mod secret;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::checks::targets::AllowedTargets;
use crate::checks::{Check, CheckSpec, KINDS};
use errors::Errors;
pub use errors::{ConfigError, ConfigErrors};
use modules::{probe_rules, take_allowed_targets};
use yaml::{Document, Pos};

/// Default for `defaults.interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default for `defaults.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for `max_concurrent_runs`.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 64;

/// Label names the exporter sets itself; user labels may not use them.
const RESERVED_LABELS: &[&str] = &["check", "kind", "reason", "phase", "job", "instance"];

/// A validated configuration, every check built.
#[derive(Debug)]
pub struct Config {
    /// Cap on check runs in flight at once, across all checks.
    pub max_concurrent_runs: usize,
    /// Checks run on their schedules.
    pub checks: Vec<Arc<CheckConfig>>,
    /// Check templates only run on demand through `/probe`; the only
    /// things `/probe` runs.
    pub modules: Vec<Arc<CheckConfig>>,
    /// Patterns a `/probe` target must match (any of them); empty allows all.
    pub probe_allowed_targets: Vec<regex::Regex>,
}

/// One check, validated and built.
#[derive(Clone)]
pub struct CheckConfig {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// The defaults' labels overridden by the check's, sorted by name.
    pub labels: Vec<(String, String)>,
    pub spec: CheckSpec,
    pub check: Arc<dyn Check>,
    /// The kind's fields as written (after interpolation), from which
    /// `/probe` derives a check for another target.
    pub fields: serde_json::Map<String, Value>,
    /// A module's own `allowed_targets`: the hosts a probe of it may reach.
    /// Required when the module carries credentials; `None` for checks.
    pub allowed_targets: Option<AllowedTargets>,
    /// The content of the files the check reads, taken before it was built.
    pub files: files::FileFingerprint,
}

impl CheckConfig {
    /// This check with its target (`url`, `address`, ...) replaced by
    /// `target`, validated and built, for `/probe`.
    pub fn with_target(&self, target: &str) -> Result<CheckConfig, TargetError> {
        let kind = self.kind();
        let field = CheckSpec::probe_target_field(kind).ok_or_else(|| {
            TargetError::Invalid(format!(
                "checks of kind {kind} cannot be probed with a target"
            ))
        })?;
        let mut fields = self.fields.clone();
        let value = match fields.get(field) {
            // List-valued targets (Kafka brokers) take the one target.
            Some(Value::Array(_)) => Value::Array(vec![Value::String(target.into())]),
            _ => Value::String(target.into()),
        };
        fields.insert(field.to_string(), value);
        let mut spec = match CheckSpec::deserialize_kind(kind, Value::Object(fields.clone())) {
            Some(Ok(spec)) => spec,
            Some(Err(e)) => {
                return Err(TargetError::Invalid(format!(
                    "invalid target {target:?}: {e}"
                )))
            }
            None => return Err(TargetError::Invalid(format!("unknown kind {kind}"))),
        };
        if let Some((f, message)) = spec.validate().into_iter().next() {
            return Err(TargetError::Invalid(format!(
                "invalid target {target:?}: {f}: {message}"
            )));
        }
        if let Some(allowed) = &self.allowed_targets {
            let endpoints = spec.endpoints();
            if endpoints.is_empty() {
                return Err(TargetError::NotAllowed(format!(
                    "target {target:?} names no host and port that allowed_targets could allow"
                )));
            }
            if let Some(refused) = allowed.first_refused(&endpoints) {
                return Err(TargetError::NotAllowed(format!(
                    "target {target:?} leads to {refused}, which module {:?} does not list in its allowed_targets",
                    self.name
                )));
            }
            spec.confine(allowed);
        }
        let check = spec
            .build()
            .map_err(|e| TargetError::Invalid(format!("invalid target {target:?}: {e}")))?;
        Ok(CheckConfig {
            spec,
            check: Arc::from(check),
            fields,
            ..self.clone()
        })
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.spec.kind()
    }

    /// Whether `other` defines the same check (same name, schedule, labels
    /// and kind settings) and the files it reads hold the same content. A
    /// reload keeps such a check running untouched.
    pub fn same_definition(&self, other: &CheckConfig) -> bool {
        self.name == other.name
            && self.interval == other.interval
            && self.timeout == other.timeout
            && self.labels == other.labels
            && self.spec == other.spec
            && self.files == other.files
    }
}

/// Why `/probe` cannot run a module against a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// The target does not make a valid check (HTTP 400).
    Invalid(String),
    /// The target leads to a host the module may not reach (HTTP 403).
    NotAllowed(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Invalid(m) | TargetError::NotAllowed(m) => f.write_str(m),
        }
    }
}

impl fmt::Debug for CheckConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckConfig")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("labels", &self.labels)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Load and validate the config file at `path`, interpolating from the
/// process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, &|name| std::env::var(name).ok())
}

/// [`load`] with an explicit environment, for tests.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&file, &text, env),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file,
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read config file: {e}"),
        }])),
    }
}

/// Parse and validate config `text`; `file` names it in errors.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Errors {
        file,
        list: Vec::new(),
    };
    let interpolated = match interpolate::interpolate(text, env) {
        Ok(i) => i,
        Err(problems) => {
            for p in problems {
                errors.at(
                    Pos {
                        line: p.line,
                        column: p.column,
                    },
                    "",
                    p.message,
                );
            }
            return Err(errors.finish(&[]));
        }
    };
    let subs = &interpolated.substitutions;
    let doc = match Document::parse(&interpolated.text) {
        Ok(doc) => doc,
        Err((pos, message)) => {
            errors.at(pos, "", message);
            return Err(errors.finish(subs));
        }
    };
    let config = build(&doc, &mut errors);
    match config {
        Some(c) if errors.list.is_empty() => Ok(c),
        _ => Err(errors.finish(subs)),
    }
}

/// Parse a whole YAML file into `T` (unknown fields rejected by `T`), with
/// the same error format as the main config: every error with file, line,
/// column and field path. No interpolation. Used for auxiliary files such as
/// the web config.
pub fn parse_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigErrors> {
    let file = path.display().to_string();
    let mut errors = Errors {
        file: &file,
        list: Vec::new(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.at(Pos::default(), "", format!("cannot read file: {e}"));
            return Err(errors.finish(&[]));
        }
    };
    let doc = match Document::parse(&text) {
        Ok(doc) => doc,
        Err((pos, message)) => {
            errors.at(pos, "", message);
            return Err(errors.finish(&[]));
        }
    };
    // An empty file is an empty mapping.
    let value = match &doc.value {
        Value::Null => Value::Object(serde_json::Map::new()),
        v => v.clone(),
    };
    match serde_path_to_error::deserialize(value) {
        Ok(v) => Ok(v),
        Err(e) => {
            errors.serde(&doc, "", e);
            Err(errors.finish(&[]))
        }
    }
}

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

fn build(doc: &Document, errors: &mut Errors) -> Option<Config> {
    if !doc.value.is_object() {
        errors.at(
            doc.position(""),
            "",
            "expected a mapping with `checks:` (and optionally `defaults:`) at the top level",
        );
        return None;
    }
    let top: RawTop = match serde_path_to_error::deserialize(&doc.value) {
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

    let mut allowed_targets = Vec::new();
    for (i, pattern) in top.probe.allowed_targets.iter().enumerate() {
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

    // Checks and modules share one namespace: /probe?module= names either.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut sections = [
        ("checks", top.checks, Vec::new()),
        ("modules", top.modules, Vec::new()),
    ];
    for (section, values, built) in sections.iter_mut() {
        for (i, value) in std::mem::take(values).into_iter().enumerate() {
            let path = format!("{section}[{i}]");
            let Some(check) = build_check(doc, errors, &path, value, &top.defaults) else {
                continue;
            };
            let name_path = format!("{path}.name");
            if let Some(first) = seen.get(&check.name) {
                errors.at(
                    doc.position(&name_path),
                    &name_path,
                    format!(
                        "duplicate check name {:?} (first used at line {})",
                        check.name, first
                    ),
                );
            } else {
                seen.insert(check.name.clone(), doc.position(&name_path).line);
                built.push(Arc::new(check));
            }
        }
    }
    let [(_, _, checks), (_, _, modules)] = sections;
    Some(Config {
        max_concurrent_runs: top.max_concurrent_runs,
        checks,
        modules,
        probe_allowed_targets: allowed_targets,
    })
}

fn build_check(
    doc: &Document,
    errors: &mut Errors,
    path: &str,
    value: Value,
    defaults: &RawDefaults,
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

    let mut common = serde_json::Map::new();
    for key in COMMON_FIELDS {
        if let Some(v) = fields.remove(*key) {
            common.insert(key.to_string(), v);
        }
    }
    let common: Option<RawCommon> = match serde_path_to_error::deserialize(Value::Object(common)) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.serde(doc, path, e);
            None
        }
    };

    let allowed_targets = take_allowed_targets(doc, errors, path, &mut fields);
    let kind_path = format!("{path}.kind");
    let kind_fields = {
        let mut f = fields.clone();
        f.remove("kind");
        f
    };
    let spec = match fields.remove("kind") {
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
    };

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
    let check = match spec.build() {
        Ok(c) => c,
        Err(e) => {
            let field = yaml::join(path, &e.field);
            errors.at(doc.position(&field), &field, e.message);
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
        spec,
        check: Arc::from(check),
        fields: kind_fields,
        allowed_targets,
        files,
    })
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

/// The one-line gist of a regex error (its Display spans several lines).
pub fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .last()
        .map(|l| l.trim_start_matches("error: ").to_string())
        .unwrap_or(text)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: valid as a Prometheus label name.
pub fn is_label_safe(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
