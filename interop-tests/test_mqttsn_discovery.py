"""MQTT-SN gateway discovery: ADVERTISE broadcasts and SEARCHGW → GWINFO.

Broadcasts never leave a pair of network namespaces this test makes and removes: the gateway
runs in one, a device (the PyPI `mqtt-sn-12` client plus raw sockets) in the other, joined by a
veth pair on a private /24. Nothing is sent on the host's interfaces.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.portico_only

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = Path(__file__).resolve().parent / ".venv" / "bin" / "python"
SUBNET = "10.251.17"
GW_IP, DEVICE_IP, BROADCAST = f"{SUBNET}.1", f"{SUBNET}.2", f"{SUBNET}.255"
GATEWAY_ID = 42


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces():
    """Two namespaces, `gw` and `dev`, joined by a veth pair with IPv4 broadcast addresses."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = os.getpid() % 100_000
    gw, dev = f"portico-sn-gw-{tag}", f"portico-sn-dev-{tag}"
    made = []
    try:
        for ns in (gw, dev):
            ip("netns", "add", ns)
            made.append(ns)
        ip("link", "add", f"psg{tag}", "type", "veth", "peer", "name", f"psd{tag}")
        for ns, link, addr in ((gw, f"psg{tag}", GW_IP), (dev, f"psd{tag}", DEVICE_IP)):
            ip("link", "set", link, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addr}/24", "broadcast", "+", "dev", link)
            ip("-n", ns, "link", "set", link, "up")
            ip("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as e:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot make network namespaces here: {e.stderr.decode().strip()}")
    yield gw, dev
    for ns in made:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture
def gateway_in_namespace(namespaces, tmp_path):
    """Portico in the `gw` namespace: MQTT-SN on 0.0.0.0:1884 advertising every second."""
    gw, _ = namespaces
    binary = Path(os.environ.get("INTEROP_PORTICO_BIN", "target/release/portico"))
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTICO_")}
    env.update({
        "PORTICO_LISTENERS__TCP__DEFAULT__BIND": "127.0.0.1:1883",
        "PORTICO_LISTENERS__WS__DEFAULT__BIND": "127.0.0.1:8083",
        "PORTICO_NODE__DATA_DIR": str(tmp_path / "data"),
        "PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE": "false",
        "PORTICO_GATEWAY__MQTTSN__ENABLE": "true",
        "PORTICO_GATEWAY__MQTTSN__GATEWAY_ID": str(GATEWAY_ID),
        "PORTICO_GATEWAY__MQTTSN__BROADCAST": "true",
        "PORTICO_GATEWAY__MQTTSN__BROADCAST_INTERVAL": "1s",
        "PORTICO_GATEWAY__MQTTSN__LISTENERS__UDP__DEFAULT__BIND": "0.0.0.0:1884",
    })
    log = open(tmp_path / "broker.log", "wb")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", gw, str(binary), "start", "--config", str(REPO_ROOT / "etc" / "portico.toml")],
        cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    yield proc, tmp_path / "broker.log"
    proc.terminate()
    try:
        assert proc.wait(timeout=20) == 0, "the gateway exits cleanly"
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


# Runs in the `dev` namespace: hears an ADVERTISE, asks with a broadcast SEARCHGW, then CONNECTs
# to the address the ADVERTISE came from with the mqtt-sn-12 client and gets its own message
# back through a subscription. Prints one JSON line with what it saw.
DEVICE = r"""
import json, socket, sys, time
from mqttsn12.MqttSnConstants import MqttSnConstants as C
from mqttsn12.client.MqttSnClient import MqttSnClient
from mqttsn12.packets import PublishPacket

broadcast = sys.argv[1]
out = {}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(("0.0.0.0", 1884))
s.settimeout(1.0)

def wait_for(msg_type, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, sender = s.recvfrom(1024)
        except socket.timeout:
            continue
        if len(data) >= 2 and data[1] == msg_type:
            return list(data), sender
    return None, None

advertise, sender = wait_for(0x00, 30)
out["advertise"], out["advertise_from"] = advertise, sender
if advertise:
    s.sendto(bytes([3, 0x01, 1]), (broadcast, 1884))
    out["gwinfo"], out["gwinfo_from"] = wait_for(0x02, 5)
    c = MqttSnClient()
    c.set_client_id("discovered")
    c.set_keep_alive(30)
    c.open(sender[0], sender[1])
    c.send_connect()
    c.send_subscribe("disc/+", 1, None)
    c.send_publish("disc/x", b"found you", 1)
    buf = c.wait_for(True, C.TYPE_PUBLISH)
    if buf is not None:
        p = PublishPacket()
        p.decode(buf)
        c.send_puback(p, 0)
        out["received"] = p.get_data().decode()
    c.send_disconnect()
    c.close()
print(json.dumps(out))
"""


def test_a_device_finds_the_gateway_by_advertise_and_searchgw(namespaces, gateway_in_namespace):
    _, dev = namespaces
    proc, log = gateway_in_namespace
    run = subprocess.run(
        ["ip", "netns", "exec", dev, str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable), "-c", DEVICE, BROADCAST],
        capture_output=True, timeout=90,
    )
    assert proc.poll() is None, f"the gateway died:\n{log.read_text()[-3000:]}"
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    seen = json.loads(run.stdout.decode().strip().splitlines()[-1])
    # ADVERTISE: length 5, type 0x00, GwId, Duration = the interval in seconds (not EMQX's 48032).
    assert seen["advertise"] == [5, 0x00, GATEWAY_ID, 0, 1], seen
    # It comes from the listener's own address and port: where a device connects.
    assert seen["advertise_from"] == [GW_IP, 1884], seen
    # SEARCHGW gets a unicast GWINFO with the GwId and no address (sent by the gateway itself).
    assert seen["gwinfo"] == [3, 0x02, GATEWAY_ID], seen
    assert seen["gwinfo_from"] == [GW_IP, 1884], seen
    assert seen.get("received") == "found you", seen
