"""The HTTP API's CoAP request helper (`POST /api/v5/gateways/coap/clients/{clientid}/request`)
with PyPI `aiocoap` as the device: it logs in (connection mode) from its own server socket and
serves a resource there; the API asks the gateway to send it a request and answers with
aiocoap's response. A second test adds a CoAP listener through
`POST /api/v5/gateways/coap/listeners` and has aiocoap publish on it."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request

import aiocoap
import aiocoap.resource as resource
import pytest
from aiocoap import POST

pytestmark = pytest.mark.portico_only

PASSWORD = "interop-password-1"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body=None, token: str | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else {})
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else {})


@pytest.fixture
def gateway(broker_factory):
    """A broker with the CoAP gateway in connection mode and the HTTP API on loopback."""
    coap_port = free_udp_port()
    api_port = free_tcp_port()
    broker = broker_factory(
        {
            "PORTICO_GATEWAY__COAP__ENABLE": "true",
            "PORTICO_GATEWAY__COAP__CONNECTION_REQUIRED": "true",
            "PORTICO_GATEWAY__COAP__LISTENERS__UDP__DEFAULT__BIND": f"127.0.0.1:{coap_port}",
            "PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE": "true",
            "PORTICO_DASHBOARD__LISTENERS__HTTP__BIND": f"127.0.0.1:{api_port}",
            "PORTICO_DASHBOARD__DEFAULT_PASSWORD": PASSWORD,
        }
    )
    api = f"http://127.0.0.1:{api_port}/api/v5"
    # The fixture waits for MQTT; the HTTP API starts right after it.
    deadline = time.monotonic() + 10
    while True:
        try:
            status, login = http("POST", f"{api}/login", {"username": "admin", "password": PASSWORD})
            break
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert status == 200, login
    return broker, api, login["token"], coap_port


class Temperature(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=b"21.5", content_format=0)


async def device_asked(api: str, token: str, coap_port: int) -> tuple[int, dict]:
    """Starts the aiocoap device, logs it in and has the API ask it for a resource."""
    site = resource.Site()
    site.add_resource(["sensors", "temp"], Temperature())
    device = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", free_udp_port()))
    try:
        login = aiocoap.Message(
            code=POST, uri=f"coap://127.0.0.1:{coap_port}/mqtt/connection?clientid=aio-device"
        )
        created = await asyncio.wait_for(device.request(login).response, 10)
        assert created.code == aiocoap.CREATED, created
        body = {"method": "get", "uri_path": "sensors/temp", "timeout": "5s", "content_type": "text/plain"}
        return await asyncio.to_thread(
            http, "POST", f"{api}/gateways/coap/clients/aio-device/request", body, token
        )
    finally:
        await device.shutdown()


def test_the_request_helper_asks_an_aiocoap_device(gateway):
    _broker, api, token, coap_port = gateway
    status, answer = asyncio.run(device_asked(api, token, coap_port))
    assert status == 200, answer
    assert answer["method"] == "2.05"
    assert answer["payload"] == "21.5"
    assert answer["content_format"] == 0

    status, answer = http(
        "POST", f"{api}/gateways/coap/clients/nobody/request", {"method": "get"}, token
    )
    assert status == 404, answer
    assert answer["code"] == "CLIENT_NOT_FOUND"


async def publish_on(port: int) -> aiocoap.Message:
    client = await aiocoap.Context.create_client_context()
    try:
        login = aiocoap.Message(code=POST, uri=f"coap://127.0.0.1:{port}/mqtt/connection?clientid=aio-pub")
        created = await asyncio.wait_for(client.request(login).response, 10)
        assert created.code == aiocoap.CREATED, created
        token = created.payload.decode()
        publish = aiocoap.Message(
            code=POST,
            uri=f"coap://127.0.0.1:{port}/ps/moved/port?clientid=aio-pub&token={token}",
            payload=b"hello",
        )
        return await asyncio.wait_for(client.request(publish).response, 10)
    finally:
        await client.shutdown()


def test_a_listener_added_through_the_api_serves_aiocoap(gateway):
    _broker, api, token, coap_port = gateway
    extra_port = free_udp_port()
    listener = {"type": "udp", "name": "extra", "bind": f"127.0.0.1:{extra_port}"}
    status, answer = http("POST", f"{api}/gateways/coap/listeners", listener, token)
    assert status == 201, answer
    assert answer["id"] == "coap:udp:extra" and answer["running"], answer
    response = asyncio.run(publish_on(extra_port))
    assert response.code == aiocoap.CHANGED, response

    # The default listener's bind comes from a PORTICO_* variable: the API may not change it.
    moved = {"listeners": [{"type": "udp", "name": "default", "bind": f"127.0.0.1:{free_udp_port()}"}]}
    status, answer = http("PUT", f"{api}/gateways/coap", moved, token)
    assert status == 400, answer
    assert answer["errors"][0]["key"] == "PORTICO_GATEWAY__COAP__LISTENERS__UDP__DEFAULT__BIND", answer
    status, answer = http("PUT", f"{api}/gateways/coap", {"heartbeat": "soon"}, token)
    assert status == 400, answer
    assert any(e["key"] == "gateway.coap.heartbeat" for e in answer["errors"]), answer
    status, answer = http("GET", f"{api}/gateways/coap", token=token)
    assert answer["status"] == "running", answer
