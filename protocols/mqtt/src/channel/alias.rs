//! MQTT 5 topic aliases in both directions (5.0 §3.3.2.3.4).

use std::collections::HashMap;

use bytestring::ByteString;

use crate::reason::ReasonCode;

/// Most bytes of topic names one connection's aliases may hold, per direction. Aliases exist
/// to shorten long, repeated topics; without a cap, 65,535 aliases of 64 KB topics would let one
/// client pin 4 GB.
const MAX_ALIAS_BYTES: usize = 1024 * 1024;

/// Aliases the client set up for its PUBLISHes to us.
#[derive(Debug, Default)]
pub(super) struct IncomingAliases {
    topics: HashMap<u16, ByteString>,
    bytes: usize,
}

impl IncomingAliases {
    /// The topic of a PUBLISH carrying `alias` (and `topic`, possibly empty): records a new
    /// mapping or resolves an existing one. `max` is the Topic Alias Maximum we announced.
    pub(super) fn resolve(
        &mut self,
        alias: u16,
        topic: ByteString,
        max: u16,
    ) -> Result<ByteString, (ReasonCode, String)> {
        // [MQTT-3.3.2-8] alias 0 and aliases above our maximum are invalid.
        if alias == 0 || alias > max {
            return Err((
                ReasonCode::TopicAliasInvalid,
                format!("topic alias {alias} out of range 1..={max}"),
            ));
        }
        if topic.is_empty() {
            return self
                .topics
                .get(&alias)
                .cloned()
                .ok_or_else(|| (ReasonCode::ProtocolError, format!("unknown topic alias {alias}")));
        }
        // Own copy: an alias must not pin the read buffer it arrived in.
        let owned = ByteString::from(&*topic);
        let replaced = self.topics.insert(alias, owned).map_or(0, |t| t.len());
        self.bytes = self.bytes - replaced + topic.len();
        if self.bytes > MAX_ALIAS_BYTES {
            return Err((
                ReasonCode::QuotaExceeded,
                "topic aliases hold too many bytes".to_string(),
            ));
        }
        Ok(topic)
    }
}

/// Aliases we assign for PUBLISHes to the client, up to the client's Topic Alias Maximum.
/// Aliases are assigned first come, first served and never reassigned: once they are all taken
/// (or the byte cap is reached), other topics are sent in full.
#[derive(Debug, Default)]
pub(super) struct OutgoingAliases {
    max: u16,
    aliases: HashMap<ByteString, u16>,
    bytes: usize,
}

/// How to send a topic to the client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OutgoingAlias {
    /// No alias: send the topic.
    None,
    /// A new alias: send the topic and the alias.
    Assign(u16),
    /// A known alias: send an empty topic and the alias.
    Use(u16),
}

impl OutgoingAliases {
    /// Aliases for a client whose Topic Alias Maximum is `max` (0: none).
    pub(super) fn new(max: u16) -> OutgoingAliases {
        OutgoingAliases {
            max,
            aliases: HashMap::new(),
            bytes: 0,
        }
    }

    /// How to send `topic`. [MQTT-3.3.2-9] never above the client's maximum.
    pub(super) fn alias_for(&mut self, topic: &str) -> OutgoingAlias {
        if self.max == 0 {
            return OutgoingAlias::None;
        }
        if let Some(&alias) = self.aliases.get(topic) {
            return OutgoingAlias::Use(alias);
        }
        let next = self.aliases.len() + 1;
        if next > usize::from(self.max) || self.bytes + topic.len() > MAX_ALIAS_BYTES {
            return OutgoingAlias::None;
        }
        let alias = next as u16;
        self.aliases.insert(ByteString::from(topic), alias);
        self.bytes += topic.len();
        OutgoingAlias::Assign(alias)
    }

    /// Takes back the alias just assigned to `topic` when its PUBLISH could not be sent.
    pub(super) fn unassign(&mut self, topic: &str) {
        if let Some(alias) = self.aliases.get(topic).copied()
            && usize::from(alias) == self.aliases.len()
        {
            self.aliases.remove(topic);
            self.bytes -= topic.len();
        }
    }

    /// Number of aliases assigned.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.aliases.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_aliases_are_assigned_up_to_the_maximum() {
        let mut aliases = OutgoingAliases::new(2);
        assert_eq!(aliases.alias_for("a"), OutgoingAlias::Assign(1));
        assert_eq!(aliases.alias_for("a"), OutgoingAlias::Use(1));
        assert_eq!(aliases.alias_for("b"), OutgoingAlias::Assign(2));
        assert_eq!(aliases.alias_for("c"), OutgoingAlias::None, "all aliases taken");
        assert_eq!(aliases.alias_for("b"), OutgoingAlias::Use(2));
        assert_eq!(aliases.len(), 2);
        assert_eq!(OutgoingAliases::new(0).alias_for("a"), OutgoingAlias::None);
    }

    #[test]
    fn incoming_aliases_resolve_and_refuse() {
        let mut aliases = IncomingAliases::default();
        assert_eq!(
            aliases.resolve(1, "t/1".into(), 5).map(|t| t.to_string()),
            Ok("t/1".to_string())
        );
        assert_eq!(
            aliases.resolve(1, "".into(), 5).map(|t| t.to_string()),
            Ok("t/1".to_string())
        );
        assert_eq!(
            aliases.resolve(2, "".into(), 5).map_err(|e| e.0),
            Err(ReasonCode::ProtocolError)
        );
        assert_eq!(
            aliases.resolve(0, "x".into(), 5).map_err(|e| e.0),
            Err(ReasonCode::TopicAliasInvalid)
        );
        assert_eq!(
            aliases.resolve(6, "x".into(), 5).map_err(|e| e.0),
            Err(ReasonCode::TopicAliasInvalid)
        );
    }

    #[test]
    fn alias_bytes_are_capped() {
        let mut aliases = IncomingAliases::default();
        let long: String = "x".repeat(60_000);
        let mut refused = false;
        for alias in 1..=100u16 {
            if aliases.resolve(alias, ByteString::from(long.clone()), 100).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "100 x 60 KB exceeds the cap");
    }
}
