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
// `check_down_expr!` is shared with the kinds whose check-down alert lives
// in their own file (jwt).
#[macro_use]
mod checks;
mod exporter;
mod jwt;
mod kafka;
mod kube_resources;
mod kubernetes;
mod postgres;
mod redis;
mod tls;

/// The guides' escalation levels (Adaptive Learning guide), carried as the
/// `priority` label of every alert. `severity` follows from it, so the two
/// can never disagree: P0 and P1 page (`critical`), P2 is a ticket
/// (`warning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
pub enum Priority {
    /// Escalate at once: complete outage, data loss, security breach,
    /// several services affected.
    P0,
    /// Within 30 minutes: one service down, performance severely degraded,
    /// authentication failures, database issues.
    P1,
    /// Within 2 hours, business hours: minor issues, slight degradation,
    /// non-critical features.
    P2,
    /// Not an escalation level: the Watchdog, which always fires so that a
    /// silent alerting pipeline is noticed. `priority="none"`, `severity="none"`.
    Heartbeat,
}

impl Priority {
    pub const LEVELS: [Priority; 3] = [Priority::P0, Priority::P1, Priority::P2];

    /// The `priority` label.
    pub fn label(self) -> &'static str {
        match self {
            Priority::P0 => "P0",
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::Heartbeat => "none",
        }
    }

    /// The `severity` label that goes with it.
    pub fn severity(self) -> &'static str {
        match self {
            Priority::P0 | Priority::P1 => "critical",
            Priority::P2 => "warning",
            Priority::Heartbeat => "none",
        }
    }
}

/// The specialist teams the guides name; an alert with a team carries a
/// `team` label and Alertmanager routes it to that team's receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Team {
    /// "database → DBA team".
    Dba,
    /// "security → security team".
    Security,
}

impl Team {
    pub const ALL: [Team; 2] = [Team::Dba, Team::Security];

    pub fn label(self) -> &'static str {
        match self {
            Team::Dba => "dba",
            Team::Security => "security",
        }
    }

    /// The team a config file names, if any.
    pub fn parse(s: &str) -> Option<Team> {
        Team::ALL.into_iter().find(|t| t.label() == s)
    }
}

/// What an alert is, for inhibition, the aggregate and `keep_firing_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A check of a dependency failing (the failure ratio over a window).
    /// It keeps firing while the exporter is unreachable, silences the
    /// `Symptom` alerts of its group for the same check, and counts towards
    /// the several-dependencies-down aggregate.
    CheckDown,
    /// A finer finding about a dependency (lag, memory, connections).
    Symptom,
    /// The exporter itself is gone: silences every other alert of the same
    /// scrape target.
    ExporterDown,
    /// Anything else about the exporter or the application.
    Other,
    /// Always firing: the Watchdog.
    Heartbeat,
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
    /// The alert name. Two entries may share it when they are the warning
    /// (P2) and critical (P1 or P0) variants of one alert; their config keys
    /// are then `NAME:warning` and `NAME:critical`.
    pub name: &'static str,
    pub group: Group,
    /// The guides' escalation level; `severity` follows from it.
    pub priority: Priority,
    /// The specialist team the guides send this to, if any.
    pub team: Option<Team>,
    pub class: Class,
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

/// Recording rules per group, rendered before the group's alerts.
pub static RECORDS: &[(Group, &[(&str, &str)])] = &[(Group::Application, application::RECORDS)];

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

/// The key of `alert` in the config's `alerts:` map: its name, or
/// `NAME:warning` / `NAME:critical` when two variants share the name.
pub fn config_key(alert: &Alert) -> String {
    if ALERTS
        .iter()
        .filter(|a| a.name == alert.name)
        .nth(1)
        .is_some()
    {
        format!("{}:{}", alert.name, alert.priority.severity())
    } else {
        alert.name.to_string()
    }
}
