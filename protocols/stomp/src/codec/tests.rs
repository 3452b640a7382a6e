use bytes::BytesMut;
use portico_core::channel::Codec;
use proptest::prelude::*;

use super::*;

fn codec(version: Version) -> StompCodec {
    StompCodec::with_version(Limits::default(), version)
}

fn decode_all(codec: &mut StompCodec, wire: &[u8]) -> Result<Vec<Frame>, DecodeError> {
    let mut buf = BytesMut::from(wire);
    let mut frames = Vec::new();
    while let Some(frame) = codec.decode(&mut buf)? {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "bytes left over: {buf:?}");
    Ok(frames)
}

fn one(version: Version, wire: &[u8]) -> Result<Frame, DecodeError> {
    let mut frames = decode_all(&mut codec(version), wire)?;
    assert_eq!(frames.len(), 1, "{frames:?}");
    Ok(frames.remove(0))
}

fn encoded(frame: &Frame, version: Version) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(frame, version, &mut buf).expect("encodes");
    buf.to_vec()
}

#[test]
fn decodes_a_connect_with_crlf_and_negotiates() {
    let mut c = StompCodec::new(Limits::default());
    let frames = decode_all(
        &mut c,
        b"CONNECT\r\naccept-version:1.1,1.2\r\nhost:h\r\nlogin:a\\b\r\n\r\n\0",
    )
    .expect("decodes");
    assert_eq!(frames[0].command, Command::Connect);
    // CONNECT is never unescaped: the backslash is part of the login.
    assert_eq!(frames[0].header("login"), Some("a\\b"));
    assert_eq!(c.version(), Version::V1_2);
}

#[test]
fn negotiation() {
    assert_eq!(Version::negotiate(None), Some(Version::V1_0));
    assert_eq!(Version::negotiate(Some("1.0,1.1")), Some(Version::V1_1));
    assert_eq!(Version::negotiate(Some("1.2, 1.0")), Some(Version::V1_2));
    assert_eq!(Version::negotiate(Some("2.0,1.3")), None);
    assert_eq!(Version::negotiate(Some("")), None);
}

#[test]
fn heart_beats_between_frames_are_collapsed() {
    let frames = decode_all(&mut codec(Version::V1_2), b"\n\r\n\nSEND\ndestination:a\n\nhi\0\n\n").expect("decodes");
    let commands: Vec<_> = frames.iter().map(|f| f.command).collect();
    assert_eq!(commands, [Command::HeartBeat, Command::Send, Command::HeartBeat]);
    assert_eq!(&frames[1].body[..], b"hi");
}

#[test]
fn two_frames_in_one_buffer_stay_two() {
    let frames = decode_all(
        &mut codec(Version::V1_2),
        b"SEND\ndestination:a\n\none\0SEND\ndestination:b\n\ntwo\0",
    )
    .expect("decodes");
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].header("destination"), Some("b"));
    assert_eq!(&frames[1].body[..], b"two");
}

#[test]
fn content_length_bodies_may_hold_nul() {
    let frame = one(Version::V1_2, b"SEND\ndestination:a\ncontent-length:3\n\na\0b\0").expect("decodes");
    assert_eq!(&frame.body[..], b"a\0b");
    // content-length is framing: not kept as a header.
    assert_eq!(frame.header("content-length"), None);
    assert_eq!(
        one(Version::V1_2, b"SEND\ncontent-length:2\n\nabc\0"),
        Err(DecodeError::MissingNul("SEND"))
    );
    assert!(matches!(
        one(Version::V1_2, b"SEND\ncontent-length:-1\n\n\0"),
        Err(DecodeError::BadContentLength(_))
    ));
}

#[test]
fn incomplete_input_waits_and_consumes_nothing() {
    let wire = b"SEND\ndestination:a\ncontent-length:5\n\nhello\0";
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(codec(Version::V1_2).decode(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn escapes_per_version() {
    let wire = b"SEND\ndestination:a\\cb\\nc\\\\d\n\n\0";
    let frame = one(Version::V1_1, wire).expect("1.1 decodes");
    assert_eq!(frame.header("destination"), Some("a:b\nc\\d"));
    // 1.0 has no escapes: taken literally.
    let frame = one(Version::V1_0, wire).expect("1.0 decodes");
    assert_eq!(frame.header("destination"), Some("a\\cb\\nc\\\\d"));
    // \r is 1.2 only; \t is never defined.
    assert_eq!(
        one(Version::V1_2, b"SEND\nx:a\\rb\n\n\0").expect("1.2").header("x"),
        Some("a\rb")
    );
    assert!(matches!(
        one(Version::V1_1, b"SEND\nx:a\\rb\n\n\0"),
        Err(DecodeError::BadEscape { .. })
    ));
    assert!(matches!(
        one(Version::V1_2, b"SEND\nx:a\\tb\n\n\0"),
        Err(DecodeError::BadEscape { .. })
    ));
    assert!(matches!(
        one(Version::V1_2, b"SEND\nx:a\\\n\n\0"),
        Err(DecodeError::BadEscape { .. })
    ));
}

#[test]
fn repeated_headers_keep_order_and_the_first_wins() {
    let frame = one(Version::V1_2, b"SEND\nfoo:1\nfoo:2\n\n\0").expect("decodes");
    assert_eq!(frame.header("foo"), Some("1"));
    assert_eq!(frame.headers.len(), 2);
}

#[test]
fn header_values_may_hold_colons() {
    let frame = one(Version::V1_0, b"SEND\nurl:http://x:1/\n\n\0").expect("decodes");
    assert_eq!(frame.header("url"), Some("http://x:1/"));
}

#[test]
fn malformed_headers() {
    assert!(matches!(
        one(Version::V1_2, b"SEND\nnocolon\n\n\0"),
        Err(DecodeError::MalformedHeader { line: 1, .. })
    ));
    assert!(matches!(
        one(Version::V1_2, b"SEND\n:v\n\n\0"),
        Err(DecodeError::MalformedHeader { .. })
    ));
    assert!(matches!(
        one(Version::V1_2, b"SEND\na:b\rc\n\n\0"),
        Err(DecodeError::MalformedHeader { .. })
    ));
    assert!(matches!(
        one(Version::V1_2, b"SEND\na:\xff\n\n\0"),
        Err(DecodeError::NotUtf8 { .. })
    ));
    assert_eq!(one(Version::V1_2, b"\rX"), Err(DecodeError::BadLineEnding));
}

#[test]
fn unknown_commands_are_refused_early() {
    assert_eq!(
        one(Version::V1_2, b"send\n\n\0"),
        Err(DecodeError::UnknownCommand("send".to_owned()))
    );
    // No line end within the longest command: refused without waiting for more.
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1"[..]);
    assert!(matches!(
        codec(Version::V1_2).decode(&mut buf),
        Err(DecodeError::UnknownCommand(_))
    ));
}

#[test]
fn limits_are_enforced_with_their_key() {
    let limits = Limits {
        max_headers: 2,
        max_header_length: 16,
        max_body_length: 8,
    };
    let mut c = StompCodec::with_version(limits, Version::V1_2);
    let err = decode_all(&mut c, b"SEND\na:1\nb:2\nc:3\n\n\0").expect_err("too many");
    assert_eq!(err, DecodeError::TooManyHeaders { max: 2 });
    assert!(err.to_string().contains("gateway.stomp.frame.max_headers"));

    // content-length is framing, not one of the headers counted (found by the fuzzer: a frame
    // with max_headers headers and a body re-encoded into one the limit refused).
    let frame = decode_all(
        &mut StompCodec::with_version(limits, Version::V1_2),
        b"SEND\na:1\ncontent-length:1\nb:2\n\nx\0",
    )
    .expect("two headers and content-length");
    assert_eq!(frame[0].headers.len(), 2);
    let mut c = StompCodec::with_version(limits, Version::V1_2);
    let err =
        decode_all(&mut c, b"SEND\ncontent-length:0\ncontent-length:0\na:1\nb:2\n\n\0").expect_err("a repeat counts");
    assert_eq!(err, DecodeError::TooManyHeaders { max: 2 });

    let mut c = StompCodec::with_version(limits, Version::V1_2);
    let err = decode_all(&mut c, b"SEND\nname:12345678901234\n\n\0").expect_err("too long");
    assert!(matches!(&err, DecodeError::HeaderTooLong { name, max: 16 } if name == "name"));
    assert!(err.to_string().contains("max_headers_length"));
    // A header line that never ends is refused once it is longer than any valid one could be.
    let mut buf = BytesMut::from(&b"SEND\nname:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..]);
    assert!(matches!(
        StompCodec::with_version(limits, Version::V1_2).decode(&mut buf),
        Err(DecodeError::HeaderTooLong { .. })
    ));

    let mut c = StompCodec::with_version(limits, Version::V1_2);
    assert_eq!(
        decode_all(&mut c, b"SEND\ncontent-length:9\n\n"),
        Err(DecodeError::BodyTooLong { max: 8 })
    );
    // Without content-length: refused once more bytes than the limit came without a NUL.
    let mut buf = BytesMut::from(&b"SEND\n\n123456789"[..]);
    assert_eq!(
        StompCodec::with_version(limits, Version::V1_2).decode(&mut buf),
        Err(DecodeError::BodyTooLong { max: 8 })
    );
    let mut buf = BytesMut::from(&b"SEND\n\n12345678\0"[..]);
    assert!(StompCodec::with_version(limits, Version::V1_2).decode(&mut buf).is_ok());
}

#[test]
fn encodes_with_content_length_and_escapes() {
    let frame = Frame::new(Command::Message)
        .with("destination", "a:b")
        .with("x", "1\n2")
        .with_body(&b"hi"[..]);
    assert_eq!(
        encoded(&frame, Version::V1_2),
        b"MESSAGE\ndestination:a\\cb\nx:1\\n2\ncontent-length:2\n\nhi\0"
    );
    // CONNECTED is never escaped.
    let connected = Frame::new(Command::Connected).with("server", "Portico/0.1");
    assert_eq!(
        encoded(&connected, Version::V1_2),
        b"CONNECTED\nserver:Portico/0.1\n\n\0"
    );
    assert_eq!(encoded(&Frame::heart_beat(), Version::V1_2), b"\n");
    // 1.0 cannot carry a line break in a value.
    let mut buf = BytesMut::new();
    assert!(encode(&frame, Version::V1_0, &mut buf).is_err());
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1_0), Just(Version::V1_1), Just(Version::V1_2)]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Send),
        Just(Command::Subscribe),
        Just(Command::Ack),
        Just(Command::Message),
        Just(Command::Error),
        Just(Command::Connect),
        Just(Command::Connected),
    ]
}

proptest! {
    #[test]
    fn round_trip(
        version in version(),
        command in command(),
        headers in prop::collection::vec(("[a-z\\-:\\\\\n\r]{1,8}", "[ -~\n\r:\\\\é]{0,16}"), 0..6),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let escaped = version >= Version::V1_1 && !command.is_unescaped();
        let carrying = if escaped { version } else { Version::V1_0 };
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .filter(|(n, v)| n != "content-length" && carrying.can_carry(n, v))
            .collect();
        let frame = Frame { command, headers, body: body.into() };
        let wire = encoded(&frame, version);
        let decoded = one(version, &wire).expect("an encoded frame decodes");
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        crate::fuzzing::check_decode(&data);
    }
}
