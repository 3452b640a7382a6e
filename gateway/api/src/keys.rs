//! API keys (EMQX 5 `/api/v5/api_key`): a name, a random key and a random secret, used with
//! HTTP Basic (`key:secret`). Only a salted SHA-256 of the secret is kept, in the durable
//! store's key space [`KEYS_SPACE`]. A fast hash is enough here, unlike for passwords: the
//! secret is 256 random bits, so nothing can be guessed from the hash, and every API call pays
//! for one verification.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, response::IntoResponse, response::Response};
use bytes::Bytes;
use parking_lot::RwLock;
use portico_auth::password::{HashAlgorithm, SaltPosition};
use portico_core::journal::Journal;
use portico_core::message::now_millis;
use portico_core::store::StoreOp;
use portico_core::sys::format_rfc3339_utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::access::{Principal, users_only};
use crate::error::{ApiError, Strict, json_rejection};

/// The durable store's key space of API keys.
pub(crate) const KEYS_SPACE: &str = "dashboard.api_keys";

/// Most API keys: bounds memory and the store.
const MAX_KEYS: usize = 1024;

/// Longest key name and description.
const MAX_NAME_LEN: usize = 256;
const MAX_DESC_LEN: usize = 1024;

const HASH: HashAlgorithm = HashAlgorithm::Sha256 {
    salt_position: SaltPosition::Prefix,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    v: u32,
    api_key: String,
    secret_hash: String,
    salt: String,
    desc: String,
    enable: bool,
    created_at_ms: u64,
}

/// The API keys, by name.
pub(crate) struct ApiKeys {
    journal: Option<Arc<Journal>>,
    keys: RwLock<BTreeMap<String, KeyRecord>>,
}

impl ApiKeys {
    pub(crate) fn open(journal: Option<Arc<Journal>>) -> Result<ApiKeys, String> {
        let mut keys = BTreeMap::new();
        if let Some(journal) = &journal {
            let rows = journal.store().kv_scan(KEYS_SPACE).map_err(|e| e.to_string())?;
            for (name, value) in rows {
                let name =
                    String::from_utf8(name.to_vec()).map_err(|_| format!("{KEYS_SPACE}: a key name is not UTF-8"))?;
                let record: KeyRecord =
                    serde_json::from_slice(&value).map_err(|e| format!("{KEYS_SPACE}: key {name}: {e}"))?;
                keys.insert(name, record);
            }
        }
        Ok(ApiKeys {
            journal,
            keys: RwLock::new(keys),
        })
    }

    /// The name of the enabled key `api_key` whose secret is `secret`.
    pub(crate) fn verify(&self, api_key: &str, secret: &str) -> Option<String> {
        let keys = self.keys.read();
        let Some((name, record)) = keys.iter().find(|(_, r)| r.api_key == api_key) else {
            // Hash anyway: an unknown key takes as long as a wrong secret.
            let _ = HASH.hash(secret.as_bytes(), b"0000000000000000");
            return None;
        };
        let hash = HASH.hash(secret.as_bytes(), record.salt.as_bytes()).ok()?;
        let same: bool = hash.as_bytes().ct_eq(record.secret_hash.as_bytes()).into();
        (same && record.enable).then(|| name.clone())
    }

    fn persist(&self, name: &str, record: &KeyRecord) {
        if let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvPut {
                space: KEYS_SPACE,
                key: Bytes::copy_from_slice(name.as_bytes()),
                value: Bytes::from(serde_json::to_vec(record).unwrap_or_default()),
            });
        }
    }
}

/// One API key in a backup: the name and the record as stored (the secret only hashed).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyBackup {
    name: String,
    api_key: String,
    secret_hash: String,
    salt: String,
    #[serde(default)]
    desc: String,
    enable: bool,
    created_at_ms: u64,
}

/// Longest key id, stored hash and salt taken from a backup.
const MAX_BACKUP_FIELD_LEN: usize = 256;

impl ApiKeys {
    /// Every key as stored (hashed secret and salt), by name: what a backup keeps.
    pub(crate) fn export(&self) -> Vec<KeyBackup> {
        self.keys
            .read()
            .iter()
            .map(|(name, record)| KeyBackup {
                name: name.clone(),
                api_key: record.api_key.clone(),
                secret_hash: record.secret_hash.clone(),
                salt: record.salt.clone(),
                desc: record.desc.clone(),
                enable: record.enable,
                created_at_ms: record.created_at_ms,
            })
            .collect()
    }

    /// Adds `key` from a backup, or replaces the key of the same name; returns its name.
    /// Refused: a bad name or field, a key id another name holds, more than [`MAX_KEYS`].
    pub(crate) fn restore(&self, key: KeyBackup) -> Result<String, String> {
        if key.name.is_empty()
            || key.name.len() > MAX_NAME_LEN
            || !key.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(format!(
                "name {:?}: 1..={MAX_NAME_LEN} letters, digits, '-' and '_'",
                key.name
            ));
        }
        for (field, value) in [("api_key", &key.api_key), ("secret_hash", &key.secret_hash)] {
            if value.is_empty() || value.len() > MAX_BACKUP_FIELD_LEN {
                return Err(format!("{field}: must be 1..={MAX_BACKUP_FIELD_LEN} bytes"));
            }
        }
        if key.salt.len() > MAX_BACKUP_FIELD_LEN {
            return Err(format!("salt: longer than {MAX_BACKUP_FIELD_LEN} bytes"));
        }
        if key.desc.len() > MAX_DESC_LEN {
            return Err(format!("desc: longer than {MAX_DESC_LEN} bytes"));
        }
        let mut keys = self.keys.write();
        if let Some((other, _)) = keys
            .iter()
            .find(|(name, record)| **name != key.name && record.api_key == key.api_key)
        {
            return Err(format!("api_key {} is already the key {other:?}", key.api_key));
        }
        if !keys.contains_key(&key.name) && keys.len() >= MAX_KEYS {
            return Err(format!("at most {MAX_KEYS} API keys"));
        }
        let record = KeyRecord {
            v: 1,
            api_key: key.api_key,
            secret_hash: key.secret_hash,
            salt: key.salt,
            desc: key.desc,
            enable: key.enable,
            created_at_ms: key.created_at_ms,
        };
        self.persist(&key.name, &record);
        keys.insert(key.name.clone(), record);
        Ok(key.name)
    }
}

fn render(name: &str, record: &KeyRecord) -> Value {
    json!({
        "name": name,
        "api_key": record.api_key,
        "expired_at": "infinity",
        "created_at": format_rfc3339_utc(record.created_at_ms),
        "desc": record.desc,
        "enable": record.enable,
    })
}

#[derive(Deserialize)]
pub(crate) struct NewKey {
    name: String,
    #[serde(default)]
    desc: String,
    #[serde(default = "yes")]
    enable: bool,
    #[serde(default)]
    expired_at: Option<Value>,
}

#[derive(Deserialize)]
pub(crate) struct KeyUpdate {
    desc: Option<String>,
    enable: Option<bool>,
    #[serde(default)]
    expired_at: Option<Value>,
}

fn yes() -> bool {
    true
}

/// Only keys that never expire for now: a date would need a date parser this increment has not.
fn check_expiry(expired_at: &Option<Value>) -> Result<(), ApiError> {
    match expired_at {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "infinity" => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "expired_at: only \"infinity\" is supported (keys that expire are not implemented yet)",
        )),
    }
}

fn check_text(what: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.chars().count() > max {
        return Err(ApiError::bad_request(format!("{what}: longer than {max} characters")));
    }
    Ok(())
}

/// `GET /api/v5/api_key`.
pub(crate) async fn list(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    users_only(&principal)?;
    let keys = state.keys.keys.read();
    let all: Vec<Value> = keys.iter().map(|(name, record)| render(name, record)).collect();
    Ok(Json(all).into_response())
}

/// `POST /api/v5/api_key`: the answer carries the secret, the only time it is shown.
pub(crate) async fn create(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<Strict<NewKey>>, JsonRejection>,
) -> Result<Response, ApiError> {
    users_only(&principal)?;
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    if body.name.is_empty() || !body.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
        return Err(ApiError::bad_request(
            "name: letters, digits, '-' and '_' only, not empty",
        ));
    }
    check_text("name", &body.name, MAX_NAME_LEN)?;
    check_text("desc", &body.desc, MAX_DESC_LEN)?;
    check_expiry(&body.expired_at)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let salt = HashAlgorithm::gen_salt();
    let secret_hash = HASH
        .hash(secret.as_bytes(), salt.as_bytes())
        .map_err(|e| ApiError::internal(format!("cannot hash the secret: {e}")))?;
    let record = KeyRecord {
        v: 1,
        api_key: hex::encode(rand::random::<[u8; 8]>()),
        secret_hash,
        salt,
        desc: body.desc,
        enable: body.enable,
        created_at_ms: now_millis(),
    };
    let mut keys = state.keys.keys.write();
    if keys.contains_key(&body.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("an API key named {} exists", body.name),
        ));
    }
    if keys.len() >= MAX_KEYS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "LIMIT_REACHED",
            format!("at most {MAX_KEYS} API keys"),
        ));
    }
    state.keys.persist(&body.name, &record);
    let mut out = render(&body.name, &record);
    out["api_secret"] = Value::String(secret);
    keys.insert(body.name, record);
    Ok(Json(out).into_response())
}

/// `GET /api/v5/api_key/{name}`.
pub(crate) async fn get(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    users_only(&principal)?;
    let keys = state.keys.keys.read();
    let record = keys.get(&name).ok_or_else(not_found)?;
    Ok(Json(render(&name, record)).into_response())
}

/// `PUT /api/v5/api_key/{name}`: description and enable flag.
pub(crate) async fn update(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Result<Json<Strict<KeyUpdate>>, JsonRejection>,
) -> Result<Response, ApiError> {
    users_only(&principal)?;
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    check_expiry(&body.expired_at)?;
    let mut keys = state.keys.keys.write();
    let record = keys.get_mut(&name).ok_or_else(not_found)?;
    if let Some(desc) = body.desc {
        check_text("desc", &desc, MAX_DESC_LEN)?;
        record.desc = desc;
    }
    if let Some(enable) = body.enable {
        record.enable = enable;
    }
    let out = render(&name, record);
    let record = record.clone();
    state.keys.persist(&name, &record);
    Ok(Json(out).into_response())
}

/// `DELETE /api/v5/api_key/{name}`.
pub(crate) async fn delete(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    users_only(&principal)?;
    let mut keys = state.keys.keys.write();
    keys.remove(&name).ok_or_else(not_found)?;
    if let Some(journal) = &state.keys.journal {
        journal.submit(StoreOp::KvDelete {
            space: KEYS_SPACE,
            key: Bytes::copy_from_slice(name.as_bytes()),
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

fn not_found() -> ApiError {
    ApiError::not_found("NOT_FOUND", "no such API key")
}
