"""The STOMP gateway with a third-party STOMP client (PyPI `stomp.py`, over TCP and over
WebSocket with `websocket-client`), paho-mqtt on the MQTT side of the same broker, and raw
sockets for the malformed input no real client sends."""

import queue
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import stomp
from stomp.adapter.ws import WSStompConnection

from clients import V311, Client, topic_prefix, uid
from conftest import _finish_broker, _start_broker, free_port
from v5 import Client5

pytestmark = pytest.mark.portico_only

TIMEOUT = 10.0
VERSIONS = ["1.0", "1.1", "1.2"]
CONNECTIONS = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}


def stomp_env(tcp: int, ws: int) -> dict[str, str]:
    return {
        "PORTICO_GATEWAY__STOMP__ENABLE": "true",
        "PORTICO_GATEWAY__STOMP__LISTENERS__TCP__DEFAULT__BIND": f"127.0.0.1:{tcp}",
        "PORTICO_GATEWAY__STOMP__LISTENERS__WS__DEFAULT__BIND": f"127.0.0.1:{ws}",
    }


def wait_port(port: int, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on 127.0.0.1:{port}")
            time.sleep(0.05)


def start_gateway(workdir, extra: dict[str, str] | None = None):
    tcp, ws = free_port(), free_port()
    b = _start_broker(workdir, {**stomp_env(tcp, ws), **(extra or {})})
    b.stomp_port, b.stomp_ws_port = tcp, ws
    wait_port(tcp)
    wait_port(ws)
    return b


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    b = start_gateway(tmp_path_factory.mktemp("stomp"))
    yield b
    _finish_broker(b)


@pytest.fixture
def gateway(gw, request):
    request.node._interop_brokers = [gw]
    assert gw.alive(), "the gateway died in an earlier test"
    yield gw
    assert gw.alive(), f"the gateway died during the test\n{gw.log_tail()}"


class Events(stomp.ConnectionListener):
    """Every frame the client received, by kind, in queues the test waits on."""

    def __init__(self):
        self.messages: queue.Queue = queue.Queue()
        self.receipts: queue.Queue = queue.Queue()
        self.errors: queue.Queue = queue.Queue()
        self.disconnected = False

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        self.receipts.put(frame.headers["receipt-id"])

    def on_error(self, frame):
        self.errors.put(frame)

    def on_disconnected(self):
        self.disconnected = True

    def message(self, timeout: float = TIMEOUT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no MESSAGE within {timeout}s") from None

    def no_message(self, quiet: float = 0.7) -> None:
        try:
            frame = self.messages.get(timeout=quiet)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected MESSAGE {frame.headers} {frame.body!r}")

    def receipt(self, rid: str, timeout: float = TIMEOUT) -> None:
        try:
            got = self.receipts.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no RECEIPT {rid} within {timeout}s") from None
        assert got == rid


def open_stomp(b, version: str, login=None, passcode=None, heartbeats=(0, 0)):
    kw = {} if version == "1.0" else {"heartbeats": heartbeats}
    conn = CONNECTIONS[version]([("127.0.0.1", b.stomp_port)], timeout=TIMEOUT, **kw)
    events = Events()
    conn.set_listener("events", events)
    conn.connect(login, passcode, wait=True)
    return conn, events


@pytest.fixture
def stomps(gateway):
    """Factory of connected stomp.py clients on the shared gateway; all closed at teardown."""
    opened = []

    def make(version: str, **kw):
        conn, events = open_stomp(gateway, version, **kw)
        opened.append(conn)
        return conn, events

    yield make
    for conn in opened:
        if conn.is_connected():
            conn.disconnect()


def subscribe(conn, events, version: str, dest: str, sub_id: str, ack: str = "auto") -> None:
    rid = uid("sub")
    conn.subscribe(dest, id=sub_id, ack=ack, headers={"receipt": rid})
    events.receipt(rid)


def ack(conn, version: str, frame, nack: bool = False) -> None:
    h = frame.headers
    rid = uid("ack")
    if version == "1.2":
        fn = conn.nack if nack else conn.ack
        fn(h["ack"], receipt=rid)
    elif version == "1.1":
        fn = conn.nack if nack else conn.ack
        fn(h["message-id"], h["subscription"], receipt=rid)
    else:
        assert not nack, "STOMP 1.0 has no NACK"
        conn.ack(h["message-id"], receipt=rid)
    conn.__dict__.setdefault("_rids", []).append(rid)


# --- basic flows, per version ----------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_send_subscribe_auto_with_receipts(stomps, version):
    dest = f"{topic_prefix()}/queue"
    sub, sub_events = stomps(version)
    subscribe(sub, sub_events, version, dest, "s1")
    pub, pub_events = stomps(version)
    pub.send(dest, "hello", headers={"receipt": "r-send", "x-trace": "abc"})
    pub_events.receipt("r-send")
    m = sub_events.message()
    assert m.body == "hello"
    assert m.headers["destination"] == dest
    assert m.headers["subscription"] == "s1"
    assert m.headers["x-trace"] == "abc"
    assert "ack" not in m.headers, "auto subscriptions carry no ack header"


@pytest.mark.parametrize("version", VERSIONS)
def test_client_individual_ack_and_nack_redelivers(stomps, version):
    dest = f"{topic_prefix()}/jobs"
    worker, ev = stomps(version)
    subscribe(worker, ev, version, dest, "w", ack="client-individual")
    producer, _ = stomps(version)
    producer.send(dest, "one")
    producer.send(dest, "two")
    first, second = ev.message(), ev.message()
    assert (first.body, second.body) == ("one", "two")
    if version == "1.2":
        assert first.headers["ack"] != second.headers["ack"]
    if version != "1.0":
        # NACK the first only: it alone comes back, marked redelivered.
        ack(worker, version, first, nack=True)
        again = ev.message()
        assert again.body == "one"
        assert again.headers.get("redelivered") == "true"
        ack(worker, version, again)
    else:
        ack(worker, version, first)
    ack(worker, version, second)
    for rid in worker._rids:
        ev.receipt(rid)
    ev.no_message()


@pytest.mark.parametrize("version", VERSIONS)
def test_client_ack_is_cumulative_and_nack_redelivers_all(stomps, version):
    dest = f"{topic_prefix()}/jobs"
    worker, ev = stomps(version)
    subscribe(worker, ev, version, dest, "w", ack="client")
    producer, _ = stomps(version)
    for body in ("a", "b", "c"):
        producer.send(dest, body)
    got = [ev.message() for _ in range(3)]
    assert [m.body for m in got] == ["a", "b", "c"]
    if version != "1.0":
        # A cumulative NACK of "b" returns "a" and "b"; "c" stays un-ACKed.
        ack(worker, version, got[1], nack=True)
        again = [ev.message(), ev.message()]
        assert sorted(m.body for m in again) == ["a", "b"]
        assert all(m.headers.get("redelivered") == "true" for m in again)
        got = [*again, got[2]]
    # ACKing the last MESSAGE received settles every earlier one of the subscription.
    latest = max(got, key=lambda m: int(m.headers["message-id"]))
    ack(worker, version, latest)
    for rid in worker._rids:
        ev.receipt(rid)
    ev.no_message()


@pytest.mark.parametrize("version", VERSIONS)
def test_transactions_commit_and_abort(stomps, version):
    dest = f"{topic_prefix()}/tx"
    sub, sev = stomps(version)
    subscribe(sub, sev, version, dest, "s")
    pub, pev = stomps(version)
    tx = pub.begin()
    pub.send(dest, "t1", transaction=tx)
    pub.send(dest, "t2", transaction=tx)
    sev.no_message()
    pub.commit(tx, headers={"receipt": "r-commit"})
    pev.receipt("r-commit")
    assert [sev.message().body, sev.message().body] == ["t1", "t2"]
    tx = pub.begin()
    pub.send(dest, "dropped", transaction=tx)
    pub.abort(tx, headers={"receipt": "r-abort"})
    pev.receipt("r-abort")
    pub.send(dest, "after", headers={"receipt": "r-after"})
    pev.receipt("r-after")
    assert sev.message().body == "after", "the aborted SEND was never delivered"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_heart_beats_keep_an_idle_connection_open(stomps, version):
    conn, ev = stomps(version, heartbeats=(300, 300))
    time.sleep(2.0)  # several times the 2 x 300 ms the server waits
    assert conn.is_connected() and not ev.disconnected
    assert ev.errors.empty()
    conn.send(f"{topic_prefix()}/alive", "still here", headers={"receipt": "r-alive"})
    ev.receipt("r-alive")


# --- raw sockets: silence and malformed input -------------------------------------------------


class Raw:
    def __init__(self, b):
        self.s = socket.create_connection(("127.0.0.1", b.stomp_port), timeout=TIMEOUT)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.s.sendall(data)

    def frames_until_close(self, timeout: float = TIMEOUT) -> list[tuple[str, dict, bytes]]:
        """Every frame until the server closes; fails if it does not close in time."""
        deadline = time.monotonic() + timeout
        while True:
            self.s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                raise AssertionError(f"the server did not close within {timeout}s; got {self.buf!r}") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            self.buf += chunk
        frames = []
        for raw in self.buf.split(b"\0"):
            raw = raw.lstrip(b"\r\n")
            if not raw:
                continue
            head, _, body = raw.partition(b"\n\n")
            lines = head.decode().split("\n")
            headers = dict(line.split(":", 1) for line in lines[1:])
            frames.append((lines[0], headers, body))
        return frames

    def close(self) -> None:
        self.s.close()


def test_missing_heart_beats_close_the_connection(gateway):
    raw = Raw(gateway)
    raw.send(b"CONNECT\naccept-version:1.2\nheart-beat:300,0\n\n\0")
    start = time.monotonic()
    frames = raw.frames_until_close()
    elapsed = time.monotonic() - start
    raw.close()
    assert [f[0] for f in frames] == ["CONNECTED", "ERROR"], frames
    assert frames[0][1]["heart-beat"] == "0,300"
    assert frames[1][1]["message"] == "Heart-beat timeout"
    assert elapsed >= 0.5, "closed before twice the agreed interval"


CONNECT = b"CONNECT\naccept-version:1.2\n\n\0"
BAD_INPUT = {
    "too_many_headers": CONNECT
    + b"SEND\ndestination:a\n" + b"".join(b"h%d:v\n" % i for i in range(11)) + b"\nx\0",
    "header_too_long": CONNECT + b"SEND\ndestination:a\nx-big:" + b"v" * 1100 + b"\n\nx\0",
    "body_too_long": CONNECT + b"SEND\ndestination:a\n\n" + b"x" * 70000 + b"\0",
    "content_length_too_long": CONNECT + b"SEND\ndestination:a\ncontent-length:70000\n\n",
    "send_without_destination": CONNECT + b"SEND\nreceipt:r\n\nx\0",
    "subscribe_without_id": CONNECT + b"SUBSCRIBE\ndestination:a/#\n\n\0",
    "unknown_command": CONNECT + b"PUBLISH\ndestination:a\n\nx\0",
    "send_before_connect": b"SEND\ndestination:a\n\nx\0",
    "duplicate_subscription_id": CONNECT
    + b"SUBSCRIBE\nid:0\ndestination:a/1\n\n\0SUBSCRIBE\nid:0\ndestination:a/2\n\n\0",
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gets_an_error_then_a_close(gateway, stomps, case):
    raw = Raw(gateway)
    raw.send(BAD_INPUT[case])
    frames = raw.frames_until_close()
    raw.close()
    commands = [f[0] for f in frames]
    assert commands[-1] == "ERROR", frames
    assert set(commands[:-1]) <= {"CONNECTED"}, frames
    error = frames[-1]
    assert error[1].get("message"), error
    assert error[2], "the ERROR body explains"
    if case == "send_without_destination":
        assert error[1].get("receipt-id") == "r"
    # The gateway keeps serving others.
    conn, ev = stomps("1.2")
    conn.send(f"{topic_prefix()}/ok", "x", headers={"receipt": "r-ok"})
    ev.receipt("r-ok")


# --- authentication ---------------------------------------------------------------------------


def test_login_and_passcode_go_through_the_authentication_chain(tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("user_id,password,is_superuser\nalice,wonderland,false\n")
    b = start_gateway(tmp_path / "broker", {
        "PORTICO_AUTHENTICATION__1__MECHANISM": "password_based",
        "PORTICO_AUTHENTICATION__1__BACKEND": "built_in_database",
        "PORTICO_AUTHENTICATION__1__BOOTSTRAP_FILE": str(csv),
        "PORTICO_AUTHENTICATION__1__BOOTSTRAP_TYPE": "plain",
        "PORTICO_MQTT__ALLOW_ANONYMOUS": "false",
    })
    try:
        for version in VERSIONS:
            conn, ev = open_stomp(b, version, login="alice", passcode="wonderland")
            assert conn.is_connected()
            conn.disconnect()
            conn = CONNECTIONS[version]([("127.0.0.1", b.stomp_port)], timeout=TIMEOUT)
            ev = Events()
            conn.set_listener("events", ev)
            with pytest.raises(stomp.exception.ConnectFailedException):
                conn.connect("alice", "not-the-password", wait=True)
            error = ev.errors.get(timeout=TIMEOUT)
            assert error.headers["message"] == "Login failed"
            conn.disconnect()
    finally:
        _finish_broker(b)


# --- WebSocket --------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["text-frames", "binary-frames"])
def test_stomp_over_websocket_with_stomp_py(gateway, binary):
    """stomp.py's WebSocket transport (websocket-client) offering the subprotocols browsers
    offer; it sends text frames by default, binary ones in binary_mode."""
    prefix = topic_prefix()
    conn = WSStompConnection(
        [("127.0.0.1", gateway.stomp_ws_port)],
        ws_path="/stomp",
        header=["Sec-WebSocket-Protocol: v10.stomp, v11.stomp, v12.stomp"],
        binary_mode=binary,
        timeout=TIMEOUT,
        heartbeats=(500, 500),
    )
    ev = Events()
    conn.set_listener("events", ev)
    mqtt = Client(gateway, version=V311).connect()
    try:
        conn.connect(wait=True)
        subscribe(conn, ev, "1.2", f"{prefix}/down/+", "ws", ack="client-individual")
        mqtt.subscribe(f"{prefix}/up", qos=1)
        mqtt.publish(f"{prefix}/down/1", b"to the browser", qos=1)
        m = ev.message()
        assert m.body == "to the browser"
        conn.ack(m.headers["ack"], receipt="r-ack")
        ev.receipt("r-ack")
        conn.send(f"{prefix}/up", "from the browser", headers={"receipt": "r-up"})
        ev.receipt("r-up")
        assert mqtt.get().payload == b"from the browser"
        time.sleep(1.5)  # heart-beats cross the WebSocket both ways
        assert conn.is_connected() and ev.errors.empty()
    finally:
        if conn.is_connected():
            conn.disconnect()
        mqtt.close()


def test_websocket_on_a_wrong_path_is_refused(gateway):
    conn = WSStompConnection([("127.0.0.1", gateway.stomp_ws_port)], ws_path="/mqtt",
                             reconnect_attempts_max=1, timeout=TIMEOUT)
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect(wait=True)


# --- cross-protocol ---------------------------------------------------------------------------


def test_stomp_send_reaches_mqtt5_with_headers_as_user_properties(gateway, stomps):
    dest = f"{topic_prefix()}/orders"
    sub = Client5(gateway).connect()
    try:
        sub.subscribe(dest, qos=1)
        conn, ev = stomps("1.2")
        conn.send(dest, '{"qty": 1}', content_type="application/json",
                  headers={"x-tenant": "acme", "priority": "high", "receipt": "r"})
        ev.receipt("r")
        m = sub.get()
        assert m.payload == b'{"qty": 1}'
        assert m.prop("ContentType") == "application/json"
        assert sorted(m.prop("UserProperty")) == [("priority", "high"), ("x-tenant", "acme")]
    finally:
        sub.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_publish_reaches_a_stomp_wildcard_subscription(gateway, stomps, version):
    prefix = topic_prefix()
    conn, ev = stomps(version)
    subscribe(conn, ev, version, f"{prefix}/sensors/+/temp", "w1")
    subscribe(conn, ev, version, f"{prefix}/alarms/#", "w2")
    device = Client(gateway, version=V311).connect()
    try:
        device.publish(f"{prefix}/sensors/7/temp", b"21.5", qos=1)
        device.publish(f"{prefix}/alarms/fire/floor2", b"!", qos=1)
        got = sorted((m.headers["subscription"], m.headers["destination"], m.body) for m in (ev.message(), ev.message()))
        assert got == [
            ("w1", f"{prefix}/sensors/7/temp", "21.5"),
            ("w2", f"{prefix}/alarms/fire/floor2", "!"),
        ]
    finally:
        device.close()


STOMPJS = Path(__file__).resolve().parent / "stompjs"


@pytest.mark.skipif(not (STOMPJS / "node_modules" / "@stomp" / "stompjs").is_dir() or not shutil.which("node"),
                    reason="@stomp/stompjs not installed (scripts/install-test-deps.sh)")
def test_stomp_over_websocket_with_stompjs(gateway):
    """@stomp/stompjs, the browser library, on Node's WebSocket: text frames, the v1x.stomp
    subprotocols, heart-beats, client-individual ACK, a SEND with a receipt."""
    prefix = topic_prefix()
    mqtt = Client(gateway, version=V311).connect()
    proc = None
    try:
        mqtt.subscribe(f"{prefix}/up", qos=1)
        proc = subprocess.Popen(
            ["node", "--experimental-websocket", "--no-warnings", "client.mjs",
             f"ws://127.0.0.1:{gateway.stomp_ws_port}/stomp", f"{prefix}/down/#", f"{prefix}/up"],
            cwd=STOMPJS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if '"subscribed"' in line:
                break
        assert any('"connected"' in line and '"1.2"' in line for line in lines), lines
        mqtt.publish(f"{prefix}/down/a/b", b"to stompjs", qos=1)
        out, _ = proc.communicate(timeout=30)
        lines += out.splitlines()
        assert proc.returncode == 0, lines
        assert any('"to stompjs"' in line for line in lines), lines
        assert mqtt.get().payload == b"from stompjs"
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        mqtt.close()
