//! The `acl` claim of a JWT: rules that come with the token and are checked before every
//! authorization source (EMQX `emqx_authz_client_info`). Two formats, as in EMQX:
//!
//! - the older map `{"pub": [...], "sub": [...], "all": [...]}` of topic filters: an action is
//!   allowed when its topic matches a filter of its list or of `all`, and **denied** otherwise
//!   (the token's rules are then the client's whole permission);
//! - the list `[{"permission", "action", "topic" | "topics", "qos", "retain"}, ...]` (see
//!   [`crate::rules`]): the first matching rule decides, and when none matches the
//!   authorization sources are asked.
//!
//! After the token's `exp` every check is denied, as EMQX does (the client stays connected:
//! EMQX's `disconnect_after_expire` is not implemented, see the module docs of `jwt`).

use portico_core::auth::{Action, ClientAcl, ClientInfo};
use serde_json::Value;

use crate::rules::{Rule, RuleSet};

/// The rules of one token's `acl` claim.
#[derive(Debug)]
pub struct ClaimAcl {
    rules: RuleSet,
    /// The older map format: no match = deny.
    deny_unmatched: bool,
    /// `exp`, in seconds since the epoch.
    expires: Option<i64>,
}

impl ClaimAcl {
    /// Parses the claim's value; `exp` from the token. A claim in neither format, or with a bad
    /// rule, is refused (EMQX refuses the token then).
    pub fn parse(claim: &Value, expires: Option<i64>) -> Result<ClaimAcl, String> {
        let (rules, deny_unmatched) = match claim {
            Value::Array(items) => (items.iter().map(Rule::from_json).collect::<Result<Vec<_>, _>>()?, false),
            Value::Object(map) => {
                let mut rules = Vec::new();
                // EMQX tries `pub`, then `sub`, then `all`; all allow, so the order does not
                // change the answer.
                for (key, action) in [("pub", "publish"), ("sub", "subscribe"), ("all", "all")] {
                    let Some(topics) = map.get(key) else { continue };
                    let Value::Array(topics) = topics else {
                        return Err(format!("'{key}' must be a list of topics"));
                    };
                    if topics.is_empty() {
                        continue;
                    }
                    rules.push(Rule::from_json(&serde_json::json!({
                        "permission": "allow",
                        "action": action,
                        "topics": topics,
                    }))?);
                }
                (rules, true)
            }
            _ => return Err("the acl claim must be a list of rules or a {pub, sub, all} map".to_owned()),
        };
        Ok(ClaimAcl {
            rules: RuleSet::new(rules),
            deny_unmatched,
            expires,
        })
    }

    /// [`ClientAcl::check`] at `now` (seconds since the epoch).
    pub fn check_at(&self, client: &ClientInfo, action: Action, topic: &str, now: i64) -> Option<bool> {
        if self.expires.is_some_and(|exp| now > exp) {
            return Some(false);
        }
        match self.rules.check(client, action, topic) {
            Some(allowed) => Some(allowed),
            None if self.deny_unmatched => Some(false),
            None => None,
        }
    }
}

impl ClientAcl for ClaimAcl {
    fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> Option<bool> {
        self.check_at(client, action, topic, super::now())
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
    fn the_map_format_denies_what_it_does_not_list() {
        let acl =
            ClaimAcl::parse(&json!({"pub": ["p/${username}"], "sub": ["s/#"], "all": ["a/+"]}), None).expect("valid");
        let c = client();
        assert_eq!(acl.check_at(&c, Action::Publish, "p/alice", 0), Some(true));
        assert_eq!(acl.check_at(&c, Action::Publish, "p/bob", 0), Some(false));
        assert_eq!(acl.check_at(&c, Action::Subscribe, "p/alice", 0), Some(false));
        assert_eq!(acl.check_at(&c, Action::Subscribe, "s/x/y", 0), Some(true));
        assert_eq!(acl.check_at(&c, Action::Publish, "a/1", 0), Some(true));
        assert_eq!(acl.check_at(&c, Action::Subscribe, "a/1", 0), Some(true));
    }

    #[test]
    fn the_list_format_passes_unmatched_checks_on() {
        let acl = ClaimAcl::parse(
            &json!([
                {"permission": "deny", "action": "subscribe", "topic": "t/secret"},
                {"permission": "allow", "action": "all", "topic": "t/#"},
            ]),
            Some(100),
        )
        .expect("valid");
        let c = client();
        assert_eq!(acl.check_at(&c, Action::Subscribe, "t/secret", 50), Some(false));
        assert_eq!(acl.check_at(&c, Action::Publish, "t/secret", 50), Some(true));
        assert_eq!(acl.check_at(&c, Action::Publish, "x", 50), None);
        assert_eq!(
            acl.check_at(&c, Action::Publish, "t/a", 100),
            Some(true),
            "exp itself is still valid"
        );
        assert_eq!(
            acl.check_at(&c, Action::Publish, "t/a", 101),
            Some(false),
            "expired: deny"
        );
        assert_eq!(acl.check_at(&c, Action::Publish, "x", 101), Some(false));
    }

    #[test]
    fn malformed_claims_are_refused() {
        for bad in [json!("t/#"), json!({"pub": "t/#"}), json!([{"permission": "allow"}])] {
            assert!(ClaimAcl::parse(&bad, None).is_err(), "{bad}");
        }
    }
}
