//! Acknowledgements wait for the durable store in `sync` mode (see `channel/durable.rs`). The
//! store here commits only while its gate is open, so the tests can hold the disk still.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use portico_core::store::{DurabilityMode, Recovered, Store, StoreError, StoreOp};

use super::*;

/// Commits block while the gate is closed; counts committed ops.
#[derive(Default)]
struct GatedStore {
    open: Mutex<bool>,
    opened: Condvar,
    committed: Mutex<usize>,
}

impl GatedStore {
    fn set_open(&self, open: bool) {
        *self.open.lock() = open;
        self.opened.notify_all();
    }
}

impl Store for GatedStore {
    fn commit(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let mut open = self.open.lock();
        while !*open {
            self.opened.wait(&mut open);
        }
        *self.committed.lock() += ops.len();
        Ok(())
    }

    fn load(&self) -> Result<Recovered, StoreError> {
        Ok(Recovered::default())
    }

    fn kv_scan(&self, _space: &str) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        Ok(Vec::new())
    }
}

fn harness(mode: DurabilityMode) -> (Harness, Arc<GatedStore>) {
    let store = Arc::new(GatedStore::default());
    store.set_open(true);
    let extensions = portico_core::Extensions {
        store: Some(store.clone()),
        durability: mode,
        ..Default::default()
    };
    (Harness::with_extensions(MqttSettings::default(), extensions), store)
}

/// Waits for the journal's wake-up, then lets the channel send what became durable.
fn deliver_when_signalled(client: &mut Client, now: Instant) -> Vec<Sent> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !client.conn.take_deliver() {
        assert!(Instant::now() < deadline, "the journal never signalled the connection");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut out = Outbox::new();
    client.channel.handle_deliver(now, &mut out);
    Client::collect(&mut out)
}

/// Connects a client with a persistent session: its CONNACK waits for the session record.
fn connect_persistent(h: &Harness, id: &str) -> Client {
    let mut client = h.channel();
    let mut sent = client.input(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V3_1_1, id, false))),
        h.t0,
    );
    if sent.is_empty() {
        sent = deliver_when_signalled(&mut client, h.t0);
    }
    assert!(
        matches!(sent.first(), Some(Sent::Packet(Packet::ConnAck(_)))),
        "{sent:?}"
    );
    client
}

/// Subscribes and waits for the SUBACK (held until the subscription is on disk).
fn subscribe_persistent(client: &mut Client, filter: &str, qos: QoS, now: Instant) {
    let mut sent = client.subscribe(filter, qos, now);
    if acks(&sent).is_empty() {
        sent = deliver_when_signalled(client, now);
    }
    assert!(matches!(acks(&sent)[..], [Packet::SubAck(_)]), "{sent:?}");
}

fn acks(sent: &[Sent]) -> Vec<&Packet> {
    sent.iter()
        .filter_map(|s| match s {
            Sent::Packet(p @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) | Packet::SubAck(_))) => {
                Some(p)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn sync_mode_holds_puback_until_the_message_is_on_disk() {
    let (h, store) = harness(DurabilityMode::Sync);
    let now = h.t0;
    let mut sub = connect_persistent(&h, "sub");
    subscribe_persistent(&mut sub, "t", QoS::AtLeastOnce, now);
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "pub", true, |_| {});

    store.set_open(false);
    let sent = publisher.publish("t", b"m1", QoS::AtLeastOnce, 7, now);
    assert!(acks(&sent).is_empty(), "PUBACK before the disk: {sent:?}");
    // The online subscriber may have it already: QoS 1 allows a duplicate after a crash.
    store.set_open(true);
    let sent = deliver_when_signalled(&mut publisher, now);
    assert!(
        matches!(acks(&sent)[..], [Packet::PubAck(ack)] if ack.packet_id == pid(7)),
        "{sent:?}"
    );
    assert!(*store.committed.lock() > 0);
    let _ = sub.deliver(now);
}

#[test]
fn acknowledgements_keep_their_order_behind_a_held_one() {
    let (h, store) = harness(DurabilityMode::Sync);
    let now = h.t0;
    let mut sub = connect_persistent(&h, "sub");
    subscribe_persistent(&mut sub, "persisted", QoS::AtLeastOnce, now);
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "pub", true, |_| {});

    store.set_open(false);
    // The first message goes to the persistent session (held); the second to nobody (nothing
    // to wait for), yet its PUBACK must not overtake the first. [MQTT-4.6.0-2]
    assert!(acks(&publisher.publish("persisted", b"a", QoS::AtLeastOnce, 1, now)).is_empty());
    assert!(acks(&publisher.publish("nobody", b"b", QoS::AtLeastOnce, 2, now)).is_empty());
    store.set_open(true);
    let sent = deliver_when_signalled(&mut publisher, now);
    let ids: Vec<u16> = acks(&sent)
        .iter()
        .map(|p| match p {
            Packet::PubAck(ack) => ack.packet_id.get(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn sync_mode_holds_suback_of_a_persistent_session() {
    let (h, store) = harness(DurabilityMode::Sync);
    let now = h.t0;
    let mut sub = connect_persistent(&h, "sub");
    store.set_open(false);
    let sent = sub.subscribe("t", QoS::AtLeastOnce, now);
    assert!(acks(&sent).is_empty(), "SUBACK before the subscription is on disk");
    store.set_open(true);
    let sent = deliver_when_signalled(&mut sub, now);
    assert!(matches!(acks(&sent)[..], [Packet::SubAck(_)]), "{sent:?}");
}

#[test]
fn clean_sessions_write_nothing_and_wait_for_nothing() {
    let (h, store) = harness(DurabilityMode::Sync);
    let now = h.t0;
    let mut sub = h.connect(ProtocolVersion::V3_1_1, "sub", true, |_| {});
    sub.subscribe("t", QoS::AtLeastOnce, now);
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "pub", true, |_| {});
    store.set_open(false);
    let sent = publisher.publish("t", b"m", QoS::AtLeastOnce, 3, now);
    assert_eq!(acks(&sent).len(), 1, "nothing durable to wait for: {sent:?}");
    store.set_open(true);
    assert_eq!(*store.committed.lock(), 0, "clean sessions are never written");
}

#[test]
fn batch_mode_acknowledges_at_once() {
    let (h, store) = harness(DurabilityMode::Batch);
    let now = h.t0;
    let mut sub = connect_persistent(&h, "sub");
    subscribe_persistent(&mut sub, "t", QoS::AtLeastOnce, now);
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "pub", true, |_| {});
    store.set_open(false);
    let sent = publisher.publish("t", b"m", QoS::AtLeastOnce, 4, now);
    assert_eq!(acks(&sent).len(), 1, "{sent:?}");
    store.set_open(true);
}

#[test]
fn qos2_publish_to_a_persistent_session_waits_for_its_packet_id() {
    let (h, store) = harness(DurabilityMode::Sync);
    let now = h.t0;
    let mut sub = connect_persistent(&h, "sub");
    subscribe_persistent(&mut sub, "t", QoS::ExactlyOnce, now);
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "pub", true, |_| {});
    let mut sent = publisher.publish("t", b"m", QoS::ExactlyOnce, 5, now);
    if acks(&sent).is_empty() {
        // PUBREC waits for the message to be queued on disk.
        sent = deliver_when_signalled(&mut publisher, now);
    }
    assert!(matches!(acks(&sent)[..], [Packet::PubRec(_)]), "{sent:?}");

    store.set_open(false);
    let sent = sub.deliver(now);
    assert!(
        published(&sent).is_empty(),
        "QoS 2 PUBLISH before its packet id is on disk"
    );
    store.set_open(true);
    let sent = deliver_when_signalled(&mut sub, now);
    let delivered = published(&sent);
    assert!(
        matches!(delivered[..], [p] if p.qos == QoS::ExactlyOnce && &p.payload[..] == b"m"),
        "{sent:?}"
    );
}
