"""A tiny raw MQTT 3.1.1 / 5.0 client for malformed-input and timing tests.

Builds packets byte by byte, so tests can send exactly what they want, and
reads packets with timeouts, reporting a closed connection as an event.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

# Packet types (upper nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15

TYPE_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
    8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
    14: "DISCONNECT", 15: "AUTH",
}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mqtt_str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def props(raw: bytes = b"") -> bytes:
    """MQTT 5 property block: length prefix + already-encoded properties."""
    return varint(len(raw)) + raw


def connect_packet(
    client_id: str | bytes = "",
    version: int = 4,
    clean: bool = True,
    keepalive: int = 60,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    will_qos: int = 0,
    will_retain: bool = False,
    session_expiry: int | None = None,
    protocol_level: int | None = None,
) -> bytes:
    """CONNECT for MQTT 3.1.1 (version=4) or 5.0 (version=5)."""
    level = protocol_level if protocol_level is not None else version
    flags = 0x02 if clean else 0
    if will_topic is not None:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
    body = mqtt_str("MQTT") + bytes([level, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        p = b""
        if session_expiry is not None:
            p += b"\x11" + struct.pack("!I", session_expiry)
        body += props(p)
    body += mqtt_str(client_id)
    if will_topic is not None:
        if version == 5:
            body += props()
        body += mqtt_str(will_topic) + mqtt_str(will_payload)
    return packet(0x10, body)


def publish_packet(topic: str | bytes, payload: bytes = b"", qos: int = 0, retain: bool = False,
                   packet_id: int = 1, version: int = 4) -> bytes:
    body = mqtt_str(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == 5:
        body += props()
    body += payload
    return packet(0x30 | (qos << 1) | (1 if retain else 0), body)


def subscribe_packet(topic_filter: str | bytes, qos: int = 0, packet_id: int = 1, version: int = 4,
                     first_byte: int = 0x82) -> bytes:
    body = struct.pack("!H", packet_id)
    if version == 5:
        body += props()
    body += mqtt_str(topic_filter) + bytes([qos])
    return packet(first_byte, body)


def disconnect_packet(version: int = 4, reason: int | None = None) -> bytes:
    if version == 5 and reason is not None:
        return packet(0xE0, bytes([reason]) + props())
    return b"\xe0\x00"


PINGREQ_PACKET = b"\xc0\x00"


@dataclass
class Packet:
    first: int
    body: bytes

    @property
    def type(self) -> int:
        return self.first >> 4

    @property
    def flags(self) -> int:
        return self.first & 0x0F

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.type, f"type{self.type}")

    def __repr__(self) -> str:
        return f"<{self.name} flags={self.flags:#x} body={self.body.hex()}>"


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


class RawClient:
    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed = False
        self.version = 4

    # -- io --------------------------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Send bytes; returns False if the peer had already closed."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for data (have {len(self.buf)} bytes, need {n})")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError(f"timed out waiting for data (have {len(self.buf)} bytes, need {n})")
            except (ConnectionResetError, ConnectionAbortedError):
                chunk = b""
            if not chunk:
                self.closed = True
                raise Closed()
            self.buf += chunk

    def read_packet(self, timeout: float = 5.0) -> Packet:
        """Next packet; raises Closed on EOF/reset, TimeoutError on timeout."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        mult, length, i = 1, 0, 1
        while True:
            self._fill(i + 1, deadline)
            b = self.buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
            if i > 4:
                raise ValueError("malformed remaining length from peer")
        self._fill(i + length, deadline)
        pkt = Packet(self.buf[0], self.buf[i:i + length])
        self.buf = self.buf[i + length:]
        return pkt

    def expect(self, ptype: int, timeout: float = 5.0) -> Packet:
        pkt = self.read_packet(timeout)
        assert pkt.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {pkt!r}"
        return pkt

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Read until the peer closes; returns packets received meanwhile.
        Fails if the connection is still open after `timeout` seconds."""
        got: list[Packet] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.read_packet(max(0.0, deadline - time.monotonic())))
            except Closed:
                return got
            except TimeoutError:
                raise AssertionError(f"connection not closed by broker within {timeout}s (received {got})")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- protocol shortcuts -----------------------------------------------------------
    def connect(self, client_id: str = "", version: int = 4, **kw) -> Packet:
        """Send CONNECT, expect a successful CONNACK."""
        self.version = version
        self.send(connect_packet(client_id, version=version, **kw))
        ack = self.expect(CONNACK)
        assert ack.body[1] == 0, f"CONNACK refused: {ack!r}"
        return ack

    def subscribe(self, topic_filter: str, qos: int = 0, packet_id: int = 1) -> Packet:
        self.send(subscribe_packet(topic_filter, qos, packet_id, version=self.version))
        return self.expect(SUBACK)

    def expect_protocol_error(self, reason: int | None, timeout: float = 5.0) -> None:
        """The broker must end the connection because of the last packet sent.

        MQTT 5 (reason given): a DISCONNECT with `reason` first, then close.
        MQTT 3.1.1 (reason None): the connection is closed without any packet
        (a 3.1.1 server has no DISCONNECT to send).
        """
        got = self.wait_closed(timeout)
        if reason is None:
            assert got == [], f"expected the connection to be closed without a packet, got {got}"
            return
        assert got, f"expected DISCONNECT with reason {reason:#04x} before close, got nothing"
        last = got[-1]
        assert last.type == DISCONNECT, f"expected DISCONNECT {reason:#04x}, got {got}"
        assert last.body[:1] == bytes([reason]), (
            f"expected DISCONNECT reason {reason:#04x}, got {last.body[:1].hex() or 'none (0x00)'} ({got})"
        )
        assert all(p.type != DISCONNECT for p in got[:-1]), f"several DISCONNECTs: {got}"


def parse_publish(pkt: Packet, version: int = 4) -> tuple[str, bytes, int, bool]:
    """(topic, payload, qos, retain) of a PUBLISH packet."""
    assert pkt.type == PUBLISH, pkt
    qos = (pkt.flags >> 1) & 3
    retain = bool(pkt.flags & 1)
    (tlen,) = struct.unpack("!H", pkt.body[:2])
    topic = pkt.body[2:2 + tlen].decode()
    pos = 2 + tlen + (2 if qos else 0)
    if version == 5:
        mult, plen = 1, 0
        while True:
            b = pkt.body[pos]
            pos += 1
            plen += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        pos += plen
    return topic, pkt.body[pos:], qos, retain
