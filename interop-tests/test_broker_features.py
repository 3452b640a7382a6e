"""EMQX broker features Portico reproduces: delayed publish, topic rewrite,
auto-subscribe, $SYS topics and retainer limits. All Portico-specific."""

import json
import queue
import time

import pytest

import mqttraw
from clients import topic_prefix, uid
from v5 import Raw5, publish5

pytestmark = pytest.mark.portico_only


def _sleep_until(t: float) -> None:
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


# -- delayed publish ----------------------------------------------------------------------------

def test_delayed_publish(clients5):
    p = topic_prefix()
    sub = clients5.connected()
    sub.subscribe5(p + "/x", 1)
    pub = clients5.connected()
    t0 = time.monotonic()
    pub.publish5(f"$delayed/2/{p}/x", b"later", qos=1)
    m = sub.get(timeout=5.0)
    elapsed = time.monotonic() - t0
    assert (m.topic, m.payload) == (p + "/x", b"later")
    assert 1.5 <= elapsed <= 4.0, f"delivered after {elapsed:.2f}s (delay 2s)"


def test_delayed_publish_not_on_literal_topic(clients5):
    """The `$delayed/...` topic itself never carries the message."""
    p = topic_prefix()
    sub = clients5.connected()
    sub.subscribe5("$delayed/#", 1)
    clients5.connected().publish5(f"$delayed/1/{p}/y", b"hidden", qos=1)
    sub.expect_none(0.5)


def test_delayed_publish_bad_interval_refused(broker):
    with Raw5(broker) as raw:
        raw.connect5(uid("delay"))
        raw.send(publish5(f"$delayed/abc/{topic_prefix()}/x", b"x", 1, packet_id=9))
        ack = raw.expect(mqttraw.PUBACK)
    assert ack.body[:2] == b"\x00\x09"
    assert len(ack.body) >= 3 and ack.body[2] >= 0x80, f"expected an error reason code, got {ack!r}"


# -- topic rewrite ------------------------------------------------------------------------------------

REWRITE_ENV = {
    "PORTICO_REWRITE__1__ACTION": "all",
    "PORTICO_REWRITE__1__SOURCE_TOPIC": "x/#",
    "PORTICO_REWRITE__1__RE": "^x/y/(.+)$",
    "PORTICO_REWRITE__1__DEST_TOPIC": "z/y/$1",
}


def test_rewrite_publish(broker_factory, clients5_for):
    pool = clients5_for(broker_factory(REWRITE_ENV))
    sub = pool.connected()
    sub.subscribe5("z/y/1", 1)
    pool.connected().publish5("x/y/1", b"rewritten", qos=1)
    m = sub.get()
    assert (m.topic, m.payload) == ("z/y/1", b"rewritten")


def test_rewrite_subscribe(broker_factory, clients5_for):
    pool = clients5_for(broker_factory(REWRITE_ENV))
    sub = pool.connected()
    sub.subscribe5("x/y/2", 1)
    pool.connected().publish5("z/y/2", b"to rewritten filter", qos=1)
    m = sub.get()
    assert (m.topic, m.payload) == ("z/y/2", b"to rewritten filter")


# -- auto-subscribe ---------------------------------------------------------------------------------------

def test_auto_subscribe(broker_factory, clients5_for):
    pool = clients5_for(broker_factory({
        "PORTICO_AUTO_SUBSCRIBE__TOPICS__1__TOPIC": "c/${clientid}",
        "PORTICO_AUTO_SUBSCRIBE__TOPICS__1__QOS": "1",
    }))
    c = pool.connected(client_id="auto1")
    pool.connected().publish5("c/auto1", b"for auto1", qos=1)
    pool.connected().publish5("c/other", b"not for auto1", qos=1)
    m = c.get()
    assert (m.topic, m.payload, m.qos) == ("c/auto1", b"for auto1", 1)
    c.expect_none(0.3)


# -- $SYS -------------------------------------------------------------------------------------------------

# EMQX publishes version/stats/metrics every sys_msg_interval and uptime/datetime every
# sys_heartbeat_interval (default 30 s): shorten both.
SYS_ENV = {
    "PORTICO_SYS_TOPICS__SYS_MSG_INTERVAL": "1s",
    "PORTICO_SYS_TOPICS__SYS_HEARTBEAT_INTERVAL": "1s",
}


def test_sys_version(broker_factory, clients5_for):
    pool = clients5_for(broker_factory(SYS_ENV))
    c = pool.connected()
    c.subscribe5("$SYS/brokers/+/version", 0)
    m = c.get(timeout=3.0)
    assert m.topic.startswith("$SYS/brokers/") and m.topic.endswith("/version")
    assert m.payload and m.payload.decode().strip(), m


def test_sys_periodic_topics(broker_factory, clients5_for):
    pool = clients5_for(broker_factory(SYS_ENV))
    c = pool.connected()
    wanted = ["uptime", "datetime", "stats/connections/count"]
    for w in wanted:
        c.subscribe5(f"$SYS/brokers/+/{w}", 0)
    t0 = time.monotonic()
    seen = {}
    while len(seen) < len(wanted):
        left = t0 + 3.0 - time.monotonic()
        try:
            m = c.messages.get(timeout=max(0.01, left))
        except queue.Empty:
            break
        for w in wanted:
            if m.topic.endswith("/" + w):
                seen[w] = m.payload
    assert set(seen) == set(wanted), f"within ~2.5s only {sorted(seen)} arrived"
    assert int(seen["stats/connections/count"]) >= 1
    assert seen["uptime"] and seen["datetime"]


def _find(c, suffix: str, cid: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            m = c.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no $SYS .../clients/{cid}/{suffix} within {timeout}s") from None
        if m.topic.endswith(f"/clients/{cid}/{suffix}"):
            return json.loads(m.payload)


def test_sys_client_connected_disconnected(broker_factory, clients5_for):
    pool = clients5_for(broker_factory(SYS_ENV))
    watcher = pool.connected()
    watcher.subscribe5("$SYS/brokers/+/clients/+/connected", 0)
    watcher.subscribe5("$SYS/brokers/+/clients/+/disconnected", 0)
    cid = uid("sysc")
    c = pool.connected(client_id=cid, username="alice", keepalive=30)
    ev = _find(watcher, "connected", cid)
    for key in ("clientid", "username", "ipaddress", "proto_ver", "keepalive", "clean_start", "connected_at"):
        assert key in ev, f"{key} missing in {ev}"
    assert ev["clientid"] == cid and ev["username"] == "alice"
    assert ev["ipaddress"] == "127.0.0.1" and ev["proto_ver"] == 5 and ev["keepalive"] == 30
    assert ev["clean_start"] is True
    c.disconnect()
    ev = _find(watcher, "disconnected", cid)
    assert ev.get("clientid") == cid and "reason" in ev, ev


# -- retainer limits ----------------------------------------------------------------------------------------

def test_retainer_max_payload_size(broker_factory, clients5_for):
    pool = clients5_for(broker_factory({"PORTICO_RETAINER__MAX_PAYLOAD_SIZE": "10"}))
    p = topic_prefix()
    live = pool.connected()
    live.subscribe5(p + "/#", 1)
    pub = pool.connected()
    pub.publish5(p + "/big", b"B" * 100, qos=1, retain=True)
    pub.publish5(p + "/small", b"s", qos=1, retain=True)
    assert [m.payload for m in live.get_n(2)] == [b"B" * 100, b"s"]  # still forwarded live
    late = pool.connected()
    late.subscribe5(p + "/#", 1)
    m = late.get()
    assert (m.topic, m.payload, m.retain) == (p + "/small", b"s", True)
    late.expect_none(0.5)


def test_retainer_max_retained_messages(broker_factory, clients5_for):
    pool = clients5_for(broker_factory({"PORTICO_RETAINER__MAX_RETAINED_MESSAGES": "2"}))
    p = topic_prefix()
    pub = pool.connected()
    for name in ("a", "b", "c"):
        pub.publish5(f"{p}/{name}", name.encode(), qos=1, retain=True)
    late = pool.connected()
    late.subscribe5(p + "/#", 1)
    got = sorted(m.payload for m in late.get_n(2))
    assert got == [b"a", b"b"]
    late.expect_none(0.5)


def test_retainer_msg_expiry_interval(broker_factory, clients5_for):
    pool = clients5_for(broker_factory({"PORTICO_RETAINER__MSG_EXPIRY_INTERVAL": "1s"}))
    t = topic_prefix() + "/r"
    pub = pool.connected()
    t0 = time.monotonic()
    pub.publish5(t, b"short-lived", qos=1, retain=True)
    early = pool.connected()
    early.subscribe5(t, 1)
    assert early.get().payload == b"short-lived"
    _sleep_until(t0 + 2.5)
    late = pool.connected()
    late.subscribe5(t, 1)
    late.expect_none(0.5)
