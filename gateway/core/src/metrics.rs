//! Broker-wide counters (EMQX metric names in the docs). Plain relaxed atomics: cheap enough to
//! bump on the hot path, read by the management plane and `$SYS` publisher later.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::hooks::DropReason;
use crate::message::QoS;

mod histogram;
mod labelled;

pub use histogram::{COMMIT_BUCKETS, Histogram, HistogramSnapshot};
pub(crate) use labelled::Registry;
pub use labelled::{FrontendMetrics, FrontendSnapshot, ListenerMetrics, ListenerSnapshot};

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
        "messages_qos0_received" => "messages.qos0.received",
        "messages_qos1_received" => "messages.qos1.received",
        "messages_qos2_received" => "messages.qos2.received",
        "messages_qos0_sent" => "messages.qos0.sent",
        "messages_qos1_sent" => "messages.qos1.sent",
        "messages_qos2_sent" => "messages.qos2.sent",
        "messages_publish" => "messages.publish",
        "messages_delivered" => "messages.delivered",
        "messages_acked" => "messages.acked",
        "messages_dropped_await_pubrel_timeout" => "messages.dropped.await_pubrel_timeout",
        "delivery_dropped" => "delivery.dropped",
        "delivery_dropped_no_local" => "delivery.dropped.no_local",
        "delivery_dropped_too_large" => "delivery.dropped.too_large",
        "delivery_dropped_qos0_msg" => "delivery.dropped.qos0_msg",
        "delivery_dropped_queue_full" => "delivery.dropped.queue_full",
        "delivery_dropped_expired" => "delivery.dropped.expired",
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
    /// `messages.qos0.received`: QoS 0 messages routed (see `messages.received`).
    messages_qos0_received,
    /// `messages.qos1.received`: QoS 1 messages routed.
    messages_qos1_received,
    /// `messages.qos2.received`: QoS 2 messages routed.
    messages_qos2_received,
    /// `messages.qos0.sent`: messages sent to clients at QoS 0 (the delivery's QoS, after
    /// the subscription's maximum).
    messages_qos0_sent,
    /// `messages.qos1.sent`: messages sent to clients at QoS 1 (first sends, not retries).
    messages_qos1_sent,
    /// `messages.qos2.sent`: messages sent to clients at QoS 2 (first sends, not retries).
    messages_qos2_sent,
    /// `messages.publish`: messages published by clients and the API (the broker's own
    /// `$SYS` messages excluded).
    messages_publish,
    /// `messages.delivered`: copies the router queued for subscriber sessions.
    messages_delivered,
    /// `messages.acked`: QoS 1/2 messages a client acknowledged (PUBACK, PUBCOMP, STOMP ACK).
    messages_acked,
    /// `messages.dropped.await_pubrel_timeout`: incoming QoS 2 messages whose PUBREL never
    /// came within `await_rel_timeout`.
    messages_dropped_await_pubrel_timeout,
    /// `delivery.dropped`: messages dropped on their way to a subscriber, for any reason
    /// (the `delivery.dropped.*` counters and shared-group redispatch with no member left).
    delivery_dropped,
    /// `delivery.dropped.no_local`: copies not delivered to their publisher (No Local).
    delivery_dropped_no_local,
    /// `delivery.dropped.too_large`: messages larger than the client's Maximum Packet Size.
    delivery_dropped_too_large,
    /// `delivery.dropped.qos0_msg`: QoS 0 messages for an offline subscriber.
    delivery_dropped_qos0_msg,
    /// `delivery.dropped.queue_full`: messages evicted from a full subscriber queue.
    delivery_dropped_queue_full,
    /// `delivery.dropped.expired`: messages whose expiry interval ran out before delivery.
    delivery_dropped_expired,
}

/// Why a message did not reach a subscriber (EMQX's `delivery.dropped.*` reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryDrop {
    /// `delivery.dropped.queue_full`
    QueueFull,
    /// `delivery.dropped.qos0_msg`
    Qos0Msg,
    /// `delivery.dropped.expired`
    Expired,
    /// `delivery.dropped.too_large`
    TooLarge,
    /// No sub-reason in EMQX (`delivery.dropped` only): a shared-group message left by an
    /// ending session found no other member, or a client refused the message (MQTT-SN
    /// topic registration, CoAP notification never acknowledged).
    Other,
}

impl From<DropReason> for DeliveryDrop {
    fn from(reason: DropReason) -> Self {
        match reason {
            DropReason::QueueFull => DeliveryDrop::QueueFull,
            DropReason::Qos0Offline => DeliveryDrop::Qos0Msg,
            DropReason::NoSubscribers | DropReason::NoGroupMember => DeliveryDrop::Other,
        }
    }
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message routed into the broker, by its QoS.
    pub fn count_received_qos(&self, qos: QoS) {
        Metrics::inc(match qos {
            QoS::AtMostOnce => &self.messages_qos0_received,
            QoS::AtLeastOnce => &self.messages_qos1_received,
            QoS::ExactlyOnce => &self.messages_qos2_received,
        });
    }

    /// Counts messages sent to clients: `messages.sent` and, by QoS, `messages.qosN.sent`
    /// (`by_qos[n]` messages at QoS n). One add per non-zero entry, once per delivery batch.
    pub fn count_sent(&self, by_qos: [u64; 3]) {
        let total: u64 = by_qos.iter().sum();
        if total == 0 {
            return;
        }
        self.messages_sent.fetch_add(total, Ordering::Relaxed);
        for (count, counter) in by_qos.into_iter().zip([
            &self.messages_qos0_sent,
            &self.messages_qos1_sent,
            &self.messages_qos2_sent,
        ]) {
            if count > 0 {
                counter.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    /// Counts `n` messages dropped on their way to a subscriber: `messages.dropped` (Portico's
    /// total of queue-side drops), `delivery.dropped` and the reason's own counter.
    pub fn count_delivery_drop(&self, reason: DeliveryDrop, n: u64) {
        if n == 0 {
            return;
        }
        let reason_counter = match reason {
            DeliveryDrop::QueueFull => Some(&self.delivery_dropped_queue_full),
            DeliveryDrop::Qos0Msg => Some(&self.delivery_dropped_qos0_msg),
            DeliveryDrop::Expired => Some(&self.delivery_dropped_expired),
            DeliveryDrop::TooLarge => Some(&self.delivery_dropped_too_large),
            DeliveryDrop::Other => None,
        };
        for counter in [&self.messages_dropped, &self.delivery_dropped]
            .into_iter()
            .chain(reason_counter)
        {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// `by_qos[n] += 1` for a message sent at `qos`: the tally a channel keeps over one delivery
/// batch for [`Metrics::count_sent`].
pub fn tally_qos(by_qos: &mut [u64; 3], qos: QoS) {
    by_qos[qos as usize] += 1;
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

    #[test]
    fn sent_and_received_are_counted_by_qos() {
        let metrics = Metrics::default();
        let mut by_qos = [0; 3];
        tally_qos(&mut by_qos, QoS::AtMostOnce);
        tally_qos(&mut by_qos, QoS::ExactlyOnce);
        tally_qos(&mut by_qos, QoS::ExactlyOnce);
        metrics.count_sent(by_qos);
        metrics.count_received_qos(QoS::AtLeastOnce);
        let snapshot = metrics.snapshot();
        let get = |name: &str| snapshot.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert_eq!(get("messages.sent"), Some(3));
        assert_eq!(get("messages.qos0.sent"), Some(1));
        assert_eq!(get("messages.qos1.sent"), Some(0));
        assert_eq!(get("messages.qos2.sent"), Some(2));
        assert_eq!(get("messages.qos1.received"), Some(1));
    }

    #[test]
    fn delivery_drops_count_the_total_and_the_reason() {
        let metrics = Metrics::default();
        metrics.count_delivery_drop(DropReason::QueueFull.into(), 1);
        metrics.count_delivery_drop(DropReason::Qos0Offline.into(), 1);
        metrics.count_delivery_drop(DeliveryDrop::Expired, 1);
        metrics.count_delivery_drop(DeliveryDrop::Other, 1);
        let snapshot = metrics.snapshot();
        let get = |name: &str| snapshot.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert_eq!(get("delivery.dropped"), Some(4));
        assert_eq!(get("messages.dropped"), Some(4));
        assert_eq!(get("delivery.dropped.queue_full"), Some(1));
        assert_eq!(get("delivery.dropped.qos0_msg"), Some(1));
        assert_eq!(get("delivery.dropped.expired"), Some(1));
        assert_eq!(get("delivery.dropped.too_large"), Some(0));
    }

    #[test]
    fn every_counter_has_a_dotted_emqx_name() {
        for (name, _) in Metrics::default().snapshot() {
            // An unmapped field name would keep its underscores and have no dot.
            assert!(name.contains('.'), "{name} has no EMQX name");
        }
    }
}
