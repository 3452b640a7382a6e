"""The side-by-side scenarios and the metrics read from each run.

A traffic scenario runs one generator process: first a short warmup run (results discarded),
then the measured run with `--warmup 0`; broker CPU is sampled from /proc just before the
measured generator starts and just after it exits. The `conns` scenario runs two generator
processes at once (9,500 connections each, from 127.0.0.1 and 127.0.0.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable


@dataclass
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    get: Callable[[dict], float | None]
    fmt: str = "{:,.0f}"


def gen(key: str) -> Callable[[dict], float | None]:
    return lambda run: (run.get("gen") or {}).get(key)


def lat(key: str) -> Callable[[dict], float | None]:
    return lambda run: ((run.get("gen") or {}).get("latency_us") or {}).get(key)


def runner(key: str) -> Callable[[dict], float | None]:
    return lambda run: run.get(key)


THROUGHPUT = Metric("throughput", "received msg/s", "msg/s", True, gen("throughput_received_per_s"))
DELIVERIES = Metric("deliveries", "deliveries/s", "deliveries/s", True, gen("throughput_received_per_s"))
CPU_PER_MSG = Metric("cpu_us_per_msg", "broker CPU µs per message", "µs", False, runner("cpu_us_per_msg"), "{:,.2f}")
CPU_PER_DELIVERY = Metric(
    "cpu_us_per_msg", "broker CPU µs per delivery", "µs", False, runner("cpu_us_per_msg"), "{:,.2f}"
)
LOST = Metric("lost", "lost messages", "msgs", False, gen("lost"))
P50 = Metric("p50", "latency p50", "µs", False, lat("p50"))
P99 = Metric("p99", "latency p99", "µs", False, lat("p99"))
P999 = Metric("p999", "latency p99.9", "µs", False, lat("p999"))
RSS_PER_CONN = Metric("rss_per_conn", "broker RSS growth per connection", "bytes", False, runner("rss_per_conn_bytes"))
CONNECTED = Metric("connections", "connections established", "conns", True, runner("connections"))
BROKER_SOCKETS = Metric("broker_sockets", "broker descriptors added", "fds", True, runner("broker_fd_growth"))
CONNECT_RATE = Metric("connect_rate", "connections per second (both generators)", "conns/s", True, runner("connect_rate_per_s"))
CONNECT_FAILURES = Metric("connect_failures", "connect failures", "conns", False, runner("connect_failures"))


@dataclass
class Scenario:
    key: str
    title: str
    command: str  # generator subcommand
    args: list[str]  # generator arguments besides host/port/version/duration/warmup/json
    pinned: bool
    metrics: list[Metric]
    duration: float = 10.0
    warmup: float = 3.0
    quick_duration: float = 2.0
    quick_warmup: float = 1.0
    # For `conns`: connections per generator process; pairs of source addresses, one address per
    # process. A run takes the first pair with few ports in use (see side_by_side.pick_sources).
    conns_per_process: int = 0
    source_ip_pairs: list[tuple[str, str]] = field(default_factory=list)
    connect_rate: int = 0
    plot_throughput: bool = False
    # "tcp", "tls", "ws" or "wss" (generator --transport); brokers without it skip the scenario.
    transport: str = "tcp"
    # Part of the default set (the transport-cost scenarios are opt-in: --scenarios transport).
    default: bool = True
    # Transport-cost group: the scenario kind ("p2p_qos0", "p2p_latency", "idle_conns") it varies.
    kind: str = ""


TRANSPORTS = ["tcp", "tls", "ws", "wss"]
TRANSPORT_LABELS = {"tcp": "TCP", "tls": "TLS", "ws": "WebSocket", "wss": "WebSocket over TLS"}
# Idle connections in the transport-cost group: fewer than idle_conns (every TLS connection is a
# full handshake, and the group runs 4 transports), 2 generator processes of this many each.
TRANSPORT_IDLE_PER_PROCESS = 2500
TRANSPORT_IDLE_RATE = 1000


def transport_scenarios(base: list[Scenario]) -> list[Scenario]:
    """The transport-cost group: p2p_qos0, p2p_latency and a 5,000-connection idle scenario over
    TCP (the baselines; p2p_qos0 and p2p_latency are the default scenarios themselves), TLS,
    WebSocket and WebSocket over TLS."""
    by_key = {s.key: s for s in base}
    idle = by_key["idle_conns"]
    idle_tcp = replace(
        idle,
        key="idle_conns_5k",
        title=f"idle connections: {2 * TRANSPORT_IDLE_PER_PROCESS:,} × (CONNECT + 1 SUBSCRIBE)",
        conns_per_process=TRANSPORT_IDLE_PER_PROCESS,
        connect_rate=TRANSPORT_IDLE_RATE,
        default=False,
    )
    out = []
    for kind, tcp in (("p2p_qos0", by_key["p2p_qos0"]), ("p2p_latency", by_key["p2p_latency"]),
                      ("idle_conns", idle_tcp)):
        tcp.kind = kind
        out.append(tcp)
        for t in TRANSPORTS[1:]:
            key = f"{kind}_{t}"
            out.append(replace(tcp, key=key, title=f"{tcp.title}, over {TRANSPORT_LABELS[t]}", transport=t,
                               default=False, plot_throughput=False))
    return out


def all_scenarios(qos0_size: int = 64) -> list[Scenario]:
    base = base_scenarios(qos0_size)
    extra = [s for s in transport_scenarios(base) if s.key not in {b.key for b in base}]
    return base + extra


def base_scenarios(qos0_size: int = 64) -> list[Scenario]:
    size = ["--size", str(qos0_size)]
    return [
        Scenario(
            "p2p_qos0",
            "p2p, 4 pairs, QoS 0, closed loop",
            "p2p",
            ["--pairs", "4", "--qos", "0", *size],
            pinned=True,
            metrics=[THROUGHPUT, CPU_PER_MSG, LOST],
            plot_throughput=True,
        ),
        Scenario(
            "p2p_latency",
            "p2p, 1 pair, QoS 0, open loop at 20,000 msg/s",
            "p2p",
            ["--pairs", "1", "--qos", "0", *size, "--rate", "20000"],
            pinned=True,
            metrics=[P50, P99, P999, THROUGHPUT, CPU_PER_MSG, LOST],
        ),
        Scenario(
            "fanout_100",
            "fan-out 1 → 100, QoS 0, closed loop",
            "fanout",
            ["--subscribers", "100", "--qos", "0", *size],
            pinned=False,
            metrics=[DELIVERIES, CPU_PER_DELIVERY, LOST],
            plot_throughput=True,
        ),
        Scenario(
            "fanout_1000",
            "fan-out 1 → 1000, QoS 0, closed loop",
            "fanout",
            ["--subscribers", "1000", "--qos", "0", *size],
            pinned=False,
            metrics=[DELIVERIES, CPU_PER_DELIVERY, LOST],
            warmup=5.0,
            quick_warmup=2.0,
            plot_throughput=True,
        ),
        Scenario(
            "p2p_qos1",
            "p2p, 4 pairs, QoS 1, closed loop",
            "p2p",
            ["--pairs", "4", "--qos", "1", *size],
            pinned=True,
            metrics=[THROUGHPUT, CPU_PER_MSG, LOST],
            plot_throughput=True,
        ),
        Scenario(
            "idle_conns",
            "idle connections: 19,000 × (CONNECT + 1 SUBSCRIBE)",
            "conns",
            ["--qos", "0"],
            pinned=False,
            metrics=[RSS_PER_CONN, CONNECTED, BROKER_SOCKETS, CONNECT_FAILURES, CONNECT_RATE],
            duration=10.0,  # --hold
            quick_duration=3.0,
            conns_per_process=9500,
            source_ip_pairs=[("127.0.0.1", "127.0.0.2"), ("127.0.0.3", "127.0.0.4"),
                             ("127.0.0.5", "127.0.0.6"), ("127.0.0.7", "127.0.0.8")],
            connect_rate=5000,
        ),
    ]
