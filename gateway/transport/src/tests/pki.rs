//! Test certificates made with rcgen at test time: a CA, a server certificate for
//! localhost/127.0.0.1 and client certificates, written as PEM files to a fresh temp directory.
//! Shared by the transport's and the server's tests (the server includes this file by path).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType, IsCa, KeyIdMethod,
    KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

/// A throw-away PKI in its own directory (removed on drop).
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// A client certificate and key as PEM, and the certificate's DER.
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Pki {
    /// A CA and a server certificate for `localhost` and `127.0.0.1`, in a new directory.
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("portico-pki-{tag}-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Portico Test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &ca).unwrap();
        let server_cert = dir.join("server.pem");
        let server_key = dir.join("server.key");
        std::fs::write(&server_cert, cert.pem()).unwrap();
        std::fs::write(&server_key, key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca,
            ca_file,
            server_cert,
            server_key,
        }
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> Vec<u8> {
        self.ca.der().to_vec()
    }

    /// A client certificate with Common Name `cn`, subject `O=Portico Tests`, serial `serial`.
    pub fn client(&self, cn: &str, serial: u64) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Portico Tests");
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.ca).unwrap();
        ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A CRL from the CA revoking `serial`, as PEM.
    pub fn crl_revoking(&self, serial: u64) -> String {
        let now = rcgen::date_time_ymd(2024, 1, 1);
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.ca).unwrap().pem().unwrap()
    }

    /// Writes `contents` to `name` in the PKI directory.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 32)
}

/// True if `path` exists (for assertions in callers that only have `Path`s).
pub fn exists(path: &Path) -> bool {
    path.exists()
}
