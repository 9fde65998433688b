//! The config: text → `${ENV}` interpolation → YAML with positions
//! (`load.rs`) → raw structs (unknown fields rejected) → validated
//! [`Config`] with every check built and ready to run (`build.rs`). This
//! file holds what the rest of the exporter uses: [`Config`],
//! [`CheckConfig`] and how `/probe` points a module at a target.
//!
//! Every problem found is reported, each with the file, line, column and
//! field path (`config.yaml:12:14: checks[1].timeout: ...`), and no message
//! echoes a value that came from the environment.

mod build;
mod errors;
mod load;
mod modules;

pub mod files;
pub mod interpolate;
pub mod yaml;

// The value types of the config that kinds deserialize live with them.
pub use crate::checks::shared::{duration, secret};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use crate::checks::shared::regex_problem;
use crate::checks::shared::targets::AllowedTargets;
use crate::checks::{Check, CheckSpec};
use crate::shard::Shard;
pub use build::is_label_safe;
pub use errors::{ConfigError, ConfigErrors};
pub use load::{load, load_runnable, load_with_env, parse, parse_file, parse_with};

/// Default for `defaults.interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default for `defaults.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for `max_concurrent_runs`.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 64;

/// A validated configuration, every check built.
#[derive(Debug)]
pub struct Config {
    /// Cap on check runs in flight at once, across all checks.
    pub max_concurrent_runs: usize,
    /// Checks run on their schedules (by this shard, when loaded with
    /// [`Keep::Runnable`]).
    pub checks: Vec<Arc<CheckConfig>>,
    /// [`stable_hash`](crate::shard::stable_hash) of the name of each
    /// scheduled check that another shard runs: validated and built here
    /// too, then dropped.
    pub other_shards_checks: Vec<u64>,
    /// Check templates only run on demand through `/probe`; the only
    /// things `/probe` runs.
    pub modules: Vec<Arc<CheckConfig>>,
    /// Patterns a `/probe` target must match (any of them); empty allows all.
    pub probe_allowed_targets: Vec<regex::Regex>,
}

impl Config {
    /// How many scheduled checks the file defines, this shard's and the
    /// others'.
    pub fn defined_checks(&self) -> usize {
        self.checks.len() + self.other_shards_checks.len()
    }
}

/// What each loaded check keeps of its definition beside its built check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Its deserialized [`CheckSpec`] too, for readers of the kind's
    /// settings: `check`, `diagnose`, tests.
    Specs,
    /// Only what running, reloading and `/probe` need, and only the
    /// scheduled checks this shard owns: the server's load, where each of
    /// thousands of checks would otherwise hold its settings twice, as
    /// written and as built, and each replica of a sharded fleet every
    /// replica's checks. Every check is still validated and built, so that
    /// every shard refuses the same config.
    Runnable(Shard),
}

impl Keep {
    /// Whether a scheduled check called `name` is kept.
    fn keeps(&self, name: &str) -> bool {
        match self {
            Keep::Specs => true,
            Keep::Runnable(shard) => shard.owns(name),
        }
    }
}

/// One check, validated and built.
#[derive(Clone)]
pub struct CheckConfig {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// The defaults' labels overridden by the check's, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The kind's name, as written in `kind:`.
    pub kind: &'static str,
    /// The kind's settings as deserialized; `None` when loaded with
    /// [`Keep::Runnable`].
    pub spec: Option<CheckSpec>,
    /// Digest of the kind and its fields as written (after interpolation):
    /// what a reload compares, with or without the spec.
    pub settings: SettingsDigest,
    pub check: Arc<dyn Check>,
    /// What only a module has; `None` for a scheduled check.
    pub module: Option<Box<ModuleParts>>,
    /// The content of the files the check reads, taken before it was built.
    pub files: files::FileFingerprint,
}

/// The first 128 bits of the SHA-256 of a check's kind and fields. The
/// fields may hold secrets, so it is compared, never shown.
pub type SettingsDigest = [u8; 16];

/// What a module keeps so that `/probe` can derive checks from it.
#[derive(Debug, Clone)]
pub struct ModuleParts {
    /// The module's fields as written (after interpolation), from which
    /// `/probe` derives a check for another target.
    pub fields: serde_json::Map<String, Value>,
    /// The module's own `allowed_targets`: the hosts a probe of it may
    /// reach. Required when the module carries credentials.
    pub allowed_targets: Option<AllowedTargets>,
}

impl CheckConfig {
    /// The runnable check of this module with its target (`url`,
    /// `address`, ...) replaced by `target`, validated and built, for
    /// `/probe`. The name, schedule and labels are the module's own; only
    /// the kind's fields are derived again, from one copy of the fields as
    /// written.
    pub fn with_target(&self, target: &str) -> Result<Arc<dyn Check>, TargetError> {
        let kind = self.kind();
        let field = CheckSpec::probe_target_field(kind).ok_or_else(|| {
            TargetError::Invalid(format!(
                "checks of kind {kind} cannot be probed with a target"
            ))
        })?;
        let Some(module) = &self.module else {
            return Err(TargetError::Invalid(format!(
                "{:?} is a scheduled check, not a module",
                self.name
            )));
        };
        let mut fields = module.fields.clone();
        let value = match fields.get(field) {
            // List-valued targets (Kafka brokers) take the one target.
            Some(Value::Array(_)) => Value::Array(vec![Value::String(target.into())]),
            _ => Value::String(target.into()),
        };
        fields.insert(field.to_string(), value);
        let mut spec = match CheckSpec::deserialize_kind(kind, Value::Object(fields)) {
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
        if let Some(allowed) = &module.allowed_targets {
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
        let check = spec.build().map_err(|problems| {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            TargetError::Invalid(format!("invalid target {target:?}: {}", text.join("; ")))
        })?;
        Ok(Arc::from(check))
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// A module's own `allowed_targets`, if it has them.
    pub fn allowed_targets(&self) -> Option<&AllowedTargets> {
        self.module.as_ref()?.allowed_targets.as_ref()
    }

    /// Whether `other` defines the same check (same name, schedule, labels,
    /// kind and kind fields as written) and the files it reads hold the
    /// same content. A reload keeps such a check running untouched.
    pub fn same_definition(&self, other: &CheckConfig) -> bool {
        self.name == other.name
            && self.interval == other.interval
            && self.timeout == other.timeout
            && self.labels == other.labels
            && self.kind == other.kind
            && self.settings == other.settings
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
            .field("kind", &self.kind)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}
