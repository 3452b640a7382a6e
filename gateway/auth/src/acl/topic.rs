//! The topic conditions of a rule: filters with MQTT wildcards and placeholders, and `{eq, ...}`.
//!
//! A filter is matched level by level against the topic of the request, which is a topic name
//! for PUBLISH and the subscribed filter for SUBSCRIBE. As in EMQX (`emqx_topic:match/2` on the
//! subscribed filter's words), the subscribed filter is treated as a name: its `+` and `#`
//! levels are only matched by a rule's `+` or `#` (or `#` in the rule covering them), so a rule
//! `a/#` covers the subscription `a/+`, while a rule `a/b` does not cover `a/+`. The one place
//! where this differs from "the rule covers every topic the subscription can match" is EMQX's
//! too: a rule `+` covers the subscription `#` (and `a/+` covers `a/#`), because `+` consumes
//! the `#` level like any other word.
//!
//! Topics starting with `$` are not matched by a rule whose first level is `+` or `#`
//! ([MQTT-4.7.2-1], as in `portico_core::topic::matches`): `$SYS/#` must be named.

use portico_core::topic::TopicFilter;

use super::AclErrorKind;
use super::parse::quote;

/// The client's side of a check, borrowed from `ClientInfo` (or made up by the fuzz checks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) username: Option<&'a str>,
    pub(crate) ip: std::net::IpAddr,
}

/// One element of a rule's topic list.
#[derive(Debug, Clone)]
pub(crate) enum TopicCond {
    /// `{eq, "t/#"}` or `"eq t/#"`: the topic (or subscribed filter) must be exactly this.
    Eq(String),
    /// A filter with wildcards and placeholders.
    Filter(Filter),
}

impl TopicCond {
    pub(crate) fn matches(&self, subject: &Subject<'_>, topic: &str) -> bool {
        match self {
            TopicCond::Eq(literal) => literal == topic,
            TopicCond::Filter(filter) => filter.matches(subject, topic),
        }
    }
}

/// A compiled topic filter.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    levels: Vec<Level>,
}

#[derive(Debug, Clone)]
enum Level {
    Literal(String),
    /// `+`
    Single,
    /// `#`
    Multi,
    /// A level with placeholders, compared literally with the topic's level once filled.
    Template(Vec<Part>),
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Username,
    ClientId,
    /// A placeholder EMQX knows but Portico's client info does not carry (`${cert_common_name}`,
    /// `${zone}`, `${client_attrs.*}`): it is never filled, so the filter never matches.
    Unavailable,
}

/// Placeholders EMQX accepts in topics whose values Portico does not have.
const UNAVAILABLE: [&str; 3] = ["cert_common_name", "cn", "zone"];

/// Why a topic string was refused, for the caller to place.
#[derive(Debug)]
pub(crate) struct TopicError {
    pub(crate) kind: AclErrorKind,
    pub(crate) message: String,
}

impl Filter {
    /// Compiles a rule's topic string: validated as an MQTT topic filter, then split into
    /// levels; `%u` / `%c` as a whole level (EMQX 2.x-4.x) and `${username}` / `${clientid}`
    /// anywhere (5.x) are placeholders.
    pub(crate) fn compile(text: &str) -> Result<Filter, TopicError> {
        TopicFilter::new(text).map_err(|e| TopicError {
            kind: AclErrorKind::Topic,
            message: format!("invalid topic filter {}: {e}", quote(text)),
        })?;
        let levels = text
            .split('/')
            .map(|level| match level {
                "+" => Ok(Level::Single),
                "#" => Ok(Level::Multi),
                "%u" => Ok(Level::Template(vec![Part::Username])),
                "%c" => Ok(Level::Template(vec![Part::ClientId])),
                _ if level.contains("${") => template(level),
                _ => Ok(Level::Literal(level.to_owned())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter { levels })
    }

    /// True if `topic` (a name, or a subscribed filter taken as a name) matches.
    pub(crate) fn matches(&self, subject: &Subject<'_>, topic: &str) -> bool {
        if topic.starts_with('$') && matches!(self.levels.first(), Some(Level::Single | Level::Multi)) {
            return false;
        }
        let mut words = topic.split('/');
        for level in &self.levels {
            match level {
                Level::Multi => return true,
                Level::Single => {
                    if words.next().is_none() {
                        return false;
                    }
                }
                Level::Literal(literal) => {
                    if words.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
                Level::Template(parts) => match words.next() {
                    Some(word) if fills(parts, subject, word) => {}
                    _ => return false,
                },
            }
        }
        words.next().is_none()
    }
}

/// True if `parts`, filled from `subject`, spell exactly `word`. A value is compared literally:
/// a user name `#` matches only the level `#`, never acts as a wildcard, and a value with `/`
/// matches no level.
fn fills(parts: &[Part], subject: &Subject<'_>, word: &str) -> bool {
    let mut rest = word;
    for part in parts {
        let value = match part {
            Part::Text(text) => text.as_str(),
            Part::ClientId => subject.client_id,
            Part::Username => match subject.username {
                Some(username) => username,
                None => return false,
            },
            Part::Unavailable => return false,
        };
        match rest.strip_prefix(value) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Splits one level into text and `${name}` placeholders. `${` not followed by a name and `}`
/// is kept as text, as EMQX does.
fn template(level: &str) -> Result<Level, TopicError> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = level;
    while let Some(start) = rest.find("${") {
        text.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(after.len());
        if name_len == 0 || !after[name_len..].starts_with('}') {
            text.push_str("${");
            rest = after;
            continue;
        }
        let name = &after[..name_len];
        let part = match name {
            "username" => Part::Username,
            "clientid" => Part::ClientId,
            _ if UNAVAILABLE.contains(&name) || name.starts_with("client_attrs.") => Part::Unavailable,
            _ => {
                return Err(TopicError {
                    kind: AclErrorKind::Placeholder,
                    message: format!(
                        "unknown placeholder ${{{name}}} in topic (use ${{username}}, ${{clientid}}, %u or %c)"
                    ),
                });
            }
        };
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(part);
        rest = &after[name_len + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(Level::Template(parts))
}

/// Compiles a topic condition given as text, as EMQX's JSON rule formats spell it: `"eq t/#"`
/// for a literal comparison, anything else a filter with wildcards and placeholders. For the
/// rules that come outside acl.conf (JWT claims, the built-in rule database).
pub(crate) fn compile_text(text: &str) -> Result<TopicCond, String> {
    if let Some(literal) = text.strip_prefix("eq ") {
        TopicFilter::new(literal).map_err(|e| format!("invalid topic filter {}: {e}", quote(literal)))?;
        return Ok(TopicCond::Eq(literal.to_owned()));
    }
    Filter::compile(text).map(TopicCond::Filter).map_err(|e| e.message)
}

/// The filter a subscription is authorized on: `$share/{group}/{filter}` and `$queue/{filter}`
/// are checked as `{filter}`, as EMQX checks the real topic filter of a shared subscription.
pub(crate) fn subscription_filter(topic: &str) -> &str {
    if let Some(rest) = topic.strip_prefix("$share/") {
        match rest.split_once('/') {
            Some((group, filter)) if !group.is_empty() && !filter.is_empty() => filter,
            _ => topic,
        }
    } else if let Some(filter) = topic.strip_prefix("$queue/") {
        if filter.is_empty() { topic } else { filter }
    } else {
        topic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_core::topic::{TopicName, matches};

    const ALICE: Subject<'static> = Subject {
        client_id: "c1",
        username: Some("alice"),
        ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    };
    const ANON: Subject<'static> = Subject {
        username: None,
        ..ALICE
    };

    fn filter(text: &str) -> Filter {
        Filter::compile(text).unwrap_or_else(|e| panic!("{text}: {}", e.message))
    }

    #[test]
    fn wildcards_on_names_agree_with_core() {
        let filters = [
            "#", "+", "a/#", "a/+", "+/b", "a/b", "a/+/c", "+/+", "/#", "$SYS/#", "a//b",
        ];
        let names = ["a", "a/b", "a/b/c", "b", "/", "/a", "$SYS/x", "$SYS", "a//b", "x/b"];
        for f in filters {
            for n in names {
                let name = TopicName::new(n).unwrap_or_else(|e| panic!("{n}: {e}"));
                assert_eq!(filter(f).matches(&ALICE, n), matches(f, &name), "filter {f} name {n}");
            }
        }
    }

    #[test]
    fn subscribed_filters_are_matched_as_names_like_emqx() {
        let cases = [
            ("a/#", "a/+", true),
            ("a/#", "a/#", true),
            ("a/#", "a/b/#", true),
            ("#", "+/b", true),
            ("a/b", "a/+", false),
            ("a/+", "+/b", false),
            ("a/+", "a/+", true),
            ("+", "#", true),
            ("a/+", "a/#", true),
            ("a/+/c", "a/#", false),
            ("#", "$SYS/#", false),
            ("+/#", "$SYS/#", false),
            ("$SYS/#", "$SYS/#", true),
        ];
        for (rule, subscription, expected) in cases {
            assert_eq!(
                filter(rule).matches(&ALICE, subscription),
                expected,
                "rule {rule} sub {subscription}"
            );
        }
    }

    #[test]
    fn placeholders_are_filled_literally() {
        assert!(filter("u/%u/#").matches(&ALICE, "u/alice/x"));
        assert!(filter("c/%c").matches(&ALICE, "c/c1"));
        assert!(!filter("c/%c").matches(&ALICE, "c/c2"));
        assert!(filter("u/${username}").matches(&ALICE, "u/alice"));
        assert!(filter("t/pre${clientid}-${username}post").matches(&ALICE, "t/prec1-alicepost"));
        assert!(!filter("t/pre${clientid}").matches(&ALICE, "t/prec"));
        assert!(
            filter("t/a%ub").matches(&ALICE, "t/a%ub"),
            "%u inside a level is text (4.x)"
        );
        assert!(
            filter("t/${ username}").matches(&ALICE, "t/${ username}"),
            "not a placeholder"
        );
        assert!(filter("t/${").matches(&ALICE, "t/${"));
        for topic in ["u/", "u/%u", "u/${username}", "u/+"] {
            assert!(!filter("u/%u").matches(&ANON, topic), "{topic}");
            assert!(!filter("u/${username}").matches(&ANON, topic), "{topic}");
        }
        let hash = Subject {
            username: Some("#"),
            ..ALICE
        };
        assert!(!filter("u/${username}").matches(&hash, "u/anything"));
        assert!(filter("u/${username}").matches(&hash, "u/#"));
        let slash = Subject {
            username: Some("a/b"),
            ..ALICE
        };
        assert!(!filter("u/%u").matches(&slash, "u/a/b"));
        assert!(!filter("x/${zone}").matches(&ALICE, "x/default"));
        assert!(!filter("x/${client_attrs.group}").matches(&ALICE, "x/g"));
    }

    #[test]
    fn bad_filters_and_placeholders_are_refused() {
        for bad in ["", "a/#/b", "a+", "#a", "a\0b"] {
            let err = Filter::compile(bad).expect_err(bad);
            assert_eq!(err.kind, AclErrorKind::Topic, "{bad}");
        }
        let err = Filter::compile("t/${password}").expect_err("unknown");
        assert_eq!(err.kind, AclErrorKind::Placeholder);
        assert!(err.message.contains("${password}"), "{}", err.message);
    }

    #[test]
    fn shared_subscriptions_are_checked_on_their_filter() {
        assert_eq!(subscription_filter("$share/g/a/b"), "a/b");
        assert_eq!(subscription_filter("$queue/a/#"), "a/#");
        assert_eq!(subscription_filter("$share/g"), "$share/g");
        assert_eq!(subscription_filter("$share//a"), "$share//a");
        assert_eq!(subscription_filter("$SYS/a"), "$SYS/a");
    }
}
