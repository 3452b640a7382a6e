//! Portico's protocol-neutral core.
//!
//! Every frontend (MQTT, MQTT-SN, CoAP, LwM2M, STOMP) translates its wire protocol into the types
//! of this crate and reaches the broker only through [`Ctx`]. The core owns no sockets and no
//! disk: drivers in `portico-transport` do I/O, and the [`store::Store`] trait hides persistence.
//!
//! # Layout
//! - [`message`]: [`Message`], [`QoS`], message ids and MQTT 5 message properties.
//! - [`topic`]: topic name and filter validation, matching, shared-subscription parsing.
//! - [`router`]: the subscription index (exact map + wildcard trie) and fan-out.
//! - [`session`]: session state that outlives a connection (subscriptions, queue, inflight);
//!   [`submap`] holds its subscriptions compactly.
//! - [`broker`]: the broker itself: session registry, retained messages, wills, expiry.
//! - [`ctx`]: [`Ctx`], the only door from a channel into the broker.
//! - [`channel`]: the sans-I/O [`channel::Channel`] and [`channel::Codec`] traits drivers run.
//! - [`conn`]: the per-connection handle through which the broker wakes and kicks connections.
//! - [`auth`]: authentication and authorization traits.
//! - [`store`]: the persistence seam (ops, records, the `Store` trait); [`journal`]: the
//!   ordered op stream and its group-committing writer thread.
//! - [`metrics`]: the broker-wide counters.
//! - [`alarms`]: the alarm registry (activate/deactivate, bounded history, `$SYS` messages).
//! - [`hooks`]: the hook points (EMQX event names) extensions observe through
//!   [`hooks::EventListener`].
//!
//! And [`wake`]: deferred, batched wake-ups of subscriber connections.

pub mod alarms;
pub mod auth;
pub mod autosub;
pub mod banned;
pub mod broker;
pub mod channel;
pub mod conn;
pub mod ctx;
pub mod datagram;
pub mod delayed;
pub mod hooks;
pub mod journal;
pub mod message;
pub mod metrics;
pub mod rewrite;
pub mod router;
pub mod session;
pub mod store;
pub mod submap;
pub mod sys;
pub mod topic;
pub mod verdict;
pub mod wake;

pub use broker::{Broker, BrokerConfig, Extensions};
pub use ctx::Ctx;
pub use message::{Message, MessageId, MessageProperties, QoS};
pub use topic::{TopicFilter, TopicName};
