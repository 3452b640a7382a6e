"""9. Malformed and protocol-violating input, sent with raw sockets.

After every case a fresh normal client must still be able to connect,
subscribe and receive: the broker keeps serving.
"""

import pytest

import mqttraw
from clients import V311, V5, assert_broker_serves, uid
from mqttraw import RawClient, connect_packet, packet, publish_packet, subscribe_packet

PO = pytest.mark.portico_only

# (id, bytes builder(version), MQTT 5 DISCONNECT reason) -- sent after a successful CONNACK.
AFTER_CONNECT = [
    ("publish-topic-len-exceeds-remaining", lambda v: b"\x30\x05\x00\x10abc", 0x81),
    ("subscribe-flags-0x80", lambda v: subscribe_packet("a/b", 0, version=v, first_byte=0x80), 0x81),
    ("publish-topic-bad-utf8", lambda v: publish_packet(b"\xff\xfe", b"x", version=v), 0x81),
    ("publish-topic-nul", lambda v: publish_packet("a\x00b", b"x", version=v), 0x81),
    ("packet-type-0", lambda v: b"\x00\x00", 0x81),
    ("publish-topic-wildcard", lambda v: publish_packet("a/+/b", b"x", version=v), 0x90),
    ("remaining-length-5-bytes", lambda v: b"\x30\xff\xff\xff\xff\x7f", 0x81),
    ("second-connect", lambda v: connect_packet(uid("again"), version=v), 0x82),
]

# Cases where mosquitto 2.0.11 behaves differently from Portico's specification,
# so they are portico_only (the 3.1.1 variants still run against mosquitto).
MOSQUITTO_DIFFERS: set[tuple[str, int]] = {
    ("packet-type-0", V5),  # mosquitto: DISCONNECT 0x82 (Protocol Error) instead of 0x81
    ("publish-topic-wildcard", V5),  # mosquitto: DISCONNECT 0x82 instead of 0x90
    ("remaining-length-5-bytes", V5),  # mosquitto: closes without DISCONNECT
    ("second-connect", V5),  # mosquitto: closes without DISCONNECT
}


def _params():
    out = []
    for case_id, build, reason in AFTER_CONNECT:
        for v in (V311, V5):
            vid = "v311" if v == V311 else "v5"
            marks = [PO] if (case_id, v) in MOSQUITTO_DIFFERS else []
            out.append(pytest.param(build, v, reason if v == V5 else None, id=f"{case_id}-{vid}", marks=marks))
    return out


@pytest.mark.parametrize("build,version,reason", _params())
def test_protocol_error_after_connect(broker, build, version, reason):
    with RawClient(broker.host, broker.port) as c:
        c.connect(uid("bad"), version=version)
        c.send(build(version))
        c.expect_protocol_error(reason)
    assert_broker_serves(broker, version)


def test_auth_on_v311_closes(broker):
    with RawClient(broker.host, broker.port) as c:
        c.connect(uid("bad"), version=V311)
        c.send(b"\xf0\x00")
        c.expect_protocol_error(None)
    assert_broker_serves(broker, V311)


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_oversized_packet(broker_factory, version):
    b = broker_factory({"PORTICO_MQTT__MAX_PACKET_SIZE": "1024"})
    body = mqttraw.mqtt_str("big/topic")
    if version == V5:
        body += mqttraw.props()
    body += b"x" * (2000 - len(body))
    pkt = packet(0x30, body)
    assert len(body) == 2000
    with RawClient(b.host, b.port) as c:
        c.connect(uid("big"), version=version)
        c.send(pkt)
        c.expect_protocol_error(0x95 if version == V5 else None)
    assert_broker_serves(b, version)


def test_connect_protocol_level_6(broker):
    with RawClient(broker.host, broker.port) as c:
        c.send(connect_packet(uid("lvl6"), version=4, protocol_level=6))
        got = c.wait_closed()
        assert len(got) == 1 and got[0].first == 0x20 and got[0].body == b"\x00\x01", got
    assert_broker_serves(broker)


@pytest.mark.parametrize("first", [mqttraw.PINGREQ_PACKET, subscribe_packet("a", 0)], ids=["pingreq", "subscribe"])
def test_first_packet_not_connect(broker, first):
    with RawClient(broker.host, broker.port) as c:
        c.send(first)
        assert c.wait_closed() == []
    assert_broker_serves(broker)


@PO  # mosquitto 2.0 treats an invalid filter as a malformed packet and disconnects
@pytest.mark.parametrize("version,code", [(V311, 0x80), (V5, 0x8F)], ids=["v311", "v5"])
def test_invalid_subscription_filter(broker, version, code):
    with RawClient(broker.host, broker.port) as c:
        c.connect(uid("filt"), version=version)
        ack = c.subscribe("a/#/b", 1, packet_id=7)
        assert ack.body[:2] == b"\x00\x07"
        assert ack.body[-1] == code, f"SUBACK {ack!r}"
        # The connection stays up.
        c.send(mqttraw.PINGREQ_PACKET)
        c.expect(mqttraw.PINGRESP)
    assert_broker_serves(broker, version)


def test_v311_empty_client_id_persistent_rejected(broker):
    with RawClient(broker.host, broker.port) as c:
        c.send(connect_packet("", version=4, clean=False))
        got = c.wait_closed()
        assert len(got) == 1 and got[0].first == 0x20 and got[0].body == b"\x00\x02", got
    with RawClient(broker.host, broker.port) as c:
        ack = c.connect("", version=4, clean=True)
        assert ack.body == b"\x00\x00"
        c.send(mqttraw.PINGREQ_PACKET)
        c.expect(mqttraw.PINGRESP)
    assert_broker_serves(broker, V311)
