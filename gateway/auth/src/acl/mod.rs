//! EMQX's `acl.conf`: the rule file of the built-in file authorization source, read so that an
//! EMQX user's file works unchanged (2.x, 4.x and 5.x spellings).
//!
//! The file is a sequence of Erlang terms, each a tuple ended by `.`; `%` starts a comment:
//!
//! ```text
//! {allow, {username, "dashboard"}, subscribe, ["$SYS/#"]}.
//! {allow, {ipaddr, "127.0.0.1"}, pubsub, ["$SYS/#", "#"]}.
//! {deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
//! {allow, all}.
//! ```
//!
//! - Permission: `allow` or `deny`. `{allow, all}` / `{deny, all}` match every request.
//! - Who: `all`; `{user | username, "name"}`; `{client | clientid, "id"}`; either with
//!   `{re, "regex"}` (unanchored search, Rust `regex` syntax: no look-around or
//!   backreferences); `{ipaddr, "10.0.0.0/8"}` and `{ipaddrs, [...]}` (IPv4 or IPv6, address or
//!   CIDR, host bits ignored); `{'and', [Who, ...]}`, `{'or', [Who, ...]}` (nested at most
//!   16 deep). A client without a user name matches no user-name condition.
//! - Action: `publish`, `subscribe`, `pubsub` or `all` (both), or EMQX 5's
//!   `{publish | subscribe | all, [{qos, 0..2 | [0..2]}, {retain, true | false | all}]}`. Core's
//!   [`Action`] carries no QoS or retain flag: [`AclFile::check`] ignores those conditions,
//!   [`AclFile::check_detailed`] applies them.
//! - Topics: a list (or a single string) of topic filters, matched with MQTT wildcards against
//!   the published topic or the subscribed filter (see "Topic semantics" below), and
//!   `{eq, "t/#"}` (or `"eq t/#"`) for a literal comparison. Placeholders `%u` / `%c` (a whole
//!   level, 2.x-4.x) and `${username}` / `${clientid}` (anywhere, 5.x) are filled from the
//!   client; a topic whose placeholder cannot be filled (no user name) does not match.
//!
//! Rules are tried top-down; the first whose action, client and one of whose topics match
//! decides. No match: [`AuthzVerdict::Ignore`].
//!
//! Topic semantics: a subscribed filter is matched as EMQX does, as if it were a name (a rule
//! `a/#` covers the subscription `a/+`; a rule `a/b` does not; EMQX's quirk that a rule `+`
//! covers the subscription `#` is kept). A `$share/{group}/` or `$queue/` prefix is removed
//! before a subscription is checked. Topics starting with `$` are not matched by a rule filter
//! whose first level is `+` or `#`. Placeholder values are compared literally: a user name
//! `#` is not a wildcard.

use std::fmt;
use std::path::Path;

use portico_core::auth::{Action, ClientInfo};

use crate::AuthzVerdict;

mod parse;
mod rule;
pub(crate) mod topic;

pub mod fuzzing;

use rule::{Request, Rule};
use topic::Subject;

/// A line and column (1-based; columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: u32,
    pub(crate) column: u32,
}

/// An error inside the text, before the file name is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub(crate) pos: Pos,
    pub(crate) kind: AclErrorKind,
    pub(crate) message: String,
}

/// What is wrong with an acl.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AclErrorKind {
    /// The file cannot be read.
    Io,
    /// Not well-formed Erlang terms: a stray character, an unterminated string, a missing `.`.
    Syntax,
    /// Well-formed, but not a rule: wrong shape, unknown permission, condition or action.
    Rule,
    /// A `{re, "..."}` that does not compile.
    Regex,
    /// An `ipaddr` / `ipaddrs` value that is no address or CIDR.
    Cidr,
    /// A topic that is not a valid MQTT topic filter.
    Topic,
    /// An unknown `${...}` placeholder in a topic.
    Placeholder,
    /// A QoS condition other than 0, 1 or 2.
    Qos,
    /// A retain condition other than `true`, `false` or `all`.
    Retain,
    /// Terms or `'and'` / `'or'` conditions nested too deep.
    TooDeep,
}

/// Why an acl.conf was refused: `{file}:{line}:{column}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclError {
    file: String,
    pos: Option<Pos>,
    kind: AclErrorKind,
    message: String,
}

impl AclError {
    /// What kind of mistake it is.
    pub fn kind(&self) -> AclErrorKind {
        self.kind
    }

    /// The line of the mistake (1-based); `None` for I/O errors.
    pub fn line(&self) -> Option<u32> {
        self.pos.map(|p| p.line)
    }

    /// The column of the mistake (1-based, in characters); `None` for I/O errors.
    pub fn column(&self) -> Option<u32> {
        self.pos.map(|p| p.column)
    }

    /// The file name used in the message (`acl.conf` for [`AclFile::parse`]).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The message without the location.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn located(file: &str, e: Located) -> AclError {
        AclError {
            file: file.to_owned(),
            pos: Some(e.pos),
            kind: e.kind,
            message: e.message,
        }
    }
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(pos) => write!(f, "{}:{}:{}: {}", self.file, pos.line, pos.column, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for AclError {}

/// A parsed acl.conf: its rules, in order.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    rules: Vec<Rule>,
}

impl AclFile {
    /// Parses the text of an acl.conf; errors name the file `acl.conf`.
    pub fn parse(text: &str) -> Result<AclFile, AclError> {
        Self::parse_named(text, "acl.conf")
    }

    /// Reads and parses the file at `path`; errors name `path`.
    pub fn load(path: &Path) -> Result<AclFile, AclError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| AclError {
            file: file.clone(),
            pos: None,
            kind: AclErrorKind::Io,
            message: format!("cannot read the ACL file: {e}"),
        })?;
        Self::parse_named(&text, &file)
    }

    fn parse_named(text: &str, file: &str) -> Result<AclFile, AclError> {
        let terms = parse::parse_terms(text).map_err(|e| AclError::located(file, e))?;
        let rules = terms
            .iter()
            .map(Rule::compile)
            .collect::<Result<_, _>>()
            .map_err(|e| AclError::located(file, e))?;
        Ok(AclFile { rules })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True if the file has no rules (every check is [`AuthzVerdict::Ignore`]).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The line on which each rule starts, in order.
    pub fn rule_lines(&self) -> impl Iterator<Item = u32> + '_ {
        self.rules.iter().map(|r| r.line)
    }

    /// May `client` perform `action` on `topic` (the topic name published to, or the filter
    /// subscribed to)? The first matching rule decides; none: [`AuthzVerdict::Ignore`]. QoS and
    /// retain conditions of EMQX 5 rules are not checked (core's [`Action`] does not carry them).
    pub fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> AuthzVerdict {
        self.check_detailed(client, action, topic, None, None)
    }

    /// [`check`](Self::check) with the QoS of the message or subscription and the retain flag
    /// of a PUBLISH, for rules with `{publish, [{qos, ...}, {retain, ...}]}` conditions. `None`
    /// leaves that condition unchecked.
    pub fn check_detailed(
        &self,
        client: &ClientInfo,
        action: Action,
        topic: &str,
        qos: Option<u8>,
        retain: Option<bool>,
    ) -> AuthzVerdict {
        let subject = Subject {
            client_id: &client.client_id,
            username: client.username.as_deref(),
            ip: client.peer.ip(),
        };
        self.decide(
            &subject,
            &Request {
                action,
                topic,
                qos,
                retain,
            },
        )
    }

    fn decide(&self, subject: &Subject<'_>, request: &Request<'_>) -> AuthzVerdict {
        let topic = match request.action {
            Action::Subscribe => topic::subscription_filter(request.topic),
            Action::Publish => request.topic,
        };
        let request = Request { topic, ..*request };
        self.rules
            .iter()
            .find_map(|rule| rule.verdict(subject, &request))
            .unwrap_or(AuthzVerdict::Ignore)
    }
}
