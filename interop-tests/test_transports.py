"""TLS, mutual TLS, WebSocket and WSS listeners, with real clients.

Certificates are made at test time with the `openssl` command line (a CA, a
server certificate for localhost/127.0.0.1, client certificates). The broker
is started with its ssl, ws and wss listeners on free loopback ports through
PORTICO_* overrides; these tests only make sense against Portico (they need its
listener configuration), so they are all `portico_only`.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

from clients import V311, V5, VERSION_IDS, Client, MosquittoSub, assert_broker_serves, mosquitto_pub, topic_prefix, uid
from conftest import free_port
from pki import Pki

pytestmark = pytest.mark.portico_only

DENIED_SERIAL = "0badc0de"


# -- certificates -------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _tls_env(kind: str, pki: Pki, port: int, mutual: bool, fail_if_no_peer_cert: bool) -> dict[str, str]:
    p = f"PORTICO_LISTENERS__{kind}__DEFAULT__"
    env = {
        p + "ENABLE": "true",
        p + "BIND": f"127.0.0.1:{port}",
        p + "SSL_OPTIONS__CERTFILE": str(pki.server_cert),
        p + "SSL_OPTIONS__KEYFILE": str(pki.server_key),
    }
    if mutual:
        env.update({
            p + "SSL_OPTIONS__CACERTFILE": str(pki.ca),
            p + "SSL_OPTIONS__VERIFY": "verify_peer",
            p + "SSL_OPTIONS__FAIL_IF_NO_PEER_CERT": "true" if fail_if_no_peer_cert else "false",
            p + "SSL_OPTIONS__DENY_SERIALS": f'["{DENIED_SERIAL}"]',
        })
    return env


class Ports:
    def __init__(self):
        self.ssl = free_port()
        self.wss = free_port()


def _start(broker_factory, pki: Pki, mutual: bool = False, fail_if_no_peer_cert: bool = False,
           extra: dict[str, str] | None = None):
    ports = Ports()
    env = {}
    env.update(_tls_env("SSL", pki, ports.ssl, mutual, fail_if_no_peer_cert))
    env.update(_tls_env("WSS", pki, ports.wss, mutual, fail_if_no_peer_cert))
    env.update(extra or {})
    b = broker_factory(env)
    b.ssl_port, b.wss_port = ports.ssl, ports.wss
    return b


@pytest.fixture
def tls_broker(broker_factory, pki):
    """ssl and wss with one-way TLS; ws on its free port."""
    return _start(broker_factory, pki)


@pytest.fixture
def mtls_broker(broker_factory, pki):
    """ssl and wss requiring a client certificate; peer_cert_as_username = cn."""
    return _start(broker_factory, pki, mutual=True, fail_if_no_peer_cert=True,
                  extra={"PORTICO_MQTT__PEER_CERT_AS_USERNAME": "cn"})


def _tls_opts(pki: Pki, cert: tuple[Path, Path] | None = None) -> tuple[str, ...]:
    opts = ("--cafile", str(pki.ca))
    if cert is not None:
        opts += ("--cert", str(cert[0]), "--key", str(cert[1]))
    return opts


# -- TLS with the mosquitto command-line clients --------------------------------------

@pytest.mark.parametrize("version", [V311, V5], ids=VERSION_IDS.get)
def test_mosquitto_over_one_way_tls(tls_broker, pki, version):
    t = topic_prefix() + "/tls"
    sub = MosquittoSub(tls_broker, t, 1, qos=1, version=version, port=tls_broker.ssl_port, extra=_tls_opts(pki))
    mosquitto_pub(tls_broker, t, b"secret", qos=1, version=version, port=tls_broker.ssl_port, extra=_tls_opts(pki))
    assert sub.result() == [(1, False, b"secret")]


def test_mutual_tls_accepts_a_client_certificate_and_uses_its_cn(mtls_broker, pki):
    device = pki.client("device-7", "2002")
    with Client(mtls_broker, version=V5) as watcher:
        watcher.connect()
        cid = uid("mtls")
        watcher.subscribe(f"$SYS/brokers/+/clients/{cid}/connected", 0)
        mosquitto_pub(mtls_broker, "it/mtls", b"x", port=mtls_broker.ssl_port, extra=_tls_opts(pki, device),
                      client_id=cid)
        event = json.loads(watcher.get().payload)
    assert event["clientid"] == cid
    assert event["username"] == "device-7", event


def test_mutual_tls_without_a_client_certificate_is_refused(mtls_broker, pki):
    r = mosquitto_pub(mtls_broker, "it/nocert", b"x", port=mtls_broker.ssl_port, extra=_tls_opts(pki),
                      expect_ok=False)
    assert r.returncode != 0, "published without a client certificate"
    assert_broker_serves(mtls_broker)


def test_certificate_with_a_denied_serial_is_refused(mtls_broker, pki):
    denied = pki.client("denied", DENIED_SERIAL)
    r = mosquitto_pub(mtls_broker, "it/denied", b"x", port=mtls_broker.ssl_port, extra=_tls_opts(pki, denied),
                      expect_ok=False)
    assert r.returncode != 0, "published with a denied certificate"
    ok = pki.client("allowed", "3003")
    mosquitto_pub(mtls_broker, "it/allowed", b"x", port=mtls_broker.ssl_port, extra=_tls_opts(pki, ok))


def test_plaintext_mqtt_on_the_tls_port_is_refused_cleanly(tls_broker, pki):
    connect = bytes.fromhex("101000044d5154540402003c0004") + b"abcd"
    with socket.create_connection(("127.0.0.1", tls_broker.ssl_port), timeout=5) as s:
        s.sendall(connect)
        s.settimeout(5)
        data = b""
        try:
            while chunk := s.recv(1024):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert not data.startswith(b"\x20"), f"answered with MQTT: {data!r}"
    # Either nothing or a TLS alert record (content type 21).
    assert data == b"" or data[0] == 21, data
    assert tls_broker.alive()
    c = Client(tls_broker, version=V5, port=tls_broker.ssl_port, tls={"ca_certs": str(pki.ca)})
    with c:
        c.connect()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_client_is_refused(tls_broker, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.ca))
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ssl.SSLError, ValueError) as e:
        pytest.skip(f"this Python/OpenSSL cannot offer TLS 1.1: {e}")
    with socket.create_connection(("127.0.0.1", tls_broker.ssl_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as err:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                pass
    text = str(err.value).upper()
    if "NO PROTOCOLS AVAILABLE" in text or "NO_PROTOCOLS_AVAILABLE" in text:
        pytest.skip("the local OpenSSL refused to send a TLS 1.1 ClientHello")
    # The broker answered the TLS 1.1 ClientHello with an alert (rustls sends handshake_failure
    # or protocol_version), rather than the client giving up on its own.
    assert "ALERT" in text or "PROTOCOL" in text or "VERSION" in text, text
    assert_broker_serves(tls_broker)


# -- WebSocket and WSS with paho -----------------------------------------------------

@pytest.mark.parametrize("version", [V311, V5], ids=VERSION_IDS.get)
def test_paho_over_ws_and_wss(tls_broker, pki, version):
    t = topic_prefix() + "/ws"
    with Client(tls_broker, version=version, port=tls_broker.ws_port, transport="websockets") as ws_sub, \
            Client(tls_broker, version=version, port=tls_broker.wss_port, transport="websockets",
                   tls={"ca_certs": str(pki.ca)}, host="localhost") as wss_pub:
        ws_sub.connect()
        ws_sub.subscribe(t + "/#", 1)
        wss_pub.connect()
        wss_pub.subscribe(t + "/back", 1)
        wss_pub.publish(t + "/a", b"from wss", qos=1)
        m = ws_sub.get()
        assert (m.topic, m.payload) == (t + "/a", b"from wss")
        ws_sub.publish(t + "/back", b"from ws", qos=1)
        m = wss_pub.get()
        assert (m.topic, m.payload) == (t + "/back", b"from ws")


def test_paho_over_wss_with_a_client_certificate(mtls_broker, pki):
    device = pki.client("wss-device", "4004")
    tls = {"ca_certs": str(pki.ca), "certfile": str(device[0]), "keyfile": str(device[1])}
    t = topic_prefix() + "/wss"
    with Client(mtls_broker, version=V5, port=mtls_broker.wss_port, transport="websockets", tls=tls,
                host="localhost") as c:
        c.connect()
        c.subscribe(t, 1)
        c.publish(t, b"mutual", qos=1)
        assert c.get().payload == b"mutual"


# -- a hand-written WebSocket client ---------------------------------------------------

class RawWs:
    """A minimal RFC 6455 client on a plain socket, for what libraries will not send."""

    def __init__(self, port: int, path: str = "/mqtt", protocol: str | None = "mqtt",
                 headers: dict[str, str] | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if protocol is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode(errors="replace")
        self.status = int(self.head.split(" ")[1]) if self.head.startswith("HTTP/1.1 ") else 0

    def send_frame(self, payload: bytes, opcode: int = 0x2, fin: bool = True) -> None:
        mask = os.urandom(4)
        header = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self) -> tuple[int, bytes]:
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def recv_binary(self) -> bytes:
        while True:
            opcode, data = self.recv_frame()
            if opcode == 0x2:
                return data
            assert opcode in (0x9, 0xA), f"unexpected opcode {opcode}"

    def close(self) -> None:
        self.sock.close()


def _mqtt_str(s: str) -> bytes:
    return struct.pack("!H", len(s)) + s.encode()


def _remaining(n: int) -> bytes:
    out = b""
    while True:
        b, n = n % 128, n // 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _connect_packet(cid: str) -> bytes:
    body = _mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _mqtt_str(cid)
    return b"\x10" + _remaining(len(body)) + body


def _publish_packet(topic: str, payload: bytes) -> bytes:
    body = _mqtt_str(topic) + payload
    return b"\x30" + _remaining(len(body)) + body


def test_raw_websocket_split_and_combined_packets(tls_broker):
    t = topic_prefix() + "/raw"
    with Client(tls_broker, version=V5) as sub:
        sub.connect()
        sub.subscribe(t + "/#", 0)
        ws = RawWs(tls_broker.ws_port)
        try:
            assert ws.status == 101, ws.head
            assert "sec-websocket-protocol: mqtt" in ws.head.lower(), ws.head
            ws.send_frame(_connect_packet(uid("raw")))
            assert ws.recv_binary() == b"\x20\x02\x00\x00", "CONNACK"
            # One PUBLISH over three binary frames (a frame boundary inside the header too).
            p = _publish_packet(t + "/split", b"in three frames")
            ws.send_frame(p[:1])
            ws.send_frame(p[1:6])
            ws.send_frame(p[6:])
            # Two PUBLISH packets in one frame.
            ws.send_frame(_publish_packet(t + "/one", b"1") + _publish_packet(t + "/two", b"2"))
            got = [(m.topic, m.payload) for m in sub.get_n(3)]
            assert got == [(t + "/split", b"in three frames"), (t + "/one", b"1"), (t + "/two", b"2")]
        finally:
            ws.close()


def test_text_frame_is_refused_with_1003(tls_broker):
    ws = RawWs(tls_broker.ws_port)
    try:
        assert ws.status == 101, ws.head
        ws.send_frame(_connect_packet(uid("text")), opcode=0x1)
        opcode, data = ws.recv_frame()
        assert opcode == 0x8, f"expected a close frame, got opcode {opcode}"
        assert struct.unpack("!H", data[:2])[0] == 1003
    finally:
        ws.close()
    assert_broker_serves(tls_broker)


@pytest.mark.parametrize("path,protocol,status", [
    ("/mqtt", "chat", 400),
    ("/mqtt", None, 400),
    ("/other", "mqtt", 404),
], ids=["unknown-subprotocol", "no-subprotocol", "wrong-path"])
def test_bad_upgrades_get_http_errors(tls_broker, path, protocol, status):
    ws = RawWs(tls_broker.ws_port, path=path, protocol=protocol)
    try:
        assert ws.status == status, ws.head
    finally:
        ws.close()


def test_non_websocket_http_request_is_refused(tls_broker):
    with socket.create_connection(("127.0.0.1", tls_broker.ws_port), timeout=5) as s:
        s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(1024):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert data.startswith(b"HTTP/1.1 426 "), data
    assert b"upgrade: websocket" in data.lower(), data
    assert_broker_serves(tls_broker)


def test_origin_check_when_enabled(broker_factory, pki):
    p = "PORTICO_LISTENERS__WS__DEFAULT__WEBSOCKET__"
    b = broker_factory({
        p + "CHECK_ORIGIN_ENABLE": "true",
        p + "ALLOW_ORIGIN_ABSENCE": "false",
        p + "CHECK_ORIGINS": '["https://app.example"]',
    })
    for origin, status in [("https://evil.example", 403), (None, 403), ("https://app.example", 101)]:
        ws = RawWs(b.ws_port, headers={"Origin": origin} if origin else None)
        try:
            assert ws.status == status, (origin, ws.head)
        finally:
            ws.close()


def test_forwarded_for_sets_the_client_address(tls_broker):
    cid = uid("fwd")
    with Client(tls_broker, version=V5) as watcher:
        watcher.connect()
        watcher.subscribe(f"$SYS/brokers/+/clients/{cid}/connected", 0)
        ws = RawWs(tls_broker.ws_port, headers={"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Port": "4242"})
        try:
            assert ws.status == 101, ws.head
            ws.send_frame(_connect_packet(cid))
            assert ws.recv_binary()[:2] == b"\x20\x02"
            event = json.loads(watcher.get().payload)
        finally:
            ws.close()
    assert event["ipaddress"] == "203.0.113.5", event


def test_slow_handshakes_do_not_block_other_clients(broker_factory, pki):
    b = _start(broker_factory, pki, extra={"PORTICO_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__HANDSHAKE_TIMEOUT": "2s"})
    idle = [socket.create_connection(("127.0.0.1", b.ssl_port), timeout=5) for _ in range(5)]
    try:
        start = time.monotonic()
        c = Client(b, version=V5, port=b.ssl_port, tls={"ca_certs": str(pki.ca)})
        with c:
            c.connect()
        assert time.monotonic() - start < 2, "a TLS client waited behind silent connections"
        # The silent ones are dropped after handshake_timeout.
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""
    finally:
        for s in idle:
            s.close()
