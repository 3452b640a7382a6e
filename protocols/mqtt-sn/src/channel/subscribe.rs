//! SUBSCRIBE and UNSUBSCRIBE (EMQX's rules: `gateway-semantics.md` §1.7).

use std::time::Instant;

use bytestring::ByteString;
use portico_core::QoS;
use portico_core::auth::Action;
use portico_core::broker::RetainedOnSubscribe;
use portico_core::session::SubOptions;
use portico_core::topic::SubscriptionTopic;

use super::publish::sub_topic_name;
use super::{MqttSnChannel, Out, sn_qos};
use crate::packet::{Flags, Packet, ReturnCode, SnQoS, SubTopic};

impl MqttSnChannel {
    fn mount_filter(&self, filter: &str) -> ByteString {
        if self.settings.mountpoint.is_empty() {
            ByteString::from(filter)
        } else {
            ByteString::from(format!("{}{filter}", self.settings.mountpoint))
        }
    }

    pub(super) fn handle_subscribe(&mut self, flags: Flags, msg_id: u16, topic: SubTopic, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let qos = sn_qos(flags.qos).unwrap_or(QoS::AtMostOnce);
        let granted = Flags {
            qos: match qos {
                QoS::AtMostOnce => SnQoS::AtMostOnce,
                QoS::AtLeastOnce => SnQoS::AtLeastOnce,
                QoS::ExactlyOnce => SnQoS::ExactlyOnce,
            },
            ..Flags::default()
        };
        // SUBACK flags carry only the granted QoS (EMQX).
        let suback = |topic_id, code| Packet::SubAck {
            flags: granted,
            topic_id,
            msg_id,
            code,
        };
        let name = match sub_topic_name(self, &topic) {
            Ok(name) => name,
            Err(code) => return out.send(suback(0, code)),
        };
        let Ok(parsed) = SubscriptionTopic::parse(self.mount_filter(&name)) else {
            return out.send(suback(0, ReturnCode::NotSupported));
        };
        if parsed.filter.depth() > self.settings.max_topic_levels {
            return out.send(suback(0, ReturnCode::NotSupported));
        }
        let packet = Packet::Subscribe {
            flags,
            msg_id,
            topic: topic.clone(),
        };
        let Some((allowed, _)) = self.authorized(Action::Subscribe, parsed.filter.as_str(), packet) else {
            return;
        };
        if !allowed {
            return out.send(suback(0, ReturnCode::NotAuthorized));
        }
        // `client.subscribe` once allowed (a held SUBSCRIBE comes back through here), as MQTT's.
        self.ctx
            .hook_client_subscription(|| self.client_ref(), &name, Some(qos));
        // The id the client will see messages under: a plain name is registered now, a
        // predefined id is itself, wildcards and short names get 0 (announced by REGISTER or
        // sent by name later).
        let topic_id = match &topic {
            SubTopic::Predefined(id) => *id,
            SubTopic::Name(name) if !parsed.filter.has_wildcard() => {
                match self
                    .settings
                    .predefined
                    .id(name)
                    .or_else(|| self.registry.register(name))
                {
                    Some(id) => id,
                    None => return out.send(suback(0, ReturnCode::ExceedLimit)),
                }
            }
            _ => 0,
        };
        let options = SubOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            subscription_id: 0,
        };
        self.ctx.subscribe(&session, parsed, options, RetainedOnSubscribe::Send);
        self.send_durable(suback(topic_id, ReturnCode::Accepted), out);
        self.deliver_queued(now, out);
    }

    /// Always answered with UNSUBACK, known filter or not (EMQX).
    pub(super) fn handle_unsubscribe(&mut self, msg_id: u16, topic: SubTopic, out: &mut Out) {
        if let (Some(session), Ok(name)) = (self.session.clone(), sub_topic_name(self, &topic)) {
            self.ctx.hook_client_subscription(|| self.client_ref(), &name, None);
            let filter = self.mount_filter(&name);
            self.ctx.unsubscribe(&session, &filter);
        }
        out.send(Packet::UnsubAck { msg_id });
    }
}
