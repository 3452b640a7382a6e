//! TLS for stream listeners: a rustls `ServerConfig` built from EMQX-style `ssl_options`,
//! reloaded when its files change, and the client certificate turned into a [`PeerCert`].
//!
//! Reload: every accept asks [`TlsSource::config`], which at most once per
//! [`RELOAD_CHECK_INTERVAL`] compares the files' modification times and sizes with the ones
//! the current config was built from. A change rebuilds the config; connections already open
//! keep the config they were accepted with. A rebuild that fails (half-written file, key that
//! does not match) keeps the old config and logs an error once per change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use portico_core::channel::PeerCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{CipherSuite, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// How often at most the certificate files are checked for changes.
pub const RELOAD_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A TLS protocol version a listener may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// The TLS settings of one listener (EMQX `ssl_options`), already validated for form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file with the server certificate chain (leaf first).
    pub certfile: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub keyfile: PathBuf,
    /// PEM file with the CA certificates client certificates must chain to.
    pub cacertfile: Option<PathBuf>,
    /// Ask clients for a certificate and verify it (`verify_peer`).
    pub verify_peer: bool,
    /// With `verify_peer`: refuse clients that send no certificate.
    pub fail_if_no_peer_cert: bool,
    /// Versions offered; never empty.
    pub versions: Vec<TlsVersion>,
    /// Cipher suites offered, as names [`cipher_suite`] knows; empty for rustls' defaults.
    pub ciphers: Vec<String>,
    /// Client certificate serial numbers refused at the handshake (big-endian bytes, no
    /// leading zero bytes).
    pub deny_serials: Vec<Vec<u8>>,
    /// PEM file of certificate revocation lists checked against client certificates.
    pub crlfile: Option<PathBuf>,
}

/// A TLS setting that cannot be used; `field` names the `ssl_options` key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct TlsError {
    /// The `ssl_options` key.
    pub field: &'static str,
    /// What is wrong.
    pub why: String,
}

pub(crate) fn tls_error(field: &'static str, why: impl Into<String>) -> TlsError {
    TlsError { field, why: why.into() }
}

/// Cipher suites rustls (ring provider) implements: IANA name, OpenSSL name, suite.
const CIPHERS: &[(&str, &str, CipherSuite)] = &[
    (
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// The suite an IANA or OpenSSL cipher name stands for, if rustls implements it
/// (case-insensitive).
pub fn cipher_suite(name: &str) -> Option<CipherSuite> {
    CIPHERS
        .iter()
        .find(|(iana, openssl, _)| iana.eq_ignore_ascii_case(name) || openssl.eq_ignore_ascii_case(name))
        .map(|(_, _, suite)| *suite)
}

/// The OpenSSL names of every supported suite, for error messages.
pub fn supported_cipher_names() -> Vec<&'static str> {
    CIPHERS.iter().map(|(_, openssl, _)| *openssl).collect()
}

pub(crate) fn read_certs(path: &Path, field: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(field, format!("cannot read certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(field, format!("no PEM certificate in {}", path.display())));
    }
    Ok(certs)
}

/// Builds the rustls server config. Reads every file; errors name the key and the file.
pub fn build_server_config(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !settings.ciphers.is_empty() {
        let mut wanted = Vec::with_capacity(settings.ciphers.len());
        for name in &settings.ciphers {
            let suite = cipher_suite(name).ok_or_else(|| {
                tls_error(
                    "ciphers",
                    format!(
                        "unknown or unsupported cipher {name:?}; supported: {}",
                        supported_cipher_names().join(", ")
                    ),
                )
            })?;
            wanted.push(suite);
        }
        provider.cipher_suites.retain(|s| wanted.contains(&s.suite()));
    }
    let provider = Arc::new(provider);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = settings
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    if versions.is_empty() {
        return Err(tls_error("versions", "at least one of tlsv1.3, tlsv1.2 is needed"));
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| {
            tls_error(
                "ciphers",
                format!("no cipher suite usable with the chosen versions: {e}"),
            )
        })?;

    let builder = if settings.verify_peer {
        let cacertfile = settings.cacertfile.as_deref().ok_or_else(|| {
            tls_error(
                "cacertfile",
                "verify_peer needs the CA certificates to verify clients with",
            )
        })?;
        let mut roots = RootCertStore::empty();
        for cert in read_certs(cacertfile, "cacertfile")? {
            roots.add(cert).map_err(|e| {
                tls_error(
                    "cacertfile",
                    format!("bad CA certificate in {}: {e}", cacertfile.display()),
                )
            })?;
        }
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if let Some(crlfile) = &settings.crlfile {
            let crls = CertificateRevocationListDer::pem_file_iter(crlfile)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_error("crlfile", format!("cannot read CRLs from {}: {e}", crlfile.display())))?;
            if crls.is_empty() {
                return Err(tls_error("crlfile", format!("no PEM CRL in {}", crlfile.display())));
            }
            verifier = verifier.with_crls(crls);
        }
        if !settings.fail_if_no_peer_cert {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier
            .build()
            .map_err(|e| tls_error("cacertfile", format!("cannot verify clients: {e}")))?;
        let verifier: Arc<dyn ClientCertVerifier> = if settings.deny_serials.is_empty() {
            verifier
        } else {
            Arc::new(DenySerials {
                inner: verifier,
                denied: settings.deny_serials.clone(),
            })
        };
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };

    let certs = read_certs(&settings.certfile, "certfile")?;
    let key = PrivateKeyDer::from_pem_file(&settings.keyfile).map_err(|e| {
        tls_error(
            "keyfile",
            format!("cannot read a private key from {}: {e}", settings.keyfile.display()),
        )
    })?;
    builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("keyfile", format!("unusable with certfile: {e}")))
}

/// Refuses client certificates whose serial number is listed, after the usual verification.
#[derive(Debug)]
struct DenySerials {
    inner: Arc<dyn ClientCertVerifier>,
    denied: Vec<Vec<u8>>,
}

/// A serial number without leading zero bytes (DER adds one to keep it positive).
pub fn normalize_serial(serial: &[u8]) -> &[u8] {
    let first = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    &serial[first..]
}

impl ClientCertVerifier for DenySerials {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let serial = normalize_serial(cert.raw_serial());
        if self.denied.iter().any(|d| d == serial) {
            tracing::info!(serial = %cert.raw_serial_as_string(), "client certificate refused: serial is in deny_serials");
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Modification time and size of a file, `None` if it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

struct Watch {
    checked: Instant,
    stamps: Vec<Stamp>,
}

/// A listener's TLS config, rebuilt when its files change (see the module docs).
pub struct TlsSource {
    listener: String,
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    watch: Mutex<Watch>,
}

impl std::fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSource")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsSource {
    /// Builds the first config of listener `listener`.
    pub fn new(listener: impl Into<String>, settings: TlsSettings) -> Result<TlsSource, TlsError> {
        let stamps = Self::stamps(&settings);
        let config = build_server_config(&settings)?;
        Ok(TlsSource {
            listener: listener.into(),
            settings,
            current: RwLock::new(Arc::new(config)),
            watch: Mutex::new(Watch {
                checked: Instant::now(),
                stamps,
            }),
        })
    }

    fn stamps(settings: &TlsSettings) -> Vec<Stamp> {
        [
            Some(&settings.certfile),
            Some(&settings.keyfile),
            settings.cacertfile.as_ref(),
            settings.crlfile.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| stamp(p))
        .collect()
    }

    /// The config for a connection accepted now, reloaded first if the files changed.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.check_reload(Instant::now());
        self.current.read().clone()
    }

    /// Compares the files with the ones the config came from (at most once per interval, and
    /// never blocking on another task that is checking) and rebuilds it if they changed.
    fn check_reload(&self, now: Instant) {
        let Some(mut watch) = self.watch.try_lock() else { return };
        if now.duration_since(watch.checked) < RELOAD_CHECK_INTERVAL {
            return;
        }
        watch.checked = now;
        let stamps = Self::stamps(&self.settings);
        if stamps == watch.stamps {
            return;
        }
        // Remember the new stamps even on failure: the error is logged once per change, and
        // the next change of the files is tried again.
        watch.stamps = stamps;
        match build_server_config(&self.settings) {
            Ok(config) => {
                *self.current.write() = Arc::new(config);
                tracing::info!(listener = %self.listener, "TLS certificate files changed; reloaded");
            }
            Err(error) => {
                tracing::error!(listener = %self.listener, %error, "TLS certificate files changed but cannot be loaded; keeping the previous ones");
            }
        }
    }

    /// Forces the next [`config`](Self::config) call to check the files (tests).
    pub fn expire_check(&self) {
        let mut watch = self.watch.lock();
        if let Some(earlier) = Instant::now().checked_sub(RELOAD_CHECK_INTERVAL) {
            watch.checked = earlier;
        }
    }
}

/// The client certificate of an established TLS connection, if it sent one.
pub fn peer_cert(conn: &rustls::ServerConnection) -> Option<Arc<PeerCert>> {
    peer_cert_from_der(conn.peer_certificates()?.first()?)
}

/// A verified client certificate (DER) as the channel sees it; `None` (logged) if it cannot be
/// parsed, which the verifier that accepted it makes unexpected. Shared by TLS and DTLS.
pub fn peer_cert_from_der(der: &[u8]) -> Option<Arc<PeerCert>> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            let subject = cert.subject();
            let common_name = subject
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned);
            Some(Arc::new(PeerCert {
                common_name,
                subject: subject.to_string(),
                der: Bytes::copy_from_slice(der),
            }))
        }
        Err(error) => {
            // The verifier accepted it, so this is unexpected; the connection goes on without it.
            tracing::warn!(%error, "cannot parse a verified client certificate");
            None
        }
    }
}

#[cfg(test)]
#[path = "tests/tls.rs"]
mod tests;
