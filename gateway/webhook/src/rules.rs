//! `[[webhook.rules]]`: which events are forwarded (EMQX `web.hook.rule.<event>.<n>`).

use portico_core::TopicFilter;
use portico_core::hooks::{Event, EventKind};

/// One rule: forward events of `event`, for message events only those whose topic matches
/// `topic` when one is given. An event is forwarded when any rule matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The event (`message.publish`, `client.connected`, ...).
    pub event: EventKind,
    /// For message events: only topics matching this filter.
    pub topic: Option<TopicFilter>,
}

/// Why a rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `event` names no hook point.
    #[error("unknown event {0:?}; expected one of {list}", list = event_names())]
    UnknownEvent(String),
    /// `topic` is not a valid topic filter.
    #[error("{0:?} is not a valid topic filter")]
    BadTopic(String),
    /// `topic` on an event that has no message.
    #[error("a topic filter applies to message events only, not to {0}")]
    TopicOnClientEvent(EventKind),
}

fn event_names() -> String {
    EventKind::ALL.map(EventKind::name).join(", ")
}

impl Rule {
    /// A rule from its configured `event` and optional `topic`.
    pub fn new(event: &str, topic: Option<&str>) -> Result<Rule, RuleError> {
        let event = EventKind::from_name(event).ok_or_else(|| RuleError::UnknownEvent(event.to_owned()))?;
        let topic = match topic {
            None => None,
            Some(_) if !is_message_event(event) => return Err(RuleError::TopicOnClientEvent(event)),
            Some(filter) => Some(TopicFilter::new(filter).map_err(|_| RuleError::BadTopic(filter.to_owned()))?),
        };
        Ok(Rule { event, topic })
    }

    /// True when `event` is to be forwarded under this rule.
    pub fn matches(&self, event: &Event) -> bool {
        if event.kind() != self.event {
            return false;
        }
        match (&self.topic, event.message()) {
            (Some(filter), Some(message)) => filter.matches(&message.topic),
            _ => true,
        }
    }
}

fn is_message_event(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::MessagePublish | EventKind::MessageDelivered | EventKind::MessageAcked | EventKind::MessageDropped
    )
}

/// The rules EMQX ships enabled: every event but `message.dropped`, no topic filter.
pub fn default_rules() -> Vec<Rule> {
    EventKind::ALL
        .into_iter()
        .filter(|kind| *kind != EventKind::MessageDropped)
        .map(|event| Rule { event, topic: None })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use portico_core::message::Origin;
    use portico_core::topic::TopicName;
    use portico_core::{Message, QoS};

    use super::*;

    fn publish(topic: &str) -> Event {
        let topic = TopicName::new(topic.to_owned()).unwrap_or_else(|e| panic!("{e}"));
        let origin = Origin {
            client_id: "c".into(),
            protocol: "mqtt",
        };
        Event::MessagePublish {
            message: Arc::new(Message::new(0, topic, Bytes::new(), QoS::AtMostOnce, false, origin)),
            from_username: None,
        }
    }

    #[test]
    fn topic_filters_match_like_emqx_example() {
        // The seed's example: rules `a/b/c` and `foo/#` forward `foo/bar`, not `a/b/d` or `fo/bar`.
        let rules = [
            Rule::new("message.publish", Some("a/b/c")),
            Rule::new("message.publish", Some("foo/#")),
        ]
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")));
        let forwarded = |topic: &str| rules.iter().any(|r| r.matches(&publish(topic)));
        assert!(forwarded("foo/bar"));
        assert!(forwarded("a/b/c"));
        assert!(!forwarded("a/b/d"));
        assert!(!forwarded("fo/bar"));
    }

    #[test]
    fn bad_rules_say_why() {
        assert!(matches!(
            Rule::new("message.nope", None),
            Err(RuleError::UnknownEvent(_))
        ));
        assert!(matches!(
            Rule::new("message.publish", Some("a/#/b")),
            Err(RuleError::BadTopic(_))
        ));
        assert_eq!(
            Rule::new("client.connected", Some("a")),
            Err(RuleError::TopicOnClientEvent(EventKind::ClientConnected))
        );
        let unknown = Rule::new("x", None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(unknown.contains("client.connect,"), "{unknown}");
    }

    #[test]
    fn rules_match_their_event_only() {
        let rule = Rule::new("message.delivered", None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!rule.matches(&publish("a")));
        assert_eq!(default_rules().len(), EventKind::ALL.len() - 1);
    }
}
