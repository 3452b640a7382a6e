//! EMQX's "raw" authorization rules, `{permission, action, topic | topics, qos, retain}`, as they
//! come outside acl.conf: in a JWT's `acl` claim (the list format) and in the built-in rule
//! database (`emqx_authz_rule_raw`).
//!
//! - `permission`: `allow` or `deny`.
//! - `action`: `publish` (or `pub`), `subscribe` (or `sub`), `all`.
//! - `topic` (one) or `topics` (a list): MQTT topic filters with `${username}` / `${clientid}`
//!   (and `%u` / `%c`) placeholders, or `eq t/#` for a literal comparison; matched as acl.conf
//!   topics are ([`crate::acl`]).
//! - `qos`: 0, 1, 2, a list of them or `"0,1"`; `retain`: `true`, `false`, `all` (or 0 / 1,
//!   or their text). Core's `Action` carries neither QoS nor retain, so a check made through
//!   [`RuleSet::check`] does not apply them: a rule limited to some QoS matches every QoS.

use portico_core::auth::{Action, ClientInfo};
use serde_json::Value;

use crate::acl::topic::{Subject, TopicCond, compile_text, subscription_filter};

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// The rule allows.
    Allow,
    /// The rule denies.
    Deny,
}

/// What a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// PUBLISH.
    Publish,
    /// SUBSCRIBE.
    Subscribe,
    /// Both.
    All,
}

impl RuleAction {
    fn covers(self, action: Action) -> bool {
        matches!(
            (self, action),
            (RuleAction::All, _) | (RuleAction::Publish, Action::Publish) | (RuleAction::Subscribe, Action::Subscribe)
        )
    }
}

/// A rule as written (kept for listing back), e.g. in the built-in rule database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RawRule {
    /// Allow or deny.
    pub permission: Permission,
    /// What it covers.
    pub action: RuleAction,
    /// A topic filter, or `eq <topic>`.
    pub topic: String,
    /// QoS levels it is limited to; `None` = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<Vec<u8>>,
    /// Publish retain flag it is limited to; `None` = both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
}

impl RawRule {
    /// A rule without QoS or retain limits.
    pub fn new(permission: Permission, action: RuleAction, topic: impl Into<String>) -> RawRule {
        RawRule {
            permission,
            action,
            topic: topic.into(),
            qos: None,
            retain: None,
        }
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    allow: bool,
    action: RuleAction,
    topics: Vec<TopicCond>,
}

impl Rule {
    /// Compiles `raw`; an invalid topic, QoS outside 0..=2 are refused.
    pub fn compile(raw: &RawRule) -> Result<Rule, String> {
        if let Some(qos) = &raw.qos
            && let Some(bad) = qos.iter().find(|q| **q > 2)
        {
            return Err(format!("invalid qos {bad}"));
        }
        Ok(Rule {
            allow: raw.permission == Permission::Allow,
            action: raw.action,
            topics: vec![compile_text(&raw.topic)?],
        })
    }

    /// Parses one rule of EMQX's JSON list format (see the module docs).
    pub fn from_json(value: &Value) -> Result<Rule, String> {
        let Value::Object(map) = value else {
            return Err("a rule must be an object".to_owned());
        };
        let permission = match map.get("permission").and_then(Value::as_str) {
            Some("allow") => true,
            Some("deny") => false,
            _ => return Err("missing or invalid 'permission' (allow | deny)".to_owned()),
        };
        let action = match map.get("action").and_then(Value::as_str) {
            Some("publish" | "pub") => RuleAction::Publish,
            Some("subscribe" | "sub") => RuleAction::Subscribe,
            Some("all") => RuleAction::All,
            _ => return Err("missing or invalid 'action' (publish | subscribe | all)".to_owned()),
        };
        let topics: Vec<&str> = match (map.get("topic"), map.get("topics")) {
            (Some(Value::String(topic)), _) => vec![topic.as_str()],
            (_, Some(Value::Array(topics))) => topics
                .iter()
                .map(|t| t.as_str().ok_or_else(|| "'topics' must hold strings".to_owned()))
                .collect::<Result<_, _>>()?,
            _ => return Err("missing 'topic' or 'topics'".to_owned()),
        };
        if let Some(qos) = map.get("qos") {
            parse_qos(qos)?;
        }
        if let Some(retain) = map.get("retain") {
            parse_retain(retain)?;
        }
        Ok(Rule {
            allow: permission,
            action,
            topics: topics.into_iter().map(compile_text).collect::<Result<_, _>>()?,
        })
    }

    /// `Some(allowed)` if the rule matches.
    fn verdict(&self, subject: &Subject<'_>, action: Action, topic: &str) -> Option<bool> {
        (self.action.covers(action) && self.topics.iter().any(|t| t.matches(subject, topic))).then_some(self.allow)
    }
}

/// Validates a `qos` value (checked so that a bad claim is refused, as EMQX does).
fn parse_qos(value: &Value) -> Result<Vec<u8>, String> {
    let one = |v: &Value| -> Result<u8, String> {
        match v {
            Value::Number(n) => n.as_u64().filter(|q| *q <= 2).map(|q| q as u8),
            Value::String(s) => s.trim().parse::<u8>().ok().filter(|q| *q <= 2),
            _ => None,
        }
        .ok_or_else(|| format!("invalid qos {v}"))
    };
    match value {
        Value::Null => Ok(vec![0, 1, 2]),
        Value::Array(items) => items.iter().map(one).collect(),
        Value::String(s) => s.split(',').map(|q| one(&Value::String(q.to_owned()))).collect(),
        other => one(other).map(|q| vec![q]),
    }
}

/// Validates a `retain` value; `None` = both.
fn parse_retain(value: &Value) -> Result<Option<bool>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Some(false)),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(Some(true)),
        Value::String(s) => match s.as_str() {
            "all" => Ok(None),
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(format!("invalid retain {value}")),
        },
        _ => Err(format!("invalid retain {value}")),
    }
}

/// Rules tried in order, the first match decides.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// The rules, in order.
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        RuleSet { rules }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True without rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `Some(allowed)` from the first rule matching `action` on `topic` for `client`; `None` when
    /// none does. A subscription's `$share/{group}/` or `$queue/` prefix is removed first.
    pub fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> Option<bool> {
        let subject = subject(client);
        let topic = match action {
            Action::Subscribe => subscription_filter(topic),
            Action::Publish => topic,
        };
        self.rules.iter().find_map(|rule| rule.verdict(&subject, action, topic))
    }
}

pub(crate) fn subject(client: &ClientInfo) -> Subject<'_> {
    Subject {
        client_id: &client.client_id,
        username: client.username.as_deref(),
        ip: client.peer.ip(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;
    use serde_json::json;

    fn client() -> ClientInfo {
        ClientInfo::new(
            ByteString::from_static("dev-1"),
            Some(ByteString::from_static("alice")),
            "127.0.0.1:1".parse().expect("address"),
            "mqtt",
        )
    }

    #[test]
    fn json_rules_with_placeholders_eq_and_first_match() {
        let rules = RuleSet::new(
            [
                json!({"permission": "deny", "action": "pub", "topic": "t/secret"}),
                json!({"permission": "allow", "action": "publish", "topics": ["t/#", "u/${username}"]}),
                json!({"permission": "allow", "action": "subscribe", "topic": "eq c/#", "qos": [0, 1]}),
                json!({"permission": "allow", "action": "all", "topic": "d/${clientid}/+", "retain": "all"}),
            ]
            .iter()
            .map(Rule::from_json)
            .collect::<Result<_, _>>()
            .expect("valid"),
        );
        let c = client();
        assert_eq!(rules.check(&c, Action::Publish, "t/secret"), Some(false));
        assert_eq!(rules.check(&c, Action::Publish, "t/a"), Some(true));
        assert_eq!(rules.check(&c, Action::Publish, "u/alice"), Some(true));
        assert_eq!(rules.check(&c, Action::Publish, "u/bob"), None);
        assert_eq!(rules.check(&c, Action::Subscribe, "c/#"), Some(true));
        assert_eq!(rules.check(&c, Action::Subscribe, "c/x"), None, "eq is literal");
        assert_eq!(rules.check(&c, Action::Subscribe, "$share/g/d/dev-1/x"), Some(true));
        assert_eq!(rules.check(&c, Action::Subscribe, "t/a"), None, "publish only");
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            json!("x"),
            json!({"action": "pub", "topic": "t"}),
            json!({"permission": "maybe", "action": "pub", "topic": "t"}),
            json!({"permission": "allow", "action": "read", "topic": "t"}),
            json!({"permission": "allow", "action": "pub"}),
            json!({"permission": "allow", "action": "pub", "topic": "a/#/b"}),
            json!({"permission": "allow", "action": "pub", "topic": "t", "qos": 3}),
            json!({"permission": "allow", "action": "pub", "topic": "t", "retain": "maybe"}),
            json!({"permission": "allow", "action": "pub", "topics": [1]}),
        ] {
            assert!(Rule::from_json(&bad).is_err(), "{bad}");
        }
        let raw = RawRule {
            qos: Some(vec![3]),
            ..RawRule::new(Permission::Allow, RuleAction::All, "t")
        };
        assert!(Rule::compile(&raw).is_err());
    }
}
