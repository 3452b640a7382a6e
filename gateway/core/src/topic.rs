//! Topic names and filters: validation, matching, and shared-subscription prefixes.

use std::fmt;
use std::ops::Deref;

use bytestring::ByteString;

/// The longest topic (name or filter) any protocol may carry: MQTT's 2-byte length prefix.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Zero-length. [MQTT-4.7.3-1]
    #[error("topic is empty")]
    Empty,
    /// Over 65,535 bytes.
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    /// Contains U+0000. [MQTT-4.7.3-2]
    #[error("topic contains the null character")]
    NullCharacter,
    /// A topic name (publish side) contains `+` or `#`. [MQTT-3.3.2-2]
    #[error("topic name contains a wildcard")]
    WildcardInName,
    /// `#` is not alone in the last level. [MQTT-4.7.1-2]
    #[error("'#' must be the last character and occupy a whole level")]
    MisplacedMultiLevelWildcard,
    /// `+` does not occupy a whole level. [MQTT-4.7.1-3]
    #[error("'+' must occupy a whole level")]
    MisplacedSingleLevelWildcard,
    /// A shared subscription with an empty or wildcarded group, or no filter. [MQTT-4.8.2-1]
    #[error("shared subscription must be $share/{{group}}/{{filter}} with a group free of '+', '#' and '/'")]
    InvalidSharedSubscription,
    /// More levels than the configured limit.
    #[error("topic has more levels than allowed")]
    TooManyLevels,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// A validated topic name: what a message is published to. No wildcards.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates `name` as a topic name.
    pub fn new(name: impl Into<ByteString>) -> Result<TopicName, TopicError> {
        let name = name.into();
        check_common(&name)?;
        if name.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying shared string (cheap to clone).
    pub fn as_bytestring(&self) -> &ByteString {
        &self.0
    }

    /// Topics starting with `$` are never matched by a filter starting with a wildcard.
    /// [MQTT-4.7.2-1]
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl Deref for TopicName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated topic filter: what a subscription matches. May contain `+` and a final `#`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(ByteString);

impl TopicFilter {
    /// Validates `filter` as a (non-shared) topic filter.
    pub fn new(filter: impl Into<ByteString>) -> Result<TopicFilter, TopicError> {
        let filter = filter.into();
        check_common(&filter)?;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level.contains('#') && (level != "#" || levels.peek().is_some()) {
                return Err(TopicError::MisplacedMultiLevelWildcard);
            }
            if level.contains('+') && level != "+" {
                return Err(TopicError::MisplacedSingleLevelWildcard);
            }
        }
        Ok(TopicFilter(filter))
    }

    /// The filter as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if the filter has a `+` or `#` level.
    pub fn has_wildcard(&self) -> bool {
        self.0.contains(['+', '#'])
    }

    /// Number of levels.
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }

    /// True if `topic` matches this filter.
    pub fn matches(&self, topic: &TopicName) -> bool {
        matches(&self.0, topic)
    }
}

impl Deref for TopicFilter {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True if `topic` matches `filter` (both assumed valid).
pub fn matches(filter: &str, topic: &TopicName) -> bool {
    // [MQTT-4.7.2-1] A leading wildcard never matches a topic starting with '$'.
    if topic.is_system() && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// A subscription as requested: a plain filter, or a shared one with its group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubscriptionTopic {
    /// The filter messages are matched against.
    pub filter: TopicFilter,
    /// `Some(group)` for `$share/{group}/{filter}`; `$queue/{filter}` uses the group `$queue`.
    pub share_group: Option<ByteString>,
    /// The filter exactly as the client sent it (the key of the subscription in its session).
    pub original: ByteString,
}

impl SubscriptionTopic {
    /// Parses and validates what a client subscribed to.
    pub fn parse(raw: impl Into<ByteString>) -> Result<SubscriptionTopic, TopicError> {
        let raw: ByteString = raw.into();
        check_common(&raw)?;
        if let Some(rest) = raw.strip_prefix("$share/") {
            let (group, filter) = rest.split_once('/').ok_or(TopicError::InvalidSharedSubscription)?;
            if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
                return Err(TopicError::InvalidSharedSubscription);
            }
            let filter = TopicFilter::new(filter)?;
            let group = ByteString::from(group);
            return Ok(SubscriptionTopic {
                filter,
                share_group: Some(group),
                original: raw,
            });
        }
        if let Some(filter) = raw.strip_prefix("$queue/") {
            if filter.is_empty() {
                return Err(TopicError::InvalidSharedSubscription);
            }
            let filter = TopicFilter::new(filter)?;
            return Ok(SubscriptionTopic {
                filter,
                share_group: Some(ByteString::from_static("$queue")),
                original: raw,
            });
        }
        let filter = TopicFilter::new(raw.clone())?;
        Ok(SubscriptionTopic {
            filter,
            share_group: None,
            original: raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s.to_string()).expect("valid name")
    }

    #[test]
    fn names_refuse_wildcards_empty_and_nul() {
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a\0b"), Err(TopicError::NullCharacter));
        assert!(TopicName::new("/").is_ok(), "'/' alone is a valid two-level topic");
    }

    #[test]
    fn filters_place_wildcards_on_whole_levels() {
        for ok in ["#", "+", "a/#", "a/+/b", "+/+", "/+", "a//b", "$SYS/#"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok} should be valid");
        }
        assert_eq!(TopicFilter::new("a/#/b"), Err(TopicError::MisplacedMultiLevelWildcard));
        assert_eq!(TopicFilter::new("a#"), Err(TopicError::MisplacedMultiLevelWildcard));
        assert_eq!(TopicFilter::new("a+"), Err(TopicError::MisplacedSingleLevelWildcard));
        assert_eq!(
            TopicFilter::new("a/b+/c"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        // Non-normative examples of MQTT 5.0 §4.7.1.
        let f = |s: &str| TopicFilter::new(s.to_string()).expect("valid filter");
        assert!(f("sport/tennis/player1/#").matches(&name("sport/tennis/player1")));
        assert!(f("sport/tennis/player1/#").matches(&name("sport/tennis/player1/ranking")));
        assert!(f("sport/#").matches(&name("sport")));
        assert!(f("sport/tennis/+").matches(&name("sport/tennis/player1")));
        assert!(!f("sport/tennis/+").matches(&name("sport/tennis/player1/ranking")));
        assert!(!f("sport/+").matches(&name("sport")));
        assert!(f("sport/+").matches(&name("sport/")));
        assert!(f("+/+").matches(&name("/finance")));
        assert!(f("/+").matches(&name("/finance")));
        assert!(!f("+").matches(&name("/finance")));
        assert!(!f("a/b").matches(&name("a/b/c")));
    }

    #[test]
    fn system_topics_are_not_matched_by_leading_wildcards() {
        let f = |s: &str| TopicFilter::new(s.to_string()).expect("valid filter");
        assert!(!f("#").matches(&name("$SYS/brokers")));
        assert!(!f("+/brokers").matches(&name("$SYS/brokers")));
        assert!(f("$SYS/#").matches(&name("$SYS/brokers")));
        assert!(f("$SYS/+").matches(&name("$SYS/brokers")));
    }

    #[test]
    fn shared_subscriptions_parse() {
        let s = SubscriptionTopic::parse("$share/g1/a/+").expect("valid");
        assert_eq!(s.share_group.as_deref(), Some("g1"));
        assert_eq!(s.filter.as_str(), "a/+");
        let q = SubscriptionTopic::parse("$queue/a/b").expect("valid");
        assert_eq!(q.share_group.as_deref(), Some("$queue"));
        assert_eq!(q.filter.as_str(), "a/b");
        for bad in ["$share/g1", "$share//a", "$share/g+/a", "$share/g1/", "$queue/"] {
            assert!(SubscriptionTopic::parse(bad).is_err(), "{bad} should be refused");
        }
        let plain = SubscriptionTopic::parse("a/#").expect("valid");
        assert_eq!(plain.share_group, None);
    }
}
