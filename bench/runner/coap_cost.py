#!/usr/bin/env python3
"""CoAP publish cost: broker CPU per message of CoAP publishers (UDP, through Portico's CoAP
gateway, connectionless) against MQTT publishers, both delivering to MQTT subscribers, at QoS 0
and 1.

    python3 bench/runner/coap_cost.py [--runs 3] [--quick] [--dtls] [--pairs 10] [--rate0 20000]
                                      [--rate1 10000] [--duration 10] [--base-port 26883]

p2p: N publishers, each to its own topic, one MQTT subscriber per topic, open loop at a fixed
total rate (the same for both paths). CoAP publishers send `POST /ps/{topic}?clientid=..&qos=Q`:
NON requests at QoS 0, CON requests at QoS 1 (one in flight per publisher, RFC 7252 NSTART = 1).
Every run gets a fresh broker (pinned to CPU 0, the generator to CPU 1) and a warm-up run first;
the broker's CPU time (utime + stime) is read around the measured run. Within a round the two
paths run back to back, in alternating order. The ratio CoAP / MQTT of CPU µs per message is
computed per round, then its median. The common code (with mqttsn_cost.py) is in
gateway_cost.py.

--dtls: the same comparison with CoAP over DTLS 1.2 (PSK, TLS_PSK_WITH_AES_128_CCM_8): the
broker's CoAP gateway has a DTLS listener instead of the UDP one and a psk_authentication file
with one identity; every CoAP publisher handshakes before publishing (`portico-bench
--pub-protocol coap --coap-dtls --psk-identity .. --psk-key ..`), then sends its requests as DTLS
records. Its own section, between <!-- coap-dtls-cost:start --> and <!-- coap-dtls-cost:end -->,
raw JSON in docs/bench/raw-<date>-coap-dtls[-quick].json; the plain CoAP section is untouched.

Standard library only; binaries must be built (cargo build --release -p portico -p
portico-bench; $CARGO_TARGET_DIR is honoured). Writes the section between
<!-- coap-cost:start --> and <!-- coap-cost:end --> of docs/benchmarks.md (not with --quick)
and the raw JSON to docs/bench/raw-<date>-coap[-quick].json. See bench/README.md.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import brokers as B  # noqa: E402
import gateway_cost as G  # noqa: E402

# CON GET /.well-known/core, message id 0x5A5A, no token: answered with a piggybacked ACK.
DISCOVER = bytes([0x40, 0x01, 0x5A, 0x5A, 0xBB]) + b".well-known" + bytes([0x04]) + b"core"


def discovered(data: bytes) -> bool:
    return len(data) >= 4 and (data[0] >> 4) & 0x3 == 2 and data[2:4] == DISCOVER[2:4]


COAP = G.Gateway(
    key="coap",
    label="CoAP",
    tag="coap",
    env="PORTICO_GATEWAY__COAP__",
    port_flag="--coap-port",
    placeholder="$COAP_PORT",
    probe=DISCOVER,
    answered=discovered,
    probe_name="GET /.well-known/core",
    title="CoAP publish cost: CoAP vs MQTT publishers → MQTT subscribers",
    broker_note="the CoAP gateway on a loopback UDP port (`gateway.coap.enable = true`, connectionless "
    "(`connection_required = false`, the default), `messages_rate = infinity`, the default)",
    notes=(
        "CoAP publishers: one UDP socket each; after a `GET /.well-known/core` (is the gateway there?), "
        "`POST /ps/{topic}?clientid=…&qos=Q` with the benchmark payload: QoS 0 as NON requests (the gateway's "
        "NON 2.04 answers are read, not waited for), QoS 1 as CON requests, one in flight per publisher "
        "(RFC 7252 `NSTART = 1`), the next sent on the piggybacked ACK 2.04, resent after 2–3 s without it, "
        "the wait doubling (`retransmits`). In connectionless mode every request is authenticated by its "
        "query (the gateway keeps the answer while the credentials stay the same). MQTT publishers: default "
        "`--inflight 64`, which at this rate rarely has more than one message out",
        "UDP receive-buffer drops: the kernel's `RcvbufErrors` (/proc/net/snmp, every UDP socket on the "
        "machine) over the measured run: datagrams a socket had no room for (the gateway's requests, or "
        "the generator's NON 2.04 answers)",
    ),
    port_name="the CoAP gateway",
)

PSK_IDENTITY, PSK_SECRET = "bench", "bench-secret"


def client_hello() -> bytes:
    """A DTLS 1.2 ClientHello (no cookie, PSK-AES128-CCM8 only): a DTLS server answers it with a
    HelloVerifyRequest without knowing who asks."""
    # version, random, no session id, no cookie, one suite (0xC0A8), null compression, no extensions
    body = bytes([0xFE, 0xFD]) + bytes(32) + bytes([0, 0]) + bytes([0, 2, 0xC0, 0xA8]) + bytes([1, 0]) + bytes(2)
    n = len(body).to_bytes(3, "big")
    handshake = bytes([1]) + n + bytes([0, 0]) + bytes(3) + n + body
    return bytes([22, 0xFE, 0xFD]) + bytes(8) + len(handshake).to_bytes(2, "big") + handshake


def hello_verified(data: bytes) -> bool:
    # A handshake record whose message is a HelloVerifyRequest (3).
    return len(data) > 13 and data[0] == 22 and data[13] == 3


COAP_DTLS = dataclasses.replace(
    COAP,
    key="coap-dtls",
    label="CoAP/DTLS",
    tag="coap-dtls",
    listener="DTLS",
    pub_protocol="coap",
    gen_args=("--coap-dtls", "--psk-identity", PSK_IDENTITY, "--psk-key", PSK_SECRET),
    psk=f"{PSK_IDENTITY}:{PSK_SECRET}",
    script="coap_cost.py",
    placeholder="$COAPS_PORT",
    probe=client_hello(),
    answered=hello_verified,
    probe_name="a DTLS ClientHello",
    title="CoAP over DTLS publish cost: CoAP/DTLS vs MQTT publishers → MQTT subscribers",
    broker_note="the CoAP gateway with a DTLS listener on a loopback UDP port (`gateway.coap.enable = true`, "
    "`listeners.dtls.default`, PSK only: `psk_authentication.enable = true` with a one-line `init_file`, "
    "the default ciphers; connectionless, `messages_rate = infinity`)",
    notes=(
        "CoAP/DTLS publishers: one UDP socket each, which first completes a DTLS 1.2 handshake with a "
        "pre-shared key (`TLS_PSK_WITH_AES_128_CCM_8`, the `rtc-dtls` client; all publishers share one "
        "identity; the handshakes fall inside the broker CPU measured, as the MQTT publishers' CONNECTs do), then sends what the plain CoAP "
        "publishers send, each datagram as one DTLS application record: a `GET /.well-known/core`, then "
        "`POST /ps/{topic}?clientid=…&qos=Q` with the benchmark payload, NON at QoS 0, CON at QoS 1 with "
        "one in flight per publisher (RFC 7252 `NSTART = 1`), resent after 2–3 s without its ACK, the wait "
        "doubling (`retransmits`). MQTT publishers: default `--inflight 64`",
        COAP.notes[1],
    ),
    port_name="the CoAP gateway's DTLS listener",
)

VARIANTS = {"--dtls": (COAP_DTLS, "CoAP over DTLS (PSK) vs MQTT instead, into its own section "
                                  "(<!-- coap-dtls-cost:start -->)")}

if __name__ == "__main__":
    B.run_main(lambda: G.main(COAP, __doc__, base_port=26883, variants=VARIANTS))
