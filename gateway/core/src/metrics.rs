//! Broker-wide counters (EMQX metric names in the docs). Plain relaxed atomics: cheap enough to
//! bump on the hot path, read by the management plane and `$SYS` publisher later.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Broker-wide counters.
        #[derive(Debug, Default)]
        pub struct Metrics { $($(#[$doc])* pub $name: AtomicU64,)* }

        impl Metrics {
            /// `(EMQX metric name, value)` for every counter.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((counter_name(stringify!($name)), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

/// `messages_received` → `messages.received`.
fn counter_name(field: &'static str) -> &'static str {
    match field {
        "client_connected" => "client.connected",
        "client_disconnected" => "client.disconnected",
        "messages_received" => "messages.received",
        "messages_sent" => "messages.sent",
        "messages_dropped" => "messages.dropped",
        "messages_dropped_no_subscribers" => "messages.dropped.no_subscribers",
        "messages_retained" => "messages.retained",
        "session_created" => "session.created",
        "session_resumed" => "session.resumed",
        "session_takenover" => "session.takenover",
        "session_discarded" => "session.discarded",
        "session_terminated" => "session.terminated",
        "packets_malformed" => "packets.malformed",
        "listener_refused_max_connections" => "listener.refused.max_connections",
        "listener_refused_access_rules" => "listener.refused.access_rules",
        "listener_refused_handshake" => "listener.refused.handshake",
        "listener_delayed_max_conn_rate" => "listener.delayed.max_conn_rate",
        "listener_dropped_datagrams" => "listener.dropped.datagrams",
        "authentication_success" => "authentication.success",
        "authentication_failure" => "authentication.failure",
        "authorization_allow" => "authorization.allow",
        "authorization_deny" => "authorization.deny",
        "authorization_cache_hit" => "authorization.cache_hit",
        "authorization_superuser" => "authorization.superuser",
        _ => field,
    }
}

counters! {
    /// `client.connected`: successful CONNECTs.
    client_connected,
    /// `client.disconnected`: connections of authenticated clients that ended.
    client_disconnected,
    /// `messages.received`: messages published into the broker by clients.
    messages_received,
    /// `messages.sent`: messages delivered to clients.
    messages_sent,
    /// `messages.dropped`: messages dropped by queues (overflow, offline QoS 0, expiry).
    messages_dropped,
    /// `messages.dropped.no_subscribers`: publishes that matched nobody.
    messages_dropped_no_subscribers,
    /// `messages.retained`: retained messages stored.
    messages_retained,
    /// `session.created`
    session_created,
    /// `session.resumed`
    session_resumed,
    /// `session.takenover`
    session_takenover,
    /// `session.discarded`
    session_discarded,
    /// `session.terminated`
    session_terminated,
    /// `packets.malformed`: frames that failed to decode.
    packets_malformed,
    /// `listener.refused.max_connections` (Portico): connections closed at accept because their
    /// listener was at `max_connections`.
    listener_refused_max_connections,
    /// `listener.refused.access_rules` (Portico): connections closed at accept because the
    /// listener's `access_rules` deny their address.
    listener_refused_access_rules,
    /// `listener.refused.handshake` (Portico): connections whose PROXY header, TLS handshake or
    /// WebSocket upgrade failed or took longer than allowed.
    listener_refused_handshake,
    /// `listener.delayed.max_conn_rate` (Portico): accepts held back by a listener's
    /// `max_conn_rate` (the connection waits in the listen backlog; it is not refused).
    listener_delayed_max_conn_rate,
    /// `listener.dropped.datagrams` (Portico): datagrams a UDP listener dropped: over a peer's
    /// rate, from a new address it does not admit or has no room for, while a peer's waiting
    /// room was full, or a reply the socket's send buffer had no room for.
    listener_dropped_datagrams,
    /// `authentication.success`: CONNECTs the chain let in (banned clients are failures).
    authentication_success,
    /// `authentication.failure`: CONNECTs refused by the chain or the banned list.
    authentication_failure,
    /// `authorization.allow`: PUBLISH/SUBSCRIBE checks allowed (cache hits included).
    authorization_allow,
    /// `authorization.deny`: PUBLISH/SUBSCRIBE checks denied (cache hits included).
    authorization_deny,
    /// `authorization.cache_hit`: checks answered by a client's cache.
    authorization_cache_hit,
    /// `authorization.superuser`: checks skipped for superusers.
    authorization_superuser,
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters kept outside [`Metrics`], by a part of the server that owns them (a DTLS
/// listener's handshake counters): the broker reads every registered source with its own
/// counters (`Broker::add_metrics_source`, `Broker::metrics_snapshot`), so `$SYS` and the
/// management plane see one list.
pub trait MetricsSource: Send + Sync + 'static {
    /// `(metric name, value)` now. Several sources may report the same name (one per
    /// listener): the broker adds them up.
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// Adds `more` into `into`, summing values of a name already there.
pub(crate) fn merge(into: &mut Vec<(&'static str, u64)>, more: impl IntoIterator<Item = (&'static str, u64)>) {
    for (name, value) in more {
        match into.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += value,
            None => into.push((name, value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_sources_add_up_by_name() {
        let mut all = vec![("a", 1)];
        merge(&mut all, [("b", 2), ("a", 3)]);
        merge(&mut all, [("b", 5)]);
        assert_eq!(all, [("a", 4), ("b", 7)]);
    }
}
