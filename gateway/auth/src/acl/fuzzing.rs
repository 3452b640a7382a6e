//! The check behind the `acl_conf` fuzz target (`fuzz/fuzz_targets/acl_conf.rs`), also run by
//! `tests/acl_fuzz_seeds.rs` on every seed so that an input that once broke the parser is
//! replayed by the ordinary test run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portico_core::auth::Action;

use super::rule::Request;
use super::topic::Subject;
use super::{AclErrorKind, AclFile};
use crate::AuthzVerdict;

const SUBJECTS: [Subject<'static>; 4] = [
    Subject {
        client_id: "c1",
        username: Some("alice"),
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    },
    Subject {
        client_id: "dashboard",
        username: Some("dashboard"),
        ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
    },
    Subject {
        client_id: "",
        username: None,
        ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
    },
    Subject {
        client_id: "#",
        username: Some("+"),
        ip: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
    },
];

const TOPICS: [&str; 12] = [
    "a/b",
    "a/#",
    "#",
    "+/b",
    "$SYS/brokers",
    "$SYS/#",
    "u/alice",
    "c/c1",
    "$share/g/a/b",
    "",
    "/",
    "t/dashboard/x",
];

/// Parses `data` (lossy UTF-8) as an acl.conf and panics on any broken invariant:
/// - the parser never panics; an error names `acl.conf`, a line within the text and a column;
/// - a parsed file has at most one rule per `.`, in order of their lines;
/// - checks never panic for a few clients, actions, topics, QoS and retain flags, and appending
///   `{deny, all}.` turns exactly the `Ignore` verdicts into `Deny`.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let file = match AclFile::parse(&text) {
        Ok(file) => file,
        Err(e) => {
            let line = e.line().unwrap_or(0) as usize;
            assert!(line >= 1 && line <= text.matches('\n').count() + 1, "line {line}: {e}");
            assert!(e.column().unwrap_or(0) >= 1, "{e}");
            assert_ne!(e.kind(), AclErrorKind::Io);
            assert!(e.to_string().starts_with("acl.conf:") && !e.message().is_empty(), "{e}");
            return;
        }
    };
    assert!(file.len() <= text.matches('.').count());
    let lines: Vec<u32> = file.rule_lines().collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");

    let closed = match AclFile::parse(&format!("{text}\n{{deny, all}}.\n")) {
        Ok(closed) => closed,
        Err(e) => panic!("appending {{deny, all}}. broke a valid file: {e}"),
    };
    assert_eq!(closed.len(), file.len() + 1);
    for subject in &SUBJECTS {
        for action in [Action::Publish, Action::Subscribe] {
            for topic in TOPICS {
                for (qos, retain) in [
                    (None, None),
                    (Some(0), Some(false)),
                    (Some(2), Some(true)),
                    (Some(3), None),
                ] {
                    let request = Request {
                        action,
                        topic,
                        qos,
                        retain,
                    };
                    let verdict = file.decide(subject, &request);
                    let expected = match verdict {
                        AuthzVerdict::Ignore => AuthzVerdict::Deny,
                        decided => decided,
                    };
                    assert_eq!(closed.decide(subject, &request), expected, "{subject:?} {request:?}");
                }
            }
        }
    }
}
