//! A look at DTLS record headers without decrypting anything: enough to admit only ClientHellos
//! from unknown addresses and to drop malformed datagrams before the DTLS engine sees them.
//!
//! RFC 6347 §4.1: a record is `type(1) version(2) epoch(2) sequence_number(6) length(2)` then
//! `length` bytes; one datagram may carry several records.

/// Record header length.
pub(crate) const HEADER_LEN: usize = 13;

/// Content types (RFC 5246 §6.2.1).
pub(crate) const CHANGE_CIPHER_SPEC: u8 = 20;
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;

/// Handshake message types `client_hello` and `server_hello` (RFC 5246 §7.4).
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;

/// Handshake message header length in DTLS: `type(1) length(3) message_seq(2)
/// fragment_offset(3) fragment_length(3)` (RFC 6347 §4.2.2).
const HANDSHAKE_HEADER_LEN: usize = 12;

/// DTLS 1.2 and DTLS 1.0 (`0xFEFD`, `0xFEFF`); a DTLS 1.2 client may put 1.0 in the record
/// version of its first ClientHello (RFC 6347 §4.1).
fn known_version(major: u8, minor: u8) -> bool {
    major == 0xFE && (minor == 0xFD || minor == 0xFF)
}

/// The fields of one record header the adapter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) content_type: u8,
    pub(crate) epoch: u16,
    /// Length of the record's body.
    pub(crate) len: usize,
}

/// Parses the record header at the front of `bytes`, if it is a whole record of a known
/// content type and version.
fn header(bytes: &[u8]) -> Option<Header> {
    let head = bytes.get(..HEADER_LEN)?;
    let content_type = head[0];
    if !matches!(content_type, CHANGE_CIPHER_SPEC | ALERT | HANDSHAKE | APPLICATION_DATA) {
        return None;
    }
    if !known_version(head[1], head[2]) {
        return None;
    }
    let epoch = u16::from_be_bytes([head[3], head[4]]);
    let len = usize::from(u16::from_be_bytes([head[11], head[12]]));
    // An empty record carries nothing, and the engine refuses a datagram ending in one.
    if len == 0 || bytes.len() - HEADER_LEN < len {
        return None;
    }
    Some(Header {
        content_type,
        epoch,
        len,
    })
}

/// The headers of every record in `datagram` if it is made of whole, well-formed records only
/// (RFC 6347 §4.1.2.7: anything else is silently discarded).
pub(crate) fn headers(datagram: &[u8]) -> Option<Vec<Header>> {
    let mut out = Vec::with_capacity(1);
    let mut rest = datagram;
    while !rest.is_empty() {
        let h = header(rest)?;
        rest = &rest[HEADER_LEN + h.len..];
        out.push(h);
    }
    if out.is_empty() { None } else { Some(out) }
}

/// The handshake message type `datagram` opens with, if its first record is the first
/// fragment of a handshake message in epoch 0 (where every ClientHello and ServerHello is).
fn first_handshake_type(datagram: &[u8]) -> Option<u8> {
    let h = header(datagram)?;
    if h.content_type != HANDSHAKE || h.epoch != 0 || h.len < HANDSHAKE_HEADER_LEN {
        return None;
    }
    let body = &datagram[HEADER_LEN..HEADER_LEN + h.len];
    let fragment_offset = &body[6..9];
    (fragment_offset == [0, 0, 0]).then_some(body[0])
}

/// True if `datagram` opens with the first fragment of a ClientHello in epoch 0: the only thing
/// a new peer may start with (RFC 6347 §4.2.1).
pub fn is_client_hello(datagram: &[u8]) -> bool {
    first_handshake_type(datagram) == Some(CLIENT_HELLO)
}

/// True if `datagram` opens with a ServerHello: what a server sends once a ClientHello came
/// back with a valid cookie.
pub(crate) fn is_server_hello(datagram: &[u8]) -> bool {
    first_handshake_type(datagram) == Some(SERVER_HELLO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with `body`.
    fn record(content_type: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut out = vec![content_type, 0xFE, 0xFD];
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
        out.extend_from_slice(&u16::try_from(body.len()).expect("short").to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// A handshake message header of `msg_type` with a body of `len` bytes, unfragmented.
    fn handshake(msg_type: u8, offset: u32) -> Vec<u8> {
        let mut out = vec![msg_type, 0, 0, 4, 0, 0];
        out.extend_from_slice(&offset.to_be_bytes()[1..]);
        out.extend_from_slice(&[0, 0, 4, 1, 2, 3, 4]);
        out
    }

    #[test]
    fn a_client_hello_is_recognised_and_nothing_else() {
        let hello = record(HANDSHAKE, 0, &handshake(CLIENT_HELLO, 0));
        assert!(is_client_hello(&hello));
        let mut dtls10 = hello.clone();
        dtls10[2] = 0xFF;
        assert!(is_client_hello(&dtls10), "DTLS 1.0 record version");

        let mut tls = hello.clone();
        tls[1] = 0x03;
        tls[2] = 0x03;
        assert!(!is_client_hello(&tls), "TLS, not DTLS");
        assert!(!is_client_hello(&record(HANDSHAKE, 0, &handshake(2, 0))), "ServerHello");
        assert!(is_server_hello(&record(HANDSHAKE, 0, &handshake(2, 0))));
        assert!(!is_server_hello(&hello));
        assert!(
            !is_client_hello(&record(HANDSHAKE, 1, &handshake(CLIENT_HELLO, 0))),
            "epoch 1"
        );
        assert!(
            !is_client_hello(&record(HANDSHAKE, 0, &handshake(CLIENT_HELLO, 4))),
            "later fragment"
        );
        assert!(!is_client_hello(&record(
            APPLICATION_DATA,
            0,
            &handshake(CLIENT_HELLO, 0)
        )));
        assert!(!is_client_hello(&hello[..hello.len() - 1]), "truncated");
        assert!(
            !is_client_hello(&record(HANDSHAKE, 0, &[CLIENT_HELLO, 0, 0])),
            "short body"
        );
        assert!(!is_client_hello(b""));
        assert!(!is_client_hello(b"GET / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn datagrams_of_whole_records_only() {
        let a = record(APPLICATION_DATA, 1, b"abc");
        let b = record(ALERT, 1, b"xy");
        let two = [a.clone(), b].concat();
        let found = headers(&two).expect("two records");
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0],
            Header {
                content_type: APPLICATION_DATA,
                epoch: 1,
                len: 3
            }
        );
        assert_eq!(found[1].content_type, ALERT);

        assert!(headers(b"").is_none());
        assert!(headers(&a[..a.len() - 1]).is_none(), "truncated body");
        assert!(headers(&[a.clone(), vec![23]].concat()).is_none(), "trailing byte");
        assert!(headers(&record(99, 1, b"abc")).is_none(), "unknown content type");
        assert!(headers(&record(APPLICATION_DATA, 1, b"")).is_none(), "empty record");
    }
}
