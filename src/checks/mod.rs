//! The kernel of the check abstraction: [`Kind`] (what a kind of check
//! declares: its name, probe target, metrics, validation and build),
//! [`Check`] (one built check, run many times), [`RunContext`], the fixed
//! [`Reason`] set, [`Failure`], [`Sample`] and [`MetricDesc`].
//!
//! A kind is one file or folder here whose spec implements [`Kind`] and
//! [`shared::targets::ProbeSafety`], plus one line in [`registry`]. Nothing else in the crate
//! names a kind: the scheduler runs `dyn Check`, the metrics module encodes
//! [`Sample`]s, and the config loader deserializes [`CheckSpec`]. What
//! several kinds share lives in [`shared`], below them.

pub mod clickhouse;
pub mod dns;
pub mod http;
pub mod jwt;
pub mod kafka;
pub mod kubernetes;
pub mod postgres;
pub mod redis;
pub mod registry;
pub mod s3;
pub mod shared;
pub mod tcp;

pub use registry::{metric_descs, CheckSpec, KINDS};

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_client::registry::Unit;

/// Everything one run of a check can report when it succeeds.
pub type Measurements = Vec<Sample>;

/// The result of one run of a check: measurements, or a classified failure.
pub type RunResult = Result<Measurements, Failure>;

/// One check instance, built once from its config and reused for every run.
///
/// Implementations keep long-lived state (connections, resolvers, TLS
/// configs) between runs. They never apply their own overall timeout: the
/// scheduler enforces [`RunContext::timeout`] around [`Check::run`] and
/// reports [`Reason::Timeout`] when it fires, so a check only needs the value
/// to bound server-side work (for example a statement timeout).
pub trait Check: Send + Sync + 'static {
    /// Run the check once.
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunResult>;

    /// Secret strings this check knows (passwords, tokens). Every failure
    /// message is scrubbed of them before it is stored, logged or shown.
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }

    /// What the last run could not measure though it passed (an optional
    /// API that is not served, say), one line each. Shown with a passing
    /// result on the status page and by `check`; never a label.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A kind of check, implemented by its spec (the `kind:` entry's fields,
/// deserialized with unknown fields rejected). The registry calls
/// [`Kind::problems`] first and [`Kind::check`] only when it found none, so
/// a kind validates in one place and its constructor may rely on it.
pub trait Kind: Sized {
    /// The name written in `kind:` and in the `kind` label.
    const NAME: &'static str;
    /// The field `/probe?target=` replaces; `None` when the kind has no
    /// target and cannot be a `/probe` module.
    const PROBE_TARGET: Option<&'static str>;

    /// Every kind-specific metric this kind can emit.
    fn metrics() -> &'static [&'static MetricDesc];

    /// Every problem deserialization cannot see, as `(field, message)` with
    /// the field relative to the check entry.
    fn problems(&self) -> Vec<(String, String)>;

    /// The runnable check: read secret, CA and key files, compile regexes,
    /// set up clients. Errors here name their field too.
    fn check(&self) -> Result<Box<dyn Check>, BuildError>;
}

/// Declares a spec's [`Kind`] in one line, for the common case: its
/// problems are the spec's `validate()`, its check is `Check::new(spec)`,
/// and its metrics are the module's `METRICS`.
///
/// `kind!(TcpSpec => TcpCheck, "tcp", probe "address");` (or without
/// `probe ...` for a kind that cannot be probed).
macro_rules! kind {
    ($spec:ty => $check:ident, $name:literal, probe $target:literal) => {
        $crate::checks::kind!(@impl $spec, $check, $name, Some($target));
    };
    ($spec:ty => $check:ident, $name:literal) => {
        $crate::checks::kind!(@impl $spec, $check, $name, None);
    };
    (@impl $spec:ty, $check:ident, $name:literal, $target:expr) => {
        impl $crate::checks::Kind for $spec {
            const NAME: &'static str = $name;
            const PROBE_TARGET: Option<&'static str> = $target;

            fn metrics() -> &'static [&'static $crate::checks::MetricDesc] {
                &METRICS
            }

            fn problems(&self) -> Vec<(String, String)> {
                self.validate()
            }

            fn check(&self) -> Result<Box<dyn $crate::checks::Check>, $crate::checks::BuildError> {
                Ok(Box::new($check::new(self)?))
            }
        }
    };
}
pub(crate) use kind;

/// Per-run information handed to a check by the scheduler.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The hard limit the scheduler enforces on this run.
    pub timeout: Duration,
}

/// A configuration problem found while building a check: the field (relative
/// to the check entry) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub field: String,
    pub message: String,
}

impl BuildError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for BuildError {}

/// Why a run failed: a small fixed set, used as the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The run did not finish within its timeout.
    Timeout,
    /// The target actively refused the connection.
    ConnectionRefused,
    /// Any other network failure: unreachable, reset, closed early.
    Network,
    /// Name resolution failed, or a DNS check got an error response.
    Dns,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// The target rejected our credentials.
    Auth,
    /// The target answered, but not what the check expects.
    UnexpectedResponse,
    /// The target spoke something we could not parse.
    Protocol,
    /// A bug or resource problem inside the exporter itself.
    Internal,
}

impl Reason {
    /// Every reason, in label order; used to initialise counters to zero.
    pub const ALL: [Reason; 9] = [
        Reason::Timeout,
        Reason::ConnectionRefused,
        Reason::Network,
        Reason::Dns,
        Reason::Tls,
        Reason::Auth,
        Reason::UnexpectedResponse,
        Reason::Protocol,
        Reason::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::ConnectionRefused => "connection_refused",
            Reason::Network => "network",
            Reason::Dns => "dns",
            Reason::Tls => "tls",
            Reason::Auth => "auth",
            Reason::UnexpectedResponse => "unexpected_response",
            Reason::Protocol => "protocol",
            Reason::Internal => "internal",
        }
    }

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        Reason::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is listed in ALL")
    }

    /// Classify an I/O error from a connect, read or write.
    pub fn from_io(err: &std::io::Error) -> Reason {
        use std::io::ErrorKind::*;
        match err.kind() {
            ConnectionRefused => Reason::ConnectionRefused,
            TimedOut => Reason::Timeout,
            InvalidData => Reason::Protocol,
            _ => Reason::Network,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed run: the reason, a short human message, and the measurements
/// that are still true despite the failure (an HTTP status code that did not
/// match, say). Measurements that could not be taken are simply absent.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
    pub samples: Measurements,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            samples: Vec::new(),
        }
    }

    /// Attach the measurements that stay valid despite the failure.
    pub fn with_samples(mut self, samples: Measurements) -> Self {
        self.samples = samples;
        self
    }
}

/// Prometheus type of a kind-specific metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    /// A monotonic value read from the target (for example a server-side
    /// counter); exported with the `_total` suffix.
    Counter,
}

/// Static description of one kind-specific metric family.
///
/// `name` has neither the `runbook_` prefix nor the unit suffix: the metrics
/// module adds both (`name: "http_status_code"` → `runbook_http_status_code`,
/// `name: "http_phase_duration", unit: Seconds` →
/// `runbook_http_phase_duration_seconds`).
#[derive(Debug)]
pub struct MetricDesc {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Option<Unit>,
    pub kind: MetricKind,
}

impl MetricDesc {
    /// A gauge: a value as the last run read or measured it. The one way
    /// kinds declare their metrics:
    /// `pub static X: MetricDesc = MetricDesc::gauge("kind_x", None, "... in the last scheduled run.");`
    pub const fn gauge(name: &'static str, unit: Option<Unit>, help: &'static str) -> Self {
        Self {
            name,
            help,
            unit,
            kind: MetricKind::Gauge,
        }
    }

    /// A counter read from the target (exported with `_total`).
    pub const fn counter(name: &'static str, unit: Option<Unit>, help: &'static str) -> Self {
        Self {
            name,
            help,
            unit,
            kind: MetricKind::Counter,
        }
    }

    /// The name as exposed: `runbook_` + name + unit suffix, and `_total`
    /// for counters (what the metrics module's encoder produces).
    pub fn exposed_name(&self) -> String {
        let mut name = format!("runbook_{}", self.name);
        if let Some(unit) = &self.unit {
            name.push('_');
            name.push_str(unit.as_str());
        }
        if self.kind == MetricKind::Counter {
            name.push_str("_total");
        }
        name
    }
}

/// One kind-specific measurement from one run.
#[derive(Debug, Clone)]
pub struct Sample {
    pub desc: &'static MetricDesc,
    /// Labels in addition to the check's own (`check` and the user's labels).
    /// Keys are static; values must come from a bounded set.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Sample {
    pub fn new(desc: &'static MetricDesc, value: f64) -> Self {
        Self {
            desc,
            labels: Vec::new(),
            value,
        }
    }

    pub fn with_label(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((key, value.into()));
        self
    }
}

/// Replace every occurrence of each secret in `text` with `<redacted>`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "<redacted>");
    }
    out
}
