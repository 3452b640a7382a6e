"""Authentication and authorization with real clients: the built-in user database, EMQX's
acl.conf (the shipped default rules and custom files), deny actions, banned clients and
flapping detection."""

import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from clients import V5, V311, Client, mosquitto_pub, uid
from conftest import Broker, BrokerError

pytestmark = pytest.mark.portico_only

USERS_CSV = "user_id,password,is_superuser\nalice,wonderland,false\nroot,toor,true\n"


def builtin_auth(tmp_path, extra: dict[str, str] | None = None, users: str = USERS_CSV) -> dict[str, str]:
    """Env for a broker with a built-in user database bootstrapped from `users` and anonymous
    clients refused."""
    csv = tmp_path / f"users-{uid('u')}.csv"
    csv.write_text(users)
    env = {
        "PORTICO_AUTHENTICATION__1__MECHANISM": "password_based",
        "PORTICO_AUTHENTICATION__1__BACKEND": "built_in_database",
        "PORTICO_AUTHENTICATION__1__BOOTSTRAP_FILE": str(csv),
        "PORTICO_AUTHENTICATION__1__BOOTSTRAP_TYPE": "plain",
        "PORTICO_MQTT__ALLOW_ANONYMOUS": "false",
    }
    env.update(extra or {})
    return env


def acl_env(tmp_path, rules: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    path = tmp_path / f"acl-{uid('a')}.conf"
    path.write_text(rules)
    env = {
        "PORTICO_AUTHORIZATION__SOURCES__1__TYPE": "file",
        "PORTICO_AUTHORIZATION__SOURCES__1__PATH": str(path),
    }
    env.update(extra or {})
    return env


def pub_with(b, user: str | None, password: str | None, version: int = V311) -> subprocess.CompletedProcess:
    extra: tuple[str, ...] = ()
    if user is not None:
        extra += ("-u", user)
    if password is not None:
        extra += ("-P", password)
    return mosquitto_pub(b, "auth/t", b"x", qos=1, version=version, extra=extra, expect_ok=False)


def connect_paho(b, version: int, user: str | None = None, password: str | None = None,
                 client_id: str | None = None, bind: str | None = None) -> Client:
    c = Client(b, client_id=client_id, version=version)
    if user is not None:
        c.c.username_pw_set(user, password)
    if bind is not None:
        # paho binds the source address at connect; Client.connect does not take it.
        c.c.connect(b.host, b.port, keepalive=60, bind_address=bind,
                    **({"clean_start": True} if version == V5 else {}))
        c.c.loop_start()
        c._loop_started = True
        assert c.connected.wait(10), "no CONNACK"
        assert not c.connack_rc.is_failure, c.connack_rc
        return c
    return c.connect()


def test_builtin_users_right_wrong_and_missing_passwords(broker_factory, tmp_path):
    b = broker_factory(builtin_auth(tmp_path))
    assert pub_with(b, "alice", "wonderland").returncode == 0
    for version in (V311, V5):
        wrong = pub_with(b, "alice", "nope", version)
        assert wrong.returncode != 0, wrong
        err = wrong.stderr.decode(errors="replace").lower()
        assert "password" in err or "not authori" in err, err
        anonymous = pub_with(b, None, None, version)
        assert anonymous.returncode != 0, "anonymous client let in with allow_anonymous = false"
        unknown = pub_with(b, "mallory", "x", version)
        assert unknown.returncode != 0, "unknown user let in"
    # paho sees the MQTT 5 reason code: 0x86 Bad User Name or Password.
    c = Client(b, version=V5)
    c.c.username_pw_set("alice", "bad")
    c.connect(expect_success=False)
    assert c.connack_rc.value == 0x86, c.connack_rc
    c.close()


def test_users_survive_a_restart_and_the_bootstrap_does_not_overwrite(broker_factory, tmp_path):
    b = broker_factory(builtin_auth(tmp_path))
    assert pub_with(b, "alice", "wonderland").returncode == 0
    b.restart()
    assert pub_with(b, "alice", "wonderland").returncode == 0
    assert pub_with(b, "root", "toor").returncode == 0


def test_acl_file_denies_publish_and_subscribe(broker_factory, tmp_path):
    rules = """%% Only the secret topics are closed.
{deny, all, pubsub, ["secret/#"]}.
{allow, all}.
"""
    b = broker_factory(acl_env(tmp_path, rules))
    watcher = Client(b, version=V5).connect()
    watcher.subscribe("#", 1)
    v5 = Client(b, version=V5).connect()
    info = v5.c.publish("secret/x", b"no", qos=1)
    info.wait_for_publish(10)
    # 3.1.1: a denied PUBLISH is acknowledged and dropped; 5.0: PUBACK 0x87.
    v3 = Client(b, version=V311).connect()
    v3.publish("secret/y", b"no", qos=1)
    v3.publish("open/y", b"yes", qos=1)
    got = watcher.get(10)
    assert got.topic == "open/y", f"denied publishes were delivered: {got}"
    watcher.expect_none(1.0)
    # Denied SUBSCRIBE: 0x87 for 5.0, 0x80 for 3.1.1.
    codes5 = v5.subscribe("secret/#", 1)
    assert [int(getattr(c, "value", c)) for c in codes5] == [0x87], codes5
    codes3 = v3.subscribe("secret/#", 1)
    assert [int(getattr(c, "value", c)) for c in codes3] == [0x80], codes3
    for c in (watcher, v5, v3):
        c.close()


def test_deny_action_disconnect(broker_factory, tmp_path):
    b = broker_factory(acl_env(tmp_path, '{deny, all, publish, ["forbidden"]}.\n{allow, all}.\n',
                               {"PORTICO_AUTHORIZATION__DENY_ACTION": "disconnect"}))
    c = Client(b, version=V5).connect()
    c.publish("forbidden", b"x", qos=0)
    rc = c.wait_disconnected(10)
    assert rc.value == 0x87, rc


def test_default_acl_keeps_sys_for_localhost_only(broker_factory):
    """The shipped rules (EMQX's acl.conf): 127.0.0.1 may subscribe $SYS/# and #, another
    address may not, but may subscribe anything else."""
    b = broker_factory()
    local = connect_paho(b, V5, bind="127.0.0.1")
    assert [int(c.value) for c in local.subscribe("$SYS/#", 0)] == [0]
    other = connect_paho(b, V5, bind="127.0.0.2")
    assert [int(c.value) for c in other.subscribe("$SYS/#", 0)] == [0x87]
    assert [int(c.value) for c in other.subscribe("#", 0)] == [0x87]
    assert [int(c.value) for c in other.subscribe("a/#", 0)] == [0]
    for c in (local, other):
        c.close()


def test_superuser_bypasses_the_acl(broker_factory, tmp_path):
    env = builtin_auth(tmp_path, acl_env(tmp_path, '{deny, all, pubsub, ["#"]}.\n'))
    b = broker_factory(env)
    alice = connect_paho(b, V5, "alice", "wonderland")
    assert [int(c.value) for c in alice.subscribe("x/#", 1)] == [0x87]
    root = connect_paho(b, V5, "root", "toor")
    assert [int(c.value) for c in root.subscribe("x/#", 1)] == [1]
    for c in (alice, root):
        c.close()


def test_banned_client_refused(broker_factory, tmp_path):
    banned = tmp_path / "banned.csv"
    banned.write_text("as,who,reason,until\nclientid,evil-device,abuse,\nusername,spammer,,\n")
    b = broker_factory({"PORTICO_BANNED__BOOTSTRAP_FILE": str(banned)})
    c = Client(b, client_id="evil-device", version=V5)
    c.connect(expect_success=False)
    assert c.connack_rc.value == 0x8A, c.connack_rc  # Banned
    c.close()
    r = mosquitto_pub(b, "t", b"x", version=V311, client_id="evil-device", expect_ok=False)
    assert r.returncode != 0
    r = pub_with(b, "spammer", "x")
    assert r.returncode != 0
    assert pub_with(b, "friend", "x").returncode == 0


def test_flapping_client_is_banned(broker_factory):
    b = broker_factory({
        "PORTICO_FLAPPING_DETECT__ENABLE": "true",
        "PORTICO_FLAPPING_DETECT__MAX_COUNT": "3",
        "PORTICO_FLAPPING_DETECT__WINDOW_TIME": "1m",
        "PORTICO_FLAPPING_DETECT__BAN_TIME": "5m",
    })
    cid = uid("flappy")
    for _ in range(4):
        Client(b, client_id=cid, version=V5).connect().disconnect()
    c = Client(b, client_id=cid, version=V5)
    c.connect(expect_success=False)
    assert c.connack_rc.value == 0x8A, f"flapping client not banned: {c.connack_rc}"
    c.close()
    # Another client id is unaffected.
    Client(b, version=V5).connect().disconnect()


def test_malformed_acl_file_refuses_to_start(tmp_path):
    path = tmp_path / "acl.conf"
    path.write_text('{allow, all}.\n{alow, all, publish, ["t"]}.\n')
    b = Broker("portico", tmp_path / "b", {
        "PORTICO_AUTHORIZATION__SOURCES__1__TYPE": "file",
        "PORTICO_AUTHORIZATION__SOURCES__1__PATH": str(path),
    })
    with pytest.raises(BrokerError) as err:
        b.start()
    text = str(err.value)
    assert str(path) in text and ":2:" in text, text


def hs256(claims: dict, secret: bytes) -> str:
    """A JWT signed with HMAC-SHA256, made with the standard library only."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_jwt_signed_password(broker_factory):
    b = broker_factory({
        "PORTICO_AUTHENTICATION__1__MECHANISM": "jwt",
        "PORTICO_AUTHENTICATION__1__SECRET": "emqxsecret",
        "PORTICO_AUTHENTICATION__1__VERIFY_CLAIMS__CLIENTID": "${clientid}",
        "PORTICO_MQTT__ALLOW_ANONYMOUS": "false",
    })
    now = int(time.time())
    good = hs256({"clientid": "jwt-dev", "exp": now + 60}, b"emqxsecret")
    ok = mosquitto_pub(b, "t", b"x", version=V311, client_id="jwt-dev", extra=("-u", "any", "-P", good),
                       expect_ok=False)
    assert ok.returncode == 0, ok.stderr
    for token, cid, why in [
        (hs256({"clientid": "jwt-dev", "exp": now - 5}, b"emqxsecret"), "jwt-dev", "expired"),
        (hs256({"clientid": "jwt-dev"}, b"wrong"), "jwt-dev", "forged"),
        (good, "other-dev", "claim for another client"),
    ]:
        r = mosquitto_pub(b, "t", b"x", version=V311, client_id=cid, extra=("-u", "any", "-P", token),
                          expect_ok=False)
        assert r.returncode != 0, f"{why} token accepted"
    # No password at all: the JWT authenticator ignores the client; anonymous is off.
    assert mosquitto_pub(b, "t", b"x", version=V311, client_id="jwt-dev", expect_ok=False).returncode != 0


def test_slow_password_hashes_are_checked_off_the_connection_tasks(broker_factory, tmp_path):
    """argon2 and bcrypt checks run on the blocking pool and answer later: right and wrong
    passwords still get their CONNACK, and a client already connected keeps its traffic going
    while a burst of such CONNECTs is being checked."""
    for name in ("argon2", "bcrypt"):
        b = broker_factory(builtin_auth(tmp_path, {"PORTICO_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__NAME": name}))
        assert pub_with(b, "alice", "wonderland").returncode == 0, name
        assert pub_with(b, "alice", "nope", V5).returncode != 0, name
        steady = connect_paho(b, V5, "root", "toor")
        steady.subscribe("steady/t", qos=1)
        burst = [subprocess.Popen(["mosquitto_pub", "-h", b.host, "-p", str(b.port), "-u", "alice", "-P",
                                   "wonderland", "-t", "burst/t", "-m", "x", "-q", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(12)]
        for i in range(5):
            steady.publish("steady/t", f"m{i}".encode(), qos=1)
        got = steady.get_n(5, timeout=10)
        assert [m.payload for m in got] == [f"m{i}".encode() for i in range(5)], name
        assert all(p.wait(timeout=60) == 0 for p in burst), f"{name}: a burst CONNECT failed"
        steady.close()


def test_listener_enable_authn(broker_factory, tmp_path):
    """EMQX's listener `enable_authn`: quick_deny_anonymous refuses clients without a user name
    at once (even with allow_anonymous); false lets everyone in."""
    quick = builtin_auth(tmp_path, {"PORTICO_MQTT__ALLOW_ANONYMOUS": "true",
                                    "PORTICO_LISTENERS__TCP__DEFAULT__ENABLE_AUTHN": "quick_deny_anonymous"})
    b = broker_factory(quick)
    assert pub_with(b, None, None).returncode != 0, "anonymous client let in"
    c = Client(b, version=V5)
    c.connect(expect_success=False)
    assert c.connack_rc.value == 0x87, c.connack_rc
    c.close()
    assert pub_with(b, "alice", "wonderland").returncode == 0
    assert pub_with(b, "alice", "nope").returncode != 0

    off = builtin_auth(tmp_path, {"PORTICO_LISTENERS__TCP__DEFAULT__ENABLE_AUTHN": "false"})
    b = broker_factory(off)
    assert pub_with(b, "alice", "nope").returncode == 0, "no authentication on this listener"
    assert pub_with(b, None, None).returncode == 0


def test_jwt_acl_claim_rules(broker_factory):
    """The token's `acl` claim: in the older map format everything it does not list is denied;
    in the list format an unmatched request goes on to the authorization sources (here the
    default acl.conf, which allows it)."""
    b = broker_factory({
        "PORTICO_AUTHENTICATION__1__MECHANISM": "jwt",
        "PORTICO_AUTHENTICATION__1__SECRET": "emqxsecret",
        "PORTICO_MQTT__ALLOW_ANONYMOUS": "false",
        # Every check reaches the sources: no cached results between the two clients.
        "PORTICO_AUTHORIZATION__CACHE__ENABLE": "false",
    })
    now = int(time.time())
    old = hs256({"exp": now + 60, "acl": {"pub": ["up/${clientid}"], "sub": ["down/#"]}}, b"emqxsecret")
    c = connect_paho(b, V5, user="any", password=old, client_id="jwt-acl-1")
    assert [int(getattr(x, "value", x)) for x in c.subscribe("down/x", 1)] == [1]
    assert [int(getattr(x, "value", x)) for x in c.subscribe("elsewhere", 1)] == [0x87]
    c.close()

    new = hs256({"acl": [
        {"permission": "deny", "action": "subscribe", "topic": "secret/#"},
        {"permission": "allow", "action": "all", "topic": "down/#"},
    ]}, b"emqxsecret")
    c = connect_paho(b, V5, user="any", password=new, client_id="jwt-acl-2")
    assert [int(getattr(x, "value", x)) for x in c.subscribe("secret/x", 1)] == [0x87]
    assert [int(getattr(x, "value", x)) for x in c.subscribe("down/x", 1)] == [1]
    assert [int(getattr(x, "value", x)) for x in c.subscribe("elsewhere", 1)] == [1], "sources decide"
    c.close()
