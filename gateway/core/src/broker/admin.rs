//! Read and act on the broker for the management plane (the HTTP API): client and
//! subscription listings, statistics, kicking a client. Nothing here runs on the publish path;
//! each call takes the registry lock once, then each session's lock briefly.

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use super::{Broker, Shared};
use crate::conn::KickReason;
use crate::session::{Session, SubOptions};
use crate::sys::ConnectedEvent;

/// One client (session) as the management plane shows it.
#[derive(Debug, Clone)]
pub struct ClientSnapshot {
    /// The client id.
    pub client_id: ByteString,
    /// True while a connection is bound to the session.
    pub connected: bool,
    /// What the client's last CONNECT said (protocol, username, address, ...). `None` for a
    /// session restored from the store that has not reconnected since the start.
    pub info: Option<Arc<ConnectedEvent>>,
    /// Number of subscriptions.
    pub subscriptions: usize,
    /// Deliveries waiting in the session's queue.
    pub mqueue_len: usize,
    /// Most deliveries the queue holds.
    pub max_mqueue: usize,
    /// Deliveries dropped from the queue so far.
    pub mqueue_dropped: u64,
    /// Outgoing QoS 1/2 deliveries not yet acknowledged.
    pub inflight: usize,
    /// Incoming QoS 2 publications waiting for PUBREL.
    pub awaiting_rel: usize,
    /// Session expiry interval in seconds.
    pub expiry_interval: u32,
    /// How long ago the connection ended, for a disconnected session.
    pub disconnected_for: Option<std::time::Duration>,
}

impl Shared {
    /// Remembers what a client's CONNECT said, for [`Broker::clients`]; replaced at the next
    /// connect, forgotten when the session ends.
    pub(super) fn remember_client(&self, event: &ConnectedEvent) {
        let key = ByteString::from(event.client_id.as_str());
        self.client_info.lock().insert(key, Arc::new(event.clone()));
    }

    /// The username `client_id` last connected with, while its session lives (for events).
    pub(crate) fn username_of(&self, client_id: &str) -> Option<ByteString> {
        let info = self.client_info.lock().get(client_id).cloned()?;
        info.username.as_deref().map(ByteString::from)
    }

    pub(super) fn forget_client(&self, client_id: &str) {
        self.client_info.lock().remove(client_id);
    }
}

impl Broker {
    /// The node name (`portico@host`).
    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    /// The node id stamped into message ids.
    pub fn node_id(&self) -> u16 {
        self.shared.config.node_id
    }

    /// Time since the broker started.
    pub fn uptime(&self) -> std::time::Duration {
        self.shared.epoch.elapsed()
    }

    /// Current statistics and their highest values so far, by EMQX name
    /// (`connections.count`, `connections.max`, ...).
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        self.shared.stats()
    }

    /// Every client (session), in client id order.
    pub fn clients(&self) -> Vec<ClientSnapshot> {
        let mut sessions: Vec<Arc<Session>> = self.shared.sessions.lock().values().cloned().collect();
        sessions.sort_by(|a, b| a.client_id().cmp(b.client_id()));
        let now = Instant::now();
        sessions.iter().map(|s| self.snapshot(s, now)).collect()
    }

    /// One client.
    pub fn client(&self, client_id: &str) -> Option<ClientSnapshot> {
        let session = self.shared.sessions.lock().get(client_id).cloned()?;
        Some(self.snapshot(&session, Instant::now()))
    }

    fn snapshot(&self, session: &Arc<Session>, now: Instant) -> ClientSnapshot {
        let info = self.shared.client_info.lock().get(session.client_id()).cloned();
        let state = session.lock();
        ClientSnapshot {
            client_id: session.client_id().clone(),
            connected: state.conn.is_some(),
            info,
            subscriptions: state.subscriptions.len(),
            mqueue_len: state.queue.len(),
            max_mqueue: state.limits().max_mqueue_len,
            mqueue_dropped: state.dropped,
            inflight: state.inflight.len(),
            awaiting_rel: state.awaiting_rel.len(),
            expiry_interval: state.expiry_interval,
            disconnected_for: state.disconnected_at.map(|at| now.saturating_duration_since(at)),
        }
    }

    /// A client's subscriptions (filter as subscribed, options), in filter order; `None` when
    /// there is no such session.
    pub fn client_subscriptions(&self, client_id: &str) -> Option<Vec<(ByteString, SubOptions)>> {
        let session = self.shared.sessions.lock().get(client_id).cloned()?;
        let state = session.lock();
        let mut subscriptions: Vec<(ByteString, SubOptions)> =
            state.subscriptions.iter().map(|(f, o)| (f.clone(), *o)).collect();
        drop(state);
        subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
        Some(subscriptions)
    }

    /// Closes the connection of every connected client of `protocol` (a frontend's name), as a
    /// server shutdown does: persistent sessions stay for their clients to come back. Returns
    /// how many connections were asked to close. Used when a gateway is stopped.
    pub fn disconnect_protocol(&self, protocol: &str) -> usize {
        let shared = &self.shared;
        let sessions: Vec<Arc<Session>> = shared.sessions.lock().values().cloned().collect();
        let mut closed = 0;
        for session in sessions {
            let of_protocol = shared
                .client_info
                .lock()
                .get(session.client_id())
                .is_some_and(|info| info.protocol == protocol);
            if !of_protocol {
                continue;
            }
            let conn = session.lock().conn.clone();
            if let Some(conn) = conn {
                conn.kick(KickReason::ServerShutdown);
                closed += 1;
            }
        }
        closed
    }

    /// Kicks a client as EMQX does: its connection is closed and its session ends (a
    /// persistent session is not kept). False when there is no such session.
    pub fn kick_client(&self, client_id: &str) -> bool {
        let shared = &self.shared;
        let mut sessions = shared.sessions.lock();
        let Some(session) = sessions.get(client_id).cloned() else {
            return false;
        };
        let conn = session.lock().conn.clone();
        match conn {
            Some(conn) => {
                drop(sessions);
                // The connection's close ends a session whose expiry is 0.
                shared.set_session_expiry(&session, 0);
                conn.kick(KickReason::Administrative);
            }
            None => {
                sessions.remove(client_id);
                drop(sessions);
                shared.end_session(&session, "kicked");
            }
        }
        true
    }
}
