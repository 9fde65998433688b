//! Loading a config: read the file, interpolate `${ENV}`, parse the YAML
//! with positions, then hand the document to [`build`](super::build). Also
//! the same reading and error format for auxiliary YAML files.

use std::path::Path;

use serde_json::Value;

use super::build::build;
use super::errors::Errors;
use super::yaml::{Document, Pos};
use super::{interpolate, Config, ConfigError, ConfigErrors, Keep};
use crate::shard::Shard;

/// Load and validate the config file at `path`, interpolating from the
/// process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, &|name| std::env::var(name).ok())
}

/// [`load`] for the server: only the scheduled checks `shard` owns, each
/// keeping what runs, reloads and probes it, not its deserialized spec
/// ([`Keep::Runnable`]).
pub fn load_runnable(path: &Path, shard: Shard) -> Result<Config, ConfigErrors> {
    read_and_parse(
        path,
        &|name| std::env::var(name).ok(),
        Keep::Runnable(shard),
    )
}

/// [`load`] with an explicit environment, for tests.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    read_and_parse(path, env, Keep::Specs)
}

fn read_and_parse(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    keep: Keep,
) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_with(&file, &text, env, keep),
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
    parse_with(file, text, env, Keep::Specs)
}

/// [`parse`], keeping what `keep` says of each check.
pub fn parse_with(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    keep: Keep,
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
    let mut doc = match Document::parse(&interpolated.text) {
        Ok(doc) => doc,
        Err((pos, message)) => {
            errors.at(pos, "", message);
            return Err(errors.finish(subs));
        }
    };
    let config = build(&mut doc, &mut errors, keep);
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
