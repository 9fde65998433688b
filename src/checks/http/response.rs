//! The expectations on an `http` run's final response: the status among
//! `valid_status_codes`, the body read within `max_body_bytes`, and the
//! `body_must_match`, `body_must_not_match` and `json` expectations on it.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde_json::Value;
use url::Url;

use super::connect::{hyper_failure, Connection};
use super::exchange::display_url;
use super::trace::{Phase, Trace};
use super::HttpCheck;
use crate::checks::shared::errors;
use crate::checks::Reason;

impl HttpCheck {
    /// The final status must be one of `valid_status_codes`; an unexpected
    /// 401, 403 or 407 (from a proxy) fails with reason `auth`.
    pub(super) fn check_status(
        &self,
        status: StatusCode,
        url: &Url,
        redirects: u32,
    ) -> Result<(), (Reason, String)> {
        if self.valid_status.iter().any(|m| m.matches(status)) {
            return Ok(());
        }
        let reason = match status {
            StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::PROXY_AUTHENTICATION_REQUIRED => Reason::Auth,
            _ => Reason::UnexpectedResponse,
        };
        let from = if redirects > 0 {
            format!(" from {}", display_url(url))
        } else {
            String::new()
        };
        Err((
            reason,
            format!(
                "HTTP {}{from} (expected {})",
                describe_status(status),
                self.valid_status_text
            ),
        ))
    }

    /// Read the body of the final response, at most `max_body_bytes`; the
    /// connection is closed once it is read.
    pub(super) async fn read_body(
        &self,
        response: Response<Incoming>,
        connection: Connection,
        trace: &mut Trace,
    ) -> Result<Bytes, (Reason, String)> {
        let started = Instant::now();
        let collected = Limited::new(response.into_body(), self.max_body_bytes)
            .collect()
            .await;
        trace.add(Phase::Transfer, started.elapsed());
        drop(connection);
        let body = collected
            .map_err(|e| self.body_error(e.as_ref()))?
            .to_bytes();
        trace.body_size = Some(body.len());
        Ok(body)
    }

    /// Why reading the body failed: past `max_body_bytes`, or a transport error.
    fn body_error(&self, err: &(dyn std::error::Error + 'static)) -> (Reason, String) {
        if err.is::<LengthLimitError>() {
            return (
                Reason::UnexpectedResponse,
                format!(
                    "response body is larger than max_body_bytes ({} bytes)",
                    self.max_body_bytes
                ),
            );
        }
        match err.downcast_ref::<hyper::Error>() {
            Some(e) => hyper_failure(e),
            None => (
                Reason::Network,
                format!("reading the body: {}", errors::describe(err)),
            ),
        }
    }

    /// The `body_must_match`, `body_must_not_match` and `json` expectations.
    pub(super) fn check_body(&self, body: &[u8]) -> Result<(), (Reason, String)> {
        let unexpected = |message: String| (Reason::UnexpectedResponse, message);
        for re in &self.must_match {
            if !re.is_match(body) {
                return Err(unexpected(format!(
                    "body does not match \"{}\"",
                    re.as_str()
                )));
            }
        }
        for re in &self.must_not_match {
            if re.is_match(body) {
                return Err(unexpected(format!(
                    "body matches \"{}\" (body_must_not_match)",
                    re.as_str()
                )));
            }
        }
        if self.json.is_empty() {
            return Ok(());
        }
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| unexpected(format!("body is not valid JSON: {e}")))?;
        for exp in &self.json {
            let at = if exp.pointer.is_empty() {
                "the JSON body"
            } else {
                exp.pointer.as_str()
            };
            let found = doc
                .pointer(&exp.pointer)
                .ok_or_else(|| unexpected(format!("JSON body has no {at}")))?;
            if let Some(want) = &exp.equals {
                if !json_equal(found, want) {
                    return Err(unexpected(format!(
                        "JSON {at} is {}, expected {}",
                        short_json(found),
                        short_json(want)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `500 Internal Server Error`, or just `599` for unknown codes.
fn describe_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(text) => format!("{} {text}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Equality for `json[].equals`: numbers compare by value.
fn json_equal(found: &Value, want: &Value) -> bool {
    match (found, want) {
        (Value::Number(a), Value::Number(b)) => {
            a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
        }
        _ => found == want,
    }
}

/// A JSON value for a message, cut to a readable length.
fn short_json(value: &Value) -> String {
    const MAX: usize = 80;
    let text = value.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_equal(&serde_json::json!(1), &serde_json::json!(1.0)));
        assert!(!json_equal(&serde_json::json!(1), &serde_json::json!("1")));
    }
}
