//! The monitoring mixin: alert rules, their promtool tests, runbooks and
//! Grafana dashboards, all generated from one source.
//!
//! The alerts and dashboards are defined in [`alerts`] and [`dashboards`];
//! what a site tunes (selectors, thresholds, `for` windows, the runbook base
//! URL) lives in `alerts/config.yaml` and is read into [`MixinConfig`].
//! [`render`] turns both into the files checked into the repository
//! (`cargo run --example render-mixin` writes them; a test fails when they
//! are out of date), so that no rule is ever edited in two places.

pub mod alertmanager;
pub mod alerts;
pub mod dashboards;
mod docs;
mod render;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use alerts::{Alert, Priority, Team};
pub use render::{render, render_rules, RULE_FILES};

/// What a site tunes, as read from `alerts/config.yaml` (or the file given
/// to `runbook-exporter mixin --config`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixinConfig {
    /// Prefix of every `runbook_url`; the alert name and `.md` are appended.
    pub runbook_base_url: String,
    /// Label matchers added to every selector of the exporter's metrics;
    /// empty (the default) selects by the `runbook_*` names alone, which
    /// works whatever job name a ServiceMonitor, PodMonitor or Probe gives.
    #[serde(default)]
    pub exporter_selector: String,
    /// Label matchers selecting the application's own metrics.
    pub app_selector: String,
    /// Label matchers selecting the application's containers.
    pub app_container_selector: String,
    /// The label of the application's metrics that holds the request path
    /// (the guides' `by (path)`).
    #[serde(default = "default_path_label")]
    pub app_path_label: String,
    /// How check-down alerts decide that a check is down.
    pub check_down: CheckDown,
    /// The Alertmanager example's receivers and timing.
    pub alertmanager: AlertmanagerConfig,
    /// Per alert (`NAME`, or `NAME:warning` / `NAME:critical` for the two
    /// variants of one alert): `for`, an optional threshold, and optional
    /// priority and team overrides.
    pub alerts: BTreeMap<String, AlertTuning>,
}

fn default_path_label() -> String {
    "path".to_string()
}

/// The check-down rule shared by every kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDown {
    /// The window over which the failure ratio is taken (`%W%`).
    pub window: String,
    /// The share of the window a check spent failing that makes it down
    /// (`%R%`), from 0 to 1.
    pub failure_ratio: f64,
    /// The runs a check must have made in the window, and the number of its
    /// own intervals without a success, before it can be down (`%N%`).
    pub min_runs: u32,
    /// How long a check failing at its last run seen stays down while its
    /// exporter cannot be scraped, and how long a target that served
    /// `runbook_*` series counts as an exporter (`%K%`).
    pub remember: String,
    /// `keep_firing_for` of the check-down alerts: a flapping check does not
    /// resolve and re-page within this.
    pub keep_firing_for: String,
}

/// The Alertmanager example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Every receiver is a webhook at this URL plus the receiver's name;
    /// replace them with your pager and ticket integrations.
    pub receiver_url: String,
    /// How long a new group waits for more alerts (P1, P2; P0 waits 0s).
    pub group_wait: String,
    /// How long before a changed group is notified again (new alerts,
    /// resolved ones).
    pub group_interval: String,
    /// Re-notification of an unresolved P1: the escalation interval.
    pub p1_repeat_interval: String,
    /// Business hours, when P2 tickets are sent.
    pub business_hours: BusinessHours,
}

/// A weekly time interval, in Alertmanager's terms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// Like `monday:friday`.
    pub weekdays: String,
    /// `HH:MM`.
    pub start: String,
    pub end: String,
    /// An IANA time zone, like `Europe/Berlin`.
    pub location: String,
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
    /// Overrides the alert's priority (`P0`, `P1`, `P2`).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Overrides the alert's team (`dba`, `security`, or `none`).
    #[serde(default)]
    pub team: Option<String>,
}

impl MixinConfig {
    /// Parse the YAML text of a mixin config and check that it tunes
    /// exactly the alerts that exist, each with the fields it needs.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: MixinConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let keys: Vec<String> = alerts::ALERTS.iter().map(alerts::config_key).collect();
        for (alert, key) in alerts::ALERTS.iter().zip(&keys) {
            match config.alerts.get(key) {
                None => problems.push(format!("alerts.{key}: missing")),
                Some(t) => {
                    if parse_minutes(&t.for_).is_none() {
                        problems.push(format!(
                            "alerts.{key}.for: `{}` is not a whole number of minutes or hours (like 5m)",
                            t.for_
                        ));
                    }
                    let wants = alert.expr.contains("%T%");
                    if wants != t.threshold.is_some() {
                        problems.push(format!(
                            "alerts.{key}.threshold: {}",
                            if wants {
                                "required"
                            } else {
                                "this alert has no threshold"
                            }
                        ));
                    }
                    if t.priority == Some(Priority::Heartbeat) {
                        problems.push(format!("alerts.{key}.priority: one of P0, P1, P2"));
                    }
                    if let Some(team) = &t.team {
                        if team != "none" && Team::parse(team).is_none() {
                            problems.push(format!(
                                "alerts.{key}.team: `{team}` is not one of dba, security, none"
                            ));
                        }
                    }
                }
            }
        }
        for name in config.alerts.keys() {
            if !keys.contains(name) {
                problems.push(format!("alerts.{name}: no such alert"));
            }
        }
        for (field, value) in [
            ("check_down.window", &config.check_down.window),
            ("check_down.remember", &config.check_down.remember),
            (
                "check_down.keep_firing_for",
                &config.check_down.keep_firing_for,
            ),
        ] {
            if parse_minutes(value).is_none() {
                problems.push(format!(
                    "{field}: `{value}` is not a whole number of minutes or hours (like 5m)"
                ));
            }
        }
        if !(0.0..=1.0).contains(&config.check_down.failure_ratio) {
            problems.push("check_down.failure_ratio: from 0 to 1".to_string());
        }
        if config.check_down.min_runs == 0 {
            problems.push("check_down.min_runs: at least 1".to_string());
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Read and parse the mixin config at `path`; the error names the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The tuning of `alert`. Only valid after [`MixinConfig::parse`].
    pub fn tuning(&self, alert: &Alert) -> &AlertTuning {
        &self.alerts[&alerts::config_key(alert)]
    }

    /// The priority of `alert` under this config.
    pub fn priority(&self, alert: &Alert) -> Priority {
        self.tuning(alert).priority.unwrap_or(alert.priority)
    }

    /// The team of `alert` under this config.
    pub fn team(&self, alert: &Alert) -> Option<Team> {
        match self.tuning(alert).team.as_deref() {
            Some("none") => None,
            Some(t) => Team::parse(t),
            None => alert.team,
        }
    }
}

/// Write every rendered file under `dir`, keeping the repository's
/// layout; files whose contents are already right are left alone. Returns
/// the paths written.
pub fn write_files(config: &MixinConfig, dir: &Path) -> Result<Vec<String>, String> {
    let mut written = Vec::new();
    for (path, contents) in render(config) {
        let full = dir.join(&path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        if std::fs::read_to_string(&full).ok().as_deref() != Some(contents.as_str()) {
            std::fs::write(&full, contents).map_err(|e| format!("{}: {e}", full.display()))?;
            written.push(path);
        }
    }
    Ok(written)
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
