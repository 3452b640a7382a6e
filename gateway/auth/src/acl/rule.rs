//! Rules: compiled from the parsed terms, and matched against a request.

use std::net::IpAddr;

use portico_core::auth::Action;
use portico_core::topic::TopicFilter;
use regex::{Regex, RegexBuilder};

use super::parse::{Term, TermKind, quote};
use super::topic::{Filter, Subject, TopicCond};
use super::{AclErrorKind, Located};
use crate::AuthzVerdict;

/// Deepest nesting of `'and'` / `'or'` accepted.
pub(crate) const MAX_WHO_DEPTH: usize = 16;

/// Compiled regexes are kept small: they come from a file, but a huge one would stall loading.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What is being checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) action: Action,
    pub(crate) topic: &'a str,
    pub(crate) qos: Option<u8>,
    pub(crate) retain: Option<bool>,
}

/// One rule of the file.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    allow: bool,
    who: Who,
    action: ActionCond,
    /// `None` for `{allow, all}` / `{deny, all}`: every topic.
    topics: Option<Vec<TopicCond>>,
    pub(crate) line: u32,
}

#[derive(Debug, Clone)]
enum Who {
    All,
    Username(String),
    UsernameRe(Regex),
    ClientId(String),
    ClientIdRe(Regex),
    Ip(Vec<Cidr>),
    And(Vec<Who>),
    Or(Vec<Who>),
}

/// An address block; host bits are cleared at parse time (EMQX parses with `adjust`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, Copy)]
struct ActionCond {
    publish: bool,
    subscribe: bool,
    /// Bit `q` set: QoS `q` matches.
    qos: u8,
    /// `None`: retained or not.
    retain: Option<bool>,
}

const ANY_QOS: u8 = 0b111;

fn error(term: &Term, kind: AclErrorKind, message: String) -> Located {
    Located {
        pos: term.pos,
        kind,
        message,
    }
}

fn expected(term: &Term, what: &str) -> Located {
    error(
        term,
        AclErrorKind::Rule,
        format!("expected {what}, found {}", term.describe()),
    )
}

impl Rule {
    /// Compiles one top-level term.
    pub(crate) fn compile(term: &Term) -> Result<Rule, Located> {
        const SHAPE: &str = "a rule {allow | deny, Who, Action, Topics} or {allow | deny, all}";
        let TermKind::Tuple(items) = &term.kind else {
            return Err(expected(term, SHAPE));
        };
        if items.len() != 2 && items.len() != 4 {
            return Err(expected(term, SHAPE));
        }
        let allow = match items[0].atom() {
            Some("allow") => true,
            Some("deny") => false,
            _ => return Err(expected(&items[0], "allow or deny")),
        };
        let line = term.pos.line;
        if let [_, all] = items.as_slice() {
            if all.atom() != Some("all") {
                return Err(expected(all, "all (a two-element rule is {allow, all} or {deny, all})"));
            }
            return Ok(Rule {
                allow,
                who: Who::All,
                action: ActionCond {
                    publish: true,
                    subscribe: true,
                    qos: ANY_QOS,
                    retain: None,
                },
                topics: None,
                line,
            });
        }
        Ok(Rule {
            allow,
            who: who(&items[1], 0)?,
            action: action(&items[2])?,
            topics: Some(topics(&items[3])?),
            line,
        })
    }

    /// The rule's verdict if it matches the request, else `None`.
    pub(crate) fn verdict(&self, subject: &Subject<'_>, request: &Request<'_>) -> Option<AuthzVerdict> {
        let matched = self.action.matches(request)
            && self.who.matches(subject)
            && match &self.topics {
                None => true,
                Some(topics) => topics.iter().any(|t| t.matches(subject, request.topic)),
            };
        matched.then_some(if self.allow {
            AuthzVerdict::Allow
        } else {
            AuthzVerdict::Deny
        })
    }
}

fn string<'t>(term: &'t Term, what: &str) -> Result<&'t str, Located> {
    match &term.kind {
        TermKind::Str(s) => Ok(s),
        _ => Err(expected(term, what)),
    }
}

fn list<'t>(term: &'t Term, what: &str) -> Result<&'t [Term], Located> {
    match &term.kind {
        TermKind::List(items) => Ok(items),
        _ => Err(expected(term, what)),
    }
}

fn who(term: &Term, depth: usize) -> Result<Who, Located> {
    const WHO: &str = "all, {username, ...}, {clientid, ...}, {ipaddr, ...}, {ipaddrs, [...]}, \
                       {'and', [...]} or {'or', [...]}";
    if term.atom() == Some("all") {
        return Ok(Who::All);
    }
    let TermKind::Tuple(items) = &term.kind else {
        return Err(expected(term, WHO));
    };
    let [tag, value] = items.as_slice() else {
        return Err(expected(term, WHO));
    };
    match tag.atom() {
        Some("user" | "username") => name(value, "user name", Who::Username, Who::UsernameRe),
        Some("client" | "clientid") => name(value, "client id", Who::ClientId, Who::ClientIdRe),
        Some("ipaddr") => Ok(Who::Ip(vec![cidr(value)?])),
        Some("ipaddrs") => {
            let items = list(value, "a list of IP addresses or CIDRs")?;
            Ok(Who::Ip(items.iter().map(cidr).collect::<Result<_, _>>()?))
        }
        Some(op @ ("and" | "or")) => {
            if depth >= MAX_WHO_DEPTH {
                return Err(error(
                    term,
                    AclErrorKind::TooDeep,
                    format!("'and' / 'or' nested deeper than {MAX_WHO_DEPTH} levels"),
                ));
            }
            let items = list(value, &format!("a list of conditions in '{op}'"))?;
            let all = items.iter().map(|t| who(t, depth + 1)).collect::<Result<_, _>>()?;
            Ok(if op == "and" { Who::And(all) } else { Who::Or(all) })
        }
        _ => Err(expected(
            tag,
            "user, username, client, clientid, ipaddr, ipaddrs, 'and' or 'or'",
        )),
    }
}

/// `"name"`, `{re, "regex"}` or (EMQX 4.x) `all`.
fn name(value: &Term, what: &str, exact: fn(String) -> Who, pattern: fn(Regex) -> Who) -> Result<Who, Located> {
    match &value.kind {
        TermKind::Str(s) => Ok(exact(s.clone())),
        TermKind::Atom(a) if a == "all" => Ok(Who::All),
        TermKind::Tuple(items) => match items.as_slice() {
            [re, source] if re.atom() == Some("re") => {
                let source_text = string(source, "a regular expression string")?;
                RegexBuilder::new(source_text)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map(pattern)
                    .map_err(|e| {
                        error(
                            source,
                            AclErrorKind::Regex,
                            format!(
                                "invalid regular expression {}: {}",
                                quote(source_text),
                                regex_reason(&e)
                            ),
                        )
                    })
            }
            _ => Err(expected(value, &format!("a {what} string or {{re, \"regex\"}}"))),
        },
        _ => Err(expected(value, &format!("a {what} string or {{re, \"regex\"}}"))),
    }
}

/// The regex crate's error on one line.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn cidr(term: &Term) -> Result<Cidr, Located> {
    let text = string(term, "an IP address or CIDR string")?;
    parse_cidr(text).ok_or_else(|| {
        error(
            term,
            AclErrorKind::Cidr,
            format!(
                "invalid IP address or CIDR {} (expected like \"10.0.0.0/8\" or \"fd00::/8\")",
                quote(text)
            ),
        )
    })
}

/// `"addr"` or `"addr/prefix"`, IPv4 or IPv6. An IPv4-mapped IPv6 block is kept as IPv4, as
/// peers are compared in their canonical form.
fn parse_cidr(text: &str) -> Option<Cidr> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => {
            if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (addr.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?))
        }
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let (net, prefix) = match addr {
        IpAddr::V4(v4) => (IpAddr::V4(v4), prefix.unwrap_or(32)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix.is_none_or(|p| (96..=128).contains(&p)) => {
                (IpAddr::V4(v4), prefix.map_or(32, |p| p - 96))
            }
            _ => (IpAddr::V6(v6), prefix.unwrap_or(128)),
        },
    };
    let max = if net.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return None;
    }
    let cidr = Cidr { net, prefix };
    Some(Cidr {
        net: cidr.mask(net),
        prefix,
    })
}

impl Cidr {
    /// `ip` with the host bits cleared (same family as the block).
    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && self.mask(ip) == self.net
    }
}

impl Who {
    fn matches(&self, subject: &Subject<'_>) -> bool {
        match self {
            Who::All => true,
            Who::Username(name) => subject.username == Some(name.as_str()),
            Who::UsernameRe(re) => subject.username.is_some_and(|u| re.is_match(u)),
            Who::ClientId(id) => subject.client_id == id,
            Who::ClientIdRe(re) => re.is_match(subject.client_id),
            Who::Ip(blocks) => blocks.iter().any(|b| b.contains(subject.ip)),
            Who::And(all) => all.iter().all(|w| w.matches(subject)),
            Who::Or(any) => any.iter().any(|w| w.matches(subject)),
        }
    }
}

fn action(term: &Term) -> Result<ActionCond, Located> {
    const ACTION: &str =
        "publish, subscribe, pubsub, all or {publish | subscribe | all, [{qos, 0..2}, {retain, true | false | all}]}";
    let kind = |t: &Term| match t.atom() {
        Some("publish") => Some((true, false)),
        Some("subscribe") => Some((false, true)),
        Some("pubsub" | "all") => Some((true, true)),
        _ => None,
    };
    if let Some((publish, subscribe)) = kind(term) {
        return Ok(ActionCond {
            publish,
            subscribe,
            qos: ANY_QOS,
            retain: None,
        });
    }
    let TermKind::Tuple(items) = &term.kind else {
        return Err(expected(term, ACTION));
    };
    let [name, options] = items.as_slice() else {
        return Err(expected(term, ACTION));
    };
    let Some((publish, subscribe)) = kind(name) else {
        return Err(expected(name, "publish, subscribe or all"));
    };
    let mut cond = ActionCond {
        publish,
        subscribe,
        qos: ANY_QOS,
        retain: None,
    };
    let mut qos_given = false;
    let mut retain_given = false;
    for option in list(options, "a list of options like [{qos, 1}, {retain, true}]")? {
        const OPTION: &str = "{qos, 0..2}, {qos, [0..2, ...]} or {retain, true | false | all}";
        let (key, value) = match &option.kind {
            TermKind::Tuple(kv) => match kv.as_slice() {
                [k, v] => (k.atom(), Some(v)),
                _ => return Err(expected(option, OPTION)),
            },
            TermKind::Atom(a) => (Some(a.as_str()), None),
            _ => return Err(expected(option, OPTION)),
        };
        match (key, value) {
            (Some("qos"), Some(value)) => {
                if !qos_given {
                    cond.qos = 0;
                    qos_given = true;
                }
                let values = match &value.kind {
                    TermKind::List(values) => values.as_slice(),
                    _ => std::slice::from_ref(value),
                };
                for v in values {
                    match v.kind {
                        TermKind::Int(q @ 0..=2) => cond.qos |= 1 << q,
                        _ => {
                            let found = v.describe();
                            return Err(error(
                                v,
                                AclErrorKind::Qos,
                                format!("expected QoS 0, 1 or 2, found {found}"),
                            ));
                        }
                    }
                }
            }
            // proplists: a bare `retain` is `{retain, true}`; the first value given counts.
            (Some("retain"), value) => {
                let retain = match value.map(|v| (v, v.atom())) {
                    None | Some((_, Some("true"))) => Some(true),
                    Some((_, Some("false"))) => Some(false),
                    Some((_, Some("all"))) => None,
                    Some((v, _)) => {
                        let found = v.describe();
                        return Err(error(
                            v,
                            AclErrorKind::Retain,
                            format!("expected retain true, false or all, found {found}"),
                        ));
                    }
                };
                if !retain_given {
                    cond.retain = retain;
                    retain_given = true;
                }
            }
            _ => return Err(expected(option, OPTION)),
        }
    }
    Ok(cond)
}

impl ActionCond {
    /// QoS and retain conditions apply only when the request says what they are; `retain` only
    /// to publishing (EMQX ignores it for subscriptions).
    fn matches(&self, request: &Request<'_>) -> bool {
        let kind = match request.action {
            Action::Publish => self.publish,
            Action::Subscribe => self.subscribe,
        };
        let qos = self.qos == ANY_QOS || request.qos.is_none_or(|q| q <= 2 && self.qos & (1 << q) != 0);
        let retain = match (request.action, self.retain, request.retain) {
            (Action::Publish, Some(want), Some(got)) => want == got,
            _ => true,
        };
        kind && qos && retain
    }
}

fn topics(term: &Term) -> Result<Vec<TopicCond>, Located> {
    const TOPICS: &str = "a list of topics like [\"t/#\", {eq, \"t/#\"}]";
    match &term.kind {
        // EMQX's documentation shows a single topic string in place of the list.
        TermKind::Str(_) => Ok(vec![topic(term)?]),
        TermKind::List(items) => items.iter().map(topic).collect(),
        _ => Err(expected(term, TOPICS)),
    }
}

fn topic(term: &Term) -> Result<TopicCond, Located> {
    const TOPIC: &str = "a topic string or {eq, \"topic\"}";
    let text = match &term.kind {
        TermKind::Str(s) => s.as_str(),
        TermKind::Tuple(items) => match items.as_slice() {
            [eq, literal] if eq.atom() == Some("eq") => return eq_topic(literal, string(literal, "a topic string")?),
            _ => return Err(expected(term, TOPIC)),
        },
        _ => return Err(expected(term, TOPIC)),
    };
    // EMQX 5 also reads "eq t/#" as {eq, "t/#"}.
    if let Some(literal) = text.strip_prefix("eq ") {
        return eq_topic(term, literal);
    }
    Filter::compile(text)
        .map(TopicCond::Filter)
        .map_err(|e| error(term, e.kind, e.message))
}

/// A literal topic: validated as a filter (so that it can equal something a client sends), with
/// no placeholders.
fn eq_topic(term: &Term, literal: &str) -> Result<TopicCond, Located> {
    TopicFilter::new(literal).map_err(|e| {
        error(
            term,
            AclErrorKind::Topic,
            format!("invalid topic filter {}: {e}", quote(literal)),
        )
    })?;
    Ok(TopicCond::Eq(literal.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_match() {
        let block = |s: &str| parse_cidr(s).unwrap_or_else(|| panic!("{s}"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(block("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!block("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(block("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!block("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(block("10.1.2.3/8").contains(ip("10.9.9.9")), "host bits are cleared");
        assert!(block("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!block("0.0.0.0/0").contains(ip("::1")));
        assert!(block("::1").contains(ip("::1")));
        assert!(block("fd00::/8").contains(ip("fd12:3456::1")));
        assert!(!block("fd00::/8").contains(ip("fe80::1")));
        assert!(block("::/0").contains(ip("2001:db8::1")));
        assert!(
            block("127.0.0.1").contains(ip("::ffff:127.0.0.1")),
            "mapped peers are IPv4"
        );
        assert!(block("::ffff:10.0.0.0/104").contains(ip("10.1.1.1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "a",
            " 10.0.0.1",
            "1.2.3.4/8/8",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn regex_errors_fit_on_one_line() {
        let unclosed = String::from("(");
        let Err(e) = Regex::new(&unclosed) else {
            panic!("( compiled");
        };
        let reason = regex_reason(&e);
        assert!(!reason.contains('\n') && !reason.is_empty(), "{reason}");
    }
}
