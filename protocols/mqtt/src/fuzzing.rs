//! Checks shared by the fuzz target (`fuzz/fuzz_targets/mqtt_decode.rs`) and the seed-corpus
//! replay test, so that an input that once crashed the fuzzer is replayed by `make test`.

use bytes::BytesMut;
use portico_core::channel::Codec;

use crate::codec::{decode, encode, encoded_len};
use crate::{MqttCodec, Packet, ProtocolVersion};

const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// decode → encode → decode must give the same packet, in exactly `encoded_len` bytes.
fn round_trip(packet: &Packet, version: ProtocolVersion) {
    let mut buf = BytesMut::new();
    if let Err(e) = encode(packet, version, &mut buf) {
        panic!("decoded packet does not re-encode in {version:?}: {e}: {packet:?}");
    }
    assert_eq!(
        buf.len(),
        encoded_len(packet, version),
        "encoded_len mismatch for {packet:?}"
    );
    match decode(&mut buf, version, u32::MAX) {
        Ok(Some(again)) => assert_eq!(&again, packet, "round trip changed the packet"),
        other => panic!("re-encoded packet does not decode in {version:?}: {other:?} from {packet:?}"),
    }
    assert!(buf.is_empty(), "re-encoded packet left bytes over");
}

/// Feeds `data` to the server codec (CONNECT first) and to the explicit-version decoder of
/// every version; panics on any broken invariant.
pub fn check_decode(data: &[u8]) {
    let mut server = MqttCodec::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = server.decode(&mut buf) {
        let version = server.version().expect("a decoded packet implies a decoded CONNECT");
        round_trip(&packet, version);
    }
    for version in VERSIONS {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, 1 << 20) {
                Ok(Some(packet)) => {
                    assert!(buf.len() < before, "a decoded packet consumed nothing");
                    round_trip(&packet, version);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(_) => break,
            }
        }
    }
}
