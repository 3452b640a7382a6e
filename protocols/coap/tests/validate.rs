//! Request validation (RFC 7252 §5.4, §5.8; RFC 7959 §2.2) with the codes EMQX answers, and the
//! option accessors that read what validation lets through.

use bytes::Bytes;
use portico_coap::options::{self, number};
use portico_coap::*;

fn request(code: Code, options: &[(u16, &[u8])]) -> Message {
    let mut m = Message::new(Type::Con, code, 0x1234);
    m.token = Token::new(&[0xab]).expect("short");
    m.options = Options::from_pairs(options.iter().map(|(n, v)| (*n, Bytes::copy_from_slice(v))));
    m
}

fn refused(code: Code, options: &[(u16, &[u8])]) -> RequestError {
    match validate_request(&request(code, options)) {
        Ok(()) => panic!("{code} with {options:?} passed"),
        Err(e) => e,
    }
}

fn passes(code: Code, options: &[(u16, &[u8])]) {
    let result = validate_request(&request(code, options));
    assert_eq!(result, Ok(()), "{code} with {options:?}");
}

#[test]
fn unknown_critical_options_are_bad_options_unknown_elective_ones_pass() {
    let e = refused(Code::GET, &[(number::URI_PATH, b"ps"), (9, b"")]);
    assert_eq!(e, RequestError::UnknownCriticalOption(9));
    assert_eq!(e.code(), Code::BAD_OPTION);
    assert!(e.message().contains("9"), "{}", e.message());
    assert_eq!(refused(Code::POST, &[(2049, b"x")]).code(), Code::BAD_OPTION);
    passes(Code::GET, &[(10, b"x"), (2048, b""), (65534, b"y")]);
}

#[test]
fn repeated_critical_options_are_bad_options_repeatable_ones_pass() {
    for number in [
        number::URI_HOST,
        number::URI_PORT,
        number::ACCEPT,
        number::BLOCK1,
        number::BLOCK2,
    ] {
        let e = refused(Code::GET, &[(number, b"\x01"), (number, b"\x02")]);
        assert_eq!(e, RequestError::RepeatedCriticalOption { number });
        assert_eq!(e.code(), Code::BAD_OPTION);
    }
    passes(
        Code::GET,
        &[
            (number::URI_PATH, b"a"),
            (number::URI_PATH, b"b"),
            (number::URI_QUERY, b"q=1"),
            (number::URI_QUERY, b"r=2"),
        ],
    );
    passes(Code::PUT, &[(number::IF_MATCH, b""), (number::IF_MATCH, b"\x01\x02")]);
}

#[test]
fn critical_values_of_the_wrong_length_are_bad_options() {
    let cases: &[(u16, usize)] = &[
        (number::URI_HOST, 0),
        (number::URI_HOST, 256),
        (number::URI_PORT, 3),
        (number::URI_PATH, 256),
        (number::URI_QUERY, 256),
        (number::ACCEPT, 3),
        (number::BLOCK2, 4),
        (number::BLOCK1, 4),
        (number::PROXY_URI, 0),
        (number::PROXY_URI, 1035),
        (number::PROXY_SCHEME, 256),
        (number::IF_MATCH, 9),
    ];
    for (number, len) in cases {
        let value = vec![b'a'; *len];
        let e = refused(Code::GET, &[(*number, &value)]);
        let def = options::definition(*number).expect("known");
        assert_eq!(
            e,
            RequestError::BadCriticalLength {
                number: *number,
                len: *len,
                min: def.min_len,
                max: def.max_len
            }
        );
        assert_eq!(e.code(), Code::BAD_OPTION, "{e}");
    }
    passes(
        Code::GET,
        &[(number::URI_PATH, &[b'a'; 255]), (number::PROXY_URI, &[b'a'; 1034])],
    );
}

#[test]
fn if_none_match_must_be_empty() {
    let e = refused(Code::PUT, &[(number::IF_NONE_MATCH, b"x")]);
    assert_eq!(e.code(), Code::BAD_OPTION);
    assert!(e.message().contains("If-None-Match"), "{}", e.message());
    passes(Code::PUT, &[(number::IF_NONE_MATCH, b"")]);
    assert!(
        request(Code::PUT, &[(number::IF_NONE_MATCH, b"")])
            .options
            .if_none_match()
    );
}

#[test]
fn block_options_with_szx_7_are_bad_requests() {
    for number in [number::BLOCK1, number::BLOCK2] {
        let e = refused(Code::PUT, &[(number, &[0x17])]);
        assert_eq!(e, RequestError::ReservedBlockSize { number });
        assert_eq!(e.code(), Code::BAD_REQUEST);
        passes(Code::PUT, &[(number, &[0x16])]);
    }
}

#[test]
fn critical_strings_must_be_utf8() {
    let e = refused(Code::GET, &[(number::URI_PATH, b"ps"), (number::URI_PATH, b"\xff")]);
    assert_eq!(
        e,
        RequestError::NotUtf8 {
            number: number::URI_PATH,
            index: 1
        }
    );
    assert_eq!(e.code(), Code::BAD_REQUEST);
    // An elective string (Location-Path) is not the server's business in a request.
    passes(Code::GET, &[(number::LOCATION_PATH, b"\xff")]);
}

#[test]
fn methods_other_than_get_post_put_delete_are_not_allowed() {
    for code in [Code::GET, Code::POST, Code::PUT, Code::DELETE] {
        passes(code, &[]);
    }
    for code in [
        Code::FETCH,
        Code::PATCH,
        Code::IPATCH,
        Code::new(0, 8),
        Code::new(0, 31),
    ] {
        let e = refused(code, &[]);
        assert_eq!(e, RequestError::MethodNotAllowed(code));
        assert_eq!(e.code(), Code::METHOD_NOT_ALLOWED);
    }
    // Options are checked first, as EMQX meets them while parsing.
    assert_eq!(refused(Code::FETCH, &[(9, b"")]).code(), Code::BAD_OPTION);
}

#[test]
fn responses_and_empty_messages_are_not_validated() {
    let mut response = request(Code::CONTENT, &[(9, b"")]);
    response.mtype = Type::Ack;
    assert_eq!(validate_request(&response), Ok(()));
    assert_eq!(validate_request(&Message::new(Type::Con, Code::EMPTY, 1)), Ok(()));
}

#[test]
fn elective_options_of_the_wrong_length_or_repeated_count_as_absent() {
    let m = request(
        Code::POST,
        &[
            (number::ETAG, b"123456789"),
            (number::OBSERVE, b"\x01\x02\x03\x04"),
            (number::CONTENT_FORMAT, b"\x00\x00\x32"),
            (number::MAX_AGE, b"\x3c"),
            (number::MAX_AGE, b"\x01"),
            (number::SIZE1, b"\x01\x00"),
            (number::URI_PATH, b"ps"),
            (42, b"unknown elective"),
        ],
    );
    assert_eq!(validate_request(&m), Ok(()));
    assert_eq!(m.options.etag(), None);
    assert_eq!(m.options.observe(), None);
    assert_eq!(m.options.content_format(), None);
    assert_eq!(m.options.max_age(), Some(60), "the first occurrence counts");
    assert_eq!(m.options.size1(), Some(256));

    let kept: Vec<_> = m.options.sanitized().iter().map(|(n, v)| (n, v.to_vec())).collect();
    assert_eq!(
        kept,
        [
            (number::URI_PATH, b"ps".to_vec()),
            (number::MAX_AGE, vec![0x3c]),
            (number::SIZE1, vec![1, 0])
        ]
    );
}

#[test]
fn error_responses_carry_code_token_and_diagnostic() {
    let con = request(Code::GET, &[(9, b"")]);
    let e = validate_request(&con).expect_err("unknown critical option");
    let ack = e.response_to(&con, 99);
    assert_eq!(
        (ack.mtype, ack.code, ack.message_id, ack.token),
        (Type::Ack, Code::BAD_OPTION, 0x1234, con.token)
    );
    assert_eq!(&ack.payload[..], e.message().as_bytes());

    let mut non = con.clone();
    non.mtype = Type::Non;
    let reply = e.response_to(&non, 99);
    assert_eq!((reply.mtype, reply.message_id, reply.token), (Type::Non, 99, con.token));
}

#[test]
fn typed_accessors_and_setters() {
    let mut m = Message::new(Type::Con, Code::POST, 1);
    m.options.push_uri_query("clientid=c1");
    m.options.push_uri_path("ps");
    m.options.push_uri_query("password=YWJj==");
    m.options.push_uri_path("");
    m.options.push_uri_query("flag");
    m.options.push_uri_path("abc");
    m.options.set_content_format(content_format::JSON);
    m.options.set_observe(0x0100_0005);
    m.options.set_block1(Block::new(3, true, 6).expect("valid"));
    m.options.set_uri_port(5683);
    m.options.set_max_age(0);
    m.options.set_size1(1 << 20);
    m.options.set_accept(content_format::LWM2M_TLV);

    // Setters keep number order and the order of repeats.
    let numbers: Vec<u16> = m.options.iter().map(|(n, _)| n).collect();
    assert_eq!(numbers, [6, 7, 11, 11, 11, 12, 14, 15, 15, 15, 17, 27, 60]);
    assert_eq!(m.uri_path_joined().as_deref(), Ok("ps//abc"));
    let pairs: Vec<_> = query_pairs(&m).collect();
    assert_eq!(pairs, [("clientid", "c1"), ("password", "YWJj==")]);
    assert_eq!(m.options.content_format(), Some(50));
    assert_eq!(m.options.observe(), Some(5), "Observe wraps at 2^24");
    assert_eq!(m.options.block1(), Some(Block::new(3, true, 6).expect("valid")));
    assert_eq!(m.options.block2(), None);
    assert_eq!(m.options.uri_port(), Some(5683));
    assert_eq!(
        m.options.get(number::MAX_AGE).map(|v| v.len()),
        Some(0),
        "0 is the empty value"
    );
    assert_eq!(m.options.max_age(), Some(0));
    assert_eq!(m.options.size1(), Some(1 << 20));
    assert_eq!(m.options.accept(), Some(11542));
    assert_eq!(validate_request(&m), Ok(()));

    m.options.set_content_format(content_format::CBOR);
    assert_eq!(m.options.get_all(number::CONTENT_FORMAT).count(), 1, "set replaces");
    assert_eq!(m.options.remove(number::URI_QUERY), 3);
    assert_eq!(query_pairs(&m).count(), 0);

    let mut bad = Message::new(Type::Con, Code::GET, 1);
    bad.options.push(number::URI_PATH, &b"\xc3"[..]);
    assert_eq!(
        bad.uri_path_joined(),
        Err(NotUtf8 {
            number: number::URI_PATH,
            index: 0
        })
    );
    bad.options.set(number::URI_HOST, &b"\xc3"[..]);
    assert!(bad.options.uri_host().is_err());
}

#[test]
fn codes_tokens_and_option_registry() {
    assert_eq!(Code::CONTENT.to_string(), "2.05");
    assert_eq!(Code::CONTINUE.to_string(), "2.31");
    assert_eq!(Code::REQUEST_ENTITY_TOO_LARGE.to_string(), "4.13");
    assert_eq!(Code::NO_CONTENT_EMQX.0, 0x47);
    assert_eq!(format!("{:?}", Code::GET), "Code(0.01)");
    assert!(Code::GET.is_request() && !Code::EMPTY.is_request() && Code::FETCH.is_request());
    assert!(Code::CHANGED.is_response() && Code::PROXYING_NOT_SUPPORTED.is_response());
    assert!(Code::new(1, 0).is_reserved_class() && Code::new(6, 0).is_reserved_class());

    let t = Token::from_u64(0x0102_0304_0506_0708);
    assert_eq!(t.as_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(format!("{t:?}"), "Token(0x0102030405060708)");
    assert!(Token::EMPTY.is_empty());

    // The registry is sorted (lookups use binary search) and parities match criticality.
    assert!(options::DEFINITIONS.windows(2).all(|w| w[0].number < w[1].number));
    for def in &options::DEFINITIONS {
        assert_eq!(options::definition(def.number), Some(def));
    }
    assert!(options::is_critical(number::URI_PATH) && !options::is_critical(number::OBSERVE));
    assert!(options::is_unsafe(number::URI_HOST) && !options::is_unsafe(number::ETAG));
    assert!(options::is_no_cache_key(number::SIZE1) && !options::is_no_cache_key(number::MAX_AGE));
    assert_eq!(options::name(number::BLOCK2), "Block2");
    assert_eq!(
        content_format::media_type(content_format::SENML_CBOR),
        Some("application/senml+cbor")
    );
    assert_eq!(content_format::media_type(9999), None);
}

#[test]
fn builders() {
    let mut req = Message::new(Type::Con, Code::GET, 0x7d34);
    req.token = Token::new(b"tk").expect("short");
    let ack = Message::ack_for(&req);
    assert_eq!(
        (ack.mtype, ack.code, ack.message_id, ack.token),
        (Type::Ack, Code::EMPTY, 0x7d34, Token::EMPTY)
    );
    let rst = Message::reset_for(9);
    assert!(rst.is_empty() && rst.mtype == Type::Rst && rst.message_id == 9);
    let resp = Message::response_to(&req, Code::CHANGED, 5);
    assert_eq!(
        (resp.mtype, resp.message_id, resp.token),
        (Type::Ack, 0x7d34, req.token)
    );
    assert!(resp.is_response() && resp.options.is_empty() && resp.payload.is_empty());
}

#[test]
fn observe_freshness() {
    use std::time::Duration;
    let now = Duration::from_secs(1);
    assert!(observe::is_newer(1, 2, now));
    assert!(!observe::is_newer(2, 1, now));
    assert!(!observe::is_newer(5, 5, now));
    // Wrapping: 2^24 - 1 is followed by 0.
    assert!(observe::is_newer(observe::MAX_SEQUENCE, 0, now));
    assert!(!observe::is_newer(0, observe::MAX_SEQUENCE, now));
    // More than 2^23 ahead counts as behind, unless 128 s have passed.
    assert!(!observe::is_newer(0, (1 << 23) + 1, now));
    assert!(observe::is_newer(0, (1 << 23) + 1, Duration::from_secs(129)));
}
