//! EMQX topic rewrite: configured rules that turn topic A into topic B on PUBLISH, SUBSCRIBE and
//! UNSUBSCRIBE.
//!
//! A rule is `{action, source_topic, re, dest_topic}` (EMQX 5 `rewrite = [...]`). The semantics
//! here are those of EMQX 5's `emqx_rewrite.erl`, including two that surprise people and that the
//! EMQX docs call out ("EMQX reads the rewrite rules in reverse order ... if the regular
//! expression of that rule does not match, the rewrite fails and no other rule is tried"):
//!
//! 1. Rules are tried **last configured first**. (`emqx_rewrite:compile/1` folds the list into
//!    per-action lists by prepending, so each list ends up reversed.)
//! 2. The **first rule whose `source_topic` filter matches decides**: if its regex then matches,
//!    the topic is rewritten; if not, the topic is left alone and no later rule is tried.
//!
//! [`Rewriter::new`] takes the rules in configuration order and applies that reversal itself.
//!
//! The rewritten topic is not validated here: the caller must re-validate it as a topic name
//! (publish) or subscription (subscribe) and refuse it if invalid. EMQX does the same: its rewrite
//! hook runs before validation of the new topic.

use regex::Regex;

use crate::topic::{TopicError, TopicFilter};

/// Which packets a rule applies to (EMQX `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RewriteAction {
    /// PUBLISH topics only.
    Publish,
    /// SUBSCRIBE and UNSUBSCRIBE topic filters only.
    Subscribe,
    /// Both.
    All,
}

impl RewriteAction {
    fn publish(self) -> bool {
        matches!(self, RewriteAction::Publish | RewriteAction::All)
    }

    fn subscribe(self) -> bool {
        matches!(self, RewriteAction::Subscribe | RewriteAction::All)
    }
}

/// Why a rewrite rule could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RewriteError {
    /// `source_topic` is not a valid topic filter.
    #[error("invalid rewrite source_topic: {0}")]
    InvalidSourceTopic(#[from] TopicError),
    /// `re` does not compile. EMQX uses PCRE; the `regex` crate has no look-around or
    /// back-references, so such patterns are refused here rather than silently changed.
    #[error("invalid rewrite regular expression: {0}")]
    InvalidRegex(#[from] regex::Error),
}

/// One compiled rewrite rule.
#[derive(Debug, Clone)]
pub struct RewriteRule {
    action: RewriteAction,
    source: TopicFilter,
    re: Regex,
    dest: String,
}

impl RewriteRule {
    /// Compiles a rule. `source_topic` must be a valid (non-shared) topic filter; `re` is a regular
    /// expression matched anywhere in the topic (anchor it with `^...$` as EMQX examples do);
    /// `dest_topic` may use `$1`..`$N` for the capture groups and `${clientid}` / `${username}`.
    pub fn new(
        action: RewriteAction,
        source_topic: &str,
        re: &str,
        dest_topic: &str,
    ) -> Result<RewriteRule, RewriteError> {
        Ok(RewriteRule {
            action,
            source: TopicFilter::new(source_topic.to_string())?,
            re: Regex::new(re)?,
            dest: dest_topic.to_string(),
        })
    }

    /// The packets this rule applies to.
    pub fn action(&self) -> RewriteAction {
        self.action
    }

    /// The filter a topic must match for this rule to decide.
    pub fn source_topic(&self) -> &TopicFilter {
        &self.source
    }

    /// The regular expression, as configured.
    pub fn re(&self) -> &str {
        self.re.as_str()
    }

    /// The destination template, as configured.
    pub fn dest_topic(&self) -> &str {
        &self.dest
    }

    /// The rewritten topic, or `None` when the regex does not match `topic`.
    ///
    /// Substitution follows EMQX's `re:replace` fold: first `${clientid}` and `${username}` (each
    /// only when known and non-empty; otherwise the placeholder stays literally), then `$1`, `$2`,
    /// ... up to the number of groups in the regex, each replaced everywhere in turn. So a group
    /// that did not take part in the match expands to nothing, `$k` beyond the group count stays
    /// literally, and `$1` also hits the front of `$10` (all as in EMQX). One EMQX quirk is not
    /// copied: Erlang's replacement string treats `&` and `\N` in the *captured value* specially;
    /// here captured text is inserted verbatim.
    fn apply(&self, topic: &str, client_id: Option<&str>, username: Option<&str>) -> Option<String> {
        let captures = self.re.captures(topic)?;
        let mut out = self.dest.clone();
        for (var, value) in [("${clientid}", client_id), ("${username}", username)] {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                out = out.replace(var, value);
            }
        }
        for group in 1..self.re.captures_len() {
            let value = captures.get(group).map_or("", |m| m.as_str());
            out = out.replace(&format!("${group}"), value);
        }
        Some(out)
    }
}

/// What a rule lookup decided.
enum Decision {
    /// No rule's source filter matched.
    NoRule,
    /// A rule matched and rewrote the topic.
    Rewritten(String),
    /// A rule's filter matched but its regex did not: leave the topic alone, try nothing else.
    Kept,
}

/// The configured rewrite rules.
#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    /// In configuration order; lookups walk it backwards (see the module docs).
    rules: Vec<RewriteRule>,
}

impl Rewriter {
    /// A rewriter over `rules`, given in configuration order.
    pub fn new(rules: Vec<RewriteRule>) -> Rewriter {
        Rewriter { rules }
    }

    /// True when no rule is configured, so callers can skip the lookup entirely.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules (EMQX telemetry `topic_rewrite_rule_count`).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[RewriteRule] {
        &self.rules
    }

    /// The new topic for a PUBLISH to `topic`, or `None` to keep it.
    pub fn rewrite_publish(&self, topic: &str) -> Option<String> {
        self.rewrite_publish_for(topic, None, None)
    }

    /// [`Rewriter::rewrite_publish`] for a known publisher, so that `${clientid}` and
    /// `${username}` in `dest_topic` are filled in (EMQX 5 `fill_client_binds`).
    pub fn rewrite_publish_for(&self, topic: &str, client_id: Option<&str>, username: Option<&str>) -> Option<String> {
        match self.decide(topic, RewriteAction::publish, true, client_id, username) {
            Decision::Rewritten(new) => Some(new),
            Decision::NoRule | Decision::Kept => None,
        }
    }

    /// The new filter for a SUBSCRIBE (or UNSUBSCRIBE; EMQX applies the same rules to both) to
    /// `filter`, or `None` to keep it.
    ///
    /// The filter is matched against each rule's `source_topic` as if it were a topic name, word
    /// by word as `emqx_topic:match/2` does: a `+` or `#` in the subscribed filter only matches a
    /// `+` level (or trailing `#`) of the source filter, or the identical wildcard.
    ///
    /// Shared subscriptions `$share/{group}/{filter}` and `$queue/{filter}` rewrite only the real
    /// filter and keep the prefix (EMQX 5 docs, "Topic rewriting only applies to the actual
    /// topics ... of shared subscription topics"). As in EMQX, which matches the parsed share
    /// record word by word, the real filter of a shared subscription is matched without the
    /// `$`-topic rule, so `$share/g/$SYS/x` is seen by a `#` source filter.
    pub fn rewrite_subscribe(&self, filter: &str) -> Option<String> {
        self.rewrite_subscribe_for(filter, None, None)
    }

    /// [`Rewriter::rewrite_subscribe`] for a known subscriber (fills `${clientid}` and
    /// `${username}`).
    pub fn rewrite_subscribe_for(
        &self,
        filter: &str,
        client_id: Option<&str>,
        username: Option<&str>,
    ) -> Option<String> {
        let (prefix, real) = split_shared(filter);
        let dollar_rule = prefix.is_empty();
        match self.decide(real, RewriteAction::subscribe, dollar_rule, client_id, username) {
            Decision::Rewritten(new) => Some(format!("{prefix}{new}")),
            Decision::NoRule | Decision::Kept => None,
        }
    }

    fn decide(
        &self,
        topic: &str,
        applies: fn(RewriteAction) -> bool,
        dollar_rule: bool,
        client_id: Option<&str>,
        username: Option<&str>,
    ) -> Decision {
        let rule = self
            .rules
            .iter()
            .rev()
            .filter(|rule| applies(rule.action))
            .find(|rule| emqx_match(topic, rule.source.as_str(), dollar_rule));
        match rule {
            None => Decision::NoRule,
            Some(rule) => match rule.apply(topic, client_id, username) {
                Some(new) => Decision::Rewritten(new),
                None => Decision::Kept,
            },
        }
    }
}

/// `$share/{group}/{rest}` → (`$share/{group}/`, rest); `$queue/{rest}` → (`$queue/`, rest);
/// anything else → ("", whole). A malformed share prefix is treated as a plain filter; the
/// caller's validation refuses it afterwards either way.
fn split_shared(filter: &str) -> (&str, &str) {
    if let Some(rest) = filter.strip_prefix("$share/")
        && let Some(slash) = rest.find('/')
    {
        let split = "$share/".len() + slash + 1;
        return (&filter[..split], &filter[split..]);
    }
    if filter.starts_with("$queue/") {
        let split = "$queue/".len();
        return (&filter[..split], &filter[split..]);
    }
    ("", filter)
}

/// `emqx_topic:match(Name, Filter)` with `Name` possibly a filter itself: level by level, `+` in
/// `filter` takes any one level, a final `#` takes the rest (including nothing), anything else
/// must be equal. With `dollar_rule`, a name starting with `$` is never matched by a filter
/// starting with a wildcard [MQTT-4.7.2-1].
fn emqx_match(name: &str, filter: &str, dollar_rule: bool) -> bool {
    if dollar_rule && name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = name.split('/');
    let mut filters = filter.split('/').peekable();
    while let Some(f) = filters.next() {
        if f == "#" && filters.peek().is_none() {
            return true;
        }
        match names.next() {
            Some(n) if f == "+" || n == f => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: RewriteAction, src: &str, re: &str, dest: &str) -> RewriteRule {
        RewriteRule::new(action, src, re, dest).expect("valid rule")
    }

    /// The rules of EMQX's `emqx_rewrite_SUITE`.
    fn suite() -> Rewriter {
        Rewriter::new(vec![
            rule(RewriteAction::Publish, "x/#", "^x/y/(.+)$", "z/y/$1"),
            rule(RewriteAction::Subscribe, "y/+/z/#", "^y/(.+)/z/(.+)$", "y/z/$2"),
        ])
    }

    #[test]
    fn emqx_suite_cases() {
        let r = suite();
        assert_eq!(r.rewrite_publish("x/y/2").as_deref(), Some("z/y/2"));
        assert_eq!(r.rewrite_publish("x/1/2"), None);
        assert_eq!(r.rewrite_subscribe("y/a/z/b").as_deref(), Some("y/z/b"));
        assert_eq!(r.rewrite_subscribe("y/def"), None);
        // Actions are respected.
        assert_eq!(r.rewrite_subscribe("x/y/2"), None);
        assert_eq!(r.rewrite_publish("y/a/z/b"), None);
    }

    #[test]
    fn later_rules_win_and_a_failed_regex_stops_the_search() {
        // The EMQX docs example: rule 3 is tried before rule 2.
        let r = Rewriter::new(vec![
            rule(RewriteAction::All, "y/+/z/#", "^y/(.+)/z/(.+)$", "y/z/$2"),
            rule(RewriteAction::All, "x/#", "^x/y/(.+)$", "z/y/x/$1"),
            rule(RewriteAction::All, "x/y/+", "^x/y/(\\d+)$", "z/y/$1"),
        ]);
        assert_eq!(r.rewrite_subscribe("x/y/2").as_deref(), Some("z/y/2"), "rule 3 first");
        // x/y/z matches rule 3's filter but not its regex: no rewrite, rule 2 is not tried.
        assert_eq!(r.rewrite_subscribe("x/y/z"), None);
        assert_eq!(r.rewrite_subscribe("x/1/2"), None);
        assert_eq!(
            r.rewrite_publish("x/y/a/b").as_deref(),
            Some("z/y/x/a/b"),
            "only rule 2's filter matches"
        );
    }

    #[test]
    fn substitution_details() {
        let r = Rewriter::new(vec![rule(
            RewriteAction::All,
            "a/#",
            "^a/(b)?/?(\\w+)$",
            "$2/$1/$3/${clientid}/${username}",
        )]);
        // Group 1 did not take part: empty. $3 is past the group count: literal.
        assert_eq!(
            r.rewrite_publish("a/c").as_deref(),
            Some("c//$3/${clientid}/${username}")
        );
        assert_eq!(
            r.rewrite_publish_for("a/b/c", Some("cid"), Some("")).as_deref(),
            Some("c/b/$3/cid/${username}"),
            "an empty username is not substituted"
        );
        let ten = Rewriter::new(vec![rule(RewriteAction::All, "#", "^(a)$", "$10")]);
        assert_eq!(
            ten.rewrite_publish("a").as_deref(),
            Some("a0"),
            "EMQX replaces $1 inside $10"
        );
    }

    #[test]
    fn subscribe_matches_filters_word_by_word() {
        let r = Rewriter::new(vec![rule(RewriteAction::Subscribe, "a/+", "^a/(.+)$", "b/$1")]);
        assert_eq!(r.rewrite_subscribe("a/+").as_deref(), Some("b/+"));
        assert_eq!(
            r.rewrite_subscribe("a/#").as_deref(),
            Some("b/#"),
            "'+' takes a '#' level"
        );
        assert_eq!(r.rewrite_subscribe("a/x/#"), None);
        let hash = Rewriter::new(vec![rule(RewriteAction::Subscribe, "a/#", "^(.*)$", "z/$1")]);
        assert_eq!(
            hash.rewrite_subscribe("a").as_deref(),
            Some("z/a"),
            "'#' takes zero levels"
        );
        assert_eq!(hash.rewrite_subscribe("b/+"), None);
    }

    #[test]
    fn shared_subscriptions_keep_their_prefix() {
        let r = Rewriter::new(vec![rule(RewriteAction::Subscribe, "t/#", "^t/(.+)$", "u/$1")]);
        assert_eq!(r.rewrite_subscribe("$share/g/t/1").as_deref(), Some("$share/g/u/1"));
        assert_eq!(r.rewrite_subscribe("$queue/t/2").as_deref(), Some("$queue/u/2"));
        assert_eq!(r.rewrite_subscribe("$share/g/x/1"), None);
        assert_eq!(
            r.rewrite_subscribe("$share/g"),
            None,
            "malformed share is left to validation"
        );
    }

    #[test]
    fn dollar_topics_are_not_matched_by_leading_wildcards() {
        let r = Rewriter::new(vec![rule(RewriteAction::All, "#", "^(.*)$", "all/$1")]);
        assert_eq!(r.rewrite_publish("$SYS/x"), None);
        assert_eq!(r.rewrite_publish("a").as_deref(), Some("all/a"));
        assert_eq!(r.rewrite_subscribe("$SYS/#"), None);
        assert_eq!(
            r.rewrite_subscribe("$share/g/$SYS/x").as_deref(),
            Some("$share/g/all/$SYS/x"),
            "EMQX matches a share record's words without the $ rule"
        );
        let sys = Rewriter::new(vec![rule(RewriteAction::All, "$SYS/#", "^\\$SYS/(.*)$", "sys/$1")]);
        assert_eq!(sys.rewrite_publish("$SYS/a").as_deref(), Some("sys/a"));
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(matches!(
            RewriteRule::new(RewriteAction::All, "a/#/b", "x", "y"),
            Err(RewriteError::InvalidSourceTopic(_))
        ));
        assert!(matches!(
            RewriteRule::new(RewriteAction::All, "a", "(", "y"),
            Err(RewriteError::InvalidRegex(_))
        ));
        assert!(matches!(
            RewriteRule::new(RewriteAction::All, "a", "(?=a)", "y"),
            Err(RewriteError::InvalidRegex(_))
        ));
    }

    #[test]
    fn empty_rewriter_and_odd_inputs() {
        let empty = Rewriter::default();
        assert!(empty.is_empty());
        assert_eq!(empty.rewrite_publish("a"), None);
        let r = suite();
        assert_eq!(r.len(), 2);
        assert!(!r.is_empty());
        for odd in ["", "/", "//", "$", "$share/", "$queue/", "+", "#", "x/\u{0}"] {
            let _ = r.rewrite_publish(odd);
            let _ = r.rewrite_subscribe(odd);
        }
        let rule = &r.rules()[0];
        assert_eq!(
            (
                rule.action(),
                rule.source_topic().as_str(),
                rule.re(),
                rule.dest_topic()
            ),
            (RewriteAction::Publish, "x/#", "^x/y/(.+)$", "z/y/$1")
        );
    }
}
