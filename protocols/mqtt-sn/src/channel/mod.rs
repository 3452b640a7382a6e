//! The MQTT-SN channel (sans-I/O), one per peer address: CONNECT with the will handshake,
//! topic registration both ways, PUBLISH in and out (QoS −1, 0, 1, 2; one QoS 1/2 message in
//! flight to the client, as EMQX), SUBSCRIBE, keep-alive and DISCONNECT.
//!
//! # Layout
//! - this file: the channel, the frontend, CONNECT and the will handshake, keep-alive, PINGREQ,
//!   DISCONNECT, will updates and close;
//! - `publish`: PUBLISH both ways, REGISTER both ways, the acknowledgement flows;
//! - `subscribe`: SUBSCRIBE and UNSUBSCRIBE;
//! - `sleep`: sleeping clients.
//!
//! Not yet: gateway discovery.

mod durable;
mod publish;
mod sleep;
mod subscribe;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico_core::Ctx;
use portico_core::auth::{AuthResult, ClientInfo, Pending, Verdict};
use portico_core::broker::Will;
use portico_core::channel::{CloseReason, ConnInfo, EncodeError, Outbox};
use portico_core::conn::{ConnHandle, KickReason};
use portico_core::ctx::FrontendInfo;
use portico_core::datagram::{DatagramChannel, DatagramFrontend};
use portico_core::hooks::{ClientRef, ConnectInfo};
use portico_core::message::{Message, Origin, now_millis};
use portico_core::metrics::Metrics;
use portico_core::session::Session;
use portico_core::sys::{ConnectedEvent, DisconnectedEvent};
use portico_core::topic::TopicName;
use portico_core::{Broker, QoS};

use crate::codec;
use crate::packet::{Flags, Packet, ReturnCode, SnQoS, msg_type};
use crate::registry::Registry;
use crate::settings::MqttSnSettings;

type Out = Outbox<Packet>;

/// The protocol name in events and `ClientInfo` (EMQX's `mqtt-sn`).
pub const PROTOCOL: &str = "mqttsn";

/// The MQTT-SN frontend: one channel per peer address.
#[derive(Debug)]
pub struct MqttSnFrontend {
    ctx: Ctx,
    settings: Arc<MqttSnSettings>,
}

impl MqttSnFrontend {
    /// A frontend on `broker` with `settings`.
    pub fn new(broker: &Broker, settings: MqttSnSettings) -> MqttSnFrontend {
        let ctx = broker.ctx(FrontendInfo {
            name: PROTOCOL,
            mountpoint: ByteString::from(settings.mountpoint.clone()),
            authn: settings.enable_authn,
        });
        MqttSnFrontend {
            ctx,
            settings: Arc::new(settings),
        }
    }
}

impl DatagramFrontend for MqttSnFrontend {
    type Channel = MqttSnChannel;

    fn name(&self) -> &'static str {
        PROTOCOL
    }

    /// A new address must start with something a client without a connection may send:
    /// CONNECT, SEARCHGW, DISCONNECT or a QoS −1 PUBLISH. Anything else is dropped without
    /// making a channel (EMQX closes such a channel silently).
    fn admits(&self, datagram: &[u8]) -> bool {
        let kind = match datagram {
            [0x01, _, _, kind, ..] => *kind,
            [_, kind, ..] => *kind,
            _ => return false,
        };
        matches!(
            kind,
            msg_type::CONNECT | msg_type::SEARCHGW | msg_type::DISCONNECT | msg_type::PUBLISH
        )
    }

    /// CONNECT or PINGREQ with a client id (EMQX's rebinding rule).
    fn rebind_key(&self, datagram: &[u8]) -> Option<String> {
        match codec::decode(Bytes::copy_from_slice(datagram)).ok()? {
            Packet::Connect { client_id, .. } | Packet::PingReq(Some(client_id)) if !client_id.is_empty() => {
                Some(client_id.to_string())
            }
            _ => None,
        }
    }

    fn new_peer(&self, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> MqttSnChannel {
        MqttSnChannel::new(self.ctx.clone(), self.settings.clone(), conn, info, now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No CONNECT yet.
    Idle,
    /// CONNECT with the will flag: WILLTOPICREQ sent.
    WillTopic,
    /// WILLTOPIC received: WILLMSGREQ sent.
    WillMsg,
    /// Waiting for authentication to answer.
    Authenticating,
    /// CONNACK sent.
    Connected,
    /// DISCONNECT with a duration: deliveries wait for a PINGREQ.
    Asleep,
    /// PINGREQ with the client id: waiting deliveries go out, then PINGRESP and asleep again.
    Awake,
    /// Closing: input ignored.
    Closing,
}

/// A CONNECT on its way through the will handshake and authentication.
#[derive(Debug)]
struct PendingConnect {
    client: ClientInfo,
    clean: bool,
    duration: u16,
    will_topic: Option<(Flags, ByteString)>,
    will: Option<Will>,
    auth: Option<Pending<AuthResult>>,
    /// What `client.connect` reported, for `client.connack`.
    hook: Option<Arc<ConnectInfo>>,
}

/// One peer's MQTT-SN state.
#[derive(Debug)]
pub struct MqttSnChannel {
    ctx: Ctx,
    settings: Arc<MqttSnSettings>,
    conn: Arc<ConnHandle>,
    peer: SocketAddr,
    phase: Phase,
    connect_deadline: Instant,
    pending: Option<Box<PendingConnect>>,
    client: Option<ClientInfo>,
    session: Option<Arc<Session>>,
    will: Option<Box<Will>>,
    /// The will is not published (DISCONNECT, our own shutdown).
    will_cancelled: bool,
    keepalive: Option<Duration>,
    last_heard: Instant,
    registry: Registry,
    /// Message ids of the gateway's REGISTERs.
    next_msg_id: u16,
    /// A gateway REGISTER waiting for its REGACK (one at a time, as EMQX).
    register: Option<Box<publish::OutRegister>>,
    /// When the oldest unacknowledged QoS 1/2 PUBLISH is due for a resend.
    retry_deadline: Option<Instant>,
    /// A PUBLISH or SUBSCRIBE held for an authorization answer, with what it asked.
    held: Option<Box<publish::HeldPacket>>,
    /// When a sleeping client is lost if it does not wake up.
    sleep_deadline: Option<Instant>,
    /// The duration of its last DISCONNECT.
    sleep_duration: Duration,
    /// Our port (EMQX `sockport` in events).
    sockport: u16,
    /// When CONNACK was sent (ms since the Unix epoch), for events.
    connected_at_ms: u64,
    /// Why the channel closes, in EMQX's words (`$SYS` disconnected events).
    close_name: &'static str,
    /// Acknowledgements waiting for the durable store (see `durable.rs`). Boxed: usually none.
    #[allow(clippy::box_collection)]
    held_acks: Option<Box<std::collections::VecDeque<(portico_core::store::Ticket, Packet)>>>,
}

impl MqttSnChannel {
    fn new(ctx: Ctx, settings: Arc<MqttSnSettings>, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> Self {
        MqttSnChannel {
            peer: info.peer,
            sockport: info.local.port(),
            sleep_deadline: None,
            sleep_duration: Duration::ZERO,
            connected_at_ms: 0,
            close_name: "tcp_closed",
            held_acks: None,
            connect_deadline: now + settings.idle_timeout,
            ctx,
            settings,
            conn,
            phase: Phase::Idle,
            pending: None,
            client: None,
            session: None,
            will: None,
            will_cancelled: false,
            keepalive: None,
            last_heard: now,
            registry: Registry::default(),
            next_msg_id: 0,
            register: None,
            retry_deadline: None,
            held: None,
        }
    }

    /// The client as hook events name it (empty before CONNECT: no event fires then).
    fn client_ref(&self) -> ClientRef {
        ClientRef {
            client_id: self.client.as_ref().map(|c| c.client_id.clone()).unwrap_or_default(),
            username: self.client.as_ref().and_then(|c| c.username.clone()),
        }
    }

    fn next_msg_id(&mut self) -> u16 {
        self.next_msg_id = self.next_msg_id.checked_add(1).unwrap_or(1);
        self.next_msg_id
    }

    fn close(&mut self, reason: CloseReason, out: &mut Out) {
        self.phase = Phase::Closing;
        out.close(reason);
    }

    /// A packet that has no place here: DISCONNECT (MQTT-SN has no error codes for this) and
    /// close, as EMQX does.
    fn refuse(&mut self, why: String, out: &mut Out) {
        tracing::debug!(peer = %self.peer, %why, "closing MQTT-SN channel");
        self.close_name = "protocol_error";
        out.send(Packet::Disconnect(None));
        self.close(CloseReason::ProtocolViolation(why), out);
    }

    /// Validates and mounts a topic name; `None` if it is not a valid name for this gateway.
    fn mount(&self, topic: &str) -> Option<TopicName> {
        let full = if self.settings.mountpoint.is_empty() {
            ByteString::from(topic)
        } else {
            ByteString::from(format!("{}{topic}", self.settings.mountpoint))
        };
        let name = TopicName::new(full).ok()?;
        let levels = name.bytes().filter(|&b| b == b'/').count() + 1;
        (levels <= self.settings.max_topic_levels).then_some(name)
    }

    fn unmount<'a>(&self, topic: &'a str) -> &'a str {
        if self.settings.mountpoint.is_empty() {
            return topic;
        }
        topic.strip_prefix(self.settings.mountpoint.as_str()).unwrap_or(topic)
    }

    fn message(&self, topic: TopicName, payload: Bytes, qos: QoS, retain: bool) -> Message {
        let client_id = self.client.as_ref().map(|c| c.client_id.clone()).unwrap_or_default();
        Message::new(
            self.ctx.node_id(),
            topic,
            payload,
            qos,
            retain,
            Origin {
                client_id,
                protocol: PROTOCOL,
            },
        )
    }

    // ------------------------------------------------------------------ CONNECT

    fn handle_connect(&mut self, flags: Flags, duration: u16, client_id: ByteString, now: Instant, out: &mut Out) {
        if self.phase != Phase::Idle {
            // EMQX: a CONNECT on a connected channel ends it; during the will handshake it is
            // ignored.
            match self.phase {
                Phase::Connected => return self.refuse("second CONNECT".to_owned(), out),
                Phase::Asleep | Phase::Awake => return self.wake_by_connect(now, out),
                _ => return,
            }
        }
        if client_id.len() > self.settings.max_clientid_len {
            out.send(Packet::ConnAck {
                code: ReturnCode::NotSupported,
            });
            return self.close(CloseReason::ProtocolViolation("client id too long".to_owned()), out);
        }
        let client_id = if client_id.is_empty() {
            ByteString::from(format!("portico-sn-{:016x}", rand::random::<u64>()))
        } else {
            client_id
        };
        let client = ClientInfo::new(client_id, self.settings.username.clone(), self.peer, PROTOCOL);
        let hook = self.ctx.hook_connect(|| ConnectInfo {
            client_id: client.client_id.clone(),
            username: client.username.clone(),
            protocol: PROTOCOL,
            peer: Some(self.peer),
            proto_name: "MQTT-SN",
            proto_ver: 1,
            keepalive: duration,
            clean_start: flags.clean_session,
            ts_ms: now_millis(),
        });
        self.pending = Some(Box::new(PendingConnect {
            client,
            clean: flags.clean_session,
            duration,
            will_topic: None,
            will: None,
            auth: None,
            hook,
        }));
        if flags.will {
            self.phase = Phase::WillTopic;
            out.send(Packet::WillTopicReq);
        } else {
            self.authenticate(now, out);
        }
    }

    fn handle_will_topic(&mut self, will: Option<(Flags, ByteString)>, now: Instant, out: &mut Out) {
        let Some(pending) = self.pending.as_mut() else { return };
        match will {
            // An empty WILLTOPIC: no will after all (EMQX t_will_test3).
            None => self.authenticate(now, out),
            Some((_, topic)) if topic.is_empty() => self.authenticate(now, out),
            Some(will) => {
                pending.will_topic = Some(will);
                self.phase = Phase::WillMsg;
                out.send(Packet::WillMsgReq);
            }
        }
    }

    fn handle_will_msg(&mut self, payload: Bytes, now: Instant, out: &mut Out) {
        let Some(pending) = self.pending.as_mut() else { return };
        let Some((flags, topic)) = pending.will_topic.take() else {
            return self.refuse("WILLMSG before WILLTOPIC".to_owned(), out);
        };
        let client_id = pending.client.client_id.clone();
        match self.make_will(&client_id, flags, &topic, payload) {
            Some(will) => {
                if let Some(pending) = self.pending.as_mut() {
                    pending.will = Some(will);
                }
                self.authenticate(now, out);
            }
            None => {
                out.send(Packet::ConnAck {
                    code: ReturnCode::NotSupported,
                });
                self.close(
                    CloseReason::ProtocolViolation(format!("invalid will topic {topic:?}")),
                    out,
                );
            }
        }
    }

    fn make_will(&self, client_id: &ByteString, flags: Flags, topic: &str, payload: Bytes) -> Option<Will> {
        let qos = sn_qos(flags.qos).unwrap_or(QoS::AtMostOnce);
        let topic = self.mount(topic)?;
        let message = Message::new(
            self.ctx.node_id(),
            topic,
            payload,
            qos,
            flags.retain,
            Origin {
                client_id: client_id.clone(),
                protocol: PROTOCOL,
            },
        );
        Some(Will { message, delay: 0 })
    }

    fn authenticate(&mut self, now: Instant, out: &mut Out) {
        let Some(pending) = self.pending.as_mut() else { return };
        let password = self.settings.password.clone();
        match self.ctx.authenticate(&pending.client, password.as_deref()) {
            Verdict::Ready(result) => self.authenticated(result, now, out),
            Verdict::Pending(answer) => {
                answer.watch(&self.conn);
                pending.auth = Some(answer);
                self.phase = Phase::Authenticating;
            }
        }
    }

    fn authenticated(&mut self, result: AuthResult, now: Instant, out: &mut Out) {
        let Some(pending) = self.pending.take() else { return };
        let PendingConnect {
            mut client,
            clean,
            duration,
            will,
            hook,
            ..
        } = *pending;
        match result {
            AuthResult::Allow { superuser, acl } => {
                client.superuser = superuser;
                client.acl = acl;
                self.ctx.hook_connack(hook, "success");
            }
            AuthResult::Deny(refusal) => {
                self.ctx.hook_connack(hook, refusal.connack_result());
                tracing::debug!(peer = %self.peer, client_id = %client.client_id, ?refusal, "MQTT-SN CONNECT refused");
                out.send(Packet::ConnAck {
                    code: ReturnCode::NotAuthorized,
                });
                return self.close(CloseReason::NotAuthorized, out);
            }
        }
        let expiry = if clean {
            0
        } else {
            self.settings.session_expiry_interval
        };
        let opened = self
            .ctx
            .open_session(&client.client_id, clean, expiry, &self.conn, will.as_ref());
        self.session = Some(opened.session);
        self.will = will.map(Box::new);
        self.keepalive = (duration > 0)
            .then(|| Duration::from_secs_f64(f64::from(duration) * self.settings.keepalive_multiplier).ceil_secs());
        self.client = Some(client);
        self.phase = Phase::Connected;
        self.last_heard = now;
        // A persistent session's record must be on disk before the client is told.
        self.send_durable(
            Packet::ConnAck {
                code: ReturnCode::Accepted,
            },
            out,
        );
        self.connected_at_ms = now_millis();
        if let Some(client) = &self.client {
            self.ctx.sys_connected(&ConnectedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: PROTOCOL,
                peer: Some(self.peer.ip()),
                sockport: self.sockport,
                proto_name: "MQTT-SN".to_owned(),
                proto_ver: 1,
                keepalive: duration,
                clean_start: clean,
                expiry_interval_secs: expiry,
                connected_at_ms: self.connected_at_ms,
                ts_ms: self.connected_at_ms,
            });
        }
        if opened.present {
            self.resend_inflight(now, out);
        }
        self.deliver_queued(now, out);
    }

    // ------------------------------------------------------------------ the rest

    fn handle_disconnect(&mut self, duration: Option<u16>, now: Instant, out: &mut Out) {
        if let Some(seconds) = duration.filter(|&d| d > 0) {
            return self.go_to_sleep(seconds, now, out);
        }
        self.will_cancelled = true;
        self.close_name = "normal";
        out.send(Packet::Disconnect(None));
        self.close(CloseReason::ClientDisconnect, out);
    }

    fn handle_will_topic_update(&mut self, will: Option<(Flags, ByteString)>, out: &mut Out) {
        let client_id = self.client.as_ref().map(|c| c.client_id.clone()).unwrap_or_default();
        match will {
            None => self.will = None,
            Some((_, topic)) if topic.is_empty() => self.will = None,
            Some((flags, topic)) => {
                let payload = self
                    .will
                    .as_ref()
                    .map(|w| w.message.payload.clone())
                    .unwrap_or_default();
                match self.make_will(&client_id, flags, &topic, payload) {
                    Some(will) => self.will = Some(Box::new(will)),
                    None => {
                        return out.send(Packet::WillTopicResp {
                            code: ReturnCode::NotSupported,
                        });
                    }
                }
            }
        }
        out.send(Packet::WillTopicResp {
            code: ReturnCode::Accepted,
        });
    }

    fn handle_will_msg_update(&mut self, payload: Bytes, out: &mut Out) {
        let code = match self.will.as_mut() {
            Some(will) => {
                will.message.payload = payload;
                ReturnCode::Accepted
            }
            // EMQX: no will topic yet.
            None => ReturnCode::NotSupported,
        };
        out.send(Packet::WillMsgResp { code });
    }

    /// Gives the session back to the broker (the will is published if due).
    fn release_session(&mut self, now: Instant) {
        let Some(session) = self.session.take() else { return };
        if let Some(client) = &self.client {
            let at = now_millis();
            self.ctx.sys_disconnected(&DisconnectedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: PROTOCOL,
                peer: Some(self.peer.ip()),
                sockport: self.sockport,
                proto_name: "MQTT-SN".to_owned(),
                proto_ver: 1,
                reason: self.close_name.to_owned(),
                connected_at_ms: self.connected_at_ms,
                disconnected_at_ms: at,
                ts_ms: at,
            });
        }
        let will = if self.will_cancelled {
            None
        } else {
            self.will.take().map(|w| *w)
        };
        self.ctx
            .close_session(&session, self.conn.id(), self.client.as_ref(), will, now);
    }

    fn keepalive_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle | Phase::WillTopic | Phase::WillMsg | Phase::Authenticating => Some(self.connect_deadline),
            Phase::Connected => self.keepalive.map(|k| self.last_heard + k),
            Phase::Asleep | Phase::Awake => self.sleep_deadline,
            Phase::Closing => None,
        }
    }

    fn handle_packet(&mut self, packet: Packet, now: Instant, out: &mut Out) {
        match (self.phase, packet) {
            (Phase::Closing | Phase::Authenticating, _) => {}
            (_, Packet::SearchGw { .. }) => out.send(Packet::GwInfo {
                gw_id: self.settings.gateway_id,
                gw_add: Bytes::new(),
            }),
            (
                _,
                Packet::Connect {
                    flags,
                    duration,
                    client_id,
                    ..
                },
            ) => self.handle_connect(flags, duration, client_id, now, out),
            (Phase::Idle, Packet::Publish { flags, topic, data, .. }) if flags.qos == SnQoS::MinusOne => {
                self.publish_unconnected(flags, topic, data, now, out)
            }
            (Phase::Idle, Packet::Disconnect(_)) => {
                // EMQX t_first_disconnect: acknowledged.
                out.send(Packet::Disconnect(None));
                self.close(CloseReason::ClientDisconnect, out);
            }
            (Phase::Idle, _) => self.close(CloseReason::ProtocolViolation("packet before CONNECT".to_owned()), out),
            (Phase::WillTopic, Packet::WillTopic(will)) => self.handle_will_topic(will, now, out),
            (Phase::WillMsg, Packet::WillMsg(payload)) => self.handle_will_msg(payload, now, out),
            (Phase::WillTopic | Phase::WillMsg, Packet::Disconnect(_)) => {
                out.send(Packet::Disconnect(None));
                self.close(CloseReason::ClientDisconnect, out);
            }
            (Phase::WillTopic | Phase::WillMsg, other) => {
                self.refuse(format!("{} during the will handshake", other.name()), out)
            }
            (Phase::Connected, packet) => self.handle_connected(packet, now, out),
            (Phase::Asleep | Phase::Awake, packet) => self.handle_asleep(packet, now, out),
        }
    }

    fn handle_connected(&mut self, packet: Packet, now: Instant, out: &mut Out) {
        match packet {
            Packet::Register { msg_id, topic_name, .. } => self.handle_register(msg_id, topic_name, out),
            Packet::RegAck { topic_id, msg_id, code } => self.handle_regack(topic_id, msg_id, code, now, out),
            Packet::Publish {
                flags,
                topic,
                msg_id,
                data,
            } => self.handle_publish(flags, topic, msg_id, data, now, out),
            Packet::PubAck { topic_id, msg_id, code } => self.handle_puback(topic_id, msg_id, code, now, out),
            Packet::PubRec { msg_id } => self.handle_pubrec(msg_id, now, out),
            Packet::PubRel { msg_id } => self.handle_pubrel(msg_id, out),
            Packet::PubComp { msg_id } => self.handle_pubcomp(msg_id, now, out),
            Packet::Subscribe { flags, msg_id, topic } => self.handle_subscribe(flags, msg_id, topic, now, out),
            Packet::Unsubscribe { msg_id, topic, .. } => self.handle_unsubscribe(msg_id, topic, out),
            Packet::PingReq(client_id) => {
                let ours = self.client.as_ref().map(|c| &c.client_id);
                // EMQX: a PINGREQ naming another client is ignored.
                if client_id.as_ref().is_none_or(|id| Some(id) == ours) {
                    out.send(Packet::PingResp);
                }
            }
            Packet::Disconnect(duration) => self.handle_disconnect(duration, now, out),
            Packet::WillTopicUpd(will) => self.handle_will_topic_update(will, out),
            Packet::WillMsgUpd(payload) => self.handle_will_msg_update(payload, out),
            Packet::Encapsulated { .. } => {
                tracing::debug!(peer = %self.peer, "encapsulated messages (forwarders) are not supported; dropped")
            }
            other => tracing::debug!(peer = %self.peer, packet = other.name(), "unexpected MQTT-SN message ignored"),
        }
    }
}

/// MQTT-SN QoS to MQTT QoS; `None` for QoS −1.
fn sn_qos(qos: SnQoS) -> Option<QoS> {
    match qos {
        SnQoS::AtMostOnce => Some(QoS::AtMostOnce),
        SnQoS::AtLeastOnce => Some(QoS::AtLeastOnce),
        SnQoS::ExactlyOnce => Some(QoS::ExactlyOnce),
        SnQoS::MinusOne => None,
    }
}

trait CeilSecs {
    fn ceil_secs(self) -> Duration;
}

impl CeilSecs for Duration {
    /// Rounded up to whole seconds (EMQX: `ceil(1.5 × Duration)`).
    fn ceil_secs(self) -> Duration {
        let secs = self.as_secs() + u64::from(self.subsec_nanos() > 0);
        Duration::from_secs(secs)
    }
}

impl DatagramChannel for MqttSnChannel {
    type Frame = Packet;

    fn encode(&self, frame: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        codec::encode(frame, dst).map_err(|_| EncodeError {
            frame: frame.name(),
            why: "longer than MQTT-SN allows",
        })
    }

    fn handle_datagram(&mut self, datagram: Bytes, now: Instant, out: &mut Out) {
        let packet = match codec::decode(datagram) {
            Ok(packet) => packet,
            Err(error) => {
                Metrics::inc(&self.ctx.metrics().packets_malformed);
                tracing::debug!(peer = %self.peer, %error, "malformed MQTT-SN datagram");
                if self.phase == Phase::Connected {
                    // EMQX: a frame error ends the channel.
                    self.refuse(error.to_string(), out);
                } else {
                    self.close(CloseReason::ProtocolViolation(error.to_string()), out);
                }
                return self.release_if_closing(now);
            }
        };
        self.last_heard = now;
        self.handle_packet(packet, now, out);
        self.release_if_closing(now);
    }

    fn handle_deliver(&mut self, now: Instant, out: &mut Out) {
        if self.conn.take_clear_authz_cache() {
            // MQTT-SN keeps no authorization cache.
        }
        if self.phase == Phase::Authenticating {
            let answer = self
                .pending
                .as_ref()
                .and_then(|p| p.auth.as_ref())
                .and_then(|a| a.poll(&self.conn));
            if let Some(answer) = answer {
                let result = self.ctx.authentication_answered(answer);
                self.authenticated(result, now, out);
            }
        }
        self.release_durable(out);
        if self.held.is_some() {
            self.resume_held(now, out);
        }
        if matches!(self.phase, Phase::Connected | Phase::Awake) {
            self.deliver_queued(now, out);
        }
        self.sleep_again_if_drained(now, out);
        self.release_if_closing(now);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        if self.keepalive_deadline().is_some_and(|d| d <= now) {
            if self.phase == Phase::Connected {
                tracing::debug!(peer = %self.peer, "MQTT-SN keep-alive expired");
                out.send(Packet::Disconnect(None));
            } else if matches!(self.phase, Phase::Asleep | Phase::Awake) {
                tracing::debug!(peer = %self.peer, "MQTT-SN client did not wake up in time; lost");
            }
            self.close_name = "keepalive_timeout";
            self.close(CloseReason::KeepAliveTimeout, out);
            return self.release_if_closing(now);
        }
        self.retry_due(now, out);
        self.release_if_closing(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let register = self.register.as_ref().map(|r| r.due);
        [self.keepalive_deadline(), self.retry_deadline, register]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_kick(&mut self, reason: KickReason, now: Instant, out: &mut Out) {
        if self.phase == Phase::Closing {
            return;
        }
        if reason == KickReason::ServerShutdown {
            self.will_cancelled = true;
        }
        if matches!(self.phase, Phase::Connected | Phase::Awake) {
            out.send(Packet::Disconnect(None));
        }
        self.close_name = reason.event_name();
        self.close(CloseReason::Kicked(reason), out);
        self.release_if_closing(now);
    }

    fn handle_closed(&mut self, now: Instant) {
        self.phase = Phase::Closing;
        self.release_session(now);
    }

    fn accepts_input(&self) -> bool {
        self.phase != Phase::Authenticating && self.held.is_none()
    }

    fn client_key(&self) -> Option<&str> {
        match self.phase {
            Phase::Connected | Phase::Asleep | Phase::Awake => self.client.as_ref().map(|c| &*c.client_id),
            _ => None,
        }
    }

    /// Only a sleeping or waking client moves (EMQX): a connected one from another address is
    /// a different connection taking the session over.
    fn accepts_rebind(&self) -> bool {
        matches!(self.phase, Phase::Asleep | Phase::Awake)
    }

    fn rebound(&mut self, addr: SocketAddr) {
        self.peer = addr;
    }
}

impl MqttSnChannel {
    fn release_if_closing(&mut self, now: Instant) {
        if self.phase == Phase::Closing {
            self.release_session(now);
        }
    }
}
