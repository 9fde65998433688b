//! The files a check reads, and a fingerprint of their content, so that a
//! reload rebuilds a check whose secret, certificate or kubeconfig file was
//! rewritten even though its definition in the config did not change.
//!
//! The files are found in the kind's fields as written: every string under a
//! key ending in `_file` (`password_file`, `bearer_token_file`,
//! `tls.ca_file`, `sasl.password_file`, ...) and the `kubeconfig` path, at
//! any depth. Each is read and summarised by its SHA-256 digest; the digest
//! is compared, never shown: `Debug` lists the paths only.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256, SHA256_OUTPUT_LEN};
use serde_json::Value;

/// Keys naming a file that do not end in `_file`.
const FILE_KEYS: &[&str] = &["kubeconfig"];

/// The content of every file a check reads, as it was when looked at.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FileFingerprint {
    /// Each path, in the order the fields list it, with the digest of its
    /// content, or `None` when it could not be read.
    files: Vec<(PathBuf, Option<[u8; SHA256_OUTPUT_LEN]>)>,
}

impl FileFingerprint {
    /// Read every file the kind's `fields` name. Call it before the check
    /// is built: a file rewritten between the two is then seen as changed
    /// at the next reload, never missed.
    pub fn of(fields: &serde_json::Map<String, Value>) -> Self {
        let mut paths = Vec::new();
        collect(fields, &mut paths);
        Self {
            files: paths
                .into_iter()
                .map(|path| {
                    let digest = digest(&path);
                    (path, digest)
                })
                .collect(),
        }
    }

    /// The paths whose content differs between `self` and `other` (or that
    /// only one of them reads).
    pub fn changed<'a>(&'a self, other: &'a FileFingerprint) -> Vec<&'a Path> {
        let mut changed: Vec<&Path> = Vec::new();
        for (path, digest) in &self.files {
            if !other.files.iter().any(|(p, d)| p == path && d == digest) {
                changed.push(path);
            }
        }
        for (path, _) in &other.files {
            if !self.files.iter().any(|(p, _)| p == path) && !changed.contains(&path.as_path()) {
                changed.push(path);
            }
        }
        changed
    }
}

impl fmt::Debug for FileFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileFingerprint")
            .field(
                "files",
                &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Append the paths named in `fields` (recursively) to `out`, once each.
fn collect(fields: &serde_json::Map<String, Value>, out: &mut Vec<PathBuf>) {
    for (key, value) in fields {
        match value {
            Value::String(path) if is_file_key(key) => {
                let path = PathBuf::from(path);
                if !out.contains(&path) {
                    out.push(path);
                }
            }
            Value::Object(map) => collect(map, out),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(map) = item {
                        collect(map, out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn is_file_key(key: &str) -> bool {
    key.ends_with("_file") || FILE_KEYS.contains(&key)
}

/// SHA-256 of the file's content, read in chunks; `None` if it cannot be
/// read (the build reports why).
fn digest(path: &Path) -> Option<[u8; SHA256_OUTPUT_LEN]> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut context = Context::new(&SHA256);
    let mut buf = [0u8; 8192];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => context.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    let mut out = [0u8; SHA256_OUTPUT_LEN];
    out.copy_from_slice(context.finish().as_ref());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not a mapping: {other:?}"),
        }
    }

    #[test]
    fn finds_file_fields_at_any_depth_and_the_kubeconfig() {
        let f = fields(json!({
            "dsn": "postgres://h/db",
            "password_file": "/a",
            "tls": {"ca_file": "/b", "cert_file": "/c", "key_file": "/d", "server_name": "x"},
            "sasl": {"password_file": "/e"},
            "kubeconfig": "/f",
            "queries": [{"name": "q", "sql": "select 1", "x": {"key_file": "/g"}}],
            "user_file_name": "/no",
            "tls_config": {"ca_file": "/a"},
        }));
        let mut got = Vec::new();
        collect(&f, &mut got);
        got.sort();
        let want: Vec<PathBuf> = ["/a", "/b", "/c", "/d", "/e", "/f", "/g"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn content_changes_are_seen_and_debug_shows_paths_only() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "first-secret\n").unwrap();
        let f = fields(json!({ "password_file": pw }));
        let before = FileFingerprint::of(&f);
        assert_eq!(before, FileFingerprint::of(&f), "unchanged content");
        assert!(before.changed(&FileFingerprint::of(&f)).is_empty());

        std::fs::write(&pw, "second-secret\n").unwrap();
        let after = FileFingerprint::of(&f);
        assert_ne!(before, after);
        assert_eq!(before.changed(&after), vec![pw.as_path()]);
        assert_eq!(
            format!("{after:?}"),
            format!("FileFingerprint {{ files: [{pw:?}], .. }}")
        );
    }

    #[test]
    fn a_file_that_appears_or_disappears_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let f = fields(json!({ "tls": { "ca_file": ca } }));
        let missing = FileFingerprint::of(&f);
        assert_eq!(missing, FileFingerprint::of(&f), "missing both times");
        std::fs::write(&ca, "pem").unwrap();
        assert_ne!(missing, FileFingerprint::of(&f));
        assert_eq!(
            FileFingerprint::default(),
            FileFingerprint::of(&fields(json!({ "url": "http://x" })))
        );
    }

    /// What a reload compares: the same config text, loaded twice.
    #[test]
    fn same_definition_needs_the_same_file_content() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "old-token\n").unwrap();
        let text = format!(
            "checks:\n  - name: api\n    kind: http\n    url: http://127.0.0.1:1/\n    bearer_token_file: {}\n",
            token.display()
        );
        let load = || {
            let config = crate::config::parse("config.yaml", &text, &|_| None).unwrap();
            config.checks[0].clone()
        };
        let first = load();
        assert!(first.same_definition(&load()), "unchanged file");
        std::fs::write(&token, "new-token\n").unwrap();
        let second = load();
        assert!(!first.same_definition(&second), "rewritten file");
        assert!(second.same_definition(&load()));
    }
}
