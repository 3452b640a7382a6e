//! The subscription index: exact topics in a hash map, wildcard filters in a trie of levels with
//! separate `+` and `#` children, and shared-subscription groups at either.
//!
//! Publishing takes the read lock; subscribing and unsubscribing take the write lock. Lock
//! order: router, then a session's state lock (the router delivers into sessions while holding
//! its read lock), never the reverse.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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

/// How one member of a shared-subscription group is chosen for each message (EMQX
/// `mqtt.shared_subscription_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedStrategy {
    /// A random member.
    Random,
    /// Members in turn.
    #[default]
    RoundRobin,
    /// The member chosen last time, while it stays connected.
    Sticky,
    /// A member chosen by a hash of the publisher's client id.
    HashClientId,
    /// A member chosen by a hash of the topic.
    HashTopic,
}

/// Identifies a shared-subscription group: deliveries through it carry this, so that the
/// messages of a member that goes away can be redispatched to the rest of its group.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ShareKey {
    /// The group name (`$queue` for `$queue/` subscriptions).
    pub group: ByteString,
    /// The filter the group subscribes to.
    pub filter: ByteString,
}

#[derive(Debug)]
struct ShareGroup {
    key: Arc<ShareKey>,
    members: Vec<SubEntry>,
    next: AtomicUsize,
    /// Session id of the sticky member, 0 when none.
    sticky: AtomicU64,
}

/// What a publish needs to know to choose among group members.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dispatch<'a> {
    pub(crate) strategy: SharedStrategy,
    pub(crate) topic: &'a str,
    pub(crate) publisher: &'a str,
    /// A member never to choose (the one whose messages are being redispatched).
    pub(crate) exclude: Option<SessionId>,
}

fn hash_of(value: &str) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish() as usize
}

impl ShareGroup {
    /// Chooses the member for one message: the strategy's pick, moved on to the next
    /// connected member when the pick is offline (a connected member can take the message
    /// now), or the pick itself when no member is connected (its session queues it).
    fn choose(&self, dispatch: &Dispatch<'_>) -> Option<&SubEntry> {
        let n = self.members.len();
        let eligible = |e: &SubEntry| Some(e.session.id()) != dispatch.exclude;
        if n == 0 {
            return None;
        }
        let start = match dispatch.strategy {
            SharedStrategy::Random => rand::random_range(0..n),
            SharedStrategy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            SharedStrategy::HashClientId => hash_of(dispatch.publisher) % n,
            SharedStrategy::HashTopic => hash_of(dispatch.topic) % n,
            SharedStrategy::Sticky => {
                let sticky = self.sticky.load(Ordering::Relaxed);
                match self.members.iter().position(|e| e.session.id().0 == sticky) {
                    Some(index) if self.members[index].session.is_online() && eligible(&self.members[index]) => index,
                    _ => rand::random_range(0..n),
                }
            }
        };
        let chosen = (0..n)
            .map(|offset| &self.members[(start + offset) % n])
            .find(|e| eligible(e) && e.session.is_online())
            .or_else(|| {
                (0..n)
                    .map(|offset| &self.members[(start + offset) % n])
                    .find(|e| eligible(e))
            })?;
        if dispatch.strategy == SharedStrategy::Sticky {
            self.sticky.store(chosen.session.id().0, Ordering::Relaxed);
        }
        Some(chosen)
    }
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
    fn insert(&mut self, group: Option<&ByteString>, filter: &str, entry: SubEntry) -> bool {
        let list = match group {
            None => &mut self.plain,
            Some(name) => {
                let index = match self.groups.iter().position(|g| g.key.group == name) {
                    Some(index) => index,
                    None => {
                        let key = Arc::new(ShareKey {
                            group: name.clone(),
                            filter: ByteString::from(filter),
                        });
                        self.groups.push(ShareGroup {
                            key,
                            members: Vec::new(),
                            next: AtomicUsize::new(0),
                            sticky: AtomicU64::new(0),
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
                let Some(index) = self.groups.iter().position(|g| g.key.group == name) else {
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

    /// Calls `f` for every plain subscriber and for the chosen member of each shared group.
    /// Visits this filter's subscribers; returns 1 if it had non-shared ones, else 0.
    fn visit(&self, dispatch: &Dispatch<'_>, f: &mut impl FnMut(&SubEntry, Option<&Arc<ShareKey>>)) -> usize {
        for entry in &self.plain {
            f(entry, None);
        }
        for group in &self.groups {
            if let Some(entry) = group.choose(dispatch) {
                f(entry, Some(&group.key));
            }
        }
        usize::from(!self.plain.is_empty())
    }

    fn group(&self, key: &ShareKey) -> Option<&ShareGroup> {
        self.groups.iter().find(|g| *g.key == *key)
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

    fn subs_for<'a>(&self, mut levels: impl Iterator<Item = &'a str>) -> Option<&FilterSubs> {
        match levels.next() {
            None => Some(&self.here),
            Some("#") => Some(&self.multi),
            Some("+") => self.single.as_ref()?.subs_for(levels),
            Some(level) => self.children.get(level)?.subs_for(levels),
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

    /// Appends the filter of every subscribed node under this one (reached by `path`).
    fn collect_filters<'a>(&'a self, path: &mut Vec<&'a str>, out: &mut Vec<ByteString>) {
        if !self.here.is_empty() && !path.is_empty() {
            out.push(ByteString::from(path.join("/")));
        }
        if !self.multi.is_empty() {
            path.push("#");
            out.push(ByteString::from(path.join("/")));
            path.pop();
        }
        if let Some(single) = &self.single {
            path.push("+");
            single.collect_filters(path, out);
            path.pop();
        }
        for (level, child) in &self.children {
            path.push(level);
            child.collect_filters(path, out);
            path.pop();
        }
    }

    fn visit_matches(
        &self,
        levels: &[&str],
        is_root: bool,
        system_topic: bool,
        dispatch: &Dispatch<'_>,
        f: &mut impl FnMut(&SubEntry, Option<&Arc<ShareKey>>),
    ) -> usize {
        let mut filters = 0;
        // [MQTT-4.7.2-1] wildcards at the first level do not match `$` topics.
        let wildcards_allowed = !(is_root && system_topic);
        if wildcards_allowed {
            // [MQTT-4.7.1-2] `#` also matches the parent level: `sport/#` matches `sport`.
            filters += self.multi.visit(dispatch, f);
        }
        match levels.split_first() {
            None => filters += self.here.visit(dispatch, f),
            Some((level, rest)) => {
                if let Some(child) = self.children.get(*level) {
                    filters += child.visit_matches(rest, false, system_topic, dispatch, f);
                }
                if wildcards_allowed && let Some(single) = &self.single {
                    filters += single.visit_matches(rest, false, system_topic, dispatch, f);
                }
            }
        }
        filters
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
    strategy: SharedStrategy,
}

impl Router {
    /// An empty router choosing shared-subscription members by `strategy`.
    pub fn new(strategy: SharedStrategy) -> Router {
        Router {
            inner: RwLock::default(),
            strategy,
        }
    }

    /// Adds (or updates the options of) `entry.session`'s subscription to `topic`. Returns true
    /// if the session was already subscribed to it.
    pub fn subscribe(&self, topic: &SubscriptionTopic, entry: SubEntry) -> bool {
        let mut inner = self.inner.write();
        let group = topic.share_group.as_ref();
        let existed = if topic.filter.has_wildcard() {
            inner
                .trie
                .subs_for_mut(topic.filter.split('/'))
                .insert(group, &topic.filter, entry)
        } else {
            let key = ByteString::from(topic.filter.as_str());
            inner.exact.entry(key).or_default().insert(group, &topic.filter, entry)
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

    /// Calls `f` for every subscription matching `topic` — for a shared group, only its chosen
    /// member, with the group's key — while holding the read lock. `publisher` is the
    /// publishing client's id (for the hash_clientid strategy).
    ///
    /// Returns how many matching filters had non-shared subscribers: a session is visited
    /// more than once outside shared groups only if this is above 1.
    pub fn visit_matches(
        &self,
        topic: &TopicName,
        publisher: &str,
        mut f: impl FnMut(&SubEntry, Option<&Arc<ShareKey>>),
    ) -> usize {
        let mut filters = 0;
        let dispatch = Dispatch {
            strategy: self.strategy,
            topic: topic.as_str(),
            publisher,
            exclude: None,
        };
        let inner = self.inner.read();
        if let Some(subs) = inner.exact.get(topic.as_str()) {
            filters += subs.visit(&dispatch, &mut f);
        }
        if !inner.trie.is_empty() {
            let levels: smallvec::SmallVec<[&str; 8]> = topic.split('/').collect();
            filters += inner
                .trie
                .visit_matches(&levels, true, topic.is_system(), &dispatch, &mut f);
        }
        filters
    }

    /// Chooses another member of the group `key` for a message that its chosen member will
    /// never take (that member's session ended): never `exclude`, connected members first.
    pub fn choose_other(&self, key: &ShareKey, topic: &str, publisher: &str, exclude: SessionId) -> Option<SubEntry> {
        let dispatch = Dispatch {
            strategy: self.strategy,
            topic,
            publisher,
            exclude: Some(exclude),
        };
        let inner = self.inner.read();
        let subs = if key.filter.contains(['+', '#']) {
            inner.trie.subs_for(key.filter.split('/'))?
        } else {
            inner.exact.get(&*key.filter)?
        };
        subs.group(key)?.choose(&dispatch).cloned()
    }

    /// Every filter with at least one subscriber, once (a shared group's filter without its
    /// group), sorted: the routes of this node.
    pub fn filters(&self) -> Vec<ByteString> {
        let inner = self.inner.read();
        let mut out: Vec<ByteString> = inner.exact.keys().cloned().collect();
        let mut path = Vec::new();
        inner.trie.collect_filters(&mut path, &mut out);
        drop(inner);
        out.sort();
        out
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
        router.visit_matches(&topic, "publisher", |e, _| {
            names.push(e.session.client_id().to_string())
        });
        names.sort();
        names
    }

    #[test]
    fn filters_lists_each_route_once() {
        let router = Router::new(SharedStrategy::RoundRobin);
        let (a, b) = (session("a"), session("b"));
        for filter in [
            "a/b",
            "a/+",
            "#",
            "/#",
            "a/+/c",
            "+",
            "x//y/#",
            "$share/g/a/b",
            "$queue/q/#",
        ] {
            sub(&router, filter, &a);
        }
        sub(&router, "a/b", &b);
        sub(&router, "a/+/c", &b);
        let filters: Vec<String> = router.filters().iter().map(|f| f.to_string()).collect();
        assert_eq!(filters, ["#", "+", "/#", "a/+", "a/+/c", "a/b", "q/#", "x//y/#"]);
        let topic = SubscriptionTopic::parse("a/+/c".to_string()).expect("valid");
        router.unsubscribe(&topic, a.id());
        assert!(router.filters().iter().any(|f| f == "a/+/c"), "b still subscribes");
        router.unsubscribe(&topic, b.id());
        assert!(!router.filters().iter().any(|f| f == "a/+/c"));
    }

    #[test]
    fn exact_and_wildcard_filters_match() {
        let router = Router::new(SharedStrategy::RoundRobin);
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
        let router = Router::new(SharedStrategy::RoundRobin);
        let (a, b, c) = (session("a"), session("b"), session("c"));
        sub(&router, "#", &a);
        sub(&router, "+/x", &b);
        sub(&router, "$SYS/#", &c);
        assert_eq!(matched(&router, "$SYS/x"), ["c"]);
    }

    #[test]
    fn unsubscribe_prunes_and_reports() {
        let router = Router::new(SharedStrategy::RoundRobin);
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
        let router = Router::new(SharedStrategy::RoundRobin);
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
        router.visit_matches(&TopicName::new("t").expect("valid"), "p", |e, _| {
            seen.push(e.options.qos)
        });
        assert_eq!(seen, [crate::QoS::ExactlyOnce]);
    }

    #[test]
    fn shared_groups_deliver_to_one_member_in_turn() {
        let router = Router::new(SharedStrategy::RoundRobin);
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

    fn online(s: &Arc<Session>) {
        let conn = crate::conn::ConnHandle::new(crate::conn::ConnId(s.id().0));
        s.bind(&mut s.lock(), Some(conn));
    }

    fn picks(router: &Router, topic: &str, publisher: &str, n: usize) -> Vec<String> {
        let topic = TopicName::new(topic.to_string()).expect("valid topic");
        let mut names = Vec::new();
        for _ in 0..n {
            router.visit_matches(&topic, publisher, |e, group| {
                assert!(group.is_some(), "only shared subscriptions in these tests");
                names.push(e.session.client_id().to_string());
            });
        }
        names
    }

    fn group_of(strategy: SharedStrategy, members: &[&Arc<Session>]) -> Router {
        let router = Router::new(strategy);
        for member in members {
            sub(&router, "$share/g/s/#", member);
            online(member);
        }
        router
    }

    #[test]
    fn hash_strategies_pin_a_publisher_or_a_topic_to_one_member() {
        let (a, b, c) = (session("a"), session("b"), session("c"));
        let router = group_of(SharedStrategy::HashClientId, &[&a, &b, &c]);
        let first = picks(&router, "s/1", "pub-1", 1);
        assert_eq!(
            picks(&router, "s/2", "pub-1", 5),
            vec![first[0].clone(); 5],
            "same publisher, same member"
        );
        let router = group_of(SharedStrategy::HashTopic, &[&a, &b, &c]);
        let first = picks(&router, "s/9", "x", 1);
        assert_eq!(
            picks(&router, "s/9", "y", 5),
            vec![first[0].clone(); 5],
            "same topic, same member"
        );
    }

    #[test]
    fn sticky_keeps_its_member_while_it_is_connected() {
        let (a, b) = (session("a"), session("b"));
        let router = group_of(SharedStrategy::Sticky, &[&a, &b]);
        let first = picks(&router, "s/1", "p", 1)[0].clone();
        assert_eq!(picks(&router, "s/1", "p", 10), vec![first.clone(); 10]);
        let gone = if first == "a" { &a } else { &b };
        gone.bind(&mut gone.lock(), None);
        let other = picks(&router, "s/1", "p", 3);
        assert!(
            other.iter().all(|name| *name != first),
            "an offline sticky member is replaced"
        );
    }

    #[test]
    fn offline_members_are_skipped_while_a_connected_one_exists() {
        let (a, b, c) = (session("a"), session("b"), session("c"));
        let router = group_of(SharedStrategy::RoundRobin, &[&a, &b, &c]);
        b.bind(&mut b.lock(), None);
        let names = picks(&router, "s/1", "p", 9);
        assert!(names.iter().all(|n| n != "b"), "{names:?}");
        assert_eq!(names.len(), 9, "each message still goes to exactly one member");
    }

    #[test]
    fn random_delivers_each_message_once() {
        let (a, b) = (session("a"), session("b"));
        let router = group_of(SharedStrategy::Random, &[&a, &b]);
        assert_eq!(picks(&router, "s/1", "p", 50).len(), 50);
    }

    #[test]
    fn choose_other_never_returns_the_excluded_member() {
        let (a, b) = (session("a"), session("b"));
        let router = group_of(SharedStrategy::RoundRobin, &[&a, &b]);
        let key = ShareKey {
            group: ByteString::from_static("g"),
            filter: ByteString::from_static("s/#"),
        };
        for _ in 0..4 {
            let other = router.choose_other(&key, "s/1", "p", a.id()).expect("b remains");
            assert_eq!(other.session.id(), b.id());
        }
        let missing = ShareKey {
            group: ByteString::from_static("nope"),
            filter: ByteString::from_static("s/#"),
        };
        assert!(router.choose_other(&missing, "s/1", "p", a.id()).is_none());
    }
}
