"""The MQTT-SN gateway with a third-party MQTT-SN client (PyPI `mqtt-sn-12`: its client class
and its `mqtt_sn_pub` command) and paho-mqtt on the MQTT side of the same broker."""

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from mqttsn12.MqttSnConstants import MqttSnConstants as C
from mqttsn12.client.MqttSnClient import MqttSnClient
from mqttsn12.packets import PublishPacket

from clients import V311, Client, uid

pytestmark = pytest.mark.portico_only

VENV_BIN = Path(__file__).resolve().parent / ".venv" / "bin"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sn_env(port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "PORTICO_GATEWAY__MQTTSN__ENABLE": "true",
        "PORTICO_GATEWAY__MQTTSN__LISTENERS__UDP__DEFAULT__BIND": f"127.0.0.1:{port}",
        "PORTICO_GATEWAY__MQTTSN__PREDEFINED__1__ID": "7",
        "PORTICO_GATEWAY__MQTTSN__PREDEFINED__1__TOPIC": "pre/seven",
    }
    env.update(extra or {})
    return env


@pytest.fixture
def gateway(broker_factory):
    port = free_udp_port()
    b = broker_factory(sn_env(port))
    b.sn_port = port
    return b


def sn_client(b, client_id: str, keepalive: int = 30) -> MqttSnClient:
    c = MqttSnClient()
    c.set_client_id(client_id)
    c.set_keep_alive(keepalive)
    c.open("127.0.0.1", b.sn_port)
    return c


def next_publish(c: MqttSnClient) -> PublishPacket:
    """Waits for a PUBLISH (the client answers REGISTERs on the way) and acknowledges it."""
    buf = c.wait_for(True, C.TYPE_PUBLISH)
    assert buf is not None, "no PUBLISH from the gateway"
    p = PublishPacket()
    p.decode(buf)
    if p.get_qos() == 1:
        c.send_puback(p, 0)
    return p


def test_mqtt_sn_publishes_reach_mqtt_subscribers_at_every_qos(gateway):
    sub = Client(gateway, version=V311).connect()
    sub.subscribe("sn/#", qos=2)
    sub.subscribe("pre/#", qos=2)
    sub.subscribe("ab", qos=2)
    c = sn_client(gateway, uid("sn"))
    c.send_connect()
    for qos in (0, 1, 2):
        c.send_publish("sn/temp", f"q{qos}".encode(), qos)
    c.send_publish("ab", b"short", 1)
    c.send_publish_predefined(7, b"predefined", 1)
    got = sub.get_n(5)
    assert sorted((m.topic, m.payload) for m in got) == sorted([
        ("sn/temp", b"q0"), ("sn/temp", b"q1"), ("sn/temp", b"q2"), ("ab", b"short"), ("pre/seven", b"predefined"),
    ])
    c.send_disconnect()
    c.close()
    sub.close()


def test_mqtt_publishes_reach_mqtt_sn_subscribers(gateway):
    c = sn_client(gateway, uid("sn"))
    c.send_connect()
    c.send_subscribe("cmd/+", 1, None)
    mqtt = Client(gateway, version=V311).connect()
    mqtt.publish("cmd/led", b"on", qos=1)
    p = next_publish(c)
    assert p.get_data() == b"on"
    assert c.topic_map.get(p.get_topic_id()) == "cmd/led", "announced with REGISTER first"
    # Window of one QoS 1 message: the next follows the PUBACK.
    mqtt.publish("cmd/led", b"off", qos=1)
    assert next_publish(c).get_data() == b"off"
    c.send_disconnect()
    c.close()
    mqtt.close()


def test_mqtt_sn_pub_command_line(gateway):
    sub = Client(gateway, version=V311).connect()
    sub.subscribe("cli/t", qos=1)
    run = subprocess.run([str(VENV_BIN / "mqtt_sn_pub"), "-h", "127.0.0.1", "-p", str(gateway.sn_port),
                          "-t", "cli/t", "-m", "from the cli", "-q", "1"], capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert sub.get().payload == b"from the cli"
    # QoS -1: no connection, a predefined topic id.
    run = subprocess.run([str(VENV_BIN / "mqtt_sn_pub"), "-h", "127.0.0.1", "-p", str(gateway.sn_port),
                          "-T", "7", "-m", "fire and forget", "-q", "-1"], capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    sub.subscribe("pre/seven", qos=0)
    run = subprocess.run([str(VENV_BIN / "mqtt_sn_pub"), "-h", "127.0.0.1", "-p", str(gateway.sn_port),
                          "-T", "7", "-m", "again", "-q", "-1"], capture_output=True, timeout=30)
    assert sub.get().payload == b"again"
    sub.close()


def test_keepalive_expiry_publishes_the_will(gateway):
    watcher = Client(gateway, version=V311).connect()
    watcher.subscribe("wills/#", qos=1)
    c = sn_client(gateway, uid("dies"), keepalive=1)
    c.set_will("wills/sensor", "sensor lost", 1, False)
    c.send_connect()
    # Silence: 1.5 x 1 s, checked by the gateway's tick.
    c.close()
    started = time.monotonic()
    m = watcher.get(timeout=10)
    assert (m.topic, m.payload) == ("wills/sensor", b"sensor lost")
    assert time.monotonic() - started < 10
    watcher.close()


def test_bad_datagrams_are_refused_cleanly(gateway):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.connect(("127.0.0.1", gateway.sn_port))
        for junk in (b"", b"\x05", b"\x02\x16", b"\x09\x0c\x00", b"\x01\x00", b"\xff" * 300):
            s.send(junk)
        # An unknown topic id from a connected client: PUBACK 0x02, even at QoS 0.
        s.send(b"\x08\x04\x04\x01\x00\x1e" + b"bd")  # CONNECT "bd"
        assert s.recv(64) == b"\x03\x05\x00"
        s.send(b"\x08\x0c\x00\x12\x34\x00\x00x")  # PUBLISH QoS 0 to topic id 0x1234
        assert s.recv(64) == b"\x07\x0d\x12\x34\x00\x00\x02"
    # The gateway is still serving.
    c = sn_client(gateway, uid("after"))
    c.send_connect()
    c.send_disconnect()
    c.close()


def test_a_sleeping_client_gets_what_was_published_meanwhile_in_order(gateway):
    client_id = uid("sleeper")
    c = sn_client(gateway, client_id)
    c.send_connect()
    c.send_subscribe("home/+/cmd", 1, None)
    c.send_disconnect(60)  # asleep for up to a minute (the client waits for the DISCONNECT reply)
    mqtt = Client(gateway, version=V311).connect()
    for i in range(5):
        mqtt.publish(f"home/r{i % 2}/cmd", f"m{i}".encode(), qos=1)
    # Wake up: PINGREQ with the client id; everything comes, then PINGRESP.
    # Built by hand: the library's PingReqPacket drops a client id (constructor) or cannot
    # encode one (set_client_id).
    wake = client_id.encode()
    c.send_packet(bytes([2 + len(wake), C.TYPE_PINGREQ]) + wake)
    got = []
    while len(got) < 5:
        got.append(next_publish(c).get_data())
    assert got == [f"m{i}".encode() for i in range(5)]
    assert c.wait_for(True, C.TYPE_PINGRESP) is not None, "PINGRESP ends the wake-up"
    c.send_disconnect()
    c.close()
    mqtt.close()


def test_qos_is_downgraded_to_the_subscription_across_protocols(gateway):
    # MQTT-SN publisher → MQTT subscribers: each gets min(publish QoS, subscription QoS).
    at1 = Client(gateway, version=V311).connect()
    at1.subscribe("down/sn", qos=1)
    at0 = Client(gateway, version=V311).connect()
    at0.subscribe("down/sn", qos=0)
    c = sn_client(gateway, uid("sn"))
    c.send_connect()
    c.send_publish("down/sn", b"two", 2)
    assert (at1.get().qos, at0.get().qos) == (1, 0)
    # MQTT publisher → MQTT-SN subscriber at QoS 1: a QoS 2 publish arrives at QoS 1, a QoS 0
    # publish at QoS 0.
    c.send_subscribe("down/mqtt", 1, None)
    mqtt = Client(gateway, version=V311).connect()
    mqtt.publish("down/mqtt", b"two", qos=2)
    p = next_publish(c)
    assert (p.get_data(), p.get_qos()) == (b"two", 1)
    mqtt.publish("down/mqtt", b"zero", qos=0)
    p = next_publish(c)
    assert (p.get_data(), p.get_qos()) == (b"zero", 0)
    c.send_disconnect()
    c.close()
    for m in (at1, at0, mqtt):
        m.close()


@pytest.fixture
def rate_limited_gateway(broker_factory):
    port = free_udp_port()
    b = broker_factory(sn_env(port, {"PORTICO_GATEWAY__MQTTSN__LISTENERS__UDP__DEFAULT__MESSAGES_RATE": "10/s"}))
    b.sn_port = port
    return b


def test_a_flood_from_one_address_is_cut_to_its_rate_and_others_are_served(rate_limited_gateway):
    g = rate_limited_gateway
    sub = Client(g, version=V311).connect()
    sub.subscribe("pre/seven", qos=0)
    body = bytes([C.TYPE_PUBLISH, 0x61, 0x00, 0x07, 0x00, 0x00]) + b"f"  # QoS -1, predefined id 7
    flood = bytes([1 + len(body)]) + body
    sent = 0
    stop = threading.Event()

    def flood_for_two_seconds():
        # Paced so that the kernel's receive buffer, not the gateway, is never what drops.
        nonlocal sent
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and not stop.is_set():
                s.sendto(flood, ("127.0.0.1", g.sn_port))
                sent += 1
                time.sleep(0.0005)

    flooder = threading.Thread(target=flood_for_two_seconds)
    flooder.start()
    try:
        # Meanwhile another address is served as usual.
        time.sleep(0.5)
        other = sn_client(g, uid("calm"))
        other.send_connect()
        other.send_publish_predefined(7, b"calm", 1)
        other.send_disconnect()
        other.close()
    finally:
        stop.set()
        flooder.join()
    got = []
    try:
        while True:
            got.append(sub.get(timeout=2).payload)
    except AssertionError:  # nothing more within 2 s
        pass
    assert b"calm" in got
    flooded = got.count(b"f")
    # A bucket of 10 plus 10 a second for about 2 s: far below what was sent.
    assert sent > 500, sent
    assert 10 <= flooded <= 40, (flooded, sent)
    sub.close()
