//! `/ps/{topic}`: publish (POST, PUT), observe (GET + Observe 0) and unobserve (GET +
//! Observe 1), and the notifications observations receive (gateway-semantics §2.5).
//!
//! The topic is the Uri-Path after `ps`, joined with `/` and then percent-decoded, as EMQX does
//! (`emqx_http_lib:uri_decode`): well-behaved clients decode `%23` into the option already, but
//! a client that copies its URI's path into the options as it is still reaches `#` (EMQX's
//! documentation tells users to write wildcards so). A `%` without two hex digits after it is
//! refused (EMQX's decoder fails on it), a trailing one is kept.
//!
//! An observation takes EMQX's subscription queries: `qos`, `nl` (No Local: 1 keeps the
//! client's own publishes from it) and `rh` (Retain Handling: 0 sends the retained messages
//! that match, 1 only for a new observation, 2 none). Without `rh` the retained messages are
//! sent, the current state of the resource as RFC 7641 has it; EMQX's default (`rh` 1 with
//! its subscriptions never new, and no retained messages at all in connectionless mode) sends
//! none.

use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::QoS;
use portico_core::auth::Action;
use portico_core::broker::RetainedOnSubscribe;
use portico_core::message::{Message as MqttMessage, Origin};
use portico_core::metrics::{DeliveryDrop, tally_qos};
use portico_core::session::SubOptions;
use portico_core::topic::{SubscriptionTopic, TopicName};

use super::connection::TokenCheck;
use super::{CoapChannel, Out, Query};
use crate::block::Block;
use crate::message::{Code, Message, Token, Type};
use crate::observe;
use crate::settings::{NotifyType, QosPolicy};

/// One observation: a topic filter a client observes under a token.
#[derive(Debug, Clone)]
struct Observation {
    /// The mounted filter, as subscribed.
    filter: ByteString,
    token: Token,
    /// The request path (`ps/...`), where Block2 follow-ups of large notifications ask.
    path: String,
    /// The MQTT 5 subscription identifier that marks this observation's deliveries.
    id: u32,
    /// The block size the registration asked for with Block2 (RFC 7959 §2.4, early
    /// negotiation), for notifications too large for one message.
    block: Option<Block>,
}

/// A client's observations, and the Observe sequence of its notifications.
#[derive(Debug, Default)]
pub(super) struct Observations {
    list: Vec<Observation>,
    next_id: u32,
    sequence: u32,
}

impl Observations {
    /// The Observe value of the next registration answer or notification: 2, 3, … (0 and 1
    /// mean register and deregister in requests; skipping them keeps values plainly
    /// increasing), wrapping to 2 after 2^24 − 1, which RFC 7641 §3.4 still orders as newer.
    /// Every value is newer than the one before: a client drops a notification whose value
    /// is not (the first notification once had the registration answer's value, and aiocoap
    /// discarded it).
    fn next_sequence(&mut self) -> u32 {
        self.sequence = if self.sequence < 2 || self.sequence >= observe::MAX_SEQUENCE {
            2
        } else {
            self.sequence + 1
        };
        self.sequence
    }

    fn next_id(&mut self) -> u32 {
        // Subscription identifiers are 1..=268435455 (MQTT 5).
        self.next_id = if self.next_id >= 268_435_455 {
            1
        } else {
            self.next_id + 1
        };
        self.next_id
    }
}

/// `%XX` decoded as `emqx_http_lib:uri_decode` does; `None` for `%` followed by two bytes that
/// are not hex digits, or a result that is not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    if !path.contains('%') {
        return Some(path.to_owned());
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => {
                let hex = |b: u8| char::from(b).to_digit(16);
                decoded.push(u8::try_from(hex(*hi)? * 16 + hex(*lo)?).ok()?);
                i += 3;
            }
            _ => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

impl CoapChannel {
    pub(super) fn handle_pubsub(&mut self, request: Message, topic: String, now: Instant, out: &mut Out) {
        let Some(topic) = percent_decode(&topic) else {
            return self.refuse(&request, Code::BAD_REQUEST, "invalid topic", out);
        };
        let query = Query::of(&request);
        if let TokenCheck::Refused = self.check_token(&request, &query, out) {
            return;
        }
        if self.token.is_none() {
            // Connectionless: each request is authenticated with its own query.
            match self.authenticate(&request, query.credentials.clone(), now, out) {
                Some(true) => {}
                Some(false) | None => return,
            }
        }
        match request.code {
            Code::POST | Code::PUT => self.publish(request, &topic, &query, now, out),
            Code::GET => match request.options.observe() {
                Some(observe::REGISTER) => self.observe(request, &topic, &query, now, out),
                Some(observe::DEREGISTER) => self.unobserve(request, &topic, now, out),
                _ => self.refuse(&request, Code::BAD_REQUEST, "invalid observe value", out),
            },
            _ => self.refuse(&request, Code::METHOD_NOT_ALLOWED, "Method Not Allowed", out),
        }
    }

    fn qos_of(&self, request: &Message, asked: Option<&str>, policy: QosPolicy) -> Result<QoS, ()> {
        let level = match (asked, policy) {
            (Some(q), _) => q.parse::<u8>().map_err(|_| ())?,
            (None, QosPolicy::Fixed(level)) => level,
            (None, QosPolicy::Coap) => u8::from(request.mtype == Type::Con),
        };
        QoS::from_u8(level).ok_or(())
    }

    fn mount(&self, topic: &str) -> String {
        format!("{}{topic}", self.settings.mountpoint)
    }

    fn publish(&mut self, request: Message, topic: &str, query: &Query, now: Instant, out: &mut Out) {
        let Ok(qos) = self.qos_of(&request, query.qos.as_deref(), self.settings.publish_qos) else {
            return self.refuse(&request, Code::BAD_REQUEST, "invalid qos", out);
        };
        let expiry = match query.expiry.as_deref().map(str::parse::<u32>) {
            None => None,
            Some(Ok(seconds)) => Some(seconds),
            Some(Err(_)) => return self.refuse(&request, Code::BAD_REQUEST, "invalid expiry", out),
        };
        let Ok(name) = TopicName::new(ByteString::from(self.mount(topic))) else {
            return self.refuse(&request, Code::BAD_REQUEST, "invalid topic", out);
        };
        if name.split('/').count() > self.settings.max_topic_levels {
            return self.refuse(&request, Code::BAD_REQUEST, "invalid topic", out);
        }
        match self.authorize(&request, Action::Publish, name.as_str()) {
            Some(true) => {}
            Some(false) => return self.respond(&request, Code::UNAUTHORIZED, Bytes::new(), out),
            None => return,
        }
        let Some(client) = &self.client else { return };
        let mut message = MqttMessage::new(
            self.ctx.node_id(),
            name,
            request.payload.clone(),
            qos,
            query.retain.as_deref() == Some("true"),
            Origin {
                client_id: client.client_id.clone(),
                protocol: super::PROTOCOL,
            },
        );
        message.properties.message_expiry_interval = expiry;
        if let Err(error) = self.ctx.publish(message, now) {
            tracing::debug!(peer = %self.peer, %error, "CoAP publish refused by the broker");
            return self.refuse(&request, Code::INTERNAL_SERVER_ERROR, "publish failed", out);
        }
        if qos == QoS::AtMostOnce {
            self.respond(&request, Code::CHANGED, Bytes::new(), out);
        } else {
            self.respond_durable(&request, Code::CHANGED, out);
        }
    }

    fn observe(&mut self, request: Message, topic: &str, query: &Query, now: Instant, out: &mut Out) {
        if request.token.is_empty() {
            return self.refuse(&request, Code::BAD_REQUEST, "observe without token", out);
        }
        let Ok(qos) = self.qos_of(&request, query.qos.as_deref(), self.settings.subscribe_qos) else {
            return self.refuse(&request, Code::BAD_REQUEST, "invalid qos", out);
        };
        let no_local = match query.nl.as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(_) => return self.refuse(&request, Code::BAD_REQUEST, "invalid nl", out),
        };
        let retained = match query.rh.as_deref() {
            None | Some("0") => RetainedOnSubscribe::Send,
            Some("1") => RetainedOnSubscribe::SendIfNew,
            Some("2") => RetainedOnSubscribe::DoNotSend,
            Some(_) => return self.refuse(&request, Code::BAD_REQUEST, "invalid rh", out),
        };
        let Ok(parsed) = SubscriptionTopic::parse(ByteString::from(self.mount(topic))) else {
            return self.refuse(&request, Code::BAD_REQUEST, "invalid topic", out);
        };
        if parsed.filter.depth() > self.settings.max_topic_levels {
            return self.refuse(&request, Code::BAD_REQUEST, "invalid topic", out);
        }
        let filter = ByteString::from(parsed.filter.as_str());
        let existing = self.observations.list.iter().position(|o| o.filter == filter);
        if existing.is_none() && self.observations.list.len() >= self.settings.max_observations {
            return self.refuse(&request, Code::SERVICE_UNAVAILABLE, "too many observations", out);
        }
        match self.authorize(&request, Action::Subscribe, &filter) {
            Some(true) => {}
            Some(false) => return self.respond(&request, Code::UNAUTHORIZED, Bytes::new(), out),
            None => return,
        }
        let Some(session) = self.session.clone() else { return };
        let path = request.uri_path_joined().unwrap_or_default();
        let block = request
            .options
            .block2()
            .and_then(|b| Block::new(0, false, b.szx()).ok());
        // The same filter observed again: the newest token wins (a client that lost its old
        // one re-registers; EMQX keeps the first and the new token never hears anything).
        let id = match existing {
            Some(i) => {
                let old = &mut self.observations.list[i];
                let old_token = std::mem::replace(&mut old.token, request.token);
                old.path = path;
                old.block = block;
                let id = old.id;
                self.layer.cancel(old_token, now, out);
                id
            }
            None => {
                let id = self.observations.next_id();
                self.observations.list.push(Observation {
                    filter: filter.clone(),
                    token: request.token,
                    path,
                    id,
                    block,
                });
                id
            }
        };
        let options = SubOptions {
            qos,
            no_local,
            retain_as_published: false,
            subscription_id: id,
        };
        self.ctx.subscribe(&session, parsed, options, retained);
        let mut response = self.response(&request, Code::CONTENT, Bytes::new());
        response.options.set_observe(self.observations.next_sequence());
        if request.mtype == Type::Con {
            self.layer.record_response(request.message_id, &response);
        }
        out.send(response);
        self.deliver_queued(now, out);
    }

    fn unobserve(&mut self, request: Message, topic: &str, now: Instant, out: &mut Out) {
        let filter = match SubscriptionTopic::parse(ByteString::from(self.mount(topic))) {
            Ok(parsed) => ByteString::from(parsed.filter.as_str()),
            Err(_) => return self.refuse(&request, Code::BAD_REQUEST, "invalid topic", out),
        };
        self.end_observation(|o| o.filter == filter, now, out);
        // 2.07: not a standard code, but what EMQX answers (clients see a success class).
        self.respond(&request, Code::NO_CONTENT_EMQX, Bytes::new(), out);
    }

    /// Ends the observation under `token` (a RST to one of its notifications).
    pub(super) fn end_observation_by_token(&mut self, token: Token, now: Instant, out: &mut Out) {
        self.end_observation(|o| o.token == token, now, out);
    }

    /// The path of the observation under `token` (where the GETs for the blocks of its large
    /// notifications ask).
    pub(super) fn observation_path(&self, token: Token) -> Option<&str> {
        let observation = self.observations.list.iter().find(|o| o.token == token)?;
        Some(&observation.path)
    }

    fn end_observation(&mut self, which: impl Fn(&Observation) -> bool, now: Instant, out: &mut Out) {
        let Some(i) = self.observations.list.iter().position(which) else {
            return;
        };
        let observation = self.observations.list.swap_remove(i);
        self.layer.cancel(observation.token, now, out);
        if let Some(session) = &self.session {
            self.ctx.unsubscribe(session, &observation.filter);
        }
    }

    /// Sends what the session holds as notifications, each to every observation it matched.
    pub(super) fn deliver_queued(&mut self, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        if state.conn.as_ref().map(|c| c.id()) != Some(self.conn.id()) {
            return;
        }
        let mut sent = [0u64; 3];
        let mut dropped = 0u64;
        while let Some(delivery) = state.dequeue() {
            // Nothing waits for an acknowledgement in the session: the message layer resends
            // CON notifications, and a CoAP session dies with its client.
            state.record_sent(&delivery, None);
            let confirmable = match self.settings.notify_type {
                NotifyType::Con => true,
                NotifyType::Non => false,
                NotifyType::Qos => delivery.qos != QoS::AtMostOnce,
            };
            for &id in &delivery.subscription_ids {
                let Some(observation) = self.observations.list.iter().find(|o| o.id == id) else {
                    continue;
                };
                let mut notification = Message {
                    token: observation.token,
                    payload: delivery.message.payload.clone(),
                    ..Message::new(if confirmable { Type::Con } else { Type::Non }, Code::CONTENT, 0)
                };
                if let Some(block) = observation.block {
                    // The size the observer asked for; the message layer cuts large bodies.
                    notification.options.set_block2(block);
                }
                notification.options.set_observe(self.observations.next_sequence());
                dropped += self.layer.send(notification, now, out) as u64;
                tally_qos(&mut sent, delivery.qos);
            }
        }
        drop(state);
        self.ctx.count_sent(sent);
        // Waiting notifications the message layer let go to make room: a full queue.
        self.ctx.count_dropped(DeliveryDrop::QueueFull, dropped);
    }
}
