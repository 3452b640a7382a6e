//! Password hashing: known digests (EMQX stores lowercase hex), RFC 6070 PBKDF2 vectors, bcrypt
//! and argon2 round trips, and stored hashes that are wrong or garbage.

use portico_auth::password::{HashAlgorithm, HashError, MacFun, SaltPosition};
use proptest::prelude::*;

const SALT: &[u8] = b"salt";

fn simple(name: &str, position: SaltPosition) -> HashAlgorithm {
    HashAlgorithm::simple(name, position).expect("a simple algorithm")
}

/// Tiny argon2 parameters: the tests run unoptimised.
const ARGON2_FAST: HashAlgorithm = HashAlgorithm::Argon2 {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

#[test]
fn simple_digests_of_public_match_known_values() {
    use SaltPosition::{Disable, Prefix, Suffix};
    let cases: [(&str, SaltPosition, &str); 12] = [
        ("md5", Disable, "4c9184f37cff01bcdc32dc486ec36961"),
        ("md5", Prefix, "c91e85973ceee05f005996584f067a72"),
        ("md5", Suffix, "b8fe9a6d76f4fa94adda07a7833e6402"),
        ("sha", Disable, "61c9b2b17db77a27841bbeeabff923448b0f6388"),
        ("sha", Prefix, "54625c8c5d22e86e9a3d2732bf48d0f43d343366"),
        ("sha", Suffix, "43e71834067d59d83ae934bb80670178b810b9be"),
        (
            "sha256",
            Disable,
            "efa1f375d76194fa51a3556a97e641e61685f914d446979da50a551a4333ffd7",
        ),
        (
            "sha256",
            Prefix,
            "f2ef7f9aedb2c3b5040bc16691a1177758a92ad91e1ee77770215a332bf6099f",
        ),
        (
            "sha256",
            Suffix,
            "f4a8615be301fbaf6213df33cfe5f22953aafc0c31beb8f2daef55b127444d27",
        ),
        (
            "sha512",
            Disable,
            "d32997e9747b65a3ecf65b82533a4c843c4e16dd30cf371e8c81ab60a341de00\
             051da422d41ff29c55695f233a1e06fac8b79aeb0a4d91ae5d3d18c8e09b8c73",
        ),
        (
            "sha512",
            Prefix,
            "82112846414ba6fd95be5ac402188c3a7cf1a178485e937fded30f9e398c9409\
             4d2d742a41dd0982febd36484be12f19d3cf9130fe2d903d61b5c7ae9a327185",
        ),
        (
            "sha512",
            Suffix,
            "7ffaf674fc0b94835d6cdba9f3e80b7d7dc8efe5fe7cfe9f01d38d309718cef3\
             39fc3014fb007d2133d65d6fea8e904817670aeb69ca47a74554804c15e1bd4f",
        ),
    ];
    for (name, position, expected) in cases {
        let algorithm = simple(name, position);
        assert_eq!(algorithm.hash(b"public", SALT).as_deref(), Ok(expected), "{algorithm}");
        assert!(algorithm.verify(b"public", SALT, expected), "{algorithm}");
        assert!(
            algorithm.verify(b"public", SALT, &expected.to_ascii_uppercase()),
            "{algorithm}: hex compares case-insensitively"
        );
        assert!(
            !algorithm.verify(b"Public", SALT, expected),
            "{algorithm}: wrong password"
        );
        if position != Disable {
            assert!(
                !algorithm.verify(b"public", b"other", expected),
                "{algorithm}: wrong salt"
            );
        }
    }
}

#[test]
fn plain_stores_the_password_with_its_salt() {
    let disable = simple("plain", SaltPosition::Disable);
    assert_eq!(disable.hash(b"public", SALT).as_deref(), Ok("public"));
    assert!(disable.verify(b"public", b"", "public"));
    assert!(!disable.verify(b"publi", b"", "public"));
    assert!(
        !disable.verify(b"PUBLIC", b"", "public"),
        "plain compares bytes, not case-folded"
    );
    let prefix = simple("plain", SaltPosition::Prefix);
    assert_eq!(prefix.hash(b"public", SALT).as_deref(), Ok("saltpublic"));
    assert!(prefix.verify(b"public", SALT, "saltpublic"));
    let suffix = simple("plain", SaltPosition::Suffix);
    assert!(suffix.verify(b"public", SALT, "publicsalt"));
    assert_eq!(disable.hash(&[0xff, 0xfe], b""), Err(HashError::NotUtf8));
    assert!(!disable.uses_salt(), "EMQX gives plain users no salt");
}

#[test]
fn pbkdf2_matches_rfc_6070_and_other_macs() {
    let sha1 = |iterations, dk_length| HashAlgorithm::Pbkdf2 {
        mac_fun: MacFun::Sha,
        iterations,
        dk_length,
    };
    // RFC 6070 (PBKDF2-HMAC-SHA1).
    let vectors: [(HashAlgorithm, &[u8], &[u8], &str); 4] = [
        (
            sha1(1, None),
            b"password",
            b"salt",
            "0c60c80f961f0e71f3a9b524af6012062fe037a6",
        ),
        (
            sha1(2, None),
            b"password",
            b"salt",
            "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957",
        ),
        (
            sha1(4096, Some(20)),
            b"password",
            b"salt",
            "4b007901b765489abead49d926f721d065a429c1",
        ),
        (
            sha1(4096, Some(25)),
            b"passwordPASSWORDpassword",
            b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
            "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038",
        ),
    ];
    for (algorithm, password, salt, expected) in vectors {
        assert_eq!(algorithm.hash(password, salt).as_deref(), Ok(expected), "{algorithm}");
        assert!(algorithm.verify(password, salt, expected), "{algorithm}");
        assert!(!algorithm.verify(b"wrong", salt, expected), "{algorithm}");
    }
    // Two iterations of "password" / "salt", dk_length = the hash's length.
    let others = [
        (MacFun::Md5, "042407b552be345ad6eee2cf2f7ed01d"),
        (MacFun::Ripemd160, "768dcc27b7bfdef794a1ff9d935090fcf598555e"),
        (
            MacFun::Sha224,
            "93200ffa96c5776d38fa10abdf8f5bfc0054b9718513df472d2331d2",
        ),
        (
            MacFun::Sha256,
            "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43",
        ),
        (
            MacFun::Sha384,
            "54f775c6d790f21930459162fc535dbf04a939185127016a04176a0730c6f1f4fb48832ad1261baadd2cedd50814b1c8",
        ),
        (
            MacFun::Sha512,
            "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53c\
             f76cab2868a39b9f7840edce4fef5a82be67335c77a6068e04112754f27ccf4e",
        ),
    ];
    for (mac_fun, expected) in others {
        let algorithm = HashAlgorithm::Pbkdf2 {
            mac_fun,
            iterations: 2,
            dk_length: None,
        };
        assert_eq!(
            algorithm.hash(b"password", b"salt").as_deref(),
            Ok(expected),
            "{algorithm}"
        );
        assert_eq!(expected.len(), mac_fun.output_len() * 2);
    }
    // MD4 has no reference here: a round trip and the right length.
    let md4 = HashAlgorithm::Pbkdf2 {
        mac_fun: MacFun::Md4,
        iterations: 3,
        dk_length: None,
    };
    let (hash, salt) = md4.hash_new(b"public").expect("md4");
    assert_eq!(hash.len(), 32);
    assert!(md4.verify(b"public", salt.as_bytes(), &hash));
    assert!(!md4.verify(b"public!", salt.as_bytes(), &hash));
}

#[test]
fn pbkdf2_options_are_checked() {
    let bad = [
        HashAlgorithm::Pbkdf2 {
            mac_fun: MacFun::Sha256,
            iterations: 0,
            dk_length: None,
        },
        HashAlgorithm::Pbkdf2 {
            mac_fun: MacFun::Sha256,
            iterations: 1,
            dk_length: Some(0),
        },
        HashAlgorithm::Pbkdf2 {
            mac_fun: MacFun::Sha256,
            iterations: 1,
            dk_length: Some(1_000_000),
        },
    ];
    for algorithm in bad {
        assert!(matches!(
            algorithm.hash(b"p", b"s"),
            Err(HashError::InvalidOptions { .. })
        ));
        assert!(!algorithm.verify(b"p", b"s", "00"), "invalid options never verify");
    }
    assert!(HashAlgorithm::Bcrypt { salt_rounds: 3 }.validate().is_err());
    assert!(HashAlgorithm::Bcrypt { salt_rounds: 32 }.validate().is_err());
    assert!(
        HashAlgorithm::Argon2 {
            memory_kib: 1,
            iterations: 1,
            parallelism: 1
        }
        .validate()
        .is_err()
    );
}

#[test]
fn bcrypt_round_trips_and_reads_foreign_hashes() {
    let bcrypt = HashAlgorithm::Bcrypt { salt_rounds: 4 };
    let (hash, salt) = bcrypt.hash_new(b"public").expect("bcrypt");
    assert!(salt.is_empty(), "the salt is inside the hash");
    assert!(hash.starts_with("$2b$04$"), "{hash}");
    assert!(bcrypt.verify(b"public", b"", &hash));
    assert!(!bcrypt.verify(b"public2", b"", &hash));
    // A classic OpenBSD vector in the $2a$ variant (cost 5): hashes made elsewhere verify
    // whatever our own rounds are.
    let foreign = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    assert!(HashAlgorithm::BCRYPT_DEFAULT.verify(b"U*U", b"", foreign));
    assert!(!HashAlgorithm::BCRYPT_DEFAULT.verify(b"U*V", b"", foreign));
    assert_eq!(HashAlgorithm::BCRYPT_DEFAULT, HashAlgorithm::Bcrypt { salt_rounds: 10 });
}

#[test]
fn argon2_round_trips_with_a_phc_string() {
    let (hash, salt) = ARGON2_FAST.hash_new(b"public").expect("argon2");
    assert!(salt.is_empty());
    assert!(hash.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{hash}");
    assert!(ARGON2_FAST.verify(b"public", b"", &hash));
    assert!(!ARGON2_FAST.verify(b"publIc", b"", &hash));
    // The parameters come from the stored string: other settings still verify it.
    assert!(HashAlgorithm::ARGON2_DEFAULT.verify(b"public", b"", &hash));
    let again = ARGON2_FAST.hash(b"public", b"").expect("argon2");
    assert_ne!(hash, again, "a fresh salt each time");
}

#[test]
fn argon2_is_the_portico_default_and_emqx_default_is_sha256_prefix() {
    assert_eq!(HashAlgorithm::default(), HashAlgorithm::ARGON2_DEFAULT);
    assert_eq!(
        HashAlgorithm::ARGON2_DEFAULT,
        HashAlgorithm::Argon2 {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1
        }
    );
    assert_eq!(
        HashAlgorithm::EMQX_DEFAULT,
        HashAlgorithm::Sha256 {
            salt_position: SaltPosition::Prefix
        }
    );
    assert_eq!(SaltPosition::default(), SaltPosition::Prefix);
}

#[test]
fn salts_are_32_random_hex_characters() {
    let a = HashAlgorithm::gen_salt();
    let b = HashAlgorithm::gen_salt();
    assert_eq!(a.len(), 32);
    assert!(
        a.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
        "{a}"
    );
    assert_ne!(a, b);
    let sha = simple("sha256", SaltPosition::Suffix);
    let (hash, salt) = sha.hash_new(b"public").expect("sha256");
    assert_eq!(salt.len(), 32);
    assert_eq!(sha.hash(b"public", salt.as_bytes()).as_deref(), Ok(hash.as_str()));
    let (_, none) = simple("sha256", SaltPosition::Disable)
        .hash_new(b"public")
        .expect("sha256");
    assert!(none.is_empty(), "no salt when the position is disable");
}

#[test]
fn garbage_stored_hashes_never_verify() {
    let garbage = [
        "",
        "zz",
        "$",
        "$2b$",
        "$2b$10$",
        "$2b$99$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        // bcrypt with cost 31: refused before any work.
        "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        "$argon2id$",
        "$argon2id$v=19$m=256,t=1,p=1$c29tZXNhbHQ$",
        "$argon2id$v=19$m=x,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        // 4 TiB of memory: refused before any work.
        "$argon2id$v=19$m=4294967295,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=256,t=4000000000,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$pbkdf2-sha256$i=1$c2FsdA$AAAA",
        "4c9184f37cff01bcdc32dc486ec3696",
        "ünïcödé",
    ];
    let algorithms = [
        simple("md5", SaltPosition::Disable),
        simple("sha", SaltPosition::Prefix),
        simple("sha256", SaltPosition::Suffix),
        simple("sha512", SaltPosition::Prefix),
        HashAlgorithm::Pbkdf2 {
            mac_fun: MacFun::Sha256,
            iterations: 1,
            dk_length: None,
        },
        HashAlgorithm::BCRYPT_DEFAULT,
        ARGON2_FAST,
        HashAlgorithm::ARGON2_DEFAULT,
    ];
    for algorithm in algorithms {
        for stored in garbage {
            assert!(
                !algorithm.verify(b"public", SALT, stored),
                "{algorithm} with {stored:?}"
            );
            assert!(!algorithm.verify(b"", b"", stored), "{algorithm} with {stored:?}");
        }
    }
}

#[test]
fn names_round_trip() {
    for name in ["disable", "prefix", "suffix"] {
        assert_eq!(SaltPosition::from_name(name).map(SaltPosition::as_str), Some(name));
    }
    assert_eq!(SaltPosition::from_name("both"), None);
    for mac in MacFun::ALL {
        assert_eq!(MacFun::from_name(mac.as_str()), Some(mac));
    }
    assert_eq!(MacFun::from_name("sha1"), None, "EMQX spells SHA-1 `sha`");
    for name in ["plain", "md5", "sha", "sha256", "sha512"] {
        assert_eq!(simple(name, SaltPosition::Disable).name(), name);
    }
    assert_eq!(HashAlgorithm::simple("bcrypt", SaltPosition::Disable), None);
    assert_eq!(HashAlgorithm::default().name(), "argon2");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is stored, verification answers (false, unless it is the hash) and never panics.
    #[test]
    fn verify_never_panics(password in proptest::collection::vec(any::<u8>(), 0..64),
                           salt in proptest::collection::vec(any::<u8>(), 0..40),
                           stored in "\\PC{0,80}") {
        for algorithm in [
            simple("plain", SaltPosition::Suffix),
            simple("md5", SaltPosition::Prefix),
            simple("sha512", SaltPosition::Disable),
            HashAlgorithm::Pbkdf2 { mac_fun: MacFun::Sha, iterations: 1, dk_length: Some(8) },
            HashAlgorithm::BCRYPT_DEFAULT,
            ARGON2_FAST,
        ] {
            let _ = algorithm.verify(&password, &salt, &stored);
        }
    }

    /// The digests verify what they hash, with any password and salt.
    #[test]
    fn digests_round_trip(password in proptest::collection::vec(any::<u8>(), 0..64),
                          salt in "[0-9a-f]{0,32}") {
        for algorithm in [
            simple("md5", SaltPosition::Prefix),
            simple("sha", SaltPosition::Suffix),
            simple("sha256", SaltPosition::Disable),
            HashAlgorithm::Pbkdf2 { mac_fun: MacFun::Sha512, iterations: 1, dk_length: Some(100) },
        ] {
            let hash = algorithm.hash(&password, salt.as_bytes()).expect("hash");
            prop_assert!(algorithm.verify(&password, salt.as_bytes(), &hash));
        }
    }
}
