//! Codec hot paths: decoding and encoding a small PUBLISH (run with `cargo bench -p portico-mqtt`).

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portico_mqtt::codec::{decode, encode};
use portico_mqtt::{Packet, PacketId, ProtocolVersion, Publish, QoS};

fn publish(qos: QoS) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from_static("bench/sensors/temperature/42"),
        packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(7).expect("non-zero")),
        payload: Bytes::from(vec![0x5a; 64]),
        properties: Default::default(),
    })
}

fn codec(c: &mut Criterion) {
    for (name, version) in [("v311", ProtocolVersion::V3_1_1), ("v5", ProtocolVersion::V5)] {
        for (qname, qos) in [("qos0", QoS::AtMostOnce), ("qos1", QoS::AtLeastOnce)] {
            let packet = publish(qos);
            let mut wire = BytesMut::new();
            encode(&packet, version, &mut wire).expect("encodable");
            let wire = wire.freeze();
            c.bench_function(&format!("decode_publish_64B_{name}_{qname}"), |b| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| decode(&mut buf, version, u32::MAX).expect("valid"),
                    BatchSize::SmallInput,
                )
            });
            let mut out = BytesMut::with_capacity(256);
            c.bench_function(&format!("encode_publish_64B_{name}_{qname}"), |b| {
                b.iter(|| {
                    out.clear();
                    encode(&packet, version, &mut out).expect("encodable");
                })
            });
        }
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
