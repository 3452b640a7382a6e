//! Counters kept per frontend (gateway) and per listener, for labelled Prometheus samples and
//! the broker-wide `bytes.*`/`packets.*` totals.
//!
//! Each connection looks its counters up once (when its channel or driver is made) and keeps an
//! `Arc` to them; per message it only adds to a relaxed atomic, never searches the registry.
//! The registry holds one entry per frontend name and per listener id the configuration ever
//! had, so it is bounded by the configuration, not by clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

/// One frontend's (gateway's) message counters (EMQX's per-gateway `messages.*`).
#[derive(Debug, Default)]
pub struct FrontendMetrics {
    /// Messages its clients published into the broker.
    pub messages_received: AtomicU64,
    /// Messages sent to its clients.
    pub messages_sent: AtomicU64,
    /// Messages dropped on their way to its clients.
    pub messages_dropped: AtomicU64,
}

/// A frontend's counters read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontendSnapshot {
    /// See [`FrontendMetrics::messages_received`].
    pub messages_received: u64,
    /// See [`FrontendMetrics::messages_sent`].
    pub messages_sent: u64,
    /// See [`FrontendMetrics::messages_dropped`].
    pub messages_dropped: u64,
}

impl FrontendMetrics {
    fn snapshot(&self) -> FrontendSnapshot {
        FrontendSnapshot {
            messages_received: self.messages_received.load(Ordering::Relaxed),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            messages_dropped: self.messages_dropped.load(Ordering::Relaxed),
        }
    }
}

/// One listener's counters, kept by the transport layer.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// Connections accepted (stream) or peers admitted (datagram).
    pub accepted: AtomicU64,
    /// Connections (peers) now served.
    pub current: AtomicU64,
    /// Refused at `max_connections`.
    pub refused_max_connections: AtomicU64,
    /// Refused by `access_rules`.
    pub refused_access_rules: AtomicU64,
    /// Refused at their PROXY header, TLS handshake or WebSocket upgrade.
    pub refused_handshake: AtomicU64,
    /// Bytes of the protocol's frames read (stream: after TLS decryption and WebSocket
    /// unframing, as the connection's driver reads them; datagram: whole datagrams, DTLS
    /// records as they are on the wire).
    pub bytes_received: AtomicU64,
    /// Bytes written, measured as for [`bytes_received`](Self::bytes_received).
    pub bytes_sent: AtomicU64,
    /// Frames decoded (stream) or datagrams received.
    pub packets_received: AtomicU64,
    /// Frames encoded (stream) or datagrams sent.
    pub packets_sent: AtomicU64,
}

/// A listener's counters read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerSnapshot {
    /// See [`ListenerMetrics::accepted`].
    pub accepted: u64,
    /// See [`ListenerMetrics::current`].
    pub current: u64,
    /// See [`ListenerMetrics::refused_max_connections`].
    pub refused_max_connections: u64,
    /// See [`ListenerMetrics::refused_access_rules`].
    pub refused_access_rules: u64,
    /// See [`ListenerMetrics::refused_handshake`].
    pub refused_handshake: u64,
    /// See [`ListenerMetrics::bytes_received`].
    pub bytes_received: u64,
    /// See [`ListenerMetrics::bytes_sent`].
    pub bytes_sent: u64,
    /// See [`ListenerMetrics::packets_received`].
    pub packets_received: u64,
    /// See [`ListenerMetrics::packets_sent`].
    pub packets_sent: u64,
}

impl ListenerMetrics {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// One connection (peer) fewer; never below zero.
    pub fn closed(&self) {
        let _ = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The counters now.
    pub fn snapshot(&self) -> ListenerSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ListenerSnapshot {
            accepted: load(&self.accepted),
            current: load(&self.current),
            refused_max_connections: load(&self.refused_max_connections),
            refused_access_rules: load(&self.refused_access_rules),
            refused_handshake: load(&self.refused_handshake),
            bytes_received: load(&self.bytes_received),
            bytes_sent: load(&self.bytes_sent),
            packets_received: load(&self.packets_received),
            packets_sent: load(&self.packets_sent),
        }
    }
}

/// The broker's frontend and listener counters, by name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    frontends: RwLock<Vec<(&'static str, Arc<FrontendMetrics>)>>,
    listeners: RwLock<Vec<(Box<str>, Arc<ListenerMetrics>)>>,
}

impl Registry {
    /// The counters of frontend `name`, made on first use.
    pub(crate) fn frontend(&self, name: &'static str) -> Arc<FrontendMetrics> {
        if let Some((_, found)) = self.frontends.read().iter().find(|(n, _)| *n == name) {
            return found.clone();
        }
        let mut frontends = self.frontends.write();
        if let Some((_, found)) = frontends.iter().find(|(n, _)| *n == name) {
            return found.clone();
        }
        let made = Arc::new(FrontendMetrics::default());
        frontends.push((name, made.clone()));
        made
    }

    /// The counters of listener `id` (`tcp:default`, `coap:udp:default`), made on first use;
    /// a listener started again under the same id keeps counting where it left off.
    pub(crate) fn listener(&self, id: &str) -> Arc<ListenerMetrics> {
        if let Some((_, found)) = self.listeners.read().iter().find(|(n, _)| &**n == id) {
            return found.clone();
        }
        let mut listeners = self.listeners.write();
        if let Some((_, found)) = listeners.iter().find(|(n, _)| &**n == id) {
            return found.clone();
        }
        let made = Arc::new(ListenerMetrics::default());
        listeners.push((id.into(), made.clone()));
        made
    }

    /// Every frontend's counters, in first-use order.
    pub(crate) fn frontends(&self) -> Vec<(&'static str, FrontendSnapshot)> {
        self.frontends
            .read()
            .iter()
            .map(|(name, metrics)| (*name, metrics.snapshot()))
            .collect()
    }

    /// Every listener's counters, in first-use order.
    pub(crate) fn listeners(&self) -> Vec<(String, ListenerSnapshot)> {
        self.listeners
            .read()
            .iter()
            .map(|(id, metrics)| (id.to_string(), metrics.snapshot()))
            .collect()
    }

    /// `bytes.received`, `bytes.sent`, `packets.received`, `packets.sent`: the listeners'
    /// counters summed.
    pub(crate) fn io_totals(&self) -> [(&'static str, u64); 4] {
        let mut totals = [0u64; 4];
        for (_, metrics) in self.listeners.read().iter() {
            let s = metrics.snapshot();
            for (total, value) in
                totals
                    .iter_mut()
                    .zip([s.bytes_received, s.bytes_sent, s.packets_received, s.packets_sent])
            {
                *total += value;
            }
        }
        [
            ("bytes.received", totals[0]),
            ("bytes.sent", totals[1]),
            ("packets.received", totals[2]),
            ("packets.sent", totals[3]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_name_and_totals_over_listeners() {
        let registry = Registry::default();
        let coap = registry.frontend("coap");
        Metrics::inc(&coap.messages_received);
        assert!(Arc::ptr_eq(&coap, &registry.frontend("coap")));
        registry.frontend("stomp");
        assert_eq!(registry.frontends().len(), 2);
        assert_eq!(registry.frontends()[0].1.messages_received, 1);

        let tcp = registry.listener("tcp:default");
        let udp = registry.listener("coap:udp:default");
        ListenerMetrics::add(&tcp.bytes_received, 10);
        ListenerMetrics::add(&udp.bytes_received, 5);
        ListenerMetrics::add(&udp.packets_sent, 2);
        assert!(Arc::ptr_eq(&tcp, &registry.listener("tcp:default")));
        let totals = registry.io_totals();
        assert_eq!(totals[0], ("bytes.received", 15));
        assert_eq!(totals[3], ("packets.sent", 2));
    }

    #[test]
    fn current_never_goes_below_zero() {
        let listener = ListenerMetrics::default();
        ListenerMetrics::add(&listener.current, 1);
        listener.closed();
        listener.closed();
        assert_eq!(listener.snapshot().current, 0);
    }

    use super::super::Metrics;
}
