//! Settings that cannot work are refused, naming the option.

use std::sync::Arc;

use crate::dtls::settings::handshake_config;
use crate::dtls::{DtlsSettings, PskFile, is_supported_cipher};
use crate::pki::Pki;

fn psk() -> Option<Arc<dyn crate::dtls::PskStore>> {
    Some(Arc::new(PskFile::from_entries([("dev1".to_owned(), b"k".to_vec())])))
}

fn refused(settings: &DtlsSettings) -> (String, String) {
    match handshake_config(settings) {
        Ok(_) => panic!("accepted: {settings:?}"),
        Err(error) => (error.field.to_owned(), error.why),
    }
}

fn with_cert(pki: &Pki) -> DtlsSettings {
    DtlsSettings {
        certfile: Some(pki.server_cert.clone()),
        keyfile: Some(pki.server_key.clone()),
        ..DtlsSettings::default()
    }
}

#[test]
fn neither_psk_nor_certificate_is_refused() {
    let (field, why) = refused(&DtlsSettings::default());
    assert_eq!(field, "dtls_options");
    assert!(why.contains("neither a PSK store nor a certificate"), "{why}");
}

#[test]
fn workable_combinations_are_accepted() {
    let pki = Pki::new("dtls-settings-ok");
    let only_psk = DtlsSettings {
        psk: psk(),
        ..DtlsSettings::default()
    };
    handshake_config(&only_psk).expect("PSK only");
    handshake_config(&with_cert(&pki)).expect("certificate only");
    let everything = DtlsSettings {
        psk: psk(),
        cacertfile: Some(pki.ca_file.clone()),
        verify_peer: true,
        fail_if_no_peer_cert: true,
        ciphers: vec![
            "psk-aes128-ccm8".to_owned(),
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned(),
        ],
        ..with_cert(&pki)
    };
    handshake_config(&everything).expect("PSK and certificate, verifying clients");
}

#[test]
fn cipher_names_are_iana_or_openssl() {
    for name in [
        "PSK-AES128-CCM8",
        "tls_psk_with_aes_128_gcm_sha256",
        "ecdhe-ecdsa-aes128-ccm8",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ] {
        assert!(is_supported_cipher(name), "{name}");
    }
    assert!(
        !is_supported_cipher("PSK-AES128-CBC-SHA256"),
        "not implemented by the engine"
    );
    assert!(
        !is_supported_cipher("RSA-PSK-AES256-GCM-SHA384"),
        "EMQX's example suite"
    );
    let (field, why) = refused(&DtlsSettings {
        psk: psk(),
        ciphers: vec!["PSK-AES128-CBC-SHA256".to_owned()],
        ..DtlsSettings::default()
    });
    assert_eq!(field, "ciphers");
    assert!(why.contains("PSK-AES128-CCM8"), "lists what is supported: {why}");
}

#[test]
fn suites_without_their_credential_are_refused() {
    let pki = Pki::new("dtls-settings-suites");
    let (field, why) = refused(&DtlsSettings {
        psk: psk(),
        ciphers: vec!["ECDHE-ECDSA-AES128-GCM-SHA256".to_owned()],
        ..DtlsSettings::default()
    });
    assert_eq!(
        (field.as_str(), why.contains("no PSK suite listed")),
        ("ciphers", true),
        "{why}"
    );
    let (field, why) = refused(&DtlsSettings {
        ciphers: vec!["PSK-AES128-CCM8".to_owned()],
        ..with_cert(&pki)
    });
    assert_eq!(
        (field.as_str(), why.contains("no certificate suite listed")),
        ("ciphers", true),
        "{why}"
    );
    // An ECDSA key cannot sign the RSA suites.
    let (field, why) = refused(&DtlsSettings {
        ciphers: vec!["ECDHE-RSA-AES128-GCM-SHA256".to_owned()],
        ..with_cert(&pki)
    });
    assert_eq!(
        (field.as_str(), why.contains("cannot sign")),
        ("ciphers", true),
        "{why}"
    );
}

#[test]
fn client_verification_needs_a_certificate_and_a_ca() {
    let pki = Pki::new("dtls-settings-verify");
    let (field, _) = refused(&DtlsSettings {
        psk: psk(),
        verify_peer: true,
        cacertfile: Some(pki.ca_file.clone()),
        ..DtlsSettings::default()
    });
    assert_eq!(field, "verify");
    let (field, _) = refused(&DtlsSettings {
        verify_peer: true,
        ..with_cert(&pki)
    });
    assert_eq!(field, "cacertfile");
}

#[test]
fn key_problems_name_the_keyfile() {
    let pki = Pki::new("dtls-settings-key");
    let (field, _) = refused(&DtlsSettings {
        keyfile: None,
        ..with_cert(&pki)
    });
    assert_eq!(field, "keyfile");
    // Another key than the certificate's.
    let other = rcgen::KeyPair::generate().unwrap();
    let other_key = pki.write("other.key", &other.serialize_pem());
    let (field, why) = refused(&DtlsSettings {
        keyfile: Some(other_key),
        ..with_cert(&pki)
    });
    assert_eq!(field, "keyfile");
    assert!(why.contains("is not the key of the certificate"), "{why}");
    // A SEC1 key ("BEGIN EC PRIVATE KEY"): the engine takes PKCS#8 only.
    let sec1 = pki.write(
        "sec1.key",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBYGb2z1d2I1cHZ1Y3BvcnRpY28tdGVzdC1rZXktMDEyoAoGCCqGSM49\nAwEHoUQDQgAE\n-----END EC PRIVATE KEY-----\n",
    );
    let (field, why) = refused(&DtlsSettings {
        keyfile: Some(sec1),
        ..with_cert(&pki)
    });
    assert_eq!(field, "keyfile");
    assert!(why.contains("PKCS#8") || why.contains("cannot read"), "{why}");
    let (field, _) = refused(&DtlsSettings {
        keyfile: Some(pki.path("missing.key")),
        ..with_cert(&pki)
    });
    assert_eq!(field, "keyfile");
}

#[test]
fn bad_numbers_are_refused() {
    let (field, _) = refused(&DtlsSettings {
        psk: psk(),
        mtu: 100,
        ..DtlsSettings::default()
    });
    assert_eq!(field, "mtu");
    let (field, _) = refused(&DtlsSettings {
        psk: psk(),
        handshake_timeout: std::time::Duration::ZERO,
        ..DtlsSettings::default()
    });
    assert_eq!(field, "handshake_timeout");
}
