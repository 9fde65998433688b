//! How the `s3` kind reads the SDK's errors: a [`Reason`] and a message
//! with the S3 error code, and a hint when the region is wrong.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::checks::shared::errors;
use crate::checks::Reason;

/// When a service error says the request went to or was signed for the
/// wrong region: which region the check used, the bucket's if the server
/// named it (`x-amz-bucket-region`), and the setting to change.
pub(super) fn wrong_region_hint<E>(
    err: &SdkError<E, HttpResponse>,
    detail: &str,
    region: &str,
) -> Option<String> {
    let SdkError::ServiceError(service) = err else {
        return None;
    };
    let raw = service.raw();
    let wrong = [
        "AuthorizationHeaderMalformed",
        "PermanentRedirect",
        "IncorrectEndpoint",
    ]
    .iter()
    .any(|code| detail.starts_with(code))
        || raw.status().as_u16() == 301
        || detail.contains("region is wrong");
    if !wrong {
        return None;
    }
    let theirs = raw
        .headers()
        .get("x-amz-bucket-region")
        .map(|r| format!(" the server says the bucket is in {r};"))
        .unwrap_or_default();
    Some(format!(
        "; the check signs for region {region};{theirs} set `region` to the bucket's region"
    ))
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
pub(super) fn classify<E>(err: &SdkError<E, HttpResponse>, has_key: bool) -> (Reason, String)
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
