//! CONNECT/STOMP → CONNECTED, and DISCONNECT.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use portico_core::auth::{AuthResult, ClientInfo, Verdict};
use portico_core::channel::CloseReason;
use portico_core::hooks::ConnectInfo;
use portico_core::message::now_millis;
use portico_core::sys::ConnectedEvent;

use super::send::{Held, Waiting};
use super::{Out, PROTOCOL, Phase, StompChannel, proto_ver};
use crate::frame::{Command, Frame, Version};

/// What the server says in CONNECTED's `server` header.
const SERVER: &str = concat!("Portico/", env!("CARGO_PKG_VERSION"));

/// A CONNECT that passed validation and waits for authentication.
#[derive(Debug)]
pub(super) struct AcceptedConnect {
    client: ClientInfo,
    version: Version,
    /// The client's `heart-beat` (cx, cy) in milliseconds.
    heart_beat: (u32, u32),
    /// The client id came from the client (it can come back to its session).
    named: bool,
    /// What `client.connect` reported, for `client.connack`.
    hook: Option<Arc<ConnectInfo>>,
}

impl StompChannel {
    pub(super) fn handle_connect(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        // [STOMP 1.2 §Protocol Negotiation] the highest common version; none → ERROR with the
        // versions we speak.
        let Some(version) = Version::negotiate(frame.header("accept-version")) else {
            let offered = frame.header("accept-version").unwrap_or_default().to_owned();
            let body = format!("Supported protocol versions are 1.0, 1.1 and 1.2; the client accepts {offered:?}");
            let error = Frame::new(Command::Error)
                .with("version", "1.0,1.1,1.2")
                .with("content-type", "text/plain")
                .with("message", "Unsupported protocol version")
                .with_body(format!("{body}\n"));
            self.send(error, now, out);
            return self.close(CloseReason::ProtocolViolation(body), out);
        };
        self.version = version;
        let heart_beat = match frame.header("heart-beat").map(parse_heart_beat) {
            None => (0, 0),
            Some(Some(hb)) => hb,
            Some(None) => {
                let why = format!(
                    "heart-beat must be two comma-separated numbers of milliseconds, found {:?}",
                    frame.header("heart-beat").unwrap_or_default()
                );
                return self.violation("Invalid heart-beat header", why, &frame, now, out);
            }
        };
        // EMQX's `clientinfo_override`: the credentials are templates over the headers
        // (`login` and `passcode` by default); the client id is random unless the client names
        // itself (ActiveMQ's `client-id` header) or the operator's template does.
        let named_id = if self.settings.clientid.is_empty() {
            frame.header("client-id").filter(|id| !id.is_empty()).map(str::to_owned)
        } else {
            self.settings.clientid.render(&frame)
        };
        if let Some(id) = &named_id
            && id.len() > self.settings.max_clientid_len
        {
            let why = format!(
                "client id of {} bytes; mqtt.max_clientid_len is {}",
                id.len(),
                self.settings.max_clientid_len
            );
            return self.violation("Invalid client-id", why, &frame, now, out);
        }
        let named = named_id.is_some();
        let client_id = ByteString::from(named_id.unwrap_or_else(|| format!("{:016x}", rand::random::<u64>())));
        let client = ClientInfo {
            client_id,
            username: self.settings.username.render(&frame).map(ByteString::from),
            peer: self.peer,
            protocol: PROTOCOL,
            superuser: false,
            cert: None,
            acl: None,
        };
        let password = self.settings.password.render(&frame).map(String::into_bytes);
        let hook = self.ctx.hook_connect(|| ConnectInfo {
            client_id: client.client_id.clone(),
            username: client.username.clone(),
            protocol: PROTOCOL,
            peer: Some(self.peer),
            proto_name: "STOMP",
            proto_ver: proto_ver(version),
            keepalive: u16::try_from(heart_beat.0 / 1000).unwrap_or(u16::MAX),
            clean_start: !named,
            ts_ms: now_millis(),
        });
        let accepted = AcceptedConnect {
            client,
            version,
            heart_beat,
            named,
            hook,
        };
        match self.ctx.authenticate(&accepted.client, password.as_deref()) {
            Verdict::Ready(result) => self.authenticated(accepted, result, now, out),
            Verdict::Pending(pending) => {
                // Input stops until the answer comes (`resume_waiting`).
                pending.watch(&self.conn);
                self.phase = Phase::Authenticating;
                self.waiting = Some(Box::new(Waiting {
                    held: Held::Connect(Box::new(accepted), pending),
                }));
            }
        }
    }

    /// Goes on with a CONNECT once authentication has answered.
    pub(super) fn authenticated(&mut self, accepted: AcceptedConnect, result: AuthResult, now: Instant, out: &mut Out) {
        let AcceptedConnect {
            mut client,
            version,
            heart_beat: (cx, cy),
            named,
            hook,
        } = accepted;
        match result {
            AuthResult::Allow { superuser, acl } => {
                client.superuser = superuser;
                client.acl = acl;
                self.ctx.hook_connack(hook, "success");
            }
            AuthResult::Deny(refusal) => {
                self.ctx.hook_connack(hook, refusal.connack_result());
                let body = format!("Login failed: {refusal:?}");
                return self.error("Login failed", body, None, CloseReason::NotAuthorized, now, out);
            }
        }
        // [STOMP 1.2 §Heart-beating] we agree to whatever the client offers, no more often than
        // `heartbeat_min`: we send every max(cy, min) and expect something every max(cx, min);
        // 0 stays "none" either way.
        let min = u32::try_from(self.settings.heartbeat_min.as_millis()).unwrap_or(u32::MAX);
        let sx = if cy == 0 { 0 } else { cy.max(min) };
        let sy = if cx == 0 { 0 } else { cx.max(min) };
        self.send_interval = (sx > 0).then(|| Duration::from_millis(u64::from(sx)));
        self.recv_timeout = (sy > 0).then(|| Duration::from_millis(2 * u64::from(sy)));

        // A client that named itself keeps its session for `session_expiry_interval`.
        let expiry = if named {
            self.settings.session_expiry_interval
        } else {
            0
        };
        self.persistent = expiry > 0;
        let opened = self
            .ctx
            .open_session(&client.client_id, !self.persistent, expiry, &self.conn, None);
        self.session = Some(opened.session);
        self.phase = Phase::Connected;
        self.connect_deadline = None;
        self.last_recv = now;
        let connected = Frame::new(Command::Connected)
            .with("version", version.as_str())
            .with("heart-beat", format!("{sx},{sy}"))
            .with("server", SERVER)
            .with("session", &*client.client_id);
        self.send(connected, now, out);
        tracing::debug!(peer = %self.peer, client_id = %client.client_id, version = version.as_str(), present = opened.present, "STOMP client connected");

        self.connected_at_ms = now_millis();
        self.ctx.sys_connected(&ConnectedEvent {
            client_id: client.client_id.to_string(),
            username: client.username.as_ref().map(|u| u.to_string()),
            protocol: PROTOCOL,
            peer: Some(self.peer.ip()),
            sockport: self.sockport,
            proto_name: "STOMP".to_owned(),
            proto_ver: proto_ver(version),
            keepalive: u16::try_from(sy / 1000).unwrap_or(u16::MAX),
            clean_start: !self.persistent,
            expiry_interval_secs: expiry,
            connected_at_ms: self.connected_at_ms,
            ts_ms: self.connected_at_ms,
        });
        // EMQX's placeholders; filled once, the client's identity does not change.
        self.mountpoint = self
            .settings
            .mountpoint
            .replace("${clientid}", &client.client_id)
            .replace("${username}", client.username.as_deref().unwrap_or(""))
            .replace("${peerhost}", &self.peer.ip().to_string());
        let client_id = client.client_id.clone();
        self.client = Some(client);
        if opened.present {
            self.resume(now, out);
        } else if named {
            // Whatever was kept belonged to a session that has expired.
            self.durable.remove(&client_id);
        }
    }

    pub(super) fn handle_disconnect(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        // [STOMP 1.2 §DISCONNECT] the receipt tells the client everything before it arrived.
        self.receipt(&frame, now, out);
        self.close(CloseReason::ClientDisconnect, out);
    }
}

/// `heart-beat: cx,cy` as two millisecond counts.
fn parse_heart_beat(value: &str) -> Option<(u32, u32)> {
    let (cx, cy) = value.split_once(',')?;
    Some((cx.trim().parse().ok()?, cy.trim().parse().ok()?))
}
