"""SCRAM-SHA-256 enhanced authentication (MQTT 5 AUTH) with the SCRAM math of the `scramp`
package and raw MQTT 5 packets: CONNECT carries the client-first message, AUTH 0x18 the
server-first and client-final ones, CONNACK the server-final signature."""

import pytest
from scramp import ScramClient, ScramException

import mqttraw
from clients import uid
from v5 import connect5, parse_connack5, parse_props, props

pytestmark = pytest.mark.portico_only

METHOD = "SCRAM-SHA-256"
AUTH_METHOD, AUTH_DATA = 0x15, 0x16
CONTINUE = 0x18
USERS_CSV = "user_id,password,is_superuser\nalice,wonderland,false\nroot,toor,true\n"


def scram_env(tmp_path) -> dict[str, str]:
    csv = tmp_path / f"scram-{uid('u')}.csv"
    csv.write_text(USERS_CSV)
    return {
        "PORTICO_AUTHENTICATION__1__MECHANISM": "scram",
        "PORTICO_AUTHENTICATION__1__BACKEND": "built_in_database",
        "PORTICO_AUTHENTICATION__1__ALGORITHM": "sha256",
        "PORTICO_AUTHENTICATION__1__ITERATION_COUNT": "4096",
        "PORTICO_AUTHENTICATION__1__BOOTSTRAP_FILE": str(csv),
        "PORTICO_MQTT__ALLOW_ANONYMOUS": "false",
    }


def auth_packet(reason: int, data: str) -> bytes:
    body = bytes([reason]) + props((AUTH_METHOD, METHOD), (AUTH_DATA, data.encode()))
    return mqttraw.packet(0xF0, body)


def login(b, user: str, password: str) -> tuple[int, dict, ScramClient]:
    """Runs the exchange; returns the CONNACK reason code, its properties and the client."""
    client = ScramClient([METHOD], user, password)
    with mqttraw.RawClient(b.host, b.port) as raw:
        raw.send(connect5(uid("scram"), properties=[(AUTH_METHOD, METHOD),
                                                    (AUTH_DATA, client.get_client_first().encode())]))
        pkt = raw.read_packet()
        if pkt.type == mqttraw.CONNACK:
            _, rc, p = parse_connack5(pkt)
            return rc, p, client
        assert pkt.type == mqttraw.AUTH, f"expected AUTH, got {pkt!r}"
        assert pkt.body[0] == CONTINUE
        p, _ = parse_props(pkt.body, 1)
        assert p[AUTH_METHOD] == [METHOD]
        client.set_server_first(p[AUTH_DATA][0].decode())
        raw.send(auth_packet(CONTINUE, client.get_client_final()))
        _, rc, p = parse_connack5(raw.expect(mqttraw.CONNACK))
        return rc, p, client


def test_scram_sha_256_right_and_wrong_passwords(broker_factory, tmp_path):
    b = broker_factory(scram_env(tmp_path))
    rc, p, client = login(b, "alice", "wonderland")
    assert rc == 0x00
    assert p[AUTH_METHOD] == [METHOD]
    client.set_server_final(p[AUTH_DATA][0].decode())  # raises unless the signature verifies

    rc, p, client = login(b, "root", "toor")
    assert rc == 0x00
    client.set_server_final(p[AUTH_DATA][0].decode())

    rc, _, _ = login(b, "alice", "looking-glass")
    assert rc in (0x86, 0x87)
    rc, _, _ = login(b, "nobody", "wonderland")
    assert rc in (0x86, 0x87)


def test_a_forged_server_signature_would_be_caught(broker_factory, tmp_path):
    """The check of the previous test is real: scramp refuses a signature that is not the
    server's."""
    b = broker_factory(scram_env(tmp_path))
    rc, p, client = login(b, "alice", "wonderland")
    assert rc == 0x00
    with pytest.raises(ScramException):
        client.set_server_final("v=" + "A" * 44)


def test_password_login_still_goes_through_the_chain(broker_factory, tmp_path):
    """A CONNECT without an authentication method uses the password chain, which has no
    backend here: refused (anonymous is off)."""
    b = broker_factory(scram_env(tmp_path))
    with mqttraw.RawClient(b.host, b.port) as raw:
        raw.send(connect5(uid("plain")))
        _, rc, _ = parse_connack5(raw.expect(mqttraw.CONNACK))
        assert rc in (0x86, 0x87)
    with mqttraw.RawClient(b.host, b.port) as raw:
        raw.send(connect5(uid("other"), properties=[(AUTH_METHOD, "SCRAM-SHA-1")]))
        _, rc, _ = parse_connack5(raw.expect(mqttraw.CONNACK))
        assert rc == 0x8C
