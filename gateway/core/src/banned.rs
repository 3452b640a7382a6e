//! The banned list (EMQX `emqx_banned`) and flapping detection (EMQX `emqx_flapping`).
//!
//! A ban names a client id, a user name or a peer address (an IP or a CIDR range) and may
//! expire. Every frontend's CONNECT is checked against it through `Ctx::authenticate`, before
//! any authentication backend runs. Bans are kept in the durable store (key space `banned`) so
//! that they outlive a restart.
//!
//! Flapping detection counts how often a client id disconnects; past `max_count` within
//! `window_time` the client id is banned for `ban_time`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use parking_lot::{Mutex, RwLock};
use regex::{Regex, RegexBuilder};

use crate::auth::ClientInfo;
use crate::journal::Journal;
use crate::message::now_millis;
use crate::store::StoreOp;

/// Key space of bans in the durable store.
pub const BANNED_SPACE: &str = "banned";

/// What a ban matches (EMQX's `as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BanKind {
    /// A client id.
    ClientId,
    /// A user name.
    Username,
    /// A peer address: one IP (`10.0.0.7`) or a CIDR range (`10.0.0.0/8`).
    PeerHost,
    /// A regular expression a client id matches (EMQX 5.4's `clientid_re`; unanchored, as
    /// EMQX's `re:run`: anchor it with `^...$` to match the whole id).
    ClientIdRe,
    /// A regular expression a user name matches (`username_re`).
    UsernameRe,
}

impl BanKind {
    /// EMQX's spelling (`clientid`, `username`, `peerhost`).
    pub fn as_str(self) -> &'static str {
        match self {
            BanKind::ClientId => "clientid",
            BanKind::Username => "username",
            BanKind::PeerHost => "peerhost",
            BanKind::ClientIdRe => "clientid_re",
            BanKind::UsernameRe => "username_re",
        }
    }

    /// Parses EMQX's spelling.
    pub fn parse(text: &str) -> Option<BanKind> {
        match text {
            "clientid" => Some(BanKind::ClientId),
            "username" => Some(BanKind::Username),
            "peerhost" => Some(BanKind::PeerHost),
            "clientid_re" => Some(BanKind::ClientIdRe),
            "username_re" => Some(BanKind::UsernameRe),
            _ => None,
        }
    }
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEntry {
    /// What it matches.
    pub kind: BanKind,
    /// The client id, user name, IP or CIDR.
    pub who: String,
    /// Who banned (an operator, `flapping_detect`, ...).
    pub by: String,
    /// Why.
    pub reason: String,
    /// When it was made, wall-clock milliseconds.
    pub at_ms: u64,
    /// When it ends, wall-clock milliseconds; `None` = never.
    pub until_ms: Option<u64>,
}

impl BanEntry {
    fn expired(&self, now_ms: u64) -> bool {
        self.until_ms.is_some_and(|until| until <= now_ms)
    }

    fn key(&self) -> Bytes {
        Bytes::from(format!("{}:{}", self.kind.as_str(), self.who))
    }

    fn encode(&self) -> Bytes {
        let value = serde_json::json!({
            "as": self.kind.as_str(),
            "who": self.who,
            "by": self.by,
            "reason": self.reason,
            "at": self.at_ms,
            "until": self.until_ms,
        });
        Bytes::from(value.to_string())
    }

    fn decode(bytes: &[u8]) -> Option<BanEntry> {
        let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(BanEntry {
            kind: BanKind::parse(value.get("as")?.as_str()?)?,
            who: value.get("who")?.as_str()?.to_owned(),
            by: value.get("by")?.as_str()?.to_owned(),
            reason: value.get("reason")?.as_str()?.to_owned(),
            at_ms: value.get("at")?.as_u64()?,
            until_ms: value.get("until").and_then(serde_json::Value::as_u64),
        })
    }
}

/// Why a ban was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BanError {
    /// `peerhost` must be an IP address or a CIDR range.
    #[error("not an IP address or CIDR range: {0:?}")]
    BadAddress(String),
    /// Empty client id or user name.
    #[error("the banned {0} is empty")]
    Empty(&'static str),
    /// `clientid_re`/`username_re`: not a regular expression, or one too big to compile.
    #[error("not a usable regular expression: {0}")]
    BadPattern(String),
    /// [`Banned::create`]: a ban in force for the same `as` and `who` exists.
    #[error("{} {:?} is already banned", .0.as_str(), .1)]
    AlreadyExists(BanKind, String),
}

/// An IP network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen on an IPv6 socket is matched as IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xFFu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

#[derive(Debug, Default)]
struct Table {
    exact: HashMap<(BanKind, String), BanEntry>,
    hosts: Vec<(Cidr, BanEntry)>,
    /// `clientid_re` and `username_re` bans, tried in turn on every connect.
    patterns: Vec<(Regex, BanEntry)>,
}

impl Table {
    fn len(&self) -> usize {
        self.exact.len() + self.hosts.len() + self.patterns.len()
    }
}

/// Compiled size a ban's regular expression may take: a ban is tried on every connect, so a
/// pattern that compiles into a huge automaton is refused rather than slowing every client.
const PATTERN_SIZE_LIMIT: usize = 64 * 1024;

fn compile(pattern: &str) -> Result<Regex, BanError> {
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|error| BanError::BadPattern(error.to_string()))
}

fn is_pattern(kind: BanKind) -> bool {
    matches!(kind, BanKind::ClientIdRe | BanKind::UsernameRe)
}

/// The banned list. See the module docs.
#[derive(Debug, Default)]
pub struct Banned {
    journal: Option<Arc<Journal>>,
    table: RwLock<Table>,
    /// Number of bans, read without the lock: most brokers ban nobody.
    count: AtomicUsize,
}

impl Banned {
    /// The list, with the bans kept in `journal`'s store (none without one).
    pub fn load(journal: Option<Arc<Journal>>) -> Banned {
        let banned = Banned {
            journal,
            ..Banned::default()
        };
        if let Some(journal) = &banned.journal {
            match journal.store().kv_scan(BANNED_SPACE) {
                Ok(rows) => {
                    let now_ms = now_millis();
                    for (key, value) in rows {
                        match BanEntry::decode(&value) {
                            Some(entry) if !entry.expired(now_ms) => banned.insert(entry),
                            Some(_) => {
                                journal.submit(StoreOp::KvDelete {
                                    space: BANNED_SPACE,
                                    key,
                                });
                            }
                            None => {
                                tracing::warn!(key = %String::from_utf8_lossy(&key), "stored ban does not decode; ignored")
                            }
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "cannot read the stored bans"),
            }
        }
        banned
    }

    fn insert(&self, entry: BanEntry) {
        let mut table = self.table.write();
        self.insert_locked(&mut table, entry);
    }

    fn insert_locked(&self, table: &mut Table, entry: BanEntry) {
        if entry.kind == BanKind::PeerHost {
            let Some(cidr) = Cidr::parse(&entry.who) else { return };
            table.hosts.retain(|(_, e)| e.who != entry.who);
            table.hosts.push((cidr, entry));
        } else if is_pattern(entry.kind) {
            let Ok(regex) = compile(&entry.who) else { return };
            table
                .patterns
                .retain(|(_, e)| !(e.kind == entry.kind && e.who == entry.who));
            table.patterns.push((regex, entry));
        } else {
            table.exact.insert((entry.kind, entry.who.clone()), entry);
        }
        self.count.store(table.len(), Ordering::Release);
    }

    fn validate(entry: &BanEntry) -> Result<(), BanError> {
        match entry.kind {
            BanKind::PeerHost if Cidr::parse(&entry.who).is_none() => Err(BanError::BadAddress(entry.who.clone())),
            BanKind::ClientId if entry.who.is_empty() => Err(BanError::Empty("client id")),
            BanKind::Username if entry.who.is_empty() => Err(BanError::Empty("user name")),
            BanKind::ClientIdRe | BanKind::UsernameRe if entry.who.is_empty() => Err(BanError::Empty("pattern")),
            BanKind::ClientIdRe | BanKind::UsernameRe => compile(&entry.who).map(drop),
            _ => Ok(()),
        }
    }

    fn persist(&self, entry: &BanEntry) {
        if let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvPut {
                space: BANNED_SPACE,
                key: entry.key(),
                value: entry.encode(),
            });
        }
    }

    /// Adds (or replaces) a ban and keeps it in the store.
    pub fn add(&self, entry: BanEntry) -> Result<(), BanError> {
        Banned::validate(&entry)?;
        self.persist(&entry);
        self.insert(entry);
        Ok(())
    }

    /// Adds a ban and keeps it in the store, unless one in force already names the same `as`
    /// and `who` ([`BanError::AlreadyExists`]; an expired one is replaced).
    pub fn create(&self, entry: BanEntry) -> Result<(), BanError> {
        Banned::validate(&entry)?;
        let mut table = self.table.write();
        if Banned::find(&table, entry.kind, &entry.who).is_some_and(|e| !e.expired(now_millis())) {
            return Err(BanError::AlreadyExists(entry.kind, entry.who));
        }
        // Under the table's lock, so that journal order is table order.
        self.persist(&entry);
        self.insert_locked(&mut table, entry);
        Ok(())
    }

    fn find<'a>(table: &'a Table, kind: BanKind, who: &str) -> Option<&'a BanEntry> {
        match kind {
            BanKind::PeerHost => table.hosts.iter().map(|(_, e)| e).find(|e| e.who == who),
            BanKind::ClientIdRe | BanKind::UsernameRe => table
                .patterns
                .iter()
                .map(|(_, e)| e)
                .find(|e| e.kind == kind && e.who == who),
            _ => table.exact.get(&(kind, who.to_owned())),
        }
    }

    /// The ban in force for exactly this `as` and `who` (a CIDR is looked up as written, not
    /// matched against addresses; see [`Banned::check`] for that).
    pub fn get(&self, kind: BanKind, who: &str) -> Option<BanEntry> {
        let table = self.table.read();
        Banned::find(&table, kind, who)
            .filter(|e| !e.expired(now_millis()))
            .cloned()
    }

    /// Lifts a ban; true if there was one.
    pub fn remove(&self, kind: BanKind, who: &str) -> bool {
        let mut table = self.table.write();
        let removed = if kind == BanKind::PeerHost {
            let before = table.hosts.len();
            table.hosts.retain(|(_, e)| e.who != who);
            table.hosts.len() != before
        } else if is_pattern(kind) {
            let before = table.patterns.len();
            table.patterns.retain(|(_, e)| !(e.kind == kind && e.who == who));
            table.patterns.len() != before
        } else {
            table.exact.remove(&(kind, who.to_owned())).is_some()
        };
        self.count.store(table.len(), Ordering::Release);
        drop(table);
        if removed && let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvDelete {
                space: BANNED_SPACE,
                key: Bytes::from(format!("{}:{who}", kind.as_str())),
            });
        }
        removed
    }

    /// Every ban in force.
    pub fn list(&self) -> Vec<BanEntry> {
        let now_ms = now_millis();
        let table = self.table.read();
        table
            .exact
            .values()
            .chain(table.hosts.iter().map(|(_, e)| e))
            .chain(table.patterns.iter().map(|(_, e)| e))
            .filter(|e| !e.expired(now_ms))
            .cloned()
            .collect()
    }

    /// The ban that refuses `client`, if any.
    pub fn check(&self, client: &ClientInfo) -> Option<BanEntry> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let now_ms = now_millis();
        let table = self.table.read();
        let by_id = table.exact.get(&(BanKind::ClientId, client.client_id.to_string()));
        let by_user = client
            .username
            .as_ref()
            .and_then(|u| table.exact.get(&(BanKind::Username, u.to_string())));
        let by_host = table
            .hosts
            .iter()
            .find(|(cidr, _)| cidr.contains(client.peer.ip()))
            .map(|(_, e)| e);
        let by_pattern = table.patterns.iter().find_map(|(regex, e)| {
            let subject = match e.kind {
                BanKind::ClientIdRe => Some(&*client.client_id),
                _ => client.username.as_deref(),
            };
            subject.filter(|s| regex.is_match(s)).map(|_| e)
        });
        by_id
            .into_iter()
            .chain(by_user)
            .chain(by_host)
            .chain(by_pattern)
            .find(|e| !e.expired(now_ms))
            .cloned()
    }

    /// Adds the bans of a CSV file (`banned.bootstrap_file`) that are not there yet. The first
    /// line is a header naming the columns, in any order: `as` and `who` are required; `by`,
    /// `reason`, `at` and `until` (Unix seconds; empty `until` = never) are optional. Returns
    /// how many were added; an error names the line.
    pub fn import_csv(&self, text: &str) -> Result<usize, String> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else { return Ok(0) };
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        let col = |name: &str| columns.iter().position(|c| *c == name);
        let (Some(kind_col), Some(who_col)) = (col("as"), col("who")) else {
            return Err("line 1: the header must name the columns `as` and `who`".to_owned());
        };
        let now_ms = now_millis();
        let mut added = 0;
        for (index, line) in lines {
            let line_no = index + 1;
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let field = |c: Option<usize>| c.and_then(|c| fields.get(c)).copied().unwrap_or("");
            let kind = BanKind::parse(field(Some(kind_col)))
                .ok_or_else(|| format!("line {line_no}: `as` must be clientid, username or peerhost"))?;
            let seconds = |name: &str| -> Result<Option<u64>, String> {
                match field(col(name)) {
                    "" => Ok(None),
                    text => text
                        .parse::<u64>()
                        .map(|s| Some(s * 1000))
                        .map_err(|_| format!("line {line_no}: `{name}` must be Unix seconds")),
                }
            };
            let entry = BanEntry {
                kind,
                who: field(Some(who_col)).to_owned(),
                by: match field(col("by")) {
                    "" => "bootstrap".to_owned(),
                    by => by.to_owned(),
                },
                reason: field(col("reason")).to_owned(),
                at_ms: seconds("at")?.unwrap_or(now_ms),
                until_ms: seconds("until")?,
            };
            if entry.expired(now_ms) {
                continue;
            }
            let exists = Banned::find(&self.table.read(), kind, &entry.who).is_some();
            if !exists {
                self.add(entry).map_err(|e| format!("line {line_no}: {e}"))?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Drops expired bans (part of the broker's sweep).
    pub fn sweep(&self) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let now_ms = now_millis();
        let expired: Vec<(BanKind, String)> = {
            let table = self.table.read();
            table
                .exact
                .values()
                .chain(table.hosts.iter().map(|(_, e)| e))
                .chain(table.patterns.iter().map(|(_, e)| e))
                .filter(|e| e.expired(now_ms))
                .map(|e| (e.kind, e.who.clone()))
                .collect()
        };
        for (kind, who) in expired {
            self.remove(kind, &who);
        }
    }
}

/// Flapping detection settings (EMQX `flapping_detect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlappingSettings {
    /// Detect at all.
    pub enable: bool,
    /// Disconnects tolerated within `window`.
    pub max_count: u32,
    /// The counting window.
    pub window: Duration,
    /// How long a flapping client id stays banned.
    pub ban_time: Duration,
}

impl Default for FlappingSettings {
    /// Off; when on, the seed's policy: 30 disconnects within 1 minute ban for 5 minutes.
    fn default() -> Self {
        FlappingSettings {
            enable: false,
            max_count: 30,
            window: Duration::from_secs(60),
            ban_time: Duration::from_secs(300),
        }
    }
}

/// Counts disconnects per client id. See the module docs.
#[derive(Debug, Default)]
pub struct Flapping {
    settings: FlappingSettings,
    /// Client id → (start of its window, disconnects in it).
    counts: Mutex<HashMap<ByteString, (Instant, u32)>>,
}

impl Flapping {
    /// A detector with `settings`.
    pub fn new(settings: FlappingSettings) -> Flapping {
        Flapping {
            settings,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a disconnect of `client_id`; returns the ban to make when it is flapping.
    pub fn record_disconnect(&self, client_id: &ByteString, now: Instant) -> Option<BanEntry> {
        if !self.settings.enable {
            return None;
        }
        let mut counts = self.counts.lock();
        let entry = counts.entry(client_id.clone()).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) > self.settings.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 <= self.settings.max_count {
            return None;
        }
        counts.remove(client_id);
        let at_ms = now_millis();
        Some(BanEntry {
            kind: BanKind::ClientId,
            who: client_id.to_string(),
            by: "flapping_detect".to_owned(),
            reason: format!(
                "{} disconnects within {:?}",
                self.settings.max_count + 1,
                self.settings.window
            ),
            at_ms,
            until_ms: Some(at_ms + self.settings.ban_time.as_millis() as u64),
        })
    }

    /// Forgets windows that ended (part of the broker's sweep), so the map stays small.
    pub fn sweep(&self, now: Instant) {
        if !self.settings.enable {
            return;
        }
        let window = self.settings.window;
        self.counts
            .lock()
            .retain(|_, (start, _)| now.saturating_duration_since(*start) <= window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn client(id: &str, user: Option<&str>, peer: &str) -> ClientInfo {
        ClientInfo {
            client_id: ByteString::from(id.to_owned()),
            username: user.map(|u| ByteString::from(u.to_owned())),
            peer: peer.parse::<SocketAddr>().expect("address"),
            protocol: "mqtt",
            superuser: false,
            cert: None,
            acl: None,
        }
    }

    fn ban(kind: BanKind, who: &str, until_ms: Option<u64>) -> BanEntry {
        BanEntry {
            kind,
            who: who.to_owned(),
            by: "test".to_owned(),
            reason: "test".to_owned(),
            at_ms: now_millis(),
            until_ms,
        }
    }

    #[test]
    fn create_refuses_a_ban_in_force_and_get_finds_it() {
        let banned = Banned::default();
        banned.create(ban(BanKind::ClientId, "c1", None)).expect("new ban");
        assert_eq!(
            banned.create(ban(BanKind::ClientId, "c1", None)),
            Err(BanError::AlreadyExists(BanKind::ClientId, "c1".to_owned()))
        );
        banned
            .create(ban(BanKind::PeerHost, "10.0.0.0/8", None))
            .expect("new ban");
        assert!(matches!(
            banned.create(ban(BanKind::PeerHost, "10.0.0.0/8", None)),
            Err(BanError::AlreadyExists(..))
        ));
        assert_eq!(
            banned.create(ban(BanKind::PeerHost, "not-an-ip", None)),
            Err(BanError::BadAddress("not-an-ip".to_owned()))
        );
        assert_eq!(
            banned.get(BanKind::ClientId, "c1").map(|e| e.who),
            Some("c1".to_owned())
        );
        assert!(banned.get(BanKind::PeerHost, "10.0.0.0/8").is_some());
        // A CIDR is looked up as written, not matched.
        assert!(banned.get(BanKind::PeerHost, "10.1.2.3").is_none());
        assert!(banned.get(BanKind::Username, "c1").is_none());
        // An expired ban is not in force: it is not found and may be made again.
        banned.add(ban(BanKind::Username, "old", Some(1))).expect("added");
        assert!(banned.get(BanKind::Username, "old").is_none());
        banned
            .create(ban(BanKind::Username, "old", None))
            .expect("replaces the expired one");
        assert!(banned.get(BanKind::Username, "old").is_some());
    }

    #[test]
    fn bans_match_client_id_username_and_address_ranges() {
        let banned = Banned::default();
        assert!(banned.check(&client("a", None, "10.1.2.3:1")).is_none());
        banned.add(ban(BanKind::ClientId, "bad", None)).expect("ban");
        banned.add(ban(BanKind::Username, "mallory", None)).expect("ban");
        banned.add(ban(BanKind::PeerHost, "192.168.0.0/16", None)).expect("ban");
        banned.add(ban(BanKind::PeerHost, "2001:db8::/32", None)).expect("ban");
        assert!(banned.check(&client("bad", None, "10.0.0.1:1")).is_some());
        assert!(banned.check(&client("ok", Some("mallory"), "10.0.0.1:1")).is_some());
        assert!(banned.check(&client("ok", None, "192.168.7.7:1")).is_some());
        assert!(
            banned.check(&client("ok", None, "[::ffff:192.168.7.7]:1")).is_some(),
            "v4-mapped"
        );
        assert!(banned.check(&client("ok", None, "[2001:db8::5]:1")).is_some());
        assert!(banned.check(&client("ok", Some("alice"), "10.0.0.1:1")).is_none());
        assert!(banned.remove(BanKind::ClientId, "bad"));
        assert!(banned.check(&client("bad", None, "10.0.0.1:1")).is_none());
    }

    #[test]
    fn pattern_bans_match_client_ids_and_user_names() {
        let banned = Banned::default();
        banned
            .add(ban(BanKind::ClientIdRe, "^sensor-[0-9]+$", None))
            .expect("valid pattern");
        banned
            .add(ban(BanKind::UsernameRe, "guest", None))
            .expect("valid pattern");
        let hit = banned
            .check(&client("sensor-42", None, "10.0.0.1:1"))
            .expect("banned by pattern");
        assert_eq!(hit.kind, BanKind::ClientIdRe);
        assert!(banned.check(&client("sensor-42x", None, "10.0.0.1:1")).is_none());
        assert!(
            banned.check(&client("c", Some("a-guest-1"), "10.0.0.1:1")).is_some(),
            "unanchored"
        );
        assert!(
            banned.check(&client("c", None, "10.0.0.1:1")).is_none(),
            "no user name, no match"
        );
        assert_eq!(banned.list().len(), 2);
        assert!(banned.get(BanKind::ClientIdRe, "^sensor-[0-9]+$").is_some());
        assert!(banned.remove(BanKind::ClientIdRe, "^sensor-[0-9]+$"));
        assert!(banned.check(&client("sensor-42", None, "10.0.0.1:1")).is_none());
        assert!(matches!(
            banned.add(ban(BanKind::UsernameRe, "(", None)),
            Err(BanError::BadPattern(_))
        ));
        let huge = "[a-z]{1000}".repeat(20);
        assert!(matches!(
            banned.add(ban(BanKind::ClientIdRe, &huge, None)),
            Err(BanError::BadPattern(_))
        ));
        assert!(matches!(
            banned.add(ban(BanKind::ClientIdRe, "", None)),
            Err(BanError::Empty(_))
        ));
    }

    #[test]
    fn expired_bans_do_not_refuse_and_are_swept() {
        let banned = Banned::default();
        banned.add(ban(BanKind::ClientId, "old", Some(1))).expect("ban");
        assert!(banned.check(&client("old", None, "10.0.0.1:1")).is_none());
        banned.sweep();
        assert!(banned.list().is_empty());
    }

    #[test]
    fn bad_addresses_are_refused() {
        let banned = Banned::default();
        assert!(banned.add(ban(BanKind::PeerHost, "10.0.0.0/33", None)).is_err());
        assert!(banned.add(ban(BanKind::PeerHost, "not-an-ip", None)).is_err());
        assert!(banned.add(ban(BanKind::ClientId, "", None)).is_err());
    }

    #[test]
    fn entries_round_trip_through_their_encoding() {
        let entry = ban(BanKind::PeerHost, "10.0.0.0/8", Some(42));
        assert_eq!(BanEntry::decode(&entry.encode()), Some(entry));
        assert_eq!(BanEntry::decode(b"{not json"), None);
    }

    #[test]
    fn bans_import_from_csv_and_errors_name_the_line() {
        let banned = Banned::default();
        let csv = "as,who,reason,until\nclientid,bad,spam,\npeerhost,10.0.0.0/8,,\nusername,old,,1\n";
        assert_eq!(banned.import_csv(csv), Ok(2), "the expired one is skipped");
        assert!(banned.check(&client("bad", None, "192.0.2.1:1")).is_some());
        assert!(banned.check(&client("x", None, "10.9.9.9:1")).is_some());
        assert_eq!(banned.import_csv(csv), Ok(0), "present ones are not added twice");
        let err = banned.import_csv("as,who\nclientid,a\nip,b\n").expect_err("bad kind");
        assert!(err.starts_with("line 3:"), "{err}");
        assert!(banned.import_csv("who\nx\n").is_err());
    }

    #[test]
    fn flapping_bans_after_max_count_within_the_window() {
        let flapping = Flapping::new(FlappingSettings {
            enable: true,
            max_count: 3,
            window: Duration::from_secs(60),
            ban_time: Duration::from_secs(300),
        });
        let id = ByteString::from_static("flappy");
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(flapping.record_disconnect(&id, t0 + Duration::from_secs(i)).is_none());
        }
        let ban = flapping
            .record_disconnect(&id, t0 + Duration::from_secs(4))
            .expect("the fourth disconnect within a minute bans");
        assert_eq!((ban.kind, ban.who.as_str()), (BanKind::ClientId, "flappy"));
        assert!(ban.until_ms.is_some_and(|u| u >= ban.at_ms + 299_000));
        // A new window starts after the old one ends.
        for i in 0..3 {
            assert!(
                flapping
                    .record_disconnect(&id, t0 + Duration::from_secs(100 + i))
                    .is_none()
            );
        }
    }
}
