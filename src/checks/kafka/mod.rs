//! The `kafka` kind: broker health, topic partitions and end offsets, and
//! consumer group lag, replacing the guides' `kafka-broker-api-versions.sh`,
//! `kafka-topics.sh --describe` and `kafka-consumer-groups.sh --describe`.
//!
//! One run makes, in this order: a metadata request (brokers, topics,
//! partitions); a ListGroups/DescribeGroups round (state and members); one
//! OffsetFetch per selected group, all in flight at once ([`offsets`]); then
//! one ListOffsets(latest) per partition leader for every partition needed,
//! so end offsets are read after committed offsets and lag is never
//! negative; and one DescribeConfigs per broker, in parallel, to see that
//! each broker answers. Between runs the check keeps its librdkafka handles
//! (which reconnect by themselves) and a bounded [`history`] for lag in
//! seconds and the group status.
//!
//! `spec` holds the config and its validation, `metrics` the metrics,
//! `client` the librdkafka handles and the classification of their errors,
//! `collect` the requests of a run, and `samples` the turning of their
//! answers into samples; this module builds and runs the check.

mod client;
mod collect;
mod history;
mod metrics;
mod offsets;
mod samples;
mod spec;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::BoxFuture;
use rdkafka::ClientConfig;

use self::client::Handles;
use self::collect::{brokers_up, collect, Selection};
use self::history::History;
pub use self::metrics::*;
pub use self::spec::{KafkaSpec, SaslSpec};
use super::{BuildError, Check, Failure, Reason, RunContext, RunResult};

/// A built `kafka` check.
pub struct KafkaCheck {
    config: ClientConfig,
    selection: Arc<Selection>,
    handles: Mutex<Option<Arc<Handles>>>,
    history: Mutex<History>,
    secrets: Vec<String>,
}

impl KafkaCheck {
    pub fn new(spec: &KafkaSpec) -> Result<Self, BuildError> {
        if let Some((field, message)) = spec.validate().into_iter().next() {
            return Err(BuildError::new(field, message));
        }
        let (config, secrets) = client::client_config(spec)?;
        let selection = Selection::new(spec)?;
        Ok(Self {
            config,
            selection: Arc::new(selection),
            handles: Mutex::new(None),
            history: Mutex::new(History::new(spec.status_window, spec.stopped_after)),
            secrets,
        })
    }

    /// The handles, created on first use; librdkafka reconnects them by
    /// itself when brokers go away and come back.
    fn handles(&self) -> Result<Arc<Handles>, Failure> {
        let mut slot = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = slot.as_ref() {
            return Ok(h.clone());
        }
        let h = Arc::new(Handles::create(&self.config)?);
        *slot = Some(h.clone());
        Ok(h)
    }

    async fn probe(&self, ctx: &RunContext) -> RunResult {
        let handles = self.handles()?;
        let deadline = Instant::now() + ctx.timeout;
        let collected = {
            let handles = handles.clone();
            let selection = self.selection.clone();
            tokio::task::spawn_blocking(move || collect(&handles, &selection, deadline))
                .await
                .map_err(|e| {
                    Failure::new(Reason::Internal, format!("collector task failed: {e}"))
                })?
        };
        let collected = collected?;
        let broker_up = brokers_up(&handles.admin, &collected.brokers, deadline).await;
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        match samples::samples(&mut history, &collected, &broker_up) {
            (samples, None) => Ok(samples),
            (samples, Some((reason, message))) => {
                Err(Failure::new(reason, message).with_samples(samples))
            }
        }
    }
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
