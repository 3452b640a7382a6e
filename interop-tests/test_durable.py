"""Durable state: persistent sessions, retained and delayed messages across restarts.

Portico keeps this state in `<node.data_dir>/portico.redb` (`[durable_sessions] mode`,
default "sync": QoS 1/2 PUBLISH, SUBSCRIBE and a persistent session's CONNECT are
acknowledged only once on disk). Each test has its own broker and data directory;
`b.restart()` is a clean stop (SIGTERM, exit code 0), `b.kill()` then `b.start()` is a
crash (SIGKILL) and a start on the same data directory. Mosquitto's reference config
runs with persistence off, hence `portico_only` throughout.
"""

from __future__ import annotations

import queue
import time

import pytest

from clients import V311, V5, Client, MosquittoSub, mosquitto_pub, uid
from conftest import BROKER_KIND, Broker, BrokerError
from v5 import Client5

pytestmark = pytest.mark.portico_only

T = 10.0  # generous per-message timeout: the machine is shared
N = 50


# -- helpers ---------------------------------------------------------------------------

def crash_and_start(b: Broker) -> None:
    """SIGKILL the broker, then start it again on the same port and data directory."""
    b.kill()
    b.start()


def v311(pool, cid: str) -> Client:
    """A 3.1.1 clean_session=0 client (not yet connected)."""
    return pool.new(version=V311, client_id=cid, clean=False)


def v5(pool, cid: str, expiry: int = 3600) -> Client5:
    """An MQTT 5 clean_start=0 client with a Session Expiry Interval (not yet connected)."""
    return pool.new(client_id=cid, clean=False, session_expiry=expiry)


def publish_all(pub: Client, topic: str, payloads: list[bytes], qos: int) -> None:
    """Publish every payload pipelined, then wait until each one is acknowledged."""
    infos = [pub.c.publish(topic, p, qos=qos) for p in payloads]
    for i, info in enumerate(infos):
        info.wait_for_publish(T)
        assert info.is_published(), f"publish #{i} (qos {qos}) not acknowledged within {T}s"


def receive_set(c: Client, expected: set[bytes], timeout: float = T) -> list:
    """Messages until every expected payload has arrived (duplicates kept in the list)."""
    got = []
    while not expected <= {m.payload for m in got}:
        try:
            got.append(c.messages.get(timeout=timeout))
        except queue.Empty:
            missing = sorted(expected - {m.payload for m in got})
            raise AssertionError(f"{c.client_id}: {len(missing)} of {len(expected)} missing: {missing[:10]}") \
                from None
    return got


def drain(c: Client, quiet: float = 1.0) -> list:
    """Everything that arrives until `quiet` seconds pass without a message."""
    out = []
    while True:
        try:
            out.append(c.messages.get(timeout=quiet))
        except queue.Empty:
            return out


def offline_subscriber_311(pool, topic_filter: str, qos: int) -> str:
    """Create a 3.1.1 persistent session subscribed to `topic_filter`, leave it offline."""
    cid = uid("dur311")
    c = v311(pool, cid).connect()
    assert c.session_present is False
    c.subscribe(topic_filter, qos)
    c.disconnect()
    return cid


# -- 1. queued messages survive a crash --------------------------------------------------

@pytest.mark.parametrize("qos", [1, 2])
def test_queued_messages_survive_sigkill_v311(broker_factory, clients_for, qos):
    """50 acknowledged QoS 1/2 messages queued for an offline 3.1.1 session survive kill -9."""
    b = broker_factory()
    pool = clients_for(b)
    cid = offline_subscriber_311(pool, "t/#", qos)
    payloads = [f"m{i:02d}".encode() for i in range(N)]
    publish_all(pool.connected(version=V311), "t/x", payloads, qos)

    crash_and_start(b)

    sub = v311(pool, cid).connect()
    assert sub.session_present is True, "the persistent session did not survive kill -9"
    got = receive_set(sub, set(payloads))
    got += drain(sub)
    got_payloads = [m.payload for m in got]
    assert set(got_payloads) == set(payloads)
    assert {m.qos for m in got} == {qos}
    if qos == 2:
        assert len(got_payloads) == len(set(got_payloads)), f"QoS 2 duplicates: {sorted(got_payloads)}"


# -- 2. subscriptions and their options survive a clean restart ------------------------------

def test_subscriptions_and_options_survive_restart_v5(broker_factory, clients5_for):
    """MQTT 5 subscriptions (QoS, No Local, Retain As Published, Subscription Identifier)
    come back after SIGTERM + start, without subscribing again."""
    b = broker_factory()
    pool = clients5_for(b)
    cid = uid("dur5")
    s = v5(pool, cid).connect()
    assert s.session_present is False
    s.subscribe5("t/#", 1, sub_id=7)
    s.subscribe5("own/t", 1, no_local=True)
    s.subscribe5("rap/#", 1, rap=True, sub_id=9)
    s.disconnect()
    pub = pool.connected()
    pub.publish5("t/queued", b"queued", qos=1)

    b.restart()

    s2 = v5(pool, cid).connect()
    assert s2.session_present is True, "the persistent session did not survive a clean restart"
    m = s2.get(T)
    assert (m.topic, m.payload, m.qos) == ("t/queued", b"queued", 1)
    assert m.prop("SubscriptionIdentifier") == [7]

    pub = pool.connected()
    pub.publish5("t/new", b"new", qos=2)  # capped at the subscription's QoS 1
    m = s2.get(T)
    assert (m.topic, m.payload, m.qos) == ("t/new", b"new", 1)
    assert m.prop("SubscriptionIdentifier") == [7]

    pub.publish5("rap/x", b"kept", qos=1, retain=True)
    m = s2.get(T)
    assert (m.topic, m.payload, m.retain) == ("rap/x", b"kept", True), "Retain As Published was lost"
    assert m.prop("SubscriptionIdentifier") == [9]
    pub.publish5("rap/x", b"", qos=1, retain=True)
    assert s2.get(T).payload == b""

    watcher = pool.connected()
    watcher.subscribe5("own/t", 1)
    s2.publish5("own/t", b"mine", qos=1)
    assert watcher.get(T).payload == b"mine"
    s2.expect_none(1.0)  # No Local: its own publish is not sent back


# -- 3. retained messages survive a crash ----------------------------------------------

def test_retained_set_and_clear_survive_sigkill(broker_factory, clients_for):
    """A retained message (mosquitto_pub -r -q 1) survives kill -9; so does clearing one."""
    b = broker_factory()
    mosquitto_pub(b, "r/keep", b"retained-1", qos=1, retain=True)
    mosquitto_pub(b, "r/gone", b"old", qos=1, retain=True)
    mosquitto_pub(b, "r/gone", b"", qos=1, retain=True)  # clear

    crash_and_start(b)

    assert MosquittoSub(b, "r/keep", 1, qos=1).result(timeout=2 * T) == [(1, True, b"retained-1")]
    s = clients_for(b).connected(version=V311)
    s.subscribe("r/#", 1)
    m = s.get(T)
    assert (m.topic, m.payload, m.retain) == ("r/keep", b"retained-1", True)
    s.expect_none(1.0)  # nothing for r/gone: the clear survived


# -- 4. delayed publish survives a crash -------------------------------------------------

def test_delayed_publish_survives_sigkill(broker_factory, clients_for):
    """`$delayed/3/d/x` acknowledged, kill -9 at once: after restart it is delivered, once,
    about 3 s after the original publish."""
    b = broker_factory()
    pool = clients_for(b)
    pub = pool.connected(version=V5)
    t0 = time.monotonic()
    pub.publish("$delayed/3/d/x", b"later", qos=1, timeout=T)
    crash_and_start(b)
    assert time.monotonic() - t0 < 2.5, "restart too slow to observe the delayed message live"

    s = pool.connected(version=V5)
    s.subscribe("d/x", 1)
    m = s.get(timeout=8.0)
    elapsed = time.monotonic() - t0
    assert (m.topic, m.payload) == ("d/x", b"later")
    assert 2.5 <= elapsed <= 6.5, f"delivered {elapsed:.2f}s after the publish (delay 3s)"
    assert drain(s, 1.5) == [], "the delayed message was delivered more than once"


# -- 5. session expiry while the broker is down --------------------------------------------

def test_session_expires_while_broker_is_down(broker_factory, clients5_for):
    """A session with expiry 2 s is gone after a 3 s outage; one with 3600 s is not."""
    b = broker_factory()
    pool = clients5_for(b)
    short, long_ = uid("exp2"), uid("exp3600")
    for cid, expiry in ((short, 2), (long_, 3600)):
        c = v5(pool, cid, expiry).connect()
        c.subscribe5("e/t", 1)
        c.disconnect()

    b.stop()
    time.sleep(3.0)  # the broker is down: nothing to wait on but time
    b.start()

    assert v5(pool, short, 2).connect().session_present is False, "expired while down, yet restored"
    assert v5(pool, long_, 3600).connect().session_present is True


# -- 6. wills of persistent sessions across a crash -------------------------------------------

def test_will_of_persistent_session_published_after_crash(broker_factory, clients5_for, clients_for):
    """kill -9 with persistent-session clients connected: after restart the 5.0 will comes
    after its Will Delay Interval (2 s), the 3.1.1 will at once; none for a client that
    had sent DISCONNECT."""
    b = broker_factory()
    pool = clients5_for(b)
    wcid = uid("watch")
    w = v5(pool, wcid, 600).connect()
    w.subscribe5("will/#", 1)
    w.disconnect()

    v5(pool, uid("victim5"), 60).will5("will/t", b"crashed", qos=1, WillDelayInterval=2).connect()
    v3 = v311(clients_for(b), uid("victim3")).will("will/v3", b"crashed-311", qos=1)
    v3.connect()
    polite = v5(pool, uid("polite"), 60).will5("will/polite", b"must not appear", qos=1)
    polite.connect()
    polite.disconnect()
    # DISCONNECT has no acknowledgement: a kill in the same instant may legitimately come before
    # the broker read it (then the will is due). Give it a moment to read and record it.
    time.sleep(0.5)

    b.kill()
    t0 = time.monotonic()
    b.start()
    w2 = v5(pool, wcid, 600).connect()
    assert w2.session_present is True

    got = {}
    while len(got) < 2:
        m = w2.get(timeout=8.0)
        got.setdefault(m.topic, (m.payload, time.monotonic() - t0))
    assert set(got) == {"will/t", "will/v3"}, got
    assert got["will/v3"][0] == b"crashed-311"
    payload, at = got["will/t"]
    assert payload == b"crashed"
    assert 1.5 <= at <= 6.0, f"delayed will published {at:.2f}s after the restart (Will Delay 2s)"
    assert got["will/v3"][1] < at, f"3.1.1 will (delay 0) came after the delayed one: {got}"
    rest = [(m.topic, m.payload) for m in drain(w2, 1.5)]
    assert ("will/polite", b"must not appear") not in rest, rest


# -- 7. memory mode ------------------------------------------------------------------------

def test_memory_mode_keeps_nothing_across_restart(broker_factory, clients5_for):
    """mode = "memory": sessions survive reconnects but not restarts; retained is lost; no file."""
    b = broker_factory({"PORTICO_DURABLE_SESSIONS__MODE": "memory"})
    pool = clients5_for(b)
    cid = uid("mem")
    s = v5(pool, cid).connect()
    s.subscribe5("m/t", 1)
    s.disconnect()
    pool.connected().publish5("m/r", b"retained", qos=1, retain=True)
    again = v5(pool, cid).connect()
    assert again.session_present is True  # kept in memory across a reconnect
    again.disconnect()

    b.restart()

    assert v5(pool, cid).connect().session_present is False, "memory mode restored a session"
    s = pool.connected()
    s.subscribe5("m/r", 1)
    s.expect_none(1.0)  # the retained message is gone
    assert not (b.data_dir / "portico.redb").exists(), "memory mode wrote portico.redb"


# -- 8. corrupt store -------------------------------------------------------------------------

def test_corrupt_store_refuses_to_start(tmp_path):
    """Garbage in portico.redb: the broker exits non-zero naming the file, and leaves it alone."""
    b = Broker(BROKER_KIND, tmp_path / "corrupt")
    store = b.data_dir / "portico.redb"
    garbage = bytes((i * 131 + 7) % 256 for i in range(4096))
    store.write_bytes(garbage)
    try:
        with pytest.raises(BrokerError) as err:
            b.start()
    finally:
        b.kill()
    msg = str(err.value)
    assert "exited with code" in msg and "exited with code 0" not in msg, msg
    log = b.log_path.read_text(errors="replace")
    assert str(store) in log, log
    assert "not a redb database" in log and "corrupt" in log, log
    assert store.read_bytes() == garbage, "the broker modified the corrupt store"


# -- 9. batch mode flushes on a clean stop ---------------------------------------------------

def test_batch_mode_clean_restart_keeps_everything(broker_factory, clients_for):
    """mode = "batch" (1 s window): SIGTERM right after the publishes still keeps the
    queued QoS 1/2 messages, the subscription and the retained message."""
    b = broker_factory({"PORTICO_DURABLE_SESSIONS__MODE": "batch",
                        "PORTICO_DURABLE_SESSIONS__BATCH_WINDOW": "1s"})
    pool = clients_for(b)
    cid = offline_subscriber_311(pool, "b/#", 2)
    pub = pool.connected(version=V311)
    q1 = [f"q1-{i:02d}".encode() for i in range(N // 2)]
    q2 = [f"q2-{i:02d}".encode() for i in range(N // 2)]
    publish_all(pub, "b/one", q1, 1)
    publish_all(pub, "b/two", q2, 2)
    pub.publish("b/ret", b"retained", qos=1, retain=True)

    b.restart()

    sub = v311(pool, cid).connect()
    assert sub.session_present is True
    expected = set(q1) | set(q2) | {b"retained"}
    got = receive_set(sub, expected) + drain(sub)
    q2_got = [m.payload for m in got if m.topic == "b/two"]
    assert len(q2_got) == len(set(q2_got)), f"QoS 2 duplicates: {sorted(q2_got)}"
    fresh = pool.connected(version=V311)
    fresh.subscribe("b/ret", 1)
    m = fresh.get(T)
    assert (m.payload, m.retain) == (b"retained", True)
