//! Requests the server sends to a connected device (the HTTP API's `POST
//! /gateways/coap/clients/{clientid}/request`, EMQX's `emqx_coap_api`): handed to the client's
//! channel through [`DeviceRequests`], sent as a CON from the gateway's socket to the device's
//! address, and answered with the device's response (piggybacked on the ACK or separate).
//!
//! Only clients in connection mode (`POST /mqtt/connection`) are reachable: a connectionless
//! request names no lasting client. The answer goes to a callback, so this crate needs no
//! async runtime; a caller that gave up (timed out) is simply not told.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use bytes::Bytes;
use portico_core::conn::ConnHandle;

use super::{CoapChannel, Out};
use crate::message::{Code, Message, Token, Type};
use crate::options::number;

/// Requests waiting for one device, or in flight to it, at most.
pub const MAX_DEVICE_REQUESTS: usize = 16;

/// A request for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: Code,
    /// Uri-Path segments (none: the device's root).
    pub uri_path: Vec<String>,
    /// Content-Format of the payload.
    pub content_format: Option<u16>,
    /// The body.
    pub payload: Bytes,
    /// The token; the device's response carries it back.
    pub token: Token,
}

/// A device's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceResponse {
    /// Its message id.
    pub message_id: u16,
    /// The request's token.
    pub token: Token,
    /// The response code (`2.05`, `4.04`, ...).
    pub code: Code,
    /// Its Content-Format, if it has one.
    pub content_format: Option<u16>,
    /// Its body.
    pub payload: Bytes,
}

/// Where a device's response goes.
pub type Reply = Box<dyn FnOnce(DeviceResponse) + Send>;

/// Why a request was not handed to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceRequestError {
    /// No client with that id is connected in connection mode.
    #[error("no CoAP client with that client id is connected (connection mode)")]
    ClientNotFound,
    /// Too many requests already wait for that device.
    #[error("{MAX_DEVICE_REQUESTS} requests already wait for this device")]
    QueueFull,
}

/// This channel's requests in flight, by token (their callbacks are not `Debug`).
#[derive(Default)]
pub(super) struct Awaiting(VecDeque<(Token, Reply)>);

impl std::fmt::Debug for Awaiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Awaiting").field("len", &self.0.len()).finish()
    }
}

struct Entry {
    conn: Weak<ConnHandle>,
    queue: VecDeque<(DeviceRequest, Reply)>,
}

/// The connected clients of a CoAP gateway (every listener), by client id, and the requests
/// handed over for them.
#[derive(Default)]
pub struct DeviceRequests(Mutex<HashMap<String, Entry>>);

impl std::fmt::Debug for DeviceRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRequests").finish_non_exhaustive()
    }
}

impl DeviceRequests {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `request` to the channel of `client_id`; `reply` gets the device's response.
    pub fn send(&self, client_id: &str, request: DeviceRequest, reply: Reply) -> Result<(), DeviceRequestError> {
        let mut map = self.map();
        let entry = map.get_mut(client_id).ok_or(DeviceRequestError::ClientNotFound)?;
        let conn = entry.conn.upgrade().ok_or(DeviceRequestError::ClientNotFound)?;
        if entry.queue.len() >= MAX_DEVICE_REQUESTS {
            return Err(DeviceRequestError::QueueFull);
        }
        entry.queue.push_back((request, reply));
        drop(map);
        conn.signal_deliver();
        conn.wake();
        Ok(())
    }

    /// `client_id` connected on `conn` (replacing a connection it took over).
    pub(super) fn register(&self, client_id: &str, conn: &Arc<ConnHandle>) {
        self.map().insert(
            client_id.to_owned(),
            Entry {
                conn: Arc::downgrade(conn),
                queue: VecDeque::new(),
            },
        );
    }

    /// The connection `conn` of `client_id` ended (a newer one keeps its entry).
    pub(super) fn unregister(&self, client_id: &str, conn: &Arc<ConnHandle>) {
        let mut map = self.map();
        if map
            .get(client_id)
            .is_some_and(|e| std::ptr::eq(e.conn.as_ptr(), Arc::as_ptr(conn)))
        {
            map.remove(client_id);
        }
    }

    /// The requests waiting for `client_id`.
    fn take(&self, client_id: &str) -> Vec<(DeviceRequest, Reply)> {
        self.map()
            .get_mut(client_id)
            .map(|e| e.queue.drain(..).collect())
            .unwrap_or_default()
    }
}

impl CoapChannel {
    /// Sends the requests handed over for this client as CONs (one in flight at a time, as
    /// every CON of ours).
    pub(super) fn send_device_requests(&mut self, now: Instant, out: &mut Out) {
        if self.token.is_none() {
            return;
        }
        let Some(client_id) = self.client.as_ref().map(|c| c.client_id.to_string()) else {
            return;
        };
        for (request, reply) in self.device_requests.take(&client_id) {
            let mut message = Message::new(Type::Con, request.method, 0);
            message.token = request.token;
            for segment in &request.uri_path {
                message
                    .options
                    .push(number::URI_PATH, Bytes::copy_from_slice(segment.as_bytes()));
            }
            if let Some(format) = request.content_format {
                message.options.set_content_format(format);
            }
            message.payload = request.payload;
            // Oldest first out when full: its caller has most likely given up already.
            if self.awaiting.0.len() >= MAX_DEVICE_REQUESTS {
                self.awaiting.0.pop_front();
            }
            self.awaiting.0.push_back((request.token, reply));
            self.layer.send(message, now, out);
        }
    }

    /// A response from the device: true when it answers one of our requests (its caller is
    /// told). A CON response is acknowledged.
    pub(super) fn answer_device_request(&mut self, message: &Message, out: &mut Out) -> bool {
        if !message.is_response() {
            return false;
        }
        let Some(at) = self.awaiting.0.iter().position(|(t, _)| *t == message.token) else {
            return false;
        };
        let Some((_, reply)) = self.awaiting.0.remove(at) else {
            return false;
        };
        if message.mtype == Type::Con {
            out.send(Message::ack_for(message));
        }
        reply(DeviceResponse {
            message_id: message.message_id,
            token: message.token,
            code: message.code,
            content_format: message.options.content_format(),
            payload: message.payload.clone(),
        });
        true
    }
}
