//! Helpers shared by the built-in database test files (users, SCRAM users, rules).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use bytestring::ByteString;
use parking_lot::Mutex;
use portico_auth::AuthnVerdict;
use portico_auth::builtin::BuiltinDb;
use portico_core::auth::ClientInfo;
use portico_core::store::{Recovered, Store, StoreError, StoreOp};

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

/// Key-value ops only, in memory.
#[derive(Default)]
pub struct MemStore {
    pub kv: Mutex<BTreeMap<(String, Bytes), Bytes>>,
    pub commits: Mutex<usize>,
}

impl Store for MemStore {
    fn commit(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let mut kv = self.kv.lock();
        for op in ops {
            match op {
                StoreOp::KvPut { space, key, value } => {
                    kv.insert((space.to_string(), key.clone()), value.clone());
                }
                StoreOp::KvDelete { space, key } => {
                    kv.remove(&(space.to_string(), key.clone()));
                }
                other => return Err(StoreError::Io(format!("unexpected op {other:?}"))),
            }
        }
        *self.commits.lock() += 1;
        Ok(())
    }

    fn load(&self) -> Result<Recovered, StoreError> {
        Ok(Recovered::default())
    }

    fn kv_scan(&self, space: &str) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        Ok(self
            .kv
            .lock()
            .iter()
            .filter(|((s, _), _)| s == space)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}
