//! Acting on the broker for the management plane, beyond reading clients (`admin.rs`):
//! retained messages (list, read, delete), the route table, and subscribing or unsubscribing a
//! client on its behalf. Nothing here runs on the publish path.

use std::sync::Arc;

use bytestring::ByteString;

use super::{Broker, RetainedOnSubscribe};
use crate::message::{Message, now_millis};
use crate::session::{Session, SubOptions};
use crate::sys::{SubscribedEvent, UnsubscribedEvent};
use crate::topic::{SubscriptionTopic, TopicError};
use crate::wake;

/// Why a subscription on a client's behalf was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManageError {
    /// No session with this client id.
    #[error("client id not found")]
    ClientNotFound,
    /// The topic filter is not valid.
    #[error("topic: {0}")]
    BadTopic(#[from] TopicError),
}

impl Broker {
    /// Every retained message in force (not expired; the broker's own `$SYS` ones included),
    /// in topic order.
    pub fn retained_messages(&self) -> Vec<Arc<Message>> {
        let shared = &self.shared;
        let now_ms = now_millis();
        let mut messages: Vec<Arc<Message>> = shared
            .retained
            .read()
            .values()
            .filter(|m| !shared.retained_expired(m, now_ms))
            .cloned()
            .collect();
        messages.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
        messages
    }

    /// The retained message of exactly `topic` (no wildcard matching), if one is in force.
    pub fn retained_message(&self, topic: &str) -> Option<Arc<Message>> {
        let shared = &self.shared;
        let message = shared.retained.read().get(topic)?;
        (!shared.retained_expired(&message, now_millis())).then_some(message)
    }

    /// Stores `message` as the retained message of its topic without delivering it to anyone
    /// (restoring a backup), journalled and within the `retainer` limits as a retained publish
    /// is. True when it is the topic's retained message afterwards (false: over a limit, the
    /// retainer off, or already expired).
    pub fn put_retained(&self, message: Message) -> bool {
        let message = Arc::new(message);
        self.shared.retain(&message);
        self.retained_message(message.topic.as_str())
            .is_some_and(|stored| Arc::ptr_eq(&stored, &message))
    }

    /// Deletes the retained message of `topic` the way a retained publish with an empty
    /// payload does, so that the durable store records it. True if there was one.
    pub fn delete_retained(&self, topic: &str) -> bool {
        self.shared.clear_retained(ByteString::from(topic))
    }

    /// Deletes every retained message clients published (the broker's own `$SYS` ones stay),
    /// each as [`Broker::delete_retained`] does. Returns how many were deleted.
    pub fn clear_retained(&self) -> usize {
        let topics = self.shared.retained.read().client_topics();
        topics
            .into_iter()
            .filter(|topic| self.shared.clear_retained(topic.clone()))
            .count()
    }

    /// The node's routes: every filter with at least one subscriber, once, sorted (a shared
    /// subscription's filter without its group).
    pub fn route_filters(&self) -> Vec<ByteString> {
        self.shared.router.filters()
    }

    fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.shared.sessions.lock().get(client_id).cloned()
    }

    /// Subscribes the session of `client_id` to `filter` as if its client had sent SUBSCRIBE
    /// (no authorization, no mountpoint): matching retained messages are sent per `retained`,
    /// the subscription is kept in the store like a client's, and the `$SYS` subscribed event
    /// is published (if enabled). Returns true if it replaced an existing subscription's
    /// options.
    pub fn subscribe_client(
        &self,
        client_id: &str,
        filter: &str,
        options: SubOptions,
        retained: RetainedOnSubscribe,
    ) -> Result<bool, ManageError> {
        let topic = SubscriptionTopic::parse(filter)?;
        let session = self.session(client_id).ok_or(ManageError::ClientNotFound)?;
        let existed = self.shared.subscribe(&session, topic, options, retained);
        if let Some((username, protocol)) = self.who(client_id) {
            self.shared.sys_subscribed(&SubscribedEvent {
                client_id: client_id.to_owned(),
                username,
                protocol,
                topic: filter.to_owned(),
                qos: options.qos,
                retain_handling: match retained {
                    RetainedOnSubscribe::Send => 0,
                    RetainedOnSubscribe::SendIfNew => 1,
                    RetainedOnSubscribe::DoNotSend => 2,
                },
                retain_as_published: options.retain_as_published,
                no_local: options.no_local,
                is_new: !existed,
                subscription_id: None,
                ts_ms: now_millis(),
            });
        }
        // Retained messages (and the `$SYS` event) just queued: wake their connections.
        wake::flush();
        Ok(existed)
    }

    /// The user name and frontend of a client's last CONNECT: what a `$SYS` client event
    /// needs. `None` for a session restored from the store that has not reconnected, whose
    /// frontend is unknown (it gets no event).
    fn who(&self, client_id: &str) -> Option<(Option<String>, &'static str)> {
        let info = self.shared.client_info.lock().get(client_id).cloned()?;
        Some((info.username.clone(), info.protocol))
    }

    /// Removes the subscription `filter` (as subscribed) of the session of `client_id`.
    /// Returns whether it existed; `None` when there is no such session.
    pub fn unsubscribe_client(&self, client_id: &str, filter: &str) -> Option<bool> {
        let session = self.session(client_id)?;
        let existed = self.shared.unsubscribe(&session, filter);
        if existed && let Some((username, protocol)) = self.who(client_id) {
            self.shared.sys_unsubscribed(&UnsubscribedEvent {
                client_id: client_id.to_owned(),
                username,
                protocol,
                topic: filter.to_owned(),
                ts_ms: now_millis(),
            });
            wake::flush();
        }
        Some(existed)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::BrokerConfig;
    use crate::broker::RetainerLimits;
    use crate::ctx::FrontendInfo;
    use crate::message::{Origin, QoS};
    use crate::topic::TopicName;

    fn retained(topic: &str, payload: &'static [u8]) -> Message {
        Message::new(
            0,
            TopicName::new(topic.to_owned()).expect("valid topic"),
            Bytes::from_static(payload),
            QoS::AtLeastOnce,
            true,
            Origin::default(),
        )
    }

    fn connect(broker: &Broker, id: &str) -> (crate::ctx::Ctx, Arc<Session>) {
        let ctx = broker.ctx(FrontendInfo {
            name: "test",
            mountpoint: Default::default(),
            authn: Default::default(),
        });
        let conn = broker.register_connection();
        let opened = ctx.open_session(&ByteString::from(id), true, 0, &conn, None);
        ctx.sys_connected(&crate::sys::ConnectedEvent {
            client_id: id.to_owned(),
            username: Some(format!("u-{id}")),
            protocol: "mqtt",
            peer: None,
            sockport: 1883,
            proto_name: "MQTT".to_owned(),
            proto_ver: 5,
            keepalive: 60,
            clean_start: true,
            expiry_interval_secs: 0,
            connected_at_ms: now_millis(),
            ts_ms: now_millis(),
        });
        (ctx, opened.session)
    }

    #[test]
    fn retained_messages_list_get_and_delete() {
        let broker = Broker::new(BrokerConfig::default());
        for topic in ["b/2", "a/1", "c/3"] {
            broker.publish(retained(topic, b"x")).expect("published");
        }
        let topics: Vec<String> = broker.retained_messages().iter().map(|m| m.topic.to_string()).collect();
        assert_eq!(topics, ["a/1", "b/2", "c/3"]);
        assert_eq!(
            broker.retained_message("b/2").map(|m| m.payload.clone()),
            Some(Bytes::from_static(b"x"))
        );
        assert!(broker.retained_message("b/+").is_none(), "no wildcard matching");
        assert!(broker.delete_retained("b/2"));
        assert!(!broker.delete_retained("b/2"));
        assert!(broker.retained_message("b/2").is_none());
        assert_eq!(broker.retained_count(), 2);
        let mut sys = retained("$SYS/brokers", b"node");
        sys.from.protocol = super::super::features::SYS_PROTOCOL;
        broker.publish(sys).expect("published");
        assert_eq!(broker.clear_retained(), 2);
        let left: Vec<String> = broker.retained_messages().iter().map(|m| m.topic.to_string()).collect();
        assert_eq!(left, ["$SYS/brokers"], "the broker's own messages stay");
    }

    #[test]
    fn put_retained_stores_without_delivering() {
        let broker = Broker::new(BrokerConfig::default());
        let (_ctx, session) = connect(&broker, "watcher");
        let options = SubOptions {
            qos: QoS::AtLeastOnce,
            ..SubOptions::default()
        };
        assert_eq!(
            broker.subscribe_client("watcher", "kept/#", options, RetainedOnSubscribe::Send),
            Ok(false)
        );
        let mut old = retained("kept/a", b"v1");
        old.timestamp_ms = 1_000;
        assert!(broker.put_retained(old));
        let stored = broker.retained_message("kept/a").expect("stored");
        assert_eq!(stored.timestamp_ms, 1_000, "the original publish time is kept");
        assert_eq!(session.queue_len(), 0, "nobody is sent a restored message");
        assert!(
            broker.put_retained(retained("kept/a", b"v2")),
            "an existing one is replaced"
        );
        assert_eq!(
            broker.retained_message("kept/a").map(|m| m.payload.clone()),
            Some(Bytes::from_static(b"v2"))
        );
        assert!(
            !broker.put_retained(retained("kept/b", b"")),
            "an empty payload stores nothing"
        );
    }

    #[test]
    fn expired_retained_messages_are_not_shown() {
        let broker = Broker::new(BrokerConfig {
            retainer: RetainerLimits {
                msg_expiry: Some(std::time::Duration::from_millis(1)),
                ..RetainerLimits::default()
            },
            ..BrokerConfig::default()
        });
        let mut old = retained("old", b"x");
        old.timestamp_ms = old.timestamp_ms.saturating_sub(1000);
        broker.publish(old).expect("published");
        assert!(broker.retained_messages().is_empty());
        assert!(broker.retained_message("old").is_none());
    }

    #[test]
    fn subscribe_on_behalf_publishes_the_sys_events() {
        let broker = Broker::new(BrokerConfig {
            sys: crate::broker::SysSettings {
                client_subscribed: true,
                client_unsubscribed: true,
                ..crate::broker::SysSettings::default()
            },
            ..BrokerConfig::default()
        });
        let (_ctx, watcher) = connect(&broker, "watcher");
        broker
            .subscribe_client(
                "watcher",
                "$SYS/brokers/+/clients/+/+",
                SubOptions::default(),
                RetainedOnSubscribe::DoNotSend,
            )
            .expect("subscribed");
        let (_ctx, _device) = connect(&broker, "device");
        broker
            .subscribe_client("device", "cmd/#", SubOptions::default(), RetainedOnSubscribe::Send)
            .expect("subscribed");
        assert_eq!(broker.unsubscribe_client("device", "cmd/#"), Some(true));
        let mut state = watcher.lock();
        let mut topics = Vec::new();
        while let Some(delivery) = state.dequeue() {
            topics.push(delivery.message.topic.to_string());
        }
        assert!(
            topics.iter().any(|t| t.ends_with("/clients/device/subscribed")),
            "{topics:?}"
        );
        assert!(
            topics.iter().any(|t| t.ends_with("/clients/device/unsubscribed")),
            "{topics:?}"
        );
    }

    #[test]
    fn subscribe_on_behalf_routes_and_sends_retained() {
        let broker = Broker::new(BrokerConfig::default());
        broker.publish(retained("r/1", b"kept")).expect("published");
        let (_ctx, session) = connect(&broker, "c1");
        let options = SubOptions {
            qos: QoS::AtLeastOnce,
            ..SubOptions::default()
        };
        assert_eq!(
            broker.subscribe_client("nobody", "r/#", options, RetainedOnSubscribe::Send),
            Err(ManageError::ClientNotFound)
        );
        assert_eq!(
            broker.subscribe_client("c1", "r/#/x", options, RetainedOnSubscribe::Send),
            Err(ManageError::BadTopic(TopicError::MisplacedMultiLevelWildcard))
        );
        assert_eq!(
            broker.subscribe_client("c1", "r/#", options, RetainedOnSubscribe::Send),
            Ok(false)
        );
        assert_eq!(session.lock().queue.len(), 1, "the retained message is queued");
        assert_eq!(broker.route_filters(), [ByteString::from_static("r/#")]);
        broker
            .publish(Message::new(
                0,
                TopicName::new("r/2".to_owned()).expect("valid"),
                Bytes::from_static(b"live"),
                QoS::AtLeastOnce,
                false,
                Origin::default(),
            ))
            .expect("published");
        assert_eq!(session.lock().queue.len(), 2, "a later publication is delivered");
        let listed = broker.client_subscriptions("c1").expect("session");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1.qos, QoS::AtLeastOnce);

        assert_eq!(broker.unsubscribe_client("c1", "r/#"), Some(true));
        assert_eq!(broker.unsubscribe_client("c1", "r/#"), Some(false));
        assert_eq!(broker.unsubscribe_client("nobody", "r/#"), None);
        assert!(broker.route_filters().is_empty());
    }
}
