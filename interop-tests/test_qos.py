"""1-2. QoS 0/1/2 round trips (paho and mosquitto CLI) and QoS downgrade."""

import pytest

from clients import V5, VERSION_IDS, VERSIONS, MosquittoSub, mosquitto_pub, topic_prefix

PAYLOADS = {
    "text": b"hello portico",
    "binary": bytes(range(256)) + b"\x00\xff\x00",
    "empty": b"",
    "large": bytes((i * 7) % 256 for i in range(64 * 1024)),
}


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_round_trip(clients, version, qos):
    t = topic_prefix() + "/rt"
    sub = clients.connected(version=version)
    assert sub.subscribe(t, 2)[0].value == 2
    pub = clients.connected(version=version)
    for name, payload in PAYLOADS.items():
        pub.publish(t, payload, qos=qos)
        m = sub.get()
        assert m.topic == t
        assert m.payload == payload, f"payload {name} differs"
        assert m.qos == qos
        assert m.retain is False
    sub.expect_none(0.2)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_qos_downgrade(clients, version):
    """Delivered QoS = min(publish QoS, subscription QoS)."""
    t = topic_prefix() + "/dg"
    subs = {}
    for sq in (0, 1, 2):
        c = clients.connected(version=version)
        assert c.subscribe(t, sq)[0].value == sq
        subs[sq] = c
    pub = clients.connected(version=version)
    for pq in (0, 1, 2):
        pub.publish(t, f"pq{pq}".encode(), qos=pq)
    for sq, c in subs.items():
        got = {m.payload: m.qos for m in c.get_n(3)}
        assert got == {f"pq{pq}".encode(): min(pq, sq) for pq in (0, 1, 2)}, f"subscription qos {sq}"
        c.expect_none(0.1)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_cli_round_trip(broker, version):
    """mosquitto_pub -> mosquitto_sub, all QoS levels, binary and empty payloads."""
    t = topic_prefix() + "/cli"
    sends = [(0, PAYLOADS["text"]), (1, PAYLOADS["binary"]), (2, PAYLOADS["empty"]), (2, b"\x00\x01\x02 bin \xfe\xff")]
    sub = MosquittoSub(broker, t, count=len(sends), qos=2, version=version)
    try:
        for qos, payload in sends:
            mosquitto_pub(broker, t, payload, qos=qos, version=version)
        got = sub.result()
    finally:
        sub.kill()
    assert sorted(got) == sorted((qos, False, payload) for qos, payload in sends)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_cli_to_paho_and_back(broker, clients, version):
    """Cross-client interop: mosquitto_pub -> paho and paho -> mosquitto_sub."""
    t = topic_prefix()
    p = clients.connected(version=version)
    p.subscribe(t + "/to-paho", 2)
    mosquitto_pub(broker, t + "/to-paho", PAYLOADS["binary"], qos=2, version=version)
    m = p.get()
    assert (m.payload, m.qos) == (PAYLOADS["binary"], 2)

    sub = MosquittoSub(broker, t + "/to-cli", count=1, qos=1, version=version)
    try:
        p.publish(t + "/to-cli", PAYLOADS["binary"], qos=2)
        assert sub.result() == [(1, False, PAYLOADS["binary"])]
    finally:
        sub.kill()
