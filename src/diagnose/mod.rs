//! `runbook-exporter diagnose`: the on-call engineer's first minute. Runs
//! the selected checks once, all at the same time, and for every failing or
//! degraded one reports the reason and message, the evidence the kind's
//! samples of that very run carry, the runbook of the alert that covers it,
//! and the next commands filled in with the check's own target. What is
//! known per kind lives in [`kinds`]; everything shown is scrubbed of the
//! check's secrets as `check` does.

pub mod kinds;

use std::sync::Arc;

use serde::Serialize;

use crate::checks::{redact, Reason};
use crate::config::CheckConfig;
use crate::metrics::RunRecord;
use crate::mixin::alerts::{Class, ALERTS};

/// At most this many samples of each evidence metric are shown.
pub const EVIDENCE_TOP: usize = 5;

/// What `diagnose` reports about one check.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub name: String,
    pub kind: &'static str,
    /// `ok`, `degraded` or `fail`.
    pub status: &'static str,
    pub duration_seconds: f64,
    pub reason: Option<&'static str>,
    pub message: Option<String>,
    /// For a degraded run: which shipped alert's threshold a sample crosses.
    pub degraded_by: Vec<String>,
    pub evidence: Vec<String>,
    /// `docs/runbooks/<Alert>.md`.
    pub runbook: Option<String>,
    pub commands: Vec<String>,
}

/// Run every check of `selected` once, concurrently (each under its own
/// timeout), and keep the records in order.
pub async fn run_all(selected: Vec<Arc<CheckConfig>>) -> Vec<(Arc<CheckConfig>, RunRecord)> {
    let runs = selected.into_iter().map(|c| async move {
        let record = crate::scheduler::run_once(c.check.clone(), c.timeout).await;
        (c, record)
    });
    futures::future::join_all(runs).await
}

/// The alert that covers a failing check of `kind`: its check-down alert.
fn check_down_alert(kind: &str) -> Option<&'static str> {
    let needle = format!("kind=\"{kind}\"");
    ALERTS
        .iter()
        .find(|a| a.class == Class::CheckDown && a.expr.contains(&needle))
        .map(|a| a.name)
}

fn runbook_path(alert: &str) -> Option<String> {
    ALERTS
        .iter()
        .any(|a| a.name == alert)
        .then(|| format!("docs/runbooks/{alert}.md"))
}

/// Diagnose one run.
pub fn diagnose(config: &CheckConfig, record: &RunRecord) -> Diagnosis {
    let kind = config.kind();
    let table = kinds::of(kind);
    let secrets = config.check.secrets();
    let scrub = |s: &str| redact(s, &secrets);
    let samples = record.samples();
    let failure = record.failure();
    let degraded: Vec<(&'static str, String)> = match (failure, table) {
        (None, Some(t)) => t.degraded_by(samples),
        _ => Vec::new(),
    };
    let status = match (failure, degraded.is_empty()) {
        (Some(_), _) => "fail",
        (None, false) => "degraded",
        (None, true) => "ok",
    };
    let mut d = Diagnosis {
        name: config.name.clone(),
        kind,
        status,
        duration_seconds: record.duration.as_secs_f64(),
        reason: failure.map(|f| f.reason.as_str()),
        message: failure.map(|f| scrub(&f.message)),
        degraded_by: degraded
            .iter()
            .map(|(a, why)| scrub(&format!("{a}: {why}")))
            .collect(),
        evidence: Vec::new(),
        runbook: None,
        commands: Vec::new(),
    };
    if status == "ok" {
        return d;
    }
    let alert = match degraded.first() {
        Some((alert, _)) => Some(*alert),
        None => check_down_alert(kind),
    };
    d.runbook = alert.and_then(runbook_path);
    if let Some(t) = table {
        d.evidence = t
            .evidence(samples, EVIDENCE_TOP)
            .iter()
            .map(|l| scrub(l))
            .collect();
        let mut facts = kinds::evidence_facts(t, samples);
        if let Some(spec) = &config.spec {
            facts.extend(kinds::target_facts(spec));
        }
        let reason: Option<Reason> = failure.map(|f| f.reason);
        d.commands = t
            .commands_for(reason)
            .iter()
            .map(|tpl| scrub(&kinds::fill(tpl, &facts)))
            .collect();
    }
    d
}

/// The table output: one summary line per check, then a block for each
/// failing or degraded one.
pub fn render_table(diagnoses: &[Diagnosis]) -> String {
    let mut out = String::new();
    for d in diagnoses {
        out.push_str(&format!(
            "{:<8} {} ({}) {:.1}ms\n",
            d.status.to_uppercase(),
            d.name,
            d.kind,
            d.duration_seconds * 1000.0
        ));
    }
    for d in diagnoses.iter().filter(|d| d.status != "ok") {
        out.push_str(&format!("\n== {} ({}): {}\n", d.name, d.kind, d.status));
        if let Some(r) = d.reason {
            out.push_str(&format!("reason:  {r}\n"));
        }
        if let Some(m) = &d.message {
            out.push_str(&format!("message: {m}\n"));
        }
        for why in &d.degraded_by {
            out.push_str(&format!("degraded: {why}\n"));
        }
        if !d.evidence.is_empty() {
            out.push_str("evidence:\n");
            for e in &d.evidence {
                out.push_str(&format!("  {e}\n"));
            }
        }
        if let Some(r) = &d.runbook {
            out.push_str(&format!("runbook: {r}\n"));
        }
        if !d.commands.is_empty() {
            out.push_str("next:\n");
            for c in &d.commands {
                out.push_str(&format!("  $ {c}\n"));
            }
        }
    }
    out
}

/// The JSON output: an array with one object per check, same content.
pub fn render_json(diagnoses: &[Diagnosis]) -> String {
    let mut s = serde_json::to_string_pretty(diagnoses).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::kinds::{fill, TABLE};
    use super::*;

    #[test]
    fn every_evidence_and_threshold_metric_exists() {
        let names: Vec<String> = crate::checks::metric_descs()
            .iter()
            .map(|d| d.exposed_name())
            .collect();
        for k in TABLE {
            assert!(
                crate::checks::KINDS.contains(&k.kind),
                "{} is no kind",
                k.kind
            );
            for m in k
                .evidence
                .iter()
                .chain(k.degraded.iter().map(|d| &d.metric))
            {
                assert!(names.contains(&m.to_string()), "{}: no metric {m}", k.kind);
            }
        }
        for kind in crate::checks::KINDS {
            assert!(kinds::of(kind).is_some(), "{kind} has no diagnosis table");
        }
    }

    #[test]
    fn thresholds_are_the_shipped_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/config.yaml");
        let config = crate::mixin::MixinConfig::load(std::path::Path::new(path)).unwrap();
        for k in TABLE {
            for d in k.degraded {
                assert!(runbook_path(d.alert).is_some(), "no alert {}", d.alert);
                if let Some(t) = config.alerts.get(d.alert).and_then(|t| t.threshold) {
                    assert_eq!(t, d.threshold, "{} threshold", d.alert);
                }
            }
        }
    }

    #[test]
    fn every_kind_has_a_check_down_runbook() {
        for kind in crate::checks::KINDS {
            let alert = check_down_alert(kind).unwrap_or_else(|| panic!("{kind}"));
            assert!(runbook_path(alert).is_some());
        }
    }

    #[test]
    fn evidence_is_largest_first_without_zeros_and_degraded_uses_the_threshold() {
        use crate::checks::{MetricDesc, Sample};
        let lag = crate::checks::metric_descs()
            .into_iter()
            .find(|d| d.exposed_name() == "runbook_kafka_consumergroup_lag")
            .unwrap();
        let total: &'static MetricDesc = crate::checks::metric_descs()
            .into_iter()
            .find(|d| d.exposed_name() == "runbook_kafka_consumergroup_total_lag")
            .unwrap();
        let samples = vec![
            Sample::new(lag, 3.0).with_label("partition", "0"),
            Sample::new(lag, 0.0).with_label("partition", "1"),
            Sample::new(lag, 9.0).with_label("partition", "2"),
            Sample::new(total, 12.0),
        ];
        let kafka = kinds::of("kafka").unwrap();
        assert_eq!(
            kafka.evidence(&samples, 5)[..2],
            [
                "runbook_kafka_consumergroup_lag{partition=\"2\"} = 9".to_string(),
                "runbook_kafka_consumergroup_lag{partition=\"0\"} = 3".to_string(),
            ]
        );
        assert!(kafka.degraded_by(&samples).is_empty(), "12 is under 10000");
        let over = vec![Sample::new(total, 10001.0)];
        assert_eq!(kafka.degraded_by(&over)[0].0, "RunbookKafkaConsumerLagHigh");
    }

    #[test]
    fn unknown_placeholders_become_variables() {
        let facts = vec![("host", "db1".to_string())];
        assert_eq!(
            fill("psql -h {host} -d {database}", &facts),
            "psql -h db1 -d $DATABASE"
        );
    }
}
