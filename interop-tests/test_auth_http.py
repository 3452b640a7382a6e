"""HTTP authentication and authorization with real clients: Portico asks a web service (Python's
http.server, in a thread of this test) about each CONNECT, PUBLISH and SUBSCRIBE."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from clients import V5, V311, Client, mosquitto_pub
from conftest import Broker

pytestmark = pytest.mark.portico_only

USERS = {"alice": "wonderland", "root": "toor"}


class AuthService:
    """The web service: `/auth` allows USERS with their password (root as a superuser) and
    answers 401 otherwise; `/acl` denies topics under `secret/` and allows the rest."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                service.requests.append((self.path, body))
                if self.path == "/auth":
                    user = body.get("username")
                    if USERS.get(user) == body.get("password"):
                        self.reply(200, {"result": "allow", "is_superuser": user == "root"})
                    else:
                        self.reply(401, None)
                elif self.path == "/acl":
                    denied = body.get("topic", "").startswith("secret/")
                    self.reply(200, {"result": "deny" if denied else "allow"})
                else:
                    self.reply(404, None)

            def reply(self, status: int, body: dict | None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def auth_service():
    service = AuthService()
    yield service
    service.close()


def http_env(service: AuthService) -> dict[str, str]:
    return {
        "PORTICO_MQTT__ALLOW_ANONYMOUS": "false",
        "PORTICO_AUTHENTICATION__1__MECHANISM": "password_based",
        "PORTICO_AUTHENTICATION__1__BACKEND": "http",
        "PORTICO_AUTHENTICATION__1__URL": f"{service.url}/auth",
        "PORTICO_AUTHENTICATION__1__REQUEST_TIMEOUT": "2s",
        "PORTICO_AUTHORIZATION__NO_MATCH": "deny",
        # The whole first source: etc/portico.toml's is a file source with a `path`.
        "PORTICO_AUTHORIZATION__SOURCES__1": f'{{ type = "http", url = "{service.url}/acl" }}',
    }


def pub(b: Broker, user: str, password: str, version: int = V311):
    return mosquitto_pub(b, "open/t", b"x", qos=1, version=version, extra=("-u", user, "-P", password),
                         expect_ok=False)


def test_mosquitto_pub_right_and_wrong_password(broker_factory, auth_service):
    b = broker_factory(http_env(auth_service))
    for version in (V311, V5):
        ok = pub(b, "alice", "wonderland", version)
        assert ok.returncode == 0, ok.stderr
        wrong = pub(b, "alice", "nope", version)
        assert wrong.returncode != 0, "a wrong password was let in"
        err = wrong.stderr.decode(errors="replace").lower()
        assert "not authori" in err, err
    auth = [body for path, body in auth_service.requests if path == "/auth"]
    assert {"username": "alice", "password": "wonderland"} in auth, auth
    assert all(set(body) == {"username", "password"} for body in auth), "EMQX's default body"


def test_http_authorization_denies_a_topic(broker_factory, auth_service):
    b = broker_factory(http_env(auth_service))
    c = Client(b, version=V5)
    c.c.username_pw_set("alice", "wonderland")
    c.connect()
    acks: dict[int, ReasonCode] = {}
    done = threading.Event()

    def on_publish(_client, _userdata, mid, reason_code, _properties):
        acks[mid] = reason_code
        if len(acks) == 2:
            done.set()

    c.c.on_publish = on_publish
    denied = c.c.publish("secret/x", b"no", qos=1)
    allowed = c.c.publish("open/x", b"yes", qos=1)
    assert done.wait(10), f"PUBACKs: {acks}"
    assert acks[denied.mid].value == 0x87, acks
    assert acks[allowed.mid].value in (0x00, 0x10), acks
    assert [int(rc.value) for rc in c.subscribe("secret/#", 1)] == [0x87]
    assert [int(rc.value) for rc in c.subscribe("open/#", 1)] == [1]
    acl = [body for path, body in auth_service.requests if path == "/acl"]
    assert {"username": "alice", "clientid": c.client_id, "topic": "secret/x", "action": "publish"} in acl, acl
    assert any(body["action"] == "subscribe" and body["topic"] == "secret/#" for body in acl), acl
    c.close()
    # A superuser skips authorization altogether.
    root = Client(b, version=V5)
    root.c.username_pw_set("root", "toor")
    root.connect()
    assert [int(rc.value) for rc in root.subscribe("secret/#", 1)] == [1]
    root.close()
