//! The librdkafka side of a `kafka` check: the client configuration built
//! from the spec, the two handles a check keeps, the memory of the last
//! connection failure librdkafka logged, and the classification of failed
//! requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};

use super::offsets;
use super::spec::KafkaSpec;
use crate::checks::shared::secret;
use crate::checks::{BuildError, Failure, Reason};

/// Remembers the last connection-level failure librdkafka logged, so a
/// request that fails because no broker is reachable is reported with the
/// reason the connection failed.
#[derive(Default)]
pub(super) struct ErrorMemory {
    last: Mutex<Option<(Reason, String)>>,
}

/// The context of both librdkafka handles of a check, sharing one memory.
#[derive(Clone, Default)]
pub(super) struct Context(Arc<ErrorMemory>);

impl ConsumerContext for Context {}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{message}");
        if level as i32 <= RDKafkaLogLevel::Error as i32 {
            self.0.remember(message);
        }
    }

    fn error(&self, _error: KafkaError, reason: &str) {
        self.0.remember(reason);
    }
}

/// The reason of a connection failure librdkafka logged, if `message` is one.
fn connection_failure(message: &str) -> Option<Reason> {
    let m = message.to_ascii_lowercase();
    if m.contains("connection refused") {
        Some(Reason::ConnectionRefused)
    } else if m.contains("resolve") {
        Some(Reason::Dns)
    } else if m.contains("ssl") || m.contains("certificate") {
        Some(Reason::Tls)
    } else if m.contains("sasl") || m.contains("authentication") {
        Some(Reason::Auth)
    } else if m.contains("connect to") || m.contains("disconnected") || m.contains("timed out") {
        Some(Reason::Network)
    } else {
        None
    }
}

impl ErrorMemory {
    fn remember(&self, message: &str) {
        if let Some(reason) = connection_failure(message) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((reason, message.to_string()));
        }
    }

    pub(super) fn clear(&self) {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The librdkafka handles of a check, created on its first run.
pub(super) struct Handles {
    pub(super) consumer: BaseConsumer<Context>,
    pub(super) admin: AdminClient<Context>,
}

impl Handles {
    /// The memory both handles' contexts share.
    pub(super) fn errors(&self) -> &ErrorMemory {
        &self.consumer.context().0
    }

    /// Create both handles on one shared context.
    pub(super) fn create(config: &ClientConfig) -> Result<Self, Failure> {
        let context = Context::default();
        let mut consumer_config = config.clone();
        consumer_config
            .set("enable.auto.commit", "false")
            // End offsets as kafka-consumer-groups.sh shows them.
            .set("isolation.level", "read_uncommitted");
        let cannot_create = |e: KafkaError| {
            Failure::new(
                Reason::Internal,
                format!("cannot create the Kafka client: {e}"),
            )
        };
        let consumer = consumer_config
            .create_with_context(context.clone())
            .map_err(cannot_create)?;
        let admin = config.create_with_context(context).map_err(cannot_create)?;
        Ok(Self { consumer, admin })
    }
}

/// The librdkafka configuration of a valid spec, and the secrets in it.
/// Files named in `tls_config` must exist; the SASL password is read here.
pub(super) fn client_config(spec: &KafkaSpec) -> Result<(ClientConfig, Vec<String>), BuildError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", spec.brokers.join(","))
        .set("client.id", "runbook-exporter")
        .set("reconnect.backoff.max.ms", "5000")
        .set_log_level(RDKafkaLogLevel::Error);
    let mut secrets = Vec::new();
    let sasl = spec.sasl.is_some();
    let protocol = match (spec.tls, sasl) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    if spec.tls {
        let tls = spec.tls_config.clone().unwrap_or_default();
        for (field, key, path) in [
            ("tls_config.ca_file", "ssl.ca.location", &tls.ca_file),
            (
                "tls_config.cert_file",
                "ssl.certificate.location",
                &tls.cert_file,
            ),
            ("tls_config.key_file", "ssl.key.location", &tls.key_file),
        ] {
            if let Some(path) = path {
                std::fs::metadata(path).map_err(|e| {
                    BuildError::new(field, format!("cannot read {}: {e}", path.display()))
                })?;
                config.set(key, path.display().to_string());
            }
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(BuildError::new(
                "tls_config.cert_file",
                "set both cert_file and key_file, or neither",
            ));
        }
        if tls.insecure_skip_verify {
            config
                .set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        }
    }
    if let Some(s) = &spec.sasl {
        let password = secret::resolve("sasl.password", &s.password, &s.password_file)?
            .ok_or_else(|| {
                BuildError::new("sasl.password", "password or password_file is required")
            })?;
        config
            .set("sasl.mechanism", &s.mechanism)
            .set("sasl.username", &s.username)
            .set("sasl.password", password.expose());
        secrets.push(password.expose().to_string());
    }
    secrets.retain(|s| !s.is_empty());
    Ok((config, secrets))
}

/// Serve the log and error events queued on the consumer handle: their
/// text reaches [`ErrorMemory`] through the context, and the queue does not
/// grow while brokers are down.
pub(super) fn drain_events(h: &Handles) {
    while h.consumer.poll(Duration::ZERO).is_some() {}
    offsets::discard_main_queue(h.admin.inner());
}

/// Classify a failed request; a timeout while brokers are unreachable is
/// reported with the reason the connection failed.
pub(super) fn failure(h: &Handles, what: &str, e: &KafkaError) -> Failure {
    drain_events(h);
    let code = e.rdkafka_error_code();
    let remembered = h
        .errors()
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (reason, detail) = match code {
        Some(RDKafkaErrorCode::OperationTimedOut)
        | Some(RDKafkaErrorCode::BrokerTransportFailure)
        | Some(RDKafkaErrorCode::AllBrokersDown) => match remembered {
            Some((reason, message)) => (reason, message),
            None => (
                if code == Some(RDKafkaErrorCode::OperationTimedOut) {
                    Reason::Timeout
                } else {
                    Reason::Network
                },
                e.to_string(),
            ),
        },
        Some(RDKafkaErrorCode::Resolve) => (Reason::Dns, e.to_string()),
        Some(RDKafkaErrorCode::SSL) => (Reason::Tls, e.to_string()),
        Some(
            RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed,
        ) => (Reason::Auth, e.to_string()),
        _ => (Reason::UnexpectedResponse, e.to_string()),
    };
    Failure::new(reason, format!("{what} failed: {detail}"))
}
