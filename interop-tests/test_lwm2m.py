"""The LwM2M gateway (`gateway.lwm2m`) against a real LwM2M client: the Rust test device
(`protocols/lwm2m/examples/lwm2m-device.rs`, built by `make interop`), driven from MQTT with
EMQX's JSON commands by hand and by the `emqxlwm2m` library; libcoap's `coap-client-openssl`
registering over DTLS with a PSK; raw CoAP for what no well-behaved device sends."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from clients import uid
from coapraw import T_ACK, T_CON, RawPeer, coap_decode, coap_encode, dotted, request_options
from lwm2mdev import TIMEOUT, App, Device, free_udp_port, lwm2m_env, wait_udp_ready

pytestmark = pytest.mark.portico_only

# The Device object's values as the LwM2M Core TS TLV example has them (the device's defaults).
SPEC_DEVICE = {
    "/3/0/0": "Open Mobile Alliance",
    "/3/0/1": "Lightweight M2M Client",
    "/3/0/2": "345000123",
    "/3/0/3": "1.0",
    "/3/0/6/0": 1, "/3/0/6/1": 5,
    "/3/0/7/0": 3800, "/3/0/7/1": 5000,
    "/3/0/8/0": 125, "/3/0/8/1": 900,
    "/3/0/9": 100,
    "/3/0/10": 15,
    "/3/0/11/0": 0,
    "/3/0/14": "+02:00",
    "/3/0/16": "U",
}


@pytest.fixture
def lwm2m_gateway(broker_factory):
    """lwm2m_gateway(extra_env) starts a broker with the LwM2M gateway on a free UDP port."""

    def make(extra: dict[str, str] | None = None):
        port = free_udp_port()
        gw = broker_factory(lwm2m_env(port, extra))
        gw.lwm2m_port = port
        wait_udp_ready(port)
        return gw

    return make


@pytest.fixture
def gateway(lwm2m_gateway):
    return lwm2m_gateway()


@pytest.fixture
def devices():
    """devices(port, ep, lifetime, *args) starts a test device; all are stopped at teardown."""
    started: list[Device] = []

    def make(*args, **kw) -> Device:
        started.append(Device(*args, **kw))
        return started[-1]

    yield make
    for d in started:
        d.kill()


@pytest.fixture
def apps():
    made: list[App] = []

    def make(broker, ep: str) -> App:
        made.append(App(broker, ep))
        return made[-1]

    yield make
    for a in made:
        a.close()


def content(reply: dict) -> dict:
    return {c["path"]: c["value"] for c in reply["data"].get("content", [])}


def code(reply: dict) -> tuple[str, str]:
    return reply["data"]["code"], reply["data"]["codeMsg"]


def registered(gateway, devices, apps, *args, ep: str | None = None, lifetime: int = 60):
    ep = ep or uid("dev")
    app = apps(gateway, ep)
    dev = devices(gateway.lwm2m_port, ep, lifetime, *args)
    dev.wait_for(r"^registered /rd/")
    reg = app.event("register")
    return dev, app, reg


def test_register_event_then_deregister_on_sigterm(gateway, devices, apps):
    dev, app, reg = registered(gateway, devices, apps, "--lwm2m", "1.1")
    assert reg["data"]["ep"] == dev.ep
    assert reg["data"]["lt"] == 60
    assert reg["data"]["lwm2m"] == "1.1"
    assert reg["data"]["b"] == "U"
    assert reg["data"]["alternatePath"] == "/"
    assert reg["data"]["objectList"] == ["/3/0", "/3303/0"]
    # An update on the trigger; the update event carries the merged registration.
    dev.send("update")
    dev.wait_for(r"^updated$")
    upd = app.event("update")
    assert upd["data"]["ep"] == dev.ep and upd["data"]["objectList"] == ["/3/0", "/3303/0"]
    assert dev.stop() == 0
    dev.wait_for(r"^deregistered 2\.02$")
    # Deregistered: a command for it reaches no device (nothing answers).
    app.publish({"reqID": 1, "msgType": "read", "data": {"path": "/3/0/0"}})
    app.client.expect_none(timeout=1.0)


def test_updates_come_every_half_lifetime(gateway, devices, apps):
    dev, app, _ = registered(gateway, devices, apps, lifetime=4)
    for _ in range(2):
        dev.wait_for(r"^updated$", timeout=TIMEOUT)
        assert app.event("update")["data"]["lt"] == 4
    # The updates keep the registration alive: commands still reach the device.
    assert code(app.command("read", {"path": "/3/0/9"})) == ("2.05", "content")
    assert dev.stop() == 0


def test_read_write_execute_discover(gateway, devices, apps):
    dev, app, _ = registered(gateway, devices, apps)
    r = app.command("read", {"path": "/3/0"})
    assert code(r) == ("2.05", "content")
    values = content(r)
    assert {p: v for p, v in values.items() if p != "/3/0/13"} == SPEC_DEVICE
    assert isinstance(values["/3/0/13"], int) and values["/3/0/13"] >= 1_367_491_215
    # A text resource and a float.
    assert content(app.command("read", {"path": "/3/0/0"})) == {"/3/0/0": "Open Mobile Alliance"}
    assert content(app.command("read", {"path": "/3303/0/5700"})) == {"/3303/0/5700": 21.5}
    assert content(app.command("read", {"path": "/3/0/7/1"})) == {"/3/0/7/1": 5000}
    # Writes (PUT, TLV), read back.
    r = app.command("write", {"path": "/3/0/14", "type": "String", "value": "+01:00"})
    assert r["data"] == {"reqPath": "/3/0/14", "code": "2.04", "codeMsg": "changed"}
    assert content(app.command("read", {"path": "/3/0/14"})) == {"/3/0/14": "+01:00"}
    r = app.command("write", {"path": "/3/0/13", "type": "Time", "value": 1_700_000_000})
    assert code(r) == ("2.04", "changed")
    assert content(app.command("read", {"path": "/3/0/13"}))["/3/0/13"] >= 1_700_000_000
    # A batch on an object instance is a partial update (POST).
    r = app.command("write", {"basePath": "/3/0", "content": [
        {"path": "14", "type": "String", "value": "+05:30"},
        {"path": "15", "type": "String", "value": "Asia/Kolkata"}]})
    assert code(r) == ("2.04", "changed")
    got = content(app.command("read", {"path": "/3/0"}))
    assert (got["/3/0/14"], got["/3/0/15"]) == ("+05:30", "Asia/Kolkata")
    dev.wait_for(r"request POST /3/0 -> 2\.04")
    # Read-only: the device refuses, the reply says so.
    r = app.command("write", {"path": "/3/0/0", "type": "String", "value": "x"})
    assert code(r) == ("4.05", "method_not_allowed")
    # Execute: reset min/max, then reboot (the device registers again).
    assert code(app.command("execute", {"path": "/3303/0/5605"})) == ("2.04", "changed")
    assert code(app.command("execute", {"path": "/3/0/4", "args": ""})) == ("2.04", "changed")
    dev.wait_for(r"^rebooting$")
    reg = app.event("register")
    assert reg["data"]["objectList"] == ["/3/0", "/3303/0"]
    # After the reboot the values are the defaults again.
    assert content(app.command("read", {"path": "/3/0/14"})) == {"/3/0/14": "+02:00"}
    # Discover: links with dim for multiple resources.
    r = app.command("discover", {"path": "/3/0"})
    assert code(r) == ("2.05", "content")
    assert r["data"]["content"][:2] == ["</3/0>", "</3/0/0>"]
    assert "</3/0/7>;dim=2" in r["data"]["content"] and "</3/0/4>" in r["data"]["content"]
    assert dev.stop() == 0


def test_create_delete_and_write_attributes(gateway, devices, apps):
    dev, app, _ = registered(gateway, devices, apps)
    r = app.command("create", {"basePath": "/3303", "content": [
        {"path": "/1/5750", "type": "String", "value": "hall"}]})
    assert code(r) == ("2.01", "created")
    # The device tells the server its new object list in an update.
    upd = app.event("update")
    assert upd["data"]["objectList"] == ["/3/0", "/3303/0", "/3303/1"]
    got = content(app.command("read", {"path": "/3303/1"}))
    assert got["/3303/1/5750"] == "hall" and got["/3303/1/5701"] == "Cel"
    # Creating it again: the device refuses.
    r = app.command("create", {"basePath": "/3303", "content": [
        {"path": "/1/5750", "type": "String", "value": "again"}]})
    assert code(r) == ("4.00", "bad_request")
    assert code(app.command("delete", {"path": "/3303/1"})) == ("2.02", "deleted")
    assert app.event("update")["data"]["objectList"] == ["/3/0", "/3303/0"]
    assert code(app.command("read", {"path": "/3303/1"})) == ("4.04", "not_found")
    assert code(app.command("delete", {"path": "/3/0"})) == ("4.05", "method_not_allowed")
    # Write-Attributes: string values become Uri-Query; discover shows them.
    r = app.command("write-attr", {"path": "/3303/0/5700", "pmin": "1", "pmax": "5", "gt": None})
    assert code(r) == ("2.04", "changed")
    dev.wait_for(r"request PUT /3303/0/5700 -> 2\.04")
    links = app.command("discover", {"path": "/3303/0/5700"})["data"]["content"]
    assert links == ["</3303/0/5700>;pmin=1;pmax=5"]
    assert dev.stop() == 0


def test_observe_notifies_with_increasing_seqnum_until_cancelled(gateway, devices, apps):
    dev, app, _ = registered(gateway, devices, apps, "--notify-every", "300")
    r = app.command("observe", {"path": "/3303/0/5700"})
    assert code(r) == ("2.05", "content")
    assert r["seqNum"] == 1
    dev.wait_for(r"request GET /3303/0/5700 -> 2\.05")
    seqs = []
    for _ in range(3):
        _, n = app.get(lambda t, b: t.endswith("/up/notify"))
        assert n["msgType"] == "notify" and n["data"]["reqPath"] == "/3303/0/5700"
        assert n["reqID"] == r["reqID"], "the observe command's keys are echoed"
        (path, value), = content(n).items()
        assert path == "/3303/0/5700" and 20.0 <= value <= 30.0
        seqs.append(n["seqNum"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 3 and seqs[0] > 1
    r = app.command("cancel-observe", {"path": "/3303/0/5700"})
    assert code(r) == ("2.05", "content")
    dev.wait_for(r"request GET /3303/0/5700 -> 2\.05")
    cancelled_at = dev._seen
    # Notifications the device sent before the cancel may still be on their way; once the
    # device has answered the cancel it sends none (the temperature keeps moving).
    time.sleep(1.5)  # five temperature steps
    after = dev.lines[cancelled_at:]
    assert not any(line.startswith("notify") for line in after), after
    assert dev.stop() == 0


def test_observing_a_path_again_replaces_the_observation_and_rst_ends_the_old_one(gateway, devices, apps):
    """The gateway keeps one observation per path: a second observe takes a new token, so the
    device's next notification under the old token is unknown to the gateway, which answers
    it with RST (RFC 7641 §3.6), and the device ends that observation."""
    dev, app, _ = registered(gateway, devices, apps, "--notify-every", "300")
    first = app.command("observe", {"path": "/3303/0/5700"})
    second = app.command("observe", {"path": "/3303/0/5700"})
    assert code(first) == code(second) == ("2.05", "content")
    dev.wait_for(r"^observation cancelled by RST$")
    seqs = []
    while len(seqs) < 3:
        _, n = app.get(lambda t, b: t.endswith("/up/notify"))
        if n["reqID"] == second["reqID"]:
            seqs.append(n["seqNum"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert dev.stop() == 0


def test_queue_mode_command_waits_for_the_next_update(lwm2m_gateway, devices, apps):
    gw = lwm2m_gateway({"PORTICO_GATEWAY__LWM2M__QMODE_TIME_WINDOW": "1s"})
    dev, app, reg = registered(gw, devices, apps, "--binding", "UQ", "--awake", "1500", lifetime=300)
    assert reg["data"]["b"] == "UQ"
    dev.wait_for(r"^asleep$")
    app.publish({"reqID": 77, "msgType": "read", "data": {"path": "/3/0/0"}})
    app.client.expect_none(timeout=1.0)
    assert not any("request" in line or "not heard" in line for line in dev.lines), dev.lines
    # The device wakes up to update; the gateway sends the queued command right after.
    dev.send("update")
    dev.wait_for(r"^updated$")
    dev.wait_for(r"request GET /3/0/0 -> 2\.05")
    _, r = app.get(lambda t, b: b.get("reqID") == 77)
    assert content(r) == {"/3/0/0": "Open Mobile Alliance"}
    assert dev.stop() == 0


# emqxlwm2m's callbacks take version 1's arguments (client, userdata, flags, rc).
@pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated:DeprecationWarning")
def test_emqxlwm2m_drives_the_device(gateway, devices, apps):
    """emqxlwm2m (EMQX's Python LwM2M front end) over paho 2.x's version-1 callback API."""
    from emqxlwm2m.engines.emqx import EMQxEngine, EMQxTopics
    from paho.mqtt.client import Client as PahoClient
    from paho.mqtt.enums import CallbackAPIVersion

    ep = uid("emqx")
    dev, _, _ = registered(gateway, devices, apps, "--notify-every", "300", ep=ep)
    client = PahoClient(CallbackAPIVersion.VERSION1, client_id=uid("emqxlwm2m"))
    client.connect(gateway.host, gateway.port)
    topics = EMQxTopics(mountpoint="lwm2m", command="dn", update="up/update")
    with EMQxEngine(client, topics, timeout=TIMEOUT) as engine:
        device = engine.endpoint(ep)
        assert device.read("/3/0/0").value == "Open Mobile Alliance"
        assert device.read("/3/0").value["/3/0/7/1"] == 5000
        device.write("/3/0/14", "+03:00").check()
        assert device.read("/3/0/14").value == "+03:00"
        # Two values: emqxlwm2m sends a batch with basePath "3/0/" (no leading slash).
        device.write("/3/0", {"14": "+04:00", "15": "Asia/Dubai"}).check()
        assert device.read("/3/0/15").value == "Asia/Dubai"
        device.execute("/3303/0/5605").check()
        assert device.discover("/3/0/7").data["/3/0/7"] == {"dim": 2}
        device.write_attr("/3303/0/5700", pmin=1, pmax=10).check()
        obs = device.observe("/3303/0/5700")
        obs.check()
        first = obs.notifications.get(timeout=TIMEOUT)
        second = obs.notifications.get(timeout=TIMEOUT)
        assert second.seq_num > first.seq_num
        assert 20.0 <= second.value <= 30.0
        device.cancel_observe("/3303/0/5700").check()
    assert dev.stop() == 0


# -- DTLS with a PSK: libcoap's coap-client-openssl and OpenSSL's s_client as devices -----------

IDENTITY, SECRET = "lwm2m-psk-1", "lwm2m-secret-16b"


@pytest.fixture
def dtls_gateway(broker_factory, tmp_path):
    psk_file = tmp_path / "psk.txt"
    psk_file.write_text(f"{IDENTITY}:{SECRET}\n")
    port, dtls_port = free_udp_port(), free_udp_port()
    gw = broker_factory(lwm2m_env(port, {
        "PORTICO_PSK_AUTHENTICATION__ENABLE": "true",
        "PORTICO_PSK_AUTHENTICATION__INIT_FILE": str(psk_file),
        "PORTICO_GATEWAY__LWM2M__LISTENERS__DTLS__DEFAULT__BIND": f"127.0.0.1:{dtls_port}",
    }))
    wait_udp_ready(port)
    gw.lwm2m_port, gw.dtls_port = port, dtls_port
    return gw


def test_coap_client_registers_over_dtls_with_psk(dtls_gateway, apps):
    ep = uid("psk")
    app = apps(dtls_gateway, ep)
    reg = subprocess.run(
        ["coap-client-openssl", "-u", IDENTITY, "-k", SECRET, "-v", "7", "-B", "10",
         "-m", "post", "-t", "40", "-e", "</3/0>,</3303/0>",
         f"coaps://127.0.0.1:{dtls_gateway.dtls_port}/rd?ep={ep}&lt=120&lwm2m=1.0"],
        capture_output=True, text=True, timeout=60,
    )
    log = reg.stdout + reg.stderr
    assert reg.returncode == 0, log
    # libcoap logs the response: "v:1 t:ACK c:2.01 i:... {..} [ Location-Path:rd, Location-Path:<ep> ]".
    assert re.search(rf"c:2\.01 .*Location-Path:rd, Location-Path:{ep}", log), log
    event = app.event("register")
    assert event["data"]["objectList"] == ["/3/0", "/3303/0"]
    assert event["data"]["lt"] == 120
    # Each coap-client run is a DTLS session of its own, so a DELETE from another run is
    # another peer's request: the location is not that peer's registration (4.04).
    dereg = subprocess.run(
        ["coap-client-openssl", "-u", IDENTITY, "-k", SECRET, "-v", "7", "-B", "10", "-m", "delete",
         f"coaps://127.0.0.1:{dtls_gateway.dtls_port}/rd/{ep}"],
        capture_output=True, text=True, timeout=60,
    )
    log = dereg.stdout + dereg.stderr
    assert dereg.returncode == 0 and re.search(r"c:4\.04", log), log


def test_register_and_deregister_in_one_dtls_session(dtls_gateway, apps):
    """OpenSSL's s_client carries raw CoAP in one PSK session: register, then DELETE."""
    ep = uid("sslc")
    app = apps(dtls_gateway, ep)
    proc = subprocess.Popen(
        ["openssl", "s_client", "-dtls1_2", "-quiet", "-connect", f"127.0.0.1:{dtls_gateway.dtls_port}",
         "-psk_identity", IDENTITY, "-psk", SECRET.encode().hex(), "-cipher", "PSK-AES128-CCM8"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # s_client sends one record per read of stdin; each request goes after the last answer.
        register = coap_encode(T_CON, 2, 0x2001, b"\x21", request_options("rd", (f"ep={ep}", "lt=60", "lwm2m=1.1")),
                               b"</3/0>")
        proc.stdin.write(register)
        proc.stdin.flush()
        answer = coap_decode(os.read(proc.stdout.fileno(), 2048))
        assert dotted(answer["code"]) == "2.01", answer
        assert [v for n, v in answer["options"] if n == 8] == [b"rd", ep.encode()]
        assert app.event("register")["data"]["lwm2m"] == "1.1"
        proc.stdin.write(coap_encode(T_CON, 4, 0x2002, b"\x22", request_options(f"rd/{ep}")))
        proc.stdin.flush()
        answer = coap_decode(os.read(proc.stdout.fileno(), 2048))
        assert (dotted(answer["code"]), answer["mid"]) == ("2.02", 0x2002), answer
    finally:
        proc.kill()
        proc.wait(timeout=5)
    # De-registered: a command finds no subscriber.
    app.publish({"reqID": 9, "msgType": "read", "data": {"path": "/3/0/0"}})
    app.client.expect_none(timeout=1.0)


# -- Bad input: the gateway answers clearly and keeps serving ------------------------------------

class LwPeer(RawPeer):
    def __init__(self, gw):
        gw.coap_port = gw.lwm2m_port
        super().__init__(gw)

    def register(self, ep: str, links: bytes, query=("lt=60", "lwm2m=1.0")) -> dict:
        return self.ask("rd", code=2, query=(f"ep={ep}", *query), payload=links)


def assert_serves_another_device(gateway, devices, apps) -> None:
    dev, app, _ = registered(gateway, devices, apps)
    assert content(app.command("read", {"path": "/3303/0/5701"})) == {"/3303/0/5701": "Cel"}
    assert dev.stop() == 0


def test_malformed_link_format_gets_4_00(gateway, devices, apps):
    peer = LwPeer(gateway)
    try:
        for links in (b"</3/0>,<3303/0", b"</3/0>;=x", b'</3/0>;ct="unclosed', b"</3/0>,,"):
            r = peer.register(uid("bad"), links)
            assert dotted(r["code"]) == "4.00", (links, r)
            assert r["payload"], "the reason is in the payload"
    finally:
        peer.close()
    assert_serves_another_device(gateway, devices, apps)


def test_unknown_object_and_bad_commands_get_error_replies(gateway, devices, apps):
    dev, app, _ = registered(gateway, devices, apps)
    # An object the gateway knows (3304 is in lwm2m-xml) but the device has not: 4.04.
    assert code(app.command("read", {"path": "/3304/0"})) == ("4.04", "not_found")
    # An object no definition describes: the device's 4.04 as well (nothing to decode).
    assert code(app.command("read", {"path": "/4242/0/1"})) == ("4.04", "not_found")
    # Not a path, or an unknown msgType: 4.00 from the gateway, the device never asked.
    assert code(app.command("read", {"path": "/3/x"})) == ("4.00", "bad_request")
    assert code(app.command("reboot-now", {"path": "/3/0/4"})) == ("4.00", "bad_request")
    assert code(app.command("write", {"path": "/3/0/14", "type": "Integer", "value": "x"})) == \
        ("4.00", "bad_request")
    # Not JSON: dropped; the next command is served.
    app.client.publish(f"lwm2m/{dev.ep}/dn/cmd", b"{not json")
    assert code(app.command("read", {"path": "/3/0/9"})) == ("2.05", "content")
    assert dev.stop() == 0


def test_command_for_an_unregistered_endpoint_is_dropped(gateway, devices, apps):
    """No channel subscribes `lwm2m/<ep>/dn/#` for an endpoint that is not registered: the
    publish has no subscriber, nothing answers, and the gateway carries on."""
    ep = uid("ghost")
    app = apps(gateway, ep)
    app.publish({"reqID": 5, "msgType": "read", "data": {"path": "/3/0/0"}})
    app.client.expect_none(timeout=1.0)
    assert_serves_another_device(gateway, devices, apps)


def test_oversized_and_malformed_tlv_from_a_device(gateway, devices, apps):
    ep = uid("raw")
    app = apps(gateway, ep)
    peer = LwPeer(gateway)
    try:
        r = peer.register(ep, b"</3/0>")
        assert dotted(r["code"]) == "2.01"
        app.event("register")
        answers = [
            # A TLV entry that claims 16 MiB - 1 bytes (24-bit length) and carries 4.
            bytes([0xD8, 0x00, 0xFF, 0xFF, 0xFF]) + b"abcd",
            # A well-formed 40 KB string: decoded and passed on.
            bytes([0xD8, 0x00, 0x00, 0x9C, 0x40]) + b"x" * 40_000,
        ]
        for payload in answers:
            app.publish({"reqID": len(payload), "msgType": "read", "data": {"path": "/3/0/0"}})
            req = peer.recv()
            assert req["type"] == T_CON and dotted(req["code"]) == "0.01"
            peer.send(coap_encode(T_ACK, 0x45, req["mid"], req["token"], [(12, bytes([0x2D, 0x16]))], payload))
            _, reply = app.get(lambda t, b, n=len(payload): b.get("reqID") == n)
            if len(payload) < 100:
                assert code(reply) == ("4.00", "bad_request") and "content" not in reply["data"]
            else:
                assert code(reply) == ("2.05", "content")
                assert len(content(reply)["/3/0/0"]) == 40_000
    finally:
        peer.close()
    assert_serves_another_device(gateway, devices, apps)


def test_registration_flood_of_junk_keeps_the_gateway_up(gateway, devices, apps):
    peer = LwPeer(gateway)
    try:
        for junk in (b"\x00", b"\x40\x02", b"\xff" * 20):
            peer.send(junk)
        # A request on an unknown path, and an update for a location never registered.
        r = peer.ask("bs", code=2, query=("ep=x",))
        assert dotted(r["code"]) == "4.04"
        r = peer.ask("rd/nobody", code=2)
        assert dotted(r["code"]) in ("4.04", "4.00"), r
    finally:
        peer.close()
    assert_serves_another_device(gateway, devices, apps)


def test_a_huge_lifetime_does_not_stop_the_listener(gateway):
    peer = LwPeer(gateway)
    try:
        peer.send(coap_encode(T_CON, 2, 0x3001, b"\x31", request_options(
            "rd", (f"ep={uid('huge')}", "lt=9223372036854775807", "lwm2m=1.0")), b"</3/0>"))
        # The Lifetime resource is 32 bits: a longer lt is an invalid query.
        assert dotted(peer.recv(timeout=5.0)["code"]) == "4.00"
    finally:
        peer.close()
    other = LwPeer(gateway)
    try:
        r = other.register(uid("next"), b"</3/0>")
        assert dotted(r["code"]) == "2.01"
    finally:
        other.close()
