//! The registration interface (gateway-semantics §3.2, §3.4): `POST /rd` registers,
//! `POST /rd/{ep}` updates, `DELETE /rd/{ep}` de-registers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use portico_coap::message::{Code, Message};
use portico_core::auth::{Action, ClientInfo};
use portico_core::broker::RetainedOnSubscribe;
use portico_core::channel::CloseReason;
use portico_core::message::now_millis;
use portico_core::session::SubOptions;
use portico_core::sys::ConnectedEvent;
use portico_core::topic::SubscriptionTopic;
use portico_core::verdict::Verdict;
use serde_json::{Map, Value as Json};

use super::settings::UpdatePublish;
use super::{Lwm2mChannel, Out, PROTOCOL};
use crate::link::ObjectLinks;

/// Query keys never published in register/update events (EMQX's sensitive keys).
const SENSITIVE: [&str; 6] = ["password", "secret", "private_key", "access_token", "token", "passwd"];

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
            if SENSITIVE.contains(&key.to_ascii_lowercase().as_str()) {
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
    fn lifetime_of(&self, lt: &str) -> Option<Duration> {
        match lt.parse::<u64>().ok()? {
            0 => Some(self.settings.lifetime_max),
            seconds => Some(Duration::from_secs(seconds)),
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
        if let Some(old) = &self.reg {
            if old.endpoint != endpoint {
                return self.reply(&request, Code::BAD_REQUEST, "Bad Request: channel has registered", out);
            }
            // Re-registration: the merged info, 2.04 and a register event (EMQX).
            let mut merged = old.clone();
            merged.query.extend(reg.query);
            merged.lifetime = reg.lifetime;
            merged.alternate_path = reg.alternate_path;
            merged.object_list = reg.object_list;
            merged.set_mode();
            let data = merged.event_data();
            self.reg = Some(merged);
            self.reply(&request, Code::CHANGED, "", out);
            let translator = self.settings.translators.register.clone();
            self.publish_uplink(&translator, event("register", data), now);
            return;
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
        let Some(client) = self.authenticate(&request, client, password.as_deref(), out) else {
            return;
        };
        self.mountpoint = self.mount_template(&reg, &client);
        self.open(client, &reg, now);
        let data = reg.event_data();
        self.reg = Some(reg);
        self.subscribe_commands();
        let mut response = Message::response_to(&request, Code::CREATED, self.layer.next_id());
        response.options.push_location_path("rd");
        response.options.push_location_path(&endpoint);
        self.respond(&request, response, out);
        let translator = self.settings.translators.register.clone();
        self.publish_uplink(&translator, event("register", data), now);
        self.auto_observe(now, out);
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
        self.connected_at_ms = now_millis();
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

    /// Subscribes the session to the mounted command topic (authorization checked; a pending
    /// answer is treated as a denial and logged).
    fn subscribe_commands(&mut self) {
        let (Some(client), Some(session)) = (&self.client, &self.session) else {
            return;
        };
        let translator = &self.settings.translators.command;
        let filter = format!("{}{}", self.mountpoint, translator.topic);
        let allowed = match self.ctx.authorize(client, Action::Subscribe, &filter) {
            Verdict::Ready(allowed) => allowed,
            Verdict::Pending(_) => {
                tracing::warn!(
                    filter,
                    "LwM2M command subscription: asynchronous authorization is not supported; not subscribed"
                );
                false
            }
        };
        if !allowed {
            tracing::info!(filter, "LwM2M command subscription not authorized");
            return;
        }
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
        let Some(reg) = self.reg.as_ref().filter(|r| r.endpoint == location).cloned() else {
            return self.reply(&request, Code::NOT_FOUND, "", out);
        };
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
        let mut merged = reg;
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
        self.close(CloseReason::ClientDisconnect, out);
    }
}
