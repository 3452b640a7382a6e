//! The retained-message map, counting the broker's own `$SYS` entries apart so that they do
//! not use up the clients' `retainer.max_retained_messages`.

use std::collections::HashMap;
use std::collections::hash_map;
use std::sync::Arc;

use bytestring::ByteString;

use super::features::SYS_PROTOCOL;
use crate::message::Message;

fn is_sys(message: &Message) -> bool {
    message.from.protocol == SYS_PROTOCOL
}

/// Topic → retained message.
#[derive(Debug, Default)]
pub(super) struct RetainedMap {
    messages: HashMap<ByteString, Arc<Message>>,
    /// Entries published by the broker itself.
    sys: usize,
}

impl RetainedMap {
    /// Stores `message` under `topic`; true if the topic had none.
    pub(super) fn insert(&mut self, topic: ByteString, message: Arc<Message>) -> bool {
        if is_sys(&message) {
            self.sys += 1;
        }
        match self.messages.insert(topic, message) {
            Some(old) => {
                if is_sys(&old) {
                    self.sys -= 1;
                }
                false
            }
            None => true,
        }
    }

    /// Removes the message of `topic`.
    pub(super) fn remove(&mut self, topic: &str) -> Option<Arc<Message>> {
        let old = self.messages.remove(topic)?;
        if is_sys(&old) {
            self.sys -= 1;
        }
        Some(old)
    }

    /// The message of `topic`.
    pub(super) fn get(&self, topic: &str) -> Option<Arc<Message>> {
        self.messages.get(topic).cloned()
    }

    /// True if `topic` has a retained message.
    pub(super) fn contains(&self, topic: &str) -> bool {
        self.messages.contains_key(topic)
    }

    /// Entries stored for clients (not the broker's `$SYS` ones).
    pub(super) fn client_len(&self) -> usize {
        self.messages.len() - self.sys
    }

    /// All entries.
    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Every (topic, message).
    pub(super) fn iter(&self) -> hash_map::Iter<'_, ByteString, Arc<Message>> {
        self.messages.iter()
    }

    /// The topics of the entries stored for clients.
    pub(super) fn client_topics(&self) -> Vec<ByteString> {
        self.messages
            .iter()
            .filter(|(_, m)| !is_sys(m))
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// Every message.
    pub(super) fn values(&self) -> hash_map::Values<'_, ByteString, Arc<Message>> {
        self.messages.values()
    }
}
