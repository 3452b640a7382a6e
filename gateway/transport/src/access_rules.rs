//! Listener access rules: which client addresses may open a connection at all.
//!
//! This is the EMQX listener `access_rules` setting, kept compatible so that a migrated config
//! means the same thing here:
//! - the setting is a list of strings, each `allow <who>` or `deny <who>`, where `<who>` is
//!   `all`, a bare address (`10.0.0.7`, `::1`) or a CIDR block (`192.168.0.0/24`,
//!   `2001:db8::/32`); EMQX 5 also accepts several rules in one string separated by commas
//!   (`"allow 10.0.1.0/24, deny all"`), and so do we;
//! - rules are tried in order and the first one that matches decides;
//! - an address that no rule matches is **allowed** (EMQX's acceptor only refuses an explicit
//!   deny), so a list without a trailing `deny all` is a deny-list, and the default — no rules,
//!   or `["allow all"]` — lets everyone in.
//!
//! Two deliberate choices where EMQX is silent or loose:
//! - an IPv4 client seen on a dual-stack socket arrives as an IPv4-mapped IPv6 address
//!   (`::ffff:10.0.0.7`); it is matched as the IPv4 address it is, so IPv4 rules keep working
//!   when the listener binds `::`. A rule written in mapped form (`::ffff:10.0.0.0/104`) is
//!   likewise read as the IPv4 block it denotes;
//! - a CIDR with host bits set (`192.168.0.1/24`) is accepted and means its network
//!   (`192.168.0.0/24`), as in EMQX, rather than refusing a config that worked there.
//!
//! The check is meant for the accept path: a handful of rules, compared as integers, no
//! allocation per connection.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let the connection in.
    Allow,
    /// Close it at once.
    Deny,
}

/// A block of addresses: an IPv4 or IPv6 network and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    /// IPv4 network (host bits cleared) and prefix length `0..=32`.
    V4(Ipv4Addr, u8),
    /// IPv6 network (host bits cleared) and prefix length `0..=128`.
    V6(Ipv6Addr, u8),
}

impl Cidr {
    /// Whether `ip` is inside this block. IPv4-mapped IPv6 addresses are matched as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, canonical(ip)) {
            (Cidr::V4(net, len), IpAddr::V4(ip)) => u32::from(ip) & mask32(*len) == u32::from(*net),
            (Cidr::V6(net, len), IpAddr::V6(ip)) => u128::from(ip) & mask128(*len) == u128::from(*net),
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cidr::V4(net, len) => write!(f, "{net}/{len}"),
            Cidr::V6(net, len) => write!(f, "{net}/{len}"),
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `addr` or `addr/len`; a bare address is a block of one (`/32` or `/128`).
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{addr}\" is not an IPv4 or IPv6 address"))?;
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => {
                // Digits only: `u8::from_str` would also take a leading `+`.
                if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("prefix length \"{len}\" is not a number"));
                }
                match len.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(format!("prefix length {len} is out of range for {addr} (0..={max})")),
                }
            }
        };
        Ok(match ip {
            IpAddr::V4(v4) => Cidr::V4(Ipv4Addr::from(u32::from(v4) & mask32(len)), len),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // `::ffff:a.b.c.d/len` with len >= 96 names an IPv4 block; keep it as one so that
                // it matches the canonical (IPv4) form of the client address.
                Some(v4) if len >= 96 => {
                    let len = len - 96;
                    Cidr::V4(Ipv4Addr::from(u32::from(v4) & mask32(len)), len)
                }
                _ => Cidr::V6(Ipv6Addr::from(u128::from(v6) & mask128(len)), len),
            },
        })
    }
}

/// Who a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Every address.
    All,
    /// The addresses of one block.
    Cidr(Cidr),
}

/// One `allow <who>` / `deny <who>` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRule {
    /// What happens on a match.
    pub action: Action,
    /// Which addresses match.
    pub who: Who,
}

impl AccessRule {
    /// The rule's verdict for `ip`, or `None` when it does not apply.
    pub fn check(&self, ip: IpAddr) -> Option<Action> {
        match self.who {
            Who::All => Some(self.action),
            Who::Cidr(cidr) => cidr.contains(ip).then_some(self.action),
        }
    }
}

impl FromStr for AccessRule {
    type Err = String;

    /// `allow all`, `deny 10.0.0.0/8`, … (case-insensitive keywords, any run of spaces/tabs).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let action = match words.next() {
            None => return Err("empty rule; expected \"allow <cidr|all>\" or \"deny <cidr|all>\"".to_owned()),
            Some(w) if w.eq_ignore_ascii_case("allow") => Action::Allow,
            Some(w) if w.eq_ignore_ascii_case("deny") => Action::Deny,
            Some(w) => return Err(format!("expected \"allow\" or \"deny\", found \"{w}\"")),
        };
        let who = match words.next() {
            None => return Err("missing address after the action; expected a CIDR, an address or \"all\"".to_owned()),
            Some(w) if w.eq_ignore_ascii_case("all") => Who::All,
            Some(w) => Who::Cidr(w.parse()?),
        };
        if let Some(extra) = words.next() {
            return Err(format!(
                "unexpected \"{extra}\" after the address; put one address per rule, separated by commas"
            ));
        }
        Ok(AccessRule { action, who })
    }
}

impl fmt::Display for AccessRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
        };
        match self.who {
            Who::All => write!(f, "{action} all"),
            Who::Cidr(cidr) => write!(f, "{action} {cidr}"),
        }
    }
}

/// An ordered list of access rules; the first match decides and no match means allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRules {
    rules: Vec<AccessRule>,
}

impl AccessRules {
    /// Rules that let every address in: EMQX's default, `["allow all"]`, spelled as that one
    /// rule so that it compares equal to the parsed config default.
    pub fn allow_all() -> Self {
        Self {
            rules: vec![AccessRule {
                action: Action::Allow,
                who: Who::All,
            }],
        }
    }

    /// Parses the config list. Each entry may hold several comma-separated rules. Errors name
    /// the entry (1-based) and the rule text.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.as_ref();
            for part in entry.split(',') {
                let rule = part
                    .parse::<AccessRule>()
                    .map_err(|e| format!("access rule {} (\"{}\"): {e}", i + 1, part.trim()))?;
                rules.push(rule);
            }
        }
        Ok(AccessRules { rules })
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> &[AccessRule] {
        &self.rules
    }

    /// Whether a client at `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.rules
            .iter()
            .find_map(|rule| rule.check(ip))
            .is_none_or(|action| action == Action::Allow)
    }
}

/// IPv4-mapped IPv6 addresses become the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn rules(list: &[&str]) -> AccessRules {
        AccessRules::parse(list).expect("valid rules")
    }

    #[test]
    fn empty_list_and_allow_all_let_everyone_in() {
        for r in [AccessRules::allow_all(), rules(&[]), rules(&["allow all"])] {
            assert!(r.allows(ip("203.0.113.9")));
            assert!(r.allows(ip("2001:db8::1")));
        }
    }

    #[test]
    fn first_match_wins() {
        let r = rules(&["deny 192.168.1.1", "allow 192.168.1.0/24", "deny all"]);
        assert!(!r.allows(ip("192.168.1.1")));
        assert!(r.allows(ip("192.168.1.4")));
        assert!(r.allows(ip("192.168.1.255")));
        assert!(!r.allows(ip("192.168.2.1")));
        assert!(!r.allows(ip("10.10.10.10")));
        assert!(!r.allows(ip("::1")));
    }

    #[test]
    fn no_match_allows() {
        let r = rules(&["deny 10.0.0.0/8"]);
        assert!(!r.allows(ip("10.1.2.3")));
        assert!(r.allows(ip("11.0.0.1")));
        assert!(r.allows(ip("2001:db8::1")));
    }

    #[test]
    fn several_rules_in_one_entry() {
        let r = rules(&["allow 10.0.1.0/24, deny all"]);
        assert_eq!(r.rules().len(), 2);
        assert!(r.allows(ip("10.0.1.200")));
        assert!(!r.allows(ip("10.0.2.1")));
    }

    #[test]
    fn ipv6_blocks() {
        let r = rules(&["allow 2001:db8::/32", "allow ::1", "deny all"]);
        assert!(r.allows(ip("2001:db8:ffff::1")));
        assert!(r.allows(ip("::1")));
        assert!(!r.allows(ip("2001:db9::1")));
        assert!(!r.allows(ip("127.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_rules() {
        let r = rules(&["allow 192.168.0.0/16", "deny all"]);
        assert!(r.allows(ip("::ffff:192.168.3.4")));
        assert!(!r.allows(ip("::ffff:10.0.0.1")));
        // And an IPv4 rule never matches a genuine IPv6 address that merely shares bits.
        assert!(!r.allows(ip("c0a8::1")));
    }

    #[test]
    fn mapped_rules_are_ipv4_blocks() {
        let cidr: Cidr = "::ffff:10.0.0.0/104".parse().expect("valid");
        assert_eq!(cidr, Cidr::V4(Ipv4Addr::new(10, 0, 0, 0), 8));
        assert!(cidr.contains(ip("10.9.9.9")));
        assert!(cidr.contains(ip("::ffff:10.9.9.9")));
        // A short prefix covering more than the mapped range stays IPv6.
        let wide: Cidr = "::ffff:0.0.0.0/80".parse().expect("valid");
        assert!(matches!(wide, Cidr::V6(_, 80)));
    }

    #[test]
    fn host_bits_are_cleared() {
        let cidr: Cidr = "192.168.0.77/24".parse().expect("valid");
        assert_eq!(cidr, Cidr::V4(Ipv4Addr::new(192, 168, 0, 0), 24));
        assert_eq!(cidr.to_string(), "192.168.0.0/24");
        let v6: Cidr = "2001:db8::1/32".parse().expect("valid");
        assert_eq!(v6.to_string(), "2001:db8::/32");
    }

    #[test]
    fn zero_and_full_prefixes() {
        let any4: Cidr = "0.0.0.0/0".parse().expect("valid");
        assert!(any4.contains(ip("255.255.255.255")));
        assert!(!any4.contains(ip("::2")));
        let any6: Cidr = "::/0".parse().expect("valid");
        assert!(any6.contains(ip("ffff::1")));
        let one: Cidr = "10.0.0.1/32".parse().expect("valid");
        assert!(one.contains(ip("10.0.0.1")));
        assert!(!one.contains(ip("10.0.0.0")));
    }

    #[test]
    fn keywords_are_case_insensitive_and_spacing_is_free() {
        let r = rules(&["  ALLOW\t127.0.0.1 ", "Deny  All"]);
        assert_eq!(r.rules()[0].to_string(), "allow 127.0.0.1/32");
        assert_eq!(r.rules()[1].to_string(), "deny all");
    }

    #[test]
    fn bad_rules_name_the_entry_and_the_problem() {
        let cases: &[(&[&str], &str)] = &[
            (&[""], "access rule 1 (\"\"): empty rule"),
            (
                &["allow all", "allw all"],
                "access rule 2 (\"allw all\"): expected \"allow\" or \"deny\"",
            ),
            (&["deny"], "missing address"),
            (
                &["allow 10.0.0.0/33"],
                "prefix length 33 is out of range for 10.0.0.0 (0..=32)",
            ),
            (&["allow ::/129"], "prefix length 129 is out of range"),
            (&["allow 10.0.0.0/"], "prefix length \"\" is not a number"),
            (&["allow 10.0.0.0/+8"], "prefix length \"+8\" is not a number"),
            (&["allow 10.0.0.0/x"], "is not a number"),
            (&["allow 10.0.0"], "\"10.0.0\" is not an IPv4 or IPv6 address"),
            (&["allow localhost"], "\"localhost\" is not an IPv4 or IPv6 address"),
            (&["allow 010.0.0.1"], "is not an IPv4 or IPv6 address"),
            (&["allow fe80::1%eth0"], "is not an IPv4 or IPv6 address"),
            (&["allow 10.0.0.1 10.0.0.2"], "unexpected \"10.0.0.2\""),
            (&["allow 10.0.0.1,"], "access rule 1 (\"\"): empty rule"),
            (&["allow all,, deny all"], "empty rule"),
        ];
        for (input, expected) in cases {
            let err = AccessRules::parse(input).expect_err("must be refused");
            assert!(err.contains(expected), "{input:?}: {err:?} lacks {expected:?}");
        }
    }

    proptest! {
        #[test]
        fn v4_contains_agrees_with_prefix_comparison(net in any::<u32>(), len in 0u8..=32, addr in any::<u32>()) {
            let cidr: Cidr = format!("{}/{len}", Ipv4Addr::from(net)).parse().expect("valid");
            let shift = 32 - u32::from(len);
            let expected = len == 0 || (net >> shift) == (addr >> shift);
            prop_assert_eq!(cidr.contains(IpAddr::V4(Ipv4Addr::from(addr))), expected);
            // The mapped form of the same address gives the same answer.
            let mapped = IpAddr::V6(Ipv4Addr::from(addr).to_ipv6_mapped());
            prop_assert_eq!(cidr.contains(mapped), expected);
        }

        #[test]
        fn v6_contains_agrees_with_prefix_comparison(net in any::<u128>(), len in 0u8..=128, addr in any::<u128>()) {
            let cidr: Cidr = format!("{}/{len}", Ipv6Addr::from(net)).parse().expect("valid");
            let shift = 128 - u32::from(len);
            let expected = len == 0 || (net >> shift) == (addr >> shift);
            let addr = Ipv6Addr::from(addr);
            // Mapped addresses are matched as IPv4, so only compare for the others.
            prop_assume!(addr.to_ipv4_mapped().is_none());
            prop_assert_eq!(cidr.contains(IpAddr::V6(addr)), expected);
        }

        #[test]
        fn display_parses_back(net in any::<u32>(), len in 0u8..=32, allow in any::<bool>()) {
            let action = if allow { "allow" } else { "deny" };
            let rule: AccessRule = format!("{action} {}/{len}", Ipv4Addr::from(net)).parse().expect("valid");
            let again: AccessRule = rule.to_string().parse().expect("display parses");
            prop_assert_eq!(rule, again);
        }

        #[test]
        fn parse_never_panics(s in ".{0,64}") {
            let _ = AccessRules::parse(&[s]);
        }
    }
}
