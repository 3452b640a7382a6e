//! CoRE link format (RFC 6690) and EMQX's reading of registration payloads (§3.2).
#![allow(clippy::unwrap_used)]

mod common;

use common::p;
use portico_lwm2m::link::{self, Attribute, Limits, LinkErrorKind};
use portico_lwm2m::{Link, ObjectLinks};

#[test]
fn parses_targets_and_attributes_with_and_without_quotes() {
    let text = r#"</1/0>,</3/0>;ver=1.1,</3303/0>;rt="oma.lwm2m sensor";title="a \"b\", c";obs"#;
    let links = link::parse(text).unwrap();
    assert_eq!(links.len(), 3);
    assert_eq!(links[0].target, "/1/0");
    assert!(links[0].attributes.is_empty());
    assert_eq!(links[1].value("ver"), Some("1.1"));
    assert!(!links[1].attribute("ver").unwrap().quoted);
    assert_eq!(links[2].value("rt"), Some("oma.lwm2m sensor"));
    assert_eq!(links[2].value("title"), Some("a \"b\", c"));
    assert_eq!(
        links[2].attribute("obs"),
        Some(&Attribute {
            name: "obs".into(),
            value: None,
            quoted: false
        })
    );
    assert!(links[2].is_lwm2m_root());
    // Spans give each link back as written; Display writes it again.
    assert_eq!(&text[links[1].span.clone()], "</3/0>;ver=1.1");
    assert_eq!(link::format_links(&links), text);
    assert_eq!(links[0].path(), Some(p("/1/0")));
}

#[test]
fn discover_response_items_are_the_links_as_written() {
    let text = "</3/0>;dim=8;pmin=10,</3/0/0>,</3/0/7>;dim=2, </3/0/13>";
    let raw: Vec<&str> = link::parse(text)
        .unwrap()
        .iter()
        .map(|l| &text[l.span.clone()])
        .collect();
    assert_eq!(raw, ["</3/0>;dim=8;pmin=10", "</3/0/0>", "</3/0/7>;dim=2", "</3/0/13>"]);
}

#[test]
fn whitespace_around_separators_is_skipped() {
    let links = link::parse(" </>;rt=\"oma.lwm2m\";ct=100, </1/101>,</1/102>, </2/0>, </2/1> ;empty ").unwrap();
    assert_eq!(links.len(), 5);
    assert_eq!(links[4].attribute("empty").unwrap().value, None);
    assert_eq!(link::parse("").unwrap(), Vec::<Link>::new());
    assert_eq!(link::parse("  ").unwrap(), Vec::<Link>::new());
}

#[test]
fn malformed_link_format_is_an_error_with_a_position() {
    let cases: Vec<(&str, LinkErrorKind, usize)> = vec![
        ("</1/0", LinkErrorKind::UnclosedTarget, 1),
        ("<>", LinkErrorKind::EmptyTarget, 1),
        ("</1 /0>", LinkErrorKind::BadTargetChar, 3),
        ("/1/0", LinkErrorKind::ExpectedLink("'/'".into()), 0),
        ("</1/0>,", LinkErrorKind::EmptyLink, 7),
        ("</1/0>,,</2/0>", LinkErrorKind::EmptyLink, 7),
        ("</1/0>;", LinkErrorKind::EmptyAttributeName, 7),
        ("</1/0>;=5", LinkErrorKind::EmptyAttributeName, 7),
        ("</1/0>;ver=", LinkErrorKind::EmptyAttributeValue("ver".into()), 11),
        (
            "</1/0>;ver=,</2/0>",
            LinkErrorKind::EmptyAttributeValue("ver".into()),
            11,
        ),
        ("</1/0>;rt=\"oma", LinkErrorKind::UnclosedQuote, 14),
        ("</1/0>;v@r=1", LinkErrorKind::BadNameChar('@'), 8),
        ("</1/0>x", LinkErrorKind::ExpectedSeparator("'x'".into()), 6),
        ("</1/0>;a=1 2", LinkErrorKind::ExpectedSeparator("'2'".into()), 11),
        ("</1/0>;a=\"x\"y", LinkErrorKind::ExpectedSeparator("'y'".into()), 12),
    ];
    for (text, kind, offset) in cases {
        let error = link::parse(text).unwrap_err();
        assert_eq!((error.kind.clone(), error.offset), (kind, offset), "{text:?}: {error}");
    }
}

#[test]
fn parsing_is_bounded() {
    let limits = Limits {
        max_len: 20,
        max_links: 2,
    };
    let error = link::parse_with("</1/0>,</2/0>,</3/0>", &limits).unwrap_err();
    assert_eq!(error.kind, LinkErrorKind::TooManyLinks(2));
    let error = link::parse_with(&"</1/0>,".repeat(4), &limits).unwrap_err();
    assert!(matches!(error.kind, LinkErrorKind::TooLong { len: 28, max: 20 }));
}

#[test]
fn registration_without_alternate_path() {
    let links = ObjectLinks::parse(b"</1/0>,</3/0>;ver=1.1,</3303/0>,</5>").unwrap();
    assert_eq!(links.alternate_path, "/");
    assert_eq!(links.object_list(), ["/1/0", "/3/0", "/3303/0", "/5"]);
    assert_eq!(links.paths(), [p("/1/0"), p("/3/0"), p("/3303/0"), p("/5")]);
    let empty = ObjectLinks::parse(b"").unwrap();
    assert_eq!((empty.alternate_path.as_str(), empty.links.len()), ("/", 0));
}

#[test]
fn registration_with_alternate_path_as_emqx_reads_it() {
    let links =
        ObjectLinks::parse(br#"</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>,</lwm2m/3/0>,</lwm2mx/4/0>,</other/5>"#).unwrap();
    assert_eq!(links.alternate_path, "/lwm2m");
    // The prefix goes only at a segment boundary (EMQX would turn /lwm2mx/4/0 into x/4/0).
    assert_eq!(links.object_list(), ["/1/0", "/3/0", "/lwm2mx/4/0", "/other/5"]);
    // An unquoted rt, the root, and a trailing slash.
    let links = ObjectLinks::parse(b"</>;rt=oma.lwm2m;ct=110,</1/0>").unwrap();
    assert_eq!(links.alternate_path, "/");
    assert_eq!(links.object_list(), ["/1/0"]);
    let links = ObjectLinks::parse(b"</a/b/>;rt=\"oma.lwm2m\",</a/b/3/0>").unwrap();
    assert_eq!(links.alternate_path, "/a/b");
    assert_eq!(links.object_list(), ["/3/0"]);
}

#[test]
fn registration_errors() {
    let error = ObjectLinks::parse(br#"</a>;rt="oma.lwm2m",</b>;rt="oma.lwm2m""#).unwrap_err();
    assert_eq!((error.kind, error.offset), (LinkErrorKind::SecondAlternatePath, 20));
    let error = ObjectLinks::parse(br#"<lwm2m>;rt="oma.lwm2m""#).unwrap_err();
    assert!(matches!(error.kind, LinkErrorKind::BadAlternatePath(_)));
    let error = ObjectLinks::parse(b"</1/0>,</3/\xff>").unwrap_err();
    assert_eq!((error.kind, error.offset), (LinkErrorKind::NotUtf8, 11));
    // EMQX crashes on an attribute without '=' in some forms; here a malformed one is an error.
    let error = ObjectLinks::parse(b"</1/0>;=x").unwrap_err();
    assert_eq!(
        error.to_string(),
        "link format: an attribute without a name (at byte 7)"
    );
}
