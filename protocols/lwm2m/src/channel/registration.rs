//! The registration interface (gateway-semantics §3.2, §3.4): `POST /rd` registers,
//! `POST /rd/{ep}` updates, `DELETE /rd/{ep}` de-registers.
//!
//! Every registration is also kept in the gateway's [`Registrations`](super::Registrations)
//! table (and store). An update reaching a channel without a registration (the device's
//! address changed, or the gateway restarted) rebuilds the channel from the kept record:
//! the record must be within its lifetime, the connection must show the PSK identity the
//! registration was made with (none for none), and the authentication chain is run again
//! with the stored client id and user name, the new address and no password (none is
//! stored). Any failure is 4.04, which makes the device register again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use portico_coap::message::{Code, Message};
use portico_core::auth::{Action, ClientInfo};
use portico_core::broker::RetainedOnSubscribe;
use portico_core::channel::CloseReason;
use portico_core::message::now_millis as wall_ms;
use portico_core::session::SubOptions;
use portico_core::sys::ConnectedEvent;
use portico_core::topic::SubscriptionTopic;
use portico_core::verdict::Verdict;
use serde_json::{Map, Value as Json};

use super::registrations::{Record, Refused};
use super::settings::UpdatePublish;
use super::{Lwm2mChannel, Out, PROTOCOL, PendingSubscription};
use crate::link::ObjectLinks;

/// Query keys never published in register/update events (EMQX's sensitive keys).
const SENSITIVE: [&str; 6] = ["password", "secret", "private_key", "access_token", "token", "passwd"];

fn sensitive(key: &str) -> bool {
    SENSITIVE.contains(&key.to_ascii_lowercase().as_str())
}

/// What a device registered with, merged with its updates.
#[derive(Debug, Clone)]
pub(super) struct Registration {
    pub(super) endpoint: String,
    /// Every query parameter (the last of a repeated key wins).
    pub(super) query: BTreeMap<String, String>,
    pub(super) lifetime: Duration,
    pub(super) alternate_path: String,
    pub(super) object_list: Vec<String>,
    /// Queue mode (`b` = UQ, SQ, UQS, or one of EMQX's NB-IoT `apn` values).
    pub(super) queue_mode: bool,
}

impl Registration {
    pub(super) fn proto_ver(&self) -> u8 {
        match self.query.get("lwm2m").map(String::as_str) {
            Some("1.1") => 11,
            _ => 10,
        }
    }

    /// The register/update event `data`: every query parameter but the sensitive ones, `lt`
    /// as an integer, `alternatePath` and `objectList`.
    fn event_data(&self) -> Map<String, Json> {
        let mut data = Map::new();
        for (key, value) in &self.query {
            if sensitive(key) {
                continue;
            }
            data.insert(key.clone(), Json::String(value.clone()));
        }
        if let Some(lt) = self.query.get("lt").and_then(|v| v.parse::<u64>().ok()) {
            data.insert("lt".to_owned(), Json::from(lt));
        }
        data.insert("alternatePath".to_owned(), Json::String(self.alternate_path.clone()));
        data.insert(
            "objectList".to_owned(),
            Json::Array(self.object_list.iter().cloned().map(Json::String).collect()),
        );
        data
    }

    /// The registration of a kept record.
    fn of_record(record: &Record) -> Registration {
        Registration {
            endpoint: record.endpoint.clone(),
            query: record.query.clone(),
            lifetime: Duration::from_secs(record.lifetime_secs),
            alternate_path: record.alternate_path.clone(),
            object_list: record.object_list.clone(),
            queue_mode: record.queue_mode,
        }
    }

    fn set_mode(&mut self) {
        let b = self.query.get("b").map(String::as_str);
        let apn = self.query.get("apn").map(String::as_str);
        self.queue_mode = matches!(b, Some("UQ" | "SQ" | "UQS"))
            || matches!(
                apn,
                Some("Ctnb" | "psmA.eDRX0.ctnb" | "psmC.eDRX0.ctnb" | "psmF.eDRXC.ctnb")
            );
    }
}

const TOO_MANY: &str = "Service Unavailable: too many registrations";

fn query_of(request: &Message) -> BTreeMap<String, String> {
    request
        .options
        .query_pairs()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn event(msg_type: &str, data: Map<String, Json>) -> Map<String, Json> {
    let mut json = Map::new();
    json.insert("msgType".to_owned(), Json::String(msg_type.to_owned()));
    json.insert("data".to_owned(), Json::Object(data));
    json
}

impl Lwm2mChannel {
    /// `lt` in seconds; 0 means `lifetime_max` (EMQX). The Lifetime resource (1/x/1) is a
    /// 32-bit value, so a longer one is refused like any other invalid query.
    fn lifetime_of(&self, lt: &str) -> Option<Duration> {
        match lt.parse::<u32>().ok()? {
            0 => Some(self.settings.lifetime_max),
            seconds => Some(Duration::from_secs(u64::from(seconds))),
        }
    }

    pub(super) fn register(&mut self, request: Message, now: Instant, out: &mut Out) {
        let query = query_of(&request);
        let version_ok = matches!(query.get("lwm2m").map(String::as_str), Some("1" | "1.0" | "1.1"));
        let lifetime = query.get("lt").and_then(|lt| self.lifetime_of(lt));
        let (Some(endpoint), Some(lifetime), true) = (query.get("ep").cloned(), lifetime, version_ok) else {
            return self.reply(&request, Code::BAD_REQUEST, "Login Failed: invalid queries", out);
        };
        if endpoint.is_empty() {
            return self.reply(&request, Code::BAD_REQUEST, "Login Failed: invalid queries", out);
        }
        let links = match ObjectLinks::parse(&request.payload) {
            Ok(links) => links,
            Err(error) => {
                let why = format!("Bad Request: invalid link format: {error}");
                return self.reply(&request, Code::BAD_REQUEST, &why, out);
            }
        };
        let mut reg = Registration {
            endpoint: endpoint.clone(),
            query,
            lifetime,
            alternate_path: links.alternate_path.clone(),
            object_list: links.object_list(),
            queue_mode: false,
        };
        reg.set_mode();
        if self.settings.psk_identity_as_endpoint
            && let Some(identity) = &self.psk_identity
            && **identity != *endpoint
        {
            return self.reply(&request, Code::FORBIDDEN, "Forbidden: ep is not the PSK identity", out);
        }
        if let Some(old) = &self.reg {
            if old.endpoint != endpoint {
                return self.reply(&request, Code::BAD_REQUEST, "Bad Request: channel has registered", out);
            }
            // Re-registration (a device that rebooted, in practice): the merged info, a
            // register event, and — unlike EMQX's 2.04 without a location — the 2.01 Created
            // with the location the Register operation answers (Core §6.2.1), which a strict
            // client needs. The device's observations died with its reboot: ours are dropped
            // and `auto_observe` runs again.
            let mut merged = old.clone();
            merged.query.extend(reg.query);
            merged.lifetime = reg.lifetime;
            merged.alternate_path = reg.alternate_path;
            merged.object_list = reg.object_list;
            merged.set_mode();
            let Some(record) = self.client.as_ref().map(|c| self.record_of(&merged, c)) else {
                return;
            };
            if !self.keep(&request, record, out) {
                return;
            }
            let data = merged.event_data();
            self.reg = Some(merged);
            self.created(&request, &endpoint, out);
            let translator = self.settings.translators.register.clone();
            self.publish_uplink(&translator, event("register", data), now);
            self.forget_observations();
            self.auto_observe(now, out);
            return;
        }
        // Refused before the authentication backends are asked, which a flood would load.
        if !self.registrations.has_room_for(&endpoint) {
            return self.reply(&request, Code::SERVICE_UNAVAILABLE, TOO_MANY, out);
        }
        let client_id = reg.query.get("device_id").cloned().unwrap_or_else(|| endpoint.clone());
        let username = reg.query.get("imei").cloned().unwrap_or_else(|| endpoint.clone());
        let password = reg.query.get("password").cloned();
        let client = ClientInfo::new(
            ByteString::from(client_id),
            Some(ByteString::from(username)),
            self.peer,
            PROTOCOL,
        );
        let refusal = (Code::BAD_REQUEST, "Login Failed: not_authorized");
        let Some(client) = self.authenticate(&request, client, password.as_deref(), refusal, out) else {
            return;
        };
        self.mountpoint = self.mount_template(&reg, &client);
        // Kept before the session opens: a refusal leaves nothing to undo.
        if !self.keep(&request, self.record_of(&reg, &client), out) {
            return;
        }
        self.open(client, &reg, now);
        let data = reg.event_data();
        self.reg = Some(reg);
        self.subscribe_commands();
        self.created(&request, &endpoint, out);
        let translator = self.settings.translators.register.clone();
        self.publish_uplink(&translator, event("register", data), now);
        self.auto_observe(now, out);
    }

    /// 2.01 Created with the registration's location, `/rd/{ep}`.
    fn created(&mut self, request: &Message, endpoint: &str, out: &mut Out) {
        let mut response = Message::response_to(request, Code::CREATED, self.layer.next_id());
        response.options.push_location_path("rd");
        response.options.push_location_path(endpoint);
        self.respond(request, response, out);
    }

    /// What is kept of `reg`, made by `client` through this channel.
    fn record_of(&self, reg: &Registration, client: &ClientInfo) -> Record {
        Record {
            endpoint: reg.endpoint.clone(),
            mountpoint: self.mountpoint.clone(),
            query: reg
                .query
                .iter()
                .filter(|(k, _)| !sensitive(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            lifetime_secs: reg.lifetime.as_secs(),
            alternate_path: reg.alternate_path.clone(),
            object_list: reg.object_list.clone(),
            queue_mode: reg.queue_mode,
            client_id: client.client_id.to_string(),
            username: client.username.as_ref().map(ToString::to_string),
            psk_identity: self.psk_identity.as_deref().map(str::to_owned),
            peer: self.peer,
            seen_ms: wall_ms(),
        }
    }

    /// Writes `record` to the table and store, as served by this channel; answers and returns
    /// false when it is refused (the table is full, the record too large).
    fn keep(&mut self, request: &Message, record: Record, out: &mut Out) -> bool {
        match self.registrations.put(&record, &self.conn) {
            Ok(()) => true,
            Err(Refused::Full) => {
                self.reply(request, Code::SERVICE_UNAVAILABLE, TOO_MANY, out);
                false
            }
            Err(Refused::TooLarge) => {
                self.reply(request, Code::REQUEST_ENTITY_TOO_LARGE, "registration too large", out);
                false
            }
        }
    }

    /// Rebuilds this channel from the registration kept at `location` (see the module docs);
    /// true when done, false when answered (4.04) or held for the authentication answer.
    fn resume(&mut self, request: &Message, location: &str, now: Instant, out: &mut Out) -> bool {
        let Some(record) = self.registrations.get(location) else {
            self.reply(request, Code::NOT_FOUND, "", out);
            return false;
        };
        if record.psk_identity.as_deref() != self.psk_identity.as_deref() {
            self.reply(request, Code::NOT_FOUND, "Not Found: PSK identity changed", out);
            return false;
        }
        // A record kept from before the binding was configured must meet it too.
        if self.settings.psk_identity_as_endpoint
            && record.psk_identity.as_ref().is_some_and(|id| *id != record.endpoint)
        {
            self.reply(request, Code::NOT_FOUND, "Not Found: ep is not the PSK identity", out);
            return false;
        }
        let client = ClientInfo::new(
            ByteString::from(record.client_id.clone()),
            record.username.clone().map(ByteString::from),
            self.peer,
            PROTOCOL,
        );
        let refusal = (Code::NOT_FOUND, "Not Found: not_authorized");
        let Some(client) = self.authenticate(request, client, None, refusal, out) else {
            return false;
        };
        tracing::debug!(endpoint = %record.endpoint, old = %record.peer, new = %self.peer, "LwM2M registration resumed");
        let reg = Registration::of_record(&record);
        // Claimed before the session opens, so that a live old channel learns it was taken
        // over (not discarded) and leaves the registration alone when it closes.
        self.registrations.claim(location, &self.conn);
        self.mountpoint = record.mountpoint;
        self.open(client, &reg, now);
        self.reg = Some(reg);
        self.subscribe_commands();
        // Commands the previous channel handed over wait in the table: fetched on the next
        // delivery round, after this update's 2.04 has gone.
        self.conn.signal_deliver();
        self.conn.wake();
        true
    }

    fn mount_template(&self, reg: &Registration, client: &ClientInfo) -> String {
        self.settings
            .mountpoint
            .replace("${endpoint_name}", &reg.endpoint)
            .replace("${clientid}", &client.client_id)
            .replace("${username}", client.username.as_deref().unwrap_or(""))
            .replace("${peerhost}", &self.peer.ip().to_string())
    }

    fn open(&mut self, client: ClientInfo, reg: &Registration, now: Instant) {
        let opened = self.ctx.open_session(&client.client_id, true, 0, &self.conn, None);
        self.session = Some(opened.session);
        self.connected_at_ms = wall_ms();
        self.last_heard = now;
        self.ctx.sys_connected(&ConnectedEvent {
            client_id: client.client_id.to_string(),
            username: client.username.as_ref().map(|u| u.to_string()),
            protocol: PROTOCOL,
            peer: Some(self.peer.ip()),
            sockport: self.sockport,
            proto_name: "LwM2M".to_owned(),
            proto_ver: reg.proto_ver(),
            keepalive: u16::try_from(reg.lifetime.as_secs()).unwrap_or(u16::MAX),
            clean_start: true,
            expiry_interval_secs: 0,
            connected_at_ms: self.connected_at_ms,
            ts_ms: self.connected_at_ms,
        });
        self.client = Some(client);
    }

    /// Subscribes the session to the mounted command topic if authorized. A pending answer
    /// (an HTTP backend, say) is awaited without holding anything up: the subscription is made
    /// when it comes ([`resume_command_subscription`](Self::resume_command_subscription)).
    pub(super) fn subscribe_commands(&mut self) {
        let Some(client) = &self.client else { return };
        let filter = format!("{}{}", self.mountpoint, self.settings.translators.command.topic);
        match self.ctx.authorize(client, Action::Subscribe, &filter) {
            Verdict::Ready(allowed) => self.subscribe_if(allowed, filter),
            Verdict::Pending(pending) => {
                pending.watch(&self.conn);
                // A later registration's question replaces an earlier one still unanswered.
                self.command_subscription = Some(PendingSubscription { pending, filter });
            }
        }
    }

    /// Makes the command subscription whose authorization just came in.
    pub(super) fn resume_command_subscription(&mut self, now: Instant) {
        let Some(waiting) = &self.command_subscription else {
            return;
        };
        let Some(answer) = waiting.pending.poll(&self.conn) else {
            return;
        };
        let Some(waiting) = self.command_subscription.take() else {
            return;
        };
        let allowed = self
            .ctx
            .authorization_answered(answer, None, Action::Subscribe, &waiting.filter, now);
        if !self.closing {
            self.subscribe_if(allowed, waiting.filter);
        }
    }

    fn subscribe_if(&mut self, allowed: bool, filter: String) {
        let Some(session) = &self.session else { return };
        if !allowed {
            tracing::info!(filter, "LwM2M command subscription not authorized");
            return;
        }
        let translator = &self.settings.translators.command;
        let Ok(parsed) = SubscriptionTopic::parse(ByteString::from(filter.clone())) else {
            tracing::warn!(filter, "LwM2M command topic is not a valid filter");
            return;
        };
        let options = SubOptions {
            qos: translator.qos,
            no_local: false,
            retain_as_published: false,
            subscription_id: 0,
        };
        self.ctx.subscribe(session, parsed, options, RetainedOnSubscribe::Send);
    }

    pub(super) fn update(&mut self, request: Message, location: &str, now: Instant, out: &mut Out) {
        if self.reg.as_ref().is_some_and(|r| r.endpoint != location) {
            return self.reply(&request, Code::NOT_FOUND, "", out);
        }
        let query = query_of(&request);
        if let Some(lt) = query.get("lt")
            && self.lifetime_of(lt).is_none()
        {
            return self.reply(&request, Code::BAD_REQUEST, "Bad Request: invalid lt", out);
        }
        let links = if request.payload.is_empty() {
            None
        } else {
            match ObjectLinks::parse(&request.payload) {
                Ok(links) => Some(links),
                Err(error) => {
                    let why = format!("Bad Request: invalid link format: {error}");
                    return self.reply(&request, Code::BAD_REQUEST, &why, out);
                }
            }
        };
        if self.reg.is_none() && !self.resume(&request, location, now, out) {
            return;
        }
        let Some(mut merged) = self.reg.clone() else {
            return self.reply(&request, Code::NOT_FOUND, "", out);
        };
        let has_list = links.is_some();
        if let Some(lt) = query.get("lt").and_then(|lt| self.lifetime_of(lt)) {
            merged.lifetime = lt;
        }
        merged.query.extend(query);
        if let Some(links) = links {
            merged.alternate_path = links.alternate_path.clone();
            merged.object_list = links.object_list();
        }
        merged.set_mode();
        let Some(record) = self.client.as_ref().map(|c| self.record_of(&merged, c)) else {
            return;
        };
        if !self.keep(&request, record, out) {
            return;
        }
        let data = merged.event_data();
        self.reg = Some(merged);
        self.reply(&request, Code::CHANGED, "", out);
        if has_list || self.settings.update_msg_publish_condition == UpdatePublish::Always {
            let translator = self.settings.translators.update.clone();
            self.publish_uplink(&translator, event("update", data), now);
        }
    }

    pub(super) fn deregister(&mut self, request: Message, location: &str, out: &mut Out) {
        if self.reg.as_ref().is_none_or(|r| r.endpoint != location) {
            return self.reply(&request, Code::NOT_FOUND, "", out);
        }
        self.reply(&request, Code::DELETED, "", out);
        self.close_name = "normal";
        self.forget = true;
        self.close(CloseReason::ClientDisconnect, out);
    }
}
