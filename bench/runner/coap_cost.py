#!/usr/bin/env python3
"""CoAP publish cost: broker CPU per message of CoAP publishers (UDP, through Portico's CoAP
gateway, connectionless) against MQTT publishers, both delivering to MQTT subscribers, at QoS 0
and 1.

    python3 bench/runner/coap_cost.py [--runs 3] [--quick] [--pairs 10] [--rate0 20000]
                                      [--rate1 10000] [--duration 10] [--base-port 26883]

p2p: N publishers, each to its own topic, one MQTT subscriber per topic, open loop at a fixed
total rate (the same for both paths). CoAP publishers send `POST /ps/{topic}?clientid=..&qos=Q`:
NON requests at QoS 0, CON requests at QoS 1 (one in flight per publisher, RFC 7252 NSTART = 1).
Every run gets a fresh broker (pinned to CPU 0, the generator to CPU 1) and a warm-up run first;
the broker's CPU time (utime + stime) is read around the measured run. Within a round the two
paths run back to back, in alternating order. The ratio CoAP / MQTT of CPU µs per message is
computed per round, then its median. The common code (with mqttsn_cost.py) is in
gateway_cost.py.

Standard library only; binaries must be built (cargo build --release -p portico -p
portico-bench; $CARGO_TARGET_DIR is honoured). Writes the section between
<!-- coap-cost:start --> and <!-- coap-cost:end --> of docs/benchmarks.md (not with --quick)
and the raw JSON to docs/bench/raw-<date>-coap[-quick].json. See bench/README.md.
"""

from __future__ import annotations

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

if __name__ == "__main__":
    B.run_main(lambda: G.main(COAP, __doc__, base_port=26883))
