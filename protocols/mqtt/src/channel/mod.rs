//! The MQTT connection state machine (sans-I/O), one per connection, for 3.1, 3.1.1 and 5.0.
//!
//! # Layout
//! - this file: the [`MqttChannel`] type, CONNECT, keep-alive, kicks, DISCONNECT and close;
//! - `publish`: PUBLISH in both directions and the QoS 1/2 acknowledgement flows;
//! - `subscribe`: SUBSCRIBE and UNSUBSCRIBE.

mod alias;
mod connect;
mod durable;
mod publish;
mod subscribe;
#[cfg(test)]
mod tests;
mod verdict;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use portico_core::Ctx;
use portico_core::auth::ClientInfo;
use portico_core::broker::Will;
use portico_core::channel::{Channel, CloseReason, ConnInfo, Outbox, PeerCert, StreamFrontend};
use portico_core::conn::{ConnHandle, KickReason};
use portico_core::ctx::FrontendInfo;
use portico_core::hooks::{ClientRef, ConnectInfo};
use portico_core::message::now_millis;
use portico_core::metrics::Metrics;
use portico_core::session::Session;
use portico_core::sys::DisconnectedEvent;

use crate::codec::MqttCodec;
use crate::error::DecodeError;
use crate::packet::{Disconnect, Packet, ProtocolVersion};
use crate::reason::ReasonCode;
use crate::settings::MqttSettings;

type Out = Outbox<Packet>;

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for CONNECT.
    Connecting,
    /// CONNECT received; an enhanced-authentication exchange (AUTH) is under way.
    Authenticating,
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
            authn: settings.enable_authn,
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

    fn new_connection(&self, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> (MqttChannel, MqttCodec) {
        let codec = MqttCodec::new(self.settings.max_packet_size);
        (
            MqttChannel::new(self.ctx.clone(), self.settings.clone(), conn, info, now),
            codec,
        )
    }
}

/// Why a connection closed, in EMQX's words (`$SYS` disconnected events). One byte rather than
/// a `&'static str`: every idle connection carries the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseName {
    Normal,
    ProtocolError,
    NotAuthorized,
    KeepaliveTimeout,
    TakenOver,
    Discarded,
    Kicked,
    Shutdown,
}

impl CloseName {
    fn as_str(self) -> &'static str {
        match self {
            CloseName::Normal => "normal",
            CloseName::ProtocolError => "protocol_error",
            CloseName::NotAuthorized => "not_authorized",
            CloseName::KeepaliveTimeout => "keepalive_timeout",
            CloseName::TakenOver => "takenover",
            CloseName::Discarded => "discarded",
            CloseName::Kicked => "kicked",
            CloseName::Shutdown => "shutdown",
        }
    }
}

/// One MQTT connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct MqttChannel {
    ctx: Ctx,
    settings: Arc<MqttSettings>,
    conn: Arc<ConnHandle>,
    peer: SocketAddr,
    /// Our port (EMQX `sockport` in events).
    sockport: u16,
    /// The client's TLS certificate, if it sent one.
    peer_cert: Option<Arc<PeerCert>>,
    phase: Phase,
    /// Deadline for CONNECT to arrive.
    connect_deadline: Option<Instant>,
    version: ProtocolVersion,
    client: Option<ClientInfo>,
    /// The listener's mountpoint with this client's placeholders filled in, when it has any.
    client_mountpoint: Option<Box<str>>,
    session: Option<Arc<Session>>,
    /// Boxed: most clients have none, and an idle connection should not carry its size.
    will: Option<Box<Will>>,
    /// The will is not published: normal DISCONNECT, or our own shutdown.
    will_cancelled: bool,
    /// Silence tolerated before the connection is dropped (keep-alive × multiplier).
    keepalive_timeout: Option<Duration>,
    last_packet_at: Instant,
    /// Unacknowledged outgoing QoS 1/2 messages allowed at once.
    inflight_window: u16,
    /// Largest packet the client accepts (5.0 Maximum Packet Size).
    client_max_packet_size: u32,
    /// Client-to-server topic aliases (5.0), boxed and created on first use: most clients
    /// use none, and an idle connection should not carry the map's size.
    incoming_aliases: Option<Box<alias::IncomingAliases>>,
    /// Server-to-client topic aliases (5.0), boxed: most clients allow none.
    outgoing_aliases: Option<Box<alias::OutgoingAliases>>,
    /// When the oldest unacknowledged message is due for a resend (3.x only).
    retry_deadline: Option<Instant>,
    /// Enhanced authentication (5.0 AUTH), when the client chose a method.
    auth: Option<Box<connect::AuthState>>,
    /// When CONNACK was sent (milliseconds since the Unix epoch), for events.
    connected_at_ms: u64,
    /// What the CONNECT said, kept from `client.connect` to `client.connack` while a listener
    /// wants them (see [`portico_core::hooks`]).
    hook_connect: Option<Arc<ConnectInfo>>,
    /// Why the connection is closing, in EMQX's words (`normal`, `keepalive_timeout`, ...).
    close_reason: Option<CloseName>,
    /// CONNECT carried Session Expiry Interval 0 (DISCONNECT may not raise it: [MQTT-3.14.2-2]).
    connect_expiry_zero: bool,
    /// Packets waiting for the durable store (see `durable.rs`). Boxed on purpose: usually
    /// none, and the box keeps an idle connection 24 bytes smaller than a bare `VecDeque`.
    /// Cached authorization results (`authorization.cache`), created on the first check.
    authz_cache: Option<Box<portico_core::auth::AuthzCache>>,
    #[allow(clippy::box_collection)]
    held: Option<Box<std::collections::VecDeque<(portico_core::store::Ticket, Packet)>>>,
    /// A CONNECT or packet waiting for an authentication or authorization answer, with the
    /// answers so far (see `verdict.rs`). Boxed: usually absent.
    waiting: Option<Box<verdict::Waiting>>,
}

impl MqttChannel {
    /// A channel for a connection accepted from `peer` at `now`.
    pub fn new(ctx: Ctx, settings: Arc<MqttSettings>, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> Self {
        let connect_deadline = settings.idle_timeout.map(|t| now + t);
        MqttChannel {
            ctx,
            settings,
            conn,
            peer: info.peer,
            sockport: info.local.port(),
            // Kept for `peer_cert_as_*` and the backends' `${cert_common_name}`/`${cert_subject}`.
            peer_cert: info.peer_cert,
            phase: Phase::Connecting,
            connect_deadline,
            version: ProtocolVersion::V3_1_1,
            client: None,
            client_mountpoint: None,
            session: None,
            will: None,
            will_cancelled: false,
            keepalive_timeout: None,
            last_packet_at: now,
            inflight_window: 32,
            client_max_packet_size: u32::MAX,
            incoming_aliases: None,
            outgoing_aliases: None,
            retry_deadline: None,
            connect_expiry_zero: true,
            connected_at_ms: 0,
            hook_connect: None,
            close_reason: None,
            auth: None,
            held: None,
            authz_cache: None,
            waiting: None,
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
            // A reason string is allowed on DISCONNECT whatever Request Problem Information
            // says (5.0 §3.1.2.11.7); it tells the client's developer what went wrong.
            let mut disconnect = Disconnect::new(reason);
            disconnect.properties.reason_string = Some(ByteString::from(why.as_str()));
            out.send(Packet::Disconnect(disconnect));
        }
        self.close(CloseReason::ProtocolViolation(why), out);
    }

    /// Authorization denied something and `deny_action = disconnect`: 5.0 clients get
    /// DISCONNECT 0x87 first.
    fn deny_and_disconnect(&mut self, why: String, out: &mut Out) {
        tracing::debug!(peer = %self.peer, client_id = ?self.client.as_ref().map(|c| &c.client_id), %why, "not authorized; disconnecting");
        if self.version.is_v5() && self.phase == Phase::Connected {
            let mut disconnect = Disconnect::new(ReasonCode::NotAuthorized);
            disconnect.properties.reason_string = Some(ByteString::from(why));
            out.send(Packet::Disconnect(disconnect));
        }
        self.close(CloseReason::NotAuthorized, out);
    }

    fn close(&mut self, reason: CloseReason, out: &mut Out) {
        self.phase = Phase::Closing;
        self.close_reason.get_or_insert(match &reason {
            CloseReason::ClientDisconnect => CloseName::Normal,
            CloseReason::ProtocolViolation(_) => CloseName::ProtocolError,
            CloseReason::NotAuthorized => CloseName::NotAuthorized,
            CloseReason::KeepAliveTimeout => CloseName::KeepaliveTimeout,
            CloseReason::Kicked(KickReason::TakenOver) => CloseName::TakenOver,
            CloseReason::Kicked(KickReason::Discarded) => CloseName::Discarded,
            CloseReason::Kicked(KickReason::Administrative) => CloseName::Kicked,
            CloseReason::Kicked(KickReason::ServerShutdown) => CloseName::Shutdown,
        });
        out.close(reason);
    }

    /// The deadline of keep-alive (or of CONNECT, before it arrived).
    fn keepalive_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting | Phase::Authenticating => self.connect_deadline,
            Phase::Connected => self.keepalive_timeout.map(|t| self.last_packet_at + t),
            Phase::Closing => None,
        }
    }

    /// The client as authentication saw it (set once connected).
    fn client(&self) -> Option<&ClientInfo> {
        self.client.as_ref()
    }
}

impl MqttChannel {
    /// Gives the session back to the broker (publishing the will if one is due) as soon as the
    /// channel has decided to close, not when the socket is finally gone: a client that
    /// reconnects right after its DISCONNECT must find the session already ended (expiry 0) or
    /// unbound. Runs once; later calls do nothing.
    fn release_session(&mut self, now: Instant) {
        let Some(session) = self.session.take() else { return };
        if let Some(client) = &self.client {
            let at = now_millis();
            self.ctx.sys_disconnected(&DisconnectedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: "mqtt",
                peer: Some(self.peer.ip()),
                sockport: self.sockport,
                proto_name: proto_name(self.version).to_string(),
                proto_ver: self.version as u8,
                reason: self.close_reason.map_or("tcp_closed", CloseName::as_str).to_string(),
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
        // Authorized by the broker when it is due.
        self.ctx
            .close_session(&session, self.conn.id(), self.client.as_ref(), will, now);
    }

    /// Releases the session if the last input made the channel close.
    fn release_if_closing(&mut self, now: Instant) {
        if self.phase == Phase::Closing {
            self.release_session(now);
        }
    }
}

impl MqttChannel {
    /// The connected client as hook events name it.
    fn client_ref(&self) -> Option<ClientRef> {
        self.client.as_ref().map(|client| ClientRef {
            client_id: client.client_id.clone(),
            username: client.username.clone(),
        })
    }
}

/// The protocol name a version's CONNECT carries.
fn proto_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V3_1 => "MQIsdp",
        ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
    }
}

impl Channel for MqttChannel {
    type Codec = MqttCodec;

    fn handle_in(&mut self, packet: Packet, now: Instant, out: &mut Out) {
        self.last_packet_at = now;
        match self.phase {
            Phase::Closing => {}
            Phase::Authenticating => match packet {
                Packet::Auth(auth) => self.handle_auth(auth, now, out),
                Packet::Disconnect(_) => self.close(CloseReason::ClientDisconnect, out),
                other => self.violation(
                    ReasonCode::ProtocolError,
                    format!("{} during authentication", other.name()),
                    out,
                ),
            },
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
                Packet::Subscribe(subscribe) => self.handle_subscribe(subscribe, now, out),
                Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(unsubscribe, out),
                Packet::PingReq => out.send(Packet::PingResp),
                Packet::Disconnect(disconnect) => self.handle_disconnect(disconnect, out),
                Packet::Auth(auth) => self.handle_auth(auth, now, out),
                Packet::Connect(_) => self.violation(ReasonCode::ProtocolError, "second CONNECT", out),
                other => self.violation(
                    ReasonCode::ProtocolError,
                    format!("{} is not sent by clients", other.name()),
                    out,
                ),
            },
        }
        self.release_if_closing(now);
    }

    fn handle_decode_error(&mut self, error: DecodeError, now: Instant, out: &mut Out) {
        Metrics::inc(&self.ctx.metrics().packets_malformed);
        let reason = error.reason_code();
        if self.phase == Phase::Connecting && reason == ReasonCode::UnsupportedProtocolVersion {
            // [MQTT-3.1.2-2] answer an unknown protocol level with return code 1 (the 3.1.1
            // form: the client's version is unknown) and close.
            return self.refuse_connect(reason, &error.to_string(), out);
        }
        self.violation(reason, error.to_string(), out);
        self.release_if_closing(now);
    }

    fn handle_deliver(&mut self, now: Instant, out: &mut Out) {
        if self.conn.take_clear_authz_cache() {
            self.authz_cache = None;
        }
        if self.is_waiting() {
            self.resume_waiting(now, out);
        }
        if self.phase == Phase::Connected {
            self.release_durable(out);
            self.deliver_queued(now, out);
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        if self.keepalive_deadline().is_some_and(|d| d <= now) {
            if self.phase != Phase::Connected {
                tracing::debug!(peer = %self.peer, "not connected within idle_timeout");
            } else if self.version.is_v5() {
                // [MQTT-3.1.2-24] silence beyond 1.5 × keep alive: drop the connection, will due.
                out.send(Packet::Disconnect(Disconnect::new(ReasonCode::KeepAliveTimeout)));
            }
            self.close(CloseReason::KeepAliveTimeout, out);
            return self.release_if_closing(now);
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

    fn handle_kick(&mut self, reason: KickReason, now: Instant, out: &mut Out) {
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
        self.release_if_closing(now);
    }

    fn handle_closed(&mut self, now: Instant) {
        self.phase = Phase::Closing;
        self.release_session(now);
    }

    fn accepts_input(&self) -> bool {
        !self.is_waiting()
    }
}
