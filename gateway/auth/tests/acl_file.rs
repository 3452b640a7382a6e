//! acl.conf as an EMQX user writes it: the default file, every grammar element, matching
//! order, and the errors a broken file gets.

use std::net::SocketAddr;
use std::path::Path;

use portico_auth::AuthzVerdict::{self, Allow, Deny, Ignore};
use portico_auth::acl::{AclErrorKind, AclFile};
use portico_core::auth::Action::{self, Publish, Subscribe};
use portico_core::auth::ClientInfo;
use proptest::prelude::*;

fn client(client_id: &str, username: Option<&str>, ip: &str) -> ClientInfo {
    let peer: SocketAddr = format!("{ip}:40000")
        .parse()
        .or_else(|_| format!("[{ip}]:40000").parse())
        .unwrap_or_else(|e| panic!("{ip}: {e}"));
    ClientInfo {
        client_id: client_id.into(),
        username: username.map(Into::into),
        peer,
        protocol: "mqtt",
        superuser: false,
        cert: None,
        acl: None,
    }
}

fn alice() -> ClientInfo {
    client("c1", Some("alice"), "192.0.2.10")
}

fn parse(text: &str) -> AclFile {
    AclFile::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The verdict of a one-rule file `{allow, <who>, pubsub, ["#"]}`.
fn who_matches(who: &str, c: &ClientInfo) -> bool {
    let file = parse(&format!("{{allow, {who}, pubsub, [\"#\"]}}."));
    file.check(c, Publish, "t") == Allow
}

fn default_file() -> AclFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/acl.conf");
    AclFile::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_default_file_behaves_as_emqx_documents() {
    let acl = default_file();
    assert_eq!(acl.len(), 4);
    let dashboard = client("d", Some("dashboard"), "192.0.2.7");
    let local = client("l", None, "127.0.0.1");
    let other = client("o", Some("bob"), "192.0.2.8");

    assert_eq!(acl.check(&dashboard, Subscribe, "$SYS/#"), Allow);
    assert_eq!(acl.check(&dashboard, Subscribe, "$SYS/brokers/+/clients"), Allow);
    assert_eq!(acl.check(&dashboard, Subscribe, "#"), Deny, "dashboard is not local");

    for topic in ["$SYS/#", "#", "$SYS/brokers", "a/b"] {
        assert_eq!(acl.check(&local, Subscribe, topic), Allow, "local sub {topic}");
        assert_eq!(
            acl.check(&local, Publish, topic.trim_end_matches("/#")),
            Allow,
            "local pub {topic}"
        );
    }

    assert_eq!(acl.check(&other, Subscribe, "$SYS/#"), Deny);
    assert_eq!(acl.check(&other, Subscribe, "$SYS/brokers/n1/version"), Deny);
    assert_eq!(acl.check(&other, Subscribe, "#"), Deny);
    assert_eq!(acl.check(&other, Subscribe, "a/#"), Allow);
    assert_eq!(acl.check(&other, Subscribe, "+/b"), Allow);
    assert_eq!(acl.check(&other, Subscribe, "a/b"), Allow);
    assert_eq!(acl.check(&other, Publish, "a/b"), Allow);
    assert_eq!(
        acl.check(&other, Publish, "$SYS/x"),
        Allow,
        "{{allow, all}} matches everything"
    );
}

#[test]
fn who_conditions() {
    let a = alice();
    let anon = client("c9", None, "192.0.2.10");
    assert!(who_matches("all", &a));
    assert!(who_matches("{user, \"alice\"}", &a));
    assert!(who_matches("{username, \"alice\"}", &a));
    assert!(!who_matches("{username, \"Alice\"}", &a));
    assert!(!who_matches("{username, \"alice\"}", &anon));
    assert!(who_matches("{username, all}", &anon), "4.x {{user, all}}");
    assert!(who_matches("{client, \"c1\"}", &a));
    assert!(who_matches("{clientid, <<\"c1\">>}", &a));
    assert!(!who_matches("{clientid, \"c\"}", &a));
    assert!(who_matches("{username, {re, \"^al\"}}", &a));
    assert!(who_matches("{username, {re, \"ic\"}}", &a), "a search, not anchored");
    assert!(!who_matches("{username, {re, \"^ic\"}}", &a));
    assert!(
        !who_matches("{username, {re, \".*\"}}", &anon),
        "no user name, no match"
    );
    assert!(who_matches("{clientid, {re, \"^c[0-9]+$\"}}", &a));
    assert!(
        who_matches("{clientid, {re, \"^c\\\\d$\"}}", &a),
        "\\\\d in Erlang is \\d"
    );
    assert!(who_matches("{ipaddr, \"192.0.2.10\"}", &a));
    assert!(!who_matches("{ipaddr, \"192.0.2.11\"}", &a));
    assert!(who_matches("{ipaddr, \"192.0.2.0/24\"}", &a));
    assert!(who_matches("{ipaddrs, [\"10.0.0.0/8\", \"192.0.2.0/28\"]}", &a));
    assert!(!who_matches("{ipaddrs, [\"10.0.0.0/8\"]}", &a));
    assert!(!who_matches("{ipaddrs, []}", &a));
    let v6 = client("c1", Some("alice"), "2001:db8::5");
    assert!(who_matches("{ipaddr, \"2001:db8::/32\"}", &v6));
    assert!(!who_matches("{ipaddr, \"2001:db9::/32\"}", &v6));
    assert!(!who_matches("{ipaddr, \"0.0.0.0/0\"}", &v6));
    assert!(who_matches("{ipaddr, \"::/0\"}", &v6));
    assert!(who_matches("{'and', [{user, \"alice\"}, {clientid, \"c1\"}]}", &a));
    assert!(!who_matches("{'and', [{user, \"alice\"}, {clientid, \"c2\"}]}", &a));
    assert!(who_matches("{'or', [{user, \"bob\"}, {clientid, \"c1\"}]}", &a));
    assert!(!who_matches("{'or', [{user, \"bob\"}, {clientid, \"c2\"}]}", &a));
    assert!(who_matches("{'and', []}", &a), "EMQX: an empty 'and' holds");
    assert!(!who_matches("{'or', []}", &a));
    assert!(who_matches(
        "{'or', [{'and', [{user, \"x\"}]}, {'and', [{ipaddr, \"192.0.2.0/24\"}, {'or', [{client, \"c1\"}]}]}]}",
        &a
    ));
}

#[test]
fn actions() {
    let a = alice();
    let verdict =
        |action: &str, asked: Action| parse(&format!("{{deny, all, {action}, [\"t\"]}}.")).check(&a, asked, "t");
    assert_eq!(verdict("publish", Publish), Deny);
    assert_eq!(verdict("publish", Subscribe), Ignore);
    assert_eq!(verdict("subscribe", Subscribe), Deny);
    assert_eq!(verdict("subscribe", Publish), Ignore);
    for both in ["pubsub", "all", "{all, []}", "{pubsub, [{qos, 1}]}"] {
        assert_eq!(verdict(both, Publish), Deny, "{both}");
        assert_eq!(verdict(both, Subscribe), Deny, "{both}");
    }
    assert_eq!(
        verdict("{publish, [{qos, 1}, {retain, true}]}", Publish),
        Deny,
        "unchecked by check()"
    );
    assert_eq!(verdict("{subscribe, [{qos, [0, 1]}]}", Publish), Ignore);
}

#[test]
fn qos_and_retain_conditions_with_check_detailed() {
    let a = alice();
    let acl = parse(
        "{allow, all, {publish, [{qos, 1}, {qos, 2}, {retain, false}]}, [\"t\"]}.
         {allow, all, {subscribe, [{qos, [0]}, {retain, true}]}, [\"t\"]}.
         {allow, all, {all, [retain]}, [\"r\"]}.",
    );
    let detailed = |action, topic, qos, retain| acl.check_detailed(&a, action, topic, qos, retain);
    assert_eq!(detailed(Publish, "t", Some(1), Some(false)), Allow);
    assert_eq!(detailed(Publish, "t", Some(2), Some(false)), Allow);
    assert_eq!(detailed(Publish, "t", Some(0), Some(false)), Ignore);
    assert_eq!(detailed(Publish, "t", Some(1), Some(true)), Ignore);
    assert_eq!(detailed(Publish, "t", None, None), Allow, "unknown = unchecked");
    assert_eq!(detailed(Subscribe, "t", Some(0), None), Allow);
    assert_eq!(
        detailed(Subscribe, "t", Some(0), Some(false)),
        Allow,
        "retain is not for SUBSCRIBE"
    );
    assert_eq!(detailed(Subscribe, "t", Some(1), None), Ignore);
    assert_eq!(
        detailed(Publish, "r", Some(0), Some(true)),
        Allow,
        "a bare retain is {{retain, true}}"
    );
    assert_eq!(detailed(Publish, "r", Some(0), Some(false)), Ignore);
    assert_eq!(detailed(Subscribe, "r", Some(2), None), Allow);
}

#[test]
fn topics_filters_eq_and_placeholders() {
    let a = alice();
    let anon = client("c9", None, "192.0.2.10");
    let acl = parse(
        r##"
        {allow, all, publish, ["sensor/+/temp", "logs/#"]}.
        {allow, all, subscribe, [{eq, "x/#"}, "eq y/+"]}.
        {allow, all, pubsub, ["users/%u/#", "clients/%c"]}.
        {allow, all, pubsub, ["v5/${username}/${clientid}", "pre-${clientid}-post/x"]}.
        {allow, all, publish, "single/topic"}.
        {deny, all}.
        "##,
    );
    let pubs = [
        ("sensor/1/temp", Allow),
        ("sensor/1/2/temp", Deny),
        ("logs", Allow),
        ("logs/a/b", Allow),
        ("users/alice/inbox", Allow),
        ("users/bob/inbox", Deny),
        ("users/%u/inbox", Deny),
        ("clients/c1", Allow),
        ("clients/c2", Deny),
        ("v5/alice/c1", Allow),
        ("v5/alice/c2", Deny),
        ("pre-c1-post/x", Allow),
        ("single/topic", Allow),
        ("x/a", Deny),
    ];
    for (topic, verdict) in pubs {
        assert_eq!(acl.check(&a, Publish, topic), verdict, "publish {topic}");
    }
    assert_eq!(acl.check(&a, Subscribe, "x/#"), Allow);
    assert_eq!(acl.check(&a, Subscribe, "x/a"), Deny, "eq is literal");
    assert_eq!(acl.check(&a, Subscribe, "y/+"), Allow);
    assert_eq!(acl.check(&a, Subscribe, "y/a"), Deny);
    assert_eq!(acl.check(&a, Subscribe, "users/alice/#"), Allow);
    assert_eq!(acl.check(&a, Subscribe, "users/+/#"), Deny, "a wildcard is not alice");
    assert_eq!(
        acl.check(&anon, Publish, "users/c9/x"),
        Deny,
        "no user name: %u cannot be filled"
    );
    assert_eq!(acl.check(&anon, Publish, "clients/c9"), Allow);
    assert_eq!(acl.check(&anon, Publish, "v5//c9"), Deny);
}

#[test]
fn subscriptions_are_matched_like_emqx_and_dollar_topics_need_naming() {
    let a = alice();
    let acl = parse(r##"{allow, all, subscribe, ["a/#", "+"]}. {allow, all, pubsub, ["#"]}."##);
    let only = parse(r##"{allow, all, subscribe, ["a/#", "+/x"]}."##);
    assert_eq!(only.check(&a, Subscribe, "a/+"), Allow);
    assert_eq!(only.check(&a, Subscribe, "a/b/#"), Allow);
    assert_eq!(only.check(&a, Subscribe, "+/x"), Allow);
    assert_eq!(only.check(&a, Subscribe, "#"), Ignore);
    assert_eq!(only.check(&a, Subscribe, "b/+"), Ignore);
    assert_eq!(only.check(&a, Subscribe, "$SYS/x"), Ignore, "+ does not match $SYS");
    assert_eq!(acl.check(&a, Subscribe, "$SYS/#"), Ignore, "# does not match $SYS");
    assert_eq!(acl.check(&a, Publish, "$SYS/brokers"), Ignore);
    assert_eq!(acl.check(&a, Subscribe, "$share/g/a/b"), Allow, "checked on its filter");
    assert_eq!(acl.check(&a, Subscribe, "$queue/$SYS/x"), Ignore);
    let named = parse(r##"{deny, all, subscribe, ["$SYS/#"]}. {allow, all, subscribe, ["#"]}."##);
    assert_eq!(named.check(&a, Subscribe, "$SYS/brokers/+/uptime"), Deny);
    assert_eq!(named.check(&a, Subscribe, "#"), Allow);
}

#[test]
fn the_first_matching_rule_decides() {
    let a = alice();
    let acl = parse(
        r##"{deny, {user, "alice"}, publish, ["t/secret"]}.
           {allow, all, publish, ["t/#"]}.
           {deny, all, publish, ["t/open"]}.
           {deny, {user, "bob"}, all, ["#"]}."##,
    );
    assert_eq!(acl.check(&a, Publish, "t/secret"), Deny);
    assert_eq!(
        acl.check(&a, Publish, "t/open"),
        Allow,
        "the later deny is never reached"
    );
    assert_eq!(acl.check(&a, Subscribe, "t/open"), Ignore, "no rule for subscribe");
    let bob = client("c2", Some("bob"), "192.0.2.10");
    assert_eq!(acl.check(&bob, Publish, "t/secret"), Allow);
    assert_eq!(acl.check(&bob, Publish, "u"), Deny);
    assert_eq!(AclFile::parse("").map(|f| f.check(&a, Publish, "t")), Ok(Ignore));
    assert_eq!(parse("{deny, all}. {allow, all}.").check(&a, Publish, "t"), Deny);
}

#[test]
fn comments_and_odd_whitespace() {
    let text = "%% header % with % signs\n\
                \t{allow,%comment inside\r\n  {user,\"al%ice\"} ,\n\n\
                publish   ,[ \"t/%\" ] % after\n}\n   .% right after the dot\n\
                {'deny','all'}.\u{a0}\n%% no newline at the end";
    let acl = parse(text);
    assert_eq!(acl.len(), 2);
    assert_eq!(acl.rule_lines().collect::<Vec<_>>(), [2, 8]);
    let odd = client("c", Some("al%ice"), "192.0.2.1");
    assert_eq!(acl.check(&odd, Publish, "t/%"), Allow);
    assert_eq!(acl.check(&alice(), Publish, "t/%"), Deny);
}

/// Parses `text` expecting an error of `kind` at `line`; returns the message.
fn refused(text: &str, kind: AclErrorKind, line: u32) -> String {
    let Err(err) = AclFile::parse(text) else {
        panic!("parsed: {text}");
    };
    let message = err.to_string();
    assert_eq!(err.kind(), kind, "{message}");
    assert_eq!(err.line(), Some(line), "{message}");
    assert!(message.starts_with(&format!("acl.conf:{line}:")), "{message}");
    message
}

#[test]
fn errors_name_line_column_and_what_was_expected() {
    let text = "%% rules\n\n          {alow, all}.\n";
    let Err(err) = AclFile::parse(text) else {
        panic!("parsed");
    };
    assert_eq!(err.to_string(), "acl.conf:3:12: expected allow or deny, found \"alow\"");
    assert_eq!((err.line(), err.column()), (Some(3), Some(12)));
}

#[test]
fn one_error_per_kind() {
    use AclErrorKind as K;
    let ok = "{allow, all}.\n";
    let m = refused(&format!("{ok}{{allow, all}}"), K::Syntax, 2);
    assert!(m.contains("expected `.`"), "{m}");
    refused(&format!("{ok}{ok}{{allow, \"open"), K::Syntax, 3);
    let m = refused(&format!("{ok}{{allow, {{usr, \"a\"}}, publish, [\"t\"]}}."), K::Rule, 2);
    assert!(
        m.contains("expected user, username, client, clientid, ipaddr, ipaddrs"),
        "{m}"
    );
    let m = refused(&format!("{ok}{{allow, all, publsh, [\"t\"]}}."), K::Rule, 2);
    assert!(m.contains("expected publish, subscribe, pubsub, all"), "{m}");
    refused("{allow, all, publish}.", K::Rule, 1);
    refused("{allow, anyone}.", K::Rule, 1);
    refused(&format!("{ok}{{allow, all, publish, [t]}}."), K::Rule, 2);
    refused(
        &format!("{ok}{{allow, all, {{publish, [{{qoss, 1}}]}}, [\"t\"]}}."),
        K::Rule,
        2,
    );
    let m = refused(
        &format!("{ok}\n{{allow, {{username, {{re, \"(a\"}}}}, publish, [\"t\"]}}."),
        K::Regex,
        3,
    );
    assert!(m.contains("invalid regular expression \"(a\""), "{m}");
    refused(
        &format!("{ok}{{allow, {{clientid, {{re, \"(?<=a)b\"}}}}, all, [\"t\"]}}."),
        K::Regex,
        2,
    );
    let m = refused(
        &format!("{ok}{{allow, {{ipaddr, \"10.0.0.0/33\"}}, all, [\"t\"]}}."),
        K::Cidr,
        2,
    );
    assert!(m.contains("\"10.0.0.0/33\""), "{m}");
    refused(
        &format!("{ok}{{allow, {{ipaddrs, [\"::1\", \"::g\"]}}, all, [\"t\"]}}."),
        K::Cidr,
        2,
    );
    let m = refused(&format!("{ok}{ok}{{allow, all, all, [\"a/#/b\"]}}."), K::Topic, 3);
    assert!(m.contains("invalid topic filter \"a/#/b\""), "{m}");
    refused(&format!("{ok}{{allow, all, all, [{{eq, \"\"}}]}}."), K::Topic, 2);
    let m = refused(
        &format!("{ok}{{allow, all, all, [\"t/${{password}}\"]}}."),
        K::Placeholder,
        2,
    );
    assert!(m.contains("${password}"), "{m}");
    refused(
        &format!("{ok}{{allow, all, {{publish, [{{qos, 3}}]}}, [\"t\"]}}."),
        K::Qos,
        2,
    );
    refused(
        &format!("{ok}{{allow, all, {{subscribe, [{{qos, [0, x]}}]}}, [\"t\"]}}."),
        K::Qos,
        2,
    );
    refused(
        &format!("{ok}{{allow, all, {{publish, [{{retain, yes}}]}}, [\"t\"]}}."),
        K::Retain,
        2,
    );
    let deep = format!("{}{{user, \"a\"}}{}", "{'and', [".repeat(17), "]}".repeat(17));
    let m = refused(&format!("{ok}{{allow, {deep}, all, [\"t\"]}}."), K::TooDeep, 2);
    assert!(m.contains("16"), "{m}");
    let fine = format!("{}{{user, \"a\"}}{}", "{'or', [".repeat(16), "]}".repeat(16));
    assert!(AclFile::parse(&format!("{{allow, {fine}, all, [\"t\"]}}.")).is_ok());
    refused(&format!("{ok}{}", "[".repeat(100)), K::Syntax, 2);
}

#[test]
fn load_names_the_path() {
    let missing = Path::new("/nonexistent/portico/acl.conf");
    let Err(err) = AclFile::load(missing) else {
        panic!("loaded");
    };
    assert_eq!(err.kind(), AclErrorKind::Io);
    assert_eq!(err.line(), None);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/portico/acl.conf: cannot read"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("portico-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("broken.conf");
    std::fs::write(&path, "{allow, all}.\n{deny, nobody}.\n").unwrap_or_else(|e| panic!("{e}"));
    let err = AclFile::load(&path).expect_err("broken");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:8: expected all (a two-element rule is {{allow, all}} or {{deny, all}}), found \"nobody\"",
            path.display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn verdict_name(v: AuthzVerdict) -> &'static str {
    match v {
        Allow => "allow",
        Deny => "deny",
        Ignore => "ignore",
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = AclFile::parse(&text) {
            prop_assert!(e.line().is_some());
        }
        portico_auth::acl::fuzzing::check(&bytes);
    }

    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(prop::sample::select(vec![
        "{", "}", "[", "]", ",", ".", " ", "\n", "%c\n", "allow", "deny", "all", "user", "username",
        "clientid", "ipaddr", "ipaddrs", "'and'", "'or'", "re", "eq", "publish", "subscribe", "pubsub",
        "qos", "retain", "true", "1", "3", "\"a\"", "\"#\"", "\"t/%u\"", "\"${username}/#\"",
        "\"10.0.0.0/8\"", "\"::1\"", "\"(\"", "\"", "<<", ">>", "\\",
    ]), 0..80)) {
        let text = tokens.concat();
        if let Ok(acl) = AclFile::parse(&text) {
            let v = acl.check(&alice(), Publish, "a/b");
            prop_assert!(!verdict_name(v).is_empty());
        }
        portico_auth::acl::fuzzing::check(text.as_bytes());
    }
}
