//! Importing users from EMQX's CSV and JSON files, plain and hashed, with bad lines, limits and
//! the bootstrap file.

mod common;

use common::check;
use std::path::PathBuf;

use portico_auth::AuthnVerdict;
use portico_auth::builtin::{
    BuiltinDb, ImportError, ImportKind, ImportLocation, MAX_IMPORT_BYTES, MAX_IMPORT_USERS, MAX_REPORTED_FAILURES,
    UserIdType,
};
use portico_auth::password::{HashAlgorithm, MacFun, SaltPosition};
use portico_core::auth::Refusal;

const SHA256_SUFFIX: HashAlgorithm = HashAlgorithm::Sha256 {
    salt_position: SaltPosition::Suffix,
};
const SALT: &str = "de1024f462fb83910fd13151bd4bd235";
/// sha256("public" ++ SALT) and sha256("secret" ++ SALT), lowercase hex as EMQX stores them.
const PUBLIC_HASH: &str = "68aa57d2163c75d08a6d60e832bbd1c08d94ceb59ed42881a1724cf34ceed22e";
const SECRET_HASH: &str = "a5c52fc9480d25f6b0c16e9e61162141296d951188eecac068e9f70cd61a3de7";

fn db(algorithm: HashAlgorithm) -> BuiltinDb {
    BuiltinDb::open(None, algorithm, UserIdType::Username).expect("open")
}

const ALLOW: AuthnVerdict = AuthnVerdict::allow(false);
const SUPER: AuthnVerdict = AuthnVerdict::allow(true);
const BAD: AuthnVerdict = AuthnVerdict::Deny(Refusal::BadCredentials);

#[test]
fn plain_csv_as_emqx_writes_it() {
    // EMQX's test file user-credentials-plain.csv, with a CRLF line and a blank line.
    let csv = "user_id,password,is_superuser\r\nmyuser3,password3,true\n\nmyuser4,password4,false\n";
    let db = db(SHA256_SUFFIX);
    let report = db.import_csv(csv, ImportKind::Plain).expect("import");
    assert_eq!((report.added, report.skipped, report.failed), (2, 0, 0));
    assert_eq!(report.total(), 2);
    assert_eq!(check(&db, "myuser3", "password3"), SUPER);
    assert_eq!(check(&db, "myuser4", "password4"), ALLOW);
    assert_eq!(check(&db, "myuser4", "password3"), BAD);

    // Again, with new passwords (EMQX's user-credentials-plain_v2.csv): existing users stay.
    let v2 = "user_id,password,is_superuser\nmyuser3,Password4,true\nmyuser4,Password3,false\n";
    let report = db.import_csv(v2, ImportKind::Plain).expect("import");
    assert_eq!((report.added, report.skipped, report.failed), (0, 2, 0));
    assert_eq!(check(&db, "myuser3", "password3"), SUPER, "not overwritten");
}

#[test]
fn hash_csv_with_salts() {
    let csv = format!(
        "user_id,password_hash,salt,is_superuser\n\
         myuser5,{PUBLIC_HASH},{SALT},true\n\
         myuser6 , {SECRET_HASH} , {SALT} , false \n"
    );
    let db = db(SHA256_SUFFIX);
    let report = db.import_csv(&csv, ImportKind::Hash).expect("import");
    assert_eq!((report.added, report.failed), (2, 0), "{:?}", report.failures);
    assert_eq!(check(&db, "myuser5", "public"), SUPER);
    assert_eq!(
        check(&db, "myuser6", "secret"),
        ALLOW,
        "blanks around fields are trimmed"
    );
    assert_eq!(check(&db, "myuser6", "public"), BAD);
}

#[test]
fn malformed_csv_lines_are_reported_and_the_rest_imported() {
    // EMQX's user-credentials-malformed.csv has a short line 3; EMQX refuses the whole file.
    let csv = format!(
        "user_id,password_hash,salt,is_superuser\n\
         myuser3,{PUBLIC_HASH},{SALT},true\n\
         myuser4,ee68c985a69208b6eda8c6c9b4c7c2d2b15ee2352cdd64a903171710a9\n\
         ,{PUBLIC_HASH},{SALT},false\n\
         myuser5,{PUBLIC_HASH},{SALT},maybe\n\
         myuser6,,{SALT},false\n\
         {long},{PUBLIC_HASH},{SALT},false\n\
         myuser7,{PUBLIC_HASH},,\n\
         myuser3,{SECRET_HASH},{SALT},false\n",
        long = "x".repeat(300)
    );
    let db = db(SHA256_SUFFIX);
    let report = db.import_csv(&csv, ImportKind::Hash).expect("import");
    assert_eq!(
        (report.added, report.skipped, report.failed),
        (2, 1, 5),
        "{:#?}",
        report.failures
    );
    let lines: Vec<(ImportLocation, Option<&str>)> = report
        .failures
        .iter()
        .map(|f| (f.location, f.user_id.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [
            (ImportLocation::Line(3), Some("myuser4")),
            (ImportLocation::Line(4), None),
            (ImportLocation::Line(5), Some("myuser5")),
            (ImportLocation::Line(6), Some("myuser6")),
            (ImportLocation::Line(7), Some("x".repeat(300).as_str())),
        ]
    );
    assert!(report.failures[0].reason.contains("2 fields"), "{}", report.failures[0]);
    assert!(report.failures[2].reason.contains("maybe"), "{}", report.failures[2]);
    assert!(report.failures[3].reason.contains("empty"), "{}", report.failures[3]);
    assert!(report.failures[4].reason.contains("256"), "{}", report.failures[4]);
    assert_eq!(report.failures[1].to_string(), "line 4: no user_id");
    assert_eq!(
        check(&db, "myuser3", "public"),
        SUPER,
        "the first of a repeated id wins"
    );
    // myuser7 has an empty salt and no superuser flag: imported, but its hash was made with a
    // salt, so it does not verify.
    assert_eq!(check(&db, "myuser7", "public"), BAD);
    assert_eq!(db.len(), 2);
}

#[test]
fn csv_headers_must_name_the_needed_columns() {
    let db = db(SHA256_SUFFIX);
    let hash_file = format!("user_id,password_hash,salt,is_superuser\nu,{PUBLIC_HASH},{SALT},true\n");
    let error = db
        .import_csv(&hash_file, ImportKind::Plain)
        .expect_err("no password column");
    assert!(
        matches!(
            error,
            ImportError::MissingColumn {
                column: "password",
                kind: "plain"
            }
        ),
        "{error}"
    );
    let error = db
        .import_csv("user_id,password\nu,p\n", ImportKind::Hash)
        .expect_err("no hash column");
    assert!(
        matches!(
            error,
            ImportError::MissingColumn {
                column: "password_hash",
                ..
            }
        ),
        "{error}"
    );
    let error = db
        .import_csv("name,password\nu,p\n", ImportKind::Plain)
        .expect_err("no user_id");
    assert!(
        matches!(error, ImportError::MissingColumn { column: "user_id", .. }),
        "{error}"
    );
    assert!(db.is_empty(), "nothing imported from refused files");
    // EMQX's default bootstrap file: a header only.
    let report = db
        .import_csv("user_id,password,is_superuser\n", ImportKind::Plain)
        .expect("empty");
    assert_eq!(report.total(), 0);
    assert_eq!(db.import_csv("", ImportKind::Plain).expect("empty").total(), 0);
    // Columns in another order, an unknown column, a byte-order mark, no is_superuser column.
    let report = db
        .import_csv("\u{feff}namespace,password,user_id\nns1,public,u1\n", ImportKind::Plain)
        .expect("import");
    assert_eq!(report.added, 1);
    assert_eq!(check(&db, "u1", "public"), ALLOW);
}

#[test]
fn plain_json_as_emqx_writes_it() {
    // EMQX's user-credentials-plain.json.
    let json = r#"[
        {"user_id":"myuser1", "password":"password1", "is_superuser": true},
        {"user_id":"myuser2", "password":"password2", "is_superuser": false},
        {"user_id":"myuser9", "password":"password9", "is_superuser": "true"},
        {"user_id":"myuser10", "password":"password10"}
    ]"#;
    let db = db(HashAlgorithm::Bcrypt { salt_rounds: 4 });
    let report = db.import_json(json, ImportKind::Plain).expect("import");
    assert_eq!((report.added, report.failed), (4, 0));
    assert_eq!(check(&db, "myuser1", "password1"), SUPER);
    assert_eq!(check(&db, "myuser2", "password2"), ALLOW);
    assert_eq!(check(&db, "myuser9", "password9"), SUPER);
    assert_eq!(check(&db, "myuser10", "password10"), ALLOW);
}

#[test]
fn hash_json_with_bad_entries() {
    let json = format!(
        r#"[
        {{"user_id":"myuser7", "password_hash":"{PUBLIC_HASH}", "salt":"{SALT}", "is_superuser": true}},
        {{"user_id":"myuser8", "password_hash":"{SECRET_HASH}", "salt":"{SALT}", "namespace":"ns1"}},
        {{"user_id":"nohash", "password":"public"}},
        {{"password_hash":"{PUBLIC_HASH}"}},
        {{"user_id":42, "password_hash":"{PUBLIC_HASH}"}},
        {{"user_id":"badflag", "password_hash":"{PUBLIC_HASH}", "is_superuser": 1}},
        {{"user_id":"badsalt", "password_hash":"{PUBLIC_HASH}", "salt": 7}},
        "myuser11",
        {{"user_id":"myuser7", "password_hash":"{SECRET_HASH}", "salt":"{SALT}"}}
    ]"#
    );
    let db = db(SHA256_SUFFIX);
    let report = db.import_json(&json, ImportKind::Hash).expect("import");
    assert_eq!(
        (report.added, report.skipped, report.failed),
        (2, 1, 6),
        "{:#?}",
        report.failures
    );
    let entries: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    assert_eq!(
        entries,
        [
            "entry 3 (user \"nohash\"): no password_hash, required for a hash import",
            "entry 4: no user_id",
            "entry 5: user_id must be a string",
            "entry 6 (user \"badflag\"): is_superuser must be true or false, not 1",
            "entry 7 (user \"badsalt\"): salt must be a string",
            "entry 8: not an object",
        ]
    );
    assert_eq!(check(&db, "myuser7", "public"), SUPER);
    assert_eq!(check(&db, "myuser8", "secret"), ALLOW);
}

#[test]
fn refused_json_files() {
    let db = db(SHA256_SUFFIX);
    // EMQX's user-credentials-malformed-1.json kind of file: not JSON.
    assert!(matches!(
        db.import_json("[{\"user_id\": ", ImportKind::Plain),
        Err(ImportError::Json(_))
    ));
    assert!(matches!(
        db.import_json("{\"user_id\": \"u\"}", ImportKind::Plain),
        Err(ImportError::NotAnArray)
    ));
    assert_eq!(db.import_json("[]", ImportKind::Plain).expect("empty").total(), 0);
    // A plain file imported as hash: every entry fails, with EMQX's reason.
    let report = db
        .import_json(r#"[{"user_id":"u","password":"p"}]"#, ImportKind::Hash)
        .expect("import");
    assert_eq!(report.failed, 1);
    assert!(db.is_empty());
}

#[test]
fn foreign_bcrypt_and_pbkdf2_hashes_import() {
    let bcrypt = db(HashAlgorithm::BCRYPT_DEFAULT);
    // EMQX keeps the bcrypt hash in the salt column too; it is not needed.
    let hash = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    let csv = format!("user_id,password_hash,salt,is_superuser\nold,{hash},{hash},false\n");
    assert_eq!(bcrypt.import_csv(&csv, ImportKind::Hash).expect("import").added, 1);
    assert_eq!(check(&bcrypt, "old", "U*U"), ALLOW);

    let pbkdf2 = db(HashAlgorithm::Pbkdf2 {
        mac_fun: MacFun::Sha256,
        iterations: 4,
        dk_length: None,
    });
    // PBKDF2-HMAC-SHA256("public", SALT as text, 4 iterations).
    let hash = "b464f81505a40e9d6c42b0f61c1aa2a2f17c0cb99194db30e96ba55fd03a5fa5";
    let json = format!(r#"[{{"user_id":"p","password_hash":"{hash}","salt":"{SALT}"}}]"#);
    assert_eq!(pbkdf2.import_json(&json, ImportKind::Hash).expect("import").added, 1);
    assert_eq!(check(&pbkdf2, "p", "public"), ALLOW);
    assert_eq!(check(&pbkdf2, "p", "secret"), BAD);
}

#[test]
fn limits_on_files_and_reported_failures() {
    let db = db(HashAlgorithm::Plain {
        salt_position: SaltPosition::Disable,
    });
    let mut csv = String::from("user_id,password\n");
    for _ in 0..MAX_IMPORT_USERS + 1 {
        csv.push_str("u,p\n");
    }
    let error = db.import_csv(&csv, ImportKind::Plain).expect_err("too many users");
    assert!(matches!(error, ImportError::TooManyUsers { count } if count == MAX_IMPORT_USERS + 1));
    assert!(db.is_empty());

    let mut bad = String::from("user_id,password\n");
    for _ in 0..MAX_REPORTED_FAILURES + 10 {
        bad.push_str("only-one-field\n");
    }
    let report = db.import_csv(&bad, ImportKind::Plain).expect("import");
    assert_eq!(report.failed, MAX_REPORTED_FAILURES + 10, "all counted");
    assert_eq!(report.failures.len(), MAX_REPORTED_FAILURES, "the first ones listed");
    assert_eq!(report.failures[0].location, ImportLocation::Line(2));
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portico-auth-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

#[test]
fn bootstrap_adds_only_missing_users() {
    let db = db(SHA256_SUFFIX);
    db.add_user("myuser3", b"kept", false).expect("add");
    let csv = temp_file(
        "bootstrap.csv",
        "user_id,password,is_superuser\nmyuser3,password3,true\nmyuser4,password4,false\n",
    );
    let report = db.bootstrap(&csv, ImportKind::Plain).expect("bootstrap");
    assert_eq!((report.added, report.skipped), (1, 1));
    assert_eq!(
        check(&db, "myuser3", "kept"),
        ALLOW,
        "an existing user keeps its password"
    );
    assert_eq!(check(&db, "myuser4", "password4"), ALLOW);

    let json = temp_file(
        "bootstrap.JSON",
        r#"[{"user_id":"j","password":"p","is_superuser":true}]"#,
    );
    assert_eq!(db.bootstrap(&json, ImportKind::Plain).expect("bootstrap").added, 1);
    assert_eq!(check(&db, "j", "p"), SUPER);

    let txt = temp_file("users.txt", "user_id,password\n");
    assert!(matches!(
        db.bootstrap(&txt, ImportKind::Plain),
        Err(ImportError::UnsupportedFormat(_))
    ));
    let missing = csv.with_file_name("missing.csv");
    let error = db.bootstrap(&missing, ImportKind::Plain).expect_err("missing");
    assert!(
        matches!(error, ImportError::Io { .. }) && error.to_string().contains("missing.csv"),
        "{error}"
    );
    let latin1 = csv.with_file_name("latin1.csv");
    std::fs::write(&latin1, b"user_id,password\nj\xe9r\xf4me,p\n").expect("write");
    assert!(matches!(
        db.bootstrap(&latin1, ImportKind::Plain),
        Err(ImportError::NotUtf8)
    ));
    let huge = csv.with_file_name("huge.csv");
    let file = std::fs::File::create(&huge).expect("create");
    file.set_len(MAX_IMPORT_BYTES + 1).expect("sparse file");
    let error = db.bootstrap(&huge, ImportKind::Plain).expect_err("too large");
    assert!(
        matches!(error, ImportError::TooLarge { size } if size == MAX_IMPORT_BYTES + 1),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(csv.parent().expect("dir"));
}

#[test]
fn import_kind_names() {
    assert_eq!(ImportKind::default(), ImportKind::Plain);
    assert_eq!(ImportKind::from_name("hash"), Some(ImportKind::Hash));
    assert_eq!(ImportKind::from_name("plain").map(ImportKind::as_str), Some("plain"));
    assert_eq!(ImportKind::from_name("csv"), None);
}
