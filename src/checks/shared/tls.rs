//! TLS client settings shared by the kinds that speak TLS (http, tcp, and
//! later the database kinds), and the certificate-expiry measurement.

use std::path::PathBuf;
use std::sync::{Arc, Once, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::Deserialize;

use crate::checks::{BuildError, MetricDesc, Sample};
use prometheus_client::registry::Unit;

/// Make ring rustls's process-wide crypto provider. Our own TLS configs name
/// ring explicitly, but libraries that build theirs from the process default
/// (the Kubernetes client) need one set: with the AWS SDK's aws-lc-rs also
/// compiled in, rustls cannot pick one by itself. Idempotent.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means another provider was installed first; that one
        // serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// TLS options of a check (`tls:` in the config).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file of CA certificates to trust, in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for servers that require mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name to send in SNI and verify the certificate against; default: the
    /// target's host.
    pub server_name: Option<String>,
    /// Accept any certificate. For testing only: it disables the protection
    /// TLS gives. Expiry is still measured.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Accept a server certificate that is marked as a CA (basic
    /// constraints `CA:TRUE`, as `openssl req -x509` makes by default),
    /// which is otherwise refused with `CaUsedAsEndEntity`, but only when
    /// that very certificate is in `ca_file`; its validity dates and name
    /// are still checked. Default: false.
    #[serde(default)]
    pub accept_ca_leaf: bool,
}

/// Earliest `notAfter` of the certificates the server presented, as a Unix
/// timestamp.
pub static CERT_EXPIRY: MetricDesc = MetricDesc::gauge(
    "tls_earliest_cert_expiry_timestamp",
    Some(Unit::Seconds),
    "Earliest notAfter of the certificate chain the target presented in the last scheduled run, as a Unix timestamp.",
);

impl TlsSpec {
    /// Whether `tls` names a client key: a credential (see `ProbeSafety`).
    pub fn has_client_key(tls: Option<&TlsSpec>) -> bool {
        tls.is_some_and(|t| t.key_file.is_some())
    }

    /// Build a rustls client config. `field` is the path of this `tls:`
    /// block, for error messages. `alpn` lists the protocols to offer.
    pub fn client_config(
        &self,
        field: &str,
        alpn: &[&[u8]],
    ) -> Result<Arc<ClientConfig>, BuildError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError::new(field, format!("TLS setup failed: {e}")))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        } else if self.ca_file.is_none() && !self.accept_ca_leaf {
            // The shared store: a check (or a /probe) built without a CA
            // file copies no certificate.
            builder.with_root_certificates(system_roots().clone())
        } else {
            let mut roots = RootCertStore::empty();
            roots.extend(system_roots().roots.iter().cloned());
            let mut pinned = Vec::new();
            if let Some(path) = &self.ca_file {
                let certs =
                    read_certs(path).map_err(|e| BuildError::new(format!("{field}.ca_file"), e))?;
                for cert in certs {
                    roots.add(cert.clone()).map_err(|e| {
                        BuildError::new(
                            format!("{field}.ca_file"),
                            format!("{}: invalid CA certificate: {e}", path.display()),
                        )
                    })?;
                    pinned.push(cert);
                }
            }
            if self.accept_ca_leaf {
                if pinned.is_empty() {
                    return Err(BuildError::new(
                        format!("{field}.accept_ca_leaf"),
                        "needs ca_file holding the server's own certificate",
                    ));
                }
                let verifier = CaLeafVerifier::new(roots, pinned, provider)
                    .map_err(|e| BuildError::new(field, format!("TLS setup failed: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
            } else {
                builder.with_root_certificates(roots)
            }
        };
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)
                    .map_err(|e| BuildError::new(format!("{field}.cert_file"), e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    BuildError::new(
                        format!("{field}.key_file"),
                        format!("{}: no usable PEM private key: {e}", key.display()),
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| BuildError::new(format!("{field}.cert_file"), e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(BuildError::new(
                    format!("{field}.key_file"),
                    "cert_file is set, so key_file is required",
                ))
            }
            (None, Some(_)) => {
                return Err(BuildError::new(
                    format!("{field}.cert_file"),
                    "key_file is set, so cert_file is required",
                ))
            }
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Everything needed to start TLS on a stream to `host`, built once:
    /// `field` is the path of this `tls` block and `host_field` the field
    /// the host came from, for error messages.
    pub fn connector(
        &self,
        field: &str,
        host_field: &str,
        host: &str,
    ) -> Result<TlsClient, BuildError> {
        let config = self.client_config(field, &[])?;
        let server_name = self.server_name(host).map_err(|e| {
            if self.server_name.is_some() {
                BuildError::new(format!("{field}.server_name"), e)
            } else {
                BuildError::new(host_field, e)
            }
        })?;
        Ok(TlsClient {
            connector: tokio_rustls::TlsConnector::from(config),
            server_name,
        })
    }

    /// The name to verify: `server_name` if set, else `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.server_name.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_string())
            .map_err(|_| format!("invalid TLS server name {name:?}"))
    }
}

/// A TLS client for one server: the connector and the name to verify.
pub struct TlsClient {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: ServerName<'static>,
}

fn read_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

/// The system trust store, loaded once per process. A system without one
/// (a scratch container) yields an empty store: only `ca_file` is trusted.
fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, "loaded system CA certificates");
        Arc::new(store)
    })
}

/// The earliest expiry of `certs`, as a sample, if any certificate parses.
pub fn expiry_sample(certs: &[CertificateDer<'_>]) -> Option<Sample> {
    certs
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
        .map(|ts| Sample::new(&CERT_EXPIRY, ts as f64))
}

/// What to tell the user about a server certificate marked `CA:TRUE`.
pub const CA_LEAF_HINT: &str =
    "the server's certificate is marked as a CA (basic constraints CA:TRUE, \
as `openssl req -x509` makes by default), and a CA certificate may not be a server's own \
certificate (CaUsedAsEndEntity); reissue it with basicConstraints=critical,CA:FALSE, or \
put that certificate in ca_file and set accept_ca_leaf: true";

/// Describe a TLS handshake error briefly, for a failure message.
pub fn describe_error(err: &std::io::Error) -> String {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) if is_ca_used_as_leaf(tls) => format!("TLS handshake failed: {CA_LEAF_HINT}"),
        Some(tls) => format!("TLS handshake failed: {tls}"),
        None => format!("TLS handshake failed: {err}"),
    }
}

/// Whether webpki refused the server's certificate for being a CA.
pub fn is_ca_used_as_leaf(err: &rustls::Error) -> bool {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            )
        }
        _ => false,
    }
}

/// The verifier behind `accept_ca_leaf`: webpki's, except that a
/// certificate webpki refuses only for being a CA is accepted when it is
/// byte for byte one of the `ca_file` certificates, valid now and for the
/// server name. Handshake signatures are webpki's, so the server must
/// still hold that certificate's key.
#[derive(Debug)]
struct CaLeafVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl CaLeafVerifier {
    fn new(
        roots: RootCertStore,
        pinned: Vec<CertificateDer<'static>>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, rustls::client::VerifierBuilderError> {
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()?;
        Ok(Self { inner, pinned })
    }

    /// The checks webpki skipped when it stopped at the CA flag: the
    /// dates and the name.
    fn verify_pinned(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bad = |e| rustls::Error::InvalidCertificate(e);
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        let now_secs = now.as_secs() as i64;
        let validity = cert.validity();
        if now_secs < validity.not_before.timestamp() {
            return Err(bad(CertificateError::NotValidYet));
        }
        if now_secs > validity.not_after.timestamp() {
            return Err(bad(CertificateError::Expired));
        }
        webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| bad(CertificateError::BadEncoding))?
            .verify_is_valid_for_subject_name(server_name)
            .map_err(|_| bad(CertificateError::NotValidForName))?;
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for CaLeafVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e) if is_ca_used_as_leaf(&e) && self.pinned.iter().any(|p| p == end_entity) => {
                self.verify_pinned(end_entity, server_name, now)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The verifier behind `insecure_skip_verify`: accepts every certificate but
/// still checks handshake signatures, so the session is at least consistent.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
