//! The check behind the `scram` fuzz target (`fuzz/fuzz_targets/scram.rs`), also run by
//! `tests/scram_fuzz_seeds.rs` on every seed.

use std::sync::{Arc, LazyLock};

use portico_core::auth::{AuthExchange, AuthStep, Refusal};

use super::{ScramAlgorithm, ScramAuth, ScramDb, ScramUser};

/// RFC 7677's user "user" / "pencil", its salt and server nonce.
const SALT: &[u8] = &[
    0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81,
];
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
/// The one client-final message that proves the password for [`CLIENT_FIRST`].
const CLIENT_FINAL: &[u8] =
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

static AUTH: LazyLock<ScramAuth> = LazyLock::new(|| {
    let db = match ScramDb::open(None, ScramAlgorithm::Sha256, 4096) {
        Ok(db) => db,
        Err(error) => panic!("an in-memory SCRAM database opens: {error}"),
    };
    let (stored_key, server_key) = ScramAlgorithm::Sha256.keys(b"pencil", SALT, 4096);
    let user = ScramUser {
        user_id: "user".to_owned(),
        stored_key,
        server_key,
        salt: SALT.to_vec(),
        iterations: 4096,
        is_superuser: false,
    };
    if let Err(error) = db.insert_user(user) {
        panic!("the test user is added: {error}");
    }
    ScramAuth::new(Arc::new(db))
});

/// Splits `data` at its first newline into a client-first and a client-final message and runs
/// them through an exchange, then runs all of `data` as the client-final answer to RFC 7677's
/// client-first. Panics on a broken invariant:
/// - nothing panics;
/// - only RFC 7677's exact messages succeed (a proof cannot be forged), and only the second
///   step can succeed;
/// - after a failure or a success every further step fails.
pub fn check(data: &[u8]) {
    let (first, last) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    run(first, last);
    run(CLIENT_FIRST, data);
}

fn run(first: &[u8], last: &[u8]) {
    let mut exchange = AUTH.start_with_nonce(SERVER_NONCE.to_owned());
    let step = exchange.step(Some(first));
    assert!(!matches!(step, AuthStep::Success(_)), "success at the first step");
    let over = matches!(step, AuthStep::Failure(_));
    let step = exchange.step(Some(last));
    if over {
        assert_eq!(
            step,
            AuthStep::Failure(Refusal::BadCredentials),
            "a step after a failure"
        );
    }
    if let AuthStep::Success(_) = step {
        // The first message may differ from the RFC's only in what the proof does not cover;
        // the final one must be the RFC's.
        assert_eq!(last, CLIENT_FINAL, "a forged proof succeeded");
    }
    assert_eq!(
        exchange.step(Some(last)),
        AuthStep::Failure(Refusal::BadCredentials),
        "a step after the end"
    );
}
