//! The `s3` kind's configuration: [`S3Spec`] as written in YAML, its
//! validation, its [`ProbeSafety`] facts, and the settings derived from it
//! (the region to sign for, when to send checksums).
//!
//! [`ProbeSafety`]: crate::checks::shared::targets::ProbeSafety

use std::path::PathBuf;

use serde::Deserialize;

use crate::checks::shared::secret::Secret;

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

    /// The bucket's region, which requests are signed for. Default: the
    /// region in an AWS `endpoint` (`https://s3.eu-west-1.amazonaws.com`),
    /// else `us-east-1` (also right for most S3-compatible stores; a MinIO
    /// with `MINIO_SITE_REGION` needs that region here).
    pub region: Option<String>,

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

    /// When the SDK adds a checksum (`x-amz-checksum-*`, aws-chunked
    /// uploads) to requests: `when_supported` (every operation that can
    /// carry one, the SDK's default) or `when_required` (only where the
    /// operation requires one). Default: `when_supported` for AWS, and
    /// `when_required` with an `endpoint`, since several S3-compatible
    /// stores refuse the newer checksum headers.
    pub request_checksum_calculation: Option<ChecksumWhen>,

    /// When the SDK validates a checksum the response carries: as
    /// `request_checksum_calculation`, with the same defaults.
    pub response_checksum_validation: Option<ChecksumWhen>,
}

/// `request_checksum_calculation` / `response_checksum_validation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumWhen {
    WhenSupported,
    WhenRequired,
}

/// The region AWS endpoints carry in their host name:
/// `s3.eu-west-1.amazonaws.com`, `bucket.s3.eu-west-1.amazonaws.com`,
/// `s3.dualstack.eu-west-1.amazonaws.com`, `s3-eu-west-1.amazonaws.com`
/// (legacy), and the global `s3.amazonaws.com` (us-east-1).
pub fn region_from_endpoint(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let label = rest.rsplit('.').next()?;
    match label {
        "s3" | "s3-external-1" => Some("us-east-1".to_string()),
        _ if rest.split('.').any(|l| l == "s3" || l.starts_with("s3-")) => {
            Some(label.strip_prefix("s3-").unwrap_or(label).to_string())
        }
        _ => None,
    }
}

fn default_round_trip_prefix() -> String {
    "runbook-exporter-probe/".to_string()
}

impl S3Spec {
    /// The region requests are signed for: `region`, else the endpoint's,
    /// else `us-east-1`.
    pub fn effective_region(&self) -> String {
        self.region
            .clone()
            .or_else(|| self.endpoint.as_deref().and_then(region_from_endpoint))
            .unwrap_or_else(|| "us-east-1".to_string())
    }

    /// `request_checksum_calculation` and `response_checksum_validation`,
    /// their defaults applied.
    pub(super) fn checksums(&self) -> (ChecksumWhen, ChecksumWhen) {
        let default = if self.endpoint.is_some() {
            ChecksumWhen::WhenRequired
        } else {
            ChecksumWhen::WhenSupported
        };
        (
            self.request_checksum_calculation.unwrap_or(default),
            self.response_checksum_validation.unwrap_or(default),
        )
    }
}

impl crate::checks::shared::targets::ProbeSafety for S3Spec {
    fn credentials(&self) -> Vec<&'static str> {
        let mut found = crate::checks::shared::targets::set_fields(&[
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
    fn endpoints(&self) -> Vec<crate::checks::shared::targets::Endpoint> {
        let base = match &self.endpoint {
            Some(endpoint) => url::Url::parse(endpoint)
                .ok()
                .and_then(|u| crate::checks::shared::targets::Endpoint::from_url(&u, 443)),
            None => Some(crate::checks::shared::targets::Endpoint::new(
                format!("s3.{}.amazonaws.com", self.effective_region()),
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
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_an_aws_endpoint() {
        let region = |e: &str| region_from_endpoint(e);
        assert_eq!(
            region("https://s3.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region("https://b.s3.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region("https://s3.dualstack.ap-south-1.amazonaws.com").as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(
            region("https://s3-eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region("https://s3.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            region("https://s3.amazonaws.com").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(region("http://minio:9000"), None);
        assert_eq!(region("https://ec2.eu-west-1.amazonaws.com"), None);
    }

    #[test]
    fn the_configured_region_wins_and_checksums_default_by_endpoint() {
        let spec = |yaml: &str| -> S3Spec { serde_saphyr::from_str(yaml).unwrap() };
        let aws = spec("bucket: b\nendpoint: https://s3.eu-west-1.amazonaws.com");
        assert_eq!(aws.effective_region(), "eu-west-1");
        let set =
            spec("bucket: b\nregion: eu-test-1\nendpoint: https://s3.eu-west-1.amazonaws.com");
        assert_eq!(set.effective_region(), "eu-test-1");
        assert_eq!(spec("bucket: b").effective_region(), "us-east-1");
        let when = |c| (c, c);
        assert_eq!(
            spec("bucket: b").checksums(),
            when(ChecksumWhen::WhenSupported)
        );
        assert_eq!(
            spec("bucket: b\nendpoint: http://minio:9000").checksums(),
            when(ChecksumWhen::WhenRequired)
        );
        assert_eq!(
            spec("bucket: b\nendpoint: http://minio:9000\nrequest_checksum_calculation: when_supported")
                .checksums(),
            (ChecksumWhen::WhenSupported, ChecksumWhen::WhenRequired)
        );
    }
}
