"""Listener protection with real clients: PROXY protocol v1 and v2 (headers written by a test
client, and mosquitto_pub through a small PROXY-speaking relay), connection floods above
`max_connections` and above `max_conn_rate`, and `messages_rate` delaying rather than dropping.

Each test starts its own broker with a second TCP listener, `guarded`, configured through
PORTICO_* overrides; they need Portico's listener configuration, so they are `portico_only`.
"""

from __future__ import annotations

import json
from pathlib import Path
import socket
import struct
import threading
import time

import pytest

import mqttraw
from clients import V311, V5, Client, assert_broker_serves, mosquitto_pub, topic_prefix, uid
from conftest import free_port

pytestmark = pytest.mark.portico_only


def guarded(broker_factory, **settings: str):
    """A broker plus the port of its `tcp:guarded` listener with `settings` (key → value)."""
    port = free_port()
    env = {"PORTICO_LISTENERS__TCP__GUARDED__BIND": f"127.0.0.1:{port}",
           "PORTICO_SYS_TOPICS__SYS_MSG_INTERVAL": "1s"}
    env.update({f"PORTICO_LISTENERS__TCP__GUARDED__{k.upper()}": v for k, v in settings.items()})
    return broker_factory(env), port


def proxy_v1(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    return f"PROXY TCP4 {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


def proxy_v2(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    addresses = socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + struct.pack("!HH", src[1], dst[1])
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


class ConnectedEvents:
    """Watches `$SYS/brokers/+/clients/+/connected` and returns the event of a client id."""

    def __init__(self, broker):
        self.client = Client(broker, version=V5).connect()
        self.client.subscribe("$SYS/brokers/+/clients/+/connected", 0)

    def address_of(self, client_id: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = json.loads(self.client.get(timeout=max(0.1, deadline - time.monotonic())).payload)
            if event["clientid"] == client_id:
                return event["ipaddress"]
        raise AssertionError(f"no connected event for {client_id}")

    def close(self):
        self.client.close()


def metric(broker, name: str, timeout: float = 10.0) -> int:
    """The value of `$SYS/brokers/<node>/metrics/<name>` (published every second here)."""
    with Client(broker, version=V5) as c:
        c.connect()
        c.subscribe(f"$SYS/brokers/+/metrics/{name}", 0)
        return int(c.get(timeout=timeout).payload)


@pytest.mark.parametrize("header", [proxy_v1, proxy_v2], ids=["v1", "v2"])
def test_proxy_header_from_a_test_client_sets_the_client_address(broker_factory, header):
    broker, port = guarded(broker_factory, proxy_protocol="true")
    events = ConnectedEvents(broker)
    try:
        client_id = uid("proxied")
        with mqttraw.RawClient("127.0.0.1", port) as raw:
            raw.send(header(("203.0.113.50", 40404), ("127.0.0.1", port)))
            ack = raw.connect(client_id, version=4)
            assert ack.body[1] == 0, f"CONNACK {ack.body!r}"
            assert events.address_of(client_id) == "203.0.113.50"
    finally:
        events.close()


class ProxyRelay:
    """A minimal load balancer: accepts one connection, sends a PROXY v2 header naming a made-up
    client address, then relays bytes both ways to the broker."""

    def __init__(self, upstream_port: int, claimed: tuple[str, int]):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.upstream_port = upstream_port
        self.claimed = claimed
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _run(self) -> None:
        client, _ = self.server.accept()
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        upstream.sendall(proxy_v2(self.claimed, ("127.0.0.1", self.upstream_port)))
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    def close(self) -> None:
        self.server.close()


def test_mosquitto_pub_through_a_proxy_v2_relay(broker_factory, tmp_path):
    broker, port = guarded(broker_factory, proxy_protocol="true")
    relay = ProxyRelay(port, ("198.51.100.23", 50000))
    topic = topic_prefix() + "/via-proxy"
    events = ConnectedEvents(broker)
    try:
        with Client(broker, version=V5) as sub:
            sub.connect()
            sub.subscribe(topic, 1)
            client_id = uid("mpub")
            mosquitto_pub(broker, topic, b"through the balancer", qos=1, port=relay.port, client_id=client_id)
            m = sub.get()
            assert (m.topic, m.payload) == (topic, b"through the balancer")
            assert events.address_of(client_id) == "198.51.100.23"
    finally:
        events.close()
        relay.close()


def test_a_plain_client_on_a_proxy_listener_is_refused_and_counted(broker_factory):
    broker, port = guarded(broker_factory, proxy_protocol="true")
    with mqttraw.RawClient("127.0.0.1", port) as raw:
        raw.send(mqttraw.connect_packet(uid("plain"), version=4))
        assert raw.wait_closed() == [], "closed without an answer"
    assert metric(broker, "listener/refused/handshake") >= 1
    assert_broker_serves(broker)


def test_a_flood_above_max_connections_is_refused_cleanly(broker_factory):
    broker, port = guarded(broker_factory, max_connections="3")
    held = []
    try:
        for _ in range(3):
            c = mqttraw.RawClient("127.0.0.1", port)
            c.connect(uid("held"), version=4)
            held.append(c)
        for _ in range(5):
            with mqttraw.RawClient("127.0.0.1", port) as extra:
                extra.send(mqttraw.connect_packet(uid("extra"), version=4))
                assert extra.wait_closed() == [], "refused without a CONNACK"
        assert metric(broker, "listener/refused/max_connections") == 5
        assert_broker_serves(broker)
    finally:
        for c in held:
            c.close()


def test_a_flood_above_max_conn_rate_waits_and_is_served(broker_factory):
    broker, port = guarded(broker_factory, max_conn_rate='"5/s"')
    started = time.monotonic()
    clients = []
    try:
        for i in range(12):
            c = mqttraw.RawClient("127.0.0.1", port, timeout=10)
            ack = c.connect(uid(f"rate{i}"), version=4)
            assert ack.body[1] == 0
            clients.append(c)
        # 5 at once, then 7 more at 5 per second.
        assert time.monotonic() - started >= 1.0
        assert metric(broker, "listener/delayed/max_conn_rate") >= 1
        assert_broker_serves(broker)
    finally:
        for c in clients:
            c.close()


def test_messages_rate_delays_a_fast_publisher_without_loss(broker_factory):
    broker, port = guarded(broker_factory, messages_rate='"20/s"')
    topic = topic_prefix() + "/rate"
    with Client(broker, version=V311) as sub, Client(broker, version=V311, port=port) as pub:
        sub.connect()
        sub.subscribe(topic, 1)
        pub.connect()
        started = time.monotonic()
        for i in range(50):
            pub.publish(topic, str(i).encode(), qos=0)
        got = [int(sub.get(timeout=10).payload) for _ in range(50)]
        assert got == list(range(50)), "every message, in order"
        # 20 at once, then 30 more at 20 per second.
        assert time.monotonic() - started >= 1.2


def test_sighup_applies_listener_changes_and_keeps_connections(tmp_path):
    import os
    import signal
    import subprocess

    from conftest import REPO_ROOT

    binary = Path(os.environ.get("INTEROP_PORTICO_BIN", "target/release/portico"))
    binary = binary if binary.is_absolute() else REPO_ROOT / binary
    first, second = free_port(), free_port()
    config = tmp_path / "portico.toml"
    base = f'[node]\ndata_dir = "{tmp_path / "data"}"\n[listeners.ws.default]\nenable = false\n[dashboard.listeners.http]\nenable = false\n'
    config.write_text(base + f'[listeners.tcp.default]\nbind = "127.0.0.1:{first}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTICO_")}
    log = open(tmp_path / "broker.log", "wb")
    proc = subprocess.Popen([str(binary), "start", "--config", str(config)], env=env, stdout=log, stderr=log)
    try:
        broker = type("Addr", (), {"host": "127.0.0.1", "port": first})()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", first), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "broker did not start"
                time.sleep(0.05)
        topic = topic_prefix() + "/hup"
        with Client(broker, version=V5) as sub:
            sub.connect()
            sub.subscribe(topic, 1)
            config.write_text(base + f'[listeners.tcp.default]\nbind = "127.0.0.1:{first}"\n'
                                     f'[listeners.tcp.second]\nbind = "127.0.0.1:{second}"\n')
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", second), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the new listener never opened"
                    time.sleep(0.05)
            mosquitto_pub(broker, topic, b"via the new listener", qos=1, port=second)
            m = sub.get()
            assert (m.topic, m.payload) == (topic, b"via the new listener"), "the old connection still works"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
