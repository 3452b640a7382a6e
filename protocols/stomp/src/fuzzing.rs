//! The property the `stomp_decode` fuzz target checks, here so that the test suite replays the
//! fuzz seeds (`fuzz/seeds/stomp_decode`) with exactly the same check.

use bytes::BytesMut;
use portico_core::channel::Codec;

use crate::codec::{Limits, StompCodec, encode};
use crate::frame::{Command, Version};

/// Decodes `data` as a stream under each version (and as a fresh connection, which switches
/// version at CONNECT). Every decoded frame must respect the limits, re-encode, and decode back
/// to itself; `Ok(None)` must consume nothing; nothing may panic.
pub fn check_decode(data: &[u8]) {
    let limits = Limits {
        max_headers: 10,
        max_header_length: 1024,
        max_body_length: 4096,
    };
    let codecs = [
        StompCodec::new(limits),
        StompCodec::with_version(limits, Version::V1_1),
        StompCodec::with_version(limits, Version::V1_2),
    ];
    for mut codec in codecs {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            let version = codec.version();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before, "a decoded frame consumed nothing");
                    assert!(frame.headers.len() <= limits.max_headers, "header limit ignored");
                    assert!(frame.body.len() <= limits.max_body_length, "body limit ignored");
                    for (name, value) in &frame.headers {
                        assert!(
                            name.len() + value.len() <= limits.max_header_length,
                            "header length ignored"
                        );
                    }
                    let mut wire = BytesMut::new();
                    encode(&frame, version, &mut wire).expect("a decoded frame re-encodes");
                    let mut again = StompCodec::with_version(limits, version);
                    let decoded = again.decode(&mut wire);
                    if frame.command == Command::HeartBeat {
                        assert!(matches!(decoded, Ok(Some(ref f)) if f.command == Command::HeartBeat));
                    } else {
                        assert_eq!(decoded, Ok(Some(frame)), "re-decoding changed the frame");
                        assert!(wire.is_empty(), "re-encoded frame left bytes over");
                    }
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(error) => {
                    let _ = error.to_string();
                    break;
                }
            }
        }
    }
}
