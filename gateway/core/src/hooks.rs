//! Hook points: the broker's events, with EMQX's names, for extensions to observe.
//!
//! An extension (the webhook, later the rule engine) implements [`EventListener`] and registers
//! it with [`Broker::add_event_listener`](crate::Broker::add_event_listener). The broker fires an
//! [`Event`] at each hook point: client life cycle (`client.connect`, `client.connack`,
//! `client.connected`, `client.disconnected`), subscriptions (`client.subscribe`,
//! `client.unsubscribe`, `session.subscribed`, `session.unsubscribed`), session end
//! (`session.terminated`) and messages (`message.publish`, `message.delivered`,
//! `message.acked`, `message.dropped`).
//!
//! Unlike EMQX's hook chains these hooks only observe: a listener cannot change or stop what
//! the broker does (EMQX's `{stop, Acc}`); authentication and authorization have their own
//! seams ([`crate::auth`]).
//!
//! Cost: [`Hooks`] keeps the union of every listener's [`EventListener::interests`] in one
//! atomic. A hook point asks [`Hooks::wants`] (one relaxed load) before it builds anything, so
//! with no listener — or none interested in that event — the publish and delivery paths neither
//! allocate nor build an event. Listeners are called synchronously from the broker's (and the
//! connections') threads, often with locks of the caller held: they must not block, and should
//! clone the event (reference-count bumps only) into a queue of their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytestring::ByteString;
use parking_lot::RwLock;

use crate::message::{Message, QoS};
use crate::sys::{ConnectedEvent, DisconnectedEvent, SubscribedEvent, UnsubscribedEvent};

/// The kind of an [`Event`], named as EMQX names its hook points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// `client.connect`: a CONNECT arrived.
    ClientConnect,
    /// `client.connack`: a CONNACK is about to be sent (accepting or refusing).
    ClientConnack,
    /// `client.connected`: the client is authenticated and its session open.
    ClientConnected,
    /// `client.disconnected`: the connection is closing.
    ClientDisconnected,
    /// `client.subscribe`: a SUBSCRIBE arrived, before authorization.
    ClientSubscribe,
    /// `client.unsubscribe`: an UNSUBSCRIBE arrived.
    ClientUnsubscribe,
    /// `session.subscribed`: a subscription was added.
    SessionSubscribed,
    /// `session.unsubscribed`: a subscription was removed.
    SessionUnsubscribed,
    /// `session.terminated`: a session ended.
    SessionTerminated,
    /// `message.publish`: a message is about to be routed.
    MessagePublish,
    /// `message.delivered`: a message is about to be sent to a subscriber.
    MessageDelivered,
    /// `message.acked`: a subscriber acknowledged a QoS 1/2 message.
    MessageAcked,
    /// `message.dropped`: a message reached nobody, or a subscriber's queue dropped it.
    MessageDropped,
}

impl EventKind {
    /// Every kind, in hook-point order.
    pub const ALL: [EventKind; 13] = [
        EventKind::ClientConnect,
        EventKind::ClientConnack,
        EventKind::ClientConnected,
        EventKind::ClientDisconnected,
        EventKind::ClientSubscribe,
        EventKind::ClientUnsubscribe,
        EventKind::SessionSubscribed,
        EventKind::SessionUnsubscribed,
        EventKind::SessionTerminated,
        EventKind::MessagePublish,
        EventKind::MessageDelivered,
        EventKind::MessageAcked,
        EventKind::MessageDropped,
    ];

    /// EMQX's name of the hook point: `client.connected`, `message.publish`, ...
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ClientConnect => "client.connect",
            EventKind::ClientConnack => "client.connack",
            EventKind::ClientConnected => "client.connected",
            EventKind::ClientDisconnected => "client.disconnected",
            EventKind::ClientSubscribe => "client.subscribe",
            EventKind::ClientUnsubscribe => "client.unsubscribe",
            EventKind::SessionSubscribed => "session.subscribed",
            EventKind::SessionUnsubscribed => "session.unsubscribed",
            EventKind::SessionTerminated => "session.terminated",
            EventKind::MessagePublish => "message.publish",
            EventKind::MessageDelivered => "message.delivered",
            EventKind::MessageAcked => "message.acked",
            EventKind::MessageDropped => "message.dropped",
        }
    }

    /// The kind named `name` (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`EventKind`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventMask(u32);

impl EventMask {
    /// No event.
    pub const NONE: EventMask = EventMask(0);
    /// Every event.
    pub const ALL: EventMask = EventMask((1 << EventKind::ALL.len()) - 1);

    /// This set with `kind` added.
    #[must_use]
    pub const fn with(self, kind: EventKind) -> EventMask {
        EventMask(self.0 | kind.bit())
    }

    /// True when `kind` is in the set.
    pub const fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// True when the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<EventKind> for EventMask {
    fn from_iter<I: IntoIterator<Item = EventKind>>(iter: I) -> Self {
        iter.into_iter().fold(EventMask::NONE, EventMask::with)
    }
}

/// The client an event is about (or, for message events, the receiving client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRef {
    /// The client id.
    pub client_id: ByteString,
    /// The username it connected with, if any.
    pub username: Option<ByteString>,
}

/// What a CONNECT said, for `client.connect` and `client.connack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The client id as sent (empty when the client asked the broker to assign one).
    pub client_id: ByteString,
    /// The username, if any.
    pub username: Option<ByteString>,
    /// The frontend: `"mqtt"`, `"stomp"`, ...
    pub protocol: &'static str,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// Protocol name from CONNECT: `"MQTT"` or `"MQIsdp"`.
    pub proto_name: &'static str,
    /// Protocol level: 3, 4 or 5.
    pub proto_ver: u8,
    /// Keep alive in seconds, as requested.
    pub keepalive: u16,
    /// Clean Start (Clean Session for 3.x).
    pub clean_start: bool,
    /// When the CONNECT arrived, ms since the Unix epoch.
    pub ts_ms: u64,
}

/// Why a message was dropped (EMQX's reason names, see [`as_str`](Self::as_str)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `no_subscribers`: no subscription matched the topic.
    NoSubscribers,
    /// `queue_full`: a subscriber's queue was full; this message (the oldest, QoS 0 first) went.
    QueueFull,
    /// `qos0_msg`: a QoS 0 message for a disconnected subscriber that does not queue them.
    Qos0Offline,
    /// `no_group_member`: a shared-subscription message left by an ending session found no
    /// other member of its group.
    NoGroupMember,
}

impl DropReason {
    /// EMQX's name for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoSubscribers => "no_subscribers",
            DropReason::QueueFull => "queue_full",
            DropReason::Qos0Offline => "qos0_msg",
            DropReason::NoGroupMember => "no_group_member",
        }
    }
}

/// One occurrence at a hook point. Cheap to clone: strings are shared (`ByteString`) and
/// messages and client-event records are behind `Arc`.
#[derive(Debug, Clone)]
pub enum Event {
    /// `client.connect`.
    ClientConnect(Arc<ConnectInfo>),
    /// `client.connack`: `result` is `"success"` or EMQX's name of the refusal
    /// (`not_authorized`, `bad_username_or_password`, ...).
    ClientConnack {
        /// What the CONNECT said.
        info: Arc<ConnectInfo>,
        /// `"success"` or why the client was refused.
        result: &'static str,
    },
    /// `client.connected`.
    ClientConnected(Arc<ConnectedEvent>),
    /// `client.disconnected`.
    ClientDisconnected(Arc<DisconnectedEvent>),
    /// `client.subscribe`: one topic filter of a SUBSCRIBE, as the client sent it.
    ClientSubscribe {
        /// Who subscribes.
        client: ClientRef,
        /// The filter (before mountpoint and rewrite).
        topic: ByteString,
        /// Requested maximum QoS.
        qos: QoS,
    },
    /// `client.unsubscribe`: one topic filter of an UNSUBSCRIBE, as the client sent it.
    ClientUnsubscribe {
        /// Who unsubscribes.
        client: ClientRef,
        /// The filter.
        topic: ByteString,
    },
    /// `session.subscribed`.
    SessionSubscribed(Arc<SubscribedEvent>),
    /// `session.unsubscribed`.
    SessionUnsubscribed(Arc<UnsubscribedEvent>),
    /// `session.terminated`.
    SessionTerminated {
        /// Whose session.
        client: ClientRef,
        /// Why: `normal` (ended with its connection), `discarded` (clean start), `expired`,
        /// `kicked` (by an operator).
        reason: &'static str,
        /// When, ms since the Unix epoch.
        ts_ms: u64,
    },
    /// `message.publish`: before routing. The broker's own `$SYS` messages are not reported.
    MessagePublish {
        /// The message.
        message: Arc<Message>,
        /// The publisher's username, if it is connected and had one.
        from_username: Option<ByteString>,
    },
    /// `message.delivered`: before a PUBLISH goes to `client`.
    MessageDelivered {
        /// The receiving client.
        client: ClientRef,
        /// The message.
        message: Arc<Message>,
        /// The publisher's username, if known.
        from_username: Option<ByteString>,
    },
    /// `message.acked`: `client` acknowledged the message (PUBACK, or PUBREC for QoS 2).
    MessageAcked {
        /// The acknowledging client.
        client: ClientRef,
        /// The message.
        message: Arc<Message>,
        /// The publisher's username, if known.
        from_username: Option<ByteString>,
    },
    /// `message.dropped`.
    MessageDropped {
        /// The message.
        message: Arc<Message>,
        /// The publisher's username, if known.
        from_username: Option<ByteString>,
        /// Why.
        reason: DropReason,
    },
}

impl Event {
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::ClientConnect(_) => EventKind::ClientConnect,
            Event::ClientConnack { .. } => EventKind::ClientConnack,
            Event::ClientConnected(_) => EventKind::ClientConnected,
            Event::ClientDisconnected(_) => EventKind::ClientDisconnected,
            Event::ClientSubscribe { .. } => EventKind::ClientSubscribe,
            Event::ClientUnsubscribe { .. } => EventKind::ClientUnsubscribe,
            Event::SessionSubscribed(_) => EventKind::SessionSubscribed,
            Event::SessionUnsubscribed(_) => EventKind::SessionUnsubscribed,
            Event::SessionTerminated { .. } => EventKind::SessionTerminated,
            Event::MessagePublish { .. } => EventKind::MessagePublish,
            Event::MessageDelivered { .. } => EventKind::MessageDelivered,
            Event::MessageAcked { .. } => EventKind::MessageAcked,
            Event::MessageDropped { .. } => EventKind::MessageDropped,
        }
    }

    /// The message of a message event.
    pub fn message(&self) -> Option<&Arc<Message>> {
        match self {
            Event::MessagePublish { message, .. }
            | Event::MessageDelivered { message, .. }
            | Event::MessageAcked { message, .. }
            | Event::MessageDropped { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The client the event is about: the client of a client or session event, the receiver
    /// of `message.delivered`/`message.acked`, the publisher of `message.publish`/`dropped`.
    pub fn client_id(&self) -> &str {
        match self {
            Event::ClientConnect(info) | Event::ClientConnack { info, .. } => &info.client_id,
            Event::ClientConnected(event) => &event.client_id,
            Event::ClientDisconnected(event) => &event.client_id,
            Event::SessionSubscribed(event) => &event.client_id,
            Event::SessionUnsubscribed(event) => &event.client_id,
            Event::ClientSubscribe { client, .. }
            | Event::ClientUnsubscribe { client, .. }
            | Event::SessionTerminated { client, .. }
            | Event::MessageDelivered { client, .. }
            | Event::MessageAcked { client, .. } => &client.client_id,
            Event::MessagePublish { message, .. } | Event::MessageDropped { message, .. } => &message.from.client_id,
        }
    }
}

/// An extension observing the broker's events.
pub trait EventListener: Send + Sync + 'static {
    /// The events this listener wants; others are neither built nor passed to it. Read once,
    /// at registration.
    fn interests(&self) -> EventMask {
        EventMask::ALL
    }

    /// Called at the hook point, on the thread that got there (often with broker locks held):
    /// must not block. Clone what is needed into a queue of your own.
    fn on_event(&self, event: &Event);
}

struct Registered {
    interests: EventMask,
    listener: Arc<dyn EventListener>,
}

/// The registered listeners and the union of their interests.
#[derive(Default)]
pub struct Hooks {
    /// Union of every listener's interests: the hot path's one relaxed load.
    mask: AtomicU32,
    listeners: RwLock<Vec<Registered>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("listeners", &self.listeners.read().len())
            .field("mask", &EventMask(self.mask.load(Ordering::Relaxed)))
            .finish()
    }
}

impl Hooks {
    /// True when some listener wants events of `kind`. One relaxed atomic load: ask it before
    /// building an event.
    #[inline]
    pub fn wants(&self, kind: EventKind) -> bool {
        self.mask.load(Ordering::Relaxed) & kind.bit() != 0
    }

    /// Registers `listener` for the events of its [`EventListener::interests`].
    pub fn add(&self, listener: Arc<dyn EventListener>) {
        let interests = listener.interests();
        let mut listeners = self.listeners.write();
        listeners.push(Registered { interests, listener });
        self.update_mask(&listeners);
    }

    /// Unregisters `listener` (the same `Arc`); false when it was not registered.
    pub fn remove(&self, listener: &Arc<dyn EventListener>) -> bool {
        let mut listeners = self.listeners.write();
        let before = listeners.len();
        listeners.retain(|r| !Arc::ptr_eq(&r.listener, listener));
        self.update_mask(&listeners);
        listeners.len() != before
    }

    fn update_mask(&self, listeners: &[Registered]) {
        let mask = listeners.iter().fold(0, |mask, r| mask | r.interests.0);
        self.mask.store(mask, Ordering::Relaxed);
    }

    /// Passes `event` to every listener interested in its kind.
    pub fn emit(&self, event: &Event) {
        let kind = event.kind();
        for registered in self.listeners.read().iter() {
            if registered.interests.contains(kind) {
                registered.listener.on_event(event);
            }
        }
    }

    /// Builds the event with `build` and emits it, only if some listener wants `kind`.
    #[inline]
    pub fn emit_with(&self, kind: EventKind, build: impl FnOnce() -> Event) {
        if self.wants(kind) {
            let event = build();
            debug_assert_eq!(event.kind(), kind);
            self.emit(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Recorder {
        interests: Option<EventMask>,
        seen: Mutex<Vec<EventKind>>,
    }

    impl EventListener for Recorder {
        fn interests(&self) -> EventMask {
            self.interests.unwrap_or(EventMask::ALL)
        }
        fn on_event(&self, event: &Event) {
            self.seen.lock().push(event.kind());
        }
    }

    fn terminated() -> Event {
        Event::SessionTerminated {
            client: ClientRef {
                client_id: "c".into(),
                username: None,
            },
            reason: "normal",
            ts_ms: 0,
        }
    }

    #[test]
    fn names_round_trip_and_bits_are_distinct() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(EventKind::from_name("message.nope"), None);
        let all: EventMask = EventKind::ALL.into_iter().collect();
        assert_eq!(all, EventMask::ALL);
        assert!(!EventMask::NONE.contains(EventKind::MessagePublish));
    }

    #[test]
    fn without_listeners_no_event_is_built() {
        let hooks = Hooks::default();
        for kind in EventKind::ALL {
            assert!(!hooks.wants(kind));
            hooks.emit_with(kind, || panic!("built an event nobody wants"));
        }
    }

    #[test]
    fn listeners_see_only_what_they_asked_for() {
        let hooks = Hooks::default();
        let narrow = Arc::new(Recorder {
            interests: Some(EventMask::NONE.with(EventKind::SessionTerminated)),
            ..Recorder::default()
        });
        hooks.add(narrow.clone());
        assert!(hooks.wants(EventKind::SessionTerminated));
        assert!(!hooks.wants(EventKind::MessagePublish));
        hooks.emit_with(EventKind::MessagePublish, || panic!("not wanted"));
        hooks.emit_with(EventKind::SessionTerminated, terminated);
        assert_eq!(*narrow.seen.lock(), vec![EventKind::SessionTerminated]);

        let wide = Arc::new(Recorder::default());
        let wide_dyn: Arc<dyn EventListener> = wide.clone();
        hooks.add(wide_dyn.clone());
        assert!(hooks.wants(EventKind::MessagePublish));
        hooks.emit(&terminated());
        assert_eq!(narrow.seen.lock().len(), 2);
        assert_eq!(wide.seen.lock().len(), 1);

        assert!(hooks.remove(&wide_dyn));
        assert!(!hooks.remove(&wide_dyn));
        assert!(!hooks.wants(EventKind::MessagePublish));
    }
}
