"""5. Persistent sessions and 6. session takeover."""

import pytest

import mqttraw
from clients import V311, V5, VERSION_IDS, VERSIONS, topic_prefix, uid


def _persistent(clients, version, cid):
    if version == V5:
        return clients.new(version=version, client_id=cid, clean=False, session_expiry=300)
    return clients.new(version=version, client_id=cid, clean=False)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_persistent_session_queues_offline_messages(clients, version):
    t = topic_prefix() + "/offline"
    cid = uid("persist")

    # Start from a clean slate, then establish a persistent session.
    first = clients.new(version=version, client_id=cid, clean=True)
    first.connect()
    first.disconnect()
    c = _persistent(clients, version, cid).connect()
    assert c.session_present is False
    c.subscribe(t, 1)
    c.disconnect()

    pub = clients.connected(version=version)
    for i in range(3):
        pub.publish(t, f"offline-{i}".encode(), qos=1)

    c2 = _persistent(clients, version, cid).connect()
    assert c2.session_present is True
    got = [m.payload for m in c2.get_n(3)]
    assert got == [b"offline-0", b"offline-1", b"offline-2"]
    c2.disconnect()

    # Clean reconnect: no session, nothing queued.
    pub.publish(t, b"after", qos=1)
    c3 = clients.new(version=version, client_id=cid, clean=True).connect()
    assert c3.session_present is False
    c3.expect_none(0.5)
    c3.disconnect()


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_persistent_session_keeps_subscription_qos(clients, version):
    t = topic_prefix() + "/q"
    cid = uid("persistq")
    c = _persistent(clients, version, cid).connect()
    c.subscribe(t, 1)
    c.disconnect()
    pub = clients.connected(version=version)
    pub.publish(t, b"q2", qos=2)
    c2 = _persistent(clients, version, cid).connect()
    m = c2.get()
    assert (m.payload, m.qos) == (b"q2", 1)
    c2.disconnect()
    clients.new(version=version, client_id=cid, clean=True).connect().disconnect()


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_takeover(clients, version):
    cid = uid("takeover")
    t = topic_prefix() + "/to"
    a = clients.connected(version=version, client_id=cid)
    b = clients.connected(version=version, client_id=cid)
    a.wait_disconnected()
    assert b.disconnected.is_set() is False
    b.subscribe(t, 1)
    b.publish(t, b"still works", qos=1)
    assert b.get().payload == b"still works"
    assert not b.disconnected.is_set()


def test_takeover_v311_old_connection_closed(broker):
    cid = uid("takeover-raw")
    with mqttraw.RawClient(broker.host, broker.port) as a, mqttraw.RawClient(broker.host, broker.port) as b:
        a.connect(cid, version=V311)
        b.connect(cid, version=V311)
        a.expect_protocol_error(None)
        b.send(mqttraw.PINGREQ_PACKET)
        b.expect(mqttraw.PINGRESP)


@pytest.mark.portico_only
def test_takeover_v5_reason_0x8e(broker, clients):
    """The old 5.0 connection gets DISCONNECT 0x8E (Session taken over), then
    close; paho sees reason 0x8E too. (Mosquitto 2.0 just closes.)"""
    cid = uid("takeover-raw")
    with mqttraw.RawClient(broker.host, broker.port) as a, mqttraw.RawClient(broker.host, broker.port) as b:
        a.connect(cid, version=V5)
        b.connect(cid, version=V5)
        a.expect_protocol_error(0x8E)
        b.send(mqttraw.PINGREQ_PACKET)
        b.expect(mqttraw.PINGRESP)

    cid = uid("takeover-paho")
    pa = clients.connected(version=V5, client_id=cid)
    clients.connected(version=V5, client_id=cid)
    rc = pa.wait_disconnected()
    assert rc.value == 0x8E, f"expected Session taken over (0x8E), got {rc}"
