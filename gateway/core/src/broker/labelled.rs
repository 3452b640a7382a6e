//! The broker's per-frontend, per-listener and store-latency metrics (see
//! [`crate::metrics::Registry`]), for the transport layer that counts and the management plane
//! that reads.

use std::sync::Arc;

use super::Broker;
use crate::metrics::{FrontendSnapshot, HistogramSnapshot, ListenerMetrics, ListenerSnapshot};

impl Broker {
    /// The counters of listener `id` (`tcp:default`, `coap:udp:default`), made on first use.
    /// A listener takes them once when it starts and hands each connection an `Arc`.
    pub fn listener_metrics(&self, id: &str) -> Arc<ListenerMetrics> {
        self.shared.labelled.listener(id)
    }

    /// Every listener's counters by id (listeners that ever ran since the broker started).
    pub fn listener_metrics_snapshot(&self) -> Vec<(String, ListenerSnapshot)> {
        self.shared.labelled.listeners()
    }

    /// Every frontend's message counters by frontend name (`mqtt`, `coap`, `stomp`, ...),
    /// for frontends that had a connection.
    pub fn frontend_metrics_snapshot(&self) -> Vec<(&'static str, FrontendSnapshot)> {
        self.shared.labelled.frontends()
    }

    /// The durable store's commit latency; `None` in memory mode.
    pub fn store_commit_latency(&self) -> Option<HistogramSnapshot> {
        self.shared
            .journal
            .as_ref()
            .map(|journal| journal.stats().commit_seconds.snapshot())
    }

    /// The durable store's size on disk, if there is a store and it can tell.
    pub fn store_size_bytes(&self) -> Option<u64> {
        self.shared
            .journal
            .as_ref()
            .and_then(|journal| journal.store().size_bytes())
    }
}
