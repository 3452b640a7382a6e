#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::pki::{ClientCert, Pki};

fn settings(pki: &Pki) -> TlsSettings {
    TlsSettings {
        certfile: pki.server_cert.clone(),
        keyfile: pki.server_key.clone(),
        cacertfile: None,
        verify_peer: false,
        fail_if_no_peer_cert: false,
        versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
        ciphers: Vec::new(),
        deny_serials: Vec::new(),
        crlfile: None,
    }
}

fn mutual(pki: &Pki) -> TlsSettings {
    TlsSettings {
        cacertfile: Some(pki.ca_file.clone()),
        verify_peer: true,
        fail_if_no_peer_cert: true,
        ..settings(pki)
    }
}

fn client_config(
    pki: &Pki,
    cert: Option<&ClientCert>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der())).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Runs a handshake over an in-memory pipe; returns the server's view (the client
/// certificate) and whether the client could exchange a byte.
async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> io::Result<Option<Arc<PeerCert>>> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server_side = async move {
        let mut tls = tokio_rustls::TlsAcceptor::from(server).accept(a).await?;
        let cert = peer_cert(tls.get_ref().1);
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        tls.write_all(&byte).await?;
        tls.flush().await?;
        Ok::<_, io::Error>(cert)
    };
    let client_side = async move {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client).connect(name, b).await?;
        tls.write_all(b"x").await?;
        tls.flush().await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        Ok::<_, io::Error>(())
    };
    let (server_result, _client_result) = tokio::join!(server_side, client_side);
    server_result
}

#[test]
fn cipher_names_map_from_iana_and_openssl() {
    assert_eq!(
        cipher_suite("ECDHE-RSA-AES128-GCM-SHA256"),
        Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
    );
    assert_eq!(
        cipher_suite("tls_ecdhe_rsa_with_aes_128_gcm_sha256"),
        Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
    );
    assert_eq!(
        cipher_suite("TLS_AES_256_GCM_SHA384"),
        Some(CipherSuite::TLS13_AES_256_GCM_SHA384)
    );
    assert_eq!(cipher_suite("AES128-SHA"), None, "CBC suites are not in rustls");
    assert_eq!(normalize_serial(&[0, 0, 0x0a, 0]), &[0x0a, 0]);
}

#[test]
fn builds_from_valid_files() {
    let pki = Pki::new("tls-build");
    let config = build_server_config(&settings(&pki)).expect("one-way TLS config");
    assert_eq!(config.crypto_provider().cipher_suites.len(), CIPHERS.len());
    build_server_config(&mutual(&pki)).expect("mutual TLS config");
    let narrowed = TlsSettings {
        ciphers: vec![
            "TLS_AES_128_GCM_SHA256".to_owned(),
            "ECDHE-ECDSA-AES128-GCM-SHA256".to_owned(),
        ],
        ..settings(&pki)
    };
    let config = build_server_config(&narrowed).expect("narrowed ciphers");
    let suites: Vec<CipherSuite> = config
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect();
    assert_eq!(
        suites,
        [
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        ]
    );
}

#[test]
fn bad_settings_name_their_field() {
    let pki = Pki::new("tls-bad");
    let missing = TlsSettings {
        certfile: pki.path("absent.pem"),
        ..settings(&pki)
    };
    let error = build_server_config(&missing).unwrap_err();
    assert_eq!(error.field, "certfile");
    assert!(error.why.contains("absent.pem"), "{error}");

    let other = Pki::new("tls-other");
    let mismatched = TlsSettings {
        keyfile: other.server_key.clone(),
        ..settings(&pki)
    };
    assert_eq!(build_server_config(&mismatched).unwrap_err().field, "keyfile");

    let not_a_key = TlsSettings {
        keyfile: pki.server_cert.clone(),
        ..settings(&pki)
    };
    assert_eq!(build_server_config(&not_a_key).unwrap_err().field, "keyfile");

    let no_ca = TlsSettings {
        cacertfile: None,
        ..mutual(&pki)
    };
    assert_eq!(build_server_config(&no_ca).unwrap_err().field, "cacertfile");

    let bad_cipher = TlsSettings {
        ciphers: vec!["RC4-MD5".to_owned()],
        ..settings(&pki)
    };
    let error = build_server_config(&bad_cipher).unwrap_err();
    assert_eq!(error.field, "ciphers");
    assert!(error.why.contains("RC4-MD5"), "{error}");

    let empty_crl = TlsSettings {
        crlfile: Some(pki.write("empty.crl", "")),
        ..mutual(&pki)
    };
    assert_eq!(build_server_config(&empty_crl).unwrap_err().field, "crlfile");
}

#[tokio::test]
async fn one_way_tls_handshake() {
    let pki = Pki::new("tls-oneway");
    let server = Arc::new(build_server_config(&settings(&pki)).unwrap());
    let cert = handshake(server, client_config(&pki, None, &[&rustls::version::TLS13]))
        .await
        .expect("handshake");
    assert!(cert.is_none());
}

#[tokio::test]
async fn tls12_only_listener_refuses_a_tls13_only_client() {
    let pki = Pki::new("tls-versions");
    let only12 = TlsSettings {
        versions: vec![TlsVersion::Tls12],
        ..settings(&pki)
    };
    let server = Arc::new(build_server_config(&only12).unwrap());
    assert!(
        handshake(server.clone(), client_config(&pki, None, &[&rustls::version::TLS13]))
            .await
            .is_err()
    );
    assert!(
        handshake(server, client_config(&pki, None, &[&rustls::version::TLS12]))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn mutual_tls_yields_the_client_certificate() {
    let pki = Pki::new("tls-mutual");
    let client = pki.client("device-1", 0x1001);
    let server = Arc::new(build_server_config(&mutual(&pki)).unwrap());
    let cert = handshake(server, client_config(&pki, Some(&client), &[&rustls::version::TLS13]))
        .await
        .expect("handshake")
        .expect("a client certificate");
    assert_eq!(cert.common_name.as_deref(), Some("device-1"));
    assert!(cert.subject.contains("CN=device-1"), "{}", cert.subject);
    assert!(cert.subject.contains("O=Portico Tests"), "{}", cert.subject);
    assert_eq!(cert.der.as_ref(), client.der.as_slice());
}

#[tokio::test]
async fn missing_client_certificate_is_refused_when_required() {
    let pki = Pki::new("tls-nocert");
    let server = Arc::new(build_server_config(&mutual(&pki)).unwrap());
    assert!(
        handshake(server, client_config(&pki, None, &[&rustls::version::TLS13]))
            .await
            .is_err()
    );
    let optional = TlsSettings {
        fail_if_no_peer_cert: false,
        ..mutual(&pki)
    };
    let server = Arc::new(build_server_config(&optional).unwrap());
    let cert = handshake(server, client_config(&pki, None, &[&rustls::version::TLS13]))
        .await
        .expect("no certificate is fine when not required");
    assert!(cert.is_none());
}

#[tokio::test]
async fn denied_serial_and_revoked_certificates_are_refused() {
    let pki = Pki::new("tls-deny");
    let denied = pki.client("denied", 0x0bad);
    let revoked = pki.client("revoked", 0x0dead);
    let good = pki.client("good", 0x0600d);
    let deny = TlsSettings {
        deny_serials: vec![vec![0x0b, 0xad]],
        crlfile: Some(pki.write("revoked.crl", &pki.crl_revoking(0x0dead))),
        ..mutual(&pki)
    };
    let server = Arc::new(build_server_config(&deny).unwrap());
    for (cert, refused) in [(&denied, true), (&revoked, true), (&good, false)] {
        let result = handshake(
            server.clone(),
            client_config(&pki, Some(cert), &[&rustls::version::TLS12]),
        )
        .await;
        assert_eq!(result.is_err(), refused, "{result:?}");
    }
}

#[tokio::test]
async fn changed_files_are_reloaded_and_bad_ones_keep_the_old_config() {
    let pki = Pki::new("tls-reload");
    let certfile = pki.write("live.pem", &std::fs::read_to_string(&pki.server_cert).unwrap());
    let keyfile = pki.write("live.key", &std::fs::read_to_string(&pki.server_key).unwrap());
    let source = TlsSource::new(
        "ssl:test",
        TlsSettings {
            certfile: certfile.clone(),
            keyfile: keyfile.clone(),
            ..settings(&pki)
        },
    )
    .unwrap();
    let first = source.config();
    source.expire_check();
    assert!(Arc::ptr_eq(&first, &source.config()), "unchanged files: same config");

    // A half-written certificate: the old config stays.
    std::fs::write(&certfile, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    source.expire_check();
    assert!(Arc::ptr_eq(&first, &source.config()), "a bad file keeps the old config");

    // A new valid pair (from another CA) replaces it.
    let other = Pki::new("tls-reload-2");
    std::fs::write(&certfile, std::fs::read_to_string(&other.server_cert).unwrap()).unwrap();
    std::fs::write(&keyfile, std::fs::read_to_string(&other.server_key).unwrap()).unwrap();
    source.expire_check();
    let reloaded = source.config();
    assert!(!Arc::ptr_eq(&first, &reloaded), "changed files: new config");
    // The new server certificate chains to the other CA only.
    assert!(
        handshake(
            reloaded.clone(),
            client_config(&other, None, &[&rustls::version::TLS13])
        )
        .await
        .is_ok()
    );
    assert!(
        handshake(reloaded, client_config(&pki, None, &[&rustls::version::TLS13]))
            .await
            .is_err()
    );
}
