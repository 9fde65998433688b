//! Every alert we ship: its expression, severity, annotations, runbook and
//! the series its promtool test feeds it.
//!
//! Placeholders in expressions: `%E%` is the exporter selector, `%A%` the
//! application selector, `%C%` the application container selector and
//! `%T%` the alert's threshold (all from `alerts/config.yaml`). In test
//! series and expected labels, `%L%` stands for the exporter's scrape
//! labels under the default selector (`job="runbook-exporter"`,
//! `instance="exporter:9847"`) and `%APP%` for the application's
//! (`job="api"`, `instance="api-0:8080"`).
//!
//! The table is split by group, one file each; this file holds the types
//! and puts the tables together.

mod application;
mod checks;
mod exporter;
mod jwt;
mod kafka;
mod kube_resources;
mod kubernetes;
mod postgres;
mod redis;
mod tls;

/// The guides' escalation levels and the severity label each maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// P0: outage, data loss, security. Pages.
    Critical,
    /// P1: degraded, will become an outage. A ticket for today.
    Warning,
    /// P2: worth knowing during business hours.
    Info,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    pub fn priority(self) -> &'static str {
        match self {
            Severity::Critical => "P0",
            Severity::Warning => "P1",
            Severity::Info => "P2",
        }
    }
}

/// Which rules file and group an alert goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Checks failing outright, and the exporter itself.
    Checks,
    Postgres,
    Redis,
    Kafka,
    Kubernetes,
    Tls,
    /// The application's own metrics (alerts/application.rules.yaml).
    Application,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::Checks,
        Group::Postgres,
        Group::Redis,
        Group::Kafka,
        Group::Kubernetes,
        Group::Tls,
        Group::Application,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::Checks => "runbook-exporter.checks",
            Group::Postgres => "runbook-exporter.postgres",
            Group::Redis => "runbook-exporter.redis",
            Group::Kafka => "runbook-exporter.kafka",
            Group::Kubernetes => "runbook-exporter.kubernetes",
            Group::Tls => "runbook-exporter.tls",
            Group::Application => "application",
        }
    }
}

/// The runbook page of an alert, in markdown fragments.
#[derive(Debug, Clone, Copy)]
pub struct Runbook {
    pub meaning: &'static str,
    pub impact: &'static str,
    pub diagnose: &'static str,
    pub fix: &'static str,
    pub escalate: &'static str,
}

/// The promtool test of an alert: series that make it fire (after `delay`
/// minutes, the condition holds; it must stay pending until `for` has
/// passed) and series that keep it quiet.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    /// `(series, values)` in promtool's expanding notation, one sample a
    /// minute.
    pub firing: &'static [(&'static str, &'static str)],
    /// Minutes from the start until the condition first holds.
    pub delay: u32,
    /// The labels of the firing alert, besides `severity`, as
    /// `name="value"` pairs separated by commas.
    pub labels: &'static str,
    /// What `{{ $value ... }}` renders to in the description at the firing
    /// evaluation.
    pub value: &'static str,
    /// Series under which the alert never fires.
    pub quiet: &'static [(&'static str, &'static str)],
}

/// One alert rule.
#[derive(Debug, Clone, Copy)]
pub struct Alert {
    pub name: &'static str,
    pub group: Group,
    pub severity: Severity,
    pub expr: &'static str,
    /// One line, static.
    pub summary: &'static str,
    /// Templated: `{{ $labels.x }}` and exactly one `{{ $value ... }}`.
    pub description: &'static str,
    /// A short human summary of the expression for the alert table.
    pub explain: &'static str,
    pub runbook: Runbook,
    pub test: Fixture,
}

/// The groups' tables, in the order of the rules files.
const TABLES: &[&[Alert]] = &[
    checks::ALERTS,
    postgres::ALERTS,
    redis::ALERTS,
    kafka::ALERTS,
    kubernetes::ALERTS,
    kube_resources::ALERTS,
    tls::ALERTS,
    jwt::ALERTS,
    exporter::ALERTS,
    application::ALERTS,
];

/// How many alerts there are in all.
const COUNT: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < TABLES.len() {
        n += TABLES[i].len();
        i += 1;
    }
    n
};

static ALL: [Alert; COUNT] = concat(TABLES);

/// Every alert, in the order of the rules files.
pub static ALERTS: &[Alert] = &ALL;

/// `tables` one after the other, at compile time.
const fn concat<const N: usize>(tables: &[&[Alert]]) -> [Alert; N] {
    let mut out = [tables[0][0]; N];
    let mut n = 0;
    let mut i = 0;
    while i < tables.len() {
        let mut j = 0;
        while j < tables[i].len() {
            out[n] = tables[i][j];
            n += 1;
            j += 1;
        }
        i += 1;
    }
    out
}
