//! The config of a `jwt` check: where the token comes from, how to verify
//! it, what its claims must say, the validation of those fields, and what
//! `/probe` must know of it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::checks::shared::secret::Secret;
use crate::checks::shared::targets::{self, Endpoint, ProbeSafety};
use crate::checks::shared::tls::TlsSpec;

/// Config of a `jwt` check.
///
/// ```yaml
/// - name: api_token
///   kind: jwt
///   token_file: /var/run/secrets/api/token
///   verify:
///     jwks_url: https://issuer.example/.well-known/jwks.json
///   expect_issuer: https://issuer.example
///   expect_audience: api
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    /// A file holding the token, re-read on every run (tokens rotate).
    /// Surrounding whitespace and a `Bearer ` prefix are ignored.
    pub token_file: Option<PathBuf>,

    /// The token itself, usually `${API_TOKEN}`: a secret.
    pub token: Option<Secret>,

    /// Fetch the token on every run with a GET of this URL (`http://` or
    /// `https://`): the response body, or the header `token_header`.
    pub url: Option<String>,

    /// With `url`: take the token from this response header (a `Bearer `
    /// prefix is dropped) instead of the body.
    pub token_header: Option<String>,

    /// TLS options for `url` and `verify.jwks_url`: `ca_file`,
    /// `cert_file`/`key_file`, `server_name`, `insecure_skip_verify`.
    pub tls: Option<TlsSpec>,

    /// Verify the signature under this key. Default: no verification, only
    /// the claims are read.
    pub verify: Option<VerifySpec>,

    /// The `iss` claim the token must carry.
    pub expect_issuer: Option<String>,

    /// A value the `aud` claim (a string or a list) must hold.
    pub expect_audience: Option<String>,
}

/// The key a token's signature is verified under: exactly one of the three.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// A file with the HMAC secret (HS256, HS384, HS512), re-read on every
    /// run; a trailing newline is ignored.
    pub hmac_secret_file: Option<PathBuf>,

    /// A JSON Web Key Set, fetched with a GET on every run; the key is the
    /// one whose `kid` the token names (or the only key of the set).
    pub jwks_url: Option<String>,

    /// A PEM public key (RSA as `PUBLIC KEY` or `RSA PUBLIC KEY`, EC P-256
    /// or P-384, or Ed25519), re-read on every run.
    pub public_key_file: Option<PathBuf>,
}

impl ProbeSafety for JwtSpec {
    fn credentials(&self) -> Vec<&'static str> {
        let verify = self.verify.as_ref();
        targets::set_fields(&[
            ("token", self.token.is_some()),
            ("token_file", self.token_file.is_some()),
            (
                "verify.hmac_secret_file",
                verify.is_some_and(|v| v.hmac_secret_file.is_some()),
            ),
            ("tls.key_file", TlsSpec::has_client_key(self.tls.as_ref())),
        ])
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        let mut endpoints = Vec::new();
        if let Some(url) = &self.url {
            endpoints.extend(Endpoint::of_url(url, 443));
        }
        if let Some(url) = self.verify.as_ref().and_then(|v| v.jwks_url.as_ref()) {
            endpoints.extend(Endpoint::of_url(url, 443));
        }
        endpoints
    }
}

impl JwtSpec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let sources = [
            self.token_file.is_some(),
            self.token.is_some(),
            self.url.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            problems.push((
                "token_file".to_string(),
                "set exactly one of token_file, token or url".to_string(),
            ));
        }
        if self.token_header.is_some() && self.url.is_none() {
            problems.push((
                "token_header".to_string(),
                "is set but url is not: the header is read from url's response".to_string(),
            ));
        }
        if let Some(header) = &self.token_header {
            if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                problems.push((
                    "token_header".to_string(),
                    format!("{header:?} is not a valid header name"),
                ));
            }
        }
        if let Some(url) = &self.url {
            if let Err(e) = parse_url(url) {
                problems.push(("url".to_string(), e));
            }
        }
        if let Some(verify) = &self.verify {
            problems.extend(verify.validate());
        }
        let fetches =
            self.url.is_some() || self.verify.as_ref().is_some_and(|v| v.jwks_url.is_some());
        if self.tls.is_some() && !fetches {
            problems.push((
                "tls".to_string(),
                "is set but neither url nor verify.jwks_url is".to_string(),
            ));
        }
        for (field, value) in [
            ("expect_issuer", &self.expect_issuer),
            ("expect_audience", &self.expect_audience),
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                problems.push((field.to_string(), "is empty".to_string()));
            }
        }
        problems
    }
}

impl VerifySpec {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let keys = [
            self.hmac_secret_file.is_some(),
            self.jwks_url.is_some(),
            self.public_key_file.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            problems.push((
                "verify".to_string(),
                "set exactly one of hmac_secret_file, jwks_url or public_key_file".to_string(),
            ));
        }
        if let Some(url) = &self.jwks_url {
            if let Err(e) = parse_url(url) {
                problems.push(("verify.jwks_url".to_string(), e));
            }
        }
        problems
    }
}

/// An `http://` or `https://` URL with a host and no credentials in it.
pub(super) fn parse_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: the scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(format!("{text:?}: no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not supported".to_string());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<(String, String)> {
        serde_saphyr::from_str::<JwtSpec>(yaml).unwrap().validate()
    }

    #[test]
    fn exactly_one_token_source_and_one_key() {
        assert_eq!(problems("token_file: /t")[..], []);
        assert_eq!(
            problems("token_file: /t\ntoken: x")[0].1,
            "set exactly one of token_file, token or url"
        );
        assert_eq!(problems("{}")[0].0, "token_file");
        assert_eq!(
            problems("token: x\nverify: {hmac_secret_file: /k, public_key_file: /p}")[0],
            (
                "verify".to_string(),
                "set exactly one of hmac_secret_file, jwks_url or public_key_file".to_string()
            )
        );
    }

    #[test]
    fn urls_and_headers_are_checked() {
        assert_eq!(
            problems("url: ftp://x/t")[0],
            (
                "url".to_string(),
                "\"ftp://x/t\": the scheme must be http or https".to_string()
            )
        );
        assert_eq!(
            problems("token: x\ntoken_header: X-Token")[0].0,
            "token_header"
        );
        assert_eq!(
            problems("token: x\nverify: {jwks_url: 'https://u:p@idp/jwks'}")[0],
            (
                "verify.jwks_url".to_string(),
                "credentials in the URL are not supported".to_string()
            )
        );
        assert_eq!(problems("token: x\ntls: {}")[0].0, "tls");
    }

    #[test]
    fn credentials_and_endpoints_for_probe() {
        let spec: JwtSpec = serde_saphyr::from_str(
            "url: https://idp.example/token\nverify: {jwks_url: 'http://keys.example:8080/jwks'}",
        )
        .unwrap();
        assert!(spec.credentials().is_empty());
        assert_eq!(
            spec.endpoints(),
            [
                Endpoint::new("idp.example", 443),
                Endpoint::new("keys.example", 8080)
            ]
        );
        let spec: JwtSpec =
            serde_saphyr::from_str("token: x\nverify: {hmac_secret_file: /k}").unwrap();
        assert_eq!(spec.credentials(), ["token", "verify.hmac_secret_file"]);
    }
}
