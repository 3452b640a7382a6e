"""Pytest fixtures for the Portico interoperability suite.

The ``broker`` fixture starts the broker under test on a free loopback port.
``INTEROP_BROKER=portico`` (default) runs ``INTEROP_PORTICO_BIN`` (default
``target/release/portico`` relative to the repository root);
``INTEROP_BROKER=mosquitto`` runs the reference broker instead, so the tests
themselves can be validated.  Tests marked ``portico_only`` are skipped under
mosquitto.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
BROKER_KIND = os.environ.get("INTEROP_BROKER", "portico").strip().lower()
if BROKER_KIND not in ("portico", "mosquitto"):
    raise pytest.UsageError(f"INTEROP_BROKER must be 'portico' or 'mosquitto', not {BROKER_KIND!r}")

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# Every broker process started by this session, so that nothing survives an
# interrupted run (see pytest_sessionfinish).
_LIVE_PROCS: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


class BrokerError(Exception):
    pass


class Broker:
    """One broker process on 127.0.0.1:<port>.

    ``restart()`` stops it (asserting a clean exit) and starts it again on the
    same port with the same data directory.
    """

    def __init__(self, kind: str, workdir: Path, env: dict[str, str] | None = None):
        self.kind = kind
        self.host = "127.0.0.1"
        self.port = free_port()
        self.ws_port = free_port()
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "broker.log"
        self._log_file = None
        self.starts = 0

    # -- command lines -------------------------------------------------------
    def _portico_cmd(self) -> tuple[list[str], dict[str, str]]:
        binary = Path(os.environ.get("INTEROP_PORTICO_BIN", "target/release/portico"))
        if not binary.is_absolute():
            binary = REPO_ROOT / binary
        if not binary.is_file():
            raise BrokerError(
                f"Portico binary not found at {binary}. Build it with "
                "`cargo build --release -p portico` (or `make interop`), set INTEROP_PORTICO_BIN, "
                "or run the suite against the reference broker with INTEROP_BROKER=mosquitto."
            )
        config = REPO_ROOT / "etc" / "portico.toml"
        # Inherited PORTICO_* variables would reconfigure (or, if unknown, refuse) the broker
        # under test: start from an environment without them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTICO_")}
        env.update(
            {
                "PORTICO_LISTENERS__TCP__DEFAULT__BIND": f"{self.host}:{self.port}",
                # The WebSocket listener is on by default at 0.0.0.0:8083; brokers run side by
                # side here, so give each its own loopback port.
                "PORTICO_LISTENERS__WS__DEFAULT__BIND": f"{self.host}:{self.ws_port}",
                "PORTICO_NODE__DATA_DIR": str(self.data_dir),
                # The HTTP API listens on 0.0.0.0:18083 by default; these tests do not use it.
                "PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE": "false",
                "PORTICO_LOG__CONSOLE__LEVEL": "info",
            }
        )
        env.update(self.extra_env)
        return [str(binary), "start", "--config", str(config)], env

    def _mosquitto_cmd(self) -> tuple[list[str], dict[str, str]]:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise BrokerError("mosquitto not found; run scripts/install-test-deps.sh")
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        # Map the Portico overrides the tests use onto mosquitto's options.
        mps = self.extra_env.get("PORTICO_MQTT__MAX_PACKET_SIZE")
        if mps:
            lines.append(f"max_packet_size {mps}")
        mta = self.extra_env.get("PORTICO_MQTT__MAX_TOPIC_ALIAS")
        if mta:
            lines.append(f"max_topic_alias {mta}")
        ska = self.extra_env.get("PORTICO_MQTT__SERVER_KEEPALIVE")
        if ska:
            # mosquitto sends Server Keep Alive when the client asks for more than max_keepalive.
            lines.append(f"max_keepalive {ska}")
        conf.write_text("\n".join(lines) + "\n")
        return [binary, "-c", str(conf)], dict(os.environ)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        assert self.proc is None, "broker already running"
        cmd, env = self._portico_cmd() if self.kind == "portico" else self._mosquitto_cmd()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n==== start #{self.starts + 1}: {' '.join(cmd)} ====\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(REPO_ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
        )
        _LIVE_PROCS.append(self.proc)
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._forget()
                raise BrokerError(f"{self.kind} exited with code {rc} during startup\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(
                    f"{self.kind} did not accept connections on {self.host}:{self.port} "
                    f"within {READY_TIMEOUT:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_sigterm(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit; on timeout kill it and raise."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BrokerError(f"{self.kind} did not exit within {timeout:.0f}s of SIGTERM\n{self.log_tail()}")
        self._forget()
        return rc

    def stop(self) -> None:
        """SIGTERM and assert a clean exit (code 0) within STOP_TIMEOUT."""
        if self.proc is None:
            return
        rc = self.proc.poll()
        if rc is not None:
            self._forget()
            raise BrokerError(f"{self.kind} had already exited with code {rc}\n{self.log_tail()}")
        self.send_sigterm()
        rc = self.wait_exit()
        if rc != 0:
            raise BrokerError(f"{self.kind} exited with code {rc} after SIGTERM (expected 0)\n{self.log_tail()}")

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            self._forget()

    def _forget(self) -> None:
        if self.proc is not None and self.proc in _LIVE_PROCS:
            _LIVE_PROCS.remove(self.proc)
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 60) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        return f"---- {self.kind} log tail ({self.log_path}) ----\n{_tail(self.log_path, lines)}"

    def __repr__(self) -> str:
        return f"<Broker {self.kind} {self.host}:{self.port}>"


def _start_broker(workdir: Path, env: dict[str, str] | None = None) -> Broker:
    b = Broker(BROKER_KIND, workdir, env)
    try:
        b.start()
        return b
    except BrokerError as e:
        msg = str(e)
    pytest.fail(msg, pytrace=False)


def _finish_broker(b: Broker) -> None:
    try:
        b.stop()
    except BrokerError as e:
        pytest.fail(str(e), pytrace=False)
    finally:
        b.kill()


@pytest.fixture(scope="module")
def _module_broker(tmp_path_factory):
    b = _start_broker(tmp_path_factory.mktemp("broker"))
    yield b
    _finish_broker(b)


@pytest.fixture
def broker(_module_broker, request):
    """The shared broker of this test module.

    Tests use unique topics and client ids, so one broker per module is
    enough.  The broker must still be running after every test: a crash is
    reported against the test that caused it, and the broker is restarted for
    the next one.
    """
    b = _module_broker
    if not b.alive():
        b.kill()
        msg = None
        try:
            b.start()
        except BrokerError as e:
            msg = str(e)
        if msg:
            pytest.fail(msg, pytrace=False)
    request.node._interop_brokers = [b]
    yield b
    if not b.alive():
        rc = b.proc.poll() if b.proc else None
        pytest.fail(f"{b.kind} died during the test (exit code {rc})\n{b.log_tail()}", pytrace=False)


@pytest.fixture
def broker_factory(tmp_path, request):
    """Start dedicated brokers with extra environment (config overrides).

    Every broker started is stopped at teardown with a clean-exit check
    (unless the test already stopped it).
    """
    started: list[Broker] = []
    request.node._interop_brokers = started

    def make(env: dict[str, str] | None = None) -> Broker:
        b = _start_broker(tmp_path / f"broker{len(started)}", env)
        started.append(b)
        return b

    yield make
    errors = []
    for b in started:
        try:
            if b.proc is not None and b.proc.poll() is not None:
                # The test signalled it itself (e.g. shutdown tests) and then failed.
                rc = b.wait_exit()
                if rc != 0:
                    errors.append(f"{b.kind} exited with code {rc}\n{b.log_tail()}")
            elif b.proc is not None:
                b.stop()
        except BrokerError as e:
            errors.append(str(e))
        finally:
            b.kill()
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def is_portico() -> bool:
    return BROKER_KIND == "portico"


def pytest_configure(config):
    config.addinivalue_line("markers", "portico_only: expected behaviour is Portico-specific; skipped under mosquitto")


def pytest_collection_modifyitems(config, items):
    if BROKER_KIND == "portico" or os.environ.get("INTEROP_RUN_PORTICO_ONLY") == "1":
        return
    skip = pytest.mark.skip(reason=f"portico_only (INTEROP_BROKER={BROKER_KIND})")
    for item in items:
        if "portico_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"interop broker: {BROKER_KIND}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("call", "setup"):
        for b in getattr(item, "_interop_brokers", []):
            rep.sections.append((f"broker log {b.kind}:{b.port}", b.log_tail()))


def pytest_sessionfinish(session, exitstatus):
    for p in list(_LIVE_PROCS):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def clients(broker):
    """Factory for paho clients on the shared broker; all closed at teardown."""
    from clients import ClientPool

    pool = ClientPool(broker)
    yield pool
    pool.close_all()


@pytest.fixture
def clients_for():
    """Like `clients`, for brokers made by `broker_factory`: clients_for(b).connected(...)."""
    from clients import ClientPool

    pools = []

    def make(b):
        pools.append(ClientPool(b))
        return pools[-1]

    yield make
    for p in pools:
        p.close_all()


@pytest.fixture
def clients5(broker):
    """Like `clients`, with MQTT 5 clients exposing properties (v5.Client5)."""
    from v5 import Pool5

    pool = Pool5(broker)
    yield pool
    pool.close_all()


@pytest.fixture
def clients5_for():
    """Like `clients_for`, with v5.Client5 clients."""
    from v5 import Pool5

    pools = []

    def make(b):
        pools.append(Pool5(b))
        return pools[-1]

    yield make
    for p in pools:
        p.close_all()
