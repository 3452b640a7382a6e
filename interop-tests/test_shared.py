"""Shared subscriptions: $share/<group>/<filter>, $queue/<filter>, dispatch
strategies (PORTICO_MQTT__SHARED_SUBSCRIPTION_STRATEGY) and redispatch of
unacknowledged QoS 1 messages when a member goes away."""

import queue
import time
from collections import Counter

import pytest

from clients import topic_prefix, uid
from v5 import Raw5, collect

PO = pytest.mark.portico_only
N = 30


def _group(pool, topic_filter: str, members: int = 3, qos: int = 1):
    """`members` clients subscribed to `topic_filter`, all delivering into one queue."""
    q = queue.Queue()
    cs = []
    for _ in range(members):
        c = pool.connected(shared_queue=q)
        c.subscribe5(topic_filter, qos)
        cs.append(c)
    return q, cs


def _publish(pool, topic: str, n: int = N, prefix: str = "m", pub=None):
    pub = pub or pool.connected()
    for i in range(n):
        pub.publish5(topic, f"{prefix}{i}".encode(), qos=1)
    return [f"{prefix}{i}".encode() for i in range(n)]


def _assert_each_once(msgs, expected):
    counts = Counter(m.payload for m in msgs)
    assert sorted(counts) == sorted(expected), f"missing/unexpected: {set(expected) ^ set(counts)}"
    assert all(v == 1 for v in counts.values()), f"duplicates: {[k for k, v in counts.items() if v > 1]}"


def _per_member(msgs):
    return Counter(m.client_id for m in msgs)


def test_shared_each_message_once_spread(clients5):
    p = topic_prefix()
    q, members = _group(clients5, f"$share/g/{p}/#")
    sent = _publish(clients5, p + "/a")
    msgs = collect(q, N)
    _assert_each_once(msgs, sent)
    per = _per_member(msgs)
    assert set(per) == {c.client_id for c in members}, f"not every member got messages: {per}"


@PO  # round_robin is Portico's (and EMQX's) default strategy
def test_shared_round_robin_default_exact(clients5):
    p = topic_prefix()
    q, members = _group(clients5, f"$share/g/{p}/#")
    sent = _publish(clients5, p + "/a")
    msgs = collect(q, N)
    _assert_each_once(msgs, sent)
    assert sorted(_per_member(msgs).values()) == [10, 10, 10], _per_member(msgs)


def test_shared_two_groups_each_get_all(clients5):
    p = topic_prefix()
    q1, _ = _group(clients5, f"$share/g1/{p}/t", members=2)
    q2, _ = _group(clients5, f"$share/g2/{p}/t", members=2)
    sent = _publish(clients5, p + "/t", n=20)
    _assert_each_once(collect(q1, 20), sent)
    _assert_each_once(collect(q2, 20), sent)


@PO  # mosquitto 2.0 does not implement $queue/
def test_queue_prefix_is_one_group(clients5):
    p = topic_prefix()
    q, members = _group(clients5, f"$queue/{p}/q")
    sent = _publish(clients5, p + "/q")
    msgs = collect(q, N)
    _assert_each_once(msgs, sent)
    assert set(_per_member(msgs)) == {c.client_id for c in members}


def test_plain_subscriber_alongside_group(clients5):
    p = topic_prefix()
    q, _ = _group(clients5, f"$share/g/{p}/t")
    plain = clients5.connected()
    plain.subscribe5(p + "/t", 1)
    sent = _publish(clients5, p + "/t")
    _assert_each_once(collect(q, N), sent)
    _assert_each_once(collect(plain.messages, N), sent)


# -- strategies (dedicated brokers) -----------------------------------------------------------

def _strategy_broker(broker_factory, clients5_for, strategy):
    b = broker_factory({"PORTICO_MQTT__SHARED_SUBSCRIPTION_STRATEGY": strategy})
    return clients5_for(b)


@PO
def test_strategy_sticky(broker_factory, clients5_for):
    pool = _strategy_broker(broker_factory, clients5_for, "sticky")
    p = topic_prefix()
    q, _ = _group(pool, f"$share/g/{p}/#")
    sent = _publish(pool, p + "/a", n=10) + _publish(pool, p + "/b", n=10, prefix="n")
    msgs = collect(q, 20)
    _assert_each_once(msgs, sent)
    assert len(_per_member(msgs)) == 1, f"sticky spread over members: {_per_member(msgs)}"


@PO
def test_strategy_hash_clientid(broker_factory, clients5_for):
    pool = _strategy_broker(broker_factory, clients5_for, "hash_clientid")
    p = topic_prefix()
    q, _ = _group(pool, f"$share/g/{p}/#")
    pubs = [pool.connected(client_id=uid(f"hpub{k}")) for k in range(4)]
    sent = []
    for i in range(8):
        for k, pub in enumerate(pubs):
            t = f"{p}/t{i % 3}"
            pub.publish5(t, f"p{k}-{i}".encode(), qos=1)
            sent.append(f"p{k}-{i}".encode())
    msgs = collect(q, len(sent))
    _assert_each_once(msgs, sent)
    by_pub = {}
    for m in msgs:
        by_pub.setdefault(m.payload.split(b"-")[0], set()).add(m.client_id)
    assert all(len(v) == 1 for v in by_pub.values()), f"one publisher's messages went to several members: {by_pub}"


@PO
def test_strategy_hash_topic(broker_factory, clients5_for):
    pool = _strategy_broker(broker_factory, clients5_for, "hash_topic")
    p = topic_prefix()
    q, _ = _group(pool, f"$share/g/{p}/#")
    pubs = [pool.connected() for _ in range(2)]
    sent = []
    for i in range(24):
        t = f"{p}/t{i % 4}"
        payload = f"t{i % 4}-{i}".encode()
        pubs[i % 2].publish5(t, payload, qos=1)
        sent.append(payload)
    msgs = collect(q, len(sent))
    _assert_each_once(msgs, sent)
    by_topic = {}
    for m in msgs:
        by_topic.setdefault(m.topic, set()).add(m.client_id)
    assert len(by_topic) == 4
    assert all(len(v) == 1 for v in by_topic.values()), f"one topic's messages went to several members: {by_topic}"


@PO
def test_strategy_random(broker_factory, clients5_for):
    pool = _strategy_broker(broker_factory, clients5_for, "random")
    p = topic_prefix()
    q, _ = _group(pool, f"$share/g/{p}/#")
    sent = _publish(pool, p + "/a")
    _assert_each_once(collect(q, N), sent)


# -- QoS 1 redispatch ---------------------------------------------------------------------------

@PO  # mosquitto 2.0 drops the messages in flight to a departed member
def test_shared_qos1_redispatch_on_member_loss(broker, clients5):
    p = topic_prefix()
    f = f"$share/g/{p}/r"
    other = clients5.connected()
    other.subscribe5(f, 1)
    sent = [f"r{i}".encode() for i in range(6)]
    with Raw5(broker) as silent:
        silent.connect5(uid("noack"))  # clean start, session expiry 0
        silent.subscribe5(f, 1)
        pub = clients5.connected()
        for payload in sent:
            pub.publish5(p + "/r", payload, qos=1)
        unacked = silent.publishes(quiet=0.5)  # never acknowledged
        assert unacked, "the silent member received nothing; cannot test redispatch"
    # Abrupt close (no DISCONNECT): its in-flight messages go to the other member.
    t0 = time.monotonic()
    got = set()
    while not set(sent) <= got:
        left = t0 + 3.0 - time.monotonic()
        try:
            got.add(other.messages.get(timeout=max(0.01, left)).payload)
        except queue.Empty:
            break
    missing = set(sent) - got
    assert not missing, (f"not redispatched within 3s: {sorted(missing)} "
                         f"(silent member had {[u.payload for u in unacked]})")
