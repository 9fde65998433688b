//! The HTTP side of a `clickhouse` check: reading a bounded response body,
//! the `Code: N` of ClickHouse's error bodies, a reason for a failed
//! exchange, and the one-line quote of a body in a message.

use reqwest::Response;

use super::{MAX_RESULT_BYTES, SNIPPET_CHARS};
use crate::checks::shared::errors;
use crate::checks::Reason;

/// Read a response body up to [`MAX_RESULT_BYTES`], lossily as UTF-8.
pub(super) async fn read_limited(mut response: Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESULT_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESULT_BYTES {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The `Code: N` of a ClickHouse error body.
pub(super) fn error_code(body: &str) -> Option<u32> {
    let rest = &body[body.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A reason and a short description for a failed HTTP exchange.
pub(super) fn classify_transport(e: &reqwest::Error) -> (Reason, String) {
    // hyper-util's connector names a failed name lookup "dns error"; its
    // error type is private.
    if let Some(dns) = errors::chain(e).find(|err| err.to_string() == "dns error") {
        let cause = dns.source().map(|c| c.to_string()).unwrap_or_default();
        return (Reason::Dns, format!("cannot resolve the host: {cause}"));
    }
    if let Some(tls) = errors::first_tls(e) {
        return (Reason::Tls, format!("TLS failed: {tls}"));
    }
    match errors::first_io(e) {
        Some(io) => (errors::io_reason(io), io.to_string()),
        None if e.is_timeout() => (Reason::Timeout, e.to_string()),
        None => (Reason::Network, e.to_string()),
    }
}

/// The start of `text` on one line, for a message.
pub(super) fn snippet(text: &str) -> String {
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(SNIPPET_CHARS) {
        Some((i, _)) => format!("{:?}…", &one_line[..i]),
        None => format!("{one_line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read() {
        assert_eq!(
            error_code(
                "Code: 193, e.displayText() = DB::Exception: Wrong password for user runbook"
            ),
            Some(193)
        );
        assert_eq!(error_code("Ok."), None);
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet("a\nb\n"), "\"a b\"");
        assert!(snippet(&"x".repeat(500)).ends_with('…'));
    }
}
