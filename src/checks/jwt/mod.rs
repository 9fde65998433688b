//! The `jwt` kind: the guides' token section (decode a JWT, check its
//! `exp`, check it is signed with the secret the service uses) on a
//! schedule, so a service-account token, an API token in a Secret or a
//! long-lived integration token does not expire silently.
//!
//! Each run reads the token again (a file, the config, or a GET of `url`),
//! reports its `exp`, `iat` and `nbf`, verifies the signature when `verify`
//! names a key (re-read or re-fetched every run, since keys rotate too),
//! and checks the time window, issuer and audience. The token and the key
//! are never written anywhere: failure messages name files and URLs only.
//!
//! `spec` holds the config, `fetch` the GET over the shared dial path,
//! `verify` the decoding and the signature check; this module runs them.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use hyper::header::HeaderName;
use prometheus_client::registry::Unit;

use super::shared::secret::Secret;
use super::{BuildError, Check, Failure, MetricDesc, Reason, RunContext, RunResult, Sample};

mod fetch;
mod spec;
mod verify;

use fetch::Fetcher;
pub use spec::{JwtSpec, VerifySpec};
use verify::{Claims, KeySource};

/// The `exp` claim.
pub static EXPIRY: MetricDesc = MetricDesc::gauge(
    "jwt_expiry_timestamp",
    Some(Unit::Seconds),
    "The token's exp claim (when it expires) as a Unix timestamp, read in the last scheduled run; absent when the token has no exp.",
);

/// The `iat` claim.
pub static ISSUED_AT: MetricDesc = MetricDesc::gauge(
    "jwt_issued_at_timestamp",
    Some(Unit::Seconds),
    "The token's iat claim (when it was issued) as a Unix timestamp, read in the last scheduled run; absent when the token has no iat.",
);

/// The `nbf` claim.
pub static NOT_BEFORE: MetricDesc = MetricDesc::gauge(
    "jwt_not_before_timestamp",
    Some(Unit::Seconds),
    "The token's nbf claim (when it becomes valid) as a Unix timestamp, read in the last scheduled run; absent when the token has no nbf.",
);

/// Whether the signature verifies under the configured key.
pub static SIGNATURE_VALID: MetricDesc = MetricDesc::gauge(
    "jwt_signature_valid",
    None,
    "1 when the token's signature verified under the key of verify in the last scheduled run, 0 when it did not; absent without verify or when the key could not be read.",
);

/// Every metric this kind can report.
pub static METRICS: [&MetricDesc; 4] = [&EXPIRY, &ISSUED_AT, &NOT_BEFORE, &SIGNATURE_VALID];

/// Where a run reads the token.
enum TokenSource {
    File(PathBuf),
    Inline(Secret),
    Url {
        fetcher: Box<Fetcher>,
        header: Option<HeaderName>,
    },
}

/// A built `jwt` check.
pub struct JwtCheck {
    source: TokenSource,
    key: Option<KeySource>,
    expect_issuer: Option<String>,
    expect_audience: Option<String>,
    /// The token and HMAC secret of the last run, for scrubbing messages.
    last_secrets: Mutex<Vec<String>>,
}

impl JwtCheck {
    pub fn new(spec: &JwtSpec) -> Result<Self, BuildError> {
        let tls = spec.tls.as_ref();
        let source = match (&spec.token_file, &spec.token, &spec.url) {
            (Some(path), _, _) => TokenSource::File(path.clone()),
            (_, Some(token), _) => TokenSource::Inline(token.clone()),
            (_, _, Some(url)) => TokenSource::Url {
                fetcher: Box::new(Fetcher::new("url", url, tls, "*/*")?),
                header: spec
                    .token_header
                    .as_deref()
                    .map(|h| HeaderName::from_bytes(h.as_bytes()))
                    .transpose()
                    .map_err(|e| BuildError::new("token_header", e.to_string()))?,
            },
            _ => return Err(BuildError::new("token_file", "no token source")),
        };
        let key = match &spec.verify {
            None => None,
            Some(VerifySpec {
                hmac_secret_file: Some(path),
                ..
            }) => Some(KeySource::Hmac(path.clone())),
            Some(VerifySpec {
                public_key_file: Some(path),
                ..
            }) => Some(KeySource::PublicKey(path.clone())),
            Some(VerifySpec {
                jwks_url: Some(url),
                ..
            }) => Some(KeySource::Jwks(Box::new(Fetcher::new(
                "verify.jwks_url",
                url,
                tls,
                "application/jwk-set+json, application/json",
            )?))),
            Some(_) => return Err(BuildError::new("verify", "no key")),
        };
        Ok(Self {
            source,
            key,
            expect_issuer: spec.expect_issuer.clone(),
            expect_audience: spec.expect_audience.clone(),
            last_secrets: Mutex::new(Vec::new()),
        })
    }

    /// The token as this run reads it.
    async fn token(&self, deadline: Duration) -> Result<String, Failure> {
        let raw = match &self.source {
            TokenSource::Inline(token) => token.expose().to_string(),
            TokenSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                Failure::new(
                    Reason::Internal,
                    format!("cannot read token_file {}: {e}", path.display()),
                )
            })?,
            TokenSource::Url { fetcher, header } => {
                let fetched = fetcher.get(deadline).await?;
                match header {
                    None => String::from_utf8_lossy(&fetched.body).into_owned(),
                    Some(name) => fetched
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            Failure::new(
                                Reason::UnexpectedResponse,
                                format!(
                                    "GET {} answered without a {name} header",
                                    fetcher.display()
                                ),
                            )
                        })?,
                }
            }
        };
        let token = raw.trim();
        let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
        Ok(token.to_string())
    }

    async fn probe(&self, ctx: &RunContext) -> RunResult {
        // Each GET gets most of the run's time, so a hung server fails
        // with a message naming it before the scheduler's timeout.
        let deadline = ctx.timeout.mul_f64(0.8);
        let token = self.token(deadline).await?;
        self.remember(vec![token.clone()]);
        let (header, claims) = verify::parse(&token)?;
        let mut samples = time_samples(&claims);
        if let Some(key) = &self.key {
            let mut secret = None;
            let verdict = key.verify(&token, &header, deadline, &mut secret).await;
            self.remember([token.clone()].into_iter().chain(secret).collect());
            let verdict = verdict.map_err(|f| {
                let samples = samples.clone();
                Failure { samples, ..f }
            })?;
            samples.push(Sample::new(
                &SIGNATURE_VALID,
                if verdict.is_ok() { 1.0 } else { 0.0 },
            ));
            if let Err(why) = verdict {
                return Err(Failure::new(Reason::Auth, why).with_samples(samples));
            }
        }
        match self.claim_problem(&claims, crate::clock::unix_now()) {
            Some(why) => Err(Failure::new(Reason::Auth, why).with_samples(samples)),
            None => Ok(samples),
        }
    }

    fn remember(&self, secrets: Vec<String>) {
        *self.last_secrets.lock().unwrap_or_else(|e| e.into_inner()) = secrets;
    }

    /// Why the claims make the token unusable now, if they do.
    fn claim_problem(&self, claims: &Claims, now: f64) -> Option<String> {
        if let Some(exp) = claims.exp {
            if exp <= now {
                return Some(format!(
                    "the token expired at {} ({} ago)",
                    when(exp),
                    span(now - exp)
                ));
            }
        }
        if let Some(nbf) = claims.nbf {
            if nbf > now {
                return Some(format!(
                    "the token is not valid before {} (in {})",
                    when(nbf),
                    span(nbf - now)
                ));
            }
        }
        if let Some(expected) = &self.expect_issuer {
            if claims.iss.as_deref() != Some(expected.as_str()) {
                let got = claims
                    .iss
                    .as_ref()
                    .map_or("none".to_string(), |i| format!("{i:?}"));
                return Some(format!("the issuer is {got}, expected {expected:?}"));
            }
        }
        if let Some(expected) = &self.expect_audience {
            if !claims.aud.as_ref().is_some_and(|a| a.contains(expected)) {
                let got = claims
                    .aud
                    .as_ref()
                    .map_or("none".to_string(), |a| a.describe());
                return Some(format!("the audience is {got}, expected {expected:?}"));
            }
        }
        None
    }
}

/// The token's `exp`, `iat` and `nbf` that it has.
fn time_samples(claims: &Claims) -> Vec<Sample> {
    [
        (&EXPIRY, claims.exp),
        (&ISSUED_AT, claims.iat),
        (&NOT_BEFORE, claims.nbf),
    ]
    .into_iter()
    .filter_map(|(desc, value)| {
        value
            .filter(|v| v.is_finite())
            .map(|v| Sample::new(desc, v))
    })
    .collect()
}

/// A Unix time in RFC 3339, to the second.
fn when(t: f64) -> String {
    // A hostile token may carry any number: out of range is written as is.
    let time = Duration::try_from_secs_f64(t)
        .ok()
        .and_then(|d| std::time::UNIX_EPOCH.checked_add(d))
        .filter(|time| humantime::format_rfc3339_seconds(*time).to_string().len() == 20);
    match time {
        Some(time) => humantime::format_rfc3339_seconds(time).to_string(),
        None => format!("{t:e} (Unix time)"),
    }
}

/// A span of seconds, to the second.
fn span(seconds: f64) -> String {
    humantime::format_duration(Duration::from_secs(seconds.max(0.0) as u64)).to_string()
}

impl Check for JwtCheck {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe(ctx))
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = self
            .last_secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let TokenSource::Inline(token) = &self.source {
            secrets.push(token.expose().to_string());
        }
        secrets
    }
}

crate::checks::kind!(JwtSpec => JwtCheck, "jwt");

#[cfg(test)]
mod tests {
    use super::*;

    fn check(extra: &str) -> JwtCheck {
        let spec: JwtSpec = serde_saphyr::from_str(&format!("token: x\n{extra}")).unwrap();
        JwtCheck::new(&spec).unwrap()
    }

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_time_window_issuer_and_audience() {
        let c = check("expect_issuer: https://idp\nexpect_audience: api");
        let ok =
            claims(r#"{"exp": 2000, "nbf": 1000, "iss": "https://idp", "aud": ["web", "api"]}"#);
        assert_eq!(c.claim_problem(&ok, 1500.0), None);
        assert_eq!(
            c.claim_problem(&ok, 2060.0).unwrap(),
            "the token expired at 1970-01-01T00:33:20Z (1m ago)"
        );
        assert_eq!(
            c.claim_problem(&ok, 400.0).unwrap(),
            "the token is not valid before 1970-01-01T00:16:40Z (in 10m)"
        );
        let far = claims(r#"{"exp": 1e300}"#);
        assert_eq!(
            c.claim_problem(&far, 0.0)
                .unwrap()
                .split(',')
                .next()
                .unwrap(),
            "the issuer is none"
        );
        let past = claims(r#"{"exp": -1e300}"#);
        assert_eq!(
            c.claim_problem(&past, 0.0).unwrap(),
            format!(
                "the token expired at -1e300 (Unix time) ({} ago)",
                span(1e300)
            )
        );
        let other = claims(r#"{"iss": "https://other", "aud": "api"}"#);
        assert_eq!(
            c.claim_problem(&other, 0.0).unwrap(),
            "the issuer is \"https://other\", expected \"https://idp\""
        );
        let no_aud = claims(r#"{"iss": "https://idp"}"#);
        assert_eq!(
            c.claim_problem(&no_aud, 0.0).unwrap(),
            "the audience is none, expected \"api\""
        );
    }

    #[test]
    fn a_malformed_token_is_a_protocol_failure_that_does_not_quote_it() {
        for token in [
            "zq-not-a-jwt",
            "a.b.c",
            "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOiJzb29uIn0.c2ln",
        ] {
            let f = verify::parse(token).unwrap_err();
            assert_eq!(f.reason, Reason::Protocol, "{token}: {}", f.message);
            assert!(!f.message.contains(token), "{}", f.message);
            assert!(f.message.starts_with("malformed token: "), "{}", f.message);
        }
    }
}
