"""The three brokers under test: explicit configs, start/stop by PID, liveness and log tails.

Every broker is started fresh for every measured run (see README: method), in its own temp
directory, with `ulimit -n` raised to NOFILE and, for pinned scenarios, `taskset -c 0`.
Every setting written below is listed (with why) in bench/README.md; keep the two in sync.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

NOFILE = 20000
BROKER_CPU = "0"
GENERATOR_CPU = "1"

# Live child processes (brokers and generators), killed by PID on exit.
_LIVE: dict[int, subprocess.Popen] = {}


def raise_nofile() -> None:
    """preexec_fn: raise the open-files limit of the child to NOFILE."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= NOFILE else NOFILE
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, new_hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(NOFILE, hard), hard))


def spawn(cmd: list[str], *, cwd=None, env=None, stdout=None, stderr=None) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=raise_nofile,
        start_new_session=True,  # a Ctrl-C on the runner's terminal goes to the runner only
    )
    _LIVE[proc.pid] = proc
    return proc


def kill(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always by PID."""
    try:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
    except ProcessLookupError:
        pass
    finally:
        _LIVE.pop(proc.pid, None)


def kill_all() -> None:
    for proc in list(_LIVE.values()):
        kill(proc, grace=1.0)


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def run_main(main) -> None:
    """Runs a runner's `main()` and exits with its status; SIGTERM/SIGHUP end it like Ctrl-C and
    every broker it started is killed on the way out."""
    import atexit
    import sys

    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    atexit.register(kill_all)
    sys.exit(main())


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not listening on 127.0.0.1:{port} after {timeout:.0f} s")


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return ANSI.sub("", "".join(f.readlines()[-lines:]))
    except OSError as e:
        return f"(no log: {e})"


class Broker:
    """One broker kind. `start()` launches a fresh process; `stop()` ends it."""

    name = "?"
    label = "?"
    # Connections per second per generator process in the idle-connections scenario, when lower
    # than the scenario's: a broker that accepts slower than clients connect overflows its listen
    # backlog, and the dropped SYNs come back after seconds of exponential backoff.
    max_connect_rate: int | None = None

    # Transports besides plain TCP this broker is run over (transport-cost scenarios).
    transports: tuple[str, ...] = ("tcp",)

    # Start a fresh process between the warm-up and the measured run (for a broker that does
    # not survive its warm-up's clients leaving; the report says which).
    restart_after_warmup = False

    def __init__(self, port: int, transport_ports: dict[str, int] | None = None, pki: "Pki | None" = None):
        self.port = port
        # {"tls": port, "ws": port, "wss": port}: one loopback port per extra transport.
        self.transport_ports = transport_ports or {}
        self.pki = pki
        self.transport = "tcp"  # of the current run, set by start()
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None

    def supports(self, transport: str) -> bool:
        return transport == "tcp" or (transport in self.transports and transport in self.transport_ports
                                      and (self.pki is not None or transport == "ws"))

    # --- to override ---
    def command(self, workdir: Path) -> tuple[list[str], dict | None]:
        raise NotImplementedError

    def ports(self) -> list[int]:
        extra = [self.transport_ports[self.transport]] if self.transport != "tcp" else []
        return [self.port, *extra]

    def port_for(self, mqtt_version: str, transport: str = "tcp") -> int:
        return self.transport_ports[transport] if transport != "tcp" else self.port

    def version(self) -> str:
        raise NotImplementedError

    # --- common ---
    def start(self, workdir: Path, pinned: bool, transport: str = "tcp") -> None:
        if not self.supports(transport):
            raise RuntimeError(f"{self.label} is not set up for transport {transport}")
        self.transport = transport
        workdir.mkdir(parents=True, exist_ok=True)
        cmd, env = self.command(workdir)
        if pinned:
            cmd = ["taskset", "-c", BROKER_CPU, *cmd]
        self.cmd = cmd
        self.log = workdir / "broker.log"
        with open(self.log, "wb") as log:
            self.proc = spawn(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        for port in self.ports():
            wait_port(port, self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            kill(self.proc)
            self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log, lines) if self.log else ""


class Pki:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost (EC P-256), made with
    the openssl CLI in `directory`. The files are world-readable: Mosquitto reads them after
    dropping to the mosquitto user."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        # The temp dir (mkdtemp: 0700) and this one must be traversable by the mosquitto user.
        os.chmod(directory.parent, 0o755)
        os.chmod(directory, 0o755)
        self.dir = directory
        self.ca = directory / "ca.pem"
        self.cert = directory / "server.pem"
        self.key = directory / "server.key"
        ca_key = directory / "ca.key"
        csr = directory / "server.csr"
        ext = directory / "server.ext"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for cmd in (
            ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(self.ca), "-days", "7",
             "-subj", "/CN=portico-bench throwaway CA"],
            ["openssl", "req", *ec, "-keyout", str(self.key), "-out", str(csr), "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(self.cert), "-days", "7", "-extfile", str(ext)],
        ):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[:3])} failed: {r.stderr.strip()[-300:]}")
        for f in (self.ca, self.cert, self.key):
            os.chmod(f, 0o644)


class Portico(Broker):
    name = "portico"
    label = "Portico"
    transports = ("tcp", "tls", "ws", "wss")

    def __init__(self, port: int, binary: Path, repo: Path, transport_ports=None, pki=None):
        super().__init__(port, transport_ports, pki)
        self.binary = binary
        self.repo = repo

    def command(self, workdir):
        env = dict(os.environ)
        # Built-in defaults (etc/portico.toml as shipped) except these four (the WebSocket
        # listener is off so that it does not take port 8083 from another broker under test).
        env.update(
            {
                "PORTICO_LISTENERS__TCP__DEFAULT__BIND": f"127.0.0.1:{self.port}",
                "PORTICO_LISTENERS__WS__DEFAULT__ENABLE": "false",
                # The HTTP API would take 0.0.0.0:18083, which EMQX uses too when run side by side.
                "PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE": "false",
                "PORTICO_SYS_TOPICS__SYS_MSG_INTERVAL": "disabled",
                "PORTICO_SYS_TOPICS__SYS_HEARTBEAT_INTERVAL": "disabled",
            }
        )
        # Transport-cost runs: the listener of the run's transport on its own port, the ssl/wss
        # certificate from the runner's throwaway CA; everything else as shipped.
        kind = {"tls": "SSL", "ws": "WS", "wss": "WSS"}.get(self.transport)
        if kind:
            pre = f"PORTICO_LISTENERS__{kind}__DEFAULT__"
            env[pre + "ENABLE"] = "true"
            env[pre + "BIND"] = f"127.0.0.1:{self.transport_ports[self.transport]}"
            if self.transport != "ws":
                assert self.pki is not None
                env[pre + "SSL_OPTIONS__CERTFILE"] = str(self.pki.cert)
                env[pre + "SSL_OPTIONS__KEYFILE"] = str(self.pki.key)
        env.pop("PORTICO_CONFIG", None)
        env.pop("PORTICO_LOG", None)
        # cwd is the temp dir, so node.data_dir ("data") lands there.
        return [str(self.binary), "start"], env

    def version(self):
        def git(*args):
            r = subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, text=True)
            return r.stdout.strip()

        rev = git("rev-parse", "--short=12", "HEAD") or "unknown"
        dirty = " (dirty tree)" if git("status", "--porcelain", "--untracked-files=no") else ""
        return f"portico git {rev}{dirty}"


MOSQUITTO_CONF = """\
# Written by bench/runner/brokers.py. Mosquitto defaults except the lines below.
listener {port} 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
connection_messages false
# Mosquitto's default (false) leaves Nagle on, which adds milliseconds to every message at
# moderate rates; the other brokers set TCP_NODELAY, so Mosquitto does too for a fair
# latency comparison.
set_tcp_nodelay true
"""


MOSQUITTO_TRANSPORT = """\
# Transport-cost run: a second listener for {transport}.
listener {port} 127.0.0.1
"""
MOSQUITTO_WEBSOCKETS = "protocol websockets\n"
MOSQUITTO_TLS = "certfile {cert}\nkeyfile {key}\n"


class Mosquitto(Broker):
    name = "mosquitto"
    label = "Mosquitto"
    binary = "/usr/sbin/mosquitto"
    # Debian's build has websockets (libwebsockets): `protocol websockets` on a listener.
    transports = ("tcp", "tls", "ws", "wss")

    def command(self, workdir):
        conf = workdir / "mosquitto.conf"
        text = MOSQUITTO_CONF.format(port=self.port)
        if self.transport != "tcp":
            text += MOSQUITTO_TRANSPORT.format(transport=self.transport, port=self.transport_ports[self.transport])
            if self.transport in ("ws", "wss"):
                text += MOSQUITTO_WEBSOCKETS
            if self.transport in ("tls", "wss"):
                assert self.pki is not None
                text += MOSQUITTO_TLS.format(cert=self.pki.cert, key=self.pki.key)
        conf.write_text(text)
        return [self.binary, "-c", str(conf)], None

    def version(self):
        r = subprocess.run([self.binary, "-h"], capture_output=True, text=True)
        lines = (r.stdout or r.stderr).splitlines()
        return lines[0].strip() if lines else "mosquitto (unknown version)"


RUMQTTD_TOML = """\
# Written by bench/runner/brokers.py, from rumqttd 0.20.0's rumqttd.toml example: same keys and
# values except router.max_connections (10010 -> 20480, for 19,000 idle connections),
# next_connection_delay_ms (1 -> 0: the example accepts at most 1,000 connections/s per server),
# listen addresses (loopback, our ports); no prometheus, console, websocket or bridge.
id = 0

[router]
id = 0
max_connections = 20480
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{v4}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:{v5}"
next_connection_delay_ms = 0
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
"""


class Rumqttd(Broker):
    name = "rumqttd"
    label = "rumqttd"
    # rumqttd 0.20.0's router stops serving after the 1 -> 100 fan-out warm-up's clients
    # disconnect: every new link then fails with `Link(Send("SendError(..)"))` and the measured
    # run's subscribers are closed at once (5 of 5 rounds on 2026-11-22). A fresh process for the
    # measured run is the fairest way to still measure it.
    restart_after_warmup = True
    # rumqttd's accept loop sleeps next_connection_delay_ms after every accept even when it is 0
    # (a tokio timer tick): ~600 accepts/s here. 2 x 250/s stays below that.
    max_connect_rate = 250

    def __init__(self, port: int, binary: str):
        super().__init__(port)  # plain TCP only here (its ws listener is not set up)
        self.v5_port = port + 1
        self.binary = binary

    def ports(self):
        return [self.port, self.v5_port]

    def port_for(self, mqtt_version, transport="tcp"):
        return self.v5_port if mqtt_version == "5" else self.port

    def command(self, workdir):
        conf = workdir / "rumqttd.toml"
        conf.write_text(RUMQTTD_TOML.format(v4=self.port, v5=self.v5_port))
        env = dict(os.environ, NO_COLOR="1")  # plain log lines (tracing-subscriber honours NO_COLOR)
        return [self.binary, "--quiet", "--config", str(conf)], env

    def version(self):
        r = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return (r.stdout or r.stderr).strip() or "rumqttd (unknown version)"
