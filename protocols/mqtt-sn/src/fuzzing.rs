//! The property the `mqttsn_decode` fuzz target checks, here so that the test suite replays the
//! fuzz seeds with exactly the same check.

use bytes::{Bytes, BytesMut};

use crate::codec::{decode, encode, encoded_len};

/// Decodes `data` as one datagram. If it is a message, it must encode to exactly
/// `encoded_len` bytes that decode back to the same message. Never panics otherwise.
pub fn check_decode(data: &[u8]) {
    let Ok(packet) = decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut out = BytesMut::new();
    if encode(&packet, &mut out).is_err() {
        // Only an over-long encapsulated message can fail, and only if it decoded from an
        // over-long datagram, which UDP cannot carry.
        return;
    }
    assert_eq!(
        out.len(),
        encoded_len(&packet),
        "encoded_len disagrees for {}",
        packet.name()
    );
    let again = decode(out.freeze()).expect("an encoded message decodes");
    assert_eq!(again, packet, "re-decoding changed the message");
}
