//! The CoAP gateway channel (sans-I/O), one per peer address: EMQX 5's pub/sub API over CoAP
//! (`gateway-semantics.md` §2; `docs/conformance/coap.md` lists every rule and difference).
//!
//! # Layout
//! - this file: the frontend, the channel, request dispatch, authentication (per request in
//!   connectionless mode), the heartbeat, responses and close;
//! - `connection`: connection mode (`/mqtt/connection`: create, heartbeat, delete; tokens);
//! - `pubsub`: `/ps/{topic}` (publish, observe, unobserve) and notifications;
//! - `blockwise`: Block1 uploads and Block2 downloads.
//!
//! The message layer (duplicates, our CON retransmissions) is [`crate::exchange`].

mod blockwise;
mod connection;
mod pubsub;
mod requests;

pub use requests::{
    DeviceRequest, DeviceRequestError, DeviceRequests, DeviceResponse, MAX_DEVICE_REQUESTS, Reply as DeviceReply,
};
/// Encodes `frame` for a datagram driver (the CoAP and LwM2M channels send CoAP messages).
pub fn encode_frame(frame: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
    codec::encode(frame, dst).map_err(|_| EncodeError {
        frame: "CoAP message",
        why: "an option value is longer than CoAP allows",
    })
}

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico_core::auth::{Action, AuthResult, ClientInfo, Pending, Verdict};
use portico_core::channel::{CloseReason, ConnInfo, EncodeError, Outbox};
use portico_core::conn::{ConnHandle, KickReason};
use portico_core::ctx::FrontendInfo;
use portico_core::datagram::{DatagramChannel, DatagramFrontend};
use portico_core::message::now_millis;
use portico_core::metrics::{DeliveryDrop, Metrics};
use portico_core::session::Session;
use portico_core::store::Ticket;
use portico_core::sys::{ConnectedEvent, DisconnectedEvent};
use portico_core::{Broker, Ctx};

use crate::block::Block;
use crate::codec::{self, Rejection};
use crate::exchange::{Incoming, MessageLayer, Settled};
use crate::message::{Code, Message, Type};
use crate::settings::CoapSettings;
use crate::validate::validate_request;

type Out = Outbox<Message>;

/// The protocol name in events and `ClientInfo`.
pub const PROTOCOL: &str = "coap";

/// The CoAP frontend: one channel per peer address.
#[derive(Debug)]
pub struct CoapFrontend {
    ctx: Ctx,
    settings: Arc<CoapSettings>,
    tokens: Arc<connection::Tokens>,
    device_requests: Arc<DeviceRequests>,
}

impl CoapFrontend {
    /// Shares `requests` (one table for every listener of the gateway) as the table through
    /// which the server's requests reach this frontend's connected clients.
    pub fn with_device_requests(mut self, requests: Arc<DeviceRequests>) -> CoapFrontend {
        self.device_requests = requests;
        self
    }

    /// A frontend on `broker` with `settings`.
    pub fn new(broker: &Broker, settings: CoapSettings) -> CoapFrontend {
        let ctx = broker.ctx(FrontendInfo {
            name: PROTOCOL,
            mountpoint: ByteString::from(settings.mountpoint.clone()),
            authn: settings.enable_authn,
        });
        CoapFrontend {
            ctx,
            settings: Arc::new(settings),
            tokens: Arc::default(),
            device_requests: Arc::default(),
        }
    }
}

impl DatagramFrontend for CoapFrontend {
    type Channel = CoapChannel;

    fn name(&self) -> &'static str {
        PROTOCOL
    }

    /// Only a CoAP 1 request opens a channel: junk, responses and pings from unknown addresses
    /// cost nothing.
    fn admits(&self, datagram: &[u8]) -> bool {
        match datagram {
            [first, code, ..] if datagram.len() >= codec::HEADER_LEN => {
                let version = first >> 6;
                let class = code >> 5;
                version == 1 && class == 0 && *code != 0
            }
            _ => false,
        }
    }

    /// A request with the client id and token of a connected client (connection mode, see
    /// `connection`): that client's channel moves to the request's address.
    fn rebind_key(&self, datagram: &[u8]) -> Option<String> {
        if self.tokens.is_empty() || !self.admits(datagram) {
            return None;
        }
        let request = codec::decode(Bytes::copy_from_slice(datagram)).ok()?;
        let query = Query::of(&request);
        let client_id = query.credentials.client_id?;
        self.tokens
            .matches(&client_id, query.token.as_deref()?)
            .then_some(client_id)
    }

    fn new_peer(&self, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> CoapChannel {
        let mut channel = CoapChannel::new(self.ctx.clone(), self.settings.clone(), conn, info, now);
        channel.tokens = self.tokens.clone();
        channel.device_requests = self.device_requests.clone();
        channel
    }
}

/// What a client authenticated with (query `clientid`, `username`, `password`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Credentials {
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The queries EMQX's CoAP gateway reads, short names expanded (`c`, `t`, `u`, `p`, `q`, `r`).
#[derive(Debug, Default)]
struct Query {
    credentials: Credentials,
    token: Option<String>,
    qos: Option<String>,
    retain: Option<String>,
    expiry: Option<String>,
    /// Observe: MQTT's No Local (`nl`, 0 or 1) and Retain Handling (`rh`, 0..2).
    nl: Option<String>,
    rh: Option<String>,
}

impl Query {
    fn of(request: &Message) -> Query {
        let mut q = Query::default();
        // The last of a repeated key wins (EMQX).
        for (key, value) in request.options.query_pairs() {
            let value = Some(value.to_owned());
            match key {
                "clientid" | "c" => q.credentials.client_id = value,
                "username" | "u" => q.credentials.username = value,
                "password" | "p" => q.credentials.password = value,
                "token" | "t" => q.token = value,
                "qos" | "q" => q.qos = value,
                "retain" | "r" => q.retain = value,
                "expiry" => q.expiry = value,
                "nl" => q.nl = value,
                "rh" => q.rh = value,
                _ => {}
            }
        }
        q
    }
}

/// A request waiting for an authentication or authorization answer; replayed when it comes.
#[derive(Debug)]
struct Held {
    request: Message,
    /// The Block1 option to echo in the response of an assembled upload.
    block1_echo: Option<Block>,
    wait: Wait,
}

#[derive(Debug)]
enum Wait {
    Authn(Pending<AuthResult>, Credentials),
    Authz(Pending<bool>, Action, String),
}

/// An answer that came, for the replay of the held request.
#[derive(Debug)]
enum Answer {
    Authn(Credentials, AuthResult),
    Authz(Action, String, bool),
}

/// One peer's CoAP state.
#[derive(Debug)]
pub struct CoapChannel {
    ctx: Ctx,
    settings: Arc<CoapSettings>,
    conn: Arc<ConnHandle>,
    peer: SocketAddr,
    sockport: u16,
    layer: MessageLayer,
    closing: bool,
    client: Option<ClientInfo>,
    /// What the client authenticated with: a connectionless request with other credentials
    /// is authenticated again.
    credentials: Option<Credentials>,
    session: Option<Arc<Session>>,
    /// Connection mode: the token `POST /mqtt/connection` returned.
    token: Option<String>,
    /// The frontend's tokens of connected clients (this one's while it is connected).
    tokens: Arc<connection::Tokens>,
    /// The gateway's table of server requests for connected clients (see `requests`).
    device_requests: Arc<DeviceRequests>,
    /// Our requests to this client waiting for its response.
    awaiting: requests::Awaiting,
    observations: pubsub::Observations,
    transfers: blockwise::Transfers,
    held: Option<Box<Held>>,
    answer: Option<Answer>,
    /// The Block1 option the response to the current request echoes.
    block1_echo: Option<Block>,
    last_heard: Instant,
    /// The time of the call being served (set by every entry point).
    now: Instant,
    connected_at_ms: u64,
    close_name: &'static str,
    /// Responses waiting for the durable store (see [`CoapChannel::send_durable`]).
    held_responses: VecDeque<(Ticket, Message)>,
}

impl CoapChannel {
    fn new(ctx: Ctx, settings: Arc<CoapSettings>, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> Self {
        CoapChannel {
            layer: MessageLayer::new(&settings),
            peer: info.peer,
            sockport: info.local.port(),
            ctx,
            settings,
            conn,
            closing: false,
            client: None,
            credentials: None,
            session: None,
            token: None,
            tokens: Arc::default(),
            device_requests: Arc::default(),
            awaiting: requests::Awaiting::default(),
            observations: pubsub::Observations::default(),
            transfers: blockwise::Transfers::default(),
            held: None,
            answer: None,
            block1_echo: None,
            last_heard: now,
            now,
            connected_at_ms: 0,
            close_name: "normal",
            held_responses: VecDeque::new(),
        }
    }

    // ------------------------------------------------------------------ responses

    /// Answers `request`: a piggybacked ACK to a CON, a NON to a NON. Remembered for the
    /// request's duplicates; a body over `max_block_size` goes out in blocks.
    fn respond(&mut self, request: &Message, code: Code, payload: Bytes, out: &mut Out) {
        let response = self.response(request, code, payload);
        out.send(response);
    }

    /// As [`respond`](Self::respond), but sent only once everything this thread journalled is
    /// durable (a QoS 1/2 publish: the client is told its message is safe).
    fn respond_durable(&mut self, request: &Message, code: Code, out: &mut Out) {
        let response = self.response(request, code, Bytes::new());
        self.send_durable(response, out);
    }

    fn response(&mut self, request: &Message, code: Code, payload: Bytes) -> Message {
        let mut response = Message::response_to(request, code, self.layer.next_id());
        if let Some(block) = self.block1_echo.take() {
            response.options.set_block1(block);
        }
        self.set_body(&mut response, request, payload);
        if request.mtype == Type::Con {
            self.layer.record_response(request.message_id, &response);
        }
        response
    }

    /// A 4.xx/5.xx answer with a diagnostic payload (EMQX's texts).
    fn refuse(&mut self, request: &Message, code: Code, why: &str, out: &mut Out) {
        tracing::debug!(peer = %self.peer, %code, why, "CoAP request refused");
        self.respond(request, code, Bytes::copy_from_slice(why.as_bytes()), out);
    }

    fn send_durable(&mut self, response: Message, out: &mut Out) {
        let ticket = self.ctx.take_ticket();
        if self.held_responses.is_empty() && self.ctx.is_durable(ticket) {
            return out.send(response);
        }
        // Behind the responses already held, whatever its own ticket.
        let last = self.held_responses.back().map_or(Ticket::NONE, |(t, _)| *t);
        if ticket > last {
            self.ctx.notify_when_durable(ticket, &self.conn);
        }
        self.held_responses.push_back((ticket.max(last), response));
    }

    fn release_durable(&mut self, out: &mut Out) {
        while let Some((ticket, _)) = self.held_responses.front() {
            if !self.ctx.is_durable(*ticket) {
                return;
            }
            if let Some((_, response)) = self.held_responses.pop_front() {
                out.send(response);
            }
        }
    }

    // ------------------------------------------------------------------ requests

    fn handle_message(&mut self, message: Message, now: Instant, out: &mut Out) {
        // A response to a request of ours (the API's): piggybacked on an ACK, which also
        // settles the CON, or separate (CON or NON).
        let answered = self.answer_device_request(&message, out);
        if answered && message.mtype != Type::Ack {
            return;
        }
        match message.mtype {
            Type::Ack | Type::Rst => self.settle(&message, now, out),
            // A CoAP ping (an Empty CON) is answered with RST (RFC 7252 §4.3).
            _ if message.is_empty() && message.mtype == Type::Con => out.send(Message::reset_for(message.message_id)),
            _ if message.is_request() => match self.layer.check_request(&message, now) {
                Incoming::New => self.handle_request(message, now, out),
                Incoming::Duplicate(Some(response)) => out.send(response),
                Incoming::Duplicate(None) => {}
            },
            // We send no requests, so a response to one is not ours: reject a CON one.
            Type::Con => out.send(Message::reset_for(message.message_id)),
            Type::Non => {}
        }
    }

    fn settle(&mut self, message: &Message, now: Instant, out: &mut Out) {
        match self.layer.settle(message, now, out) {
            // A confirmable notification the client acknowledged (`messages.acked`).
            Settled::Acked(token) if self.observation_path(token).is_some() => self.ctx.count_acked(),
            Settled::Acked(_) | Settled::Unknown => {}
            // RFC 7641 §3.6: a RST to a notification ends that observation (EMQX keeps it).
            Settled::Reset(token) => self.end_observation_by_token(token, now, out),
        }
    }

    /// A new request (or a held one replayed with its answer).
    fn handle_request(&mut self, request: Message, now: Instant, out: &mut Out) {
        if let Err(error) = validate_request(&request) {
            let response = error.response_to(&request, self.layer.next_id());
            if request.mtype == Type::Con {
                self.layer.record_response(request.message_id, &response);
            }
            return out.send(response);
        }
        if request.options.proxy_uri().ok().flatten().is_some() {
            return self.refuse(&request, Code::PROXYING_NOT_SUPPORTED, "Proxying Not Supported", out);
        }
        let Some(request) = self.assemble_upload(request, now, out) else {
            return;
        };
        if self.serve_download(&request, now, out) {
            return;
        }
        let Ok(path) = request.uri_path_joined() else {
            return self.refuse(&request, Code::BAD_REQUEST, "Bad Request: path is not UTF-8", out);
        };
        let mut segments = path.split('/');
        match (segments.next(), segments.next(), segments.next()) {
            (Some("ps"), Some(_), _) => {
                let topic = path["ps/".len()..].to_owned();
                self.handle_pubsub(request, topic, now, out);
            }
            (Some("ps"), None, _) => self.refuse(&request, Code::BAD_REQUEST, "invalid topic", out),
            (Some("mqtt"), Some("connection"), None) => self.handle_connection(request, now, out),
            (Some(".well-known"), Some("core"), None) if request.code == Code::GET => {
                // EMQX 5 answers 4.00; RFC 6690 discovery costs nothing and helps tools.
                let mut response = Message::response_to(&request, Code::CONTENT, self.layer.next_id());
                response.options.set_content_format(crate::content_format::LINK_FORMAT);
                let response = response.with_payload(&b"</ps>;rt=\"core.ps\",</mqtt/connection>"[..]);
                if request.mtype == Type::Con {
                    self.layer.record_response(request.message_id, &response);
                }
                out.send(response);
            }
            _ => self.refuse(&request, Code::BAD_REQUEST, "Bad Request: unknown path", out),
        }
    }

    /// Authenticates the request's sender when needed: `Some(true)` when it may go on,
    /// `Some(false)` when it was answered with a refusal, `None` when it is held for the
    /// answer.
    fn authenticate(
        &mut self,
        request: &Message,
        credentials: Credentials,
        now: Instant,
        out: &mut Out,
    ) -> Option<bool> {
        if self.client.is_some() && self.credentials.as_ref() == Some(&credentials) {
            return Some(true);
        }
        let result = match self.answer.take() {
            Some(Answer::Authn(asked, result)) if asked == credentials => result,
            other => {
                self.answer = other;
                let client = self.client_info(&credentials);
                let password = credentials.password.clone();
                match self.ctx.authenticate(&client, password.as_deref().map(str::as_bytes)) {
                    Verdict::Ready(result) => result,
                    Verdict::Pending(pending) => {
                        pending.watch(&self.conn);
                        self.hold(request, Wait::Authn(pending, credentials));
                        return None;
                    }
                }
            }
        };
        match result {
            AuthResult::Allow { superuser, acl } => {
                let mut client = self.client_info(&credentials);
                client.superuser = superuser;
                client.acl = acl;
                self.credentials = Some(credentials);
                self.open_session(client, now);
                Some(true)
            }
            AuthResult::Deny(refusal) => {
                tracing::debug!(peer = %self.peer, ?refusal, "CoAP client not authenticated");
                if self.settings.connection_required {
                    self.refuse(request, Code::BAD_REQUEST, "Login Failed: not_authorized", out);
                } else {
                    self.respond(request, Code::UNAUTHORIZED, Bytes::new(), out);
                }
                Some(false)
            }
        }
    }

    /// The client id of this channel: the session's once there is one (it never changes),
    /// else the request's, else a random one.
    fn client_info(&self, credentials: &Credentials) -> ClientInfo {
        let client_id = match (&self.client, &credentials.client_id) {
            (Some(client), _) => client.client_id.clone(),
            (None, Some(id)) if !id.is_empty() => ByteString::from(id.clone()),
            (None, _) => ByteString::from(format!("coap-{:016x}", rand::random::<u64>())),
        };
        let username = credentials.username.clone().map(ByteString::from);
        ClientInfo::new(client_id, username, self.peer, PROTOCOL)
    }

    fn open_session(&mut self, client: ClientInfo, now: Instant) {
        if self.session.is_some() {
            // Authenticated again with other credentials: same session, new rights.
            self.client = Some(client);
            return;
        }
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
            proto_name: "CoAP".to_owned(),
            proto_ver: 1,
            keepalive: u16::try_from(self.settings.heartbeat.as_secs()).unwrap_or(u16::MAX),
            clean_start: true,
            expiry_interval_secs: 0,
            connected_at_ms: self.connected_at_ms,
            ts_ms: self.connected_at_ms,
        });
        self.client = Some(client);
    }

    /// Asks whether the client may `action` on `topic`: `Some(answer)` now, or `None` when
    /// the request is held until the answer comes.
    fn authorize(&mut self, request: &Message, action: Action, topic: &str) -> Option<bool> {
        match self.answer.take() {
            Some(Answer::Authz(a, t, allowed)) if a == action && t == topic => return Some(allowed),
            other => self.answer = other,
        }
        let client = self.client.as_ref()?;
        match self.ctx.authorize(client, action, topic) {
            Verdict::Ready(allowed) => Some(allowed),
            Verdict::Pending(pending) => {
                pending.watch(&self.conn);
                self.hold(request, Wait::Authz(pending, action, topic.to_owned()));
                None
            }
        }
    }

    fn hold(&mut self, request: &Message, wait: Wait) {
        self.held = Some(Box::new(Held {
            request: request.clone(),
            block1_echo: self.block1_echo.take(),
            wait,
        }));
    }

    /// Replays the held request once its answer is in.
    fn resume_held(&mut self, now: Instant, out: &mut Out) {
        let Some(held) = &self.held else { return };
        let answer = match &held.wait {
            Wait::Authn(pending, credentials) => {
                let Some(answer) = pending.poll(&self.conn) else { return };
                Answer::Authn(credentials.clone(), self.ctx.authentication_answered(answer))
            }
            Wait::Authz(pending, action, topic) => {
                let Some(answer) = pending.poll(&self.conn) else { return };
                let allowed = self.ctx.authorization_answered(answer, None, *action, topic, now);
                Answer::Authz(*action, topic.clone(), allowed)
            }
        };
        let Some(held) = self.held.take() else { return };
        self.answer = Some(answer);
        self.block1_echo = held.block1_echo;
        self.handle_request(held.request, now, out);
        // Answers are used once.
        self.answer = None;
    }

    // ------------------------------------------------------------------ liveness and close

    fn deadline(&self) -> Instant {
        match self.session {
            // EMQX: no packet for 1.5 × heartbeat and the client is gone.
            Some(_) => self.last_heard + self.settings.heartbeat.mul_f64(1.5),
            None => self.last_heard + self.settings.idle_timeout,
        }
    }

    /// Connection mode: a channel whose requests were all refused (no login, none pending)
    /// holds nothing worth keeping, so it ends after answering. Kept, it would catch the next
    /// request from its address — a client that logged in elsewhere and now sends from a port
    /// the OS handed out again — and refuse it instead of moving that client here.
    fn close_if_stranger(&mut self, out: &mut Out) {
        let stranger = self.settings.connection_required
            && self.client.is_none()
            && self.held.is_none()
            && !self.closing
            && self.transfers.next_expiry().is_none();
        if stranger {
            self.close(CloseReason::NotAuthorized, out);
        }
    }

    fn close(&mut self, reason: CloseReason, out: &mut Out) {
        self.closing = true;
        out.close(reason);
    }

    /// Gives the session back to the broker (its subscriptions end with it).
    fn release_session(&mut self, now: Instant) {
        if let (Some(token), Some(client)) = (&self.token, &self.client) {
            self.tokens.remove(&client.client_id, token);
            self.device_requests.unregister(&client.client_id, &self.conn);
        }
        let Some(session) = self.session.take() else { return };
        if let Some(client) = &self.client {
            let at = now_millis();
            self.ctx.sys_disconnected(&DisconnectedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: PROTOCOL,
                peer: Some(self.peer.ip()),
                sockport: self.sockport,
                proto_name: "CoAP".to_owned(),
                proto_ver: 1,
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

impl DatagramChannel for CoapChannel {
    type Frame = Message;

    fn encode(&self, frame: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_frame(frame, dst)
    }

    fn handle_datagram(&mut self, datagram: Bytes, now: Instant, out: &mut Out) {
        self.now = now;
        if self.closing {
            return;
        }
        match codec::decode(datagram) {
            Ok(message) => {
                self.last_heard = now;
                self.handle_message(message, now, out);
                self.close_if_stranger(out);
            }
            Err(error) => {
                Metrics::inc(&self.ctx.metrics().packets_malformed);
                tracing::debug!(peer = %self.peer, %error, "malformed CoAP datagram");
                if let (Rejection::Reset { .. }, Some(reset)) = (error.reply(), error.reset()) {
                    out.send(reset);
                }
            }
        }
        self.release_if_closing(now);
    }

    fn handle_deliver(&mut self, now: Instant, out: &mut Out) {
        self.now = now;
        // CoAP clients keep no authorization cache here: nothing to clear.
        let _ = self.conn.take_clear_authz_cache();
        self.release_durable(out);
        if self.held.is_some() {
            self.resume_held(now, out);
        }
        self.deliver_queued(now, out);
        self.send_device_requests(now, out);
        self.release_if_closing(now);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        self.now = now;
        if self.closing {
            return;
        }
        if self.deadline() <= now {
            tracing::debug!(peer = %self.peer, "CoAP client silent past its heartbeat; closing");
            self.close_name = "keepalive_timeout";
            self.close(CloseReason::KeepAliveTimeout, out);
            return self.release_if_closing(now);
        }
        if self.layer.on_timeout(now, out).is_some() {
            // A CON notification never acknowledged: the message is lost to this client, the
            // observation stays (EMQX); the heartbeat ends a client that is gone.
            self.ctx.count_dropped(DeliveryDrop::Other, 1);
        }
        self.transfers.expire(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closing {
            return None;
        }
        [
            Some(self.deadline()),
            self.layer.poll_timeout(),
            self.transfers.next_expiry(),
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
        self.close(CloseReason::Kicked(reason), out);
        self.release_if_closing(now);
    }

    fn handle_closed(&mut self, now: Instant) {
        self.closing = true;
        self.release_session(now);
    }

    fn accepts_input(&self) -> bool {
        self.held.is_none()
    }

    /// A connected client (connection mode): requests with its id and token from another
    /// address are its own (see `connection`).
    fn client_key(&self) -> Option<&str> {
        self.token.as_ref()?;
        self.client.as_ref().map(|c| &*c.client_id)
    }

    fn accepts_rebind(&self) -> bool {
        self.token.is_some() && !self.closing
    }

    fn rebound(&mut self, addr: SocketAddr) {
        tracing::debug!(old = %self.peer, new = %addr, "CoAP client moved to a new address");
        self.peer = addr;
        // Message ids are an endpoint's own: the new address's are no duplicates of the old's.
        self.layer.forget_requests();
    }
}
