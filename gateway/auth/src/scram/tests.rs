use super::*;
use proptest::prelude::*;

/// RFC 7677 §3: user "user", password "pencil".
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_db() -> Arc<ScramDb> {
    let db = ScramDb::open(None, ScramAlgorithm::Sha256, DEFAULT_ITERATIONS).expect("open");
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
    let (stored_key, server_key) = ScramAlgorithm::Sha256.keys(b"pencil", &salt, 4096);
    db.insert_user(ScramUser {
        user_id: "user".to_owned(),
        stored_key,
        server_key,
        salt,
        iterations: 4096,
        is_superuser: true,
    })
    .expect("inserted");
    Arc::new(db)
}

fn text(step: &AuthStep) -> &str {
    match step {
        AuthStep::Continue(Some(data)) | AuthStep::Success(Some(data)) => std::str::from_utf8(data).expect("text"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn rfc_7677_test_vector() {
    let auth = ScramAuth::new(rfc_db());
    assert_eq!(auth.method(), "SCRAM-SHA-256");
    let mut exchange = auth.start_with_nonce(SERVER_NONCE.to_owned());
    let first = exchange.step(Some(CLIENT_FIRST.as_bytes()));
    assert!(matches!(first, AuthStep::Continue(_)));
    assert_eq!(text(&first), SERVER_FIRST);
    let last = exchange.step(Some(CLIENT_FINAL.as_bytes()));
    assert!(matches!(last, AuthStep::Success(_)));
    assert_eq!(text(&last), SERVER_FINAL);
    assert!(exchange.superuser());
    assert_eq!(
        exchange.step(Some(CLIENT_FINAL.as_bytes())),
        AuthStep::Failure(Refusal::BadCredentials),
        "over"
    );
}

fn run(auth: &ScramAuth, user: &str, password: &[u8]) -> AuthStep {
    let client = ClientInfo::new(
        bytestring::ByteString::from_static("c"),
        None,
        "127.0.0.1:1".parse().expect("address"),
        "mqtt",
    );
    let mut exchange = auth.start(&client);
    let mut scram = ScramClient::new(ScramAlgorithm::Sha256, user, "abcdefghijklmnop");
    let first = exchange.step(Some(scram.first().as_bytes()));
    let AuthStep::Continue(Some(server_first)) = first else {
        return first;
    };
    let server_first = std::str::from_utf8(&server_first).expect("text").to_owned();
    let last = scram.last(&server_first, password).expect("a good challenge");
    let step = exchange.step(Some(last.as_bytes()));
    if let AuthStep::Success(Some(server_final)) = &step {
        assert!(
            scram.verify(std::str::from_utf8(server_final).expect("text")),
            "server signature"
        );
    }
    step
}

#[test]
fn users_added_with_a_password_log_in_with_it_only() {
    let db = Arc::new(ScramDb::open(None, ScramAlgorithm::Sha256, 64).expect("open"));
    db.add_user("alice", b"secret", false).expect("added");
    db.add_user("b,o=b", b"pw", false).expect("added");
    let auth = ScramAuth::new(db.clone());
    assert!(matches!(run(&auth, "alice", b"secret"), AuthStep::Success(Some(_))));
    assert_eq!(
        run(&auth, "alice", b"wrong"),
        AuthStep::Failure(Refusal::BadCredentials)
    );
    assert!(
        matches!(run(&auth, "b=2Co=3Db", b"pw"), AuthStep::Success(_)),
        "escaped name"
    );
    // An unknown user gets a challenge like anyone (a stable decoy salt) and fails at the end.
    let client = ClientInfo::new(
        bytestring::ByteString::from_static("c"),
        None,
        "127.0.0.1:1".parse().expect("address"),
        "mqtt",
    );
    let salt_of = |user: &str| {
        let mut exchange = auth.start(&client);
        match exchange.step(Some(format!("n,,n={user},r=xyz").as_bytes())) {
            AuthStep::Continue(Some(data)) => {
                let text = String::from_utf8(data.to_vec()).expect("text");
                text.split(',').nth(1).expect("salt").to_owned()
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(salt_of("nobody"), salt_of("nobody"));
    assert_ne!(salt_of("nobody"), salt_of("somebody"));
    assert_eq!(
        run(&auth, "nobody", b"secret"),
        AuthStep::Failure(Refusal::BadCredentials)
    );
    db.update_user("alice", Some(b"new"), Some(true)).expect("updated");
    assert_eq!(
        run(&auth, "alice", b"secret"),
        AuthStep::Failure(Refusal::BadCredentials)
    );
    assert!(matches!(run(&auth, "alice", b"new"), AuthStep::Success(_)));
    db.delete_user("alice").expect("deleted");
    assert_eq!(run(&auth, "alice", b"new"), AuthStep::Failure(Refusal::BadCredentials));
    assert_eq!(db.list_users(1, 10).count, 1);
}

#[test]
fn malformed_messages_fail() {
    let auth = ScramAuth::new(rfc_db());
    for first in [
        &b""[..],
        b"n=user,r=abc",
        b"p=tls-unique,,n=user,r=abc",
        b"n,,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,n=user",
        b"n,,n=user,r=",
        b"n,,n=user,r=abc,m=ext",
        b"n,x,n=user,r=abc",
        &[0xff, 0xfe],
    ] {
        let mut exchange = auth.start_with_nonce("s".to_owned());
        assert_eq!(
            exchange.step(Some(first)),
            AuthStep::Failure(Refusal::BadCredentials),
            "{:?}",
            String::from_utf8_lossy(first)
        );
    }
    let mut exchange = auth.start_with_nonce(SERVER_NONCE.to_owned());
    assert_eq!(exchange.step(None), AuthStep::Failure(Refusal::BadCredentials));
    for last in [
        "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
    ] {
        let mut exchange = auth.start_with_nonce(SERVER_NONCE.to_owned());
        assert!(matches!(
            exchange.step(Some(CLIENT_FIRST.as_bytes())),
            AuthStep::Continue(_)
        ));
        assert_eq!(
            exchange.step(Some(last.as_bytes())),
            AuthStep::Failure(Refusal::BadCredentials),
            "{last}"
        );
        assert!(!exchange.superuser());
    }
}

static RFC_DB: LazyLock<Arc<ScramDb>> = LazyLock::new(rfc_db);

proptest! {
    #[test]
    fn random_input_never_panics(first in proptest::collection::vec(any::<u8>(), 0..200),
                                 last in proptest::collection::vec(any::<u8>(), 0..200),
                                 prefix in proptest::bool::ANY) {
        let auth = ScramAuth::new(RFC_DB.clone());
        let mut exchange = auth.start_with_nonce(SERVER_NONCE.to_owned());
        let first = if prefix { [CLIENT_FIRST.as_bytes(), &first].concat() } else { first };
        let _ = exchange.step(Some(&first));
        let _ = exchange.step(Some(&last));
        let _ = exchange.step(None);
        // The fuzz target's invariants on the same bytes.
        super::fuzzing::check(&first);
        super::fuzzing::check(&[first.as_slice(), b"\n", last.as_slice()].concat());
    }
}
