//! The one list of kinds, and everything that dispatches on a kind: the
//! [`CheckSpec`] enum the loader deserializes, [`KINDS`], every metric
//! descriptor, and building. It sits above the kinds and names each once;
//! nothing below it knows the others exist.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::shared::targets::{self, ProbeSafety};
use super::shared::{dial, tls};
use super::{clickhouse, dns, http, jwt, kafka, kubernetes, postgres, redis, s3, tcp};
use super::{BuildError, Check, Kind, MetricDesc};

/// One line per kind: the variant of [`CheckSpec`] and the spec type, which
/// implements [`Kind`] (name, target, metrics, validation, build) and
/// [`ProbeSafety`].
macro_rules! registry {
    ($($variant:ident($spec:ty),)*) => {
        /// A check's kind-specific settings: one variant per kind, chosen by
        /// `kind:` in YAML. Boxed, so a check holds only its own kind's
        /// settings, not room for the largest kind's.
        #[derive(Debug, Clone, PartialEq)]
        pub enum CheckSpec {
            $($variant(Box<$spec>),)*
        }

        /// Every kind name, as written in `kind:`.
        pub const KINDS: &[&str] = &[$(<$spec as Kind>::NAME),*];

        /// Every kind-specific metric any check can emit, shared ones
        /// (like the TLS certificate expiry) included.
        pub fn metric_descs() -> Vec<&'static MetricDesc> {
            let mut all: Vec<&'static MetricDesc> = vec![
                &tls::CERT_EXPIRY,
                &dial::IP_PROTOCOL,
                &dial::FAILED_ADDRESSES,
            ];
            $(all.extend(<$spec as Kind>::metrics().iter().copied());)*
            all
        }

        impl CheckSpec {
            /// The kind's name as written in `kind:` and in the `kind` label.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(CheckSpec::$variant(_) => <$spec as Kind>::NAME,)*
                }
            }

            /// The field that `/probe?target=` replaces for this kind, if the
            /// kind can be probed.
            pub fn probe_target_field(kind: &str) -> Option<&'static str> {
                $(if kind == <$spec as Kind>::NAME {
                    return <$spec as Kind>::PROBE_TARGET;
                })*
                None
            }

            /// Deserialize the fields of a check whose `kind:` was already
            /// read (and removed), so that errors keep their field paths.
            /// `None` when `kind` names no registered kind.
            pub fn deserialize_kind<'de, D: Deserializer<'de>>(
                kind: &str,
                fields: D,
            ) -> Option<Result<Self, D::Error>> {
                $(if kind == <$spec as Kind>::NAME {
                    return Some(<$spec>::deserialize(fields).map(|s| CheckSpec::$variant(Box::new(s))));
                })*
                None
            }

            /// Every problem beyond what deserialization checks, as
            /// `(field, message)` with the field relative to the check.
            pub fn validate(&self) -> Vec<(String, String)> {
                match self {
                    $(CheckSpec::$variant(s) => s.problems(),)*
                }
            }

            /// Validate, then build the runnable check: every problem found
            /// (validation stops the build; a build error is one more).
            pub fn build(&self) -> Result<Box<dyn Check>, Vec<BuildError>> {
                let problems = self.validate();
                if !problems.is_empty() {
                    return Err(problems
                        .into_iter()
                        .map(|(field, message)| BuildError::new(field, message))
                        .collect());
                }
                tls::install_crypto_provider();
                match self {
                    $(CheckSpec::$variant(s) => s.check().map_err(|e| vec![e]),)*
                }
            }

            /// The credential fields this spec sets ([`ProbeSafety`]).
            pub fn credentials(&self) -> Vec<&'static str> {
                match self {
                    $(CheckSpec::$variant(s) => s.credentials(),)*
                }
            }

            /// The addresses a run connects to first ([`ProbeSafety`]).
            pub fn endpoints(&self) -> Vec<targets::Endpoint> {
                match self {
                    $(CheckSpec::$variant(s) => s.endpoints(),)*
                }
            }

            /// Why a caller must not pick this kind's server ([`ProbeSafety`]).
            pub fn trusts_its_server(&self) -> Option<&'static str> {
                match self {
                    $(CheckSpec::$variant(s) => s.trusts_its_server(),)*
                }
            }

            /// Confine follow-up connections to `allowed` ([`ProbeSafety`]).
            pub fn confine(&mut self, allowed: &targets::AllowedTargets) {
                match self {
                    $(CheckSpec::$variant(s) => s.confine(allowed),)*
                }
            }
        }
    };
}

registry! {
    Http(http::HttpSpec),
    Tcp(tcp::TcpSpec),
    Dns(dns::DnsSpec),
    Postgres(postgres::PostgresSpec),
    Redis(redis::RedisSpec),
    Clickhouse(clickhouse::ClickhouseSpec),
    Kubernetes(kubernetes::KubernetesSpec),
    Kafka(kafka::KafkaSpec),
    S3(s3::S3Spec),
    Jwt(jwt::JwtSpec),
}

/// `kind:` chooses the kind; the other fields are that kind's, unknown ones
/// rejected (how tests and tools read one check entry on its own; the
/// config loader reads `kind:` itself to keep field paths).
impl<'de> Deserialize<'de> for CheckSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut fields = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let kind = match fields.remove("kind") {
            Some(serde_json::Value::String(kind)) => kind,
            Some(_) => return Err(D::Error::custom("`kind` must be a string")),
            None => return Err(D::Error::missing_field("kind")),
        };
        match CheckSpec::deserialize_kind(&kind, serde_json::Value::Object(fields)) {
            Some(spec) => spec.map_err(D::Error::custom),
            None => Err(D::Error::custom(format!(
                "unknown kind {kind:?}: expected one of {}",
                KINDS.join(", ")
            ))),
        }
    }
}
