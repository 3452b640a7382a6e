//! A session's subscriptions: filter → options.
//!
//! Nearly every device subscribes to a handful of filters, and an idle session should cost
//! little: a `HashMap` allocates room for at least three entries plus control bytes (about
//! 180 bytes for one subscription) and carries its hasher state inline. Up to
//! [`SMALL_MAX`] subscriptions live in an exactly sized vector searched linearly; past that
//! the map switches to a boxed `HashMap`, so a client with thousands of subscriptions still
//! gets constant-time lookups.

use std::collections::HashMap;

use bytestring::ByteString;

use crate::session::SubOptions;

/// Subscriptions kept in a vector up to this count.
const SMALL_MAX: usize = 8;

/// Filter → options, see the module docs.
#[derive(Debug)]
pub enum SubscriptionMap {
    /// At most [`SMALL_MAX`] entries, in insertion order.
    Small(Vec<(ByteString, SubOptions)>),
    /// Many entries.
    Large(Box<HashMap<ByteString, SubOptions>>),
}

impl Default for SubscriptionMap {
    fn default() -> Self {
        SubscriptionMap::Small(Vec::new())
    }
}

impl SubscriptionMap {
    /// An empty map (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        match self {
            SubscriptionMap::Small(entries) => entries.len(),
            SubscriptionMap::Large(map) => map.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The options of `filter`'s subscription.
    pub fn get(&self, filter: &str) -> Option<&SubOptions> {
        match self {
            SubscriptionMap::Small(entries) => entries.iter().find(|(f, _)| f == filter).map(|(_, o)| o),
            SubscriptionMap::Large(map) => map.get(filter),
        }
    }

    /// True if `filter` is subscribed.
    pub fn contains_key(&self, filter: &str) -> bool {
        self.get(filter).is_some()
    }

    /// Adds or replaces `filter`'s options; returns the previous ones.
    pub fn insert(&mut self, filter: ByteString, options: SubOptions) -> Option<SubOptions> {
        match self {
            SubscriptionMap::Small(entries) => {
                if let Some((_, existing)) = entries.iter_mut().find(|(f, _)| *f == filter) {
                    return Some(std::mem::replace(existing, options));
                }
                if entries.len() < SMALL_MAX {
                    // Grow one entry at a time: the vector stays exactly as large as needed.
                    entries.reserve_exact(1);
                    entries.push((filter, options));
                    return None;
                }
                let mut map: HashMap<ByteString, SubOptions> = entries.drain(..).collect();
                map.insert(filter, options);
                *self = SubscriptionMap::Large(Box::new(map));
                None
            }
            SubscriptionMap::Large(map) => map.insert(filter, options),
        }
    }

    /// Removes `filter`'s subscription; returns its options.
    pub fn remove(&mut self, filter: &str) -> Option<SubOptions> {
        match self {
            SubscriptionMap::Small(entries) => {
                let index = entries.iter().position(|(f, _)| f == filter)?;
                let (_, options) = entries.remove(index);
                if entries.is_empty() {
                    *entries = Vec::new();
                }
                Some(options)
            }
            SubscriptionMap::Large(map) => map.remove(filter),
        }
    }

    /// Every subscription, in no particular order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&ByteString, &SubOptions)> + '_> {
        match self {
            SubscriptionMap::Small(entries) => Box::new(entries.iter().map(|(f, o)| (f, o))),
            SubscriptionMap::Large(map) => Box::new(map.iter()),
        }
    }

    /// Removes and returns every subscription, leaving the map empty and unallocated.
    pub fn take_all(&mut self) -> Vec<(ByteString, SubOptions)> {
        match std::mem::take(self) {
            SubscriptionMap::Small(entries) => entries,
            SubscriptionMap::Large(map) => map.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::QoS;

    fn opts(qos: QoS) -> SubOptions {
        SubOptions {
            qos,
            ..SubOptions::default()
        }
    }

    #[test]
    fn insert_replace_remove_in_the_small_form() {
        let mut map = SubscriptionMap::new();
        assert!(map.is_empty());
        assert_eq!(map.insert("a/b".into(), opts(QoS::AtMostOnce)), None);
        assert_eq!(
            map.insert("a/b".into(), opts(QoS::AtLeastOnce)),
            Some(opts(QoS::AtMostOnce))
        );
        assert_eq!(map.len(), 1);
        assert_eq!(map.get("a/b"), Some(&opts(QoS::AtLeastOnce)));
        assert!(!map.contains_key("a/c"));
        assert_eq!(map.remove("a/c"), None);
        assert_eq!(map.remove("a/b"), Some(opts(QoS::AtLeastOnce)));
        assert!(map.is_empty());
        assert!(matches!(&map, SubscriptionMap::Small(v) if v.capacity() == 0));
    }

    #[test]
    fn switches_to_a_hash_map_past_the_small_limit_and_keeps_every_entry() {
        let mut map = SubscriptionMap::new();
        for i in 0..100 {
            assert_eq!(map.insert(format!("t/{i}").into(), opts(QoS::AtLeastOnce)), None);
            assert_eq!(map.len(), i + 1);
        }
        assert!(matches!(map, SubscriptionMap::Large(_)));
        for i in 0..100 {
            assert!(map.contains_key(&format!("t/{i}")), "t/{i} lost");
        }
        assert_eq!(map.iter().count(), 100);
        assert_eq!(map.remove("t/7"), Some(opts(QoS::AtLeastOnce)));
        let mut all: Vec<String> = map.take_all().into_iter().map(|(f, _)| f.to_string()).collect();
        all.sort();
        assert_eq!(all.len(), 99);
        assert!(!all.contains(&"t/7".to_owned()));
        assert!(map.is_empty());
    }
}
