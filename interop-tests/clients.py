"""Helpers around paho-mqtt 2.x and the mosquitto command-line clients.

Everything waits on events/queues with timeouts; nothing sleeps for a fixed
time except `expect_none`, which by nature has to wait out its window.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

V311 = 4
V5 = 5
VERSIONS = [V311, V5]
VERSION_IDS = {V311: "v311", V5: "v5"}
TIMEOUT = 5.0


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def topic_prefix() -> str:
    """A fresh topic namespace, so tests sharing a broker never interfere."""
    return f"it/{uuid.uuid4().hex[:10]}"


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Client:
    """A paho client with a background network loop and blocking helpers.

    Automatic reconnection is disabled: after a disconnect the client stays
    down, so takeover and will tests see exactly one session.
    """

    def __init__(self, broker, client_id: str | None = None, version: int = V5, clean: bool = True,
                 keepalive: int = 60, session_expiry: int | None = None, port: int | None = None,
                 transport: str = "tcp", ws_path: str = "/mqtt", tls: dict | None = None,
                 host: str | None = None):
        """`port`/`host` override the broker's MQTT/TCP address (e.g. its TLS or WebSocket
        port); `transport` is paho's ("tcp" or "websockets"); `tls` holds `tls_set` keyword
        arguments (ca_certs, certfile, keyfile) to connect over TLS."""
        self.broker = broker
        self.port = port if port is not None else broker.port
        self.host = host if host is not None else broker.host
        self.version = version
        self.client_id = client_id if client_id is not None else uid("c")
        self.clean = clean
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        kw = {}
        if version == V311:
            kw["clean_session"] = clean
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if version == V5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
            transport=transport,
            **kw,
        )
        if transport == "websockets":
            self.c.ws_set_options(path=ws_path)
        if tls is not None:
            self.c.tls_set(**tls)
        self.messages: queue.Queue[Msg] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack_rc = None
        self.session_present = None
        self.disconnect_rc = None
        self._subacks: dict[int, list] = {}
        self._suback_cv = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self._loop_started = False

    # -- callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack_rc = reason_code
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_rc = reason_code
        self.disconnected.set()
        client.loop_stop()  # safe from the loop thread: only flags termination

    def _on_message(self, client, userdata, message):
        self.messages.put(Msg(message.topic, bytes(message.payload), message.qos, bool(message.retain)))

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        with self._suback_cv:
            self._subacks[mid] = list(reason_code_list)
            self._suback_cv.notify_all()

    # -- operations ---------------------------------------------------------------
    def will(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> "Client":
        self.c.will_set(topic, payload, qos=qos, retain=retain)
        return self

    def connect(self, timeout: float = TIMEOUT, expect_success: bool = True) -> "Client":
        kw = {}
        if self.version == V5:
            kw["clean_start"] = self.clean
            if self.session_expiry is not None:
                p = Properties(PacketTypes.CONNECT)
                p.SessionExpiryInterval = self.session_expiry
                kw["properties"] = p
        self.c.connect(self.host, self.port, keepalive=self.keepalive, **kw)
        self.c.loop_start()
        self._loop_started = True
        if not self.connected.wait(timeout):
            raise AssertionError(f"no CONNACK for {self.client_id} within {timeout}s")
        if expect_success:
            assert not self.connack_rc.is_failure, f"CONNACK refused: {self.connack_rc}"
        return self

    def subscribe(self, topic: str | list[tuple[str, int]], qos: int = 0, timeout: float = TIMEOUT) -> list:
        """Subscribe and wait for SUBACK; returns the list of reason codes."""
        with self._suback_cv:
            if isinstance(topic, list):
                rc, mid = self.c.subscribe(topic)
            else:
                rc, mid = self.c.subscribe(topic, qos)
            assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
            ok = self._suback_cv.wait_for(lambda: mid in self._subacks, timeout)
        assert ok, f"no SUBACK within {timeout}s"
        return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                timeout: float = TIMEOUT) -> None:
        """Publish and wait until the QoS flow is complete (sent for QoS 0)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"publish to {topic} (qos {qos}) not completed within {timeout}s"

    def get(self, timeout: float = TIMEOUT) -> Msg:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout}s") from None

    def get_n(self, n: int, timeout: float = TIMEOUT) -> list[Msg]:
        return [self.get(timeout) for _ in range(n)]

    def expect_none(self, timeout: float = 0.5) -> None:
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: unexpected message {m}")

    def wait_disconnected(self, timeout: float = TIMEOUT):
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"{self.client_id} was not disconnected within {timeout}s")
        return self.disconnect_rc

    def disconnect(self, reason_code: int | None = None, timeout: float = TIMEOUT) -> None:
        """Normal DISCONNECT (optionally with an MQTT 5 reason code)."""
        if reason_code is not None:
            from paho.mqtt.reasoncodes import ReasonCode

            rc = ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code)
            self.c.disconnect(reasoncode=rc)
        else:
            self.c.disconnect()
        self.disconnected.wait(timeout)
        self.stop()

    def drop(self) -> None:
        """Close the TCP connection abruptly, without DISCONNECT."""
        sock = self.c.socket()
        self.c._thread_terminate = True  # stop the loop without sending anything
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()
        self.stop()

    def stop(self) -> None:
        if self._loop_started:
            self.c.loop_stop()
            self._loop_started = False

    def close(self) -> None:
        """Best-effort cleanup for fixtures/finally blocks."""
        if not self.disconnected.is_set() and self.connected.is_set():
            try:
                self.c.disconnect()
                self.disconnected.wait(1.0)
            except Exception:
                pass
        self.stop()
        try:
            s = self.c.socket()
            if s is not None:
                s.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ClientPool:
    """Creates clients and closes them all at teardown (see the `clients` fixture)."""

    def __init__(self, broker):
        self.broker = broker
        self.all: list[Client] = []

    def new(self, **kw) -> Client:
        c = Client(self.broker, **kw)
        self.all.append(c)
        return c

    def connected(self, **kw) -> Client:
        return self.new(**kw).connect()

    def close_all(self) -> None:
        for c in self.all:
            c.close()


def assert_broker_serves(broker, version: int = V5) -> None:
    """A fresh client can connect, subscribe and receive its own publish."""
    t = topic_prefix() + "/alive"
    with Client(broker, version=version) as c:
        c.connect()
        c.subscribe(t, 1)
        c.publish(t, b"alive", qos=1)
        m = c.get()
        assert (m.topic, m.payload) == (t, b"alive")


# -- mosquitto command-line clients -------------------------------------------------

def cli_version(version: int) -> str:
    return "mqttv5" if version == V5 else "mqttv311"


class MosquittoSub:
    """`mosquitto_sub -d -C n -W timeout` reading messages as `MSG qos retain hex` lines.

    The constructor returns once the SUBACK has been received (parsed from the
    `-d` debug output), so a publish afterwards is guaranteed to match.
    """

    def __init__(self, broker, topic: str, count: int, qos: int = 2, version: int = V5, wait: int = 10,
                 port: int | None = None, extra: tuple[str, ...] = ()):
        """`port` overrides the broker's MQTT port; `extra` are more command-line options
        (e.g. `--cafile ca.pem` for TLS)."""
        port = port if port is not None else broker.port
        self.proc = subprocess.Popen(
            # stdbuf: line-buffered stdout, so the SUBACK debug line arrives at once.
            ["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(port), "-V", cli_version(version),
             "-t", topic, "-q", str(qos), "-C", str(count), "-W", str(wait), "-d",
             "-i", uid("msub"), "-F", "MSG %q %r %x", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self._q: queue.Queue = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        self._wait_for("SUBACK", TIMEOUT)

    def _reader(self):
        for raw in self.proc.stdout:
            self._q.put(raw.decode(errors="replace").rstrip("\n"))
        self._q.put(None)

    def _wait_for(self, needle: str, timeout: float) -> None:
        while True:
            try:
                line = self._q.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                raise AssertionError(f"mosquitto_sub: no '{needle}' within {timeout}s; output: {self.lines}")
            if line is None:
                raise AssertionError(f"mosquitto_sub exited before '{needle}': {self.lines}")
            self.lines.append(line)
            if needle in line:
                return

    def result(self, timeout: float = 15.0) -> list[tuple[int, bool, bytes]]:
        """Wait for exit; returns [(qos, retain, payload)] of received messages."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"mosquitto_sub did not finish: {self.lines}")
        while True:
            line = self._q.get(timeout=TIMEOUT)
            if line is None:
                break
            self.lines.append(line)
        assert rc == 0, f"mosquitto_sub exited {rc}: {self.lines}"
        out = []
        for line in self.lines:
            if line.startswith("MSG "):
                parts = line.split(" ")
                hexpayload = parts[3] if len(parts) > 3 else ""
                out.append((int(parts[1]), parts[2] == "1", bytes.fromhex(hexpayload)))
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def mosquitto_pub(broker, topic: str, payload: bytes, qos: int = 0, version: int = V5, retain: bool = False,
                  tmp_path=None, port: int | None = None, extra: tuple[str, ...] = (),
                  client_id: str | None = None, expect_ok: bool = True) -> subprocess.CompletedProcess:
    """Runs mosquitto_pub; `port`/`extra` as for MosquittoSub. With `expect_ok=False` the
    result is returned whatever the exit code."""
    port = port if port is not None else broker.port
    args = ["mosquitto_pub", "-h", broker.host, "-p", str(port), "-V", cli_version(version),
            "-t", topic, "-q", str(qos), "-i", client_id or uid("mpub"), *extra]
    if retain:
        args.append("-r")
    stdin = None
    if payload == b"":
        args.append("-n")
    else:
        # `-s` reads the message from stdin as-is: arbitrary binary bytes.
        args.append("-s")
        stdin = payload
    r = subprocess.run(args, input=stdin, capture_output=True, timeout=15)
    if expect_ok:
        assert r.returncode == 0, f"mosquitto_pub failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
    return r
