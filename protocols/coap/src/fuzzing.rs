//! The property the `coap_decode` fuzz target checks, here so that the test suite replays the
//! fuzz seeds with exactly the same check.

use bytes::{Bytes, BytesMut};

use crate::codec::{decode, encode, encoded_len};
use crate::validate::validate_request;

/// Decodes `data` as one datagram. An error must name an offset inside the datagram. A message
/// must encode to exactly `encoded_len` bytes that decode back to the same message, and
/// `validate_request`, `sanitized` and the typed accessors must not panic on it.
pub fn check_decode(data: &[u8]) {
    let message = match decode(Bytes::copy_from_slice(data)) {
        Ok(message) => message,
        Err(e) => {
            assert!(e.offset <= data.len(), "{e} points past the {} bytes", data.len());
            let _ = e.reply();
            return;
        }
    };
    let mut out = BytesMut::new();
    encode(&message, &mut out).expect("a decoded message encodes");
    assert_eq!(out.len(), encoded_len(&message), "encoded_len disagrees");
    let again = decode(out.freeze()).expect("an encoded message decodes");
    assert_eq!(again, message, "re-decoding changed the message");

    let verdict = validate_request(&message);
    if let Err(e) = verdict {
        assert!(message.is_request(), "only requests are refused: {e}");
        let _ = (e.code(), e.message());
    }
    let sanitized = message.options.sanitized();
    assert!(sanitized.len() <= message.options.len());
    let o = &message.options;
    let _ = (
        o.content_format(),
        o.accept(),
        o.observe(),
        o.max_age(),
        o.size1(),
        o.size2(),
    );
    let _ = (o.block1(), o.block2(), o.uri_host(), o.uri_port(), o.etag());
    let _ = message.uri_path_joined();
    let _ = o.query_pairs().count();
}
