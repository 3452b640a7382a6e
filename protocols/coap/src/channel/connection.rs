//! Connection mode (`connection_required = true`; EMQX's `/mqtt/connection`,
//! gateway-semantics §2.3): `POST` logs in and returns a token, `PUT` is a heartbeat, `DELETE`
//! ends the connection; every other request carries `clientid` and `token`.
//!
//! The token, not the address, names the connection: a request with a connected client's id
//! and token from another address moves that client's channel there ([`Tokens`], the
//! frontend's `rebind_key`). EMQX keys connection-mode channels by client id the same way; a
//! command-line client (a new source port per run, as in EMQX's own `coap-client` examples) or
//! a NAT rebinding needs it. A wrong token moves nothing: the request opens a channel of its
//! own and is refused there (4.01).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use portico_core::channel::CloseReason;

use super::{CoapChannel, Out, Query};
use crate::message::{Code, Message};

/// The tokens of one frontend's connected clients, by client id: what a request from an
/// unknown address must show to move a channel.
#[derive(Debug, Default)]
pub(super) struct Tokens(Mutex<HashMap<String, String>>);

impl Tokens {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `client_id` logged in with `token` (replacing a token of a connection it took over).
    pub(super) fn insert(&self, client_id: &str, token: &str) {
        self.map().insert(client_id.to_owned(), token.to_owned());
    }

    /// The connection of `client_id` with `token` ended (a newer one keeps its own token).
    pub(super) fn remove(&self, client_id: &str, token: &str) {
        let mut map = self.map();
        if map.get(client_id).is_some_and(|t| t == token) {
            map.remove(client_id);
        }
    }

    /// Whether `token` is the one `client_id` is connected with.
    pub(super) fn matches(&self, client_id: &str, token: &str) -> bool {
        self.map().get(client_id).is_some_and(|t| t == token)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// Whether a request may go on in connection mode, or how it was refused.
pub(super) enum TokenCheck {
    /// Connectionless mode, or the right client id and token.
    Pass,
    /// Answered with a refusal.
    Refused,
}

impl CoapChannel {
    pub(super) fn handle_connection(&mut self, request: Message, now: Instant, out: &mut Out) {
        let query = Query::of(&request);
        match request.code {
            Code::POST => self.connect(request, query, now, out),
            Code::PUT => {
                if let TokenCheck::Pass = self.check_token(&request, &query, out) {
                    // The heartbeat itself is the request: last_heard moved already.
                    self.respond(&request, Code::CHANGED, Bytes::new(), out);
                }
            }
            Code::DELETE => {
                // EMQX: a DELETE on a channel that never connected is answered 2.02 too.
                if self.client.is_some() {
                    let TokenCheck::Pass = self.check_token(&request, &query, out) else {
                        return;
                    };
                }
                self.respond(&request, Code::DELETED, Bytes::new(), out);
                self.close_name = "normal";
                self.close(CloseReason::ClientDisconnect, out);
            }
            _ => self.refuse(&request, Code::METHOD_NOT_ALLOWED, "Method Not Allowed", out),
        }
    }

    fn connect(&mut self, request: Message, query: Query, now: Instant, out: &mut Out) {
        let asked = query.credentials.client_id.clone().unwrap_or_default();
        if let Some(client) = &self.client {
            let why = if query.credentials.client_id.is_none() {
                "Bad Request: invalid queries".to_owned()
            } else if *client.client_id == *asked {
                "Bad Request: client has connected".to_owned()
            } else {
                format!("Bad Request: channel has registered by: {}", client.client_id)
            };
            return self.refuse(&request, Code::BAD_REQUEST, &why, out);
        }
        if asked.is_empty() {
            return self.refuse(&request, Code::BAD_REQUEST, "Login Failed: clientid is required", out);
        }
        if asked.len() > self.settings.max_clientid_len {
            return self.refuse(&request, Code::BAD_REQUEST, "Login Failed: clientid is too long", out);
        }
        match self.authenticate(&request, query.credentials, now, out) {
            Some(true) => {}
            Some(false) | None => return,
        }
        // EMQX: a random integer 1..=4294967295 in decimal.
        let token = rand::random_range(1..=u32::MAX).to_string();
        if let Some(client) = &self.client {
            self.tokens.insert(&client.client_id, &token);
            self.device_requests.register(&client.client_id, &self.conn);
        }
        self.token = Some(token.clone());
        self.respond(&request, Code::CREATED, Bytes::from(token), out);
    }

    /// In connection mode, every request but `POST /mqtt/connection` must carry the client id
    /// and the token this channel gave it.
    pub(super) fn check_token(&mut self, request: &Message, query: &Query, out: &mut Out) -> TokenCheck {
        if !self.settings.connection_required && self.token.is_none() {
            return TokenCheck::Pass;
        }
        let (Some(client_id), Some(token)) = (&query.credentials.client_id, &query.token) else {
            self.refuse(
                request,
                Code::BAD_REQUEST,
                "Missing token or clientid in connection mode",
                out,
            );
            return TokenCheck::Refused;
        };
        let ours = self.client.as_ref().is_some_and(|c| *c.client_id == **client_id)
            && self.token.as_deref() == Some(token.as_str());
        if ours {
            TokenCheck::Pass
        } else {
            self.refuse(
                request,
                Code::UNAUTHORIZED,
                "Invalid token or clientid in connection mode",
                out,
            );
            TokenCheck::Refused
        }
    }
}
