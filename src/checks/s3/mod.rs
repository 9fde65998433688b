//! The `s3` kind: list a bucket (the guides' `aws s3 ls s3://$BUCKET
//! --max-items 1`), optionally head a known object (`aws s3api
//! head-object`), and optionally round-trip a small object (put, get and
//! compare, delete), timing each operation and classifying S3 errors.
//!
//! The SDK client (with its connection pool) is built once and reused by
//! every run. Credentials are explicit keys, or a chain of environment,
//! shared profile files and web identity; cloud metadata services (EC2 IMDS,
//! the ECS container endpoint) are asked only with `metadata_credentials`.
//!
//! The parts: `spec` (the configuration, its validation, the region and
//! checksum settings) and `errors` (classifying the SDK's errors).

mod errors;
mod spec;

use self::errors::{classify, wrong_region_hint};
pub use self::spec::{region_from_endpoint, ChecksumWhen, S3Spec};

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use futures::future::BoxFuture;
use prometheus_client::registry::Unit;

use super::{BuildError, Check, Failure, MetricDesc, Reason, RunContext, RunResult, Sample};
use crate::checks::shared::secret;

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
    /// The region signed for, for messages about a wrong one.
    region: String,
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
        let region = spec.effective_region();
        let (request_checksums, response_checksums) = spec.checksums();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .force_path_style(spec.path_style)
            .request_checksum_calculation(match request_checksums {
                ChecksumWhen::WhenSupported => RequestChecksumCalculation::WhenSupported,
                ChecksumWhen::WhenRequired => RequestChecksumCalculation::WhenRequired,
            })
            .response_checksum_validation(match response_checksums {
                ChecksumWhen::WhenSupported => ResponseChecksumValidation::WhenSupported,
                ChecksumWhen::WhenRequired => ResponseChecksumValidation::WhenRequired,
            })
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
            region,
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

    /// Put, get and compare, delete. Once the put was sent the object is
    /// deleted whatever happens: inline after a failed put, get or
    /// comparison, and by [`Cleanup`] in the background when the run is
    /// cancelled (its timeout) before the delete.
    async fn round_trip(&self, prefix: &str, samples: &mut Vec<Sample>) -> Result<(), Failure> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let token: u64 = rand::random();
        let key = format!("{prefix}{nanos}-{token:016x}");
        let body = format!("runbook-exporter round trip {token:016x}\n");
        let mut cleanup = Cleanup {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: Some(key.clone()),
        };

        let start = Instant::now();
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(body.clone().into_bytes()))
            .send()
            .await
            .map_err(|e| self.failure("put", Some(&key), &e, Vec::new()));
        let got = match put {
            Err(f) => Err(f),
            Ok(_) => {
                samples.push(op_sample("put", start));
                let start = Instant::now();
                let got = self.get(&key).await;
                if got.is_ok() {
                    samples.push(op_sample("get", start));
                }
                got
            }
        };

        let start = Instant::now();
        let deleted = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;
        cleanup.key = None;

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

    /// Get `key` and read its body.
    async fn get(&self, key: &str) -> Result<bytes::Bytes, Failure> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
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
            Err(e) => Err(self.failure("get", Some(key), &e, Vec::new())),
        }
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
        let (reason, mut detail) = classify(err, key.is_some());
        if let Some(hint) = wrong_region_hint(err, &detail, &self.region) {
            detail.push_str(&hint);
        }
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

/// Deletes a round-trip object whose run was cancelled between the put and
/// the delete: a background delete of at most [`CLEANUP_LIMIT`].
struct Cleanup {
    client: Client,
    bucket: String,
    /// `None` once the run deleted (or tried to delete) the object itself.
    key: Option<String>,
}

/// How long a background delete may take.
const CLEANUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = self.client.delete_object().bucket(&self.bucket).key(&key);
        let bucket = self.bucket.clone();
        runtime.spawn(async move {
            match tokio::time::timeout(CLEANUP_LIMIT, request.send()).await {
                Ok(Ok(_)) => tracing::debug!(%bucket, %key, "deleted the round-trip object of a cancelled run"),
                _ => tracing::warn!(%bucket, %key, "could not delete the round-trip object of a cancelled run"),
            }
        });
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

crate::checks::kind!(S3Spec => S3Check, "s3", probe "bucket");
