//! The `s3` kind: list a bucket (the guides' `aws s3 ls s3://$BUCKET
//! --max-items 1`), optionally head a known object (`aws s3api
//! head-object`), and optionally round-trip a small object (put, get and
//! compare, delete), timing each operation and classifying S3 errors.
//!
//! The SDK client (with its connection pool) is built once and reused by
//! every run. Credentials are explicit keys, or a chain of environment,
//! shared profile files and web identity; cloud metadata services (EC2 IMDS,
//! the ECS container endpoint) are asked only with `metadata_credentials`.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use futures::future::BoxFuture;
use prometheus_client::registry::Unit;
use serde::Deserialize;

use super::{BuildError, Check, Failure, MetricDesc, Reason, RunContext, RunResult, Sample};
use crate::checks::shared::errors;
use crate::checks::shared::secret::{self, Secret};

/// Config of an `s3` check.
///
/// ```yaml
/// - name: datasets
///   kind: s3
///   bucket: ${S3_BUCKET}
///   endpoint: http://minio:9000
///   path_style: true
///   access_key_id: ${S3_ACCESS_KEY_ID}
///   secret_access_key_file: /etc/secrets/s3
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Spec {
    /// The bucket to check.
    pub bucket: String,

    /// List only keys under this prefix. Default: the whole bucket.
    pub prefix: Option<String>,

    /// The bucket's region. Default: `us-east-1` (also right for most
    /// S3-compatible stores).
    #[serde(default = "default_region")]
    pub region: String,

    /// Endpoint URL of an S3-compatible store (`http://minio:9000`).
    /// Default: AWS's endpoint for the region.
    pub endpoint: Option<String>,

    /// Address the bucket in the path (`endpoint/bucket/key`) rather than in
    /// the host name; most S3-compatible stores need it. Default: false.
    #[serde(default)]
    pub path_style: bool,

    /// Access key id. With `secret_access_key` (or its `_file`), these keys
    /// are used; without, the standard chain is: the `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` environment, the shared config and
    /// credentials files (`AWS_PROFILE`), then web identity
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE`, as on EKS).
    pub access_key_id: Option<String>,

    /// Secret access key; usually `${ENV}`.
    pub secret_access_key: Option<Secret>,

    /// A file holding the secret access key, instead of `secret_access_key`.
    pub secret_access_key_file: Option<PathBuf>,

    /// Also ask cloud metadata services for credentials, after the chain
    /// above: the ECS container endpoint, then EC2 instance metadata (IMDS).
    /// Default: false, so no metadata service is ever contacted.
    #[serde(default)]
    pub metadata_credentials: bool,

    /// Key of an object to head on every run, reporting its size and
    /// last-modified time. Default: none.
    pub head_key: Option<String>,

    /// Put a small object, read it back and compare, then delete it, on
    /// every run. Needs write and delete permission. Default: false.
    #[serde(default)]
    pub round_trip: bool,

    /// Key prefix of the round-trip objects. Default:
    /// `runbook-exporter-probe/`.
    #[serde(default = "default_round_trip_prefix")]
    pub round_trip_prefix: String,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_round_trip_prefix() -> String {
    "runbook-exporter-probe/".to_string()
}

impl super::shared::targets::ProbeSafety for S3Spec {
    fn credentials(&self) -> Vec<&'static str> {
        let mut found = super::shared::targets::set_fields(&[
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            (
                "secret_access_key_file",
                self.secret_access_key_file.is_some(),
            ),
            ("metadata_credentials", self.metadata_credentials),
        ]);
        if found.is_empty() {
            // The SDK's own chain: environment, profile, web identity.
            found.push("the AWS credential chain");
        }
        found
    }

    /// The endpoint, or AWS's regional one; with virtual-hosted addressing
    /// the bucket becomes the first label of the host dialled.
    fn endpoints(&self) -> Vec<super::shared::targets::Endpoint> {
        let base = match &self.endpoint {
            Some(endpoint) => url::Url::parse(endpoint)
                .ok()
                .and_then(|u| super::shared::targets::Endpoint::from_url(&u, 443)),
            None => Some(super::shared::targets::Endpoint::new(
                format!("s3.{}.amazonaws.com", self.region),
                443,
            )),
        };
        base.map(|mut e| {
            if !self.path_style {
                e.host = format!("{}.{}", self.bucket, e.host);
            }
            e
        })
        .into_iter()
        .collect()
    }
}

impl S3Spec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |f: &str, m: &str| problems.push((f.to_string(), m.to_string()));
        if self.bucket.trim().is_empty() {
            problem("bucket", "must not be empty");
        }
        if self.region.trim().is_empty() {
            problem("region", "must not be empty");
        }
        if let Some(endpoint) = &self.endpoint {
            match url::Url::parse(endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => problem(
                    "endpoint",
                    "must be an http:// or https:// URL, like http://minio:9000",
                ),
            }
        }
        let secret = self.secret_access_key.is_some() || self.secret_access_key_file.is_some();
        if self.secret_access_key.is_some() && self.secret_access_key_file.is_some() {
            problem(
                "secret_access_key",
                "set either secret_access_key or secret_access_key_file, not both",
            );
        }
        if self.access_key_id.is_some() && !secret {
            problem(
                "secret_access_key",
                "access_key_id is set, so secret_access_key or secret_access_key_file is required",
            );
        }
        if secret && self.access_key_id.is_none() {
            problem(
                "access_key_id",
                "a secret access key is set, so access_key_id is required",
            );
        }
        if self.round_trip && self.round_trip_prefix.is_empty() {
            problem(
                "round_trip_prefix",
                "must not be empty: round-trip objects need a prefix of their own",
            );
        }
        problems
    }
}

/// Duration of each S3 operation.
pub static OPERATION_DURATION: MetricDesc = MetricDesc::gauge(
    "s3_operation_duration",
    Some(Unit::Seconds),
    "Duration of each S3 operation (list, head, put, get, delete) in the last scheduled run; only operations that completed.",
);

/// Size of the `head_key` object.
pub static OBJECT_SIZE: MetricDesc = MetricDesc::gauge(
    "s3_object_size",
    Some(Unit::Bytes),
    "Size of the head_key object in the last scheduled run.",
);

/// Last-modified time of the `head_key` object.
pub static OBJECT_LAST_MODIFIED: MetricDesc = MetricDesc::gauge(
    "s3_object_last_modified_timestamp",
    Some(Unit::Seconds),
    "Last-modified time of the head_key object in the last scheduled run, as a Unix timestamp.",
);

/// Every metric this kind can report.
pub static METRICS: [&MetricDesc; 3] = [&OPERATION_DURATION, &OBJECT_SIZE, &OBJECT_LAST_MODIFIED];

/// A built `s3` check.
pub struct S3Check {
    client: Client,
    bucket: String,
    prefix: Option<String>,
    head_key: Option<String>,
    round_trip_prefix: Option<String>,
    secrets: Vec<String>,
}

impl S3Check {
    pub fn new(spec: &S3Spec) -> Result<Self, BuildError> {
        if let Some((field, message)) = spec.validate().into_iter().next() {
            return Err(BuildError::new(field, message));
        }
        let secret = secret::resolve(
            "secret_access_key",
            &spec.secret_access_key,
            &spec.secret_access_key_file,
        )?;
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(spec.region.clone()))
            .force_path_style(spec.path_style)
            // One attempt per run: the run reports what happened, and the
            // schedule is the retry.
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled());
        if let Some(endpoint) = &spec.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let mut secrets = Vec::new();
        config = match (&spec.access_key_id, &secret) {
            (Some(id), Some(secret)) => {
                secrets.push(secret.expose().to_string());
                config.credentials_provider(Credentials::new(
                    id,
                    secret.expose(),
                    None,
                    None,
                    "runbook-exporter config",
                ))
            }
            _ => config.credentials_provider(credential_chain(spec.metadata_credentials)),
        };
        secrets.retain(|s| !s.is_empty());
        Ok(Self {
            client: Client::from_conf(config.build()),
            bucket: spec.bucket.clone(),
            prefix: spec.prefix.clone(),
            head_key: spec.head_key.clone(),
            round_trip_prefix: spec.round_trip.then(|| spec.round_trip_prefix.clone()),
            secrets,
        })
    }

    async fn probe(&self) -> RunResult {
        let mut samples = Vec::new();

        let start = Instant::now();
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .max_keys(1)
            .set_prefix(self.prefix.clone())
            .send()
            .await;
        match listed {
            Ok(_) => samples.push(op_sample("list", start)),
            Err(e) => return Err(self.failure("list", None, &e, samples)),
        }

        if let Some(key) = &self.head_key {
            let start = Instant::now();
            match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(head) => {
                    samples.push(op_sample("head", start));
                    if let Some(size) = head.content_length() {
                        samples.push(Sample::new(&OBJECT_SIZE, size as f64));
                    }
                    if let Some(t) = head.last_modified() {
                        samples.push(Sample::new(&OBJECT_LAST_MODIFIED, t.as_secs_f64()));
                    }
                }
                Err(e) => return Err(self.failure("head", Some(key), &e, samples)),
            }
        }

        if let Some(prefix) = &self.round_trip_prefix {
            self.round_trip(prefix, &mut samples)
                .await
                .map_err(|f| f.with_samples(samples.clone()))?;
        }
        Ok(samples)
    }

    /// Put, get and compare, delete. The object is deleted even when the
    /// comparison fails.
    async fn round_trip(&self, prefix: &str, samples: &mut Vec<Sample>) -> Result<(), Failure> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let token: u64 = rand::random();
        let key = format!("{prefix}{nanos}-{token:016x}");
        let body = format!("runbook-exporter round trip {token:016x}\n");

        let start = Instant::now();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(body.clone().into_bytes()))
            .send()
            .await
            .map_err(|e| self.failure("put", Some(&key), &e, Vec::new()))?;
        samples.push(op_sample("put", start));

        let start = Instant::now();
        let got = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => out
                .body
                .collect()
                .await
                .map(|b| b.into_bytes())
                .map_err(|e| {
                    Failure::new(
                        Reason::Network,
                        format!(
                            "get s3://{}/{key}: reading the body failed: {e}",
                            self.bucket
                        ),
                    )
                }),
            Err(e) => Err(self.failure("get", Some(&key), &e, Vec::new())),
        };
        if got.is_ok() {
            samples.push(op_sample("get", start));
        }

        let start = Instant::now();
        let deleted = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;

        let got = got?;
        if got.as_ref() != body.as_bytes() {
            return Err(Failure::new(
                Reason::UnexpectedResponse,
                format!(
                    "get s3://{}/{key}: read back {} bytes that differ from the {} bytes put",
                    self.bucket,
                    got.len(),
                    body.len()
                ),
            ));
        }
        deleted.map_err(|e| self.failure("delete", Some(&key), &e, Vec::new()))?;
        samples.push(op_sample("delete", start));
        Ok(())
    }

    /// A failure of `op` (on `key`, if any), classified from the S3 error.
    fn failure<E>(
        &self,
        op: &str,
        key: Option<&str>,
        err: &SdkError<E, HttpResponse>,
        samples: Vec<Sample>,
    ) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let target = match key {
            Some(key) => format!("s3://{}/{key}", self.bucket),
            None => format!("s3://{}", self.bucket),
        };
        let (reason, detail) = classify(err, key.is_some());
        Failure::new(reason, format!("{op} {target}: {detail}")).with_samples(samples)
    }
}

impl Check for S3Check {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe())
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

fn op_sample(operation: &'static str, start: Instant) -> Sample {
    Sample::new(&OPERATION_DURATION, start.elapsed().as_secs_f64())
        .with_label("operation", operation)
}

/// The standard credential chain without metadata services, unless asked.
fn credential_chain(metadata: bool) -> CredentialsProviderChain {
    let chain = CredentialsProviderChain::first_try(
        "Environment",
        aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else(
        "Profile",
        aws_config::profile::ProfileFileCredentialsProvider::builder().build(),
    )
    .or_else(
        "WebIdentityToken",
        aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder().build(),
    );
    if metadata {
        chain
            .or_else(
                "EcsContainer",
                aws_config::ecs::EcsCredentialsProvider::builder().build(),
            )
            .or_else(
                "Ec2InstanceMetadata",
                aws_config::imds::credentials::ImdsCredentialsProvider::builder().build(),
            )
    } else {
        chain
    }
}

/// Error codes that mean the credentials or their permissions are wrong.
const AUTH_CODES: [&str; 7] = [
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
];

/// The reason and a message for an SDK error; the S3 error code goes in the
/// message. `has_key` tells a bare 404 (HEAD has no error body) on an
/// object from one on the bucket.
fn classify<E>(err: &SdkError<E, HttpResponse>, has_key: bool) -> (Reason, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = Some(service.raw().status().as_u16());
            let code = e
                .code()
                .map(str::to_string)
                .unwrap_or_else(|| match status {
                    Some(403) => "Forbidden".to_string(),
                    Some(404) if has_key => "NoSuchKey".to_string(),
                    Some(404) => "NoSuchBucket".to_string(),
                    Some(s) => format!("HTTP {s}"),
                    None => "unknown error".to_string(),
                });
            let reason = if AUTH_CODES.contains(&code.as_str()) || status == Some(403) {
                Reason::Auth
            } else {
                Reason::UnexpectedResponse
            };
            let mut message = code;
            if let Some(text) = e.message().filter(|m| !m.is_empty()) {
                message.push_str(": ");
                message.push_str(text);
            }
            if let Some(status) = status {
                message.push_str(&format!(" (HTTP {status})"));
            }
            (reason, message)
        }
        SdkError::TimeoutError(_) => (Reason::Timeout, "timed out".to_string()),
        SdkError::DispatchFailure(d) => {
            let reason = if d.is_timeout() {
                Reason::Timeout
            } else if chain_has_io(err, std::io::ErrorKind::ConnectionRefused) {
                Reason::ConnectionRefused
            } else if chain_mentions(err, "dns error") {
                Reason::Dns
            } else if chain_mentions(err, "credentials") {
                Reason::Auth
            } else if chain_mentions(err, "certificate") || chain_mentions(err, "tls") {
                Reason::Tls
            } else {
                Reason::Network
            };
            (reason, errors::describe(err))
        }
        SdkError::ResponseError(_) => (Reason::Protocol, errors::describe(err)),
        SdkError::ConstructionFailure(_) if chain_mentions(err, "credentials") => {
            (Reason::Auth, errors::describe(err))
        }
        _ => (Reason::Internal, errors::describe(err)),
    }
}

fn chain_has_io(err: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    errors::chain(err).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
    })
}

fn chain_mentions(err: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    errors::describe(err).to_ascii_lowercase().contains(needle)
}

crate::checks::kind!(S3Spec => S3Check, "s3", probe "bucket");
