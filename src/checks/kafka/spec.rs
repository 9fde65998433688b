//! The config of a `kafka` check: its fields and SASL settings, the
//! semantic validation, and what `/probe` must know of it.

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::checks::shared::secret::Secret;
use crate::checks::shared::targets::{self, ProbeSafety};
use crate::checks::shared::tls::TlsSpec;

/// Config of a `kafka` check.
///
/// ```yaml
/// - name: events
///   kind: kafka
///   brokers: [kafka-0:9092, kafka-1:9092]
///   groups: [user-service]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSpec {
    /// Bootstrap servers, as `host:port`. The check learns the other brokers
    /// from the cluster metadata.
    pub brokers: Vec<String>,

    /// Connect with TLS. Default: false.
    #[serde(default)]
    pub tls: bool,

    /// TLS settings used when `tls` is true: `ca_file`, `cert_file` and
    /// `key_file` (client certificate), `insecure_skip_verify`, and
    /// `server_name` (default: each broker's advertised host).
    pub tls_config: Option<TlsSpec>,

    /// SASL authentication: `mechanism` (`PLAIN`, `SCRAM-SHA-256` or
    /// `SCRAM-SHA-512`), `username`, and `password` or `password_file`.
    pub sasl: Option<SaslSpec>,

    /// Topics to report partitions and end offsets for. Default (with no
    /// `topics_regex` either): every topic except internal ones (`__*`).
    #[serde(default)]
    pub topics: Vec<String>,

    /// Regular expression selecting topics, in addition to `topics`.
    pub topics_regex: Option<String>,

    /// Most topics reported, in name order. Default: 100.
    #[serde(default = "default_max_topics")]
    pub max_topics: usize,

    /// Consumer groups to report lag for. Default (with no `groups_regex`
    /// either): every group the cluster lists. A listed group that does not
    /// exist is reported with state `dead`.
    #[serde(default)]
    pub groups: Vec<String>,

    /// Regular expression selecting groups, in addition to `groups`.
    pub groups_regex: Option<String>,

    /// Most groups reported, in name order. Default: 100.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,

    /// Most per-partition series (end offset; committed offset, lag, lag in
    /// seconds and status per group) reported per run, in name order; the
    /// per-topic and per-group series always cover every partition.
    /// Default: 2000.
    #[serde(default = "default_max_partition_series")]
    pub max_partition_series: usize,

    /// Most lagging partitions whose next message is fetched per run for
    /// lag in seconds, largest lag first. Default: 500.
    #[serde(default = "default_max_time_lag_fetches")]
    pub max_time_lag_fetches: usize,

    /// Number of runs the group status looks at (lagging: lag grew at each
    /// of them; stalled: lag at each of them and no commit). Default: 5.
    #[serde(default = "default_status_window")]
    pub status_window: usize,

    /// A group with lag whose committed offsets have not moved for this long
    /// is `stopped`. Default: 10m.
    #[serde(
        default = "default_stopped_after",
        with = "crate::checks::shared::duration"
    )]
    pub stopped_after: Duration,
}

/// SASL settings of a `kafka` check (`sasl:`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSpec {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user name.
    pub username: String,
    /// The password; usually `${ENV}`.
    pub password: Option<Secret>,
    /// A file holding the password, instead of `password`.
    pub password_file: Option<PathBuf>,
}

const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

fn default_max_topics() -> usize {
    100
}
fn default_max_groups() -> usize {
    100
}
fn default_max_partition_series() -> usize {
    2000
}
fn default_max_time_lag_fetches() -> usize {
    500
}
fn default_status_window() -> usize {
    5
}
fn default_stopped_after() -> Duration {
    Duration::from_secs(600)
}

impl ProbeSafety for KafkaSpec {
    fn credentials(&self) -> Vec<&'static str> {
        targets::set_fields(&[
            ("sasl", self.sasl.is_some()),
            (
                "tls_config.key_file",
                TlsSpec::has_client_key(self.tls_config.as_ref()),
            ),
        ])
    }

    /// kafka-protocol reserves memory for every array from the length a
    /// broker announces, so a forged answer could make one allocation
    /// fail, which aborts the process. Only brokers the operator lists are
    /// trusted to answer honestly.
    fn trusts_its_server(&self) -> Option<&'static str> {
        Some(
            "the Kafka protocol decoder trusts its brokers (a forged answer can exhaust memory), \
             so a caller must not choose them",
        )
    }

    /// The bootstrap servers; the brokers their metadata names come later.
    fn endpoints(&self) -> Vec<targets::Endpoint> {
        self.brokers
            .iter()
            .filter_map(|b| targets::Endpoint::parse(b).ok())
            .collect()
    }
}

impl KafkaSpec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |f: &str, m: String| problems.push((f.to_string(), m));
        if self.brokers.is_empty() {
            problem("brokers", "needs at least one host:port".into());
        }
        for (i, b) in self.brokers.iter().enumerate() {
            if b.contains(|c: char| c == ',' || c == '/' || c.is_whitespace()) {
                problem(
                    &format!("brokers[{i}]"),
                    format!("{b:?}: one host:port per entry, without `,`, `/` or spaces"),
                );
            } else if b
                .rsplit_once(':')
                .and_then(|(h, p)| (!h.is_empty()).then(|| p.parse::<u16>().ok())?)
                .is_none()
            {
                problem(
                    &format!("brokers[{i}]"),
                    format!("{b:?}: write host:port, like kafka-0:9092"),
                );
            }
        }
        if self.tls_config.is_some() && !self.tls {
            problem(
                "tls_config",
                "is set but tls is false; add `tls: true` to use TLS".into(),
            );
        }
        if let Some(sasl) = &self.sasl {
            if !SASL_MECHANISMS.contains(&sasl.mechanism.as_str()) {
                problem(
                    "sasl.mechanism",
                    format!(
                        "{:?}: must be one of {}",
                        sasl.mechanism,
                        SASL_MECHANISMS.join(", ")
                    ),
                );
            }
            if sasl.password.is_some() && sasl.password_file.is_some() {
                problem(
                    "sasl.password",
                    "set either password or password_file, not both".into(),
                );
            }
        }
        for (field, re) in [
            ("topics_regex", &self.topics_regex),
            ("groups_regex", &self.groups_regex),
        ] {
            if let Some(Err(e)) = re.as_deref().map(Regex::new) {
                problem(field, format!("invalid regular expression: {e}"));
            }
        }
        for (field, n) in [
            ("max_topics", self.max_topics),
            ("max_groups", self.max_groups),
            ("max_partition_series", self.max_partition_series),
            ("max_time_lag_fetches", self.max_time_lag_fetches),
        ] {
            if n == 0 {
                problem(field, "must be at least 1".into());
            }
        }
        if self.status_window < 2 {
            problem("status_window", "must be at least 2".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_fields() {
        let spec: KafkaSpec = serde_saphyr::from_str(
            "brokers: [nohost]\nsasl: {mechanism: GSSAPI, username: u}\ngroups_regex: '('\nstatus_window: 1",
        )
        .unwrap();
        let fields: Vec<String> = spec.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "brokers[0]",
                "sasl.mechanism",
                "groups_regex",
                "status_window"
            ]
        );
    }
}
