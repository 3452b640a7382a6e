"""4. Will messages."""

import time

import pytest

import mqttraw
from clients import V5, VERSION_IDS, VERSIONS, topic_prefix, uid


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_will_on_abrupt_close_paho(clients, version):
    wt = topic_prefix() + "/will"
    watcher = clients.connected(version=version)
    watcher.subscribe(wt, 1)
    c = clients.new(version=version).will(wt, b"gone", qos=1)
    c.connect()
    c.drop()
    m = watcher.get()
    assert (m.topic, m.payload, m.qos) == (wt, b"gone", 1)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_will_on_abrupt_close_raw(broker, clients, version):
    wt = topic_prefix() + "/will"
    watcher = clients.connected(version=version)
    watcher.subscribe(wt, 1)
    raw = mqttraw.RawClient(broker.host, broker.port)
    raw.connect(uid("raw"), version=version, will_topic=wt, will_payload=b"\x00raw will\xff", will_qos=1)
    raw.close()  # no DISCONNECT
    m = watcher.get()
    assert (m.topic, m.payload) == (wt, b"\x00raw will\xff")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_no_will_on_normal_disconnect(clients, version):
    wt = topic_prefix() + "/will"
    watcher = clients.connected(version=version)
    watcher.subscribe(wt, 1)
    c = clients.new(version=version).will(wt, b"should not appear", qos=1)
    c.connect()
    c.disconnect()
    watcher.expect_none(0.7)


def test_will_on_v5_disconnect_with_will_0x04(clients):
    wt = topic_prefix() + "/will"
    watcher = clients.connected(version=V5)
    watcher.subscribe(wt, 1)
    c = clients.new(version=V5).will(wt, b"disconnect with will", qos=1)
    c.connect()
    c.disconnect(reason_code=0x04)
    m = watcher.get()
    assert m.payload == b"disconnect with will"


def _keepalive_expiry(broker, clients, version, max_seconds):
    wt = topic_prefix() + "/will"
    watcher = clients.connected(version=version)
    watcher.subscribe(wt, 1)
    with mqttraw.RawClient(broker.host, broker.port) as raw:
        raw.connect(uid("ka"), version=version, keepalive=1, will_topic=wt, will_payload=b"timeout", will_qos=1)
        t0 = time.monotonic()
        got = raw.wait_closed(timeout=max_seconds + 1.0)
        elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed <= max_seconds, f"closed after {elapsed:.2f}s"
    if version == V5:
        # A 5.0 server may send DISCONNECT 0x8D (Keep Alive timeout) before closing.
        assert all(p.type == mqttraw.DISCONNECT and p.body[:1] in (b"", b"\x8d") for p in got), got
    else:
        assert got == []
    m = watcher.get(timeout=3.0)
    assert m.payload == b"timeout"


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_keepalive_expiry_closes_and_publishes_will(broker, clients, version):
    """keepalive=1 then silence: the broker closes the connection (never
    before the keepalive has passed) and publishes the will."""
    _keepalive_expiry(broker, clients, version, max_seconds=10.0)


@pytest.mark.portico_only
@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_keepalive_expiry_timing(broker, clients, version):
    """Portico closes after 1.5x keepalive: ~1.5-2.5 s for keepalive=1
    (bounds 1.0-3.0 s for timer granularity). Mosquitto 2.0 takes ~4 s."""
    _keepalive_expiry(broker, clients, version, max_seconds=3.0)
