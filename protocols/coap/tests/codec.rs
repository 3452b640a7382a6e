//! The codec against RFC 7252's own messages (Appendix A's exchanges and Appendix B's URI
//! options), every wire fault with the rejection it calls for, the extended delta and length
//! forms at their boundaries, and a round trip of arbitrary messages.

use bytes::{Bytes, BytesMut};
use portico_coap::options::number;
use portico_coap::*;
use proptest::prelude::*;

mod common;
use common::arb_message;

fn enc(message: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(message, &mut out).expect("encodes");
    assert_eq!(out.len(), encoded_len(message), "encoded_len of {message:?}");
    out.to_vec()
}

fn dec(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode(Bytes::copy_from_slice(bytes))
}

fn err(bytes: &[u8]) -> DecodeError {
    match dec(bytes) {
        Ok(m) => panic!("{bytes:02x?} decoded as {m:?}"),
        Err(e) => e,
    }
}

/// `bytes` decodes to `message` and `message` encodes to `bytes`.
fn golden(bytes: &[u8], message: &Message) {
    assert_eq!(dec(bytes).as_ref(), Ok(message), "decoding {bytes:02x?}");
    assert_eq!(enc(message), bytes, "encoding {message:?}");
}

fn token(bytes: &[u8]) -> Token {
    Token::new(bytes).expect("short token")
}

fn get_temperature(mtype: Type, mid: u16, tok: &[u8]) -> Message {
    let mut m = Message::new(mtype, Code::GET, mid);
    m.token = token(tok);
    m.options.push_uri_path("temperature");
    m
}

fn content(mtype: Type, mid: u16, tok: &[u8], payload: &'static str) -> Message {
    let mut m = Message::new(mtype, Code::CONTENT, mid).with_payload(payload);
    m.token = token(tok);
    m
}

fn wire(head: &[u8], tail: &[u8]) -> Vec<u8> {
    [head, tail].concat()
}

#[test]
fn rfc7252_figure_16_piggybacked_response_with_empty_token() {
    let request = wire(&[0x40, 0x01, 0x7d, 0x34, 0xbb], b"temperature");
    assert_eq!(request.len(), 16);
    golden(&request, &get_temperature(Type::Con, 0x7d34, &[]));
    let response = wire(&[0x60, 0x45, 0x7d, 0x34, 0xff], b"22.3 C");
    assert_eq!(response.len(), 11);
    let ack = content(Type::Ack, 0x7d34, &[], "22.3 C");
    golden(&response, &ack);
    // The builder makes the same piggybacked response.
    let request = get_temperature(Type::Con, 0x7d34, &[]);
    assert_eq!(
        Message::response_to(&request, Code::CONTENT, 0).with_payload("22.3 C"),
        ack
    );
}

#[test]
fn rfc7252_figures_17_to_19_piggybacked_responses_with_tokens() {
    for (mid, tok) in [(0x7d35u16, 0x20u8), (0x7d36, 0x31), (0x7d37, 0x42)] {
        let [hi, lo] = mid.to_be_bytes();
        let request = wire(&[0x41, 0x01, hi, lo, tok, 0xbb], b"temperature");
        assert_eq!(request.len(), 17);
        golden(&request, &get_temperature(Type::Con, mid, &[tok]));
        let response = wire(&[0x61, 0x45, hi, lo, tok, 0xff], b"22.3 C");
        assert_eq!(response.len(), 12);
        golden(&response, &content(Type::Ack, mid, &[tok], "22.3 C"));
    }
}

#[test]
fn rfc7252_figure_20_separate_response() {
    golden(
        &wire(&[0x41, 0x01, 0x7d, 0x38, 0x53, 0xbb], b"temperature"),
        &get_temperature(Type::Con, 0x7d38, &[0x53]),
    );
    let empty_ack = Message::ack_for(&get_temperature(Type::Con, 0x7d38, &[0x53]));
    golden(&[0x60, 0x00, 0x7d, 0x38], &empty_ack);
    golden(
        &wire(&[0x41, 0x45, 0xad, 0x7b, 0x53, 0xff], b"22.3 C"),
        &content(Type::Con, 0xad7b, &[0x53], "22.3 C"),
    );
    golden(&[0x60, 0x00, 0xad, 0x7b], &Message::new(Type::Ack, Code::EMPTY, 0xad7b));
}

#[test]
fn rfc7252_figure_21_unexpected_separate_response_is_reset() {
    golden(
        &wire(&[0x41, 0x01, 0x7d, 0x39, 0x64, 0xbb], b"temperature"),
        &get_temperature(Type::Con, 0x7d39, &[0x64]),
    );
    golden(&[0x60, 0x00, 0x7d, 0x39], &Message::new(Type::Ack, Code::EMPTY, 0x7d39));
    golden(
        &wire(&[0x41, 0x45, 0xad, 0x7c, 0x64, 0xff], b"22.3 C"),
        &content(Type::Con, 0xad7c, &[0x64], "22.3 C"),
    );
    golden(&[0x70, 0x00, 0xad, 0x7c], &Message::reset_for(0xad7c));
}

#[test]
fn rfc7252_figures_22_and_23_non_confirmable() {
    golden(
        &wire(&[0x51, 0x01, 0x7d, 0x40, 0x75, 0xbb], b"temperature"),
        &get_temperature(Type::Non, 0x7d40, &[0x75]),
    );
    let request = get_temperature(Type::Non, 0x7d40, &[0x75]);
    let response = content(Type::Non, 0xad7d, &[0x75], "22.3 C");
    golden(&wire(&[0x51, 0x45, 0xad, 0x7d, 0x75, 0xff], b"22.3 C"), &response);
    assert_eq!(
        Message::response_to(&request, Code::CONTENT, 0xad7d).with_payload("22.3 C"),
        response
    );

    golden(
        &wire(&[0x51, 0x01, 0x7d, 0x41, 0x86, 0xbb], b"temperature"),
        &get_temperature(Type::Non, 0x7d41, &[0x86]),
    );
    golden(
        &wire(&[0x51, 0x45, 0x60, 0xb1, 0x86, 0xff], b"22.3 C"),
        &content(Type::Non, 0x60b1, &[0x86], "22.3 C"),
    );
    golden(
        &wire(&[0x51, 0x45, 0x01, 0xa0, 0x86, 0xff], b"20.9 C"),
        &content(Type::Non, 0x01a0, &[0x86], "20.9 C"),
    );
    let mut not_found = Message::new(Type::Non, Code::NOT_FOUND, 0x952a);
    not_found.token = token(&[0x86]);
    golden(&[0x51, 0x84, 0x95, 0x2a, 0x86], &not_found);
}

#[test]
fn rfc7252_appendix_b_uri_options() {
    let get = |f: &dyn Fn(&mut Options)| {
        let mut m = Message::new(Type::Con, Code::GET, 1);
        f(&mut m.options);
        m
    };
    let head = [0x40, 0x01, 0x00, 0x01];

    golden(&head, &get(&|_| {}));
    golden(
        &wire(&head, b"\x3bexample.net"),
        &get(&|o| o.set_uri_host("example.net")),
    );

    let well_known = get(&|o| {
        o.set_uri_host("example.net");
        o.push_uri_path(".well-known");
        o.push_uri_path("core");
    });
    golden(&wire(&head, b"\x3bexample.net\x8b.well-known\x04core"), &well_known);
    assert_eq!(well_known.uri_path_joined().as_deref(), Ok(".well-known/core"));

    // Uri-Host of 17 bytes and a 15-byte UTF-8 segment: both need the 1-byte length extension.
    let unicode = get(&|o| {
        o.set_uri_host("xn--18j4d.example");
        o.push_uri_path("\u{3053}\u{3093}\u{306b}\u{3061}\u{306f}");
    });
    let mut bytes = wire(&head, b"\x3d\x04xn--18j4d.example\x8d\x02");
    bytes.extend_from_slice(&[0xe3, 0x81, 0x93, 0xe3, 0x82, 0x93, 0xe3, 0x81, 0xab, 0xe3, 0x81, 0xa1]);
    bytes.extend_from_slice(&[0xe3, 0x81, 0xaf]);
    golden(&bytes, &unicode);

    let odd = get(&|o| {
        o.set_uri_port(61616);
        for segment in ["", "/", "", ""] {
            o.push_uri_path(segment);
        }
        o.push_uri_query("//");
        o.push_uri_query("?&");
    });
    golden(&wire(&head, b"\x72\xf0\xb0\x40\x01/\x00\x00\x42//\x02?&"), &odd);
    assert_eq!(odd.options.uri_port(), Some(61616));
    // Joining cannot tell the "/" segment from a separator (EMQX joins the same way).
    assert_eq!(odd.uri_path_joined().as_deref(), Ok("////"));
    let query: Vec<_> = odd.options.uri_query().collect();
    assert_eq!(query, [Ok("//"), Ok("?&")]);
}

#[test]
fn decode_errors_say_what_where_and_whether_to_reset() {
    use DecodeErrorKind::*;
    let cases: &[(&[u8], DecodeErrorKind, usize, Rejection)] = &[
        (&[], TooShort(0), 0, Rejection::Ignore),
        (&[0x40, 0x01, 0x12], TooShort(3), 0, Rejection::Ignore),
        // Version 0, 2 and 3 are silently ignored, even for a CON.
        (&[0x00, 0x01, 0x12, 0x34], UnknownVersion(0), 0, Rejection::Ignore),
        (&[0x80, 0x01, 0x12, 0x34], UnknownVersion(2), 0, Rejection::Ignore),
        (&[0xc0, 0x01, 0x12, 0x34], UnknownVersion(3), 0, Rejection::Ignore),
        // TKL 9..15: a format error, reset if CON.
        (
            &[0x49, 0x01, 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            ReservedTokenLength(9),
            0,
            reset(0x1234),
        ),
        (&[0x4f, 0x01, 0x12, 0x34], ReservedTokenLength(15), 0, reset(0x1234)),
        (&[0x59, 0x01, 0x12, 0x34], ReservedTokenLength(9), 0, Rejection::Ignore),
        (
            &[0x44, 0x01, 0x12, 0x34, 1, 2],
            TruncatedToken { tkl: 4, available: 2 },
            4,
            reset(0x1234),
        ),
        // Empty messages carry nothing after the message id.
        (&[0x41, 0x00, 0x12, 0x34, 0xaa], EmptyWithData(1), 4, reset(0x1234)),
        (
            &[0x40, 0x00, 0x12, 0x34, 0xff, 0x01],
            EmptyWithData(2),
            4,
            reset(0x1234),
        ),
        (&[0x60, 0x00, 0x12, 0x34, 0xb0], EmptyWithData(1), 4, Rejection::Ignore),
        (&[0x70, 0x00, 0x12, 0x34, 0xb0], EmptyWithData(1), 4, Rejection::Ignore),
        // Reserved classes 1, 6 and 7.
        (
            &[0x40, 0x21, 0x12, 0x34],
            ReservedClass(Code::new(1, 1)),
            1,
            reset(0x1234),
        ),
        (
            &[0x40, 0xc0, 0x12, 0x34],
            ReservedClass(Code::new(6, 0)),
            1,
            reset(0x1234),
        ),
        (
            &[0x50, 0xff, 0x12, 0x34],
            ReservedClass(Code::new(7, 31)),
            1,
            Rejection::Ignore,
        ),
        // Option nibble 15 outside the payload marker.
        (&[0x40, 0x01, 0x12, 0x34, 0xf0], ReservedOptionDelta, 4, reset(0x1234)),
        (
            &[0x40, 0x01, 0x12, 0x34, 0xb1, b'a', 0x0f],
            ReservedOptionLength,
            6,
            reset(0x1234),
        ),
        // A payload marker with no payload.
        (&[0x40, 0x01, 0x12, 0x34, 0xff], EmptyPayload, 4, reset(0x1234)),
        (
            &[0x51, 0x01, 0x12, 0x34, 0x77, 0xb1, b'a', 0xff],
            EmptyPayload,
            7,
            Rejection::Ignore,
        ),
        // Truncated extended delta, extended length and value.
        (
            &[0x40, 0x01, 0x12, 0x34, 0xd0],
            TruncatedOption {
                number: 0,
                needed: 1,
                available: 0,
            },
            4,
            reset(0x1234),
        ),
        (
            &[0x40, 0x01, 0x12, 0x34, 0xe0, 0x00],
            TruncatedOption {
                number: 0,
                needed: 2,
                available: 1,
            },
            4,
            reset(0x1234),
        ),
        (
            &[0x40, 0x01, 0x12, 0x34, 0xbd],
            TruncatedOption {
                number: 11,
                needed: 1,
                available: 0,
            },
            4,
            reset(0x1234),
        ),
        (
            &[0x40, 0x01, 0x12, 0x34, 0xbe, 0x01],
            TruncatedOption {
                number: 11,
                needed: 2,
                available: 1,
            },
            4,
            reset(0x1234),
        ),
        (
            &[0x40, 0x01, 0x12, 0x34, 0xb3, b'a', b'b'],
            TruncatedOption {
                number: 11,
                needed: 3,
                available: 2,
            },
            4,
            reset(0x1234),
        ),
        // Option numbers past 65535: 65804 in one step, or 65000 + 1000.
        (
            &[0x40, 0x01, 0x12, 0x34, 0xe0, 0xff, 0xff],
            OptionNumberOverflow(65804),
            4,
            reset(0x1234),
        ),
        (
            &[0x40, 0x01, 0x12, 0x34, 0xe0, 0xfc, 0xdb, 0xe0, 0x02, 0xdb],
            OptionNumberOverflow(66000),
            7,
            reset(0x1234),
        ),
    ];
    for (bytes, kind, offset, rejection) in cases {
        let e = err(bytes);
        assert_eq!(
            (e.kind, e.offset, e.reply()),
            (*kind, *offset, *rejection),
            "{bytes:02x?}: {e}"
        );
        assert!(e.offset <= bytes.len());
        assert!(e.to_string().contains(&format!("at byte {offset}")), "{e}");
    }
}

fn reset(message_id: u16) -> Rejection {
    Rejection::Reset { message_id }
}

#[test]
fn decode_errors_carry_the_header_for_an_answer() {
    let e = err(&[0x42, 0x01, 0xbe, 0xef, 0xca, 0xfe, 0xf0]);
    let header = e.header.expect("the header was readable");
    assert_eq!(
        (header.mtype, header.code, header.message_id, header.token),
        (Type::Con, Code::GET, 0xbeef, Some(token(&[0xca, 0xfe])))
    );
    let rst = e.reset().expect("a CON is reset");
    assert_eq!(enc(&rst), [0x70, 0x00, 0xbe, 0xef]);
    // No token when TKL is reserved or the token is cut short; no header at all for another
    // version.
    assert_eq!(err(&[0x4a, 0x01, 0, 1]).header.and_then(|h| h.token), None);
    assert_eq!(err(&[0x48, 0x01, 0, 1, 7]).header.and_then(|h| h.token), None);
    assert_eq!(err(&[0x80, 0x01, 0, 1]).header, None);
    assert_eq!(err(&[0x51, 0x01, 0, 1, 9, 0xff]).reset(), None);
}

#[test]
fn decode_accepts_what_the_wire_format_allows() {
    // An empty CON ("CoAP ping"), an unknown method and an unknown response code are well-formed:
    // what to do with them is for validation and the message layer.
    assert!(dec(&[0x40, 0x00, 0, 1]).expect("ping").is_empty());
    assert_eq!(dec(&[0x40, 0x1f, 0, 1]).expect("0.31").code, Code::new(0, 31));
    assert_eq!(dec(&[0x60, 0x5f, 0, 1]).expect("2.31").code, Code::CONTINUE);
    assert_eq!(dec(&[0x60, 0xbf, 0, 1]).expect("5.31").code, Code::new(5, 31));
    // Uint values with leading zeros are kept as sent (and re-encode byte for byte).
    let m = dec(&[0x40, 0x01, 0, 1, 0xc2, 0x00, 0x32]).expect("padded Content-Format");
    assert_eq!(m.options.content_format(), Some(50));
    assert_eq!(enc(&m), [0x40, 0x01, 0, 1, 0xc2, 0x00, 0x32]);
    // 0xFF inside an option value is data, not a marker.
    let m = dec(&[0x40, 0x01, 0, 1, 0xb2, 0xff, 0xff, 0xff, b'x']).expect("0xff in a value");
    assert_eq!(m.options.get(number::URI_PATH).map(|v| &v[..]), Some(&[0xff, 0xff][..]));
    assert_eq!(&m.payload[..], b"x");
}

#[test]
fn payload_and_options_share_the_datagram() {
    let datagram = Bytes::from(wire(&[0x41, 0x02, 0, 9, 7, 0xb2], b"ps\xffhello"));
    let m = decode(datagram.clone()).expect("decodes");
    let range = datagram.as_ptr_range();
    assert!(range.contains(&m.payload.as_ptr()));
    let (_, value) = m.options.iter().next().expect("one option");
    assert!(range.contains(&value.as_ptr()));
}

/// A GET whose only option is `number` with a value of `len` bytes.
fn with_option(number: u16, len: usize) -> Message {
    let mut m = Message::new(Type::Con, Code::GET, 7);
    m.options.push(number, vec![b'v'; len]);
    m
}

#[test]
fn option_delta_extended_forms_at_their_boundaries() {
    let head = [0x40, 0x01, 0x00, 0x07];
    let cases: &[(u16, &[u8])] = &[
        (12, &[0xc0]),
        (13, &[0xd0, 0x00]),
        (14, &[0xd0, 0x01]),
        (268, &[0xd0, 0xff]),
        (269, &[0xe0, 0x00, 0x00]),
        (270, &[0xe0, 0x00, 0x01]),
        (65535, &[0xe0, 0xfe, 0xf2]),
    ];
    for (number, bytes) in cases {
        golden(&wire(&head, bytes), &with_option(*number, 0));
    }
    // A delta after a first option: 11 → 12 is 1, 11 → 2048 is 2037 (2-byte form).
    let mut m = with_option(11, 0);
    m.options.push(2048, Bytes::new());
    golden(&wire(&head, &[0xb0, 0xe0, 0x06, 0xe8]), &m);
}

#[test]
fn option_length_extended_forms_at_their_boundaries() {
    for (len, prefix) in [
        (12usize, vec![0x1c]),
        (13, vec![0x1d, 0x00]),
        (268, vec![0x1d, 0xff]),
        (269, vec![0x1e, 0x00, 0x00]),
        (65804, vec![0x1e, 0xff, 0xff]),
    ] {
        let m = with_option(1, len);
        let bytes = [&[0x40, 0x01, 0x00, 0x07][..], &prefix, &vec![b'v'; len]].concat();
        assert_eq!(encoded_len(&m), bytes.len(), "length {len}");
        golden(&bytes, &m);
    }
    // One byte more does not fit the 2-byte extension.
    let too_long = with_option(1, 65805);
    assert_eq!(
        encode(&too_long, &mut BytesMut::new()),
        Err(EncodeError::OptionTooLong { number: 1, len: 65805 })
    );
}

#[test]
fn encode_refuses_what_decode_would_reject() {
    let mut out = BytesMut::new();
    let reserved = Message::new(Type::Con, Code::new(7, 1), 1);
    assert_eq!(
        encode(&reserved, &mut out),
        Err(EncodeError::ReservedClass(Code::new(7, 1)))
    );
    let mut ping = Message::new(Type::Con, Code::EMPTY, 1);
    ping.token = token(&[1]);
    assert_eq!(encode(&ping, &mut out), Err(EncodeError::EmptyWithData));
    let rst_with_payload = Message::reset_for(1).with_payload("x");
    assert_eq!(encode(&rst_with_payload, &mut out), Err(EncodeError::EmptyWithData));
    assert!(out.is_empty(), "nothing written on error");
    assert_eq!(Token::new(&[0; 9]), Err(TokenTooLong(9)));
}

proptest! {
    #[test]
    fn any_valid_message_round_trips(message in arb_message()) {
        let bytes = enc(&message);
        prop_assert_eq!(dec(&bytes), Ok(message));
    }

    #[test]
    fn any_datagram_passes_the_fuzz_check(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        portico_coap::fuzzing::check_decode(&bytes);
    }

    #[test]
    fn prefixed_datagrams_pass_the_fuzz_check(
        tail in proptest::collection::vec(any::<u8>(), 0..48),
        tkl in 0u8..9,
    ) {
        // A valid version-1 header so that the option parser sees the random bytes.
        let head = [0x40 | tkl, 0x02, 0x12, 0x34];
        portico_coap::fuzzing::check_decode(&[&head[..], &tail].concat());
    }
}
