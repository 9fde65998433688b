//! Securing the HTTP endpoints with the web configuration file format of
//! the Prometheus exporter-toolkit (`--web.config.file`): TLS with optional
//! client-certificate verification, bcrypt basic auth, and extra response
//! headers. It covers every endpoint the exporter serves.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: clients-ca.crt                 # with client auth
//!   min_version: TLS12                             # TLS12 or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                         # bcrypt hash
//! http_server_config:
//!   headers: {X-Frame-Options: deny}
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::config::{self, ConfigErrors};

/// The web config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    /// Serve HTTPS instead of HTTP.
    pub tls_server_config: Option<TlsServerConfig>,
    /// User name → bcrypt hash of the password. Any user listed must
    /// authenticate on every endpoint.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    pub http_server_config: Option<HttpServerConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_auth_type: ClientAuthType,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
}

/// The exporter-toolkit's client authentication modes that rustls supports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ClientAuthType {
    #[default]
    NoClientCert,
    /// Verify a client certificate when one is presented.
    VerifyClientCertIfGiven,
    /// Require a client certificate signed by `client_ca_file`.
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    TLS12,
    TLS13,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Headers added to every response.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The web config, loaded and ready to use.
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    auth: Option<Arc<BasicAuth>>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl WebConfig {
    /// Plain HTTP, no authentication: the default without a web config.
    pub fn insecure() -> Self {
        Self {
            tls: None,
            auth: None,
            headers: Arc::new(Vec::new()),
        }
    }

    /// Load and check a web config file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let file: WebConfigFile = config::parse_file(path)?;
        let problem = |field: &str, message: String| {
            ConfigErrors(vec![config::ConfigError {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                field: field.to_string(),
                message,
            }])
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = match &file.tls_server_config {
            None => None,
            Some(t) => Some(Arc::new(
                server_tls(t, base).map_err(|(f, m)| problem(&f, m))?,
            )),
        };
        for (user, hash) in &file.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(problem(
                    &format!("basic_auth_users.{user}"),
                    "not a bcrypt hash (create one with `htpasswd -nBC 10 USER`)".into(),
                ));
            }
        }
        let auth = (!file.basic_auth_users.is_empty()).then(|| {
            Arc::new(BasicAuth {
                users: file.basic_auth_users,
                verified: Arc::default(),
                bcrypt: OneAtATime::new(),
            })
        });
        let mut headers = Vec::new();
        if let Some(http) = &file.http_server_config {
            for (k, v) in &http.headers {
                let name = HeaderName::try_from(k.as_str()).map_err(|e| {
                    problem(&format!("http_server_config.headers.{k}"), e.to_string())
                })?;
                let value = HeaderValue::try_from(v.as_str()).map_err(|e| {
                    problem(&format!("http_server_config.headers.{k}"), e.to_string())
                })?;
                headers.push((name, value));
            }
        }
        Ok(Self {
            tls,
            auth,
            headers: Arc::new(headers),
        })
    }

    /// Wrap `router` in the authentication and header layers.
    pub fn apply(&self, router: axum::Router) -> axum::Router {
        let mut router = router;
        if let Some(auth) = &self.auth {
            router = router.layer(axum::middleware::from_fn_with_state(
                auth.clone(),
                require_basic_auth,
            ));
        }
        if !self.headers.is_empty() {
            router = router.layer(axum::middleware::from_fn_with_state(
                self.headers.clone(),
                add_headers,
            ));
        }
        router
    }
}

fn server_tls(t: &TlsServerConfig, base: &Path) -> Result<ServerConfig, (String, String)> {
    let rel = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let cert_path = rel(&t.cert_file);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect())
        .map_err(|e| {
            (
                "tls_server_config.cert_file".to_string(),
                format!("{}: {e}", cert_path.display()),
            )
        })?;
    let key_path = rel(&t.key_file);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        (
            "tls_server_config.key_file".to_string(),
            format!("{}: {e}", key_path.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::TLS12, &rustls::version::TLS12),
        (TlsVersion::TLS13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| {
        t.min_version.is_none_or(|min| *v >= min) && t.max_version.is_none_or(|max| *v <= max)
    })
    .map(|(_, p)| p)
    .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ("tls_server_config.min_version".to_string(), e.to_string()))?;
    let builder = match t.client_auth_type {
        ClientAuthType::NoClientCert => builder.with_no_client_auth(),
        mode => {
            let Some(ca) = &t.client_ca_file else {
                return Err((
                    "tls_server_config.client_ca_file".into(),
                    format!("required with client_auth_type {mode:?}"),
                ));
            };
            let ca_path = rel(ca);
            let mut roots = RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca_path)
                .and_then(|it| it.collect())
                .map_err(|e| {
                    (
                        "tls_server_config.client_ca_file".to_string(),
                        format!("{}: {e}", ca_path.display()),
                    )
                })?;
            roots.add_parsable_certificates(certs);
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuthType::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| {
                (
                    "tls_server_config.client_ca_file".to_string(),
                    e.to_string(),
                )
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| ("tls_server_config.cert_file".to_string(), e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Users and bcrypt hashes, plus a cache of credentials already verified:
/// bcrypt is deliberately slow, and Prometheus sends the same credentials
/// on every scrape. The cache holds SHA-256 digests, never passwords.
/// Credentials not in the cache (wrong ones included) are verified one at a
/// time, so a flood of bad passwords costs at most one CPU.
struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Arc<Mutex<HashSet<Vec<u8>>>>,
    bcrypt: OneAtATime,
}

/// Entries kept in the verified-credentials cache before it is cleared.
const MAX_VERIFIED: usize = 256;

impl BasicAuth {
    async fn allows(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b64| BASE64_STANDARD.decode(b64.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
        else {
            return false;
        };
        let Some(hash) = self.users.get(&user).cloned() else {
            return false;
        };
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{user}\0{password}\0{hash}").as_bytes(),
        )
        .as_ref()
        .to_vec();
        let cached = |verified: &Mutex<HashSet<Vec<u8>>>, digest: &[u8]| {
            verified.lock().is_ok_and(|v| v.contains(digest))
        };
        if cached(&self.verified, &digest) {
            return true;
        }
        let (verified, key) = (self.verified.clone(), digest.clone());
        let ok = self
            .bcrypt
            .run(move || {
                // Another request may have verified the same credentials
                // while this one waited its turn.
                cached(&verified, &key) || bcrypt::verify(password, &hash).unwrap_or(false)
            })
            .await;
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= MAX_VERIFIED {
                    v.clear();
                }
                v.insert(digest);
            }
        }
        ok
    }
}

/// Longest a request waits for its turn to verify a password not cached.
const MAX_VERIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs blocking verifications on tokio's blocking pool one at a time.
struct OneAtATime(Arc<Semaphore>);

impl OneAtATime {
    fn new() -> Self {
        Self(Arc::new(Semaphore::new(1)))
    }

    /// Wait for the turn (at most [`MAX_VERIFY_WAIT`]; longer is a refusal,
    /// so a flood of wrong passwords cannot hold connections in a queue),
    /// then run `verify` on the blocking pool. The turn is released when
    /// `verify` returns, even if the caller has given up.
    async fn run(&self, verify: impl FnOnce() -> bool + Send + 'static) -> bool {
        let turn = tokio::time::timeout(MAX_VERIFY_WAIT, self.0.clone().acquire_owned()).await;
        let Ok(Ok(turn)) = turn else {
            return false; // waited too long (the semaphore is never closed)
        };
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            verify()
        })
        .await
        .unwrap_or(false)
    }
}

async fn require_basic_auth(
    State(auth): State<Arc<BasicAuth>>,
    req: Request,
    next: Next,
) -> Response {
    if auth.allows(req.headers().get(header::AUTHORIZATION)).await {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"runbook-exporter\"")],
            "Unauthorized\n",
        )
            .into_response()
    }
}

async fn add_headers(
    State(headers): State<Arc<Vec<(HeaderName, HeaderValue)>>>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    for (k, v) in headers.iter() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Counts verifications running at once, and the most seen.
    #[derive(Default)]
    struct Overlap {
        running: AtomicUsize,
        most: AtomicUsize,
        finished: AtomicUsize,
    }

    impl Overlap {
        fn verify(&self, answer: bool) -> bool {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.finished.fetch_add(1, Ordering::SeqCst);
            answer
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verifications_never_overlap_even_when_callers_give_up() {
        let serial = Arc::new(OneAtATime::new());
        let overlap = Arc::new(Overlap::default());
        let callers: Vec<_> = (0..20)
            .map(|i| {
                let (serial, overlap) = (serial.clone(), overlap.clone());
                tokio::spawn(async move { serial.run(move || overlap.verify(i == 0)).await })
            })
            .collect();
        // Once verifications are under way, every other caller gives up,
        // some while waiting for the turn, maybe one while running.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while overlap.finished.load(Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "nothing verified");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut kept = Vec::new();
        for (i, caller) in callers.into_iter().enumerate() {
            if i % 2 == 1 {
                caller.abort();
            } else {
                kept.push((i, caller));
            }
        }
        for (i, caller) in kept {
            let answer = tokio::time::timeout(Duration::from_secs(10), caller)
                .await
                .expect("verification finishes")
                .unwrap();
            assert_eq!(answer, i == 0, "caller {i}");
        }
        assert_eq!(overlap.most.load(Ordering::SeqCst), 1);
    }
}
