"""3. Retained messages."""

import pytest

from clients import V311, VERSION_IDS, VERSIONS, topic_prefix


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_retained_set_replace_clear(clients, version):
    t = topic_prefix() + "/ret"
    pub = clients.connected(version=version)

    pub.publish(t, b"first", qos=1, retain=True)
    s1 = clients.connected(version=version)
    s1.subscribe(t, 1)
    m = s1.get()
    assert (m.topic, m.payload, m.retain, m.qos) == (t, b"first", True, 1)

    pub.publish(t, b"second", qos=1, retain=True)
    s2 = clients.connected(version=version)
    s2.subscribe(t, 1)
    m = s2.get()
    assert (m.payload, m.retain) == (b"second", True)
    s2.expect_none(0.2)  # replaced, not accumulated

    pub.publish(t, b"", qos=1, retain=True)  # clear
    s3 = clients.connected(version=version)
    s3.subscribe(t, 1)
    s3.expect_none(0.5)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_retained_wildcard_subscriber(clients, version):
    base = topic_prefix()
    pub = clients.connected(version=version)
    for leaf in ("a", "b", "c"):
        pub.publish(f"{base}/{leaf}", leaf.encode(), qos=1, retain=True)
    s = clients.connected(version=version)
    s.subscribe(base + "/+", 1)
    got = {m.topic: (m.payload, m.retain) for m in s.get_n(3)}
    assert got == {f"{base}/{leaf}": (leaf.encode(), True) for leaf in ("a", "b", "c")}
    for leaf in ("a", "b", "c"):
        pub.publish(f"{base}/{leaf}", b"", qos=1, retain=True)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_retained_live_subscriber_sees_retain_0(clients, version):
    """MQTT-3.3.1-9 (3.1.1) / default Retain As Published=0 (5.0): normal
    forwarding of a retained publish to an existing subscription clears RETAIN."""
    t = topic_prefix() + "/live"
    s = clients.connected(version=version)
    s.subscribe(t, 1)
    pub = clients.connected(version=version)
    pub.publish(t, b"live", qos=1, retain=True)
    m = s.get()
    assert (m.payload, m.retain) == (b"live", False)
    pub.publish(t, b"", qos=1, retain=True)
