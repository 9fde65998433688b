//! The monitoring mixin: alert rules, their promtool tests, runbooks and
//! Grafana dashboards, all generated from one source.
//!
//! The alerts and dashboards are defined in [`alerts`] and [`dashboards`];
//! what a site tunes (selectors, thresholds, `for` windows, the runbook base
//! URL) lives in `alerts/config.yaml` and is read into [`MixinConfig`].
//! [`render`] turns both into the files checked into the repository
//! (`cargo run --example render-mixin` writes them; a test fails when they
//! are out of date), so that no rule is ever edited in two places.

pub mod alerts;
pub mod dashboards;
mod render;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use render::{render, render_rules, RULE_FILES};

/// What a site tunes, as read from `alerts/config.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixinConfig {
    /// Prefix of every `runbook_url`; the alert name and `.md` are appended.
    pub runbook_base_url: String,
    /// Label matchers added to every selector of the exporter's metrics.
    pub exporter_selector: String,
    /// Label matchers selecting the application's own metrics.
    pub app_selector: String,
    /// Label matchers selecting the application's containers.
    pub app_container_selector: String,
    /// Per alert: `for` and an optional threshold.
    pub alerts: BTreeMap<String, AlertTuning>,
}

/// How one alert is tuned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTuning {
    /// How long the condition must hold, in Prometheus duration syntax.
    #[serde(rename = "for")]
    pub for_: String,
    /// The number the expression compares against, if any.
    #[serde(default)]
    pub threshold: Option<f64>,
}

impl MixinConfig {
    /// Parse the YAML text of `alerts/config.yaml` and check that it tunes
    /// exactly the alerts that exist, each with the fields it needs.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: MixinConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        for alert in alerts::ALERTS {
            match config.alerts.get(alert.name) {
                None => problems.push(format!("alerts.{}: missing", alert.name)),
                Some(t) => {
                    if parse_minutes(&t.for_).is_none() {
                        problems.push(format!(
                            "alerts.{}.for: `{}` is not a whole number of minutes or hours (like 5m)",
                            alert.name, t.for_
                        ));
                    }
                    let wants = alert.expr.contains("%T%");
                    if wants != t.threshold.is_some() {
                        problems.push(format!(
                            "alerts.{}.threshold: {}",
                            alert.name,
                            if wants {
                                "required"
                            } else {
                                "this alert has no threshold"
                            }
                        ));
                    }
                }
            }
        }
        for name in config.alerts.keys() {
            if !alerts::ALERTS.iter().any(|a| a.name == name) {
                problems.push(format!("alerts.{name}: no such alert"));
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The tuning of `alert`. Only valid after [`MixinConfig::parse`].
    pub fn tuning(&self, alert: &str) -> &AlertTuning {
        &self.alerts[alert]
    }
}

/// `5m` → 5, `1h` → 60, `0m`/`0s` → 0; anything else → None. The generated
/// promtool tests step in whole minutes, so `for` windows are whole minutes.
pub fn parse_minutes(s: &str) -> Option<u32> {
    if s == "0s" {
        return Some(0);
    }
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: u32 = n.parse().ok()?;
    match unit {
        "m" => Some(n),
        "h" => Some(n * 60),
        _ => None,
    }
}

/// Format a threshold the way PromQL and humans read it: integers without
/// a fraction, other values as Rust prints them (shortest round trip).
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}
