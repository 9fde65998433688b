//! Config problems and how they are reported: every problem with the file,
//! line, column and field path, collected in file order, scrubbed of values
//! that came from the environment.

use std::fmt;

use super::interpolate;
use super::yaml::{self, Document, Pos};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Path of the field, like `checks[1].timeout`; empty for file-level
    /// problems.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The problems found so far in one file.
pub(super) struct Errors<'a> {
    pub(super) file: &'a str,
    pub(super) list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn at(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Record a deserialization error at its path (relative to `prefix`).
    pub(super) fn serde(
        &mut self,
        doc: &Document,
        prefix: &str,
        err: serde_path_to_error::Error<serde_json::Error>,
    ) {
        let path = yaml::path_string(prefix, err.path());
        let message = err.inner().to_string();
        // An unknown field is reported at its key, not at its parent.
        if let Some(key) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            let (field, parent) = match path.strip_suffix(key) {
                Some(parent) => (path.clone(), parent.trim_end_matches('.').to_string()),
                None => (yaml::join(&path, key), path.clone()),
            };
            // At the top of a check entry, the common fields are valid too.
            let message = if parent == prefix && prefix.starts_with("checks[") {
                message.replacen(
                    "expected one of ",
                    "expected one of `name`, `kind`, `interval`, `timeout`, `labels`, ",
                    1,
                )
            } else {
                message
            };
            let pos = doc
                .key_position(&field)
                .unwrap_or_else(|| doc.position(&parent));
            return self.at(pos, &field, message);
        }
        self.at(doc.position(&path), &path, message);
    }

    pub(super) fn finish(mut self, subs: &[(String, String)]) -> ConfigErrors {
        for e in &mut self.list {
            e.message = interpolate::scrub(&e.message, subs);
        }
        self.list.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(self.list)
    }
}
