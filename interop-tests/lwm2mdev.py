"""LwM2M helpers for test_lwm2m.py: the gateway's config, the Rust test device
(`cargo build --release -p portico-lwm2m --example lwm2m-device`) as a child process whose
stdout events the tests wait on, and an MQTT application speaking EMQX's LwM2M JSON."""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from clients import V311, Client
from coapraw import T_CON, coap_decode, coap_encode, request_options

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
TIMEOUT = 15.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lwm2m_env(udp_port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "PORTICO_GATEWAY__LWM2M__ENABLE": "true",
        "PORTICO_GATEWAY__LWM2M__XML_DIR": str(REPO_ROOT / "lwm2m-xml"),
        "PORTICO_GATEWAY__LWM2M__LISTENERS__UDP__DEFAULT__BIND": f"127.0.0.1:{udp_port}",
    }
    env.update(extra or {})
    return env


def wait_udp_ready(port: int) -> None:
    """The broker is up once MQTT accepts; the LwM2M listener answers any CoAP request."""
    deadline = time.monotonic() + TIMEOUT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.send(coap_encode(T_CON, 1, 1, b"r", request_options("ready")))
            try:
                coap_decode(s.recv(2048))
                return
            except (socket.timeout, ConnectionRefusedError):
                pass
    raise AssertionError("the LwM2M listener did not answer")


def device_binary() -> Path:
    """The example binary: INTEROP_LWM2M_DEVICE_BIN, else under CARGO_TARGET_DIR, else next
    to INTEROP_PORTICO_BIN, else target/release/examples."""
    explicit = os.environ.get("INTEROP_LWM2M_DEVICE_BIN")
    candidates = [Path(explicit)] if explicit else []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "examples" / "lwm2m-device")
    if os.environ.get("INTEROP_PORTICO_BIN"):
        candidates.append(Path(os.environ["INTEROP_PORTICO_BIN"]).parent / "examples" / "lwm2m-device")
    candidates.append(Path("target/release/examples/lwm2m-device"))
    for c in candidates:
        c = c if c.is_absolute() else REPO_ROOT / c
        if c.is_file():
            return c
    raise AssertionError(
        "lwm2m-device not found (tried " + ", ".join(map(str, candidates)) + "); build it with "
        "`cargo build --release -p portico-lwm2m --example lwm2m-device` (make interop does)"
    )


class Device:
    """The Rust test device as a child process. Its stdout is one event per line."""

    def __init__(self, port: int, ep: str, lifetime: int = 60, *args: str):
        self.ep = ep
        self.proc = subprocess.Popen(
            [str(device_binary()), f"127.0.0.1:{port}", ep, str(lifetime), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        self.lines: list[str] = []
        self._seen = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        """The next event line (after the last one waited for) matching `pattern`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._seen < len(self.lines):
                    line = self.lines[self._seen]
                    self._seen += 1
                    if m := rx.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and self._seen >= len(self.lines)):
                    raise AssertionError(f"{self.ep}: no line matching {pattern!r}; output:\n" + "\n".join(self.lines))
                self._cond.wait(left)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM: the device de-registers and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.ep} did not exit within {timeout}s of SIGTERM") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class App:
    """An MQTT application on `lwm2m/<ep>/up/#`: sends commands, waits for what comes up."""

    _ids = itertools.count(1000)

    def __init__(self, broker, ep: str):
        self.ep = ep
        self.client = Client(broker, version=V311).connect()
        self.client.subscribe(f"lwm2m/{ep}/up/#", qos=0)
        self.pending: list = []

    def get(self, match, timeout: float = TIMEOUT) -> tuple[str, dict]:
        """The next uplink (topic, JSON) for which `match(topic, json)` holds; others are kept."""
        for i, (topic, body) in enumerate(self.pending):
            if match(topic, body):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.ep}: no matching uplink within {timeout}s; kept: {self.pending}")
            try:
                m = self.client.messages.get(timeout=left)
            except queue.Empty:
                continue
            body = json.loads(m.payload)
            if match(m.topic, body):
                return m.topic, body
            self.pending.append((m.topic, body))

    def event(self, msg_type: str, timeout: float = TIMEOUT) -> dict:
        return self.get(lambda t, b: b.get("msgType") == msg_type, timeout)[1]

    def publish(self, body: dict) -> None:
        self.client.publish(f"lwm2m/{self.ep}/dn/cmd", json.dumps(body).encode())

    def command(self, msg_type: str, data: dict, timeout: float = TIMEOUT, **extra) -> dict:
        """Publishes a command with a fresh reqID and returns its reply's `data`."""
        req = next(self._ids)
        self.publish({"reqID": req, "msgType": msg_type, "data": data, **extra})
        _, body = self.get(lambda t, b: t.endswith("/up/resp") and b.get("reqID") == req
                           and b.get("msgType") == msg_type, timeout)
        return body

    def close(self) -> None:
        self.client.close()
