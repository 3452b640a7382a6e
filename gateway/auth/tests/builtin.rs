//! The built-in user database in memory: users, limits, pages, and CONNECT checks with every
//! hash algorithm, by user name and by client id.

use std::net::SocketAddr;

use bytestring::ByteString;
use portico_auth::AuthnVerdict;
use portico_auth::builtin::{BuiltinDb, MAX_PASSWORD_LEN, MAX_USER_ID_LEN, UserError, UserIdType, UserInfo};
use portico_auth::password::{HashAlgorithm, MacFun, SaltPosition};
use portico_core::auth::{ClientInfo, Refusal};

/// Tiny argon2 parameters: the tests run unoptimised.
const ARGON2_FAST: HashAlgorithm = HashAlgorithm::Argon2 {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

const BAD: AuthnVerdict = AuthnVerdict::Deny(Refusal::BadCredentials);

fn client(client_id: &str, username: Option<&str>) -> ClientInfo {
    ClientInfo {
        client_id: ByteString::from(client_id),
        username: username.map(ByteString::from),
        peer: SocketAddr::from(([127, 0, 0, 1], 50000)),
        protocol: "mqtt",
        superuser: false,
        cert: None,
        acl: None,
    }
}

fn db(algorithm: HashAlgorithm, by: UserIdType) -> BuiltinDb {
    BuiltinDb::open(None, algorithm, by).expect("open")
}

#[test]
fn add_check_and_delete_a_user() {
    let db = db(ARGON2_FAST, UserIdType::Username);
    assert!(db.is_empty());
    db.add_user("alice", b"public", false).expect("add");
    db.add_user("root", b"toor", true).expect("add");
    assert_eq!(db.len(), 2);
    let alice = client("c1", Some("alice"));
    assert_eq!(db.check(&alice, Some(b"public")), AuthnVerdict::allow(false));
    assert_eq!(db.check(&alice, Some(b"Public")), BAD, "wrong password");
    assert_eq!(db.check(&alice, Some(b"")), BAD, "empty password");
    assert_eq!(db.check(&alice, None), BAD, "no password");
    assert_eq!(
        db.check(&client("c2", Some("root")), Some(b"toor")),
        AuthnVerdict::allow(true)
    );
    assert_eq!(
        db.check(&client("c3", Some("bob")), Some(b"public")),
        AuthnVerdict::Ignore,
        "unknown"
    );
    assert_eq!(
        db.check(&client("c3", Some("bob")), None),
        AuthnVerdict::Ignore,
        "unknown, no password"
    );
    assert_eq!(
        db.check(&client("alice", None), Some(b"public")),
        AuthnVerdict::Ignore,
        "no user name"
    );

    db.delete_user("alice").expect("delete");
    assert_eq!(db.check(&alice, Some(b"public")), AuthnVerdict::Ignore, "gone");
    assert_eq!(db.delete_user("alice"), Err(UserError::NotFound("alice".into())));
    assert_eq!(db.get_user("alice"), None);
    assert_eq!(db.len(), 1);
}

#[test]
fn duplicates_and_limits_are_refused() {
    let db = db(HashAlgorithm::EMQX_DEFAULT, UserIdType::Username);
    db.add_user("u", b"p", false).expect("add");
    assert_eq!(db.add_user("u", b"q", true), Err(UserError::AlreadyExists("u".into())));
    assert_eq!(
        db.check(&client("c", Some("u")), Some(b"p")),
        AuthnVerdict::allow(false),
        "unchanged"
    );
    assert_eq!(db.add_user("", b"p", false), Err(UserError::EmptyUserId));
    let long_id = "x".repeat(MAX_USER_ID_LEN + 1);
    assert_eq!(
        db.add_user(&long_id, b"p", false),
        Err(UserError::UserIdTooLong {
            len: MAX_USER_ID_LEN + 1
        })
    );
    db.add_user(&"x".repeat(MAX_USER_ID_LEN), b"p", false)
        .expect("the longest id");
    let long_password = vec![b'p'; MAX_PASSWORD_LEN + 1];
    assert_eq!(
        db.add_user("v", &long_password, false),
        Err(UserError::PasswordTooLong {
            len: MAX_PASSWORD_LEN + 1
        })
    );
    db.add_user("w", &long_password[1..], false)
        .expect("the longest password");
    assert_eq!(
        db.check(&client("c", Some("w")), Some(&long_password[1..])),
        AuthnVerdict::allow(false)
    );
    assert_eq!(
        db.check(&client("c", Some("w")), Some(&long_password)),
        BAD,
        "too long at CONNECT"
    );
    let message = UserError::PasswordTooLong { len: 5000 }.to_string();
    assert!(message.contains("5000") && message.contains("4096"), "{message}");
}

#[test]
fn update_changes_password_and_flag() {
    let db = db(HashAlgorithm::Bcrypt { salt_rounds: 4 }, UserIdType::Username);
    db.add_user("u", b"old", false).expect("add");
    let u = client("c", Some("u"));
    let info = db.update_user("u", Some(b"new"), None).expect("update");
    assert_eq!(
        info,
        UserInfo {
            user_id: "u".into(),
            is_superuser: false
        }
    );
    assert_eq!(db.check(&u, Some(b"old")), BAD);
    assert_eq!(db.check(&u, Some(b"new")), AuthnVerdict::allow(false));
    let info = db.update_user("u", None, Some(true)).expect("update");
    assert!(info.is_superuser);
    assert_eq!(db.check(&u, Some(b"new")), AuthnVerdict::allow(true));
    assert_eq!(
        db.update_user("u", None, None).map(|i| i.is_superuser),
        Ok(true),
        "nothing to change"
    );
    assert_eq!(
        db.update_user("nobody", Some(b"x"), None),
        Err(UserError::NotFound("nobody".into()))
    );
    assert_eq!(
        db.update_user("u", Some(&vec![0u8; MAX_PASSWORD_LEN + 1]), None),
        Err(UserError::PasswordTooLong {
            len: MAX_PASSWORD_LEN + 1
        })
    );
    assert_eq!(
        db.get_user("u"),
        Some(UserInfo {
            user_id: "u".into(),
            is_superuser: true
        })
    );
}

#[test]
fn pages_come_in_user_id_order() {
    let db = db(
        HashAlgorithm::Plain {
            salt_position: SaltPosition::Disable,
        },
        UserIdType::Username,
    );
    for id in ["u3", "u1", "u2"] {
        db.add_user(id, b"p", id == "u2").expect("add");
    }
    let first = db.list_users(1, 2);
    let ids: Vec<&str> = first.users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["u1", "u2"]);
    assert!(first.users[1].is_superuser);
    assert_eq!((first.page, first.limit, first.count, first.has_next), (1, 2, 3, true));
    let second = db.list_users(2, 2);
    assert_eq!(
        second.users,
        [UserInfo {
            user_id: "u3".into(),
            is_superuser: false
        }]
    );
    assert!(!second.has_next);
    assert!(db.list_users(3, 2).users.is_empty());
    assert_eq!(db.list_users(0, 0).users.len(), 1, "page 0 is page 1, limit at least 1");
    assert_eq!(db.list_users(1, usize::MAX).users.len(), 3);
    assert!(db.list_users(usize::MAX, usize::MAX).users.is_empty(), "no overflow");
}

#[test]
fn by_client_id_ignores_the_user_name() {
    let db = db(HashAlgorithm::EMQX_DEFAULT, UserIdType::ClientId);
    assert_eq!(db.user_id_type(), UserIdType::ClientId);
    db.add_user("sensor-1", b"s3cret", false).expect("add");
    assert_eq!(
        db.check(&client("sensor-1", None), Some(b"s3cret")),
        AuthnVerdict::allow(false),
        "no user name needed"
    );
    assert_eq!(
        db.check(&client("sensor-1", Some("whoever")), Some(b"s3cret")),
        AuthnVerdict::allow(false)
    );
    assert_eq!(db.check(&client("sensor-1", None), Some(b"wrong")), BAD);
    assert_eq!(
        db.check(&client("sensor-2", None), Some(b"s3cret")),
        AuthnVerdict::Ignore
    );
    assert_eq!(
        db.check(&client("", None), None),
        AuthnVerdict::Ignore,
        "empty client id"
    );
    assert_eq!(
        db.check(&client("whoever", Some("sensor-1")), Some(b"s3cret")),
        AuthnVerdict::Ignore
    );
}

#[test]
fn every_algorithm_end_to_end() {
    let mut algorithms = Vec::new();
    for position in [SaltPosition::Disable, SaltPosition::Prefix, SaltPosition::Suffix] {
        for name in ["plain", "md5", "sha", "sha256", "sha512"] {
            algorithms.push(HashAlgorithm::simple(name, position).expect("simple"));
        }
    }
    for mac_fun in MacFun::ALL {
        algorithms.push(HashAlgorithm::Pbkdf2 {
            mac_fun,
            iterations: 2,
            dk_length: None,
        });
    }
    algorithms.push(HashAlgorithm::Pbkdf2 {
        mac_fun: MacFun::Sha256,
        iterations: 1,
        dk_length: Some(64),
    });
    algorithms.push(HashAlgorithm::Bcrypt { salt_rounds: 4 });
    algorithms.push(ARGON2_FAST);
    for algorithm in algorithms {
        for by in [UserIdType::Username, UserIdType::ClientId] {
            let db = db(algorithm, by);
            assert_eq!(db.algorithm(), algorithm);
            db.add_user("dev", b"public", true).expect("add");
            let dev = match by {
                UserIdType::Username => client("c", Some("dev")),
                UserIdType::ClientId => client("dev", None),
            };
            assert_eq!(
                db.check(&dev, Some(b"public")),
                AuthnVerdict::allow(true),
                "{algorithm}"
            );
            assert_eq!(db.check(&dev, Some(b"publik")), BAD, "{algorithm}");
            assert_eq!(db.check(&dev, Some(&[0xff, 0x00])), BAD, "{algorithm}: binary password");
        }
    }
}

#[test]
fn argon2_default_parameters_end_to_end() {
    let db = db(HashAlgorithm::default(), UserIdType::Username);
    db.add_user("alice", b"public", false).expect("add");
    assert_eq!(
        db.check(&client("c", Some("alice")), Some(b"public")),
        AuthnVerdict::allow(false)
    );
    assert_eq!(db.check(&client("c", Some("alice")), Some(b"nope")), BAD);
}

#[test]
fn the_database_is_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<BuiltinDb>();
    let db = std::sync::Arc::new(db(HashAlgorithm::EMQX_DEFAULT, UserIdType::Username));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    db.add_user(&format!("u{t}-{i}"), b"p", false).expect("add");
                    let verdict = db.check(&client("c", Some(&format!("u{t}-{i}"))), Some(b"p"));
                    assert_eq!(verdict, AuthnVerdict::allow(false));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    assert_eq!(db.len(), 200);
}

#[test]
fn invalid_algorithm_options_refuse_to_open() {
    let bad = HashAlgorithm::Pbkdf2 {
        mac_fun: MacFun::Sha256,
        iterations: 0,
        dk_length: None,
    };
    let error = BuiltinDb::open(None, bad, UserIdType::Username).expect_err("iterations 0");
    assert!(error.to_string().contains("iterations"), "{error}");
    assert_eq!(UserIdType::from_name("clientid"), Some(UserIdType::ClientId));
    assert_eq!(
        UserIdType::from_name("username").map(UserIdType::as_str),
        Some("username")
    );
    assert_eq!(UserIdType::default(), UserIdType::Username);
}

#[test]
fn filtered_pages_count_only_the_users_kept() {
    let db = db(
        HashAlgorithm::Sha256 {
            salt_position: SaltPosition::Prefix,
        },
        UserIdType::Username,
    );
    for (id, superuser) in [("alice", false), ("bob", true), ("carol", false), ("malice", true)] {
        db.add_user(id, b"pw", superuser).expect("add");
    }
    let like = db.list_users_where(1, 10, |id, _| id.contains("lic"));
    let ids: Vec<&str> = like.users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["alice", "malice"]);
    assert_eq!(like.count, 2);
    assert!(!like.has_next);
    let supers = db.list_users_where(1, 1, |_, superuser| superuser);
    assert_eq!(
        supers.users,
        [UserInfo {
            user_id: "bob".into(),
            is_superuser: true
        }]
    );
    assert_eq!(supers.count, 2);
    assert!(supers.has_next);
    let second = db.list_users_where(2, 1, |_, superuser| superuser);
    assert_eq!(second.users[0].user_id, "malice");
    assert!(!second.has_next);
}
