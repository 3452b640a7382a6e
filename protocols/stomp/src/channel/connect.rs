//! CONNECT/STOMP → CONNECTED, and DISCONNECT.

use std::time::{Duration, Instant};

use bytestring::ByteString;
use portico_core::auth::{AuthResult, ClientInfo, Verdict};
use portico_core::channel::CloseReason;
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
        // The client id is random, as in EMQX: STOMP has no client identifier.
        let client_id = ByteString::from(format!("{:016x}", rand::random::<u64>()));
        let client = ClientInfo {
            client_id,
            username: frame.header("login").map(ByteString::from),
            peer: self.peer,
            protocol: PROTOCOL,
            superuser: false,
            cert: None,
            acl: None,
        };
        let password = frame.header("passcode").map(|p| p.as_bytes().to_vec());
        let accepted = AcceptedConnect {
            client,
            version,
            heart_beat,
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
        } = accepted;
        match result {
            AuthResult::Allow { superuser, acl } => {
                client.superuser = superuser;
                client.acl = acl;
            }
            AuthResult::Deny(refusal) => {
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

        let opened = self.ctx.open_session(&client.client_id, true, 0, &self.conn, None);
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
        tracing::debug!(peer = %self.peer, client_id = %client.client_id, version = version.as_str(), "STOMP client connected");

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
            clean_start: true,
            expiry_interval_secs: 0,
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
        self.client = Some(client);
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
