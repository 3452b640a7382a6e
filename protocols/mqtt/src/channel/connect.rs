//! CONNECT, MQTT 5 enhanced authentication (AUTH) and DISCONNECT.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use portico_core::Message;
use portico_core::auth::{AuthExchange, AuthResult, AuthStep, ClientInfo, Refusal, Verdict};
use portico_core::broker::Will;
use portico_core::channel::CloseReason;
use portico_core::hooks::{ConnectInfo, Event, EventKind};
use portico_core::message::{Origin, now_millis};
use portico_core::sys::ConnectedEvent;

use super::verdict::Held;
use super::{MqttChannel, Out, Phase, alias};
use crate::packet::{
    Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, Disconnect, LastWill, Packet, ProtocolVersion, QoS,
};
use crate::reason::ReasonCode;

/// A CONNECT that passed validation and waits for authentication to finish.
#[derive(Debug)]
pub(super) struct AcceptedConnect {
    connect: Connect,
    client: ClientInfo,
    /// The identifier we generated for an empty client id (sent back to 5.0 clients).
    assigned: Option<ByteString>,
    will: Option<Will>,
    /// The listener's mountpoint with this client's placeholders filled in, if it has any.
    mountpoint: Option<Box<str>>,
}

/// Enhanced-authentication state: the agreed method, and the exchange in progress (at CONNECT
/// or during re-authentication).
pub(super) struct AuthState {
    method: ByteString,
    exchange: Option<Box<dyn AuthExchange>>,
    /// The CONNECT waiting for the exchange to succeed; `None` once connected.
    pending: Option<AcceptedConnect>,
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthState")
            .field("method", &self.method)
            .field("in_progress", &self.exchange.is_some())
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

fn refusal_code(refusal: Refusal) -> ReasonCode {
    match refusal {
        Refusal::BadCredentials => ReasonCode::BadUserNameOrPassword,
        Refusal::NotAuthorized => ReasonCode::NotAuthorized,
        Refusal::Banned => ReasonCode::Banned,
        Refusal::Unavailable => ReasonCode::ServerUnavailable,
    }
}

impl MqttChannel {
    /// Refuses a CONNECT with `reason` (mapped to a 3.x return code when needed) and closes.
    pub(super) fn refuse_connect(&mut self, reason: ReasonCode, why: &str, out: &mut Out) {
        tracing::debug!(peer = %self.peer, ?reason, why, "CONNECT refused");
        self.hook_connack(connack_result(reason));
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

    /// Fires `client.connack` for the CONNECT that `client.connect` reported.
    fn hook_connack(&mut self, result: &'static str) {
        if let Some(info) = self.hook_connect.take() {
            self.ctx
                .hooks()
                .emit_with(EventKind::ClientConnack, || Event::ClientConnack { info, result });
        }
    }

    pub(super) fn handle_connect(&mut self, connect: Connect, now: Instant, out: &mut Out) {
        self.version = connect.protocol;
        let hooks = self.ctx.hooks();
        if hooks.wants(EventKind::ClientConnect) || hooks.wants(EventKind::ClientConnack) {
            let info = Arc::new(ConnectInfo {
                client_id: connect.client_id.clone(),
                username: connect.username.clone(),
                protocol: "mqtt",
                peer: Some(self.peer),
                proto_name: super::proto_name(connect.protocol),
                proto_ver: connect.protocol as u8,
                keepalive: connect.keep_alive,
                clean_start: connect.clean_start,
                ts_ms: now_millis(),
            });
            hooks.emit_with(EventKind::ClientConnect, || Event::ClientConnect(info.clone()));
            self.hook_connect = Some(info);
        }
        let accepted = match self.accept_connect(connect) {
            Ok(accepted) => accepted,
            Err((reason, why)) => return self.refuse_connect(reason, why, out),
        };

        // 5.0 enhanced authentication replaces user name / password authentication.
        // [MQTT-4.12.0-1]
        if let Some(method) = accepted.connect.properties.authentication_method.clone() {
            let Some(auth) = self.ctx.enhanced_auth(&method) else {
                return self.refuse_connect(
                    ReasonCode::BadAuthenticationMethod,
                    "unknown authentication method",
                    out,
                );
            };
            let mut exchange = auth.start(&accepted.client);
            let step = exchange.step(accepted.connect.properties.authentication_data.as_deref());
            self.auth = Some(Box::new(AuthState {
                method,
                exchange: Some(exchange),
                pending: Some(accepted),
            }));
            self.phase = Phase::Authenticating;
            return self.auth_step(step, now, out);
        }

        match self
            .ctx
            .authenticate(&accepted.client, accepted.connect.password.as_deref())
        {
            Verdict::Ready(result) => self.authenticated(accepted, result, now, out),
            // Input stops until the answer comes (see `verdict.rs`).
            Verdict::Pending(pending) => self.hold(Held::Connect(Box::new(accepted), pending)),
        }
    }

    /// Goes on with a CONNECT once authentication has answered.
    pub(super) fn authenticated(
        &mut self,
        mut accepted: AcceptedConnect,
        result: AuthResult,
        now: Instant,
        out: &mut Out,
    ) {
        match result {
            AuthResult::Allow { superuser, acl } => {
                accepted.client.superuser = superuser;
                accepted.client.acl = acl;
                self.complete_connect(accepted, None, now, out)
            }
            AuthResult::Deny(refusal) => self.refuse_connect(refusal_code(refusal), "authentication refused", out),
        }
    }

    /// Validates a CONNECT: client id, will. [MQTT-3.1.3-*], [MQTT-3.1.2-9..15]
    fn accept_connect(&self, mut connect: Connect) -> Result<AcceptedConnect, (ReasonCode, &'static str)> {
        let protocol = connect.protocol;
        let mut client_id = std::mem::take(&mut connect.client_id);
        // The certificate's values replace what CONNECT says (EMQX `peer_cert_as_*`); a client
        // without a certificate keeps its own. `use_username_as_clientid` then applies to the
        // resulting user name, as in EMQX.
        if let Some(cert) = &self.peer_cert {
            if let Some(name) = self.settings.peer_cert_as_username.and_then(|kind| cert.identity(kind)) {
                connect.username = Some(ByteString::from(name));
            }
            if let Some(id) = self.settings.peer_cert_as_clientid.and_then(|kind| cert.identity(kind)) {
                client_id = ByteString::from(id);
            }
        }
        if self.settings.use_username_as_clientid
            && let Some(name) = &connect.username
            && !name.is_empty()
        {
            client_id = name.clone();
        }
        let mut assigned = None;
        if client_id.is_empty() {
            if protocol == ProtocolVersion::V3_1 || (protocol == ProtocolVersion::V3_1_1 && !connect.clean_start) {
                // 3.1 requires 1..23 characters; 3.1.1 allows empty ids only with a clean
                // session. [MQTT-3.1.3-8]
                return Err((ReasonCode::ClientIdentifierNotValid, "empty client id"));
            }
            let generated = ByteString::from(format!("portico-{:016x}", rand::random::<u64>()));
            if protocol.is_v5() {
                assigned = Some(generated.clone());
            }
            client_id = generated;
        }
        if client_id.len() > self.settings.max_clientid_len {
            return Err((ReasonCode::ClientIdentifierNotValid, "client id too long"));
        }
        // The decoded strings are views into the CONNECT packet's buffer; copies let that
        // buffer (password, will, properties) go once CONNECT is handled, rather than live as
        // long as the session.
        let client_id = ByteString::from(&*client_id);
        let client = ClientInfo {
            client_id: client_id.clone(),
            username: connect.username.as_deref().map(ByteString::from),
            peer: self.peer,
            protocol: "mqtt",
            superuser: false,
            cert: self.peer_cert.clone(),
            acl: None,
        };
        let mountpoint = client_mountpoint(&self.settings.mountpoint, &client);
        let will = match connect.will.take() {
            None => None,
            Some(will) => {
                let mounted_under = mountpoint.as_deref().unwrap_or(&self.settings.mountpoint);
                Some(self.make_will(&client_id, will, mounted_under)?)
            }
        };
        connect.client_id = client_id;
        Ok(AcceptedConnect {
            connect,
            client,
            assigned,
            will,
            mountpoint,
        })
    }

    /// Handles an AUTH packet: the next round of the CONNECT exchange, or re-authentication.
    /// [MQTT-4.12.0-2..7]
    pub(super) fn handle_auth(&mut self, auth: Auth, now: Instant, out: &mut Out) {
        let Some(state) = self.auth.as_mut() else {
            // No authentication method was agreed at CONNECT. [MQTT-4.12.0-2]
            return self.violation(ReasonCode::ProtocolError, "AUTH without an authentication method", out);
        };
        if auth.properties.authentication_method.as_ref() != Some(&state.method) {
            // [MQTT-4.12.0-5] the method must not change.
            return self.violation(
                ReasonCode::ProtocolError,
                "AUTH with a different authentication method",
                out,
            );
        }
        let step = match (auth.reason_code, state.exchange.as_mut()) {
            (ReasonCode::ContinueAuthentication, Some(exchange)) => {
                exchange.step(auth.properties.authentication_data.as_deref())
            }
            (ReasonCode::ReAuthenticate, None) if self.phase == Phase::Connected => {
                let Some(method) = self.ctx.enhanced_auth(&state.method) else {
                    return self.violation(
                        ReasonCode::BadAuthenticationMethod,
                        "authentication method withdrawn",
                        out,
                    );
                };
                let Some(client) = self.client.as_ref() else { return };
                let mut exchange = method.start(client);
                let step = exchange.step(auth.properties.authentication_data.as_deref());
                state.exchange = Some(exchange);
                step
            }
            _ => {
                return self.violation(
                    ReasonCode::ProtocolError,
                    format!("unexpected AUTH reason {:?}", auth.reason_code),
                    out,
                );
            }
        };
        self.auth_step(step, now, out);
    }

    /// Carries out what the exchange decided.
    fn auth_step(&mut self, step: AuthStep, now: Instant, out: &mut Out) {
        let Some(state) = self.auth.as_mut() else { return };
        let method = state.method.clone();
        match step {
            AuthStep::Continue(data) => out.send(Packet::Auth(Auth {
                reason_code: ReasonCode::ContinueAuthentication,
                properties: AuthProperties {
                    authentication_method: Some(method),
                    authentication_data: data,
                    ..Default::default()
                },
            })),
            AuthStep::Success(data) => {
                let superuser = state.exchange.take().is_some_and(|e| e.superuser());
                match state.pending.take() {
                    Some(mut accepted) => {
                        accepted.client.superuser = superuser;
                        self.complete_connect(accepted, Some(data), now, out)
                    }
                    // Re-authentication succeeded. [MQTT-4.12.1-1]
                    None => out.send(Packet::Auth(Auth {
                        reason_code: ReasonCode::Success,
                        properties: AuthProperties {
                            authentication_method: Some(method),
                            authentication_data: data,
                            ..Default::default()
                        },
                    })),
                }
            }
            AuthStep::Failure(refusal) => {
                if state.pending.is_some() {
                    self.refuse_connect(refusal_code(refusal), "enhanced authentication failed", out);
                } else {
                    // [MQTT-4.12.1-2] failed re-authentication ends the connection.
                    self.violation(refusal_code(refusal), "re-authentication failed", out);
                }
            }
        }
    }

    /// Opens the session and answers CONNACK once the client is authenticated. `auth_data`
    /// is `Some` after enhanced authentication (its final data, if any).
    fn complete_connect(
        &mut self,
        accepted: AcceptedConnect,
        auth_data: Option<Option<bytes::Bytes>>,
        now: Instant,
        out: &mut Out,
    ) {
        let AcceptedConnect {
            connect,
            client,
            assigned,
            will,
            mountpoint,
        } = accepted;
        let Connect {
            protocol,
            clean_start,
            keep_alive,
            client_id,
            properties,
            ..
        } = connect;
        let v5 = protocol.is_v5();

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
        let configured = self.settings.max_inflight.max(1);
        self.inflight_window = match properties.receive_maximum {
            Some(receive_maximum) if v5 => configured.min(receive_maximum),
            _ => configured,
        };
        self.client_max_packet_size = properties.maximum_packet_size.unwrap_or(u32::MAX);
        self.outgoing_aliases = properties
            .topic_alias_maximum
            .filter(|&max| v5 && max > 0)
            .map(|max| Box::new(alias::OutgoingAliases::new(max)));

        // Keep alive: the server's value wins for 5.0 clients when configured. [MQTT-3.2.2-21]
        let server_keepalive = if v5 { self.settings.server_keepalive } else { None };
        let keep_alive = server_keepalive.unwrap_or(keep_alive);
        self.keepalive_timeout = (keep_alive > 0)
            .then(|| Duration::from_secs_f64(f64::from(keep_alive) * self.settings.keepalive_multiplier));

        let opened = self
            .ctx
            .open_session(&client_id, clean_start, expiry, &self.conn, will.as_ref());
        self.session = Some(opened.session);
        self.client_mountpoint = mountpoint;
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
            // 5.0 §3.1.2.11.6: Response Information only when asked for, and only if configured.
            if properties.request_response_information == Some(true) && !self.settings.response_information.is_empty() {
                props.response_information = Some(ByteString::from(self.settings.response_information.as_str()));
            }
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
            if let (Some(state), Some(data)) = (&self.auth, auth_data) {
                props.authentication_method = Some(state.method.clone());
                props.authentication_data = data;
            }
        }
        self.hook_connack("success");
        // [MQTT-3.2.2-2] Session Present is 0 whenever the client asked for a clean start.
        // Held until a persistent session's record is on disk (sync mode).
        self.send_durable(
            Packet::ConnAck(ConnAck {
                session_present: opened.present,
                reason_code: ReasonCode::Success,
                properties: props,
            }),
            out,
        );
        tracing::debug!(peer = %self.peer, %client_id, version = ?protocol, present = opened.present, "client connected");

        self.connected_at_ms = now_millis();
        if let Some(client) = &self.client {
            self.ctx.sys_connected(&ConnectedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: "mqtt",
                peer: Some(self.peer.ip()),
                sockport: self.sockport,
                proto_name: super::proto_name(protocol).to_string(),
                proto_ver: protocol as u8,
                keepalive: keep_alive,
                clean_start,
                expiry_interval_secs: expiry,
                connected_at_ms: self.connected_at_ms,
                ts_ms: self.connected_at_ms,
            });
        }
        self.auto_subscribe(now);

        // [MQTT-4.4.0-1] resend what the resumed session left unacknowledged, then go on with
        // its queue.
        if opened.present {
            self.resend_inflight(now, out);
        }
        self.deliver_queued(now, out);
    }

    /// Builds the will message of a CONNECT, or the reason to refuse it.
    fn make_will(
        &self,
        client_id: &ByteString,
        will: LastWill,
        mountpoint: &str,
    ) -> Result<Will, (ReasonCode, &'static str)> {
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
            .mount_under(mountpoint, &will.topic)
            .ok_or((ReasonCode::TopicNameInvalid, "invalid will topic"))?;
        let delay = will.properties.will_delay_interval.unwrap_or(0);
        let origin = Origin {
            client_id: client_id.clone(),
            protocol: "mqtt",
        };
        let mut message = Message::new(self.ctx.node_id(), topic, will.payload, will.qos, will.retain, origin);
        message.properties = will.properties.into();
        Ok(Will { message, delay })
    }

    pub(super) fn handle_disconnect(&mut self, disconnect: Disconnect, out: &mut Out) {
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
                self.ctx.set_session_expiry(session, expiry);
            }
        }
        // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; 0x04 asks for it.
        if disconnect.reason_code != ReasonCode::DisconnectWithWillMessage {
            self.will_cancelled = true;
        }
        self.close(CloseReason::ClientDisconnect, out);
    }
}

/// The listener's mountpoint with `${clientid}` and `${username}` filled in for this client
/// (EMQX `mountpoint` placeholders); `None` when the template has none, so the listener's own
/// string serves. A client without a username keeps `${username}` as written, as EMQX does.
fn client_mountpoint(template: &str, client: &ClientInfo) -> Option<Box<str>> {
    if !template.contains("${") {
        return None;
    }
    let mut mountpoint = template.replace("${clientid}", &client.client_id);
    if let Some(username) = &client.username {
        mountpoint = mountpoint.replace("${username}", username);
    }
    Some(mountpoint.into_boxed_str())
}

/// EMQX's name of a CONNACK reason code (`emqx_reason_codes:name/1`), the `conn_ack` of the
/// `client.connack` event.
fn connack_result(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::Success => "success",
        ReasonCode::MalformedPacket => "malformed_packet",
        ReasonCode::ProtocolError => "protocol_error",
        ReasonCode::ImplementationSpecificError => "implementation_specific_error",
        ReasonCode::UnsupportedProtocolVersion => "unsupported_protocol_version",
        ReasonCode::ClientIdentifierNotValid => "client_identifier_not_valid",
        ReasonCode::BadUserNameOrPassword => "bad_username_or_password",
        ReasonCode::NotAuthorized => "not_authorized",
        ReasonCode::ServerUnavailable => "server_unavailable",
        ReasonCode::ServerBusy => "server_busy",
        ReasonCode::Banned => "banned",
        ReasonCode::BadAuthenticationMethod => "bad_authentication_method",
        ReasonCode::TopicNameInvalid => "topic_name_invalid",
        ReasonCode::PacketTooLarge => "packet_too_large",
        ReasonCode::QuotaExceeded => "quota_exceeded",
        ReasonCode::PayloadFormatInvalid => "payload_format_invalid",
        ReasonCode::RetainNotSupported => "retain_not_supported",
        ReasonCode::QoSNotSupported => "qos_not_supported",
        ReasonCode::UseAnotherServer => "use_another_server",
        ReasonCode::ServerMoved => "server_moved",
        ReasonCode::ConnectionRateExceeded => "connection_rate_exceeded",
        _ => "unspecified_error",
    }
}
