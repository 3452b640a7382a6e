//! SUBSCRIBE and UNSUBSCRIBE.

use std::time::Instant;

use bytestring::ByteString;
use portico_core::auth::{Action, DenyAction};
use portico_core::broker::RetainedOnSubscribe;
use portico_core::hooks::{Event, EventKind};
use portico_core::message::now_millis;
use portico_core::session::SubOptions;
use portico_core::sys::{SubscribedEvent, UnsubscribedEvent};
use portico_core::topic::{SubscriptionTopic, TopicError};

use super::verdict::{Authz, Held};
use super::{MqttChannel, Out};
use crate::packet::{
    AckProperties, Packet, QoS, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use crate::reason::ReasonCode;

impl MqttChannel {
    pub(super) fn handle_subscribe(&mut self, subscribe: Subscribe, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        // Every filter is authorized before any is subscribed: if an answer has to wait, the
        // whole SUBSCRIBE is held and replayed with the answers.
        if self.authorize_filters(subscribe.filters.iter().map(|(filter, _)| filter.clone()), now) {
            return self.hold(Held::Packet(Box::new(Packet::Subscribe(subscribe))));
        }
        // Fired once the answers are in (a held SUBSCRIBE comes back through here), not
        // before authorization as EMQX does: an observer cannot change the filters anyway.
        if self.ctx.hooks().wants(EventKind::ClientSubscribe)
            && let Some(client) = self.client_ref()
        {
            for (filter, options) in &subscribe.filters {
                self.ctx.hooks().emit(&Event::ClientSubscribe {
                    client: client.clone(),
                    topic: filter.clone(),
                    qos: options.qos,
                });
            }
        }
        let subscription_id = subscribe.properties.subscription_identifier.unwrap_or(0);
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        for (filter, options) in subscribe.filters {
            // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
            if options.no_local && (filter.starts_with("$share/") || filter.starts_with("$queue/")) {
                return self.violation(ReasonCode::ProtocolError, "No Local set on a shared subscription", out);
            }
            let code = match self.subscribe_one(&session, filter, options, subscription_id) {
                Ok(code) => code,
                Err(Denied(filter)) => {
                    return self.deny_and_disconnect(format!("subscription to {filter:?} not authorized"), out);
                }
            };
            reason_codes.push(code);
        }
        self.forget_answers();
        self.send_durable(
            Packet::SubAck(SubAck {
                packet_id: subscribe.packet_id,
                reason_codes,
                properties: AckProperties::default(),
            }),
            out,
        );
    }

    /// Asks about every filter (as `subscribe_one` will see it) and keeps the answers for it.
    /// True when an answer has to wait.
    fn authorize_filters(&mut self, filters: impl Iterator<Item = ByteString>, now: Instant) -> bool {
        let mut waits = false;
        for filter in filters {
            let filter = self.rewrite_filter(filter);
            let Ok(topic) = SubscriptionTopic::parse(self.mount_filter(&filter)) else {
                continue;
            };
            // Not cached: a SUBSCRIBE is checked once, and a cache made for it would cost
            // every idle subscriber its allocation. PUBLISH checks repeat and are cached.
            waits |= self.check_authz(Action::Subscribe, topic.filter.as_str(), false, true, now) == Authz::Pending;
        }
        waits
    }

    /// Subscribes to one filter; returns the SUBACK code (granted QoS or the failure), or
    /// `Denied` when authorization refused it and the client is to be disconnected.
    fn subscribe_one(
        &mut self,
        session: &std::sync::Arc<portico_core::session::Session>,
        filter: ByteString,
        options: SubscriptionOptions,
        subscription_id: u32,
    ) -> Result<ReasonCode, Denied> {
        let filter = self.rewrite_filter(filter);
        let mounted = self.mount_filter(&filter);
        let topic = match SubscriptionTopic::parse(mounted) {
            Ok(topic) => topic,
            Err(TopicError::InvalidSharedSubscription) => return Ok(ReasonCode::TopicFilterInvalid),
            Err(_) => return Ok(ReasonCode::TopicFilterInvalid),
        };
        if topic.filter.depth() > self.settings.max_topic_levels {
            return Ok(ReasonCode::TopicFilterInvalid);
        }
        if topic.share_group.is_some() && !self.settings.shared_subscription {
            return Ok(ReasonCode::SharedSubscriptionsNotSupported);
        }
        if topic.filter.has_wildcard() && !self.settings.wildcard_subscription {
            return Ok(ReasonCode::WildcardSubscriptionsNotSupported);
        }
        {
            let state = session.lock();
            if !state.subscriptions.contains_key(&topic.original)
                && state.subscriptions.len() >= self.settings.max_subscriptions
            {
                return Ok(ReasonCode::QuotaExceeded);
            }
        }
        // Answered by `authorize_filters` before.
        if self.check_authz(Action::Subscribe, topic.filter.as_str(), false, false, Instant::now()) != Authz::Allowed {
            if self.ctx.deny_action() == DenyAction::Disconnect {
                return Err(Denied(topic.filter.as_str().to_owned()));
            }
            // 3.x has only 0x80 (the codec maps every failure to it).
            return Ok(self.settings.suback_deny_code);
        }
        let qos = options.qos.min(self.settings.max_qos_allowed);
        let retained = match options.retain_handling {
            RetainHandling::SendAtSubscribe => RetainedOnSubscribe::Send,
            RetainHandling::SendIfNew => RetainedOnSubscribe::SendIfNew,
            RetainHandling::DoNotSend => RetainedOnSubscribe::DoNotSend,
        };
        let loop_ignored = self.settings.ignore_loop_deliver && !self.version.is_v5();
        let sub_options = SubOptions {
            qos,
            no_local: options.no_local || loop_ignored,
            retain_as_published: options.retain_as_published,
            subscription_id,
        };
        let existed = self.ctx.subscribe(session, topic, sub_options, retained);
        if let Some(client) = self.client() {
            self.ctx.sys_subscribed(&SubscribedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: "mqtt",
                topic: filter.to_string(),
                qos,
                retain_handling: options.retain_handling as u8,
                retain_as_published: options.retain_as_published,
                no_local: options.no_local,
                is_new: !existed,
                subscription_id: (subscription_id != 0).then_some(subscription_id),
                ts_ms: now_millis(),
            });
        }
        Ok(match qos {
            QoS::AtMostOnce => ReasonCode::GRANTED_QOS0,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        })
    }

    pub(super) fn handle_unsubscribe(&mut self, unsubscribe: Unsubscribe, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        if self.ctx.hooks().wants(EventKind::ClientUnsubscribe)
            && let Some(client) = self.client_ref()
        {
            for filter in &unsubscribe.filters {
                self.ctx.hooks().emit(&Event::ClientUnsubscribe {
                    client: client.clone(),
                    topic: filter.clone(),
                });
            }
        }
        let reason_codes = unsubscribe
            .filters
            .iter()
            .map(|filter| {
                let filter = self.rewrite_filter(filter.clone());
                let mounted = self.mount_filter(&filter);
                if !self.ctx.unsubscribe(&session, &mounted) {
                    return ReasonCode::NoSubscriptionExisted;
                }
                if let Some(client) = self.client() {
                    self.ctx.sys_unsubscribed(&UnsubscribedEvent {
                        client_id: client.client_id.to_string(),
                        username: client.username.as_ref().map(|u| u.to_string()),
                        protocol: "mqtt",
                        topic: filter.to_string(),
                        ts_ms: now_millis(),
                    });
                }
                ReasonCode::Success
            })
            .collect();
        self.send_durable(
            Packet::UnsubAck(UnsubAck {
                packet_id: unsubscribe.packet_id,
                // 3.x UNSUBACK carries no reason codes; the codec drops them.
                reason_codes,
                properties: AckProperties::default(),
            }),
            out,
        );
    }

    /// Applies the topic-rewrite rules to a filter the client sent (before the mountpoint).
    fn rewrite_filter(&self, filter: ByteString) -> ByteString {
        let rewritten = self
            .client()
            .and_then(|c| self.ctx.rewrite_filter(&filter, &c.client_id, c.username.as_deref()));
        rewritten.map_or(filter, ByteString::from)
    }

    /// Subscribes the client to the broker's auto-subscribe topics (EMQX `auto_subscribe`),
    /// through the same checks as its own SUBSCRIBE.
    pub(super) fn auto_subscribe(&mut self, now: Instant) {
        let (Some(session), Some(client)) = (self.session.clone(), self.client.clone()) else {
            return;
        };
        let subscriptions = self
            .ctx
            .auto_subscriptions(&client.client_id, client.username.as_deref(), self.peer);
        if self.authorize_filters(subscriptions.iter().map(|(f, _)| ByteString::from(f.as_str())), now) {
            return self.hold(Held::AutoSubscribe);
        }
        for (filter, rule) in subscriptions {
            let options = SubscriptionOptions {
                qos: rule.qos,
                no_local: rule.no_local,
                retain_as_published: rule.retain_as_published,
                retain_handling: match rule.retain_handling {
                    1 => RetainHandling::SendIfNew,
                    2 => RetainHandling::DoNotSend,
                    _ => RetainHandling::SendAtSubscribe,
                },
            };
            match self.subscribe_one(&session, ByteString::from(filter.as_str()), options, 0) {
                Ok(code) if !code.is_error() => {}
                Ok(code) => tracing::warn!(client_id = %client.client_id, %filter, ?code, "auto-subscribe refused"),
                // Configured by the operator, not asked for by the client: refused, not a reason
                // to disconnect.
                Err(Denied(_)) => {
                    tracing::warn!(client_id = %client.client_id, %filter, "auto-subscribe not authorized")
                }
            }
        }
        self.forget_answers();
    }

    /// Applies the mountpoint to a filter, keeping a `$share/{group}/` or `$queue/` prefix in
    /// front: `$share/g/t` under mountpoint `m/` is `$share/g/m/t`.
    fn mount_filter(&self, filter: &str) -> ByteString {
        let mountpoint = self.mountpoint();
        if mountpoint.is_empty() {
            return ByteString::from(filter);
        }
        if let Some(rest) = filter.strip_prefix("$share/")
            && let Some((group, inner)) = rest.split_once('/')
        {
            return ByteString::from(format!("$share/{group}/{mountpoint}{inner}"));
        }
        if let Some(inner) = filter.strip_prefix("$queue/") {
            return ByteString::from(format!("$queue/{mountpoint}{inner}"));
        }
        ByteString::from(format!("{mountpoint}{filter}"))
    }
}

/// A subscription authorization refused while `deny_action = disconnect` (the filter).
struct Denied(String);
