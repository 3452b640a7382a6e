//! The MQTT connection state machine (sans-I/O), one per connection, for 3.1, 3.1.1 and 5.0.
//!
//! # Layout
//! - this file: the [`MqttChannel`] type, CONNECT, keep-alive, kicks, DISCONNECT and close;
//! - `publish`: PUBLISH in both directions and the QoS 1/2 acknowledgement flows;
//! - `subscribe`: SUBSCRIBE and UNSUBSCRIBE.

mod publish;
mod subscribe;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use portico_core::Ctx;
use portico_core::auth::{AuthResult, ClientInfo, Refusal};
use portico_core::broker::Will;
use portico_core::channel::{Channel, CloseReason, Outbox, StreamFrontend};
use portico_core::conn::{ConnHandle, KickReason};
use portico_core::ctx::FrontendInfo;
use portico_core::metrics::Metrics;
use portico_core::session::Session;

use crate::codec::MqttCodec;
use crate::error::DecodeError;
use crate::packet::{ConnAck, ConnAckProperties, Connect, Disconnect, LastWill, Packet, ProtocolVersion, QoS};
use crate::reason::ReasonCode;
use crate::settings::MqttSettings;

type Out = Outbox<Packet>;

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for CONNECT.
    Connecting,
    /// CONNACK sent.
    Connected,
    /// A close has been queued; input is ignored.
    Closing,
}

/// The MQTT frontend: makes one [`MqttChannel`] per accepted connection.
#[derive(Debug)]
pub struct MqttFrontend {
    ctx: Ctx,
    settings: Arc<MqttSettings>,
}

impl MqttFrontend {
    /// A frontend on `broker` with `settings` (one per listener: mountpoints differ).
    pub fn new(broker: &portico_core::Broker, settings: MqttSettings) -> MqttFrontend {
        let ctx = broker.ctx(FrontendInfo {
            name: "mqtt",
            mountpoint: ByteString::from(settings.mountpoint.clone()),
        });
        MqttFrontend {
            ctx,
            settings: Arc::new(settings),
        }
    }
}

impl StreamFrontend for MqttFrontend {
    type Channel = MqttChannel;

    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn new_connection(&self, conn: Arc<ConnHandle>, peer: SocketAddr, now: Instant) -> (MqttChannel, MqttCodec) {
        let codec = MqttCodec::new(self.settings.max_packet_size);
        (
            MqttChannel::new(self.ctx.clone(), self.settings.clone(), conn, peer, now),
            codec,
        )
    }
}

/// One MQTT connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct MqttChannel {
    ctx: Ctx,
    settings: Arc<MqttSettings>,
    conn: Arc<ConnHandle>,
    peer: SocketAddr,
    phase: Phase,
    /// Deadline for CONNECT to arrive.
    connect_deadline: Option<Instant>,
    version: ProtocolVersion,
    client: Option<ClientInfo>,
    session: Option<Arc<Session>>,
    /// Boxed: most clients have none, and an idle connection should not carry its size.
    will: Option<Box<Will>>,
    /// The will is not published: normal DISCONNECT, or our own shutdown.
    will_cancelled: bool,
    /// Silence tolerated before the connection is dropped (keep-alive × multiplier).
    keepalive_timeout: Option<Duration>,
    last_packet_at: Instant,
    /// Unacknowledged outgoing QoS 1/2 messages allowed at once.
    inflight_window: usize,
    /// Largest packet the client accepts (5.0 Maximum Packet Size).
    client_max_packet_size: u32,
    /// Client-to-server topic aliases (5.0).
    topic_aliases: HashMap<u16, ByteString>,
    /// Bytes of topic names held by `topic_aliases`.
    topic_alias_bytes: usize,
    /// When the oldest unacknowledged message is due for a resend (3.x only).
    retry_deadline: Option<Instant>,
    /// CONNECT carried Session Expiry Interval 0 (DISCONNECT may not raise it: [MQTT-3.14.2-2]).
    connect_expiry_zero: bool,
}

impl MqttChannel {
    /// A channel for a connection accepted from `peer` at `now`.
    pub fn new(ctx: Ctx, settings: Arc<MqttSettings>, conn: Arc<ConnHandle>, peer: SocketAddr, now: Instant) -> Self {
        let connect_deadline = settings.idle_timeout.map(|t| now + t);
        MqttChannel {
            ctx,
            settings,
            conn,
            peer,
            phase: Phase::Connecting,
            connect_deadline,
            version: ProtocolVersion::V3_1_1,
            client: None,
            session: None,
            will: None,
            will_cancelled: false,
            keepalive_timeout: None,
            last_packet_at: now,
            inflight_window: 32,
            client_max_packet_size: u32::MAX,
            topic_aliases: HashMap::new(),
            topic_alias_bytes: 0,
            retry_deadline: None,
            connect_expiry_zero: true,
        }
    }

    /// The negotiated protocol version (3.1.1 until CONNECT).
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The bound session, once connected.
    pub fn session(&self) -> Option<&Arc<Session>> {
        self.session.as_ref()
    }

    /// Ends the connection for a protocol violation: 5.0 clients get a DISCONNECT with
    /// `reason` first [MQTT-4.13.1-1], 3.x clients just see the connection close.
    fn violation(&mut self, reason: ReasonCode, why: impl Into<String>, out: &mut Out) {
        let why = why.into();
        tracing::debug!(peer = %self.peer, client_id = ?self.client.as_ref().map(|c| &c.client_id), ?reason, %why, "closing connection");
        if self.version.is_v5() && self.phase == Phase::Connected {
            out.send(Packet::Disconnect(Disconnect::new(reason)));
        }
        self.close(CloseReason::ProtocolViolation(why), out);
    }

    fn close(&mut self, reason: CloseReason, out: &mut Out) {
        self.phase = Phase::Closing;
        out.close(reason);
    }

    /// Refuses a CONNECT with `reason` (mapped to a 3.x return code when needed) and closes.
    fn refuse_connect(&mut self, reason: ReasonCode, why: &str, out: &mut Out) {
        tracing::debug!(peer = %self.peer, ?reason, why, "CONNECT refused");
        out.send(Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: reason,
            properties: ConnAckProperties::default(),
        }));
        let close = if matches!(
            reason,
            ReasonCode::BadUserNameOrPassword | ReasonCode::NotAuthorized | ReasonCode::Banned
        ) {
            CloseReason::NotAuthorized
        } else {
            CloseReason::ProtocolViolation(why.to_string())
        };
        self.close(close, out);
    }

    fn handle_connect(&mut self, connect: Connect, now: Instant, out: &mut Out) {
        let Connect {
            protocol,
            clean_start,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        } = connect;
        self.version = protocol;
        let v5 = protocol.is_v5();

        // Client identifier. [MQTT-3.1.3-6..8]
        let mut client_id = client_id;
        if self.settings.use_username_as_clientid
            && let Some(name) = &username
            && !name.is_empty()
        {
            client_id = name.clone();
        }
        let mut assigned = None;
        if client_id.is_empty() {
            if protocol == ProtocolVersion::V3_1 || (protocol == ProtocolVersion::V3_1_1 && !clean_start) {
                // 3.1 requires 1..23 characters; 3.1.1 allows empty ids only with a clean
                // session. [MQTT-3.1.3-8]
                return self.refuse_connect(ReasonCode::ClientIdentifierNotValid, "empty client id", out);
            }
            let generated = ByteString::from(format!("portico-{:016x}", rand::random::<u64>()));
            if v5 {
                assigned = Some(generated.clone());
            }
            client_id = generated;
        }
        if client_id.len() > self.settings.max_clientid_len {
            return self.refuse_connect(ReasonCode::ClientIdentifierNotValid, "client id too long", out);
        }

        // 5.0 enhanced authentication is not offered yet. [MQTT-4.12.0-1]
        if properties.authentication_method.is_some() {
            return self.refuse_connect(
                ReasonCode::BadAuthenticationMethod,
                "authentication method not supported",
                out,
            );
        }

        // Will. [MQTT-3.1.2-9..15]
        let will = match will {
            None => None,
            Some(will) => match self.make_will(&client_id, will) {
                Ok(will) => Some(will),
                Err((reason, why)) => return self.refuse_connect(reason, why, out),
            },
        };

        let client = ClientInfo {
            client_id: client_id.clone(),
            username,
            peer: self.peer,
            protocol: "mqtt",
        };
        match self.ctx.authenticate(&client, password.as_deref()) {
            AuthResult::Allow { .. } => {}
            AuthResult::Deny(refusal) => {
                let reason = match refusal {
                    Refusal::BadCredentials => ReasonCode::BadUserNameOrPassword,
                    Refusal::NotAuthorized => ReasonCode::NotAuthorized,
                    Refusal::Banned => ReasonCode::Banned,
                };
                return self.refuse_connect(reason, "authentication refused", out);
            }
        }

        let expiry = if v5 {
            properties.session_expiry_interval.unwrap_or(0)
        } else if clean_start {
            0
        } else {
            self.settings.session_expiry_interval
        };
        self.connect_expiry_zero = expiry == 0;
        // The window is `mqtt.max_inflight`, narrowed by a 5.0 client's Receive Maximum: a
        // client announcing 65,535 must not make the broker hold that many unacknowledged
        // messages for it.
        let configured = usize::from(self.settings.max_inflight.max(1));
        self.inflight_window = match properties.receive_maximum {
            Some(receive_maximum) if v5 => configured.min(usize::from(receive_maximum)),
            _ => configured,
        };
        self.client_max_packet_size = properties.maximum_packet_size.unwrap_or(u32::MAX);

        // Keep alive: the server's value wins for 5.0 clients when configured. [MQTT-3.2.2-21]
        let server_keepalive = if v5 { self.settings.server_keepalive } else { None };
        let keep_alive = server_keepalive.unwrap_or(keep_alive);
        self.keepalive_timeout = (keep_alive > 0)
            .then(|| Duration::from_secs_f64(f64::from(keep_alive) * self.settings.keepalive_multiplier));

        let opened = self.ctx.open_session(&client_id, clean_start, expiry, &self.conn);
        self.session = Some(opened.session);
        self.client = Some(client);
        self.will = will.map(Box::new);
        self.phase = Phase::Connected;
        self.connect_deadline = None;
        self.last_packet_at = now;

        let mut props = ConnAckProperties::default();
        if v5 {
            props.assigned_client_identifier = assigned;
            props.server_keep_alive = server_keepalive;
            props.topic_alias_maximum = Some(self.settings.max_topic_alias);
            props.receive_maximum = Some(u16::try_from(self.settings.max_awaiting_rel).unwrap_or(u16::MAX).max(1));
            props.maximum_packet_size = Some(self.settings.max_packet_size);
            if !self.settings.retain_available {
                props.retain_available = Some(false);
            }
            if self.settings.max_qos_allowed < QoS::ExactlyOnce {
                props.maximum_qos = Some(self.settings.max_qos_allowed);
            }
            if !self.settings.wildcard_subscription {
                props.wildcard_subscription_available = Some(false);
            }
            if !self.settings.shared_subscription {
                props.shared_subscription_available = Some(false);
            }
        }
        // [MQTT-3.2.2-2] Session Present is 0 whenever the client asked for a clean start.
        out.send(Packet::ConnAck(ConnAck {
            session_present: opened.present,
            reason_code: ReasonCode::Success,
            properties: props,
        }));
        tracing::debug!(peer = %self.peer, %client_id, version = ?protocol, present = opened.present, "client connected");

        // [MQTT-4.4.0-1] resend what the resumed session left unacknowledged, then go on with
        // its queue.
        if opened.present {
            self.resend_inflight(now, out);
        }
        self.handle_deliver(now, out);
    }

    /// Builds the will message of a CONNECT, or the reason to refuse it.
    fn make_will(&self, client_id: &ByteString, will: LastWill) -> Result<Will, (ReasonCode, &'static str)> {
        if will.qos > self.settings.max_qos_allowed {
            return Err((ReasonCode::QoSNotSupported, "will QoS above max_qos_allowed"));
        }
        if will.retain && !self.settings.retain_available {
            return Err((
                ReasonCode::RetainNotSupported,
                "retained will but retain_available is false",
            ));
        }
        let topic = self
            .mount(&will.topic)
            .ok_or((ReasonCode::TopicNameInvalid, "invalid will topic"))?;
        let props = will.properties;
        let mut message = portico_core::Message::new(
            self.ctx.node_id(),
            topic,
            will.payload,
            will.qos,
            will.retain,
            portico_core::message::Origin {
                client_id: client_id.clone(),
                protocol: "mqtt",
            },
        );
        message.properties = portico_core::MessageProperties {
            payload_format_indicator: props.payload_format_indicator,
            message_expiry_interval: props.message_expiry_interval,
            content_type: props.content_type,
            response_topic: props.response_topic,
            correlation_data: props.correlation_data,
            user_properties: props.user_properties,
        };
        Ok(Will {
            message,
            delay: props.will_delay_interval.unwrap_or(0),
        })
    }

    fn handle_disconnect(&mut self, disconnect: Disconnect, out: &mut Out) {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            // [MQTT-3.14.2-2] a session created with expiry 0 cannot be extended at DISCONNECT.
            if self.connect_expiry_zero && expiry != 0 {
                return self.violation(
                    ReasonCode::ProtocolError,
                    "DISCONNECT raised Session Expiry Interval from 0",
                    out,
                );
            }
            if let Some(session) = &self.session {
                session.lock().expiry_interval = expiry;
            }
        }
        // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; 0x04 asks for it.
        if disconnect.reason_code != ReasonCode::DisconnectWithWillMessage {
            self.will_cancelled = true;
        }
        self.close(CloseReason::ClientDisconnect, out);
    }

    /// The deadline of keep-alive (or of CONNECT, before it arrived).
    fn keepalive_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting => self.connect_deadline,
            Phase::Connected => self.keepalive_timeout.map(|t| self.last_packet_at + t),
            Phase::Closing => None,
        }
    }

    /// The client as authentication saw it (set once connected).
    fn client(&self) -> Option<&ClientInfo> {
        self.client.as_ref()
    }
}

impl Channel for MqttChannel {
    type Codec = MqttCodec;

    fn handle_in(&mut self, packet: Packet, now: Instant, out: &mut Out) {
        self.last_packet_at = now;
        match self.phase {
            Phase::Closing => {}
            Phase::Connecting => match packet {
                Packet::Connect(connect) => self.handle_connect(*connect, now, out),
                // [MQTT-3.1.0-1] the codec refuses anything before CONNECT; keep the rule here
                // too so that the channel never runs unauthenticated.
                other => self.violation(
                    ReasonCode::ProtocolError,
                    format!("{} before CONNECT", other.name()),
                    out,
                ),
            },
            Phase::Connected => match packet {
                Packet::Publish(publish) => self.handle_publish(publish, now, out),
                Packet::PubAck(ack) => self.handle_puback(ack, now, out),
                Packet::PubRec(rec) => self.handle_pubrec(rec, now, out),
                Packet::PubRel(rel) => self.handle_pubrel(rel, out),
                Packet::PubComp(comp) => self.handle_pubcomp(comp, now, out),
                Packet::Subscribe(subscribe) => self.handle_subscribe(subscribe, out),
                Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(unsubscribe, out),
                Packet::PingReq => out.send(Packet::PingResp),
                Packet::Disconnect(disconnect) => self.handle_disconnect(disconnect, out),
                Packet::Auth(_) => {
                    // No authentication method was agreed at CONNECT. [MQTT-4.12.0-2]
                    self.violation(ReasonCode::ProtocolError, "AUTH without an authentication method", out)
                }
                Packet::Connect(_) => self.violation(ReasonCode::ProtocolError, "second CONNECT", out),
                other => self.violation(
                    ReasonCode::ProtocolError,
                    format!("{} is not sent by clients", other.name()),
                    out,
                ),
            },
        }
    }

    fn handle_decode_error(&mut self, error: DecodeError, _now: Instant, out: &mut Out) {
        Metrics::inc(&self.ctx.metrics().packets_malformed);
        let reason = error.reason_code();
        if self.phase == Phase::Connecting && reason == ReasonCode::UnsupportedProtocolVersion {
            // [MQTT-3.1.2-2] answer an unknown protocol level with return code 1 (the 3.1.1
            // form: the client's version is unknown) and close.
            return self.refuse_connect(reason, &error.to_string(), out);
        }
        self.violation(reason, error.to_string(), out);
    }

    fn handle_deliver(&mut self, now: Instant, out: &mut Out) {
        if self.phase == Phase::Connected {
            self.deliver_queued(now, out);
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        if self.keepalive_deadline().is_some_and(|d| d <= now) {
            if self.phase == Phase::Connecting {
                tracing::debug!(peer = %self.peer, "no CONNECT within idle_timeout");
                return self.close(CloseReason::KeepAliveTimeout, out);
            }
            // [MQTT-3.1.2-24] silence beyond 1.5 × keep alive: drop the connection, will due.
            if self.version.is_v5() {
                out.send(Packet::Disconnect(Disconnect::new(ReasonCode::KeepAliveTimeout)));
            }
            return self.close(CloseReason::KeepAliveTimeout, out);
        }
        if self.retry_deadline.is_some_and(|d| d <= now) {
            self.retry_due(now, out);
        }
        self.expire_awaiting_rel(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.keepalive_deadline(), self.retry_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_kick(&mut self, reason: KickReason, _now: Instant, out: &mut Out) {
        if self.phase == Phase::Closing {
            return;
        }
        let code = match reason {
            KickReason::TakenOver | KickReason::Discarded => ReasonCode::SessionTakenOver,
            KickReason::Administrative => ReasonCode::AdministrativeAction,
            KickReason::ServerShutdown => {
                // Our own shutdown is not the client's failure: no will.
                self.will_cancelled = true;
                ReasonCode::ServerShuttingDown
            }
        };
        if self.version.is_v5() && self.phase == Phase::Connected {
            out.send(Packet::Disconnect(Disconnect::new(code)));
        }
        self.close(CloseReason::Kicked(reason), out);
    }

    fn handle_closed(&mut self, now: Instant) {
        self.phase = Phase::Closing;
        let Some(session) = self.session.take() else { return };
        let will = if self.will_cancelled {
            None
        } else {
            self.will.take().map(|w| *w)
        };
        let will = will.filter(|w| {
            self.client().is_none_or(|c| {
                self.ctx
                    .authorize(c, portico_core::auth::Action::Publish, w.message.topic.as_str())
            })
        });
        self.ctx.close_session(&session, self.conn.id(), will, now);
    }
}
