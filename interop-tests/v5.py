"""MQTT 5 helpers: a paho client that exposes properties and subscription
options, and raw-socket packet builders/parsers with arbitrary properties.

Used by test_v5_features.py, test_shared.py and test_broker_features.py.
"""

from __future__ import annotations

import queue
import struct
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import mqttraw
from clients import TIMEOUT, V5, Client, ClientPool, Msg
from mqttraw import mqtt_str, packet, varint


# -- paho -----------------------------------------------------------------------------

@dataclass
class Msg5(Msg):
    props: object = None  # paho Properties (or None)
    client_id: str = ""
    dup: bool = False

    def prop(self, name, default=None):
        return getattr(self.props, name, default) if self.props is not None else default


def _props(ptype, values: dict) -> Properties | None:
    if not values:
        return None
    p = Properties(ptype)
    for k, v in values.items():
        setattr(p, k, v)
    return p


class Client5(Client):
    """`clients.Client` for MQTT 5 with properties everywhere.

    - `connect_props`: extra CONNECT properties by paho name
      (e.g. ``{"TopicAliasMaximum": 5, "RequestResponseInformation": 1}``);
    - `connack_props` holds the CONNACK properties after connect();
    - messages are `Msg5` (with `props`, `client_id`, `dup`);
    - `shared_queue`: deliver messages into this queue instead of `messages`.
    """

    def __init__(self, broker, client_id: str | None = None, clean: bool = True, keepalive: int = 60,
                 session_expiry: int | None = None, connect_props: dict | None = None,
                 username: str | None = None, password: str | None = None, shared_queue=None):
        super().__init__(broker, client_id=client_id, version=V5, clean=clean, keepalive=keepalive,
                         session_expiry=session_expiry)
        self.connect_props = dict(connect_props or {})
        self.connack_props = None
        if shared_queue is not None:
            self.messages = shared_queue
        if username is not None:
            self.c.username_pw_set(username, password)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack_props = properties
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client, userdata, message):
        props = getattr(message, "properties", None)
        self.messages.put(Msg5(message.topic, bytes(message.payload), message.qos, bool(message.retain),
                               props=props, client_id=self.client_id, dup=bool(message.dup)))

    def connack_prop(self, name, default=None):
        return getattr(self.connack_props, name, default) if self.connack_props is not None else default

    def will5(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, **props) -> "Client5":
        self.c.will_set(topic, payload, qos=qos, retain=retain, properties=_props(PacketTypes.WILLMESSAGE, props))
        return self

    def connect(self, timeout: float = TIMEOUT, expect_success: bool = True) -> "Client5":
        values = dict(self.connect_props)
        if self.session_expiry is not None:
            values["SessionExpiryInterval"] = self.session_expiry
        self.c.connect(self.broker.host, self.broker.port, keepalive=self.keepalive, clean_start=self.clean,
                       properties=_props(PacketTypes.CONNECT, values))
        self.c.loop_start()
        self._loop_started = True
        if not self.connected.wait(timeout):
            raise AssertionError(f"no CONNACK for {self.client_id} within {timeout}s")
        if expect_success:
            assert not self.connack_rc.is_failure, f"CONNACK refused: {self.connack_rc}"
        return self

    def publish5(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                 timeout: float = TIMEOUT, **props) -> None:
        """Publish with MQTT 5 properties given by paho name (MessageExpiryInterval=60,
        UserProperty=[("k", "v")], ...) and wait until the QoS flow is complete."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain,
                              properties=_props(PacketTypes.PUBLISH, props))
        info.wait_for_publish(timeout)
        assert info.is_published(), f"publish to {topic} (qos {qos}) not completed within {timeout}s"

    def subscribe5(self, topic: str, qos: int = 0, no_local: bool = False, rap: bool = False,
                   rh: int = 0, sub_id: int | None = None, timeout: float = TIMEOUT) -> list:
        """SUBSCRIBE with subscription options (and an optional Subscription Identifier);
        returns the SUBACK reason codes."""
        opts = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=rh)
        props = _props(PacketTypes.SUBSCRIBE, {"SubscriptionIdentifier": sub_id} if sub_id is not None else {})
        with self._suback_cv:
            rc, mid = self.c.subscribe(topic, options=opts, properties=props)
            assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
            ok = self._suback_cv.wait_for(lambda: mid in self._subacks, timeout)
        assert ok, f"no SUBACK within {timeout}s"
        codes = self._subacks.pop(mid)
        assert all(not c.is_failure for c in codes), f"SUBACK refused {topic}: {codes}"
        return codes

    def drain(self, timeout: float = 0.5) -> list[Msg5]:
        """Everything that arrives until `timeout` passes without a message."""
        out = []
        while True:
            try:
                out.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                return out


class Pool5(ClientPool):
    def new(self, **kw) -> Client5:
        c = Client5(self.broker, **kw)
        self.all.append(c)
        return c


def collect(q: queue.Queue, n: int, timeout: float = TIMEOUT, quiet: float = 0.3) -> list[Msg5]:
    """Take `n` messages from `q` (each within `timeout`), then make sure no
    extra message (a duplicate) follows within `quiet` seconds."""
    out = []
    for _ in range(n):
        try:
            out.append(q.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"only {len(out)} of {n} messages arrived: {[m.payload for m in out]}") from None
    try:
        extra = q.get(timeout=quiet)
    except queue.Empty:
        return out
    raise AssertionError(f"more than {n} messages: extra {extra}")


# -- raw packets ----------------------------------------------------------------------

# Property identifiers (MQTT 5, 2.2.2.2).
PFI, MEI, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION = 0x01, 0x02, 0x03, 0x08, 0x09
SUB_ID, SESSION_EXPIRY, ASSIGNED_ID, SERVER_KEEPALIVE = 0x0B, 0x11, 0x12, 0x13
REQ_RESP_INFO, RESP_INFO, REASON_STRING = 0x19, 0x1A, 0x1F
RECEIVE_MAX, TOPIC_ALIAS_MAX, TOPIC_ALIAS, USER_PROP, MAX_PACKET_SIZE = 0x21, 0x22, 0x23, 0x26, 0x27

_KIND = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint", 0x11: "u32",
    0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "byte", 0x18: "u32", 0x19: "byte",
    0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16", 0x22: "u16", 0x23: "u16", 0x24: "byte",
    0x25: "byte", 0x26: "pair", 0x27: "u32", 0x28: "byte", 0x29: "byte", 0x2A: "byte",
}


def prop(pid: int, value) -> bytes:
    """One encoded property."""
    kind = _KIND[pid]
    if kind == "byte":
        v = bytes([value])
    elif kind == "u16":
        v = struct.pack("!H", value)
    elif kind == "u32":
        v = struct.pack("!I", value)
    elif kind == "varint":
        v = varint(value)
    elif kind in ("str", "bin"):
        v = mqtt_str(value)
    else:
        v = mqtt_str(value[0]) + mqtt_str(value[1])
    return bytes([pid]) + v


def props(*pairs) -> bytes:
    """Property block (length + properties) from (id, value) pairs."""
    raw = b"".join(prop(pid, v) for pid, v in pairs)
    return varint(len(raw)) + raw


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    mult, n = 1, 0
    while True:
        b = data[pos]
        pos += 1
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return n, pos


def parse_props(data: bytes, pos: int) -> tuple[dict[int, list], int]:
    """Parse a property block at `pos`; returns ({id: [values...]}, position after it)."""
    length, pos = _read_varint(data, pos)
    end = pos + length
    out: dict[int, list] = {}
    while pos < end:
        pid = data[pos]
        pos += 1
        kind = _KIND.get(pid)
        if kind == "byte":
            v = data[pos]
            pos += 1
        elif kind == "u16":
            (v,) = struct.unpack("!H", data[pos:pos + 2])
            pos += 2
        elif kind == "u32":
            (v,) = struct.unpack("!I", data[pos:pos + 4])
            pos += 4
        elif kind == "varint":
            v, pos = _read_varint(data, pos)
        elif kind in ("str", "bin"):
            (n,) = struct.unpack("!H", data[pos:pos + 2])
            v = data[pos + 2:pos + 2 + n]
            v = v.decode() if kind == "str" else bytes(v)
            pos += 2 + n
        elif kind == "pair":
            (n,) = struct.unpack("!H", data[pos:pos + 2])
            k = data[pos + 2:pos + 2 + n].decode()
            pos += 2 + n
            (n,) = struct.unpack("!H", data[pos:pos + 2])
            v = (k, data[pos + 2:pos + 2 + n].decode())
            pos += 2 + n
        else:
            raise ValueError(f"unknown property id {pid:#04x} in {data.hex()}")
        out.setdefault(pid, []).append(v)
    return out, end


def connect5(client_id: str = "", clean: bool = True, keepalive: int = 60, properties=()) -> bytes:
    flags = 0x02 if clean else 0
    body = mqtt_str("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive) + props(*properties) + mqtt_str(client_id)
    return packet(0x10, body)


def publish5(topic: str | bytes, payload: bytes = b"", qos: int = 0, retain: bool = False, packet_id: int = 1,
             properties=()) -> bytes:
    body = mqtt_str(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    body += props(*properties) + payload
    return packet(0x30 | (qos << 1) | (1 if retain else 0), body)


def subscribe5(topic_filter: str, options: int = 0, packet_id: int = 1, properties=()) -> bytes:
    body = struct.pack("!H", packet_id) + props(*properties) + mqtt_str(topic_filter) + bytes([options])
    return packet(0x82, body)


def ack5(first_byte: int, packet_id: int) -> bytes:
    """PUBACK (0x40) / PUBREC (0x50) / PUBREL (0x62) / PUBCOMP (0x70), reason 0 (short form)."""
    return packet(first_byte, struct.pack("!H", packet_id))


@dataclass
class Pub:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    props: dict = field(default_factory=dict)


def parse_publish5(pkt: mqttraw.Packet) -> Pub:
    assert pkt.type == mqttraw.PUBLISH, pkt
    qos = (pkt.flags >> 1) & 3
    (tlen,) = struct.unpack("!H", pkt.body[:2])
    topic = pkt.body[2:2 + tlen].decode()
    pos = 2 + tlen
    pid = None
    if qos:
        (pid,) = struct.unpack("!H", pkt.body[pos:pos + 2])
        pos += 2
    p, pos = parse_props(pkt.body, pos)
    return Pub(topic, pkt.body[pos:], qos, bool(pkt.flags & 1), bool(pkt.flags & 8), pid, p)


def parse_connack5(pkt: mqttraw.Packet) -> tuple[int, int, dict]:
    """(ack flags, reason code, properties)."""
    assert pkt.type == mqttraw.CONNACK, pkt
    p, _ = parse_props(pkt.body, 2)
    return pkt.body[0], pkt.body[1], p


class Raw5(mqttraw.RawClient):
    """RawClient speaking MQTT 5 with properties."""

    def __init__(self, broker, timeout: float = 5.0):
        super().__init__(broker.host, broker.port, timeout=timeout)
        self.version = 5
        self.connack_props: dict = {}

    def connect5(self, client_id: str = "", clean: bool = True, keepalive: int = 60, properties=()) -> dict:
        """CONNECT with properties; asserts success, returns the CONNACK properties."""
        self.send(connect5(client_id, clean, keepalive, properties))
        _, rc, p = parse_connack5(self.expect(mqttraw.CONNACK))
        assert rc == 0, f"CONNACK refused: {rc:#04x}"
        self.connack_props = p
        return p

    def subscribe5(self, topic_filter: str, options: int = 0, packet_id: int = 1, properties=()) -> mqttraw.Packet:
        self.send(subscribe5(topic_filter, options, packet_id, properties))
        ack = self.expect(mqttraw.SUBACK)
        assert ack.body[-1] < 0x80, f"SUBACK refused: {ack!r}"
        return ack

    def next_publish(self, timeout: float = TIMEOUT) -> Pub:
        """Next PUBLISH, skipping nothing: any other packet is an error."""
        return parse_publish5(self.expect(mqttraw.PUBLISH, timeout))

    def publishes(self, quiet: float = 0.5) -> list[Pub]:
        """PUBLISH packets until `quiet` seconds pass without one."""
        out = []
        while True:
            try:
                pkt = self.read_packet(quiet)
            except TimeoutError:
                return out
            out.append(parse_publish5(pkt))


def wait_until(pred, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
