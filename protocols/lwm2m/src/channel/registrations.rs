//! The gateway's table of registrations, by location, shared by the listeners' channels and kept
//! in the durable store (key space [`SPACE`]) when the broker has one.
//!
//! Why a table beside the channels: a channel lives and dies with one device address, but a
//! registration outlives both an address change (NAT rebinding) and a gateway restart. An
//! update (`POST /rd/{location}`) that reaches a channel without a registration looks the
//! location up here and, if the record is still within its lifetime, rebuilds the channel from
//! it instead of answering 4.04 (which would make the device register again).
//!
//! The table also enforces the registration limit and names the channel that owns each
//! registration, so that a second registration of the same endpoint from another address can
//! take it over (the old channel is kicked).
//!
//! Records are written on register, re-register, update and rebuild; deleted on de-register,
//! lifetime expiry and kicks (not on server shutdown, which is the point). They are not written
//! on every message, so a stored expiry is the last register/update plus its lifetime: a device
//! that stops updating (as the spec tells it not to) is dropped at the next load.
//!
//! Memory: at most `max` entries; each entry is the encoded record (the same `Bytes` the
//! journal writes, not a second copy), its expiry and a weak owner reference. A record over
//! [`MAX_RECORD`] bytes is refused at registration.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use portico_core::conn::{ConnHandle, ConnId, KickReason};
use portico_core::journal::Journal;
use portico_core::message::now_millis;
use portico_core::store::StoreOp;
use serde_json::{Map, Value as Json};

use super::command;
use super::downlink::Queued;

/// Key space of registrations in the durable store.
pub const SPACE: &str = "lwm2m.registrations";

/// Version of the stored record; a record of another version is dropped at load (the device
/// registers again).
const VERSION: u64 = 1;

/// The largest encoded record kept (endpoint, query and object list together).
pub const MAX_RECORD: usize = 16 * 1024;

/// What is kept of a registration: enough to rebuild its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) endpoint: String,
    /// The mountpoint as filled in at registration (`${peerhost}` must not change with the
    /// address).
    pub(super) mountpoint: String,
    /// The query parameters without the sensitive ones (no password is stored).
    pub(super) query: BTreeMap<String, String>,
    pub(super) lifetime_secs: u64,
    pub(super) alternate_path: String,
    pub(super) object_list: Vec<String>,
    pub(super) queue_mode: bool,
    pub(super) client_id: String,
    pub(super) username: Option<String>,
    /// The DTLS PSK identity of the connection that registered: a rebuild needs the same one.
    pub(super) psk_identity: Option<String>,
    pub(super) peer: SocketAddr,
    /// Wall-clock milliseconds of the last register/update.
    pub(super) seen_ms: u64,
}

impl Record {
    /// Wall-clock milliseconds at which the registration ends unless updated.
    pub(super) fn expires_ms(&self) -> u64 {
        self.seen_ms.saturating_add(self.lifetime_secs.saturating_mul(1000))
    }

    pub(super) fn encode(&self) -> Bytes {
        let query: Map<String, Json> = self
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        let value = serde_json::json!({
            "v": VERSION,
            "ep": self.endpoint,
            "mp": self.mountpoint,
            "q": query,
            "lt": self.lifetime_secs,
            "ap": self.alternate_path,
            "ol": self.object_list,
            "qm": self.queue_mode,
            "cid": self.client_id,
            "user": self.username,
            "psk": self.psk_identity,
            "peer": self.peer.to_string(),
            "seen": self.seen_ms,
        });
        Bytes::from(value.to_string())
    }

    /// The record, or why not (a damaged row or another version).
    pub(super) fn decode(bytes: &[u8]) -> Result<Record, String> {
        let value: Json = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let field = |name: &str| value.get(name).ok_or_else(|| format!("no `{name}`"));
        let string = |name: &str| {
            field(name)?
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("`{name}` is not a string"))
        };
        let number = |name: &str| field(name)?.as_u64().ok_or_else(|| format!("`{name}` is not a number"));
        let optional = |name: &str| match value.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{name}` is not a string")),
        };
        let version = number("v")?;
        if version != VERSION {
            return Err(format!("version {version}, expected {VERSION}"));
        }
        let query = field("q")?
            .as_object()
            .ok_or("`q` is not an object")?
            .iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect::<Option<BTreeMap<_, _>>>()
            .ok_or("a `q` value is not a string")?;
        let object_list = field("ol")?
            .as_array()
            .ok_or("`ol` is not an array")?
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or("an `ol` entry is not a string")?;
        Ok(Record {
            endpoint: string("ep")?,
            mountpoint: string("mp")?,
            query,
            lifetime_secs: number("lt")?,
            alternate_path: string("ap")?,
            object_list,
            queue_mode: field("qm")?.as_bool().ok_or("`qm` is not a boolean")?,
            client_id: string("cid")?,
            username: optional("user")?,
            psk_identity: optional("psk")?,
            peer: string("peer")?
                .parse()
                .map_err(|e| format!("`peer` is not an address: {e}"))?,
            seen_ms: number("seen")?,
        })
    }
}

#[derive(Debug)]
struct Entry {
    /// The encoded record (shared with the journal's write).
    value: Bytes,
    expires_ms: u64,
    /// The channel serving it; `None` after a restart until the device is heard again, or
    /// after its channel went away without ending the registration (a DTLS session closed).
    owner: Option<(ConnId, Weak<ConnHandle>)>,
    /// Commands a channel that no longer serves the registration had not sent, for the one
    /// that does (or will, once the device is heard); and commands sent through the API.
    handed_over: Vec<Queued>,
    /// The last result of each (action, path), newest last, for the API's lookup.
    results: std::collections::VecDeque<Recorded>,
}

/// A command's result as the API's lookup shows it.
#[derive(Debug, Clone)]
struct Recorded {
    action: String,
    path: String,
    result: Json,
}

/// Results kept per registration (EMQX keeps the last 100).
const MAX_RESULTS: usize = 100;

/// Commands the API may leave for a registration before its channel takes them.
pub const MAX_API_COMMANDS: usize = 100;

/// Why the API could not send a command or look a result up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// No live registration has that client id.
    ClientNotFound,
    /// The command is not one the gateway can send; why.
    Invalid(String),
    /// [`MAX_API_COMMANDS`] commands wait already.
    QueueFull,
}

impl Entry {
    fn owner_alive(&self) -> bool {
        self.owner.as_ref().is_some_and(|(_, conn)| conn.strong_count() > 0)
    }
}

/// Why [`Registrations::put`] refused a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// `max` registrations already.
    Full,
    /// The record is larger than [`MAX_RECORD`].
    TooLarge,
}

/// See the module docs.
#[derive(Debug)]
pub struct Registrations {
    journal: Option<Arc<Journal>>,
    max: usize,
    table: Mutex<HashMap<String, Entry>>,
}

impl Registrations {
    /// The table, holding at most `max` registrations, with the unexpired registrations of
    /// `journal`'s store (expired and undecodable ones are deleted from it). Without a journal
    /// it starts empty and nothing is written.
    pub fn load(journal: Option<Arc<Journal>>, max: usize) -> Arc<Registrations> {
        let mut table = HashMap::new();
        if let Some(journal) = &journal {
            match journal.store().kv_scan(SPACE) {
                Ok(rows) => {
                    let now_ms = now_millis();
                    for (key, value) in rows {
                        let keep = match Record::decode(&value) {
                            Ok(record) if record.expires_ms() > now_ms && table.len() < max => Some(record),
                            Ok(_) => None,
                            Err(why) => {
                                tracing::warn!(key = %String::from_utf8_lossy(&key), why, "stored LwM2M registration dropped");
                                None
                            }
                        };
                        match keep {
                            Some(record) if key == record.endpoint.as_bytes() => {
                                let expires_ms = record.expires_ms();
                                table.insert(
                                    record.endpoint,
                                    Entry {
                                        value,
                                        expires_ms,
                                        owner: None,
                                        handed_over: Vec::new(),
                                        results: Default::default(),
                                    },
                                );
                            }
                            _ => {
                                journal.submit(StoreOp::KvDelete { space: SPACE, key });
                            }
                        }
                    }
                    if !table.is_empty() {
                        tracing::info!(count = table.len(), "LwM2M registrations restored");
                    }
                    // Nothing waits for those deletes; the ticket must not hold up whatever
                    // this thread acknowledges next.
                    let _ = portico_core::journal::take_ticket();
                }
                Err(error) => tracing::error!(%error, "cannot read the stored LwM2M registrations"),
            }
        }
        Arc::new(Registrations {
            journal,
            max,
            table: Mutex::new(table),
        })
    }

    /// How many registrations the table holds.
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a registration of `endpoint` could be added now (a cheap check before the
    /// authentication backends are asked).
    pub(super) fn has_room_for(&self, endpoint: &str) -> bool {
        let mut table = self.table.lock();
        table.contains_key(endpoint) || table.len() < self.max || self.sweep(&mut table) < self.max
    }

    /// Drops the entries no channel serves whose lifetime is over; the new length.
    fn sweep(&self, table: &mut HashMap<String, Entry>) -> usize {
        let now_ms = now_millis();
        let journal = &self.journal;
        table.retain(|location, entry| {
            let keep = entry.owner_alive() || entry.expires_ms > now_ms;
            if !keep && let Some(journal) = journal {
                journal.submit(StoreOp::KvDelete {
                    space: SPACE,
                    key: Bytes::from(location.clone()),
                });
            }
            keep
        });
        table.len()
    }

    /// Stores `record` as served by `owner`. Another live channel that served the same
    /// location is kicked (taken over). Refused when the table is full (and `record` is new)
    /// or the record too large.
    pub(super) fn put(&self, record: &Record, owner: &Arc<ConnHandle>) -> Result<(), Refused> {
        let value = record.encode();
        if value.len() > MAX_RECORD {
            return Err(Refused::TooLarge);
        }
        let mut table = self.table.lock();
        if !table.contains_key(&record.endpoint) && table.len() >= self.max && self.sweep(&mut table) >= self.max {
            return Err(Refused::Full);
        }
        // Commands handed over stay with the endpoint whatever re-registers it.
        let handed_over = table
            .get_mut(&record.endpoint)
            .map(|old| std::mem::take(&mut old.handed_over))
            .unwrap_or_default();
        let entry = Entry {
            value: value.clone(),
            expires_ms: record.expires_ms(),
            owner: Some((owner.id(), Arc::downgrade(owner))),
            handed_over,
            results: Default::default(),
        };
        let previous = table.insert(record.endpoint.clone(), entry);
        drop(table);
        take_over(&record.endpoint, previous.and_then(|p| p.owner), owner);
        if let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvPut {
                space: SPACE,
                key: Bytes::from(record.endpoint.clone()),
                value,
            });
        }
        Ok(())
    }

    /// Makes `owner` serve the registration at `location`, kicking the channel that did.
    pub(super) fn claim(&self, location: &str, owner: &Arc<ConnHandle>) {
        let mut table = self.table.lock();
        let Some(entry) = table.get_mut(location) else { return };
        let previous = entry.owner.replace((owner.id(), Arc::downgrade(owner)));
        drop(table);
        take_over(location, previous, owner);
    }

    /// Keeps the unsent commands of `from`, a channel leaving the registration at `location`
    /// while the registration lives on (taken over, or its DTLS session gone), for the channel
    /// that serves it next, which is signalled if it is already there. At most `max` are
    /// kept, the oldest first; without a registration they are dropped with it.
    pub(super) fn hand_over(&self, location: &str, from: ConnId, commands: Vec<Queued>, max: usize) {
        if commands.is_empty() {
            return;
        }
        let mut table = self.table.lock();
        let Some(entry) = table.get_mut(location) else { return };
        let room = max.saturating_sub(entry.handed_over.len());
        let dropped = commands.len().saturating_sub(room);
        entry.handed_over.extend(commands.into_iter().take(room));
        let successor = entry
            .owner
            .as_ref()
            .filter(|(id, _)| *id != from)
            .and_then(|(_, conn)| conn.upgrade());
        drop(table);
        if dropped > 0 {
            tracing::info!(
                location,
                dropped,
                "LwM2M commands over the queue bound dropped at a hand-over"
            );
        }
        if let Some(conn) = successor {
            conn.signal_deliver();
            conn.wake();
        }
    }

    /// The commands handed over for the registration at `location`.
    pub(super) fn take_handed_over(&self, location: &str) -> Vec<Queued> {
        let mut table = self.table.lock();
        table
            .get_mut(location)
            .map(|entry| std::mem::take(&mut entry.handed_over))
            .unwrap_or_default()
    }

    /// The record at `location` if its lifetime is not over (an expired one is dropped).
    pub(super) fn get(&self, location: &str) -> Option<Record> {
        let mut table = self.table.lock();
        let (expired, value) = {
            let entry = table.get(location)?;
            (
                entry.expires_ms <= now_millis() && !entry.owner_alive(),
                entry.value.clone(),
            )
        };
        if expired {
            table.remove(location);
            drop(table);
            self.delete(location);
            return None;
        }
        drop(table);
        match Record::decode(&value) {
            Ok(record) => Some(record),
            Err(why) => {
                // Only this module encodes records, so this is a bug, not bad input.
                tracing::error!(location, why, "LwM2M registration record does not decode");
                None
            }
        }
    }

    /// Ends the registration at `location` if `owner` serves it (a channel that was taken over
    /// must not end its successor's registration).
    pub(super) fn remove(&self, location: &str, owner: ConnId) {
        let mut table = self.table.lock();
        if table.get(location).and_then(|e| e.owner.as_ref()).map(|(id, _)| *id) != Some(owner) {
            return;
        }
        table.remove(location);
        drop(table);
        self.delete(location);
    }

    /// `owner`'s channel is gone but the registration lives on (shutdown, a closed DTLS
    /// session): the record stays, served by nobody, until the device is heard again or its
    /// lifetime ends.
    pub(super) fn release(&self, location: &str, owner: ConnId) {
        let mut table = self.table.lock();
        if let Some(entry) = table.get_mut(location)
            && entry.owner.as_ref().map(|(id, _)| *id) == Some(owner)
        {
            entry.owner = None;
        }
    }

    /// The location of the live registration whose client id is `client_id`. A scan that
    /// decodes each record: for the API, not for the message path.
    fn find_client(&self, client_id: &str) -> Option<(String, Record)> {
        let now_ms = now_millis();
        let rows: Vec<(String, Bytes)> = self
            .table
            .lock()
            .iter()
            .filter(|(_, e)| e.owner_alive() || e.expires_ms > now_ms)
            .map(|(location, e)| (location.clone(), e.value.clone()))
            .collect();
        rows.into_iter().find_map(|(location, value)| {
            Record::decode(&value)
                .ok()
                .filter(|r| r.client_id == client_id)
                .map(|r| (location, r))
        })
    }

    /// Sends `command` (the JSON of an MQTT downlink command) to the device of `client_id`
    /// through its channel, as if it came on the command topic: queued behind the channel's
    /// commands, answered on the response topic and recorded for [`Registrations::last_result`].
    /// A device with no channel now (asleep since a restart) gets it when it is heard.
    pub fn send_command(&self, client_id: &str, command: Map<String, Json>) -> Result<(), AdminError> {
        let (location, record) = self.find_client(client_id).ok_or(AdminError::ClientNotFound)?;
        let payload = Json::Object(command).to_string();
        let parsed = match command::parse(payload.as_bytes(), &record.alternate_path) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Err(AdminError::Invalid("the command is not a JSON object".to_owned())),
            Err(refused) => return Err(AdminError::Invalid(refused.why)),
        };
        let mut table = self.table.lock();
        let Some(entry) = table.get_mut(&location) else {
            return Err(AdminError::ClientNotFound);
        };
        if entry.handed_over.len() >= MAX_API_COMMANDS {
            return Err(AdminError::QueueFull);
        }
        entry.handed_over.push(Queued::new(parsed, None));
        let owner = entry.owner.as_ref().and_then(|(_, conn)| conn.upgrade());
        drop(table);
        if let Some(conn) = owner {
            conn.signal_deliver();
            conn.wake();
        }
        Ok(())
    }

    /// Remembers the result of an `action` on `path` for the registration at `location`
    /// (replacing the last one of the same pair; at most [`MAX_RESULTS`]).
    pub(super) fn record_result(&self, location: &str, action: &str, path: &str, result: Json) {
        let mut table = self.table.lock();
        let Some(entry) = table.get_mut(location) else { return };
        entry.results.retain(|r| !(r.action == action && r.path == path));
        if entry.results.len() >= MAX_RESULTS {
            entry.results.pop_front();
        }
        entry.results.push_back(Recorded {
            action: action.to_owned(),
            path: path.to_owned(),
            result,
        });
    }

    /// The last recorded result of `action` on `path` for `client_id`'s device (`None`: no
    /// reply yet).
    pub fn last_result(&self, client_id: &str, path: &str, action: &str) -> Result<Option<Json>, AdminError> {
        let (location, _) = self.find_client(client_id).ok_or(AdminError::ClientNotFound)?;
        let table = self.table.lock();
        Ok(table.get(&location).and_then(|entry| {
            entry
                .results
                .iter()
                .rev()
                .find(|r| r.action == action && r.path == path)
                .map(|r| r.result.clone())
        }))
    }

    fn delete(&self, location: &str) {
        if let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvDelete {
                space: SPACE,
                key: Bytes::from(location.to_owned()),
            });
        }
    }
}

/// Kicks the channel that served a registration `owner` now serves (the broker's session
/// takeover would not reach it when the client id changed).
fn take_over(location: &str, previous: Option<(ConnId, Weak<ConnHandle>)>, owner: &Arc<ConnHandle>) {
    if let Some((id, old)) = previous
        && id != owner.id()
        && let Some(old) = old.upgrade()
    {
        tracing::info!(
            location,
            "LwM2M registration moved to another address; the old channel is taken over"
        );
        old.kick(KickReason::TakenOver);
    }
}
