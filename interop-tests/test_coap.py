"""The CoAP gateway (EMQX 5's pub/sub API over CoAP) with third-party CoAP clients: PyPI
`aiocoap` through its asyncio API, Debian libcoap's `coap-client-notls` on the command line, and
raw datagrams for what no well-behaved client sends; paho-mqtt on the MQTT side of the same
broker. Expected behaviour: gateway-semantics.md §2 and Portico's deliberate differences (PUT
publishes like POST, `/.well-known/core` answers 2.05, a RST ends an observation, observing a
topic again with a new token replaces the old token, an observation without `rh` gets the
retained messages). Raw CoAP helpers: coapraw.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import subprocess
import threading
import time

import aiocoap
import pytest
from aiocoap import CON, DELETE, GET, NON, POST, PUT
from aiocoap.numbers import Reliable, Unreliable

from clients import V5, V311, Client, uid
from coapraw import T_ACK, T_CON, T_NON, T_RST, RawPeer, coap_decode, coap_encode, dotted, request_options
from test_auth import acl_env, builtin_auth
from v5 import Client5

pytestmark = pytest.mark.portico_only

TIMEOUT = 10.0
COAP_CLIENT = "coap-client-notls"
BODY_4K = bytes(i * 7 % 251 for i in range(4096))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- fixtures ---------------------------------------------------------------------------------------

def coap_env(port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "PORTICO_GATEWAY__COAP__ENABLE": "true",
        "PORTICO_GATEWAY__COAP__LISTENERS__UDP__DEFAULT__BIND": f"127.0.0.1:{port}",
    }
    env.update(extra or {})
    return env


def wait_coap_ready(gw) -> None:
    """The broker is up once MQTT accepts connections; wait for the UDP listener as well."""
    deadline = time.monotonic() + TIMEOUT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", gw.coap_port))
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.send(coap_encode(T_CON, 1, 1, b"r", request_options(".well-known/core")))
            try:
                if coap_decode(s.recv(2048))["code"] == 0x45:
                    return
            except (socket.timeout, ConnectionRefusedError):
                pass
    raise AssertionError("the CoAP listener did not answer")


@pytest.fixture
def coap_gateway(broker_factory):
    """coap_gateway(extra_env) starts a broker with the CoAP gateway on a free UDP port."""

    def make(extra: dict[str, str] | None = None):
        port = free_udp_port()
        gw = broker_factory(coap_env(port, extra))
        gw.coap_port = port
        gw.coap = f"coap://127.0.0.1:{port}"
        wait_coap_ready(gw)
        return gw

    return make


@pytest.fixture
def gateway(coap_gateway):
    return coap_gateway()


@pytest.fixture
def raw(gateway):
    peers = []

    def make():
        peers.append(RawPeer(gateway))
        return peers[-1]

    yield make
    for p in peers:
        p.close()


def mqtt_sub(gw, topic: str, qos: int = 2, version: int = V5, user: tuple[str, str] | None = None) -> Client:
    c = Client(gw, version=version)
    if user is not None:
        c.c.username_pw_set(*user)
    c.connect()
    c.subscribe(topic, qos)
    return c


# -- aiocoap ----------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def coap_context():
    ctx = await aiocoap.Context.create_client_context()
    try:
        yield ctx
    finally:
        await ctx.shutdown()


def tuning(mtype):
    """aiocoap picks CON or NON from the message's transport tuning."""
    return Unreliable() if mtype == NON else Reliable()


async def ask(ctx, code, uri: str, payload: bytes = b"", mtype=CON, **options) -> aiocoap.Message:
    request = aiocoap.Message(code=code, uri=uri, payload=payload, transport_tuning=tuning(mtype), **options)
    response = await asyncio.wait_for(ctx.request(request).response, TIMEOUT)
    assert response.mtype == (aiocoap.ACK if mtype == CON else NON), response
    return response


class Observer:
    """An aiocoap observation whose notifications are all kept, in arrival order (its `async for`
    keeps only the latest). aiocoap's block-wise layer assembles large notifications, but it reads
    the notifications underneath with that lossy `async for`: `blockwise=False` observes without
    it, for tests of many small notifications in a row."""

    def __init__(self, ctx, uri: str, mtype=CON, blockwise: bool = True):
        message = aiocoap.Message(code=GET, uri=uri, observe=0, transport_tuning=tuning(mtype))
        self.request = ctx.request(message, handle_blockwise=blockwise)
        self.queue: asyncio.Queue = asyncio.Queue()
        obs = self.request.observation
        obs.register_callback(self.queue.put_nowait, _suppress_deprecation=True)
        obs.register_errback(self.queue.put_nowait, _suppress_deprecation=True)

    async def registered(self) -> aiocoap.Message:
        return await asyncio.wait_for(self.request.response, TIMEOUT)

    async def next(self, timeout: float = TIMEOUT) -> aiocoap.Message:
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no notification within {timeout}s") from None
        assert isinstance(item, aiocoap.Message), f"the observation ended: {item!r}"
        return item

    def nothing_queued(self) -> None:
        assert self.queue.empty(), f"unexpected notification: {self.queue.get_nowait()!r}"


async def in_thread(fn, *args, **kw):
    """Blocking paho calls without stalling aiocoap's loop (it ACKs notifications meanwhile)."""
    return await asyncio.to_thread(fn, *args, **kw)


# -- coap-client-notls ------------------------------------------------------------------------------

def coap_client(*args: str, timeout: float = 30, expect_ok: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run([COAP_CLIENT, "-B", "10", *args], capture_output=True, timeout=timeout)
    if expect_ok:
        assert run.returncode == 0, f"{COAP_CLIENT} {args} exited {run.returncode}: {run.stderr!r}"
    return run


# ==================================================================================================
# Publish: CoAP → MQTT

def test_aiocoap_posts_con_and_non_reach_mqtt_at_each_qos(gateway):
    t = f"coap/{uid('pub')}"
    sub = mqtt_sub(gateway, f"{t}/#")

    async def main():
        async with coap_context() as ctx:
            for qos in (0, 1, 2):
                r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}/q{qos}?qos={qos}", f"con{qos}".encode())
                assert (dotted(r.code), r.mtype, r.payload) == ("2.04", aiocoap.ACK, b"")
            # publish_qos = coap: without a qos query a NON request publishes at 0, a CON at 1.
            r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}/non", b"non", mtype=NON)
            assert (dotted(r.code), r.mtype) == ("2.04", aiocoap.NON)
            r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}/con", b"con")
            assert dotted(r.code) == "2.04"
            r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}/non2?q=2", b"non2", mtype=NON)
            assert dotted(r.code) == "2.04"

    asyncio.run(main())
    got = sorted((m.topic, m.payload, m.qos) for m in sub.get_n(6))
    assert got == sorted([
        (f"{t}/q0", b"con0", 0), (f"{t}/q1", b"con1", 1), (f"{t}/q2", b"con2", 2),
        (f"{t}/non", b"non", 0), (f"{t}/con", b"con", 1), (f"{t}/non2", b"non2", 2),
    ])
    sub.close()


def test_coap_client_posts_and_puts_reach_mqtt(gateway):
    t = f"coap/{uid('cli')}"
    sub = mqtt_sub(gateway, f"{t}/#")
    coap_client("-m", "post", "-e", "con payload", f"{gateway.coap}/ps/{t}/a?qos=1")
    coap_client("-N", "-m", "post", "-e", "non payload", f"{gateway.coap}/ps/{t}/b?qos=0")
    # Portico: PUT publishes like POST (EMQX 5 answers 4.05).
    coap_client("-m", "put", "-e", "put payload", f"{gateway.coap}/ps/{t}/c?qos=2")
    got = sorted((m.topic, m.payload, m.qos) for m in sub.get_n(3))
    assert got == [(f"{t}/a", b"con payload", 1), (f"{t}/b", b"non payload", 0), (f"{t}/c", b"put payload", 2)]
    sub.close()


def test_retain_and_expiry_queries(gateway):
    t = f"coap/{uid('ret')}"

    async def main():
        async with coap_context() as ctx:
            r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}/kept?qos=1&retain=true", b"kept")
            assert dotted(r.code) == "2.04"
            # Only `retain=true` retains.
            r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}/not?retain=1", b"not kept")
            assert dotted(r.code) == "2.04"
            r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}/exp?retain=true&expiry=3600", b"expires")
            assert dotted(r.code) == "2.04"

    asyncio.run(main())
    late = Client5(gateway).connect()
    late.subscribe5(f"{t}/#", 1)
    got = {m.topic: m for m in late.get_n(2)}
    assert sorted(got) == [f"{t}/exp", f"{t}/kept"]
    assert (got[f"{t}/kept"].payload, got[f"{t}/kept"].retain, got[f"{t}/kept"].qos) == (b"kept", True, 1)
    assert got[f"{t}/kept"].prop("MessageExpiryInterval") is None
    exp = got[f"{t}/exp"]
    assert exp.retain and exp.payload == b"expires"
    assert 0 < exp.prop("MessageExpiryInterval") <= 3600
    late.expect_none(0.5)
    late.close()


# ==================================================================================================
# Observe: MQTT → CoAP

def test_aiocoap_observer_gets_notifications_in_order_and_unobserves(gateway):
    t = f"coap/{uid('obs')}"
    pub = Client(gateway, version=V311).connect()

    async def main():
        async with coap_context() as ctx:
            # `+` is fine literally; `#` is percent-encoded in the URI (a Uri-Path of "#").
            plus = Observer(ctx, f"{gateway.coap}/ps/{t}/+/temp", blockwise=False)
            hash_ = Observer(ctx, f"{gateway.coap}/ps/{t}/other/%23", blockwise=False)
            for o in (plus, hash_):
                r = await o.registered()
                assert dotted(r.code) == "2.05"
                assert r.opt.observe is not None, "the registration answer carries Observe"
            sent = [(0, b"n0"), (1, b"c1"), (0, b"n2"), (1, b"c3"), (1, b"c4"), (0, b"n5")]
            for qos, payload in sent:
                await in_thread(pub.publish, f"{t}/kitchen/temp", payload, qos)
            got = [await plus.next() for _ in sent]
            # notify_type = qos: QoS 0 → NON, QoS 1 → CON (aiocoap acknowledges them).
            assert [(n.payload, n.mtype) for n in got] == [
                (p, NON if q == 0 else CON) for q, p in sent
            ]
            observes = [n.opt.observe for n in got]
            assert observes == sorted(set(observes)), f"Observe values increase: {observes}"
            assert all(dotted(n.code) == "2.05" and n.opt.content_format is None for n in got)

            await in_thread(pub.publish, f"{t}/other/deep/er", b"hash", 1)
            assert (await hash_.next()).payload == b"hash"

            # Unobserve: GET with Observe 1 → 2.07 (EMQX's code), then nothing more for it.
            r = await ask(ctx, GET, f"{gateway.coap}/ps/{t}/+/temp", observe=1)
            assert dotted(r.code) == "2.07"
            await in_thread(pub.publish, f"{t}/kitchen/temp", b"after", 1)
            await in_thread(pub.publish, f"{t}/other/x", b"control", 1)
            # The channel sends in order: had the first been sent, it would have come first.
            assert (await hash_.next()).payload == b"control"
            plus.nothing_queued()

    asyncio.run(main())
    pub.close()


def test_observe_queries_no_local_and_retain_handling(gateway):
    t = f"coap/{uid('nlrh')}"
    pub = Client(gateway, version=V311).connect()
    pub.publish(t, b"retained", qos=1, retain=True)

    async def main():
        async with coap_context() as a_ctx, coap_context() as b_ctx:
            # Without rh the retained message comes first (Portico; EMQX sends none).
            a = Observer(a_ctx, f"{gateway.coap}/ps/{t}", blockwise=False)
            assert dotted((await a.registered()).code) == "2.05"
            assert (await a.next()).payload == b"retained"
            b = Observer(b_ctx, f"{gateway.coap}/ps/{t}?nl=1&rh=2", blockwise=False)
            assert dotted((await b.registered()).code) == "2.05"
            r = await ask(b_ctx, POST, f"{gateway.coap}/ps/{t}", b"from b")
            assert dotted(r.code) == "2.04"
            await in_thread(pub.publish, t, b"from mqtt", 1)
            assert [(await a.next()).payload for _ in range(2)] == [b"from b", b"from mqtt"]
            # b's own message would have come before the MQTT one.
            assert (await b.next()).payload == b"from mqtt"
            b.nothing_queued()
            r = await ask(b_ctx, GET, f"{gateway.coap}/ps/{t}?rh=7", observe=0)
            assert (dotted(r.code), r.payload) == ("4.00", b"invalid rh")

    asyncio.run(main())
    pub.close()


def test_coap_client_observes_and_prints_notifications(gateway):
    t = f"coap/{uid('cliobs')}"
    pub = Client(gateway, version=V311).connect()
    # A retained message is the first notification: it tells when the observation is in place.
    pub.publish(t, b"first", qos=1, retain=True)
    proc = subprocess.Popen(["stdbuf", "-oL", COAP_CLIENT, "-w", "-s", "8", "-B", "14", f"{gateway.coap}/ps/{t}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines: queue.Queue = queue.Queue()

    def reader():
        for raw_line in proc.stdout:
            lines.put(raw_line.decode(errors="replace").strip())
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()

    def next_line() -> str | None:
        while True:
            try:
                line = lines.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError("coap-client printed nothing more") from None
            if line != "":
                return line

    try:
        assert next_line() == "first"
        pub.publish(t, b"second", qos=0)
        assert next_line() == "second"
        pub.publish(t, b"third", qos=1)
        assert next_line() == "third"
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0, proc.stderr.read()
    pub.close()


def test_large_notifications_arrive_whole_through_block2(gateway):
    t = f"coap/{uid('big')}"
    pub = Client(gateway, version=V311).connect()

    async def main():
        async with coap_context() as ctx:
            obs = Observer(ctx, f"{gateway.coap}/ps/{t}")
            assert dotted((await obs.registered()).code) == "2.05"
            await in_thread(pub.publish, t, BODY_4K, 1)
            n = await obs.next()
            assert n.payload == BODY_4K, f"{len(n.payload)} bytes"
            # Bursts: each body is fetched whole before the next notification goes out (the
            # follow-up GETs name only the resource).
            for qos in (0, 1):
                bodies = [bytes([65 + i]) * 4096 for i in range(3)]
                for body in bodies:
                    pub.c.publish(t, body, qos=qos)
                got = [(await obs.next()).payload for _ in bodies]
                assert [(len(b), set(b)) for b in got] == [(4096, {65}), (4096, {66}), (4096, {67})], qos
            await in_thread(pub.publish, t, b"small after", 0)
            assert (await obs.next()).payload == b"small after"

    asyncio.run(main())
    pub.close()


def test_notification_blocks_have_the_size_the_observer_asked_for(gateway, raw):
    """RFC 7959 §2.4 early negotiation: a Block2 option in the registration sets the block size
    of large notifications; follow-up GETs fetch the rest (same ETag)."""
    t = f"coap/{uid('szx')}"
    pub = Client(gateway, version=V311).connect()
    peer = raw()
    szx2 = [(23, b"\x02")]  # Block2 NUM 0, SZX 2: 64-byte blocks
    r = peer.ask(f"ps/{t}", int(GET), token=b"ob", observe=0, extra=szx2)
    assert dotted(r["code"]) == "2.05"
    body = bytes(range(200))
    pub.publish(t, body, qos=0)
    n = peer.recv()
    opts = dict(n["options"])
    assert (n["token"], len(n["payload"]), opts[23], opts[28]) == (b"ob", 64, b"\x0a", b"\xc8"), n
    got = n["payload"]
    for num in (1, 2, 3):
        r = peer.ask(f"ps/{t}", int(GET), token=bytes([num]), extra=[(23, bytes([num << 4 | 2]))])
        assert (dotted(r["code"]), dict(r["options"])[4]) == ("2.05", opts[4]), "same ETag"
        got += r["payload"]
    assert got == body
    pub.close()


def test_rst_to_a_notification_ends_the_observation(gateway, raw):
    """Portico follows RFC 7641 §3.6 here (EMQX keeps the observation)."""
    t = f"coap/{uid('rst')}"
    pub = Client(gateway, version=V311).connect()
    peer = raw()
    assert dotted(peer.ask(f"ps/{t}/a", int(GET), token=b"A", observe=0)["code"]) == "2.05"
    assert dotted(peer.ask(f"ps/{t}/b", int(GET), token=b"B", observe=0)["code"]) == "2.05"
    pub.publish(f"{t}/a", b"one", qos=0)
    n = peer.recv()
    assert (n["type"], n["token"], n["payload"]) == (T_NON, b"A", b"one")
    peer.send(coap_encode(T_RST, 0, n["mid"]))
    pub.publish(f"{t}/a", b"two", qos=0)
    pub.publish(f"{t}/b", b"control", qos=0)
    n = peer.recv()
    assert (n["token"], n["payload"]) == (b"B", b"control"), n
    # Observing the same topic with a new token replaces the old token (Portico; EMQX keeps
    # the first).
    assert dotted(peer.ask(f"ps/{t}/b", int(GET), token=b"B2", observe=0)["code"]) == "2.05"
    pub.publish(f"{t}/b", b"renewed", qos=1)
    n = peer.recv()
    assert (n["token"], n["payload"]) == (b"B2", b"renewed"), n
    pub.close()


def test_percent_encoded_wildcards_sent_as_they_are(gateway, raw):
    """A client that copies its URI path into Uri-Path options without decoding it (EMQX's
    documentation writes wildcards percent-encoded) still observes the wildcard: the gateway
    decodes the topic as EMQX does."""
    t = f"coap/{uid('pct')}"
    pub = Client(gateway, version=V311).connect()
    peer = raw()
    r = peer.ask(f"ps/{t}/%2B/%23", int(GET), token=b"W", observe=0)
    assert dotted(r["code"]) == "2.05"
    r = peer.ask(f"ps/{t}/a%2Fb", int(POST), query=("qos=0",), payload=b"encoded slash", token=b"P")
    assert dotted(r["code"]) == "2.04"
    n = peer.recv()
    assert (n["token"], n["payload"]) == (b"W", b"encoded slash")
    pub.publish(f"{t}/x/y/z", b"from mqtt", qos=0)
    assert peer.recv()["payload"] == b"from mqtt"
    r = peer.ask(f"ps/{t}/%zz", int(POST), payload=b"bad", token=b"Z")
    assert (dotted(r["code"]), r["payload"]) == ("4.00", b"invalid topic")
    pub.close()


def test_non_observer_gets_qos0_and_settings_change_types_and_topics(coap_gateway):
    """subscribe_qos = coap: a NON registration subscribes at QoS 0 (so even QoS 1 messages come
    as NON); notify_type = con makes every notification CON; the mountpoint prefixes topics both
    ways."""
    gw = coap_gateway({"PORTICO_GATEWAY__COAP__NOTIFY_TYPE": "con", "PORTICO_GATEWAY__COAP__MOUNTPOINT": "mp/"})
    t = f"coap/{uid('set')}"
    mqtt = mqtt_sub(gw, f"mp/{t}/up")

    async def main():
        async with coap_context() as ctx:
            non_obs = Observer(ctx, f"{gw.coap}/ps/{t}/down", mtype=NON, blockwise=False)
            r = await non_obs.registered()
            assert (dotted(r.code), r.mtype) == ("2.05", NON)
            await in_thread(mqtt.publish, f"mp/{t}/down", b"q1", 1)
            await in_thread(mqtt.publish, f"mp/{t}/down", b"q0", 0)
            got = [await non_obs.next(), await non_obs.next()]
            # notify_type = con: CON whatever the QoS.
            assert [(n.payload, n.mtype) for n in got] == [(b"q1", CON), (b"q0", CON)]
            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}/up", b"mounted", mtype=NON)
            assert dotted(r.code) == "2.04"

    asyncio.run(main())
    m = mqtt.get()
    assert (m.topic, m.payload, m.qos) == (f"mp/{t}/up", b"mounted", 0)
    mqtt.close()


# ==================================================================================================
# Connection mode and authentication

def test_connection_mode_with_aiocoap(coap_gateway):
    gw = coap_gateway({"PORTICO_GATEWAY__COAP__CONNECTION_REQUIRED": "true"})
    t = f"coap/{uid('conn')}"
    sub = mqtt_sub(gw, t)
    cid = uid("coapdev")
    events = mqtt_sub(gw, f"$SYS/brokers/+/gateway/coap/clients/{cid}/+", qos=0)

    async def main():
        async with coap_context() as ctx:
            base = f"{gw.coap}/mqtt/connection"
            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}", b"no login")
            assert (dotted(r.code), r.payload) == ("4.00", b"Missing token or clientid in connection mode")
            r = await ask(ctx, POST, f"{base}?clientid={cid}&username=U&password=P")
            assert dotted(r.code) == "2.01"
            token = r.payload.decode()
            assert 1 <= int(token) <= 2**32 - 1
            connected = json.loads(events.get().payload)
            assert (connected["clientid"], connected["proto_name"]) == (cid, "CoAP")

            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}?c={cid}&t={token}&qos=1", b"with token")
            assert dotted(r.code) == "2.04"
            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}?c={cid}", b"no token")
            assert (dotted(r.code), r.payload) == ("4.00", b"Missing token or clientid in connection mode")
            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}?c={cid}&t={int(token) % 4294967295 + 1}", b"bad")
            assert (dotted(r.code), r.payload) == ("4.01", b"Invalid token or clientid in connection mode")
            r = await ask(ctx, PUT, f"{base}?clientid={cid}&token={token}")
            assert dotted(r.code) == "2.04"
            r = await ask(ctx, DELETE, f"{base}?clientid={cid}&token={token}")
            assert dotted(r.code) == "2.02"
            disconnected = json.loads(events.get().payload)
            assert disconnected["clientid"] == cid and "disconnected_at" in disconnected
            # The token died with the connection.
            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}?c={cid}&t={token}", b"after delete")
            assert dotted(r.code) == "4.01"

    asyncio.run(main())
    m = sub.get()
    assert (m.topic, m.payload, m.qos) == (t, b"with token", 1)
    sub.expect_none(0.5)
    sub.close()
    events.close()


def test_connection_mode_with_coap_client_processes(coap_gateway):
    """Each coap-client run has its own source port: the token, not the address, names the client
    (EMQX's documented command-line use; a NAT rebinding looks the same)."""
    gw = coap_gateway({"PORTICO_GATEWAY__COAP__CONNECTION_REQUIRED": "true"})
    t = f"coap/{uid('connc')}"
    sub = mqtt_sub(gw, t)
    cid = uid("clidev")
    base = f"{gw.coap}/mqtt/connection"
    used: set[int] = set()

    def new_port() -> list[str]:
        # Each run from a port no earlier run of this test had: the OS may hand a just-freed
        # port out again, and a request from the wrong-token run's address goes to that
        # address's channel, not to the client it names.
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            if port not in used:
                used.add(port)
                return ["-p", str(port)]

    token = coap_client(*new_port(), "-m", "post", f"{base}?clientid={cid}&username=admin&password=public").stdout.strip()
    assert token.decode().isdigit(), token
    tok = token.decode()
    coap_client(*new_port(), "-m", "post", "-e", "from a new port", f"{gw.coap}/ps/{t}?clientid={cid}&token={tok}&qos=1")
    assert sub.get().payload == b"from a new port"
    coap_client(*new_port(), "-m", "put", f"{base}?clientid={cid}&token={tok}")
    # A wrong token does not move the connection.
    bad = coap_client(*new_port(), "-m", "post", "-e", "wrong", f"{gw.coap}/ps/{t}?clientid={cid}&token=1{tok}")
    assert b"4.01 Invalid token or clientid in connection mode" in bad.stdout + bad.stderr, bad
    coap_client(*new_port(), "-m", "post", "-e", "still here", f"{gw.coap}/ps/{t}?clientid={cid}&token={tok}")
    assert sub.get().payload == b"still here"
    # An observation from yet another run: the retained message shows it is in place.
    sub.publish(f"{t}/obs", b"retained", qos=1, retain=True)
    seen = coap_client(*new_port(), "-w", "-s", "2", f"{gw.coap}/ps/{t}/obs?clientid={cid}&token={tok}")
    assert seen.stdout.split() == [b"retained"], seen
    coap_client(*new_port(), "-m", "delete", f"{base}?clientid={cid}&token={tok}")
    sub.expect_none(0.5)
    sub.close()


def test_connectionless_requests_authenticate_with_builtin_users(coap_gateway, tmp_path):
    gw = coap_gateway(builtin_auth(tmp_path))
    t = f"coap/{uid('auth')}"
    sub = mqtt_sub(gw, t, user=("root", "toor"))

    async def main():
        async with coap_context() as ctx:
            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}?u=alice&p=nope", b"wrong password")
            assert (dotted(r.code), r.payload) == ("4.01", b"")
            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}", b"anonymous")
            assert dotted(r.code) == "4.01"
            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}?username=alice&password=wonderland", b"alice")
            assert dotted(r.code) == "2.04"
            # The same channel with other credentials is checked again.
            r = await ask(ctx, POST, f"{gw.coap}/ps/{t}?u=alice&p=nope", b"wrong again")
            assert dotted(r.code) == "4.01"
            obs = Observer(ctx, f"{gw.coap}/ps/{t}?u=nobody&p=x")
            assert dotted((await obs.registered()).code) == "4.01"

    asyncio.run(main())
    assert sub.get().payload == b"alice"
    sub.expect_none(0.5)
    sub.close()


def test_connection_mode_login_checks_builtin_users(coap_gateway, tmp_path):
    gw = coap_gateway(builtin_auth(tmp_path, {"PORTICO_GATEWAY__COAP__CONNECTION_REQUIRED": "true"}))

    async def main():
        async with coap_context() as ctx:
            base = f"{gw.coap}/mqtt/connection?clientid={uid('login')}"
            r = await ask(ctx, POST, f"{base}&username=alice&password=nope")
            # EMQX answers a failed login 4.00 (its documentation says 4.01).
            assert (dotted(r.code), r.payload) == ("4.00", b"Login Failed: not_authorized")
            r = await ask(ctx, POST, f"{base}&username=alice&password=wonderland")
            assert dotted(r.code) == "2.01" and r.payload.isdigit()

    asyncio.run(main())


def test_authorization_denials_are_4_01(coap_gateway, tmp_path):
    gw = coap_gateway(acl_env(tmp_path, '{deny, all, publish, ["coap/ro/#"]}.\n'
                                        '{deny, all, subscribe, ["coap/wo/#"]}.\n{allow, all}.\n'))
    watcher = mqtt_sub(gw, "coap/#")

    async def main():
        async with coap_context() as ctx:
            r = await ask(ctx, POST, f"{gw.coap}/ps/coap/ro/x", b"denied")
            assert (dotted(r.code), r.payload) == ("4.01", b"")
            obs = Observer(ctx, f"{gw.coap}/ps/coap/wo/%23")
            assert dotted((await obs.registered()).code) == "4.01"
            r = await ask(ctx, POST, f"{gw.coap}/ps/coap/wo/x", b"allowed")
            assert dotted(r.code) == "2.04"

    asyncio.run(main())
    m = watcher.get()
    assert (m.topic, m.payload) == ("coap/wo/x", b"allowed"), "the denied publish went nowhere"
    watcher.close()


# ==================================================================================================
# Block-wise uploads

def test_block1_uploads_from_aiocoap_and_coap_client(gateway, tmp_path):
    t = f"coap/{uid('blk')}"
    sub = mqtt_sub(gateway, f"{t}/#")

    async def main():
        async with coap_context() as ctx:
            r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}/aio?qos=1", BODY_4K)
            assert dotted(r.code) == "2.04"

    asyncio.run(main())
    m = sub.get()
    assert (m.topic, len(m.payload), m.payload == BODY_4K, m.qos) == (f"{t}/aio", 4096, True, 1)

    body = tmp_path / "body.bin"
    body.write_bytes(BODY_4K)
    coap_client("-m", "post", "-b", "64", "-f", str(body), f"{gateway.coap}/ps/{t}/cli?qos=1")
    m = sub.get()
    assert (m.topic, len(m.payload), m.payload == BODY_4K) == (f"{t}/cli", 4096, True)
    sub.expect_none(0.5)
    sub.close()


# ==================================================================================================
# Bad input

def test_bad_options_and_methods_get_their_codes(gateway, raw):
    peer = raw()
    t = f"coap/{uid('opt')}"
    cases = [
        ("unknown critical option", int(POST), [(2053, b"odd")], None, "4.02"),
        ("repeated critical option (Uri-Host)", int(POST), [(3, b"a"), (3, b"b")], None, "4.02"),
        ("non-empty If-None-Match", int(POST), [(5, b"x")], None, "4.02"),
        ("Block1 with SZX 7", int(POST), [(27, b"\x0f")], None, "4.00"),
        ("unknown method 0.31", 31, [], None, "4.05"),
        ("FETCH", 5, [], None, "4.05"),
        ("unknown elective option (ignored)", int(POST), [(2048, b"fine")], None, "2.04"),
    ]
    for what, code, extra, observe, expected in cases:
        r = peer.ask(f"ps/{t}", code, payload=b"x", extra=extra, observe=observe)
        assert (r["type"], dotted(r["code"])) == (T_ACK, expected), what
    # Observe without a token.
    r = peer.ask(f"ps/{t}", int(GET), token=b"", observe=0)
    assert (dotted(r["code"]), r["payload"]) == ("4.00", b"observe without token")


def test_duplicate_con_gets_the_same_response_and_publishes_once(gateway, raw):
    t = f"coap/{uid('dup')}"
    sub = mqtt_sub(gateway, t)
    peer = raw()
    mid = peer.next_mid()
    post = coap_encode(T_CON, int(POST), mid, b"tk", request_options(f"ps/{t}", ("qos=1",)), b"once")
    peer.send(post)
    first = peer.recv()
    peer.send(post)
    second = peer.recv()
    assert (first["type"], first["mid"], dotted(first["code"])) == (T_ACK, mid, "2.04")
    assert second == first
    # A repeated NON is dropped: no answer, no publish.
    mid = peer.next_mid()
    non = coap_encode(T_NON, int(POST), mid, b"nn", request_options(f"ps/{t}", ("qos=1",)), b"non once")
    peer.send(non)
    r = peer.recv()
    assert (r["type"], r["token"], dotted(r["code"])) == (T_NON, b"nn", "2.04")
    peer.send(non)
    r = peer.ask(f"ps/{t}", int(POST), query=("qos=1",), payload=b"next", token=b"nx")
    assert (r["token"], dotted(r["code"])) == (b"nx", "2.04"), "nothing answered the repeated NON"
    got = [m.payload for m in sub.get_n(3)]
    assert got == [b"once", b"non once", b"next"], "the duplicates were not published"
    sub.close()


def test_junk_datagrams_get_no_answer_and_the_gateway_serves_on(gateway, raw):
    t = f"coap/{uid('junk')}"
    sub = mqtt_sub(gateway, t)
    peer = raw()
    # From an address the gateway does not know yet: nothing opens a channel.
    for junk in (b"\x00", b"\x40\x02", b"\xff" * 40, b"\x80\x02\x00\x01", b"\x60\x45\x00\x02"):
        peer.send(junk)
    r = peer.ask(f"ps/{t}", int(POST), payload=b"one")
    assert dotted(r["code"]) == "2.04", "the first answer is to the first request"
    # From a known address: malformed NONs and short datagrams are ignored too.
    for junk in (b"", b"\x40", b"\x50\x02\x00", b"\x59\x02\x00\x09", b"\x50\x02\x00\x0a\xff", b"\x90\x02\x00\x0b"):
        peer.send(junk)
    r = peer.ask(f"ps/{t}", int(POST), payload=b"two")
    assert dotted(r["code"]) == "2.04"
    # A malformed CON whose header is readable (token length 9) is reset.
    peer.send(b"\x49\x02\x12\x34")
    r = peer.recv()
    assert (r["type"], r["mid"], r["code"]) == (T_RST, 0x1234, 0)
    # A CoAP ping is answered with RST.
    peer.send(coap_encode(T_CON, 0, 0x2345))
    r = peer.recv()
    assert (r["type"], r["mid"]) == (T_RST, 0x2345)
    assert [m.payload for m in sub.get_n(2)] == [b"one", b"two"]
    sub.close()


def test_wrong_paths_and_methods(gateway):
    t = f"coap/{uid('path')}"

    async def main():
        async with coap_context() as ctx:
            r = await ask(ctx, POST, f"{gateway.coap}/nowhere/{t}", b"x")
            assert dotted(r.code) == "4.00"
            r = await ask(ctx, POST, f"{gateway.coap}/ps", b"x")
            assert (dotted(r.code), r.payload) == ("4.00", b"invalid topic")
            r = await ask(ctx, GET, f"{gateway.coap}/ps/{t}")
            assert (dotted(r.code), r.payload) == ("4.00", b"invalid observe value")
            r = await ask(ctx, DELETE, f"{gateway.coap}/ps/{t}")
            assert dotted(r.code) == "4.05"
            r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}/%23", b"wildcard")
            assert dotted(r.code) == "4.00"
            r = await ask(ctx, POST, f"{gateway.coap}/ps/{t}?qos=3", b"x")
            assert dotted(r.code) == "4.00"
            # Portico answers RFC 6690 discovery (EMQX 5: 4.00).
            r = await ask(ctx, GET, f"{gateway.coap}/.well-known/core")
            assert (dotted(r.code), r.opt.content_format) == ("2.05", 40)
            assert b"</ps>" in r.payload

    asyncio.run(main())


# ==================================================================================================
# Heartbeat

def test_a_silent_observer_is_dropped_after_its_heartbeat(coap_gateway, raw):
    gw = coap_gateway({"PORTICO_GATEWAY__COAP__HEARTBEAT": "2s"})
    t = f"coap/{uid('hb')}"
    cid = uid("silent")
    events = mqtt_sub(gw, f"$SYS/brokers/+/gateway/coap/clients/{cid}/disconnected", qos=0)
    pub = Client(gw, version=V311).connect()
    peer = RawPeer(gw)
    try:
        r = peer.ask(f"ps/{t}", int(GET), query=(f"clientid={cid}",), token=b"hb", observe=0)
        assert dotted(r["code"]) == "2.05"
        pub.publish(t, b"while alive", qos=0)
        assert peer.recv()["payload"] == b"while alive"
        # Silence: 1.5 x 2 s later the gateway ends the client and its observation.
        event = json.loads(events.get(timeout=TIMEOUT).payload)
        assert (event["clientid"], event["reason"]) == (cid, "keepalive_timeout")
        pub.publish(t, b"too late", qos=0)
        # A new request from the same address opens a new channel; it is answered first.
        r = peer.ask(f"ps/{t}", int(POST), payload=b"", query=("qos=0",), token=b"p2")
        assert (r["token"], dotted(r["code"])) == (b"p2", "2.04")
    finally:
        peer.close()
    pub.close()
    events.close()
