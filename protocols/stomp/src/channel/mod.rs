//! The STOMP connection state machine (sans-I/O), one per connection, for 1.0, 1.1 and 1.2.
//!
//! # Layout
//! - this file: the [`StompChannel`] type, the frame dispatch, ERROR frames, heart-beats,
//!   kicks and close;
//! - `connect`: CONNECT/STOMP, authentication (possibly answered later) and DISCONNECT;
//! - `send`: SEND, the authorization of SEND and SUBSCRIBE (possibly answered later), and
//!   transactions (BEGIN, COMMIT, ABORT);
//! - `subscribe`: SUBSCRIBE, UNSUBSCRIBE, MESSAGE delivery, ACK and NACK;
//! - `resume`: a durable client's subscriptions and un-ACKed MESSAGEs taken up again;
//! - `durable`: the table of durable clients' STOMP subscriptions.
//!
//! # Model
//! A STOMP connection is a broker session. Its client id is random (as in EMQX) and the
//! session ends with the connection, unless the client names itself (a `client-id` header,
//! ActiveMQ's, or a `clientinfo_override.clientid` template): then the session outlives the
//! connection for `session_expiry_interval`, and a client that connects again with the same
//! id gets its subscriptions back and its un-ACKed MESSAGEs again, marked redelivered, with
//! what was published meanwhile. Each SUBSCRIBE becomes a session subscription that
//! carries a per-connection numeric subscription identifier, so a delivery names the STOMP
//! subscriptions it matched whatever the wildcards: messages are matched by filter, not by
//! EMQX's exact-topic lookup (`docs/conformance/stomp.md`). `auto` subscriptions are QoS 0;
//! `client` and `client-individual` ones are QoS 1, and their MESSAGEs stay in the session's
//! inflight window until ACKed, so that a NACK can redeliver them and a session that ends
//! gives shared-subscription messages to another member of the group.

mod connect;
mod durable;
mod resume;
mod send;
mod subscribe;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use portico_core::Ctx;
use portico_core::auth::{AuthzCache, ClientInfo};
use portico_core::channel::{Channel, CloseReason, ConnInfo, Outbox, StreamFrontend};
use portico_core::conn::{ConnHandle, KickReason};
use portico_core::ctx::FrontendInfo;
use portico_core::hooks::ClientRef;
use portico_core::message::now_millis;
use portico_core::metrics::Metrics;
use portico_core::session::{InflightState, Session};
use portico_core::sys::DisconnectedEvent;

use crate::codec::StompCodec;
use crate::error::DecodeError;
use crate::frame::{Command, Frame, Version};
use crate::settings::StompSettings;

pub use durable::DurableSubscriptions;

type Out = Outbox<Frame>;

/// The protocol name in events, `ClientInfo` and message origins (EMQX's gateway name).
pub const PROTOCOL: &str = "stomp";

/// The STOMP frontend: makes one [`StompChannel`] per accepted connection.
#[derive(Debug)]
pub struct StompFrontend {
    ctx: Ctx,
    settings: Arc<StompSettings>,
    durable: Arc<DurableSubscriptions>,
}

impl StompFrontend {
    /// A frontend on `broker` with `settings`, with a table of durable clients of its own.
    pub fn new(broker: &portico_core::Broker, settings: StompSettings) -> StompFrontend {
        StompFrontend::with_durable(broker, settings, DurableSubscriptions::load(broker))
    }

    /// A frontend on `broker` with `settings` (one per listener) sharing `durable` with the
    /// gateway's other listeners, so that a client may come back through any of them.
    pub fn with_durable(
        broker: &portico_core::Broker,
        settings: StompSettings,
        durable: Arc<DurableSubscriptions>,
    ) -> StompFrontend {
        let ctx = broker.ctx(FrontendInfo {
            name: PROTOCOL,
            mountpoint: ByteString::from(settings.mountpoint.clone()),
            authn: settings.enable_authn,
        });
        StompFrontend {
            ctx,
            settings: Arc::new(settings),
            durable,
        }
    }
}

impl StreamFrontend for StompFrontend {
    type Channel = StompChannel;

    fn name(&self) -> &'static str {
        PROTOCOL
    }

    fn new_connection(&self, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> (StompChannel, StompCodec) {
        let codec = StompCodec::new(self.settings.limits);
        (
            StompChannel::new(
                self.ctx.clone(),
                self.settings.clone(),
                self.durable.clone(),
                conn,
                info,
                now,
            ),
            codec,
        )
    }
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for CONNECT.
    Connecting,
    /// CONNECT received; authentication has not answered yet.
    Authenticating,
    /// CONNECTED sent.
    Connected,
    /// A close has been queued; input is ignored.
    Closing,
}

/// One STOMP connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct StompChannel {
    ctx: Ctx,
    settings: Arc<StompSettings>,
    durable: Arc<DurableSubscriptions>,
    /// The client named itself and its session outlives the connection: its subscriptions
    /// are kept in `durable`.
    persistent: bool,
    conn: Arc<ConnHandle>,
    peer: SocketAddr,
    sockport: u16,
    phase: Phase,
    version: Version,
    /// Deadline for CONNECT to arrive.
    connect_deadline: Option<Instant>,
    client: Option<ClientInfo>,
    session: Option<Arc<Session>>,
    /// Silence tolerated from the client: twice the agreed interval. [STOMP 1.2 §Heart-beating]
    recv_timeout: Option<Duration>,
    /// How often we must send something: the agreed server-to-client interval.
    send_interval: Option<Duration>,
    last_recv: Instant,
    last_sent: Instant,
    subscriptions: Vec<subscribe::Subscription>,
    /// The numeric identifier of the next subscription (its key in deliveries).
    next_subscription_key: u32,
    /// MESSAGEs of client-ack subscriptions not yet ACKed, in send order.
    unacked: std::collections::VecDeque<subscribe::Unacked>,
    /// The `message-id` (and `ack`) of the next MESSAGE.
    next_message_id: u64,
    transactions: Vec<send::Transaction>,
    /// A frame waiting for an authentication or authorization answer. Boxed: usually absent.
    waiting: Option<Box<send::Waiting>>,
    /// The answer that came for the held frame, used when it is replayed.
    answered: Option<send::Answered>,
    authz_cache: Option<Box<AuthzCache>>,
    connected_at_ms: u64,
    /// Why the connection is closing, in EMQX's words (for the disconnected event).
    close_name: Option<&'static str>,
    /// `mountpoint` with this client's placeholders filled in (at CONNECT).
    mountpoint: String,
}

impl StompChannel {
    /// A channel for a connection accepted from `info.peer` at `now`.
    pub fn new(
        ctx: Ctx,
        settings: Arc<StompSettings>,
        durable: Arc<DurableSubscriptions>,
        conn: Arc<ConnHandle>,
        info: ConnInfo,
        now: Instant,
    ) -> Self {
        StompChannel {
            connect_deadline: Some(now + settings.idle_timeout),
            ctx,
            settings,
            durable,
            persistent: false,
            conn,
            peer: info.peer,
            sockport: info.local.port(),
            phase: Phase::Connecting,
            version: Version::V1_0,
            client: None,
            session: None,
            recv_timeout: None,
            send_interval: None,
            last_recv: now,
            last_sent: now,
            subscriptions: Vec::new(),
            next_subscription_key: 1,
            unacked: std::collections::VecDeque::new(),
            next_message_id: 1,
            transactions: Vec::new(),
            waiting: None,
            answered: None,
            authz_cache: None,
            mountpoint: String::new(),
            connected_at_ms: 0,
            close_name: None,
        }
    }

    /// The negotiated version (1.0 until CONNECT).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The bound session, once connected.
    pub fn session(&self) -> Option<&Arc<Session>> {
        self.session.as_ref()
    }

    /// The client id, once connected.
    /// The client as hook events name it (empty before CONNECT: no event fires then).
    fn client_ref(&self) -> ClientRef {
        ClientRef {
            client_id: self.client.as_ref().map(|c| c.client_id.clone()).unwrap_or_default(),
            username: self.client.as_ref().and_then(|c| c.username.clone()),
        }
    }

    pub fn client_id(&self) -> Option<&str> {
        self.client.as_ref().map(|c| &*c.client_id)
    }

    /// Queues `frame` and notes that we were not silent.
    fn send(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        self.last_sent = now;
        out.send(frame);
    }

    /// Sends RECEIPT when the frame asked for one.
    fn receipt(&mut self, frame: &Frame, now: Instant, out: &mut Out) {
        if let Some(receipt) = frame.header("receipt") {
            let receipt = Frame::new(Command::Receipt).with("receipt-id", receipt);
            self.send(receipt, now, out);
        }
    }

    /// Sends ERROR (`message` header, `content-type: text/plain`, `receipt-id` when the failed
    /// frame asked for a receipt, and `body` explaining), then closes: the server must close
    /// after an ERROR. [STOMP 1.2 §ERROR]
    /// ERROR "Not authorized" for a SEND or SUBSCRIBE to `destination` the ACL denies, then
    /// close.
    fn not_authorized(&mut self, destination: &str, failed: &Frame, now: Instant, out: &mut Out) {
        let why = format!("Insufficient permissions for {destination}");
        self.error(
            "Not authorized",
            why,
            Some(failed),
            CloseReason::NotAuthorized,
            now,
            out,
        );
    }

    fn error(
        &mut self,
        message: &str,
        body: impl Into<String>,
        failed: Option<&Frame>,
        reason: CloseReason,
        now: Instant,
        out: &mut Out,
    ) {
        let body = body.into();
        tracing::debug!(peer = %self.peer, client_id = ?self.client_id(), message, %body, "STOMP error");
        let mut frame = Frame::new(Command::Error)
            .with("message", message)
            .with("content-type", "text/plain");
        if let Some(receipt) = failed.and_then(|f| f.header("receipt"))
            && self.version.can_carry("receipt-id", receipt)
        {
            frame = frame.with("receipt-id", receipt);
        }
        let mut body = body.into_bytes();
        body.push(b'\n');
        self.send(frame.with_body(body), now, out);
        self.close(reason, out);
    }

    /// An ERROR for a protocol violation by the client.
    fn violation(&mut self, message: &str, body: impl Into<String>, failed: &Frame, now: Instant, out: &mut Out) {
        let body = body.into();
        self.error(
            message,
            body.clone(),
            Some(failed),
            CloseReason::ProtocolViolation(body),
            now,
            out,
        );
    }

    fn close(&mut self, reason: CloseReason, out: &mut Out) {
        self.phase = Phase::Closing;
        self.close_name.get_or_insert(match &reason {
            CloseReason::ClientDisconnect => "normal",
            CloseReason::ProtocolViolation(_) => "protocol_error",
            CloseReason::NotAuthorized => "not_authorized",
            CloseReason::KeepAliveTimeout => "heartbeat_timeout",
            CloseReason::Kicked(KickReason::TakenOver) => "takenover",
            CloseReason::Kicked(KickReason::Discarded) => "discarded",
            CloseReason::Kicked(KickReason::Administrative) => "kicked",
            CloseReason::Kicked(KickReason::ServerShutdown) => "shutdown",
        });
        out.close(reason);
    }

    /// Unbinds the session as soon as the channel decided to close. A durable client's session
    /// stays with its un-ACKed MESSAGEs for the next connection. Otherwise un-ACKed MESSAGEs
    /// of shared subscriptions go to another member of their group (the core's redispatch);
    /// those of ordinary subscriptions end with the subscription, as with an MQTT clean
    /// session, and are counted as dropped. Runs once.
    fn release_session(&mut self, now: Instant) {
        let Some(session) = self.session.take() else { return };
        let lost = if self.persistent {
            0
        } else {
            session
                .lock()
                .inflight
                .iter()
                .filter(|e| matches!(&e.state, InflightState::AwaitingAck(d) if d.shared.is_none()))
                .count()
        };
        self.ctx
            .metrics()
            .messages_dropped
            .fetch_add(lost as u64, std::sync::atomic::Ordering::Relaxed);
        self.unacked.clear();
        self.transactions.clear();
        if let Some(client) = &self.client {
            let at = now_millis();
            self.ctx.sys_disconnected(&DisconnectedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: PROTOCOL,
                peer: Some(self.peer.ip()),
                sockport: self.sockport,
                proto_name: "STOMP".to_owned(),
                proto_ver: proto_ver(self.version),
                reason: self.close_name.unwrap_or("tcp_closed").to_owned(),
                connected_at_ms: self.connected_at_ms,
                disconnected_at_ms: at,
                ts_ms: at,
            });
        }
        self.ctx
            .close_session(&session, self.conn.id(), self.client.as_ref(), None, now);
    }

    fn release_if_closing(&mut self, now: Instant) {
        if self.phase == Phase::Closing {
            self.release_session(now);
        }
    }

    /// When the client has been silent too long.
    fn recv_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting | Phase::Authenticating => self.connect_deadline,
            Phase::Connected => self.recv_timeout.map(|t| self.last_recv + t),
            Phase::Closing => None,
        }
    }

    /// When we must send a heart-beat unless something else goes out first.
    fn send_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connected => self.send_interval.map(|t| self.last_sent + t),
            _ => None,
        }
    }

    fn handle_connected(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        match frame.command {
            Command::Send => self.handle_send(frame, now, out),
            Command::Subscribe => self.handle_subscribe(frame, now, out),
            Command::Unsubscribe => self.handle_unsubscribe(frame, now, out),
            Command::Ack => self.handle_ack(frame, false, now, out),
            Command::Nack if self.version >= Version::V1_1 => self.handle_ack(frame, true, now, out),
            Command::Begin => self.handle_begin(frame, now, out),
            Command::Commit => self.handle_commit(frame, now, out),
            Command::Abort => self.handle_abort(frame, now, out),
            Command::Disconnect => self.handle_disconnect(frame, now, out),
            Command::Connect | Command::Stomp => self.violation(
                "Already connected",
                "a second CONNECT on this connection",
                &frame,
                now,
                out,
            ),
            Command::HeartBeat => {}
            other => {
                let why = format!(
                    "{} is not a frame a client sends (STOMP {})",
                    other.as_str(),
                    self.version.as_str()
                );
                self.violation("Unexpected frame", why, &frame, now, out)
            }
        }
    }
}

/// The version as the `proto_ver` of events: 10, 11 or 12 (the field is numeric).
fn proto_ver(version: Version) -> u8 {
    match version {
        Version::V1_0 => 10,
        Version::V1_1 => 11,
        Version::V1_2 => 12,
    }
}

impl Channel for StompChannel {
    type Codec = StompCodec;

    fn handle_in(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        self.last_recv = now;
        match self.phase {
            Phase::Closing | Phase::Authenticating => {}
            Phase::Connecting => match frame.command {
                Command::Connect | Command::Stomp => self.handle_connect(frame, now, out),
                Command::HeartBeat => {}
                Command::Disconnect => self.close(CloseReason::ClientDisconnect, out),
                other => {
                    let why = format!("{} before CONNECT", other.as_str());
                    self.error(
                        "Not connected",
                        why.clone(),
                        Some(&frame),
                        CloseReason::ProtocolViolation(why),
                        now,
                        out,
                    )
                }
            },
            Phase::Connected => self.handle_connected(frame, now, out),
        }
        self.release_if_closing(now);
    }

    fn handle_decode_error(&mut self, error: DecodeError, now: Instant, out: &mut Out) {
        Metrics::inc(&self.ctx.metrics().packets_malformed);
        if self.phase == Phase::Closing {
            return;
        }
        let why = error.to_string();
        self.error(
            "Frame error",
            why.clone(),
            None,
            CloseReason::ProtocolViolation(why),
            now,
            out,
        );
        self.release_if_closing(now);
    }

    fn handle_deliver(&mut self, now: Instant, out: &mut Out) {
        if self.phase == Phase::Closing {
            // A frame still held for an answer is not replayed after a kick or an error.
            self.waiting = None;
            return;
        }
        if self.conn.take_clear_authz_cache() {
            self.authz_cache = None;
        }
        if self.waiting.is_some() {
            self.resume_waiting(now, out);
        }
        if self.phase == Phase::Connected {
            self.deliver_queued(now, out);
        }
        self.release_if_closing(now);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        if self.recv_deadline().is_some_and(|d| d <= now) {
            if self.phase == Phase::Connected {
                let why = "no frame or heart-beat within twice the agreed interval";
                self.error("Heart-beat timeout", why, None, CloseReason::KeepAliveTimeout, now, out);
            } else {
                tracing::debug!(peer = %self.peer, "no CONNECT within idle_timeout");
                self.close(CloseReason::KeepAliveTimeout, out);
            }
            return self.release_if_closing(now);
        }
        if self.send_deadline().is_some_and(|d| d <= now) {
            self.send(Frame::heart_beat(), now, out);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.recv_deadline(), self.send_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_kick(&mut self, reason: KickReason, now: Instant, out: &mut Out) {
        if self.phase == Phase::Closing {
            return;
        }
        let message = match reason {
            KickReason::Administrative => "Kicked out",
            KickReason::ServerShutdown => "Server shutting down",
            KickReason::TakenOver | KickReason::Discarded => "Session taken over",
        };
        self.error(
            message,
            format!("the connection was ended by the server: {message}"),
            None,
            CloseReason::Kicked(reason),
            now,
            out,
        );
        self.release_if_closing(now);
    }

    fn handle_closed(&mut self, now: Instant) {
        self.phase = Phase::Closing;
        self.release_session(now);
    }

    fn accepts_input(&self) -> bool {
        self.waiting.is_none()
    }
}
