//! Reading a token without trusting it (its header and the claims the
//! check reports), and verifying its signature under the configured key:
//! an HMAC secret file, a PEM public key file (both re-read every run) or
//! a JWKS fetched every run. The token and the key never reach a message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Header, Validation};
use serde::Deserialize;

use super::fetch::Fetcher;
use crate::checks::{Failure, Reason};

/// The claims the check reads; any others are ignored.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Claims {
    pub(super) exp: Option<f64>,
    pub(super) iat: Option<f64>,
    pub(super) nbf: Option<f64>,
    pub(super) iss: Option<String>,
    pub(super) aud: Option<Audience>,
}

/// `aud`: one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(super) fn contains(&self, value: &str) -> bool {
        match self {
            Audience::One(a) => a == value,
            Audience::Many(all) => all.iter().any(|a| a == value),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Audience::One(a) => format!("{a:?}"),
            Audience::Many(all) => format!("{all:?}"),
        }
    }
}

/// The header and claims of `token`, unverified; a failure (`protocol`)
/// when it is not a JWT.
pub(super) fn parse(token: &str) -> Result<(Header, Claims), Failure> {
    let data = jsonwebtoken::dangerous::insecure_decode::<Claims>(token).map_err(|e| {
        Failure::new(
            Reason::Protocol,
            format!("malformed token: {}", describe(&e)),
        )
    })?;
    Ok((data.header, data.claims))
}

/// A jsonwebtoken error in words, never quoting the token, the key or a
/// claim's value.
fn describe(e: &JwtError) -> String {
    match e.kind() {
        ErrorKind::InvalidToken => "not three base64url parts separated by dots".to_string(),
        ErrorKind::Base64(_) => "a part is not base64url".to_string(),
        ErrorKind::Utf8(_) => "a part is not UTF-8".to_string(),
        ErrorKind::Json(j) => format!(
            "the header or claims are not the JSON objects a JWT holds (exp, iat and nbf must be numbers; {:?} error at column {})",
            j.classify(),
            j.column()
        ),
        ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
            "the header names no supported alg".to_string()
        }
        other => format!("{other:?}"),
    }
}

/// Where the verification key comes from.
pub(super) enum KeySource {
    Hmac(PathBuf),
    PublicKey(PathBuf),
    Jwks(Box<Fetcher>),
}

/// The outcome of a verification that could be done: `Err` says why the
/// signature is not valid under the configured key.
pub(super) type Verdict = Result<(), String>;

impl KeySource {
    /// Verify `token` (whose header is `header`) under the key. A failure
    /// when the key cannot be had at all; `secret` receives the HMAC
    /// secret read, for scrubbing.
    pub(super) async fn verify(
        &self,
        token: &str,
        header: &Header,
        deadline: Duration,
        secret: &mut Option<String>,
    ) -> Result<Verdict, Failure> {
        let key = match self {
            KeySource::Hmac(path) => {
                let text = read("verify.hmac_secret_file", path)?;
                let text = String::from_utf8_lossy(&text)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                let key = DecodingKey::from_secret(text.as_bytes()).map_err(|e| {
                    Failure::new(
                        Reason::Internal,
                        format!("HMAC key setup failed: {:?}", e.kind()),
                    )
                })?;
                *secret = Some(text);
                key
            }
            KeySource::PublicKey(path) => public_key(path, &read("verify.public_key_file", path)?)?,
            KeySource::Jwks(fetcher) => match jwks_key(fetcher, header, deadline).await? {
                Ok(key) => key,
                Err(why) => return Ok(Err(why)),
            },
        };
        Ok(check_signature(token, header, &key))
    }
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| {
        Failure::new(
            Reason::Internal,
            format!("cannot read {field} {}: {e}", path.display()),
        )
    })
}

/// The first of RSA, EC and Ed25519 that the PEM file holds.
fn public_key(path: &Path, pem: &[u8]) -> Result<DecodingKey, Failure> {
    DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .map_err(|_| {
            Failure::new(
                Reason::Internal,
                format!(
                    "verify.public_key_file {}: no RSA, EC or Ed25519 public key in PEM form",
                    path.display()
                ),
            )
        })
}

/// The key of the JWKS that the token's `kid` names (or the only key of
/// the token's family when it names none).
async fn jwks_key(
    fetcher: &Fetcher,
    header: &Header,
    deadline: Duration,
) -> Result<Result<DecodingKey, String>, Failure> {
    let fetched = fetcher.get(deadline).await?;
    let set: JwkSet = serde_json::from_slice(&fetched.body).map_err(|e| {
        Failure::new(
            Reason::Protocol,
            format!(
                "GET {}: not a JWK Set ({:?} error at line {} column {})",
                fetcher.display(),
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })?;
    let family = header.alg.family();
    let jwk = match &header.kid {
        Some(kid) => match set.find(kid) {
            Some(jwk) => jwk,
            None => {
                return Ok(Err(format!(
                    "the JWKS at {} has no key with the token's kid {kid:?}",
                    fetcher.display()
                )))
            }
        },
        None => {
            let fits: Vec<_> = set
                .keys
                .iter()
                .filter(|k| jwk_family(k) == Some(family))
                .collect();
            match fits[..] {
                [only] => only,
                _ => {
                    return Ok(Err(format!(
                        "the token names no kid and the JWKS at {} has {} {family:?} keys, not one",
                        fetcher.display(),
                        fits.len()
                    )))
                }
            }
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| {
        Failure::new(
            Reason::Protocol,
            format!(
                "GET {}: unusable key in the JWK Set: {:?}",
                fetcher.display(),
                e.kind()
            ),
        )
    })?;
    Ok(Ok(key))
}

fn jwk_family(jwk: &jsonwebtoken::jwk::Jwk) -> Option<AlgorithmFamily> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    Some(match &jwk.algorithm {
        P::RSA(_) => AlgorithmFamily::Rsa,
        P::EllipticCurve(_) => AlgorithmFamily::Ec,
        P::OctetKeyPair(_) => AlgorithmFamily::Ed,
        P::OctetKey(_) => AlgorithmFamily::Hmac,
        _ => return None,
    })
}

/// Whether the signature verifies under `key` with the header's `alg`,
/// which must belong to the key's family (no algorithm confusion).
fn check_signature(token: &str, header: &Header, key: &DecodingKey) -> Verdict {
    let family = header.alg.family();
    if family != key.family() {
        return Err(format!(
            "the token is signed with {:?} but the key is {:?}",
            header.alg,
            key.family()
        ));
    }
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    match jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature => {
                format!(
                    "the {:?} signature does not verify under the key",
                    header.alg
                )
            }
            _ => format!("the signature cannot be verified: {}", describe(&e)),
        }),
    }
}
