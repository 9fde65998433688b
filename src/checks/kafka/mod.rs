//! The `kafka` kind: broker reachability, topic partitions, their health
//! and end offsets, and consumer group lag in messages and in seconds with
//! a per-partition status, replacing the guides'
//! `kafka-broker-api-versions.sh`, `kafka-topics.sh --describe` and
//! `kafka-consumer-groups.sh --describe`.
//!
//! The client is pure Rust over tokio: `kafka-protocol` encodes and decodes
//! the messages, [`conn`] frames them on one connection (TLS through
//! rustls, SASL through [`sasl`]), [`cluster`] keeps a connection slot per
//! broker and bounds every request by a deadline, [`collect`] runs the
//! steps of a run with their own deadlines and [`requests`] holds each
//! request. [`records`] reads a message's timestamp from a Fetch answer,
//! [`samples`] turns a run into samples and decides whether it failed, and
//! [`history`] remembers the recent runs for the status. A run that the
//! scheduler cancels drops its futures and the connections they held;
//! nothing runs on after it.

mod cluster;
mod collect;
mod conn;
mod history;
mod metrics;
mod records;
mod requests;
mod samples;
mod sasl;
mod spec;

use std::sync::Mutex;

use futures::future::BoxFuture;

use self::cluster::Cluster;
use self::collect::{collect, Selection};
use self::conn::Dialer;
use self::history::History;
pub use self::metrics::*;
use self::samples::Dropped;
use self::sasl::Sasl;
pub use self::spec::{KafkaSpec, SaslSpec};
use super::shared::secret;
use super::{BuildError, Check, Failure, RunContext, RunResult};

/// A built `kafka` check.
pub struct KafkaCheck {
    cluster: Cluster,
    selection: Selection,
    state: Mutex<(History, Dropped)>,
    secrets: Vec<String>,
}

impl KafkaCheck {
    pub fn new(spec: &KafkaSpec) -> Result<Self, BuildError> {
        if let Some((field, message)) = spec.validate().into_iter().next() {
            return Err(BuildError::new(field, message));
        }
        let (dialer, secrets) = dialer(spec)?;
        let bootstrap: Vec<(String, u16)> = spec
            .brokers
            .iter()
            .filter_map(|b| {
                let (h, p) = b.rsplit_once(':')?;
                let h = h.trim_start_matches('[').trim_end_matches(']');
                Some((h.to_string(), p.parse().ok()?))
            })
            .collect();
        Ok(Self {
            cluster: Cluster::new(dialer, &bootstrap),
            selection: Selection::new(spec)?,
            state: Mutex::new((
                History::new(spec.status_window, spec.stopped_after),
                Dropped::default(),
            )),
            secrets,
        })
    }

    async fn probe(&self, ctx: &RunContext) -> RunResult {
        let collected = collect(&self.cluster, &self.selection, ctx.timeout).await;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (history, dropped) = &mut *state;
        match samples::samples(history, dropped, &collected, &self.selection) {
            (samples, None) => Ok(samples),
            (samples, Some((reason, message))) => {
                Err(Failure::new(reason, message).with_samples(samples))
            }
        }
    }
}

/// TLS and SASL of a valid spec, and the secrets in them. Files named in
/// `tls_config` are read here; so is the SASL password.
fn dialer(spec: &KafkaSpec) -> Result<(Dialer, Vec<String>), BuildError> {
    let tls = if spec.tls {
        let t = spec.tls_config.clone().unwrap_or_default();
        let config = t.client_config("tls_config", &[])?;
        Some((
            tokio_rustls::TlsConnector::from(config),
            t.server_name.clone(),
        ))
    } else {
        None
    };
    let mut secrets = Vec::new();
    let sasl = match &spec.sasl {
        None => None,
        Some(s) => {
            let password = secret::resolve("sasl.password", &s.password, &s.password_file)?
                .ok_or_else(|| {
                    BuildError::new("sasl.password", "password or password_file is required")
                })?;
            secrets.push(password.expose().to_string());
            Some(
                Sasl::new(&s.mechanism, &s.username, password.expose()).ok_or_else(|| {
                    BuildError::new(
                        "sasl.mechanism",
                        format!("{:?} is not supported", s.mechanism),
                    )
                })?,
            )
        }
    };
    secrets.retain(|s| !s.is_empty());
    Ok((Dialer { tls, sasl }, secrets))
}

impl Check for KafkaCheck {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe(ctx))
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

crate::checks::kind!(KafkaSpec => KafkaCheck, "kafka", probe "brokers");
