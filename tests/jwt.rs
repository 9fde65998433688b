//! The `jwt` kind with real tokens made here: HS256 under a secret file,
//! RS256 under a JWKS served on loopback and under a PEM public key file;
//! valid, expiring, expired, not yet valid, badly signed and wrongly
//! issued tokens; a token file rotated between runs; tokens fetched from a
//! URL; and what the exporter shows of them on /metrics and the status page.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get as route_get;
use axum::Router;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use runbook_exporter::checks::{Check, Failure, Reason, Sample};
use serde_json::{json, Value};
use tempfile::TempDir;

use common::{build, ctx};

const SECRET: &str = "hs-secret-7d1e-for-tests-only";
const ISSUER: &str = "https://issuer.example";
const DAY: i64 = 86_400;

fn now() -> i64 {
    runbook_exporter::clock::unix_now() as i64
}

/// Claims issued an hour ago, expiring `exp_in` seconds from now.
fn claims(exp_in: i64) -> Value {
    json!({"sub": "svc-reporting", "iss": ISSUER, "aud": "api", "iat": now() - 3600, "exp": now() + exp_in})
}

fn hs256(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

/// An RSA key pair made for the test: the signing key, the public key as
/// SPKI PEM, and its JWK with `kid`.
struct RsaKey {
    signing: EncodingKey,
    public_pem: String,
    jwk: Jwk,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn rsa_key(kid: &str) -> RsaKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let private: aws_lc_rs::encoding::Pkcs8V1Der = pair.as_der().unwrap();
    let signing =
        EncodingKey::from_rsa_pem(pem("PRIVATE KEY", private.as_ref()).as_bytes()).unwrap();
    let public: aws_lc_rs::encoding::PublicKeyX509Der =
        aws_lc_rs::signature::KeyPair::public_key(&pair)
            .as_der()
            .unwrap();
    let mut jwk = Jwk::from_encoding_key(&signing, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    RsaKey {
        signing,
        public_pem: pem("PUBLIC KEY", public.as_ref()),
        jwk,
    }
}

fn rs256(claims: &Value, key: &RsaKey, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &key.signing).unwrap()
}

async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    tokio::time::timeout(Duration::from_secs(20), check.run(&ctx()))
        .await
        .expect("the run finishes")
}

fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.desc.name == name)
        .map(|s| s.value)
}

/// A failure of `reason`; its message and samples hold neither `secrets`.
fn failure(result: Result<Vec<Sample>, Failure>, reason: Reason, secrets: &[&str]) -> Failure {
    let f = result.expect_err("the run fails");
    assert_eq!(f.reason, reason, "{}", f.message);
    for secret in secrets {
        assert!(!f.message.contains(secret), "{}", f.message);
    }
    f
}

/// A token file and an HMAC secret file in a temporary directory.
struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Self {
        let files = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        files.write("hmac", &format!("{SECRET}\n"));
        files
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn hmac_check(&self, extra: &str) -> Box<dyn Check> {
        build(&format!(
            "kind: jwt\ntoken_file: {}\nverify: {{hmac_secret_file: {}}}\n{extra}",
            self.path("token"),
            self.path("hmac")
        ))
    }
}

#[tokio::test]
async fn hs256_valid_expiring_expired_and_not_yet_valid() {
    let files = Files::new();
    let check = files.hmac_check("expect_issuer: https://issuer.example\nexpect_audience: api");

    let valid = claims(30 * DAY);
    files.write("token", &hs256(&valid, SECRET));
    let s = run(check.as_ref()).await.expect("a valid token passes");
    assert_eq!(value(&s, "jwt_expiry_timestamp"), valid["exp"].as_f64());
    assert_eq!(value(&s, "jwt_issued_at_timestamp"), valid["iat"].as_f64());
    assert_eq!(value(&s, "jwt_not_before_timestamp"), None, "no nbf claim");
    assert_eq!(value(&s, "jwt_signature_valid"), Some(1.0));

    // Expiring within a day: still valid, and the expiry says so.
    let expiring = claims(3600);
    files.write("token", &format!("Bearer {}\n", hs256(&expiring, SECRET)));
    let s = run(check.as_ref())
        .await
        .expect("an expiring token still passes");
    assert_eq!(value(&s, "jwt_expiry_timestamp"), expiring["exp"].as_f64());

    let expired = claims(-2 * 3600);
    let token = hs256(&expired, SECRET);
    files.write("token", &token);
    let f = failure(run(check.as_ref()).await, Reason::Auth, &[&token, SECRET]);
    assert!(
        f.message.starts_with("the token expired at "),
        "{}",
        f.message
    );
    assert!(f.message.ends_with("(2h ago)"), "{}", f.message);
    // What stays true is kept: the expiry the alerts read.
    assert_eq!(
        value(&f.samples, "jwt_expiry_timestamp"),
        expired["exp"].as_f64()
    );
    assert_eq!(value(&f.samples, "jwt_signature_valid"), Some(1.0));

    let mut later = claims(DAY);
    later["nbf"] = json!(now() + 600);
    files.write("token", &hs256(&later, SECRET));
    let f = failure(run(check.as_ref()).await, Reason::Auth, &[SECRET]);
    assert!(
        f.message.starts_with("the token is not valid before "),
        "{}",
        f.message
    );
    assert_eq!(
        value(&f.samples, "jwt_not_before_timestamp"),
        later["nbf"].as_f64()
    );
}

#[tokio::test]
async fn a_bad_signature_a_wrong_issuer_and_a_malformed_token() {
    let files = Files::new();
    let check = files.hmac_check("expect_issuer: https://issuer.example");

    let token = hs256(&claims(DAY), "another-secret-9a3f");
    files.write("token", &token);
    let f = failure(run(check.as_ref()).await, Reason::Auth, &[&token, SECRET]);
    assert_eq!(
        f.message,
        "the HS256 signature does not verify under the key"
    );
    assert_eq!(value(&f.samples, "jwt_signature_valid"), Some(0.0));
    assert!(value(&f.samples, "jwt_expiry_timestamp").is_some());

    let mut foreign = claims(DAY);
    foreign["iss"] = json!("https://evil.example");
    files.write("token", &hs256(&foreign, SECRET));
    let f = failure(run(check.as_ref()).await, Reason::Auth, &[SECRET]);
    assert_eq!(
        f.message,
        "the issuer is \"https://evil.example\", expected \"https://issuer.example\""
    );
    assert_eq!(value(&f.samples, "jwt_signature_valid"), Some(1.0));

    files.write("token", "zq-this-is-no-token\n");
    let f = failure(
        run(check.as_ref()).await,
        Reason::Protocol,
        &["zq-this-is-no-token"],
    );
    assert!(f.message.starts_with("malformed token: "), "{}", f.message);
    assert!(f.samples.is_empty());
}

#[tokio::test]
async fn a_rotated_token_file_is_read_on_the_next_run() {
    let files = Files::new();
    let check = files.hmac_check("");
    files.write("token", &hs256(&claims(-60), SECRET));
    failure(run(check.as_ref()).await, Reason::Auth, &[SECRET]);

    // The token is rotated in place, as a Secret volume does: the same
    // check, not rebuilt, reads the new one.
    let rotated = claims(7 * DAY);
    files.write("token", &hs256(&rotated, SECRET));
    let s = run(check.as_ref()).await.expect("the rotated token passes");
    assert_eq!(value(&s, "jwt_expiry_timestamp"), rotated["exp"].as_f64());

    // The signing secret is rotated too, but the token is not: the old
    // token no longer verifies.
    files.write("hmac", "hs-secret-rotated-2b7c\n");
    let f = failure(
        run(check.as_ref()).await,
        Reason::Auth,
        &["hs-secret-rotated-2b7c"],
    );
    assert_eq!(value(&f.samples, "jwt_signature_valid"), Some(0.0));

    // The token file disappears: internal, naming the path.
    std::fs::remove_file(files.path("token")).unwrap();
    let f = failure(run(check.as_ref()).await, Reason::Internal, &[]);
    assert!(
        f.message
            .starts_with(&format!("cannot read token_file {}: ", files.path("token"))),
        "{}",
        f.message
    );
}

/// What the loopback server serves: the key set, a token, and whether it
/// answers at all.
#[derive(Default)]
struct Served {
    keys: Vec<Jwk>,
    token: String,
    down: bool,
    requests: usize,
}

type Shared = Arc<Mutex<Served>>;

async fn jwks(State(served): State<Shared>) -> Response {
    let mut served = served.lock().unwrap();
    served.requests += 1;
    if served.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let set = JwkSet {
        keys: served.keys.clone(),
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/jwk-set+json")],
        serde_json::to_string(&set).unwrap(),
    )
        .into_response()
}

async fn token_body(State(served): State<Shared>) -> String {
    format!("{}\n", served.lock().unwrap().token)
}

async fn token_header(State(served): State<Shared>) -> Response {
    let token = served.lock().unwrap().token.clone();
    (
        [("x-api-token", format!("Bearer {token}"))],
        "see the header",
    )
        .into_response()
}

/// The key set and token endpoints on 127.0.0.1.
async fn start(served: Shared) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/.well-known/jwks.json", route_get(jwks))
        .route("/token", route_get(token_body))
        .route("/token-in-header", route_get(token_header))
        .with_state(served);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn rs256_verified_under_a_jwks_served_on_loopback() {
    let key = rsa_key("k1");
    let other = rsa_key("k1");
    let served = Shared::default();
    served.lock().unwrap().keys = vec![key.jwk.clone()];
    let addr = start(served.clone()).await;
    let files = Files::new();
    let check = build(&format!(
        "kind: jwt\ntoken_file: {}\nverify: {{jwks_url: 'http://{addr}/.well-known/jwks.json'}}\nexpect_audience: api",
        files.path("token")
    ));

    files.write("token", &rs256(&claims(DAY), &key, "k1"));
    let s = run(check.as_ref())
        .await
        .expect("an RS256 token under the JWKS passes");
    assert_eq!(value(&s, "jwt_signature_valid"), Some(1.0));
    assert_eq!(served.lock().unwrap().requests, 1);

    // Signed by another key under the same kid: a bad signature.
    files.write("token", &rs256(&claims(DAY), &other, "k1"));
    let f = failure(run(check.as_ref()).await, Reason::Auth, &[]);
    assert_eq!(
        f.message,
        "the RS256 signature does not verify under the key"
    );
    assert_eq!(value(&f.samples, "jwt_signature_valid"), Some(0.0));

    // A kid the set does not have (the issuer rotated its keys).
    files.write("token", &rs256(&claims(DAY), &key, "k2"));
    let f = failure(run(check.as_ref()).await, Reason::Auth, &[]);
    assert_eq!(
        f.message,
        format!("the JWKS at http://{addr}/.well-known/jwks.json has no key with the token's kid \"k2\"")
    );
    // ... and once the set publishes it, the next run fetches it.
    let mut k2 = key.jwk.clone();
    k2.common.key_id = Some("k2".to_string());
    served.lock().unwrap().keys.push(k2);
    run(check.as_ref()).await.expect("the new kid is fetched");

    // An HS256 token against RSA keys is refused, not verified with the
    // public key as an HMAC secret.
    files.write("token", &hs256(&claims(DAY), &key.public_pem));
    let f = failure(run(check.as_ref()).await, Reason::Auth, &[]);
    assert!(
        f.message.starts_with("the token names no kid and the JWKS"),
        "{}",
        f.message
    );

    // The key server fails: no verdict, no signature series.
    served.lock().unwrap().down = true;
    files.write("token", &rs256(&claims(DAY), &key, "k1"));
    let f = failure(run(check.as_ref()).await, Reason::UnexpectedResponse, &[]);
    assert_eq!(
        f.message,
        format!("GET http://{addr}/.well-known/jwks.json failed: answered 503 Service Unavailable")
    );
    assert_eq!(value(&f.samples, "jwt_signature_valid"), None);
    assert!(value(&f.samples, "jwt_expiry_timestamp").is_some());
}

#[tokio::test]
async fn a_hung_or_closed_key_server_fails_within_the_deadline() {
    let target = common::silent_target();
    let files = Files::new();
    let key = rsa_key("k1");
    files.write("token", &rs256(&claims(DAY), &key, "k1"));
    let check = build(&format!(
        "kind: jwt\ntoken_file: {}\nverify: {{jwks_url: 'http://{}/jwks'}}",
        files.path("token"),
        target.addr
    ));
    let f = failure(run(check.as_ref()).await, Reason::Timeout, &[]);
    assert_eq!(
        f.message,
        format!(
            "GET http://{}/jwks did not finish within 4000 ms",
            target.addr
        )
    );

    let closed = common::closed_port();
    let check = build(&format!(
        "kind: jwt\ntoken_file: {}\nverify: {{jwks_url: 'http://{closed}/jwks'}}",
        files.path("token")
    ));
    let f = failure(run(check.as_ref()).await, Reason::ConnectionRefused, &[]);
    assert!(
        f.message.starts_with(&format!(
            "GET http://{closed}/jwks failed: connect to {closed} failed"
        )),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn rs256_verified_under_a_public_key_file() {
    let key = rsa_key("k1");
    let files = Files::new();
    files.write("key.pem", &key.public_pem);
    let check = build(&format!(
        "kind: jwt\ntoken_file: {}\nverify: {{public_key_file: {}}}",
        files.path("token"),
        files.path("key.pem")
    ));
    files.write("token", &rs256(&claims(DAY), &key, "k1"));
    let s = run(check.as_ref()).await.expect("passes under the PEM key");
    assert_eq!(value(&s, "jwt_signature_valid"), Some(1.0));

    files.write("token", &rs256(&claims(DAY), &rsa_key("k1"), "k1"));
    let f = failure(run(check.as_ref()).await, Reason::Auth, &[]);
    assert_eq!(value(&f.samples, "jwt_signature_valid"), Some(0.0));

    files.write("key.pem", "not a key\n");
    let f = failure(run(check.as_ref()).await, Reason::Internal, &[]);
    assert_eq!(
        f.message,
        format!(
            "verify.public_key_file {}: no RSA, EC or Ed25519 public key in PEM form",
            files.path("key.pem")
        )
    );
}

#[tokio::test]
async fn a_token_fetched_from_a_url_body_or_header() {
    let served = Shared::default();
    let addr = start(served.clone()).await;
    let token = hs256(&claims(DAY), SECRET);
    served.lock().unwrap().token = token.clone();
    let files = Files::new();
    for extra in [
        "url: 'http://ADDR/token'",
        "url: 'http://ADDR/token-in-header'\ntoken_header: X-Api-Token",
    ] {
        let check = build(&format!(
            "kind: jwt\n{}\nverify: {{hmac_secret_file: {}}}",
            extra.replace("ADDR", &addr.to_string()),
            files.path("hmac")
        ));
        let s = run(check.as_ref()).await.expect("the fetched token passes");
        assert_eq!(value(&s, "jwt_signature_valid"), Some(1.0), "{extra}");
        // The fetched token is scrubbed from messages like an inline one.
        assert!(check.secrets().contains(&token));
    }
}

/// What a user sees through the exporter: the series on /metrics and the
/// reason on the status page, and neither the token nor the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_shows_the_expiry_and_the_reason_but_never_the_token() {
    let files = Files::new();
    let expired = claims(-DAY);
    let token = hs256(&expired, SECRET);
    files.write("token", &token);
    let config = format!(
        "checks:\n  - name: api_token\n    kind: jwt\n    interval: 1s\n    timeout: 500ms\n    token_file: {}\n    verify: {{hmac_secret_file: {}}}\n",
        files.path("token"),
        files.path("hmac")
    );
    let (_app, addr, _dir) = common::serve_config(&config).await;
    let metrics = std::cell::RefCell::new(String::new());
    common::wait_until(
        Duration::from_secs(10),
        || {
            *metrics.borrow_mut() = common::get(addr, "/metrics").body;
            common::sample(
                &metrics.borrow(),
                "runbook_check_failures_total",
                "reason=\"auth\"",
            )
            .is_some_and(|n| n >= 1.0)
        },
        || {
            format!(
                "an auth failure of the jwt check on /metrics:\n{}",
                metrics.borrow()
            )
        },
    )
    .await;
    let metrics = metrics.into_inner();
    assert_eq!(
        common::sample(
            &metrics,
            "runbook_jwt_expiry_timestamp_seconds",
            "check=\"api_token\""
        ),
        expired["exp"].as_f64()
    );
    assert_eq!(
        common::sample(
            &metrics,
            "runbook_jwt_signature_valid",
            "check=\"api_token\""
        ),
        Some(1.0)
    );
    let page = common::get(addr, "/").body;
    assert!(page.contains("the token expired at "), "{page}");
    for text in [&metrics, &page] {
        assert!(!text.contains(&token) && !text.contains(SECRET));
    }
}
