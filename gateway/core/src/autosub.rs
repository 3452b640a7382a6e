//! EMQX auto-subscribe: subscriptions the broker makes on a client's behalf when it connects.
//!
//! Configured as `auto_subscribe.topics = [{topic, qos, rh, rap, nl}]` (EMQX 5
//! `emqx_auto_subscribe_schema`). Topic templates may use `${clientid}`, `${username}`, `${host}`
//! and `${port}`; [`expand`] fills them in per connection. The caller then parses the result as
//! a subscription (it may be `$share/...`, as EMQX runs `emqx_topic:parse` on it) and subscribes
//! with the rule's options.

use crate::message::QoS;

/// One configured auto-subscription. Plain data: the config layer builds it, the connect path
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoSubscribeRule {
    /// The topic template, placeholders unexpanded.
    pub topic: String,
    /// Maximum QoS of the subscription (EMQX `qos`, default 0).
    pub qos: QoS,
    /// MQTT 5 Retain Handling, 0..=2 (EMQX `rh`, default 0).
    pub retain_handling: u8,
    /// MQTT 5 Retain As Published (EMQX `rap`, default 0).
    pub retain_as_published: bool,
    /// MQTT 5 No Local (EMQX `nl`, default 0).
    pub no_local: bool,
}

impl AutoSubscribeRule {
    /// A rule for `topic` with EMQX's defaults: QoS 0, rh 0, rap 0, nl 0.
    pub fn new(topic: impl Into<String>) -> AutoSubscribeRule {
        AutoSubscribeRule {
            topic: topic.into(),
            qos: QoS::AtMostOnce,
            retain_handling: 0,
            retain_as_published: false,
            no_local: false,
        }
    }

    /// This rule's topic for one connection; see [`expand`].
    pub fn expand(&self, client_id: &str, username: Option<&str>, host: &str, port: u16) -> Option<String> {
        expand(&self.topic, client_id, username, host, port)
    }
}

/// Fills `${clientid}`, `${username}`, `${host}` and `${port}` into `template`.
///
/// `host` and `port` are the client's peer address and port (EMQX takes them from the
/// connection's `peername`, not from the listener). Unknown `${...}` placeholders are left as
/// they are, as EMQX's template scanner only recognises those four.
///
/// Returns `None` (skip this rule for this client) when the template uses `${username}` and the
/// client sent no username (EMQX: `username_undefined`), or when the expansion is empty (EMQX:
/// `empty_topic`). An empty but present username expands to nothing, as in EMQX.
pub fn expand(template: &str, client_id: &str, username: Option<&str>, host: &str, port: u16) -> Option<String> {
    let mut out = String::with_capacity(template.len() + client_id.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let value = if let Some(tail) = after.strip_prefix("${clientid}") {
            rest = tail;
            client_id.to_string()
        } else if let Some(tail) = after.strip_prefix("${username}") {
            rest = tail;
            username?.to_string()
        } else if let Some(tail) = after.strip_prefix("${host}") {
            rest = tail;
            host.to_string()
        } else if let Some(tail) = after.strip_prefix("${port}") {
            rest = tail;
            port.to_string()
        } else {
            // Not one of ours: keep the "${" literally and scan on after it.
            rest = &after[2..];
            "${".to_string()
        };
        out.push_str(&value);
    }
    out.push_str(rest);
    if out.is_empty() { None } else { Some(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_placeholders_expand() {
        // The example topic of EMQX's auto-subscribe schema.
        let t = "/clientid/${clientid}/username/${username}/host/${host}/port/${port}";
        assert_eq!(
            expand(t, "c1", Some("u1"), "10.0.0.7", 51234).as_deref(),
            Some("/clientid/c1/username/u1/host/10.0.0.7/port/51234")
        );
    }

    #[test]
    fn repeated_and_adjacent_placeholders() {
        assert_eq!(
            expand("${clientid}${clientid}/${port}", "a", None, "h", 1).as_deref(),
            Some("aa/1")
        );
    }

    #[test]
    fn missing_username_skips_the_rule() {
        assert_eq!(expand("$user/${username}", "c", None, "h", 1), None);
        assert_eq!(
            expand("$client/${clientid}", "c", None, "h", 1).as_deref(),
            Some("$client/c")
        );
        assert_eq!(expand("u/${username}", "c", Some(""), "h", 1).as_deref(), Some("u/"));
    }

    #[test]
    fn unknown_and_unterminated_placeholders_stay() {
        assert_eq!(
            expand("a/${peerhost}/b", "c", None, "h", 1).as_deref(),
            Some("a/${peerhost}/b")
        );
        assert_eq!(
            expand("a/${clientid", "c", None, "h", 1).as_deref(),
            Some("a/${clientid")
        );
        assert_eq!(expand("a/$", "c", None, "h", 1).as_deref(), Some("a/$"));
        assert_eq!(expand("${", "c", None, "h", 1).as_deref(), Some("${"));
        assert_eq!(expand("${${clientid}}", "c", None, "h", 1).as_deref(), Some("${c}"));
        assert_eq!(
            expand("%c/%u", "c", None, "h", 1).as_deref(),
            Some("%c/%u"),
            "2.x syntax is not ours"
        );
    }

    #[test]
    fn empty_expansion_is_skipped() {
        assert_eq!(expand("${clientid}", "", None, "h", 1), None);
        assert_eq!(expand("", "c", None, "h", 1), None);
        assert_eq!(expand("${username}", "c", Some(""), "h", 1), None);
    }

    #[test]
    fn rule_defaults_and_expand() {
        let rule = AutoSubscribeRule::new("c/${clientid}");
        assert_eq!(rule.qos, QoS::AtMostOnce);
        assert_eq!(rule.retain_handling, 0);
        assert!(!rule.retain_as_published && !rule.no_local);
        assert_eq!(rule.expand("x", None, "h", 1).as_deref(), Some("c/x"));
    }
}
