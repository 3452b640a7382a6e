//! [`DtlsSettings`] and the DTLS engine configuration built from them (once, at start: every
//! association of a listener shares it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig, RustlsVerifierAdapter,
};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::providers::RingProvider;
use rtc_dtls::crypto_provider::{CryptoAlgorithm, PublicKeyEncoding, RTCCryptoProvider, SignatureScheme};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use super::psk::PskStore;
use crate::tls::{TlsError, read_certs, tls_error};

/// Default [`DtlsSettings::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Default [`DtlsSettings::mtu`]: fits the IPv6 minimum MTU (1280) less IP and UDP headers.
pub const DEFAULT_MTU: usize = 1200;

/// Bytes a handshake fragment adds to its body: record header (13) and handshake header (12).
const FRAGMENT_OVERHEAD: usize = 25;

/// The DTLS options of one listener (EMQX `dtls_options` plus `psk_authentication`).
///
/// One listener may serve PSK and certificate clients together: the suite the client picks
/// decides which credential is used.
#[derive(Clone)]
pub struct DtlsSettings {
    /// Keys of the PSK identities; `None` offers no PSK suite.
    pub psk: Option<Arc<dyn PskStore>>,
    /// PEM file with the server certificate chain (leaf first); with `keyfile`, enables the
    /// certificate (ECDHE) suites.
    pub certfile: Option<PathBuf>,
    /// PEM file with the server's private key, PKCS#8 (`BEGIN PRIVATE KEY`): ECDSA P-256,
    /// P-384, Ed25519 or RSA.
    pub keyfile: Option<PathBuf>,
    /// PEM file with the CA certificates client certificates must chain to.
    pub cacertfile: Option<PathBuf>,
    /// Ask certificate clients for a certificate and verify it (`verify_peer`). PSK clients are
    /// never asked: the key already authenticates them.
    pub verify_peer: bool,
    /// With `verify_peer`: refuse certificate clients that send none.
    pub fail_if_no_peer_cert: bool,
    /// Cipher suites offered, as IANA or OpenSSL names ([`supported_cipher_names`]), in order
    /// of preference; empty for [`DEFAULT_CIPHERS`]. Suites without their credential (PSK
    /// suites without `psk`, certificate suites without a certificate) are left out.
    pub ciphers: Vec<String>,
    /// A peer whose handshake has not completed this long after its first datagram is closed.
    pub handshake_timeout: Duration,
    /// The largest datagram a handshake flight is cut into (handshake messages are
    /// fragmented to fit; application data is never fragmented).
    pub mtu: usize,
}

impl Default for DtlsSettings {
    fn default() -> Self {
        DtlsSettings {
            psk: None,
            certfile: None,
            keyfile: None,
            cacertfile: None,
            verify_peer: false,
            fail_if_no_peer_cert: false,
            ciphers: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            mtu: DEFAULT_MTU,
        }
    }
}

impl std::fmt::Debug for DtlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsSettings")
            .field("psk", &self.psk.as_ref().map(|_| "PskStore"))
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .field("cacertfile", &self.cacertfile)
            .field("verify_peer", &self.verify_peer)
            .field("fail_if_no_peer_cert", &self.fail_if_no_peer_cert)
            .field("ciphers", &self.ciphers)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("mtu", &self.mtu)
            .finish()
    }
}

/// Suites the DTLS engine implements: IANA name, OpenSSL name, suite, PSK or not.
const CIPHERS: &[(&str, &str, CipherSuiteId, bool)] = &[
    (
        "TLS_PSK_WITH_AES_128_CCM_8",
        "PSK-AES128-CCM8",
        CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8,
        true,
    ),
    (
        "TLS_PSK_WITH_AES_128_CCM",
        "PSK-AES128-CCM",
        CipherSuiteId::Tls_Psk_With_Aes_128_Ccm,
        true,
    ),
    (
        "TLS_PSK_WITH_AES_128_GCM_SHA256",
        "PSK-AES128-GCM-SHA256",
        CipherSuiteId::Tls_Psk_With_Aes_128_Gcm_Sha256,
        true,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
        "ECDHE-ECDSA-AES128-CCM8",
        CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8,
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
        "ECDHE-ECDSA-AES128-CCM",
        CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm,
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256,
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuiteId::Tls_Ecdhe_Ecdsa_With_ChaCha20_Poly1305_Sha256,
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "ECDHE-ECDSA-AES256-SHA",
        CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_256_Cbc_Sha,
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuiteId::Tls_Ecdhe_Rsa_With_Aes_128_Gcm_Sha256,
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuiteId::Tls_Ecdhe_Rsa_With_ChaCha20_Poly1305_Sha256,
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "ECDHE-RSA-AES256-SHA",
        CipherSuiteId::Tls_Ecdhe_Rsa_With_Aes_256_Cbc_Sha,
        false,
    ),
];

/// The suites offered when none are configured, best first: the LwM2M/CoAP mandatory PSK
/// suite (RFC 7925 §4.2, LwM2M 1.1 §7.1.7), PSK with GCM, then the certificate suites (only
/// those the server key can sign stay: ECDSA or RSA).
pub const DEFAULT_CIPHERS: &[&str] = &[
    "TLS_PSK_WITH_AES_128_CCM_8",
    "TLS_PSK_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
];

fn lookup(name: &str) -> Option<(CipherSuiteId, bool)> {
    CIPHERS
        .iter()
        .find(|(iana, openssl, _, _)| iana.eq_ignore_ascii_case(name) || openssl.eq_ignore_ascii_case(name))
        .map(|(_, _, id, psk)| (*id, *psk))
}

/// True if `name` (IANA or OpenSSL, any case) is a suite [`DtlsSettings::ciphers`] accepts: for
/// validating configuration before a listener is made.
pub fn is_supported_cipher(name: &str) -> bool {
    lookup(name).is_some()
}

/// The OpenSSL names of every supported suite, for error messages.
pub fn supported_cipher_names() -> Vec<&'static str> {
    CIPHERS.iter().map(|(_, openssl, _, _)| *openssl).collect()
}

/// Builds the engine's server configuration; every problem names the option at fault.
pub(crate) fn handshake_config(settings: &DtlsSettings) -> Result<Arc<HandshakeConfig>, TlsError> {
    let provider: Arc<dyn RTCCryptoProvider> = Arc::new(RingProvider::new());
    let certificate = match (&settings.certfile, &settings.keyfile) {
        (Some(_), Some(_)) => Some(certificate(settings, provider.as_ref())?),
        (None, None) => None,
        (Some(_), None) => return Err(tls_error("keyfile", "certfile is set but keyfile is not")),
        (None, Some(_)) => return Err(tls_error("certfile", "keyfile is set but certfile is not")),
    };
    if settings.psk.is_none() && certificate.is_none() {
        return Err(tls_error(
            "dtls_options",
            "neither a PSK store nor a certificate: no cipher suite could ever be agreed \
             (enable psk_authentication, or set certfile and keyfile)",
        ));
    }
    if settings.handshake_timeout.is_zero() {
        return Err(tls_error("handshake_timeout", "must be more than zero"));
    }
    if !(256..=65_507).contains(&settings.mtu) {
        return Err(tls_error("mtu", format!("{} is not in 256..=65507", settings.mtu)));
    }

    let names: Vec<&str> = if settings.ciphers.is_empty() {
        DEFAULT_CIPHERS.to_vec()
    } else {
        settings.ciphers.iter().map(String::as_str).collect()
    };
    let mut suites = Vec::with_capacity(names.len());
    for name in names {
        let (id, psk) = lookup(name).ok_or_else(|| {
            tls_error(
                "ciphers",
                format!(
                    "unknown or unsupported DTLS cipher {name:?}; supported: {}",
                    supported_cipher_names().join(", ")
                ),
            )
        })?;
        let usable = if psk {
            settings.psk.is_some()
        } else {
            certificate.is_some()
        };
        if usable && !suites.contains(&id) {
            suites.push(id);
        }
    }
    if suites.is_empty() {
        return Err(tls_error(
            "ciphers",
            if settings.psk.is_some() {
                "no PSK suite listed, and there is no certificate for the others"
            } else {
                "no certificate suite listed, and there is no PSK store for the others"
            },
        ));
    }

    let client_auth = match (settings.verify_peer, settings.fail_if_no_peer_cert) {
        (false, _) => ClientAuthType::NoClientCert,
        (true, false) => ClientAuthType::VerifyClientCertIfGiven,
        (true, true) => ClientAuthType::RequireAndVerifyClientCert,
    };
    let mut builder = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_rustls_verifier_adapter(RustlsVerifierAdapter::ring())
        .with_cipher_suites(suites)
        .with_extended_master_secret(ExtendedMasterSecretType::Request)
        .with_client_auth(client_auth)
        .with_mtu(settings.mtu - FRAGMENT_OVERHEAD);
    if settings.verify_peer {
        if certificate.is_none() {
            return Err(tls_error(
                "verify",
                "verify_peer needs a server certificate: PSK clients are never asked for one",
            ));
        }
        let cacertfile = settings.cacertfile.as_deref().ok_or_else(|| {
            tls_error(
                "cacertfile",
                "verify_peer needs the CA certificates to verify clients with",
            )
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(cacertfile, "cacertfile")? {
            roots.add(cert).map_err(|e| {
                tls_error(
                    "cacertfile",
                    format!("bad CA certificate in {}: {e}", cacertfile.display()),
                )
            })?;
        }
        builder = builder.with_client_cas(roots);
    }
    if let Some(certificate) = certificate {
        builder = builder.with_certificates(vec![certificate]);
    }
    if let Some(store) = &settings.psk {
        let store = store.clone();
        builder = builder.with_psk(Some(Arc::new(move |identity: &[u8]| {
            // Identities are shown to channels as text: a non-UTF-8 one is unknown.
            match std::str::from_utf8(identity).ok().and_then(|_| store.key(identity)) {
                Some(key) => Ok(key),
                None => Err(rtc_shared::error::Error::Other(format!(
                    "unknown PSK identity {:?}",
                    String::from_utf8_lossy(identity)
                ))),
            }
        })));
    }
    let config = builder.build(false, None).map_err(|error| match error {
        rtc_shared::error::Error::ErrNoAvailableCipherSuites => tls_error(
            "ciphers",
            "the server key cannot sign any certificate suite listed \
             (an ECDSA key needs ECDHE-ECDSA-*, an RSA key ECDHE-RSA-*)",
        ),
        other => tls_error("dtls_options", format!("the DTLS engine refused the settings: {other}")),
    })?;
    Ok(Arc::new(config))
}

/// The server certificate chain and its key, checked to belong together.
fn certificate(settings: &DtlsSettings, provider: &dyn RTCCryptoProvider) -> Result<Certificate, TlsError> {
    let (Some(certfile), Some(keyfile)) = (&settings.certfile, &settings.keyfile) else {
        return Err(tls_error("certfile", "certfile and keyfile are both needed"));
    };
    let chain = read_certs(certfile, "certfile")?;
    let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| {
        tls_error(
            "keyfile",
            format!("cannot read a private key from {}: {e}", keyfile.display()),
        )
    })?;
    let PrivateKeyDer::Pkcs8(pkcs8) = key else {
        return Err(tls_error(
            "keyfile",
            format!(
                "{} is not a PKCS#8 key (BEGIN PRIVATE KEY), which DTLS needs; convert it with \
                 `openssl pkcs8 -topk8 -nocrypt -in {0} -out {0}.pkcs8`",
                keyfile.display()
            ),
        ));
    };
    let crypto = provider.crypto();
    let signing_key = [
        SignatureScheme::EcdsaP256Sha256,
        SignatureScheme::EcdsaP384Sha384,
        SignatureScheme::Ed25519,
        SignatureScheme::RsaPkcs1Sha256,
    ]
    .into_iter()
    .filter(|scheme| crypto.supports(CryptoAlgorithm::SigningKeyImport(*scheme)))
    .find_map(|scheme| crypto.import_signing_key(scheme, pkcs8.secret_pkcs8_der()).ok())
    .ok_or_else(|| {
        tls_error(
            "keyfile",
            format!(
                "{}: not an ECDSA P-256/P-384, Ed25519 or RSA key the DTLS engine can sign with",
                keyfile.display()
            ),
        )
    })?;
    let leaf = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| tls_error("certfile", format!("cannot parse the first certificate: {e}")))?
        .1;
    let spki = &leaf.tbs_certificate.subject_pki;
    let public = signing_key.public_key();
    let matches = match public.encoding {
        PublicKeyEncoding::SubjectPublicKeyInfoDer => spki.raw == public.bytes,
        _ => *spki.subject_public_key.data == *public.bytes,
    };
    if !matches {
        return Err(tls_error(
            "keyfile",
            format!(
                "{} is not the key of the certificate in {}",
                keyfile.display(),
                certfile.display()
            ),
        ));
    }
    Ok(Certificate::from_signing_key(chain, signing_key))
}
