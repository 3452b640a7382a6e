//! The tables of a backup: how each is read from the running node (export) and written back
//! (import). Import is an upsert: an entry replaces the entry of the same key (user id, rule
//! owner, ban, topic, user name, key name, identity), other entries stay. Each entry is taken
//! on its own; one that does not parse or is refused is reported with its table, position
//! and key, and the others go on.
//!
//! Secrets are kept as stored: password hashes with their salts (they verify on the target
//! only under the same `password_hash_algorithm`), API key secrets hashed, PSK keys as they
//! are (a PSK key is the secret itself).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use bytestring::ByteString;
use portico_auth::authz_db::{AuthzDb, Who};
use portico_auth::builtin::{BuiltinDb, UserRecord};
use portico_auth::rules::RawRule;
use portico_core::banned::{BanEntry, BanError, BanKind};
use portico_core::message::{Message, MessageId, MessageProperties, Origin, now_millis};
use portico_core::{QoS, topic::TopicName};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::keys::KeyBackup;

/// Built-in database users of `password_based:built_in_database`.
pub(crate) const BUILTIN_AUTHN: &str = "builtin_authn";
/// Rules of the `built_in_database` authorization source.
pub(crate) const BUILTIN_AUTHZ: &str = "builtin_authz";
/// Bans in force.
pub(crate) const BANNED: &str = "banned";
/// Retained messages clients published (not the broker's own `$SYS` ones).
pub(crate) const RETAINED: &str = "retained_messages";
/// Dashboard users.
pub(crate) const DASHBOARD_USERS: &str = "dashboard_users";
/// API keys.
pub(crate) const API_KEYS: &str = "api_keys";
/// The built-in PSK database.
pub(crate) const PSK: &str = "psk";

/// Every table, in the order they are exported and imported.
pub(crate) const ALL: &[&str] = &[
    BUILTIN_AUTHN,
    BUILTIN_AUTHZ,
    BANNED,
    RETAINED,
    DASHBOARD_USERS,
    API_KEYS,
    PSK,
];

/// Most failures reported per table (the count goes on).
const MAX_REPORTED: usize = 100;

/// The authenticator whose users are [`BUILTIN_AUTHN`].
const AUTHN_ID: &str = "password_based:built_in_database";

/// The origin protocol of restored retained messages.
const PROTOCOL: &str = "backup";

fn builtin_users(state: &crate::AppState) -> Option<Arc<BuiltinDb>> {
    state
        .control
        .authenticators()
        .into_iter()
        .find(|a| a.id == AUTHN_ID)
        .and_then(|a| a.users)
}

fn builtin_rules(state: &crate::AppState) -> Option<Arc<AuthzDb>> {
    state
        .control
        .authz_sources()
        .into_iter()
        .find(|s| s.kind == "built_in_database")
        .and_then(|s| s.rules)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(field: &str, text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("{field}: not base64: {e}"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthnUser {
    user_id: String,
    password_hash: String,
    #[serde(default)]
    salt: String,
    #[serde(default)]
    is_superuser: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthzEntry {
    /// `username`, `clientid` or `all`.
    #[serde(rename = "type")]
    kind: String,
    /// The user name or client id; absent for `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    who: Option<String>,
    rules: Vec<RawRule>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBackup {
    #[serde(rename = "as")]
    kind: String,
    who: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    reason: String,
    at_ms: u64,
    #[serde(default)]
    until_ms: Option<u64>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PropertiesBackup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_format_indicator: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_expiry_interval: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_topic: Option<String>,
    /// Base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_data: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    user_properties: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetainedBackup {
    topic: String,
    /// Base64.
    payload: String,
    qos: u8,
    #[serde(default)]
    properties: PropertiesBackup,
    publish_at_ms: u64,
    #[serde(default)]
    from_clientid: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardUser {
    username: String,
    password_hash: String,
    #[serde(default)]
    salt: String,
    #[serde(default)]
    description: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PskEntry {
    identity: String,
    /// Base64.
    key: String,
}

fn to_json<T: Serialize>(entries: Vec<T>) -> Option<Vec<u8>> {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_vec(&entries).ok()
}

/// The JSON of table `name` on this node, or `None` when the node does not have it (no
/// built-in authenticator, rule source or PSK database configured).
pub(crate) fn export(state: &crate::AppState, name: &str) -> Option<Vec<u8>> {
    match name {
        BUILTIN_AUTHN => {
            let users = builtin_users(state)?;
            to_json(
                users
                    .records()
                    .into_iter()
                    .map(|r| AuthnUser {
                        user_id: r.user_id,
                        password_hash: r.password_hash,
                        salt: r.salt,
                        is_superuser: r.is_superuser,
                    })
                    .collect(),
            )
        }
        BUILTIN_AUTHZ => {
            let rules = builtin_rules(state)?;
            let entries = rules
                .list()
                .into_iter()
                .map(|(who, rules)| {
                    let (kind, who) = match who {
                        Who::Username(name) => ("username", Some(name)),
                        Who::ClientId(id) => ("clientid", Some(id)),
                        Who::All => ("all", None),
                    };
                    AuthzEntry {
                        kind: kind.to_owned(),
                        who,
                        rules,
                    }
                })
                .collect();
            to_json(entries)
        }
        BANNED => to_json(
            state
                .broker
                .banned()
                .list()
                .into_iter()
                .map(|b| BanBackup {
                    kind: b.kind.as_str().to_owned(),
                    who: b.who,
                    by: b.by,
                    reason: b.reason,
                    at_ms: b.at_ms,
                    until_ms: b.until_ms,
                })
                .collect(),
        ),
        RETAINED => to_json(
            state
                .broker
                .retained_messages()
                .iter()
                .filter(|m| !m.topic.as_str().starts_with("$SYS/"))
                .map(|m| retained_entry(m))
                .collect(),
        ),
        DASHBOARD_USERS => to_json(
            state
                .users
                .records()
                .into_iter()
                .map(|r| DashboardUser {
                    description: state.descriptions.get(&r.user_id),
                    username: r.user_id,
                    password_hash: r.password_hash,
                    salt: r.salt,
                })
                .collect(),
        ),
        API_KEYS => to_json(state.keys.export()),
        PSK => {
            let entries = state.control.psk_entries()?;
            to_json(
                entries
                    .into_iter()
                    .map(|(identity, key)| PskEntry {
                        identity,
                        key: b64(&key),
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

fn retained_entry(m: &Message) -> RetainedBackup {
    let p = &m.properties;
    RetainedBackup {
        topic: m.topic.as_str().to_owned(),
        payload: b64(&m.payload),
        qos: m.qos as u8,
        properties: PropertiesBackup {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.as_ref().map(|s| s.to_string()),
            response_topic: p.response_topic.as_ref().map(|s| s.to_string()),
            correlation_data: p.correlation_data.as_ref().map(|c| b64(c)),
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        publish_at_ms: m.timestamp_ms,
        from_clientid: m.from.client_id.to_string(),
    }
}

/// What importing one table did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TableReport {
    /// Entries added or replaced.
    pub(crate) imported: usize,
    /// Entries left out on purpose (a ban or retained message that has expired).
    pub(crate) skipped: usize,
    /// Entries refused.
    pub(crate) failed: usize,
    /// The first [`MAX_REPORTED`] refusals: `entry N (key): why`.
    pub(crate) failures: Vec<String>,
}

impl TableReport {
    fn fail(&mut self, index: usize, key: Option<&str>, why: impl std::fmt::Display) {
        self.failed += 1;
        if self.failures.len() < MAX_REPORTED {
            self.failures.push(match key {
                Some(key) => format!("entry {} ({key}): {why}", index + 1),
                None => format!("entry {}: {why}", index + 1),
            });
        }
    }
}

/// What one entry's import did.
enum Outcome {
    Imported,
    Skipped,
}

/// Imports table `name` from its JSON into this node. `Err` when the table as a whole
/// cannot be taken (not a JSON array, or this node has no such table).
pub(crate) fn import(state: &crate::AppState, name: &str, json: &[u8]) -> Result<TableReport, String> {
    let entries: Vec<Value> = serde_json::from_slice(json).map_err(|e| format!("not a JSON array: {e}"))?;
    match name {
        BUILTIN_AUTHN => {
            let users = builtin_users(state)
                .ok_or_else(|| format!("this node has no {AUTHN_ID} authenticator to import users into"))?;
            Ok(each(entries, |u: AuthnUser| {
                let key = u.user_id.clone();
                let record = UserRecord {
                    user_id: u.user_id,
                    password_hash: u.password_hash,
                    salt: u.salt,
                    is_superuser: u.is_superuser,
                };
                (
                    key,
                    users
                        .put_record(record)
                        .map(|()| Outcome::Imported)
                        .map_err(|e| e.to_string()),
                )
            }))
        }
        BUILTIN_AUTHZ => {
            let rules = builtin_rules(state)
                .ok_or_else(|| "this node has no built_in_database authorization source".to_owned())?;
            Ok(each(entries, |e: AuthzEntry| {
                let key = format!("{}:{}", e.kind, e.who.as_deref().unwrap_or("*"));
                let who = match (e.kind.as_str(), e.who) {
                    ("username", Some(name)) => Who::Username(name),
                    ("clientid", Some(id)) => Who::ClientId(id),
                    ("all", None) => Who::All,
                    _ => {
                        return (
                            key,
                            Err("type must be username or clientid with who, or all without".to_owned()),
                        );
                    }
                };
                let set = rules.set_rules(who, e.rules);
                (key, set.map(|()| Outcome::Imported).map_err(|e| e.to_string()))
            }))
        }
        BANNED => Ok(each(entries, |b: BanBackup| {
            let key = format!("{}:{}", b.kind, b.who);
            (key, import_ban(state, b))
        })),
        RETAINED => Ok(each(entries, |r: RetainedBackup| {
            let key = r.topic.clone();
            (key, import_retained(state, r))
        })),
        DASHBOARD_USERS => Ok(each(entries, |u: DashboardUser| {
            let key = u.username.clone();
            (key, import_dashboard_user(state, u))
        })),
        API_KEYS => Ok(each(entries, |k: KeyBackup| match state.keys.restore(k) {
            Ok(name) => (name, Ok(Outcome::Imported)),
            Err(why) => (String::new(), Err(why)),
        })),
        PSK => {
            if state.control.psk_identities().is_none() {
                return Err("psk_authentication is not enabled on this node".to_owned());
            }
            Ok(each(entries, |p: PskEntry| {
                let key = p.identity.clone();
                let put = unb64("key", &p.key)
                    .and_then(|k| state.control.psk_put(&p.identity, &k).map_err(|e| e.to_string()));
                (key, put.map(|()| Outcome::Imported))
            }))
        }
        _ => Err(format!("unknown table {name}")),
    }
}

/// Imports every entry with `one` (given the parsed entry; returns its key for the report
/// and the outcome).
fn each<T: DeserializeOwned>(
    entries: Vec<Value>,
    mut one: impl FnMut(T) -> (String, Result<Outcome, String>),
) -> TableReport {
    let mut report = TableReport::default();
    for (index, entry) in entries.into_iter().enumerate() {
        let parsed: T = match serde_json::from_value(entry) {
            Ok(parsed) => parsed,
            Err(error) => {
                report.fail(index, None, error);
                continue;
            }
        };
        match one(parsed) {
            (_, Ok(Outcome::Imported)) => report.imported += 1,
            (_, Ok(Outcome::Skipped)) => report.skipped += 1,
            (key, Err(why)) => report.fail(index, (!key.is_empty()).then_some(key.as_str()), why),
        }
    }
    report
}

fn import_ban(state: &crate::AppState, b: BanBackup) -> Result<Outcome, String> {
    // EMQX's `peerhost_net` is a `peerhost` ban of a CIDR range.
    let kind = match b.kind.as_str() {
        "peerhost_net" => BanKind::PeerHost,
        other => BanKind::parse(other).ok_or_else(|| format!("as: unknown kind {other:?}"))?,
    };
    if b.until_ms.is_some_and(|until| until <= now_millis()) {
        return Ok(Outcome::Skipped);
    }
    let entry = BanEntry {
        kind,
        who: b.who,
        by: b.by,
        reason: b.reason,
        at_ms: b.at_ms,
        until_ms: b.until_ms,
    };
    let banned = state.broker.banned();
    match banned.create(entry.clone()) {
        Ok(()) => Ok(Outcome::Imported),
        // The entry passed validation (that comes first): replace the ban in force.
        Err(BanError::AlreadyExists(..)) => {
            banned.remove(entry.kind, &entry.who);
            banned
                .create(entry)
                .map(|()| Outcome::Imported)
                .map_err(|e| e.to_string())
        }
        Err(error) => Err(error.to_string()),
    }
}

fn import_retained(state: &crate::AppState, r: RetainedBackup) -> Result<Outcome, String> {
    let topic = TopicName::new(r.topic.as_str()).map_err(|e| format!("topic: {e}"))?;
    if r.topic.starts_with("$SYS/") {
        return Err("topic: $SYS messages are the broker's own".to_owned());
    }
    let qos = QoS::from_u8(r.qos).ok_or("qos: must be 0, 1 or 2")?;
    let payload = unb64("payload", &r.payload)?;
    if payload.is_empty() {
        return Err("payload: empty (a retained message has one)".to_owned());
    }
    let p = r.properties;
    if p.payload_format_indicator.is_some_and(|v| v > 1) {
        return Err("properties.payload_format_indicator: must be 0 or 1".to_owned());
    }
    let correlation_data = p
        .correlation_data
        .map(|c| unb64("properties.correlation_data", &c).map(Bytes::from))
        .transpose()?;
    let properties = MessageProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type.map(ByteString::from),
        response_topic: p.response_topic.map(ByteString::from),
        correlation_data,
        user_properties: p
            .user_properties
            .into_iter()
            .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
            .collect(),
    };
    if let Some(seconds) = properties.message_expiry_interval
        && r.publish_at_ms.saturating_add(u64::from(seconds) * 1000) <= now_millis()
    {
        return Ok(Outcome::Skipped);
    }
    let message = Message {
        id: MessageId::generate(state.broker.node_id()),
        topic,
        payload: Bytes::from(payload),
        qos,
        retain: true,
        from: Origin {
            client_id: ByteString::from(r.from_clientid),
            protocol: PROTOCOL,
        },
        properties,
        timestamp_ms: r.publish_at_ms,
    };
    if state.broker.put_retained(message) {
        Ok(Outcome::Imported)
    } else {
        Err(
            "not stored: the retainer is off, over retainer.max_retained_messages or max_payload_size, \
             or the message has expired"
                .to_owned(),
        )
    }
}

fn import_dashboard_user(state: &crate::AppState, u: DashboardUser) -> Result<Outcome, String> {
    if u.description.len() > crate::handlers::users::MAX_DESCRIPTION_LEN {
        return Err(format!(
            "description: longer than {} bytes",
            crate::handlers::users::MAX_DESCRIPTION_LEN
        ));
    }
    let exists = state.users.get_user(&u.username).is_some();
    if !exists && state.users.len() >= crate::handlers::users::MAX_USERS {
        return Err(format!("at most {} dashboard users", crate::handlers::users::MAX_USERS));
    }
    let record = UserRecord {
        user_id: u.username.clone(),
        password_hash: u.password_hash,
        salt: u.salt,
        is_superuser: true,
    };
    state.users.put_record(record).map_err(|e| e.to_string())?;
    state.descriptions.set(&u.username, &u.description);
    // The password may have changed: sessions of the old one end.
    state.tokens.revoke_user(&u.username);
    Ok(Outcome::Imported)
}

/// What a whole import did, by table.
pub(crate) type ImportReport = BTreeMap<String, Result<TableReport, String>>;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_entry_is_taken_alone_and_failures_name_entry_and_key() {
        let entries = vec![
            json!({"identity": "a", "key": "AAEC"}),
            json!({"identity": "b"}),
            json!({"identity": "c", "key": "!!"}),
            json!({"identity": "d", "key": "AAEC", "extra": 1}),
            json!({"identity": "e", "key": "AAEC"}),
        ];
        let mut seen = Vec::new();
        let report = each(entries, |p: PskEntry| {
            let key = p.identity.clone();
            let outcome = unb64("key", &p.key).map(|k| {
                seen.push((p.identity, k));
                Outcome::Imported
            });
            (key, outcome)
        });
        assert_eq!(report.imported, 2);
        assert_eq!(report.failed, 3);
        assert_eq!(report.failures.len(), 3);
        assert!(
            report.failures[0].starts_with("entry 2: missing field `key`"),
            "{:?}",
            report.failures
        );
        assert!(
            report.failures[1].starts_with("entry 3 (c): key: not base64"),
            "{:?}",
            report.failures
        );
        assert!(
            report.failures[2].starts_with("entry 4: unknown field `extra`"),
            "{:?}",
            report.failures
        );
        assert_eq!(seen, [("a".to_owned(), vec![0, 1, 2]), ("e".to_owned(), vec![0, 1, 2])]);
    }

    #[test]
    fn failures_reported_are_bounded() {
        let entries = vec![json!(1); MAX_REPORTED + 10];
        let report = each(entries, |_: PskEntry| (String::new(), Ok(Outcome::Imported)));
        assert_eq!(report.failed, MAX_REPORTED + 10);
        assert_eq!(report.failures.len(), MAX_REPORTED);
    }

    #[test]
    fn retained_entries_round_trip_through_json() {
        let mut message = Message::new(
            0,
            TopicName::new("a/b").expect("topic"),
            Bytes::from_static(b"\x00\xffpayload"),
            QoS::ExactlyOnce,
            true,
            Origin::default(),
        );
        message.properties.content_type = Some(ByteString::from("text/plain"));
        message.properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
        message.properties.user_properties = vec![(ByteString::from("k"), ByteString::from("v"))];
        let json = serde_json::to_value(retained_entry(&message)).expect("json");
        assert_eq!(json["payload"], b64(b"\x00\xffpayload"));
        assert_eq!(json["qos"], 2);
        assert_eq!(json["properties"]["user_properties"], json!([["k", "v"]]));
        let back: RetainedBackup = serde_json::from_value(json).expect("parses back");
        assert_eq!(back.publish_at_ms, message.timestamp_ms);
        assert_eq!(back.properties.content_type.as_deref(), Some("text/plain"));
    }
}
