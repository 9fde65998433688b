//! Secrets in the config: a value that never prints, and the `*_file` rule.
//!
//! A secret may be written inline (usually as `${ENV}`) or read from a file
//! named by the sibling `<field>_file` key; setting both is an error. Files
//! are read when the check is built. `SIGHUP` or `POST /-/reload` re-reads
//! every file a check uses and rebuilds the checks whose files changed
//! (see [`super::files`]), so a reload picks up rotated secrets.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::checks::BuildError;

/// A string that is redacted in every `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is sent to the target.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Resolve a secret given inline (`value`) or by file (`file`), naming
/// `field` in errors. Trailing newlines of a file are dropped, as files
/// written by `echo` or mounted from Kubernetes Secrets often end in one.
pub fn resolve(
    field: &str,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, BuildError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(BuildError::new(
            field,
            format!("set either {field} or {field}_file, not both"),
        )),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(s) => Ok(Some(Secret(s.trim_end_matches(['\n', '\r']).to_string()))),
            Err(e) => Err(BuildError::new(
                format!("{field}_file"),
                format!("cannot read {}: {e}", path.display()),
            )),
        },
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
    }

    #[test]
    fn both_inline_and_file_is_an_error() {
        let err = resolve(
            "password",
            &Some(Secret::new("x")),
            &Some(PathBuf::from("/nonexistent")),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "set either password or password_file, not both"
        );
    }

    #[test]
    fn file_is_read_and_trailing_newline_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let got = resolve("password", &None, &Some(path)).unwrap().unwrap();
        assert_eq!(got.expose(), "s3cret");
    }

    #[test]
    fn missing_file_names_the_field_and_path() {
        let err = resolve("password", &None, &Some(PathBuf::from("/nonexistent/pw"))).unwrap_err();
        assert_eq!(err.field, "password_file");
        assert!(err.message.starts_with("cannot read /nonexistent/pw: "));
    }
}
