//! Writes the generated monitoring files (alert rules, PrometheusRule,
//! promtool tests, Alertmanager example, runbooks, alert table, dashboards)
//! from alerts/config.yaml and src/mixin/ into the repository: the same as
//! `runbook-exporter mixin --config alerts/config.yaml --out .` from the
//! repository root. Run from anywhere:
//!
//!     cargo run --example render-mixin

use std::path::Path;
use std::process::ExitCode;

use runbook_exporter::mixin::{write_files, MixinConfig};

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = match MixinConfig::load(&root.join("alerts/config.yaml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match write_files(&config, root) {
        Ok(written) => {
            for path in written {
                println!("wrote {path}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
