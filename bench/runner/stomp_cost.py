#!/usr/bin/env python3
"""STOMP publish cost: broker CPU per message of STOMP publishers (TCP, through Portico's STOMP
gateway) against MQTT publishers, both delivering to MQTT subscribers, at "QoS 0" and "QoS 1".

    python3 bench/runner/stomp_cost.py [--runs 3] [--quick] [--pairs 10] [--rate0 20000]
                                       [--rate1 10000] [--duration 10] [--base-port 27883]

p2p: N publishers, each to its own topic, one MQTT subscriber per topic, open loop at a fixed
total rate (the same for both paths). STOMP publishers: one TCP connection each, CONNECT
(accept-version 1.2, no heart-beats), then SEND frames to `destination:<topic>` with the
benchmark payload. QoS 0: no receipts (the MQTT publishers send QoS 0). QoS 1: a `receipt` per
SEND, at most `--inflight` (64) outstanding per publisher, against MQTT QoS 1 publishers with the
same window of unacknowledged PUBLISHes; the subscribers subscribe at the QoS of the run. The
gateway publishes every SEND at MQTT QoS 1 either way (docs/conformance/stomp.md). Every run gets
a fresh broker (pinned to CPU 0, the generator to CPU 1) and a warm-up run first; the broker's
CPU time (utime + stime) is read around the measured run. Within a round the two paths run back
to back, in alternating order. The ratio STOMP / MQTT of CPU µs per message is computed per
round, then its median. The common code (with mqttsn_cost.py and coap_cost.py) is in
gateway_cost.py.

Standard library only; binaries must be built (cargo build --release -p portico -p
portico-bench; $CARGO_TARGET_DIR is honoured). Writes the section between
<!-- stomp-cost:start --> and <!-- stomp-cost:end --> of docs/benchmarks.md (not with --quick)
and the raw JSON to docs/bench/raw-<date>-stomp[-quick].json. See bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import brokers as B  # noqa: E402
import gateway_cost as G  # noqa: E402

STOMP = G.Gateway(
    key="stomp",
    label="STOMP",
    tag="stomp",
    env="PORTICO_GATEWAY__STOMP__",
    port_flag="--stomp-port",
    placeholder="$STOMP_PORT",
    probe=b"CONNECT\naccept-version:1.2\nhost:127.0.0.1\nheart-beat:0,0\n\n\0",
    answered=lambda data: data.lstrip(b"\r\n").startswith(b"CONNECTED\n"),
    probe_name="a STOMP CONNECT",
    bye=b"DISCONNECT\n\n\0",
    tcp=True,
    listener="TCP",
    title="STOMP publish cost: STOMP vs MQTT publishers → MQTT subscribers",
    broker_note="the STOMP gateway on a loopback TCP port (`gateway.stomp.enable = true`, "
    "`listeners.tcp.default` bound to 127.0.0.1, `messages_rate = infinity`, the default; anonymous "
    "clients, as the MQTT listener)",
    notes=(
        "STOMP publishers: one TCP connection each (TCP_NODELAY, as the MQTT clients); `CONNECT` "
        "(`accept-version:1.2`, `heart-beat:0,0`), wait for `CONNECTED`, then `SEND` frames "
        "(`destination:<topic>`, `content-length`, the benchmark payload as body) written in batches as "
        "the MQTT publishers write theirs. QoS 0: no `receipt` header (fire and forget, like MQTT QoS 0); "
        "the gateway still publishes every SEND at MQTT QoS 1 inside the broker (docs/conformance/stomp.md), "
        "delivered at QoS 0 to these QoS 0 subscribers. QoS 1: a `receipt` per SEND, at most 64 receipts "
        "outstanding per publisher (the generator's `--inflight`, default 64, which is also the MQTT QoS 1 "
        "publishers' window of unacknowledged PUBLISHes); the gateway sends the RECEIPT once the message is "
        "routed, as the broker sends a PUBACK. Subscribers: MQTT at the run's QoS (QoS 1: they PUBACK every "
        "delivery, on both paths)",
        "MQTT publishers: the same topics, payloads and rate, QoS 0 or QoS 1 with `--inflight 64`; at these "
        "rates neither path has more than a few messages out",
    ),
    port_name="the STOMP gateway's TCP listener",
)

if __name__ == "__main__":
    B.run_main(lambda: G.main(STOMP, __doc__, base_port=27883))
