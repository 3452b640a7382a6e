//! Helpers shared by the built-in database test files.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use bytestring::ByteString;
use portico_auth::AuthnVerdict;
use portico_auth::builtin::BuiltinDb;
use portico_core::auth::ClientInfo;

/// What `db` says about user `username` (client id `c`) with `password`.
pub fn check(db: &BuiltinDb, username: &str, password: &str) -> AuthnVerdict {
    let client = ClientInfo {
        client_id: ByteString::from("c"),
        username: Some(ByteString::from(username)),
        peer: SocketAddr::from(([127, 0, 0, 1], 50000)),
        protocol: "mqtt",
        superuser: false,
        cert: None,
        acl: None,
    };
    db.check(&client, Some(password.as_bytes()))
}
