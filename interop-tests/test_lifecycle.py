"""10. Graceful shutdown, and the fixture's restart()."""

import pytest

import mqttraw
from clients import V311, V5, assert_broker_serves, uid


def test_sigterm_closes_connections_and_exits_0(broker_factory):
    b = broker_factory()
    with mqttraw.RawClient(b.host, b.port) as v5, mqttraw.RawClient(b.host, b.port) as v3:
        v5.connect(uid("shut5"), version=V5)
        v3.connect(uid("shut3"), version=V311)
        b.send_sigterm()
        got = v5.wait_closed(timeout=8.0)
        assert all(p.type == mqttraw.DISCONNECT for p in got), got
        v3.expect_protocol_error(None, timeout=8.0)
        rc = b.wait_exit()
    assert rc == 0, f"exit code {rc} after SIGTERM\n{b.log_tail()}"


@pytest.mark.portico_only  # mosquitto 2.0.11 just closes the connection
def test_sigterm_sends_0x8b_and_exits_0(broker_factory, clients_for):
    b = broker_factory()
    paho = clients_for(b).connected(version=V5)
    with mqttraw.RawClient(b.host, b.port) as v5:
        v5.connect(uid("shut5"), version=V5)
        b.send_sigterm()
        v5.expect_protocol_error(0x8B, timeout=8.0)  # DISCONNECT 0x8B (Server shutting down), then close
        rc = b.wait_exit()
    assert rc == 0, f"exit code {rc} after SIGTERM\n{b.log_tail()}"
    assert paho.wait_disconnected().value == 0x8B


def test_restart_keeps_serving(broker_factory):
    b = broker_factory()
    assert_broker_serves(b)
    port = b.port
    b.restart()  # asserts the clean exit (code 0) of the first process
    assert b.port == port
    assert_broker_serves(b, V311)
