//! The LwM2M gateway channel (sans-I/O), one per device address: EMQX 5's LwM2M gateway
//! (`gateway-semantics.md` §3; `docs/conformance/lwm2m.md` lists the differences).
//!
//! # Layout
//! - this file: the frontend, the channel, message dispatch, authentication, uplink
//!   publishing (with authorization), the lifetime timer and close;
//! - `registration`: the registration interface (`/rd`: register, update, de-register), and
//!   the rebuilding of a channel from a kept registration;
//! - `registrations`: [`Registrations`], the gateway's table of registrations by location,
//!   kept in the durable store;
//! - `downlink`: commands from MQTT, the FIFO with one request in flight, queue mode,
//!   responses, observations and notifications;
//! - `command`: command JSON → CoAP request and CoAP response → reply JSON (pure);
//! - `settings`: [`Lwm2mSettings`].
//!
//! The CoAP message layer (duplicates, our CON retransmissions) is
//! [`portico_coap::exchange`]: commands are our CON requests there, and its ACK/RST matching
//! settles them.

mod admin;
pub mod command;
mod downlink;
mod registration;
mod registrations;
mod settings;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico_coap::codec;
use portico_coap::exchange::{Incoming, MessageLayer, Settled};
use portico_coap::message::{Code, Message, Type};
use portico_core::auth::{Action, AuthResult, ClientInfo, Pending};
use portico_core::channel::{CloseReason, ConnInfo, EncodeError, Outbox};
use portico_core::conn::{ConnHandle, KickReason};
use portico_core::ctx::FrontendInfo;
use portico_core::datagram::{DatagramChannel, DatagramFrontend};
use portico_core::message::{Message as MqttMessage, Origin, now_millis};
use portico_core::metrics::Metrics;
use portico_core::session::Session;
use portico_core::sys::DisconnectedEvent;
use portico_core::topic::TopicName;
use portico_core::verdict::Verdict;
use portico_core::{Broker, Ctx};
use serde_json::{Map, Value as Json};

pub use command::{Kind, code_name};
pub use registrations::{AdminError, MAX_API_COMMANDS, MAX_RECORD, Registrations, SPACE as REGISTRATIONS_SPACE};
pub use settings::{AutoObserve, DEFAULT_MAX_REGISTRATIONS, Lwm2mSettings, Translator, Translators, UpdatePublish};

type Out = Outbox<Message>;

/// The protocol name in events and `ClientInfo`.
pub const PROTOCOL: &str = "lwm2m";

/// The LwM2M frontend: one channel per device address, and the registrations they share.
#[derive(Debug)]
pub struct Lwm2mFrontend {
    ctx: Ctx,
    settings: Arc<Lwm2mSettings>,
    registrations: Arc<Registrations>,
}

impl Lwm2mFrontend {
    /// A frontend on `broker` with `settings`, with a table of its own
    /// (`settings.max_registrations`; restored from the broker's store if it has one).
    pub fn new(broker: &Broker, settings: Lwm2mSettings) -> Lwm2mFrontend {
        let registrations = Registrations::load(broker.journal().cloned(), settings.max_registrations);
        Lwm2mFrontend::with_registrations(broker, settings, registrations)
    }

    /// A frontend sharing `registrations` with the gateway's other listeners: an endpoint is
    /// registered once per gateway, whichever listener it came through.
    pub fn with_registrations(
        broker: &Broker,
        settings: Lwm2mSettings,
        registrations: Arc<Registrations>,
    ) -> Lwm2mFrontend {
        let ctx = broker.ctx(FrontendInfo {
            name: PROTOCOL,
            mountpoint: ByteString::from(settings.mountpoint.clone()),
            authn: settings.enable_authn,
        });
        Lwm2mFrontend {
            ctx,
            settings: Arc::new(settings),
            registrations,
        }
    }

    /// The registrations table.
    pub fn registrations(&self) -> &Arc<Registrations> {
        &self.registrations
    }
}

impl DatagramFrontend for Lwm2mFrontend {
    type Channel = Lwm2mChannel;

    fn name(&self) -> &'static str {
        PROTOCOL
    }

    /// Only a CoAP 1 request opens a channel (a registration, in practice).
    fn admits(&self, datagram: &[u8]) -> bool {
        match datagram {
            [first, code, ..] if datagram.len() >= codec::HEADER_LEN => first >> 6 == 1 && code >> 5 == 0 && *code != 0,
            _ => false,
        }
    }

    /// An update (`POST /rd/{ep}`) from a new address names the endpoint whose live channel
    /// it belongs to: the driver moves that channel here (a NAT rebinding), keeping its
    /// queued commands and observations. Without a live channel the update opens a new one,
    /// which rebuilds the registration from the table (see `registrations`).
    fn rebind_key(&self, datagram: &[u8]) -> Option<String> {
        if !self.admits(datagram) || datagram[1] != Code::POST.0 {
            return None;
        }
        let request = codec::decode(Bytes::copy_from_slice(datagram)).ok()?;
        let mut path = request.options.uri_path();
        match (path.next(), path.next(), path.next()) {
            (Some(Ok("rd")), Some(Ok(endpoint)), None) => Some(endpoint.to_owned()),
            _ => None,
        }
    }

    fn new_peer(&self, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> Lwm2mChannel {
        Lwm2mChannel::new(
            self.ctx.clone(),
            self.settings.clone(),
            self.registrations.clone(),
            conn,
            info,
            now,
        )
    }
}

/// A registration waiting for its authentication answer; replayed when it comes.
#[derive(Debug)]
struct Held {
    request: Message,
    pending: Pending<AuthResult>,
}

/// An uplink whose publish authorization is pending (later uplinks wait behind it).
#[derive(Debug)]
struct PendingUplink {
    pending: Option<Pending<bool>>,
    message: MqttMessage,
}

/// The command subscription, while its authorization is pending.
#[derive(Debug)]
struct PendingSubscription {
    pending: Pending<bool>,
    filter: String,
}

/// One device's LwM2M state.
#[derive(Debug)]
pub struct Lwm2mChannel {
    ctx: Ctx,
    settings: Arc<Lwm2mSettings>,
    registrations: Arc<Registrations>,
    conn: Arc<ConnHandle>,
    peer: SocketAddr,
    sockport: u16,
    /// The DTLS PSK identity the device's handshake proved, if any.
    psk_identity: Option<Arc<str>>,
    layer: MessageLayer,
    closing: bool,
    client: Option<ClientInfo>,
    session: Option<Arc<Session>>,
    reg: Option<registration::Registration>,
    /// The mountpoint with its placeholders filled in, once registered.
    mountpoint: String,
    held: Option<Held>,
    answer: Option<AuthResult>,
    downlink: downlink::Downlink,
    uplinks: VecDeque<PendingUplink>,
    command_subscription: Option<PendingSubscription>,
    /// Whether the close ends the registration (de-register, lifetime, kick) or leaves it in
    /// the table for the device to come back to (shutdown, the transport dropped us).
    forget: bool,
    /// Kicked because another channel serves the registration now (it gets our commands).
    taken_over: bool,
    last_heard: Instant,
    connected_at_ms: u64,
    close_name: &'static str,
}

impl Lwm2mChannel {
    fn new(
        ctx: Ctx,
        settings: Arc<Lwm2mSettings>,
        registrations: Arc<Registrations>,
        conn: Arc<ConnHandle>,
        info: ConnInfo,
        now: Instant,
    ) -> Self {
        Lwm2mChannel {
            layer: MessageLayer::new(&settings.coap),
            peer: info.peer,
            sockport: info.local.port(),
            psk_identity: info.psk_identity,
            ctx,
            settings,
            registrations,
            conn,
            closing: false,
            client: None,
            session: None,
            reg: None,
            mountpoint: String::new(),
            held: None,
            answer: None,
            downlink: downlink::Downlink::default(),
            uplinks: VecDeque::new(),
            command_subscription: None,
            forget: false,
            taken_over: false,
            last_heard: now,
            connected_at_ms: 0,
            close_name: "normal",
        }
    }

    // ------------------------------------------------------------------ responses

    /// Answers `request` (piggybacked to a CON, remembered for its duplicates).
    fn respond(&mut self, request: &Message, response: Message, out: &mut Out) {
        if request.mtype == Type::Con {
            self.layer.record_response(request.message_id, &response);
        }
        out.send(response);
    }

    /// Forgets the journal tickets the last call collected: nothing the gateway sends waits for
    /// the store, and a ticket left on this thread would hold up another channel's
    /// acknowledgement. (A register/update answer does not wait for its record: should a crash
    /// lose the record, the device's next update gets 4.04 and it registers again, which is
    /// what a restart without kept registrations costs anyway. Holding the answer would also
    /// let commands and auto-observe requests reach the device before it.)
    fn drop_tickets(&self) {
        let _ = self.ctx.take_ticket();
    }

    fn reply(&mut self, request: &Message, code: Code, why: &str, out: &mut Out) {
        let response = Message::response_to(request, code, self.layer.next_id());
        let response = if why.is_empty() {
            response
        } else {
            tracing::debug!(peer = %self.peer, %code, why, "LwM2M request refused");
            response.with_payload(Bytes::copy_from_slice(why.as_bytes()))
        };
        self.respond(request, response, out);
    }

    // ------------------------------------------------------------------ dispatch

    fn handle_message(&mut self, message: Message, now: Instant, out: &mut Out) {
        match message.mtype {
            Type::Ack | Type::Rst => match self.layer.settle(&message, now, out) {
                Settled::Acked(token) if message.code.is_response() => self.on_reply(token, message, now, out),
                Settled::Acked(token) => self.on_empty_ack(token, now, out),
                Settled::Reset(token) => self.on_reset(token, now, out),
                Settled::Unknown => {}
            },
            _ if message.is_empty() && message.mtype == Type::Con => out.send(Message::reset_for(message.message_id)),
            _ if message.is_request() => match self.layer.check_request(&message, now) {
                Incoming::New => self.handle_request(message, now, out),
                Incoming::Duplicate(Some(response)) => out.send(response),
                Incoming::Duplicate(None) => {}
            },
            _ if message.code.is_response() => self.on_separate(message, now, out),
            _ => {}
        }
    }

    /// A new request from the device (or a held registration replayed).
    fn handle_request(&mut self, request: Message, now: Instant, out: &mut Out) {
        if request.payload.len() > self.settings.max_payload {
            return self.reply(&request, Code::REQUEST_ENTITY_TOO_LARGE, "payload too large", out);
        }
        let segments: Vec<String> = match request.options.uri_path().collect::<Result<Vec<&str>, _>>() {
            Ok(segments) => segments.into_iter().map(str::to_owned).collect(),
            Err(_) => return self.reply(&request, Code::BAD_REQUEST, "path is not UTF-8", out),
        };
        match (segments.first().map(String::as_str), segments.len(), request.code) {
            (Some("rd"), 1, Code::POST) => self.register(request, now, out),
            (Some("rd"), 2, Code::POST) => self.update(request, &segments[1], now, out),
            (Some("rd"), 2, Code::DELETE) => self.deregister(request, &segments[1], out),
            (Some("rd"), 1 | 2, _) => self.reply(&request, Code::METHOD_NOT_ALLOWED, "", out),
            _ => self.reply(&request, Code::NOT_FOUND, "", out),
        }
        // Anything from a queue-mode device means it listens now.
        self.pump(now, out);
    }

    // ------------------------------------------------------------------ authentication

    /// Authenticates the registering device: `Some(client)` when allowed, `None` when refused
    /// (answered with `refused`) or held for the answer.
    fn authenticate(
        &mut self,
        request: &Message,
        client: ClientInfo,
        password: Option<&str>,
        refused: (Code, &str),
        out: &mut Out,
    ) -> Option<ClientInfo> {
        let result = match self.answer.take() {
            Some(result) => result,
            None => match self.ctx.authenticate(&client, password.map(str::as_bytes)) {
                Verdict::Ready(result) => result,
                Verdict::Pending(pending) => {
                    pending.watch(&self.conn);
                    self.held = Some(Held {
                        request: request.clone(),
                        pending,
                    });
                    return None;
                }
            },
        };
        match result {
            AuthResult::Allow { superuser, acl } => {
                let mut client = client;
                client.superuser = superuser;
                client.acl = acl;
                Some(client)
            }
            AuthResult::Deny(refusal) => {
                tracing::debug!(peer = %self.peer, ?refusal, "LwM2M device not authenticated");
                self.reply(request, refused.0, refused.1, out);
                None
            }
        }
    }

    fn resume_held(&mut self, now: Instant, out: &mut Out) {
        let Some(held) = &self.held else { return };
        let Some(answer) = held.pending.poll(&self.conn) else {
            return;
        };
        let Some(held) = self.held.take() else { return };
        self.answer = Some(self.ctx.authentication_answered(answer));
        self.handle_request(held.request, now, out);
        self.answer = None;
    }

    // ------------------------------------------------------------------ uplinks

    /// Publishes `json` to `mountpoint + translator.topic` as the device, if authorized.
    fn publish_uplink(&mut self, translator: &Translator, json: Map<String, Json>, now: Instant) {
        let topic = format!("{}{}", self.mountpoint, translator.topic);
        self.publish_to(&topic, translator.qos, json, now);
    }

    fn publish_to(&mut self, topic: &str, qos: portico_core::QoS, json: Map<String, Json>, now: Instant) {
        let Some(client) = &self.client else { return };
        let Ok(name) = TopicName::new(ByteString::from(topic.to_owned())) else {
            tracing::warn!(topic, "LwM2M uplink topic is not a valid topic name; dropped");
            return;
        };
        let payload = Bytes::from(Json::Object(json).to_string());
        let message = MqttMessage::new(
            self.ctx.node_id(),
            name,
            payload,
            qos,
            false,
            Origin {
                client_id: client.client_id.clone(),
                protocol: PROTOCOL,
            },
        );
        let pending = match self.ctx.authorize(client, Action::Publish, topic) {
            Verdict::Ready(true) => None,
            Verdict::Ready(false) => {
                tracing::info!(topic, "LwM2M uplink not authorized; dropped");
                return;
            }
            Verdict::Pending(pending) => {
                pending.watch(&self.conn);
                Some(pending)
            }
        };
        self.uplinks.push_back(PendingUplink { pending, message });
        self.release_uplinks(now);
    }

    /// Publishes the uplinks whose authorization is in, in order.
    fn release_uplinks(&mut self, now: Instant) {
        while let Some(front) = self.uplinks.front_mut() {
            let allowed = match &front.pending {
                None => true,
                Some(pending) => {
                    let Some(answer) = pending.poll(&self.conn) else { return };
                    let topic = front.message.topic.as_str().to_owned();
                    self.ctx
                        .authorization_answered(answer, None, Action::Publish, &topic, now)
                }
            };
            let Some(uplink) = self.uplinks.pop_front() else { return };
            if !allowed {
                tracing::info!(topic = %uplink.message.topic.as_str(), "LwM2M uplink not authorized; dropped");
                continue;
            }
            if let Err(error) = self.ctx.publish(uplink.message, now) {
                tracing::debug!(peer = %self.peer, %error, "LwM2M uplink refused by the broker");
            }
        }
    }

    // ------------------------------------------------------------------ liveness and close

    fn deadline(&self) -> Instant {
        match &self.reg {
            // Every message from the device restarts the lifetime (EMQX). Checked: a lifetime
            // no clock can reach (a stored record from elsewhere) means no deadline soon.
            Some(reg) => self
                .last_heard
                .checked_add(reg.lifetime)
                .unwrap_or(self.last_heard + Duration::from_secs(u64::from(u32::MAX))),
            None => self.last_heard + self.settings.coap.idle_timeout,
        }
    }

    fn close(&mut self, reason: CloseReason, out: &mut Out) {
        self.closing = true;
        out.close(reason);
    }

    fn release_session(&mut self, now: Instant) {
        let Some(session) = self.session.take() else { return };
        if let Some(reg) = self.reg.clone() {
            // The registration lives on elsewhere (taken over) or later (transport gone): the
            // commands not yet sent go with it, not with this channel.
            if !self.forget || self.taken_over {
                let unanswered = self.take_unanswered();
                let max = self.settings.max_queued_commands;
                self.registrations
                    .hand_over(&reg.endpoint, self.conn.id(), unanswered, max);
            }
            if self.forget {
                self.registrations.remove(&reg.endpoint, self.conn.id());
            } else {
                self.registrations.release(&reg.endpoint, self.conn.id());
            }
        }
        if let Some(client) = &self.client {
            let at = now_millis();
            self.ctx.sys_disconnected(&DisconnectedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: PROTOCOL,
                peer: Some(self.peer.ip()),
                sockport: self.sockport,
                proto_name: "LwM2M".to_owned(),
                proto_ver: self.reg.as_ref().map_or(1, |r| r.proto_ver()),
                reason: self.close_name.to_owned(),
                connected_at_ms: self.connected_at_ms,
                disconnected_at_ms: at,
                ts_ms: at,
            });
        }
        self.ctx
            .close_session(&session, self.conn.id(), self.client.as_ref(), None, now);
    }

    fn release_if_closing(&mut self, now: Instant) {
        if self.closing {
            self.release_session(now);
        }
    }
}

impl DatagramChannel for Lwm2mChannel {
    type Frame = Message;

    fn encode(&self, frame: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        portico_coap::channel::encode_frame(frame, dst)
    }

    fn handle_datagram(&mut self, datagram: Bytes, now: Instant, out: &mut Out) {
        if self.closing {
            return;
        }
        match codec::decode(datagram) {
            Ok(message) => {
                self.last_heard = now;
                self.handle_message(message, now, out);
            }
            Err(error) => {
                Metrics::inc(&self.ctx.metrics().packets_malformed);
                tracing::debug!(peer = %self.peer, %error, "malformed CoAP datagram");
                if let Some(reset) = error.reset() {
                    out.send(reset);
                }
            }
        }
        self.drop_tickets();
        self.release_if_closing(now);
    }

    fn handle_deliver(&mut self, now: Instant, out: &mut Out) {
        let _ = self.conn.take_clear_authz_cache();
        if self.held.is_some() {
            self.resume_held(now, out);
        }
        self.release_uplinks(now);
        self.resume_command_subscription(now);
        self.take_commands(now, out);
        self.drop_tickets();
        self.release_if_closing(now);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        if self.closing {
            return;
        }
        if self.deadline() <= now {
            tracing::debug!(peer = %self.peer, "LwM2M lifetime expired; closing");
            self.close_name = "lifetime_expired";
            self.forget = true;
            self.close(CloseReason::KeepAliveTimeout, out);
            self.drop_tickets();
            return self.release_if_closing(now);
        }
        self.downlink_timeout(now, out);
        self.drop_tickets();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closing {
            return None;
        }
        [
            Some(self.deadline()),
            self.layer.poll_timeout(),
            self.downlink.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_kick(&mut self, reason: KickReason, now: Instant, out: &mut Out) {
        if self.closing {
            return;
        }
        self.close_name = reason.event_name();
        // A registration outlives a shutdown (kept in the store); any other kick ends it.
        self.forget = reason != KickReason::ServerShutdown;
        self.taken_over = reason == KickReason::TakenOver;
        self.close(CloseReason::Kicked(reason), out);
        self.release_if_closing(now);
        self.drop_tickets();
    }

    fn handle_closed(&mut self, now: Instant) {
        self.closing = true;
        self.release_session(now);
        self.drop_tickets();
    }

    fn accepts_input(&self) -> bool {
        self.held.is_none()
    }

    /// A registered device is known by its endpoint name (its registration's location).
    fn client_key(&self) -> Option<&str> {
        self.reg.as_ref().map(|reg| reg.endpoint.as_str())
    }

    fn accepts_rebind(&self) -> bool {
        self.reg.is_some() && !self.closing
    }

    fn rebound(&mut self, addr: SocketAddr) {
        tracing::debug!(old = %self.peer, new = %addr, "LwM2M device moved to a new address");
        self.peer = addr;
        // Message ids are an endpoint's own: the new address's are no duplicates of the old's.
        self.layer.forget_requests();
    }
}
