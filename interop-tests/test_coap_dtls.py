"""CoAP and MQTT-SN over DTLS 1.2 with third-party DTLS stacks: libcoap's `coap-client-openssl`
(PSK and certificates) for CoAP, and OpenSSL's `s_client` carrying raw MQTT-SN datagrams. The
MQTT side is paho."""

import socket
import subprocess

import pytest

from clients import V311, Client, uid
from pki import Pki

pytestmark = pytest.mark.portico_only

IDENTITY, SECRET = "sensor-psk-1", "s3cret-key-16byt"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def dtls_gateway(broker_factory, pki, tmp_path):
    psk_file = tmp_path / "psk.txt"
    psk_file.write_text(f"{IDENTITY}:{SECRET}\nother:other-secret\n")
    coaps, sn_dtls = free_udp_port(), free_udp_port()
    b = broker_factory({
        "PORTICO_PSK_AUTHENTICATION__ENABLE": "true",
        "PORTICO_PSK_AUTHENTICATION__INIT_FILE": str(psk_file),
        "PORTICO_GATEWAY__COAP__ENABLE": "true",
        "PORTICO_GATEWAY__COAP__LISTENERS__UDP__DEFAULT__BIND": f"127.0.0.1:{free_udp_port()}",
        "PORTICO_GATEWAY__COAP__LISTENERS__DTLS__DEFAULT__BIND": f"127.0.0.1:{coaps}",
        "PORTICO_GATEWAY__COAP__LISTENERS__DTLS__DEFAULT__DTLS_OPTIONS__CERTFILE": str(pki.server_cert),
        "PORTICO_GATEWAY__COAP__LISTENERS__DTLS__DEFAULT__DTLS_OPTIONS__KEYFILE": str(pki.server_key),
        "PORTICO_GATEWAY__MQTTSN__ENABLE": "true",
        "PORTICO_GATEWAY__MQTTSN__LISTENERS__UDP__DEFAULT__BIND": f"127.0.0.1:{free_udp_port()}",
        "PORTICO_GATEWAY__MQTTSN__LISTENERS__DTLS__DEFAULT__BIND": f"127.0.0.1:{sn_dtls}",
    })
    b.coaps_port, b.sn_dtls_port = coaps, sn_dtls
    return b


def coap_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["coap-client-openssl", *args], capture_output=True, timeout=30)


def test_coap_publish_over_dtls_with_psk(dtls_gateway):
    sub = Client(dtls_gateway, version=V311).connect()
    sub.subscribe("dtls/#", qos=1)
    url = f"coaps://127.0.0.1:{dtls_gateway.coaps_port}/ps/dtls/psk?qos=1"
    run = coap_client("-m", "post", "-e", "over psk", "-u", IDENTITY, "-k", SECRET, url)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    m = sub.get()
    assert (m.topic, m.payload, m.qos) == ("dtls/psk", b"over psk", 1)
    sub.close()


def test_a_wrong_psk_is_refused_and_the_gateway_keeps_serving(dtls_gateway):
    sub = Client(dtls_gateway, version=V311).connect()
    sub.subscribe("dtls/#", qos=0)
    url = f"coaps://127.0.0.1:{dtls_gateway.coaps_port}/ps/dtls/bad"
    coap_client("-m", "post", "-e", "nope", "-u", IDENTITY, "-k", "wrong-key-000000", "-B", "5", url)
    sub.expect_none(timeout=1.0)
    run = coap_client("-m", "post", "-e", "yes", "-u", "other", "-k", "other-secret",
                      f"coaps://127.0.0.1:{dtls_gateway.coaps_port}/ps/dtls/good")
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert sub.get().payload == b"yes"
    sub.close()


def test_coap_over_dtls_with_certificates(dtls_gateway, pki):
    sub = Client(dtls_gateway, version=V311).connect()
    sub.subscribe("dtls/#", qos=0)
    cert, key = pki.client("coap-device", serial="2001")
    url = f"coaps://127.0.0.1:{dtls_gateway.coaps_port}/ps/dtls/cert"
    run = coap_client("-m", "post", "-e", "over certs", "-c", str(cert), "-j", str(key), "-R", str(pki.ca), url)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert sub.get().payload == b"over certs"
    sub.close()


def test_mqtt_sn_over_dtls_with_openssl_s_client(dtls_gateway):
    """Raw MQTT-SN datagrams through OpenSSL's DTLS client: each line of input is one record."""
    sub = Client(dtls_gateway, version=V311).connect()
    sub.subscribe("sn-dtls/#", qos=0)
    client_id = uid("snd").encode()[:20]
    connect = bytes([6 + len(client_id), 0x04, 0x04, 0x01, 0x00, 0x1E]) + client_id
    proc = subprocess.Popen(
        ["openssl", "s_client", "-dtls1_2", "-quiet", "-connect", f"127.0.0.1:{dtls_gateway.sn_dtls_port}",
         "-psk_identity", IDENTITY, "-psk", SECRET.encode().hex(), "-cipher", "PSK-AES128-CCM8"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # s_client sends what it reads from stdin once the handshake is done, one read per
        # record: each datagram is written only after the answer to the previous one.
        proc.stdin.write(connect)
        proc.stdin.flush()
        assert proc.stdout.read(3) == b"\x03\x05\x00", "CONNACK accepted, through DTLS"
        # REGISTER "sn-dtls/t" (topic id 0, msg id 1) → REGACK with the id; PUBLISH QoS 0 with it.
        name = b"sn-dtls/t"
        proc.stdin.write(bytes([6 + len(name), 0x0A, 0x00, 0x00, 0x00, 0x01]) + name)
        proc.stdin.flush()
        regack = proc.stdout.read(7)
        assert regack[:2] == b"\x07\x0b" and regack[4:] == b"\x00\x01\x00", regack
        topic_id = regack[2:4]
        proc.stdin.write(bytes([7 + 5, 0x0C, 0x00]) + topic_id + b"\x00\x00" + b"hello")
        proc.stdin.flush()
        assert sub.get().payload == b"hello"
    finally:
        proc.kill()
        proc.wait(timeout=5)
    sub.close()
