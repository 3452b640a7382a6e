//! Feeds arbitrary bytes to the MQTT decoder: the server codec (CONNECT first) and the
//! explicit-version decoder for 3.1, 3.1.1 and 5.0. Every packet that decodes must encode in the
//! same version to exactly `encoded_len` bytes and decode back to an equal packet.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portico_core::channel::Codec;
use portico_mqtt::codec::{decode, encode, encoded_len};
use portico_mqtt::{MqttCodec, Packet, ProtocolVersion};

const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// decode → encode → decode must give the same packet.
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

fuzz_target!(|data: &[u8]| {
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
});
