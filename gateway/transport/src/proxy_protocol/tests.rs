use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

// ---------------------------------------------------------------------------------------------
// helpers

fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
    match parse(buf) {
        Ok(Parsed::Complete { header, consumed }) => (header, consumed),
        other => panic!("expected a complete header from {buf:?}, got {other:?}"),
    }
}

fn error(buf: &[u8]) -> ProxyError {
    match parse(buf) {
        Err(e) => e,
        other => panic!(
            "expected an error from {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

/// Every strict prefix of a valid header is `Incomplete`.
fn assert_prefixes_incomplete(buf: &[u8], consumed: usize) {
    for k in 0..consumed {
        assert_eq!(parse(&buf[..k]).ok(), Some(Parsed::Incomplete), "prefix of {k} bytes");
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test socket address")
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&u16::try_from(value.len()).expect("short value").to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// A v2 header: `ver_cmd`, `fam`, address block, then TLV bytes.
fn v2(ver_cmd: u8, fam: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    let len = u16::try_from(addrs.len() + tlvs.len()).expect("short header");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(addrs);
    out.extend_from_slice(tlvs);
    out
}

fn inet_addrs(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 addresses expected")
    };
    let mut out = Vec::new();
    out.extend_from_slice(&s.ip().octets());
    out.extend_from_slice(&d.ip().octets());
    out.extend_from_slice(&s.port().to_be_bytes());
    out.extend_from_slice(&d.port().to_be_bytes());
    out
}

fn inet6_addrs(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V6(s), SocketAddr::V6(d)) = (src, dst) else {
        panic!("IPv6 addresses expected")
    };
    let mut out = Vec::new();
    out.extend_from_slice(&s.ip().octets());
    out.extend_from_slice(&d.ip().octets());
    out.extend_from_slice(&s.port().to_be_bytes());
    out.extend_from_slice(&d.port().to_be_bytes());
    out
}

/// Appends a CRC32C TLV and fills in the checksum.
fn with_crc(mut header: Vec<u8>) -> Vec<u8> {
    let at = header.len() + 3;
    header.extend_from_slice(&tlv(tlv::CRC32C, &[0; 4]));
    let len = u16::from_be_bytes([header[14], header[15]]) + 7;
    header[14..16].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c(&[&header]);
    header[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    header
}

const SRC4: &str = "192.0.2.10:51234";
const DST4: &str = "198.51.100.1:1883";

// ---------------------------------------------------------------------------------------------
// v1

#[test]
fn v1_tcp4() {
    let buf = b"PROXY TCP4 192.0.2.10 198.51.100.1 51234 1883\r\n\x10rest";
    let (header, consumed) = complete(buf);
    assert_eq!(consumed, buf.len() - 5);
    assert_eq!(header.version, Version::V1);
    assert_eq!(header.command, Command::Proxy);
    assert_eq!(header.family, Family::Inet);
    assert_eq!(header.transport, Transport::Stream);
    assert_eq!(header.source, Some(sa(SRC4)));
    assert_eq!(header.destination, Some(sa(DST4)));
    assert_eq!(header.tlvs, Tlvs::default());
    assert_prefixes_incomplete(buf, consumed);
}

#[test]
fn v1_tcp6() {
    let buf = b"PROXY TCP6 2001:db8::1 ::ffff:198.51.100.1 0 65535\r\n";
    let (header, consumed) = complete(buf);
    assert_eq!(consumed, buf.len());
    assert_eq!(header.family, Family::Inet6);
    assert_eq!(header.source, Some(sa("[2001:db8::1]:0")));
    assert_eq!(header.destination, Some(sa("[::ffff:198.51.100.1]:65535")));
    assert_prefixes_incomplete(buf, consumed);
}

#[test]
fn v1_unknown_keeps_the_real_addresses_and_ignores_the_rest() {
    for buf in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff:f::1 whatever 1 2 3 4\r\n",
    ] {
        let (header, consumed) = complete(buf);
        assert_eq!(consumed, buf.len());
        assert_eq!(header.family, Family::Unspec);
        assert_eq!(header.transport, Transport::Unspec);
        assert_eq!((header.source, header.destination), (None, None));
        assert_prefixes_incomplete(buf, consumed);
    }
}

#[test]
fn v1_longest_line_is_accepted_and_one_more_byte_is_not() {
    // 107 bytes including CRLF.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_LEN - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(complete(&line).1, V1_MAX_LEN);
    // The worst real case from the spec: two full IPv6 addresses and ports.
    let worst =
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(complete(worst).1, 104);
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN, b'x');
    assert!(matches!(error(&long), ProxyError::V1TooLong));
    // One short of the limit without CRLF is still incomplete.
    assert_eq!(parse(&long[..V1_MAX_LEN - 1]).ok(), Some(Parsed::Incomplete));
    // A CRLF at bytes 107-108 is too late.
    long.extend_from_slice(b"\r\n");
    assert!(matches!(error(&long), ProxyError::V1TooLong));
}

#[test]
fn v1_errors_say_what_and_where() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            "unknown protocol \"TCP5\" at byte 6",
        ),
        (
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            "unknown protocol \"\" at byte 6",
        ),
        (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol \"tcp4\""),
        (
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            "invalid source address \"1.2.3\" at byte 11",
        ),
        (
            b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
            "invalid destination address \"::1\" at byte 19 (wrong address family",
        ),
        (
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            "invalid source address \"1.2.3.4\" at byte 11 (wrong address family",
        ),
        (b"PROXY TCP6 [::1] ::1 1 2\r\n", "invalid source address \"[::1]\""),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            "invalid source port \"65536\" at byte 27",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n",
            "invalid destination port \"080\"",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 +80\r\n",
            "invalid destination port \"+80\"",
        ),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "invalid destination port \"\""),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            "missing destination port (line ends at byte 28)",
        ),
        (b"PROXY TCP4\r\n", "missing source address"),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            "unexpected data after the destination port at byte 31",
        ),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "unexpected byte 0x0a at byte 30"),
        (
            b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
            "unexpected byte 0x0d at byte 18",
        ),
        (
            b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
            "unexpected byte 0x09 at byte 18",
        ),
        (b"PROXY \xff\r\n", "unexpected byte 0xff at byte 6"),
        (b"PROXY \r\n", "unknown protocol \"\""),
        (b"PROXy TCP4", "byte 4 is 0x79"),
        (b"PRXY", "byte 2 is 0x58"),
    ];
    for (input, expected) in cases {
        let message = error(input).to_string();
        assert!(
            message.contains(expected),
            "{:?}: {message:?} lacks {expected:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn v1_garbage_fails_before_the_line_ends() {
    // Each of these is refused without a CRLF, as soon as the bad field is complete.
    let cases: &[&[u8]] = &[
        b"PROXY TCP5",
        b"PROXY X",
        b"PROXY TCP4 1.2.3.4.5 ",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 ",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3",
        b"PROXY TCP4 1\x00",
    ];
    for input in cases {
        assert!(
            parse(input).is_err(),
            "{:?} should fail early",
            String::from_utf8_lossy(input)
        );
    }
    // While valid prefixes, including a trailing CR, wait for more.
    for input in [
        &b"PROXY TCP"[..],
        b"PROXY UNKNOWN",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
        b"PROXY UNKNOWN junk",
    ] {
        assert_eq!(
            parse(input).ok(),
            Some(Parsed::Incomplete),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn other_protocols_are_refused_on_their_first_byte() {
    // MQTT CONNECT, TLS ClientHello, HTTP GET (WebSocket upgrade), STOMP CONNECT.
    for (input, byte) in [
        (&b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c"[..], 0x10),
        (b"\x16\x03\x01\x02\x00", 0x16),
        (b"GET /mqtt HTTP/1.1\r\n", b'G'),
        (b"CONNECT\naccept-version:1.2\n\n\0", b'C'),
    ] {
        match error(input) {
            ProxyError::NotProxyProtocol { offset: 0, byte: b } => assert_eq!(b, byte),
            other => panic!("{input:?}: {other:?}"),
        }
    }
    assert_eq!(parse(b"").ok(), Some(Parsed::Incomplete));
}

// ---------------------------------------------------------------------------------------------
// v2

#[test]
fn v2_inet_with_tlvs() {
    let mut ssl = vec![0x07, 0, 0, 0, 0];
    ssl.extend(tlv(tlv::SSL_VERSION, b"TLSv1.3"));
    ssl.extend(tlv(tlv::SSL_CN, b"device-42"));
    ssl.extend(tlv(tlv::SSL_CIPHER, b"TLS_AES_128_GCM_SHA256"));
    ssl.extend(tlv(0x2f, b"unknown sub-TLV"));
    let mut tlvs = tlv(tlv::AUTHORITY, b"mqtt.example.com");
    tlvs.extend(tlv(tlv::ALPN, b"mqtt"));
    tlvs.extend(tlv(tlv::NOOP, &[0; 3]));
    tlvs.extend(tlv(tlv::SSL, &ssl));
    tlvs.extend(tlv(tlv::UNIQUE_ID, &[0xab; 128]));
    tlvs.extend(tlv(tlv::NETNS, b"blue"));
    tlvs.extend(tlv(0xe0, b"custom"));
    tlvs.extend(tlv(tlv::NOOP, &[]));
    let header = with_crc(v2(0x21, 0x11, &inet_addrs(sa(SRC4), sa(DST4)), &tlvs));
    let mut buf = header.clone();
    buf.extend_from_slice(b"\x10\x0c");
    let (parsed, consumed) = complete(&buf);
    assert_eq!(consumed, header.len());
    assert_eq!(parsed.version, Version::V2);
    assert_eq!(parsed.command, Command::Proxy);
    assert_eq!(parsed.family, Family::Inet);
    assert_eq!(parsed.transport, Transport::Stream);
    assert_eq!(parsed.source, Some(sa(SRC4)));
    assert_eq!(parsed.destination, Some(sa(DST4)));
    let t = &parsed.tlvs;
    assert_eq!(t.authority.as_deref(), Some("mqtt.example.com"));
    assert_eq!(t.alpn.as_deref(), Some(&b"mqtt"[..]));
    assert_eq!(t.unique_id.as_ref().map(Vec::len), Some(128));
    assert_eq!(t.netns.as_deref(), Some("blue"));
    assert!(t.crc32c.is_some());
    assert_eq!(t.skipped, 3);
    let ssl = t.ssl.as_ref().expect("SSL TLV");
    assert!(ssl.client_ssl() && ssl.client_cert_conn() && ssl.client_cert_sess() && ssl.cert_verified());
    assert_eq!(ssl.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(ssl.cn.as_deref(), Some("device-42"));
    assert_eq!(ssl.cipher.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!((ssl.sig_alg.as_deref(), ssl.key_alg.as_deref()), (None, None));
    assert_prefixes_incomplete(&buf, consumed);
}

#[test]
fn v2_ssl_without_a_verified_certificate() {
    let tlvs = tlv(tlv::SSL, &[0x01, 0, 0, 0, 1]);
    let (header, _) = complete(&v2(0x21, 0x11, &inet_addrs(sa(SRC4), sa(DST4)), &tlvs));
    let ssl = header.tlvs.ssl.expect("SSL TLV");
    assert!(ssl.client_ssl());
    assert!(!ssl.client_cert_conn() && !ssl.cert_verified());
    assert_eq!(ssl.verify, 1);
}

#[test]
fn v2_inet6_and_datagram() {
    let (src, dst) = (sa("[2001:db8::7]:40000"), sa("[2001:db8::1]:8883"));
    let buf = v2(0x21, 0x22, &inet6_addrs(src, dst), &[]);
    let (header, consumed) = complete(&buf);
    assert_eq!(consumed, V2_FIXED_LEN + 36);
    assert_eq!(header.family, Family::Inet6);
    assert_eq!(header.transport, Transport::Datagram);
    assert_eq!((header.source, header.destination), (Some(src), Some(dst)));
}

#[test]
fn v2_unix_and_unspec_carry_no_socket_addresses() {
    let mut unix = vec![0u8; 216];
    unix[..9].copy_from_slice(b"/tmp/a.sk");
    let (header, consumed) = complete(&v2(0x21, 0x31, &unix, &tlv(tlv::AUTHORITY, b"x")));
    assert_eq!(consumed, V2_FIXED_LEN + 216 + 4);
    assert_eq!(header.family, Family::Unix);
    assert_eq!((header.source, header.destination), (None, None));
    assert_eq!(header.tlvs.authority.as_deref(), Some("x"));

    let (header, _) = complete(&v2(0x21, 0x00, &[], &tlv(tlv::AUTHORITY, b"y")));
    assert_eq!(header.family, Family::Unspec);
    assert_eq!((header.source, header.destination), (None, None));
    assert_eq!(header.tlvs.authority.as_deref(), Some("y"));
}

#[test]
fn v2_local_ignores_family_addresses_and_tlvs() {
    // A health check: even an unknown family and a broken TLV area are ignored (spec §2.2).
    let buf = v2(0x20, 0xff, &[1, 2, 3], &[]);
    let (header, consumed) = complete(&buf);
    assert_eq!(consumed, V2_FIXED_LEN + 3);
    assert_eq!(header.command, Command::Local);
    assert_eq!(header.family, Family::Unspec);
    assert_eq!((header.source, header.destination), (None, None));
    assert_eq!(header.tlvs, Tlvs::default());
    let (header, consumed) = complete(&v2(0x20, 0x00, &[], &[]));
    assert_eq!((header.command, consumed), (Command::Local, V2_FIXED_LEN));
}

#[test]
fn v2_header_errors_are_reported_as_soon_as_the_byte_arrives() {
    let good = v2(0x21, 0x11, &inet_addrs(sa(SRC4), sa(DST4)), &[]);
    let mut bad_sig = good.clone();
    bad_sig[7] = b'q';
    assert!(matches!(
        parse(&bad_sig[..8]),
        Err(ProxyError::NotProxyProtocol { offset: 7, byte: b'q' })
    ));
    let mut bad = good[..13].to_vec();
    bad[12] = 0x11;
    assert!(matches!(parse(&bad), Err(ProxyError::V2Version { version: 1 })));
    bad[12] = 0x22;
    assert!(matches!(parse(&bad), Err(ProxyError::V2Command { command: 2 })));
    let mut bad = good[..14].to_vec();
    bad[13] = 0x41;
    assert!(matches!(parse(&bad), Err(ProxyError::V2Family { family: 4 })));
    bad[13] = 0x13;
    assert!(matches!(parse(&bad), Err(ProxyError::V2Transport { transport: 3 })));
    // A length too small for IPv4 addresses is refused from the 16 fixed bytes alone.
    let mut short = good[..16].to_vec();
    short[15] = 11;
    match parse(&short) {
        Err(
            e @ ProxyError::V2AddressTooShort {
                needed: 12, length: 11, ..
            },
        ) => {
            assert!(
                e.to_string()
                    .contains("length 11 at byte 14 is too short for Inet addresses (12 bytes)")
            );
        }
        other => panic!("{other:?}"),
    }
    let mut short6 = v2(0x21, 0x21, &[0; 35], &[]);
    short6.truncate(16);
    assert!(matches!(
        parse(&short6),
        Err(ProxyError::V2AddressTooShort { needed: 36, .. })
    ));
    let mut short_unix = v2(0x21, 0x31, &[0; 215], &[]);
    short_unix.truncate(16);
    assert!(matches!(
        parse(&short_unix),
        Err(ProxyError::V2AddressTooShort { needed: 216, .. })
    ));
}

#[test]
fn v2_tlv_errors() {
    let addrs = inet_addrs(sa(SRC4), sa(DST4));
    let tlv_start = V2_FIXED_LEN + 12;
    let check = |tlvs: Vec<u8>, expected: &str| {
        let buf = v2(0x21, 0x11, &addrs, &tlvs);
        let message = error(&buf).to_string();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    };
    check(vec![tlv::AUTHORITY, 0], &format!("TLV at byte {tlv_start} runs past"));
    check(
        vec![tlv::AUTHORITY, 0, 5, b'a'],
        &format!("TLV at byte {tlv_start} runs past"),
    );
    let mut two = tlv(tlv::NOOP, &[]);
    two.extend([0xee, 0xff]);
    check(two, &format!("TLV at byte {} runs past", tlv_start + 3));
    check(
        tlv(tlv::AUTHORITY, b"\xff\xfe"),
        "TLV type 0x02 at byte 28: value is not valid UTF-8",
    );
    check(
        tlv(tlv::NETNS, b"\xc3"),
        "TLV type 0x30 at byte 28: value is not valid UTF-8",
    );
    check(tlv(tlv::UNIQUE_ID, &[0; 129]), "unique id longer than 128 bytes");
    check(
        tlv(tlv::SSL, &[1, 0, 0, 0]),
        "SSL value shorter than its 5-byte client/verify prefix",
    );
    let mut ssl = vec![1, 0, 0, 0, 0];
    ssl.extend([tlv::SSL_CN, 0, 9, b'x']);
    check(
        tlv(tlv::SSL, &ssl),
        &format!("TLV at byte {} runs past", tlv_start + 3 + 5),
    );
    let mut ssl = vec![1, 0, 0, 0, 0];
    ssl.extend(tlv(tlv::SSL_CN, b"\x80"));
    check(
        tlv(tlv::SSL, &ssl),
        "TLV type 0x22 at byte 36: value is not valid UTF-8",
    );
    let mut ssl = vec![1, 0, 0, 0, 0];
    ssl.extend(tlv(tlv::SSL_CN, b"a"));
    ssl.extend(tlv(tlv::SSL_CN, b"b"));
    check(tlv(tlv::SSL, &ssl), "TLV type 0x22 repeated at byte 40");
    let mut dup = tlv(tlv::AUTHORITY, b"a");
    dup.extend(tlv(tlv::AUTHORITY, b"a"));
    check(dup, "TLV type 0x02 repeated at byte 32");
    check(tlv(tlv::CRC32C, &[0; 3]), "CRC32C value must be 4 bytes");
}

#[test]
fn v2_checksum_is_verified() {
    let good = with_crc(v2(
        0x21,
        0x11,
        &inet_addrs(sa(SRC4), sa(DST4)),
        &tlv(tlv::AUTHORITY, b"a"),
    ));
    assert!(complete(&good).0.tlvs.crc32c.is_some());
    // Flip a bit in an address: the checksum no longer matches.
    let mut bad = good.clone();
    bad[V2_FIXED_LEN] ^= 1;
    assert!(matches!(error(&bad), ProxyError::V2Checksum { .. }));
    // Bytes after the header are not covered.
    let mut extended = good.clone();
    extended.extend_from_slice(b"client bytes");
    assert_eq!(complete(&extended).1, good.len());
}

#[test]
fn crc32c_matches_the_standard_check_value() {
    assert_eq!(crc32c(&[b"123456789"]), 0xe306_9283);
    assert_eq!(crc32c(&[b"1234", b"56789"]), 0xe306_9283);
    assert_eq!(crc32c(&[]), 0);
}

#[test]
fn v2_longest_header() {
    let tlvs = tlv(0xee, &vec![0; usize::from(u16::MAX) - 12 - 3]);
    let buf = v2(0x21, 0x11, &inet_addrs(sa(SRC4), sa(DST4)), &tlvs);
    assert_eq!(buf.len(), V2_MAX_LEN);
    assert_eq!(parse(&buf[..V2_MAX_LEN - 1]).ok(), Some(Parsed::Incomplete));
    let (header, consumed) = complete(&buf);
    assert_eq!((consumed, header.tlvs.skipped), (V2_MAX_LEN, 1));
}

// ---------------------------------------------------------------------------------------------
// properties

fn v1_line(src: SocketAddr, dst: SocketAddr) -> String {
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
}

fn arb_v4() -> impl Strategy<Value = SocketAddr> {
    (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port))
}

fn arb_v6() -> impl Strategy<Value = SocketAddr> {
    (any::<u128>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port))
}

proptest! {
    #[test]
    fn v1_round_trip(pair in prop_oneof![(arb_v4(), arb_v4()), (arb_v6(), arb_v6())], tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut buf = v1_line(pair.0, pair.1).into_bytes();
        let len = buf.len();
        prop_assert!(len <= V1_MAX_LEN);
        buf.extend_from_slice(&tail);
        let (header, consumed) = complete(&buf);
        prop_assert_eq!(consumed, len);
        prop_assert_eq!(header.source, Some(pair.0));
        prop_assert_eq!(header.destination, Some(pair.1));
        assert_prefixes_incomplete(&buf, consumed);
    }

    #[test]
    fn v2_round_trip(v6 in any::<bool>(), s4 in arb_v4(), d4 in arb_v4(), s6 in arb_v6(), d6 in arb_v6(),
                     authority in "[a-z0-9.-]{0,40}", cn in proptest::option::of("\\PC{0,20}"),
                     unknown in prop::collection::vec((0x40u8..0xff, prop::collection::vec(any::<u8>(), 0..20)), 0..4),
                     crc in any::<bool>()) {
        let (src, dst, fam, addrs) = if v6 { (s6, d6, 0x21, inet6_addrs(s6, d6)) } else { (s4, d4, 0x11, inet_addrs(s4, d4)) };
        let mut tlvs = tlv(tlv::AUTHORITY, authority.as_bytes());
        for (kind, value) in &unknown {
            tlvs.extend(tlv(*kind, value));
        }
        if let Some(cn) = &cn {
            let mut ssl = vec![0x03, 0, 0, 0, 0];
            ssl.extend(tlv(tlv::SSL_CN, cn.as_bytes()));
            tlvs.extend(tlv(tlv::SSL, &ssl));
        }
        let mut buf = v2(0x21, fam, &addrs, &tlvs);
        if crc {
            buf = with_crc(buf);
        }
        let (header, consumed) = complete(&buf);
        prop_assert_eq!(consumed, buf.len());
        prop_assert_eq!(header.source, Some(src));
        prop_assert_eq!(header.destination, Some(dst));
        prop_assert_eq!(header.tlvs.authority.as_deref(), Some(authority.as_str()));
        prop_assert_eq!(header.tlvs.ssl.and_then(|s| s.cn), cn);
        prop_assert_eq!(header.tlvs.skipped, unknown.len());
        prop_assert_eq!(header.tlvs.crc32c.is_some(), crc);
        assert_prefixes_incomplete(&buf, consumed);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        crate::fuzzing::check_proxy_header(&data);
    }

    #[test]
    fn arbitrary_v1_lines_never_panic(line in "PROXY [ -~]{0,110}(\r\n)?") {
        crate::fuzzing::check_proxy_header(line.as_bytes());
    }

    #[test]
    fn arbitrary_v2_blocks_never_panic(ver_cmd in prop::sample::select(vec![0x20u8, 0x21, 0x22, 0x31]), fam in any::<u8>(),
                                       body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut buf = v2(ver_cmd, fam, &body, &[]);
        crate::fuzzing::check_proxy_header(&buf);
        // And with a lying length.
        buf[15] = buf[15].wrapping_add(3);
        crate::fuzzing::check_proxy_header(&buf);
    }
}

// ---------------------------------------------------------------------------------------------
// async reading and Prefixed

const TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::test]
async fn reads_the_header_and_returns_what_follows() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client
        .write_all(b"PROXY TCP4 192.0.2.10 198.51.100.1 51234 1883\r\n\x10\x0c\x00\x04MQTT")
        .await
        .expect("write");
    let (header, rest) = read_proxy_header(&mut server, TIMEOUT).await.expect("header");
    assert_eq!(header.source, Some(sa(SRC4)));
    assert_eq!(&rest[..], b"\x10\x0c\x00\x04MQTT");

    // The prefixed stream yields the leftover, then the socket.
    let mut stream = Prefixed::new(rest, server);
    client.write_all(b"\x04\x02").await.expect("write");
    let mut got = [0u8; 10];
    stream.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"\x10\x0c\x00\x04MQTT\x04\x02");
    assert_eq!(stream.prefix_len(), 0);
    // Writes reach the peer.
    stream.write_all(b"\x20\x02\x00\x00").await.expect("write");
    stream.flush().await.expect("flush");
    let mut ack = [0u8; 4];
    client.read_exact(&mut ack).await.expect("read");
    assert_eq!(&ack, b"\x20\x02\x00\x00");
}

#[tokio::test]
async fn reads_a_header_that_arrives_byte_by_byte() {
    let header = with_crc(v2(
        0x21,
        0x11,
        &inet_addrs(sa(SRC4), sa(DST4)),
        &tlv(tlv::AUTHORITY, b"broker"),
    ));
    let (mut client, mut server) = tokio::io::duplex(4096);
    let writer = tokio::spawn(async move {
        for byte in header {
            client.write_all(&[byte]).await.expect("write");
            tokio::task::yield_now().await;
        }
        client
    });
    let (parsed, rest) = read_proxy_header(&mut server, TIMEOUT).await.expect("header");
    assert_eq!(parsed.tlvs.authority.as_deref(), Some("broker"));
    assert!(rest.is_empty());
    drop(writer.await.expect("writer"));
}

#[tokio::test]
async fn a_large_v2_header_is_read_whole() {
    let header = v2(0x21, 0x11, &inet_addrs(sa(SRC4), sa(DST4)), &tlv(0xee, &[7; 5000]));
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    let mut bytes = header.clone();
    bytes.extend_from_slice(b"after");
    client.write_all(&bytes).await.expect("write");
    let (parsed, rest) = read_proxy_header(&mut server, TIMEOUT).await.expect("header");
    assert_eq!(parsed.tlvs.skipped, 1);
    // Once the length is known the reader asks for just the rest of the header, so the client
    // bytes stay in the socket here; either way the prefixed stream yields them next.
    assert!(rest.len() <= 5);
    let mut stream = Prefixed::new(rest, server);
    let mut after = [0u8; 5];
    stream.read_exact(&mut after).await.expect("read");
    assert_eq!(&after, b"after");
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_times_out() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"PROXY TCP4 1.2").await.expect("write");
    let started = tokio::time::Instant::now();
    match read_proxy_header(&mut server, TIMEOUT).await {
        Err(ProxyError::Timeout { after, received: 14 }) => assert_eq!(after, TIMEOUT),
        other => panic!("{other:?}"),
    }
    assert_eq!(started.elapsed(), TIMEOUT);
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn garbage_is_refused_without_waiting() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    // The client spoke MQTT to a PROXY listener and now waits for CONNACK.
    client
        .write_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c")
        .await
        .expect("write");
    let started = tokio::time::Instant::now();
    let result = read_proxy_header(&mut server, TIMEOUT).await;
    assert!(
        matches!(result, Err(ProxyError::NotProxyProtocol { offset: 0, byte: 0x10 })),
        "{result:?}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    drop(client);
}

#[tokio::test]
async fn a_peer_that_closes_early_is_reported() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"\r\n\r\n\0\r\nQUIT\n\x21").await.expect("write");
    drop(client);
    match read_proxy_header(&mut server, TIMEOUT).await {
        Err(e @ ProxyError::Eof { received: 13 }) => {
            assert_eq!(
                e.to_string(),
                "connection closed after 13 bytes, before the PROXY header was complete"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn prefixed_serves_small_reads_and_frees_the_prefix() {
    let (mut client, server) = tokio::io::duplex(64);
    let mut stream = Prefixed::new(BytesMut::from(&b"abcdefg"[..]), server);
    let mut small = [0u8; 3];
    let n = stream.read(&mut small).await.expect("read");
    assert_eq!(&small[..n], b"abc");
    assert_eq!(stream.prefix_len(), 4);
    let n = stream.read(&mut small).await.expect("read");
    assert_eq!(&small[..n], b"def");
    let n = stream.read(&mut small).await.expect("read");
    assert_eq!(&small[..n], b"g");
    client.write_all(b"xyz").await.expect("write");
    let n = stream.read(&mut small).await.expect("read");
    assert_eq!(&small[..n], b"xyz");
    let (prefix, _inner) = stream.into_parts();
    assert_eq!(prefix.capacity(), 0, "the prefix buffer was released");
}

#[tokio::test]
async fn prefixed_with_an_empty_prefix_is_the_stream() {
    let (mut client, server) = tokio::io::duplex(64);
    let mut stream = Prefixed::new(BytesMut::new(), server);
    client.write_all(b"hi").await.expect("write");
    drop(client);
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.expect("read");
    assert_eq!(all, b"hi");
}
