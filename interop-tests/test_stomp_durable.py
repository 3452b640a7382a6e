"""STOMP durable subscribers (an ActiveMQ-style `client-id` CONNECT header) and STOMP over TLS
and over WebSocket over TLS, with stomp.py and paho-mqtt. The shared helpers are those of
test_stomp.py."""

import pytest
import stomp
from stomp.adapter.ws import WSStompConnection

from clients import V311, Client, topic_prefix, uid
from conftest import _finish_broker, free_port
from pki import Pki
from test_stomp import TIMEOUT, Events, start_gateway, subscribe, wait_port

pytestmark = pytest.mark.portico_only


def durable(b, client_id: str):
    """A stomp.py 1.2 client naming itself with `client-id`."""
    conn = stomp.Connection12([("127.0.0.1", b.stomp_port)], timeout=TIMEOUT)
    events = Events()
    conn.set_listener("events", events)
    conn.connect(headers={"client-id": client_id}, wait=True)
    return conn, events


def acknowledge(conn, events, frame) -> None:
    rid = uid("ack")
    conn.ack(frame.headers["ack"], receipt=rid)
    events.receipt(rid)


def test_a_durable_subscriber_gets_its_unacked_and_missed_messages_again(tmp_path):
    b = start_gateway(tmp_path / "broker")
    mqtt = Client(b, version=V311).connect()
    try:
        dest = f"{topic_prefix()}/jobs"
        client_id = uid("worker")
        conn, ev = durable(b, client_id)
        subscribe(conn, ev, "1.2", dest, "w", ack="client-individual")
        mqtt.publish(dest, b"one", qos=1)
        mqtt.publish(dest, b"two", qos=1)
        one, two = ev.message(), ev.message()
        assert (one.body, two.body) == ("one", "two")
        acknowledge(conn, ev, one)
        conn.disconnect()  # "two" is not acknowledged
        mqtt.publish(dest, b"three", qos=1)

        conn, ev = durable(b, client_id)
        again, three = ev.message(), ev.message()
        assert again.body == "two" and again.headers.get("redelivered") == "true"
        assert again.headers["subscription"] == "w"
        assert three.body == "three" and "redelivered" not in three.headers
        # Subscribing again after CONNECT, as every client does, is not a duplicate.
        subscribe(conn, ev, "1.2", dest, "w", ack="client-individual")
        acknowledge(conn, ev, again)
        acknowledge(conn, ev, three)
        ev.no_message()
        assert ev.errors.empty()
        conn.disconnect()
    finally:
        mqtt.close()
        _finish_broker(b)


def test_a_durable_subscription_survives_a_broker_restart(tmp_path):
    b = start_gateway(tmp_path / "broker")
    try:
        dest = f"{topic_prefix()}/orders"
        client_id = uid("billing")
        conn, ev = durable(b, client_id)
        subscribe(conn, ev, "1.2", dest, "orders", ack="client")
        mqtt = Client(b, version=V311).connect()
        mqtt.publish(dest, b"unacked", qos=1)
        assert ev.message().body == "unacked"
        conn.disconnect()
        mqtt.publish(dest, b"while offline", qos=1)
        mqtt.close()
        b.restart()
        wait_port(b.stomp_port)

        conn, ev = durable(b, client_id)
        got = [ev.message(), ev.message()]
        assert [m.body for m in got] == ["unacked", "while offline"]
        assert all(m.headers["subscription"] == "orders" for m in got)
        acknowledge(conn, ev, got[1])  # `client` mode: cumulative
        mqtt = Client(b, version=V311).connect()
        mqtt.publish(dest, b"after restart", qos=1)
        assert ev.message().body == "after restart"
        mqtt.close()
        conn.disconnect()
    finally:
        _finish_broker(b)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_stomp_over_tls_and_wss_with_stomp_py(tmp_path, pki):
    ssl_port, wss_port = free_port(), free_port()
    env = {}
    for kind, port in (("SSL", ssl_port), ("WSS", wss_port)):
        p = f"PORTICO_GATEWAY__STOMP__LISTENERS__{kind}__DEFAULT__"
        env.update({
            p + "BIND": f"127.0.0.1:{port}",
            p + "SSL_OPTIONS__CERTFILE": str(pki.server_cert),
            p + "SSL_OPTIONS__KEYFILE": str(pki.server_key),
        })
    b = start_gateway(tmp_path / "broker", env)
    wait_port(ssl_port)
    wait_port(wss_port)
    prefix = topic_prefix()
    tls = stomp.Connection12([("127.0.0.1", ssl_port)], timeout=TIMEOUT)
    tls.set_ssl(for_hosts=[("127.0.0.1", ssl_port)], ca_certs=str(pki.ca))
    wss = WSStompConnection(
        [("127.0.0.1", wss_port)],
        ws_path="/stomp",
        header=["Sec-WebSocket-Protocol: v12.stomp"],
        timeout=TIMEOUT,
    )
    wss.set_ssl(for_hosts=[("127.0.0.1", wss_port)], ca_certs=str(pki.ca))
    try:
        tls_ev, wss_ev = Events(), Events()
        tls.set_listener("events", tls_ev)
        wss.set_listener("events", wss_ev)
        tls.connect(wait=True)
        wss.connect(wait=True)
        subscribe(wss, wss_ev, "1.2", f"{prefix}/+", "browser")
        tls.send(f"{prefix}/a", "over TLS", headers={"receipt": "r1"})
        tls_ev.receipt("r1")
        m = wss_ev.message()
        assert m.body == "over TLS" and m.headers["destination"] == f"{prefix}/a"
        subscribe(tls, tls_ev, "1.2", f"{prefix}/back", "backend")
        wss.send(f"{prefix}/back", "over WSS", headers={"receipt": "r2"})
        wss_ev.receipt("r2")
        assert tls_ev.message().body == "over WSS"
    finally:
        for conn in (tls, wss):
            if conn.is_connected():
                conn.disconnect()
        _finish_broker(b)
