"""MQTT 5 features: topic aliases, subscription identifiers and options,
message expiry, will delay, request/response properties, CONNACK
properties, packet size and flow control, session expiry."""

import time

import pytest

import mqttraw
from clients import topic_prefix, uid
from v5 import MAX_PACKET_SIZE, RECEIVE_MAX, TOPIC_ALIAS, TOPIC_ALIAS_MAX, Raw5, ack5, publish5

PO = pytest.mark.portico_only


def _sleep_until(t: float) -> None:
    """Expiry / delay tests must let broker-side time pass: sleep only what is left."""
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


# -- 1. topic alias, client -> server ---------------------------------------------------

def test_topic_alias_client_to_server(broker, clients5):
    t = topic_prefix() + "/alias/c2s"
    sub = clients5.connected()
    sub.subscribe5(t, 1)
    with Raw5(broker) as raw:
        p = raw.connect5(uid("alias"))
        assert p.get(TOPIC_ALIAS_MAX, [0])[0] >= 1, f"broker announces no Topic Alias Maximum: {p}"
        raw.send(publish5(t, b"first", 1, packet_id=1, properties=[(TOPIC_ALIAS, 1)]))
        assert raw.expect(mqttraw.PUBACK).body[:2] == b"\x00\x01"
        raw.send(publish5("", b"second", 1, packet_id=2, properties=[(TOPIC_ALIAS, 1)]))
        assert raw.expect(mqttraw.PUBACK).body[:2] == b"\x00\x02"
    got = [(m.topic, m.payload) for m in sub.get_n(2)]
    assert got == [(t, b"first"), (t, b"second")]


def test_topic_alias_zero_disconnects(broker):
    with Raw5(broker) as raw:
        raw.connect5(uid("alias0"))
        raw.send(publish5(topic_prefix() + "/a0", b"x", 0, properties=[(TOPIC_ALIAS, 0)]))
        got = raw.wait_closed()
    # Any error DISCONNECT (mosquitto 2.0.11: 0x81); Portico's exact code is checked below.
    assert got and got[-1].type == mqttraw.DISCONNECT and got[-1].body[:1] >= b"\x80", got


@PO  # mosquitto 2.0.11 sends 0x81 (Malformed Packet)
def test_topic_alias_zero_reason_0x94(broker):
    with Raw5(broker) as raw:
        raw.connect5(uid("alias0"))
        raw.send(publish5(topic_prefix() + "/a0", b"x", 0, properties=[(TOPIC_ALIAS, 0)]))
        raw.expect_protocol_error(0x94)


def test_topic_alias_above_maximum_disconnects(broker_factory):
    b = broker_factory({"PORTICO_MQTT__MAX_TOPIC_ALIAS": "2"})
    with Raw5(b) as raw:
        p = raw.connect5(uid("alias3"))
        assert p.get(TOPIC_ALIAS_MAX) == [2], f"CONNACK properties {p}"
        # Alias 2 is fine, alias 3 exceeds the announced maximum.
        raw.send(publish5("a/b", b"ok", 1, packet_id=1, properties=[(TOPIC_ALIAS, 2)]))
        raw.expect(mqttraw.PUBACK)
        raw.send(publish5("a/b", b"x", 0, properties=[(TOPIC_ALIAS, 3)]))
        raw.expect_protocol_error(0x94)


# -- 2. topic alias, server -> client -------------------------------------------------------

@PO  # mosquitto never assigns topic aliases to outgoing messages
def test_topic_alias_server_to_client(broker, clients5):
    t = topic_prefix() + "/a/rather/long/topic/name/that/is/worth/an/alias/" + "x" * 40
    pub = clients5.connected()
    with Raw5(broker) as raw:
        raw.connect5(uid("s2c"), properties=[(TOPIC_ALIAS_MAX, 5)])
        raw.subscribe5(t, 0)
        for i in range(3):
            pub.publish5(t, f"m{i}".encode(), qos=1)
        first, *rest = [raw.next_publish() for _ in range(3)]
    assert first.topic == t and first.payload == b"m0"
    assert TOPIC_ALIAS in first.props, f"first publish carries no Topic Alias: {first}"
    (alias,) = first.props[TOPIC_ALIAS]
    assert 1 <= alias <= 5
    for i, p in enumerate(rest, 1):
        assert (p.topic, p.payload, p.props.get(TOPIC_ALIAS)) == ("", f"m{i}".encode(), [alias]), p


def test_no_topic_alias_without_maximum(broker, clients5):
    t = topic_prefix() + "/a/rather/long/topic/name/without/alias/" + "y" * 40
    pub = clients5.connected()
    with Raw5(broker) as raw:
        raw.connect5(uid("noalias"))
        raw.subscribe5(t, 0)
        for i in range(3):
            pub.publish5(t, f"m{i}".encode(), qos=1)
        got = [raw.next_publish() for _ in range(3)]
    for i, p in enumerate(got):
        assert (p.topic, p.payload) == (t, f"m{i}".encode())
        assert TOPIC_ALIAS not in p.props, p


# -- 3. subscription identifiers --------------------------------------------------------------

def _sub_ids(msgs):
    ids = []
    for m in msgs:
        ids += m.prop("SubscriptionIdentifier", []) or []
    return sorted(ids)


def test_subscription_identifiers(clients5):
    p = topic_prefix()
    sub = clients5.connected()
    sub.subscribe5(p + "/#", 1, sub_id=1)
    sub.subscribe5(p + "/a", 1, sub_id=2)
    pub = clients5.connected()
    pub.publish5(p + "/b", b"one", qos=1)
    m = sub.get()
    assert m.payload == b"one" and _sub_ids([m]) == [1]
    pub.publish5(p + "/a", b"both", qos=1)
    msgs = sub.drain(0.5)
    assert msgs and all(m.payload == b"both" for m in msgs), msgs
    assert set(_sub_ids(msgs)) >= {1, 2}, [m.props for m in msgs]


@PO  # mosquitto 2.0 sends one copy per matching subscription
def test_subscription_identifiers_single_delivery(clients5):
    p = topic_prefix()
    sub = clients5.connected()
    sub.subscribe5(p + "/#", 1, sub_id=1)
    sub.subscribe5(p + "/a", 1, sub_id=2)
    pub = clients5.connected()
    pub.publish5(p + "/a", b"both", qos=1)
    msgs = sub.drain(0.5)
    assert len(msgs) == 1, f"expected one delivery, got {len(msgs)}: {[m.props for m in msgs]}"
    assert _sub_ids(msgs) == [1, 2]


# -- 4. No Local -------------------------------------------------------------------------------------

def test_no_local(clients5):
    t = topic_prefix() + "/nl"
    c = clients5.connected()
    c.subscribe5(t, 1, no_local=True)
    c.publish5(t, b"own", qos=1)
    other = clients5.connected()
    other.publish5(t, b"other", qos=1)
    m = c.get()
    assert m.payload == b"other"
    c.expect_none(0.3)


# -- 5. Retain As Published -----------------------------------------------------------------------------

def test_retain_as_published(clients5):
    t = topic_prefix() + "/rap"
    rap1 = clients5.connected()
    rap1.subscribe5(t, 1, rap=True)
    rap0 = clients5.connected()
    rap0.subscribe5(t, 1, rap=False)
    pub = clients5.connected()
    pub.publish5(t, b"r", qos=1, retain=True)
    m1, m0 = rap1.get(), rap0.get()
    assert (m1.payload, m1.retain) == (b"r", True)
    assert (m0.payload, m0.retain) == (b"r", False)
    pub.publish5(t, b"", qos=1, retain=True)  # clear


# -- 6. Retain Handling ---------------------------------------------------------------------------------

@pytest.fixture
def retained_topic(clients5):
    t = topic_prefix() + "/rh"
    pub = clients5.connected()
    pub.publish5(t, b"kept", qos=1, retain=True)
    yield t
    pub.publish5(t, b"", qos=1, retain=True)


def test_retain_handling_0_every_subscribe(clients5, retained_topic):
    c = clients5.connected()
    c.subscribe5(retained_topic, 1, rh=0)
    m = c.get()
    assert (m.payload, m.retain) == (b"kept", True)
    c.subscribe5(retained_topic, 1, rh=0)
    m = c.get()
    assert (m.payload, m.retain) == (b"kept", True)


def test_retain_handling_1_only_new_subscription(clients5, retained_topic):
    c = clients5.connected()
    c.subscribe5(retained_topic, 1, rh=1)
    m = c.get()
    assert (m.payload, m.retain) == (b"kept", True)
    c.subscribe5(retained_topic, 1, rh=1)
    c.expect_none(0.5)


def test_retain_handling_2_never(clients5, retained_topic):
    c = clients5.connected()
    c.subscribe5(retained_topic, 1, rh=2)
    c.expect_none(0.5)
    # Live messages still flow.
    clients5.connected().publish5(retained_topic, b"live", qos=1)
    assert c.get().payload == b"live"


# -- 7. message expiry ----------------------------------------------------------------------------------

def test_message_expiry_offline_session(clients5):
    t = topic_prefix() + "/exp"
    cid = uid("exp")
    s = clients5.connected(client_id=cid, session_expiry=300)
    s.subscribe5(t, 1)
    s.disconnect()
    pub = clients5.connected()
    t0 = time.monotonic()
    pub.publish5(t, b"short", qos=1, MessageExpiryInterval=1)
    pub.publish5(t, b"long", qos=1, MessageExpiryInterval=60)
    _sleep_until(t0 + 2.5)
    s2 = clients5.connected(client_id=cid, clean=False, session_expiry=300)
    assert s2.session_present
    m = s2.get()
    assert m.payload == b"long", f"expired message delivered: {m}"
    mei = m.prop("MessageExpiryInterval")
    assert mei is not None and 55 <= mei <= 60, f"remaining expiry {mei}"
    s2.expect_none(0.3)


def test_message_expiry_retained(clients5):
    t = topic_prefix() + "/exp-ret"
    pub = clients5.connected()
    t0 = time.monotonic()
    pub.publish5(t, b"brief", qos=1, retain=True, MessageExpiryInterval=1)
    early = clients5.connected()
    early.subscribe5(t, 1)
    assert early.get().payload == b"brief"
    _sleep_until(t0 + 2.5)
    late = clients5.connected()
    late.subscribe5(t, 1)
    late.expect_none(0.5)


# -- 8. will delay ----------------------------------------------------------------------------------------

def test_will_delay(clients5):
    wt = topic_prefix() + "/will"
    watcher = clients5.connected()
    watcher.subscribe5(wt, 1)
    c = clients5.new(session_expiry=300).will5(wt, b"late", qos=1, WillDelayInterval=2)
    c.connect()
    c.drop()
    t0 = time.monotonic()
    m = watcher.get(timeout=6.0)
    elapsed = time.monotonic() - t0
    assert m.payload == b"late"
    assert 1.5 <= elapsed <= 4.0, f"will after {elapsed:.2f}s (delay 2s)"


def test_will_delay_cancelled_by_reconnect(clients5):
    wt = topic_prefix() + "/will"
    cid = uid("wd")
    watcher = clients5.connected()
    watcher.subscribe5(wt, 1)
    c = clients5.new(client_id=cid, session_expiry=300).will5(wt, b"never", qos=1, WillDelayInterval=2)
    c.connect()
    c.drop()
    t0 = time.monotonic()
    back = clients5.connected(client_id=cid, clean=False, session_expiry=300)
    assert back.session_present
    watcher.expect_none(max(0.1, t0 + 3.0 - time.monotonic()))


def test_will_delay_longer_than_session(clients5):
    wt = topic_prefix() + "/will"
    watcher = clients5.connected()
    watcher.subscribe5(wt, 1)
    c = clients5.new(session_expiry=1).will5(wt, b"session end", qos=1, WillDelayInterval=10)
    c.connect()
    c.drop()
    t0 = time.monotonic()
    m = watcher.get(timeout=3.5)
    elapsed = time.monotonic() - t0
    assert m.payload == b"session end"
    assert 0.5 <= elapsed <= 3.0, f"will after {elapsed:.2f}s (session expiry 1s)"


# -- 9. request / response properties -------------------------------------------------------------------

def test_request_response_properties_pass_through(clients5):
    t = topic_prefix() + "/req"
    sub = clients5.connected()
    sub.subscribe5(t, 1)
    pub = clients5.connected()
    user = [("k", "1"), ("a", "x"), ("k", "2"), ("k", "1")]
    pub.publish5(t, b'{"q":1}', qos=1, ResponseTopic=t + "/resp", CorrelationData=b"\x00corr\xff",
                 UserProperty=user, PayloadFormatIndicator=1, ContentType="application/json")
    m = sub.get()
    assert m.payload == b'{"q":1}'
    assert m.prop("ResponseTopic") == t + "/resp"
    assert m.prop("CorrelationData") == b"\x00corr\xff"
    assert m.prop("UserProperty") == user
    assert m.prop("PayloadFormatIndicator") == 1
    assert m.prop("ContentType") == "application/json"


@PO
def test_response_information(broker_factory, clients5_for):
    b = broker_factory({"PORTICO_MQTT__RESPONSE_INFORMATION": "resp/"})
    pool = clients5_for(b)
    asked = pool.connected(connect_props={"RequestResponseInformation": 1})
    assert asked.connack_prop("ResponseInformation") == "resp/"
    not_asked = pool.connected()
    assert not_asked.connack_prop("ResponseInformation") is None


# -- 10. assigned client identifier, server keep alive ------------------------------------------------------

def test_assigned_client_identifier(clients5):
    c = clients5.connected(client_id="")
    assigned = c.connack_prop("AssignedClientIdentifier")
    assert isinstance(assigned, str) and assigned, f"CONNACK properties {c.connack_props}"
    other = clients5.connected(client_id="")
    assert other.connack_prop("AssignedClientIdentifier") != assigned


# mosquitto maps this onto max_keepalive, which it refuses below 10.
@pytest.mark.parametrize("seconds", [pytest.param(5, marks=PO), 30])
def test_server_keep_alive(broker_factory, clients5_for, seconds):
    b = broker_factory({"PORTICO_MQTT__SERVER_KEEPALIVE": str(seconds)})
    c = clients5_for(b).connected(keepalive=60)
    assert c.connack_prop("ServerKeepAlive") == seconds, f"CONNACK properties {c.connack_props}"


# -- 11. maximum packet size ---------------------------------------------------------------------------------

def test_maximum_packet_size_of_client(clients5):
    t = topic_prefix() + "/mps"
    sub = clients5.connected(connect_props={"MaximumPacketSize": 100})
    sub.subscribe5(t, 1)
    pub = clients5.connected()
    pub.publish5(t, b"B" * 500, qos=1)
    pub.publish5(t, b"small", qos=1)
    m = sub.get()
    assert m.payload == b"small", f"got {len(m.payload)} bytes"
    sub.expect_none(0.3)


def test_maximum_packet_size_raw(broker, clients5):
    """Same on the wire: the oversized message is dropped, not truncated or fragmented."""
    t = topic_prefix() + "/mps-raw"
    pub = clients5.connected()
    with Raw5(broker) as raw:
        raw.connect5(uid("mps"), properties=[(MAX_PACKET_SIZE, 100)])
        raw.subscribe5(t, 0)
        pub.publish5(t, b"B" * 500, qos=1)
        pub.publish5(t, b"small", qos=1)
        p = raw.next_publish()
        assert p.payload == b"small"


# -- 12. receive maximum / flow control ---------------------------------------------------------------------

@PO  # mosquitto has no max_awaiting_rel; Portico announces it as Receive Maximum
def test_receive_maximum_exceeded_by_client(broker_factory):
    b = broker_factory({"PORTICO_MQTT__MAX_AWAITING_REL": "2"})
    with Raw5(b) as raw:
        p = raw.connect5(uid("rm"))
        assert p.get(RECEIVE_MAX) == [2], f"CONNACK properties {p}"
        for pid in (1, 2, 3):
            raw.send(publish5("rm/t", b"q2", 2, packet_id=pid))
        raw.expect_protocol_error(0x93)


def test_broker_respects_client_receive_maximum(broker, clients5):
    t = topic_prefix() + "/rm"
    pub = clients5.connected()
    with Raw5(broker) as raw:
        raw.connect5(uid("rm"), properties=[(RECEIVE_MAX, 2)])
        raw.subscribe5(t, 1)
        for i in range(5):
            pub.publish5(t, f"m{i}".encode(), qos=1)
        inflight = raw.publishes(quiet=0.5)
        assert [p.payload for p in inflight] == [b"m0", b"m1"], f"{len(inflight)} in flight, receive maximum 2"
        got = list(inflight)
        while len(got) < 5:
            raw.send(ack5(0x40, inflight.pop(0).packet_id))
            nxt = raw.next_publish()
            inflight.append(nxt)
            got.append(nxt)
            assert len(inflight) <= 2
        for p in inflight:
            raw.send(ack5(0x40, p.packet_id))
        assert raw.publishes(quiet=0.3) == []
    assert [p.payload for p in got] == [f"m{i}".encode() for i in range(5)]


# -- 13. session expiry 0xFFFFFFFF ---------------------------------------------------------------------------

def test_session_expiry_max(clients5):
    t = topic_prefix() + "/sexp"
    cid = uid("forever")
    c = clients5.connected(client_id=cid, session_expiry=0xFFFFFFFF)
    c.subscribe5(t, 1)
    c.disconnect()
    clients5.connected().publish5(t, b"kept", qos=1)
    c2 = clients5.connected(client_id=cid, clean=False, session_expiry=0xFFFFFFFF)
    assert c2.session_present
    assert c2.get().payload == b"kept"
    c2.disconnect()
    # Leave no session behind.
    clients5.connected(client_id=cid, clean=True, session_expiry=0).disconnect()
