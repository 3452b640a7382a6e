//! The subscription index: exact topics in a hash map, wildcard filters in a trie of levels with
//! separate `+` and `#` children, and shared-subscription groups at either.
//!
//! Publishing takes the read lock; subscribing and unsubscribing take the write lock. Lock
//! order: router, then a session's state lock (the router delivers into sessions while holding
//! its read lock), never the reverse.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytestring::ByteString;
use parking_lot::RwLock;

use crate::session::{Session, SessionId, SubOptions};
use crate::topic::{SubscriptionTopic, TopicName};

/// One subscriber of one filter.
#[derive(Debug, Clone)]
pub struct SubEntry {
    /// The subscribing session.
    pub session: Arc<Session>,
    /// Its options for this filter.
    pub options: SubOptions,
}

#[derive(Debug)]
struct ShareGroup {
    name: ByteString,
    members: Vec<SubEntry>,
    next: AtomicUsize,
}

/// The subscribers of one filter.
#[derive(Debug, Default)]
struct FilterSubs {
    plain: Vec<SubEntry>,
    groups: Vec<ShareGroup>,
}

impl FilterSubs {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }

    /// Adds or replaces `session`'s entry. Returns true if it already existed.
    fn insert(&mut self, group: Option<&ByteString>, entry: SubEntry) -> bool {
        let list = match group {
            None => &mut self.plain,
            Some(name) => {
                let index = match self.groups.iter().position(|g| g.name == name) {
                    Some(index) => index,
                    None => {
                        self.groups.push(ShareGroup {
                            name: name.clone(),
                            members: Vec::new(),
                            next: AtomicUsize::new(0),
                        });
                        self.groups.len() - 1
                    }
                };
                &mut self.groups[index].members
            }
        };
        match list.iter_mut().find(|e| e.session.id() == entry.session.id()) {
            Some(existing) => {
                *existing = entry;
                true
            }
            None => {
                list.push(entry);
                false
            }
        }
    }

    /// Removes `session`'s entry. Returns true if it existed.
    fn remove(&mut self, group: Option<&ByteString>, session: SessionId) -> bool {
        match group {
            None => {
                let before = self.plain.len();
                self.plain.retain(|e| e.session.id() != session);
                before != self.plain.len()
            }
            Some(name) => {
                let Some(index) = self.groups.iter().position(|g| g.name == name) else {
                    return false;
                };
                let members = &mut self.groups[index].members;
                let before = members.len();
                members.retain(|e| e.session.id() != session);
                let removed = before != members.len();
                if members.is_empty() {
                    self.groups.swap_remove(index);
                }
                removed
            }
        }
    }

    /// Calls `f` for every plain subscriber and for one member of each shared group.
    fn visit(&self, f: &mut impl FnMut(&SubEntry)) {
        for entry in &self.plain {
            f(entry);
        }
        for group in &self.groups {
            // Round robin among members; strategies beyond this come with shared-subscription
            // configuration.
            let n = group.members.len();
            if n > 0 {
                let index = group.next.fetch_add(1, Ordering::Relaxed) % n;
                f(&group.members[index]);
            }
        }
    }
}

#[derive(Debug, Default)]
struct TrieNode {
    children: HashMap<ByteString, TrieNode>,
    single: Option<Box<TrieNode>>,
    /// Subscribers of filters ending in `#` at this node.
    multi: FilterSubs,
    /// Subscribers of filters ending exactly at this node.
    here: FilterSubs,
}

impl TrieNode {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.single.is_none() && self.multi.is_empty() && self.here.is_empty()
    }

    fn subs_for_mut<'a>(&mut self, mut levels: impl Iterator<Item = &'a str>) -> &mut FilterSubs {
        match levels.next() {
            None => &mut self.here,
            Some("#") => &mut self.multi,
            Some("+") => self.single.get_or_insert_with(Default::default).subs_for_mut(levels),
            Some(level) => self
                .children
                .entry(ByteString::from(level))
                .or_default()
                .subs_for_mut(levels),
        }
    }

    /// Removes `session` from the filter at `levels`, pruning empty nodes. Returns true if it
    /// was subscribed.
    fn remove<'a>(
        &mut self,
        mut levels: impl Iterator<Item = &'a str>,
        group: Option<&ByteString>,
        session: SessionId,
    ) -> bool {
        match levels.next() {
            None => self.here.remove(group, session),
            Some("#") => self.multi.remove(group, session),
            Some("+") => {
                let Some(child) = self.single.as_mut() else {
                    return false;
                };
                let removed = child.remove(levels, group, session);
                if child.is_empty() {
                    self.single = None;
                }
                removed
            }
            Some(level) => {
                let Some(child) = self.children.get_mut(level) else {
                    return false;
                };
                let removed = child.remove(levels, group, session);
                if child.is_empty() {
                    self.children.remove(level);
                }
                removed
            }
        }
    }

    fn visit_matches(&self, levels: &[&str], is_root: bool, system_topic: bool, f: &mut impl FnMut(&SubEntry)) {
        // [MQTT-4.7.2-1] wildcards at the first level do not match `$` topics.
        let wildcards_allowed = !(is_root && system_topic);
        if wildcards_allowed {
            // [MQTT-4.7.1-2] `#` also matches the parent level: `sport/#` matches `sport`.
            self.multi.visit(f);
        }
        match levels.split_first() {
            None => self.here.visit(f),
            Some((level, rest)) => {
                if let Some(child) = self.children.get(*level) {
                    child.visit_matches(rest, false, system_topic, f);
                }
                if wildcards_allowed && let Some(single) = &self.single {
                    single.visit_matches(rest, false, system_topic, f);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct RouterInner {
    exact: HashMap<ByteString, FilterSubs>,
    trie: TrieNode,
    filters: usize,
}

/// The subscription index. See the module docs.
#[derive(Debug, Default)]
pub struct Router {
    inner: RwLock<RouterInner>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds (or updates the options of) `entry.session`'s subscription to `topic`. Returns true
    /// if the session was already subscribed to it.
    pub fn subscribe(&self, topic: &SubscriptionTopic, entry: SubEntry) -> bool {
        let mut inner = self.inner.write();
        let group = topic.share_group.as_ref();
        let existed = if topic.filter.has_wildcard() {
            inner.trie.subs_for_mut(topic.filter.split('/')).insert(group, entry)
        } else {
            let key = ByteString::from(topic.filter.as_str());
            inner.exact.entry(key).or_default().insert(group, entry)
        };
        if !existed {
            inner.filters += 1;
        }
        existed
    }

    /// Removes `session`'s subscription to `topic`. Returns true if it existed.
    pub fn unsubscribe(&self, topic: &SubscriptionTopic, session: SessionId) -> bool {
        let mut inner = self.inner.write();
        let group = topic.share_group.as_ref();
        let removed = if topic.filter.has_wildcard() {
            inner.trie.remove(topic.filter.split('/'), group, session)
        } else {
            let key = topic.filter.as_str();
            let Some(subs) = inner.exact.get_mut(key) else {
                return false;
            };
            let removed = subs.remove(group, session);
            if subs.is_empty() {
                inner.exact.remove(key);
            }
            removed
        };
        if removed {
            inner.filters -= 1;
        }
        removed
    }

    /// Calls `f` for every subscription matching `topic` (one member per shared group), while
    /// holding the read lock.
    pub fn visit_matches(&self, topic: &TopicName, mut f: impl FnMut(&SubEntry)) {
        let inner = self.inner.read();
        if let Some(subs) = inner.exact.get(topic.as_str()) {
            subs.visit(&mut f);
        }
        if !inner.trie.is_empty() {
            let levels: smallvec::SmallVec<[&str; 8]> = topic.split('/').collect();
            inner.trie.visit_matches(&levels, true, topic.is_system(), &mut f);
        }
    }

    /// Number of (filter, subscriber) pairs.
    pub fn len(&self) -> usize {
        self.inner.read().filters
    }

    /// True when nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionLimits;

    fn session(name: &str) -> Arc<Session> {
        Session::new(ByteString::from(name.to_string()), 0, SessionLimits::default())
    }

    fn sub(router: &Router, filter: &str, s: &Arc<Session>) {
        let topic = SubscriptionTopic::parse(filter.to_string()).expect("valid filter");
        router.subscribe(
            &topic,
            SubEntry {
                session: s.clone(),
                options: SubOptions::default(),
            },
        );
    }

    fn matched(router: &Router, topic: &str) -> Vec<String> {
        let topic = TopicName::new(topic.to_string()).expect("valid topic");
        let mut names = Vec::new();
        router.visit_matches(&topic, |e| names.push(e.session.client_id().to_string()));
        names.sort();
        names
    }

    #[test]
    fn exact_and_wildcard_filters_match() {
        let router = Router::new();
        let (a, b, c, d) = (session("a"), session("b"), session("c"), session("d"));
        sub(&router, "x/y/z", &a);
        sub(&router, "x/+/z", &b);
        sub(&router, "x/#", &c);
        sub(&router, "#", &d);
        assert_eq!(matched(&router, "x/y/z"), ["a", "b", "c", "d"]);
        assert_eq!(matched(&router, "x/q/z"), ["b", "c", "d"]);
        assert_eq!(matched(&router, "x"), ["c", "d"], "x/# matches its parent level");
        assert_eq!(matched(&router, "y"), ["d"]);
        assert_eq!(router.len(), 4);
    }

    #[test]
    fn system_topics_skip_leading_wildcards() {
        let router = Router::new();
        let (a, b, c) = (session("a"), session("b"), session("c"));
        sub(&router, "#", &a);
        sub(&router, "+/x", &b);
        sub(&router, "$SYS/#", &c);
        assert_eq!(matched(&router, "$SYS/x"), ["c"]);
    }

    #[test]
    fn unsubscribe_prunes_and_reports() {
        let router = Router::new();
        let a = session("a");
        sub(&router, "x/+/z", &a);
        sub(&router, "x/y", &a);
        let wild = SubscriptionTopic::parse("x/+/z").expect("valid");
        assert!(router.unsubscribe(&wild, a.id()));
        assert!(!router.unsubscribe(&wild, a.id()), "second unsubscribe finds nothing");
        assert!(matched(&router, "x/q/z").is_empty());
        assert_eq!(matched(&router, "x/y"), ["a"]);
        let exact = SubscriptionTopic::parse("x/y").expect("valid");
        assert!(router.unsubscribe(&exact, a.id()));
        assert!(router.is_empty());
        assert!(router.inner.read().trie.is_empty(), "empty nodes are pruned");
    }

    #[test]
    fn resubscribing_replaces_options() {
        let router = Router::new();
        let a = session("a");
        let topic = SubscriptionTopic::parse("t").expect("valid");
        let opts = SubOptions {
            qos: crate::QoS::ExactlyOnce,
            ..SubOptions::default()
        };
        assert!(!router.subscribe(
            &topic,
            SubEntry {
                session: a.clone(),
                options: SubOptions::default()
            }
        ));
        assert!(router.subscribe(
            &topic,
            SubEntry {
                session: a.clone(),
                options: opts
            }
        ));
        let mut seen = Vec::new();
        router.visit_matches(&TopicName::new("t").expect("valid"), |e| seen.push(e.options.qos));
        assert_eq!(seen, [crate::QoS::ExactlyOnce]);
    }

    #[test]
    fn shared_groups_deliver_to_one_member_in_turn() {
        let router = Router::new();
        let (a, b, c) = (session("a"), session("b"), session("c"));
        sub(&router, "$share/g/t/+", &a);
        sub(&router, "$share/g/t/+", &b);
        sub(&router, "t/+", &c);
        let mut counts = HashMap::new();
        for _ in 0..10 {
            for name in matched(&router, "t/1") {
                *counts.entry(name).or_insert(0) += 1;
            }
        }
        assert_eq!(counts["c"], 10, "plain subscriber gets every message");
        assert_eq!(counts["a"] + counts["b"], 10, "the group gets each message once");
        assert_eq!(counts["a"], 5, "round robin spreads evenly");
    }
}
