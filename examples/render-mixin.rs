//! Writes the generated monitoring files (alert rules, PrometheusRule,
//! promtool tests, runbooks, alert table, dashboards) from
//! alerts/config.yaml and src/mixin/. Run from anywhere:
//!
//!     cargo run --example render-mixin

use std::path::Path;
use std::process::ExitCode;

use runbook_exporter::mixin::{render, MixinConfig};

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config_path = root.join("alerts/config.yaml");
    let text = match std::fs::read_to_string(&config_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", config_path.display());
            return ExitCode::FAILURE;
        }
    };
    let config = match MixinConfig::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}:\n{e}", config_path.display());
            return ExitCode::FAILURE;
        }
    };
    for (path, contents) in render(&config) {
        let full = root.join(&path);
        if let Some(dir) = full.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("{}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
        if std::fs::read_to_string(&full).ok().as_deref() != Some(contents.as_str()) {
            if let Err(e) = std::fs::write(&full, contents) {
                eprintln!("{}: {e}", full.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {path}");
        }
    }
    ExitCode::SUCCESS
}
