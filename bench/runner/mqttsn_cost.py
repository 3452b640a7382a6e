#!/usr/bin/env python3
"""MQTT-SN publish cost: broker CPU per message of MQTT-SN publishers (UDP, through Portico's
MQTT-SN gateway) against MQTT publishers, both delivering to MQTT subscribers, at QoS 0 and 1.

    python3 bench/runner/mqttsn_cost.py [--runs 3] [--quick] [--pairs 10] [--rate0 20000]
                                        [--rate1 10000] [--duration 10] [--base-port 25883]

p2p: N publishers, each to its own topic, one MQTT subscriber per topic, open loop at a fixed
total rate (the same for both paths). Every run gets a fresh broker (pinned to CPU 0, the
generator to CPU 1) and a warm-up run first; the broker's CPU time (utime + stime) is read around
the measured run. Within a round the two paths run back to back, in alternating order. The
ratio MQTT-SN / MQTT of CPU µs per message is computed per round, then its median. The common
code (for coap_cost.py too) is in gateway_cost.py.

Standard library only; binaries must be built (cargo build --release -p portico -p
portico-bench; $CARGO_TARGET_DIR is honoured). Writes the section between
<!-- mqttsn-cost:start --> and <!-- mqttsn-cost:end --> of docs/benchmarks.md (not with --quick)
and the raw JSON to docs/bench/raw-<date>-mqttsn[-quick].json. See bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import brokers as B  # noqa: E402
import gateway_cost as G  # noqa: E402

MQTTSN = G.Gateway(
    key="mqtt-sn",
    label="MQTT-SN",
    tag="mqttsn",
    env="PORTICO_GATEWAY__MQTTSN__",
    port_flag="--sn-port",
    placeholder="$SN_PORT",
    # SEARCHGW (radius 0), answered with GWINFO.
    probe=bytes([3, 0x01, 0]),
    answered=lambda data: len(data) >= 2 and data[1] == 0x02,
    probe_name="SEARCHGW",
    title="MQTT-SN publish cost: MQTT-SN vs MQTT publishers → MQTT subscribers",
    broker_note="the MQTT-SN gateway on a loopback UDP port "
    "(`gateway.mqttsn.enable = true`, `messages_rate = infinity`, the default)",
    notes=(
        "MQTT-SN publishers: one UDP socket each, CONNECT (clean session), REGISTER of the topic, PUBLISH "
        "with the topic id; QoS 1 with one message in flight per publisher (MQTT-SN's window), resent with "
        "DUP after 1 s without PUBACK (`retransmits`). MQTT publishers: default `--inflight 64`, which at "
        "this rate rarely has more than one message out",
        "UDP receive-buffer drops: the kernel's `RcvbufErrors` (/proc/net/snmp, every UDP socket on the "
        "machine) over the measured run: MQTT-SN datagrams the gateway's socket had no room for (the "
        "default 208 KiB buffer holds 256 of these 73-byte datagrams on loopback, 13 ms at 20,000 msg/s)",
    ),
    port_name="the MQTT-SN gateway",
)

if __name__ == "__main__":
    B.run_main(lambda: G.main(MQTTSN, __doc__, base_port=25883))
