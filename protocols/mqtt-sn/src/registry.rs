//! Topic ids (MQTT-SN 1.2 §6.10–6.12, EMQX's rules in `gateway-semantics.md` §1.6).
//!
//! - Predefined ids (1..=1024) are global, from configuration, the same for every client.
//! - Dynamic ids are per channel, from 1025 upward to 65535, handed out on REGISTER (either
//!   direction) and kept until the channel ends. Exhausted → the caller refuses (REGACK 0x03,
//!   SUBACK 0x83).

use std::collections::HashMap;

use bytestring::ByteString;

/// The first dynamic id (the predefined range ends at 1024, as in EMQX).
pub const FIRST_DYNAMIC_ID: u16 = 1025;

/// The largest predefined id (EMQX's `SN_MAX_PREDEF_TOPIC_ID`).
pub const MAX_PREDEFINED_ID: u16 = 1024;

/// The configured predefined topics (`gateway.mqttsn.predefined`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Predefined {
    by_id: HashMap<u16, ByteString>,
    by_name: HashMap<ByteString, u16>,
}

/// Why a predefined topic list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PredefinedError {
    /// Outside 1..=1024.
    #[error("predefined topic id {0} is outside 1..={MAX_PREDEFINED_ID}")]
    IdOutOfRange(u32),
    /// The same id twice.
    #[error("predefined topic id {0} appears twice")]
    DuplicateId(u16),
    /// The same name twice.
    #[error("predefined topic {0:?} appears twice")]
    DuplicateName(String),
    /// Empty, or with wildcards.
    #[error("predefined topic {0:?} is not a topic name (empty, or with + or #)")]
    InvalidName(String),
}

impl Predefined {
    /// Builds the table from `(id, name)` pairs.
    pub fn new(entries: impl IntoIterator<Item = (u32, String)>) -> Result<Predefined, PredefinedError> {
        let mut table = Predefined::default();
        for (id, name) in entries {
            let id = u16::try_from(id)
                .ok()
                .filter(|id| (1..=MAX_PREDEFINED_ID).contains(id))
                .ok_or(PredefinedError::IdOutOfRange(id))?;
            if name.is_empty() || name.contains(['+', '#']) {
                return Err(PredefinedError::InvalidName(name));
            }
            let name = ByteString::from(name);
            if table.by_name.contains_key(&name) {
                return Err(PredefinedError::DuplicateName(name.to_string()));
            }
            if table.by_id.insert(id, name.clone()).is_some() {
                return Err(PredefinedError::DuplicateId(id));
            }
            table.by_name.insert(name, id);
        }
        Ok(table)
    }

    /// The topic of predefined id `id`.
    pub fn name(&self, id: u16) -> Option<&ByteString> {
        self.by_id.get(&id)
    }

    /// The predefined id of `name`.
    pub fn id(&self, name: &str) -> Option<u16> {
        self.by_name.get(name).copied()
    }

    /// Number of predefined topics.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when none are configured.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// One channel's dynamic topic ids.
#[derive(Debug, Default)]
pub struct Registry {
    by_id: HashMap<u16, ByteString>,
    by_name: HashMap<ByteString, u16>,
    /// The last id handed out; 0 before the first.
    last: u16,
}

impl Registry {
    /// The id of `name`, registering it if new; `None` when every dynamic id is taken.
    pub fn register(&mut self, name: &ByteString) -> Option<u16> {
        if let Some(&id) = self.by_name.get(name) {
            return Some(id);
        }
        let next = if self.last == 0 {
            FIRST_DYNAMIC_ID
        } else {
            self.last.checked_add(1)?
        };
        self.last = next;
        self.by_id.insert(next, name.clone());
        self.by_name.insert(name.clone(), next);
        Some(next)
    }

    /// The topic of dynamic id `id`.
    pub fn name(&self, id: u16) -> Option<&ByteString> {
        self.by_id.get(&id)
    }

    /// The dynamic id of `name`, if registered.
    pub fn id(&self, name: &str) -> Option<u16> {
        self.by_name.get(name).copied()
    }

    /// Forgets `id` (the client said it does not know it: PUBACK 0x02); a later delivery to its
    /// topic registers it again under a new id.
    pub fn forget(&mut self, id: u16) {
        if let Some(name) = self.by_id.remove(&id) {
            self.by_name.remove(&name);
        }
    }

    /// Number of registered topics.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when none are registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predefined_ids_are_checked() {
        let table = Predefined::new([(1, "a/b".to_owned()), (1024, "c".to_owned())]).expect("valid");
        assert_eq!(table.id("a/b"), Some(1));
        assert_eq!(table.name(1024).map(|n| n.to_string()), Some("c".to_owned()));
        assert_eq!(
            Predefined::new([(0, "x".to_owned())]),
            Err(PredefinedError::IdOutOfRange(0))
        );
        assert_eq!(
            Predefined::new([(1025, "x".to_owned())]),
            Err(PredefinedError::IdOutOfRange(1025))
        );
        assert_eq!(
            Predefined::new([(1, "x".to_owned()), (1, "y".to_owned())]),
            Err(PredefinedError::DuplicateId(1))
        );
        assert_eq!(
            Predefined::new([(1, "x".to_owned()), (2, "x".to_owned())]),
            Err(PredefinedError::DuplicateName("x".to_owned()))
        );
        assert!(matches!(
            Predefined::new([(1, "a/#".to_owned())]),
            Err(PredefinedError::InvalidName(_))
        ));
    }

    #[test]
    fn dynamic_ids_start_at_1025_and_run_out_at_65535() {
        let mut registry = Registry::default();
        let a = ByteString::from_static("a");
        assert_eq!(registry.register(&a), Some(1025));
        assert_eq!(registry.register(&a), Some(1025), "the same name keeps its id");
        assert_eq!(registry.register(&ByteString::from_static("b")), Some(1026));
        registry.last = u16::MAX - 1;
        assert_eq!(registry.register(&ByteString::from_static("y")), Some(u16::MAX));
        assert_eq!(registry.register(&ByteString::from_static("z")), None, "exhausted");
        registry.forget(1025);
        assert_eq!(registry.name(1025), None);
        assert_eq!(registry.id("a"), None);
    }
}
