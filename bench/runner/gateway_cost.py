"""What the gateway publish-cost runners (mqttsn_cost.py, coap_cost.py, stomp_cost.py) share:
broker CPU per message of publishers through one of Portico's gateways (UDP, or TCP for STOMP)
against MQTT publishers, both delivering to MQTT subscribers, at QoS 0 and 1.

p2p: N publishers, each to its own topic, one MQTT subscriber per topic, open loop at a fixed
total rate (the same for both paths). Every run gets a fresh broker (pinned to CPU 0, the
generator to CPU 1) and a warm-up run first; the broker's CPU time (utime + stime) is read around
the measured run. Within a round the two paths run back to back, in alternating order. The
ratio gateway / MQTT of CPU µs per message is computed per round, then its median.

A runner describes its gateway with a `Gateway` and calls `main(gateway, doc)`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import shlex
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import brokers as B  # noqa: E402
import procfs  # noqa: E402
import report  # noqa: E402
from side_by_side import RunFailed, log, run_generator, settle, target_dir, tool_version  # noqa: E402

REPO = HERE.parent.parent
TARGET_RATIO = 1.5  # docs/performance.md: gateway publish CPU per message <= 1.5 x the MQTT path


@dataclass(frozen=True)
class Gateway:
    """One gateway under test and how the report speaks of it."""

    key: str  # `--pub-protocol` value and the path's name in the raw JSON: "mqtt-sn", "coap"
    label: str  # "MQTT-SN", "CoAP"
    tag: str  # file and marker name: "mqttsn" -> raw-<date>-mqttsn.json, <!-- mqttsn-cost:start -->
    env: str  # the gateway's config prefix: "PORTICO_GATEWAY__MQTTSN__"
    port_flag: str  # generator flag of the gateway's port: "--sn-port"
    placeholder: str  # what the port shows as in the report: "$SN_PORT"
    probe: bytes  # a datagram (TCP: the first bytes sent) the gateway answers once it is up
    answered: Callable[[bytes], bool]  # is this the answer to `probe`?
    probe_name: str  # what `probe` is, for errors: "SEARCHGW"
    title: str  # section title
    broker_note: str  # the "Broker:" bullet after "built-in defaults plus "
    notes: tuple[str, ...]  # more method bullets, after "Each run: ..."
    port_name: str  # "the MQTT-SN gateway"
    listener: str = "UDP"  # the gateway listener's kind: LISTENERS__<listener>__DEFAULT__BIND
    pub_protocol: str = ""  # `--pub-protocol` value when it is not `key` ("coap" for "coap-dtls")
    gen_args: tuple[str, ...] = ()  # more generator flags for the gateway path
    psk: str = ""  # a line of the broker's PSK file ("identity:secret"), for a DTLS listener
    script: str = ""  # the runner, when not <tag>_cost.py
    tcp: bool = False  # a TCP gateway (STOMP): probed over a connection; no retransmit/UDP-drop columns
    bye: bytes = b""  # TCP: sent after the probe's answer, before closing (e.g. a DISCONNECT)


def script(gw: Gateway) -> str:
    return gw.script or f"{gw.tag}_cost.py"


def start_marker(gw: Gateway) -> str:
    return f"<!-- {gw.tag}-cost:start -->"


def end_marker(gw: Gateway) -> str:
    return f"<!-- {gw.tag}-cost:end -->"


class GatewayPortico(B.Portico):
    """brokers.Portico with a gateway on a loopback port, no per-peer rate limit."""

    def __init__(self, gw: Gateway, port: int, gw_port: int, binary: Path):
        super().__init__(port, binary, REPO)
        self.gw = gw
        self.gw_port = gw_port

    def command(self, workdir):
        cmd, env = super().command(workdir)
        pre = self.gw.env
        listener = f"{pre}LISTENERS__{self.gw.listener}__DEFAULT__"
        env.update({
            pre + "ENABLE": "true",
            listener + "BIND": f"127.0.0.1:{self.gw_port}",
            # The default, stated: a limit would drop datagrams (or, over TCP, stall the
            # publishers) and look like broker loss.
            listener + "MESSAGES_RATE": "infinity",
        })
        if self.gw.psk:
            psk_file = Path(workdir) / "psk.txt"
            psk_file.parent.mkdir(parents=True, exist_ok=True)
            psk_file.write_text(self.gw.psk + "\n")
            env.update({
                "PORTICO_PSK_AUTHENTICATION__ENABLE": "true",
                "PORTICO_PSK_AUTHENTICATION__INIT_FILE": str(psk_file),
            })
        return cmd, env

    def start(self, workdir, pinned, transport="tcp"):
        super().start(workdir, pinned, transport)
        wait_gateway(self.gw, self.gw_port, self.proc)


def wait_gateway(gw: Gateway, port: int, proc, timeout: float = 15.0) -> None:
    """Waits until the gateway answers its probe."""
    if gw.tcp:
        wait_tcp_gateway(gw, port, proc, timeout)
        return
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RunFailed(f"broker exited with status {proc.returncode} before its {gw.label} gateway answered")
            try:
                s.sendto(gw.probe, ("127.0.0.1", port))
                if gw.answered(s.recv(2048)):
                    return
            except OSError:  # timeout, or ICMP port unreachable
                time.sleep(0.05)
    raise RunFailed(f"no answer to {gw.probe_name} from the {gw.label} gateway on UDP 127.0.0.1:{port} "
                    f"after {timeout:.0f} s")


def wait_tcp_gateway(gw: Gateway, port: int, proc, timeout: float) -> None:
    """Waits until a connection to the gateway answers its probe (then sends `gw.bye`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RunFailed(f"broker exited with status {proc.returncode} before its {gw.label} gateway answered")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.sendall(gw.probe)
                if gw.answered(s.recv(4096)):
                    if gw.bye:
                        s.sendall(gw.bye)
                    return
        except OSError:  # refused (not listening yet), or no answer
            pass
        time.sleep(0.05)
    raise RunFailed(f"no answer to {gw.probe_name} from the {gw.label} gateway on TCP 127.0.0.1:{port} "
                    f"after {timeout:.0f} s")


def udp_rcvbuf_errors() -> int | None:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets of this
    network namespace), from /proc/net/snmp."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return None


def generator_cmd(ctx, broker: GatewayPortico, path: str, qos: int, duration: float) -> list[str]:
    rate = ctx.args.rate0 if qos == 0 else ctx.args.rate1
    cmd = [str(ctx.bench), "p2p", "--host", "127.0.0.1", "--port", str(broker.port),
           "--pairs", str(ctx.args.pairs), "--qos", str(qos), "--size", str(ctx.args.size),
           "--rate", str(rate), "--duration", f"{duration:g}", "--warmup", "0", "--json", "--quiet"]
    if path == ctx.gw.key:
        cmd += ["--pub-protocol", ctx.gw.pub_protocol or ctx.gw.key, ctx.gw.port_flag, str(broker.gw_port),
                *ctx.gw.gen_args]
    return ["taskset", "-c", B.GENERATOR_CPU, *cmd, "--threads", "1"]


def display(cmd: list[str], ctx) -> str:
    cmd = list(cmd)
    cmd[cmd.index(str(ctx.bench))] = "portico-bench"
    for flag, placeholder in (("--port", "$PORT"), (ctx.gw.port_flag, ctx.gw.placeholder)):
        if flag in cmd:
            cmd[cmd.index(flag) + 1] = placeholder
    return " ".join(c if c.startswith("$") else shlex.quote(c) for c in cmd)


def run_one(ctx, path: str, qos: int, rnd: int) -> dict:
    port = next(ctx.ports)
    broker = GatewayPortico(ctx.gw, port, port + 1, ctx.portico)
    next(ctx.ports)  # the gateway's port
    rec = {"path": path, "qos": qos, "round": rnd, "status": "ok",
           "started": dt.datetime.now().isoformat(timespec="seconds")}
    workdir = ctx.tmp / f"{path}-qos{qos}-{rnd}"
    try:
        broker.start(workdir, pinned=True)
        rec["broker_cmd"] = shlex.join(broker.cmd)
        warmup = ctx.args.warmup
        if warmup > 0:
            try:
                run_generator(generator_cmd(ctx, broker, path, qos, warmup), warmup + 60, workdir / "warmup.err")
            except RunFailed as e:
                raise RunFailed(f"warmup run: {e}")
            settle(broker)
        cmd = generator_cmd(ctx, broker, path, qos, ctx.args.duration)
        rec["cmd_display"] = display(cmd, ctx)
        cpu0, drops0 = procfs.cpu_seconds(broker.pid), udp_rcvbuf_errors()
        t0 = time.monotonic()
        result = run_generator(cmd, ctx.args.duration + 60, workdir / "generator.err")
        wall = time.monotonic() - t0
        rec["gen"] = result
        if not broker.alive():
            raise RunFailed("broker died during the measured run")
        cpu = procfs.cpu_seconds(broker.pid) - cpu0
        drops1 = udp_rcvbuf_errors()
        rec["udp_rcvbuf_errors"] = drops1 - drops0 if drops0 is not None and drops1 is not None else None
        received = result.get("received")
        if not isinstance(received, int):
            raise RunFailed(f"generator JSON has no 'received' count: {json.dumps(result)[:300]}")
        rec["window_s"] = round(wall, 3)
        rec["broker_cpu_s"] = round(cpu, 4)
        rec["broker_cpu_util"] = round(cpu / wall, 3) if wall > 0 else None
        rec["cpu_us_per_msg"] = cpu * 1e6 / received if received else None
    except (RunFailed, RuntimeError, OSError) as e:
        rec["status"] = "failed"
        rec["error"] = str(e)
        rec["broker_log_tail"] = broker.log_tail() or "(broker log empty)"
    finally:
        broker.stop()
    return rec


def brief(rec: dict, gw: Gateway | None = None) -> str:
    if rec["status"] != "ok":
        return f"FAILED: {rec.get('error')}"
    g = rec["gen"]
    lat = g.get("latency_us") or {}
    udp = "" if gw is not None and gw.tcp else (f", retransmits {g.get('retransmits')}, "
                                     f"UDP receive-buffer drops {rec.get('udp_rcvbuf_errors')}")
    return (f"{g.get('throughput_received_per_s') or 0:,.0f} msg/s, {rec['cpu_us_per_msg']:.2f} µs CPU/msg "
            f"({rec['broker_cpu_util']:.0%} of a core), lost {g.get('lost')}, p50 {lat.get('p50')} "
            f"p99 {lat.get('p99')} µs{udp}")


# ---------------------------------------------------------------- summary


def paths(gw: Gateway) -> list[tuple[str, str]]:
    return [("mqtt", "MQTT"), (gw.key, gw.label)]


def ok_runs(runs, path, qos):
    return {r["round"]: r for r in runs if r["path"] == path and r["qos"] == qos and r["status"] == "ok"}


def spread(vals, fmt: str) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    med = statistics.median(vals)
    if len(vals) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(vals), fmt)}–{format(max(vals), fmt)})"


def ratios(runs, gw: Gateway, qos) -> dict[int, float]:
    mqtt, other = ok_runs(runs, "mqtt", qos), ok_runs(runs, gw.key, qos)
    return {r: other[r]["cpu_us_per_msg"] / mqtt[r]["cpu_us_per_msg"]
            for r in sorted(mqtt) if r in other and mqtt[r]["cpu_us_per_msg"] and other[r]["cpu_us_per_msg"]}


def tables(runs, gw: Gateway, args) -> tuple[str, dict]:
    L: list[str] = []
    verdict = {}
    for qos in (0, 1):
        rate = args.rate0 if qos == 0 else args.rate1
        L += [f"### QoS {qos}, {args.pairs} publishers → {args.pairs} MQTT subscribers, {rate:,} msg/s in all", ""]
        L += [f"| round | MQTT µs CPU/msg | {gw.label} µs CPU/msg | {gw.label} / MQTT |", "|---|---|---|---|"]
        rat = ratios(runs, gw, qos)
        mqtt, other = ok_runs(runs, "mqtt", qos), ok_runs(runs, gw.key, qos)
        for rnd in range(args.runs):
            cell = lambda d: f"{d[rnd]['cpu_us_per_msg']:.2f}" if rnd in d else "failed"  # noqa: E731
            L.append(f"| {rnd + 1} | {cell(mqtt)} | {cell(other)} | "
                     + (f"{rat[rnd]:.2f}" if rnd in rat else "—") + " |")
        med = statistics.median(rat.values()) if rat else None
        verdict[qos] = med
        L.append(f"| median | {spread([r['cpu_us_per_msg'] for r in mqtt.values()], '.2f')} | "
                 f"{spread([r['cpu_us_per_msg'] for r in other.values()], '.2f')} | "
                 + (f"**{spread(rat.values(), '.2f')}**" if rat else "—") + " |")
        if gw.tcp:
            L += ["", "| path | received msg/s | delivered | lost | p50 µs | p99 µs | broker CPU (of one core) |",
                  "|---|---|---|---|---|---|---|"]
        else:
            L += ["", "| path | received msg/s | delivered | lost | p50 µs | p99 µs | broker CPU (of one core) "
                  "| retransmits | UDP receive-buffer drops |", "|---|---|---|---|---|---|---|---|---|"]
        for path, label in paths(gw):
            rs = list(ok_runs(runs, path, qos).values())
            g = [r["gen"] for r in rs]
            lat = [x.get("latency_us") or {} for x in g]
            retr = spread([x.get("retransmits") for x in g], ",.0f") if path == gw.key else "—"
            row = (f"| {label} | {spread([x.get('throughput_received_per_s') for x in g], ',.0f')} | "
                   f"{spread([x.get('received') for x in g], ',.0f')} | {spread([x.get('lost') for x in g], ',.0f')} | "
                   f"{spread([x.get('p50') for x in lat], ',.0f')} | {spread([x.get('p99') for x in lat], ',.0f')} | "
                   f"{spread([r.get('broker_cpu_util') for r in rs], '.0%')} |")
            if not gw.tcp:
                row += f" {retr} | {spread([r.get('udp_rcvbuf_errors') for r in rs], ',.0f')} |"
            L.append(row)
        L.append("")
    return "\n".join(L), verdict


def markdown(ctx_info: dict, runs: list[dict], gw: Gateway, args, versions: dict) -> str:
    body, verdict = tables(runs, gw, args)
    cmds = {}
    for r in runs:
        if r.get("cmd_display"):
            cmds.setdefault((r["path"], r["qos"]), r["cmd_display"])
    m = ctx_info["machine"]
    L = [f"## {gw.title}", ""]
    L.append(f"Run on {ctx_info['date']} with `{ctx_info['command']}` ({args.runs} round(s), wall time "
             f"{ctx_info['wall_min']:.0f} min). Generated by `bench/runner/{script(gw)}`; see `bench/README.md`.")
    L += ["", f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, Linux {m['kernel']}; "
          f"load average {ctx_info['loadavg']} at the start",
          f"- Portico: {versions['portico']}; generator: {versions['generator']}",
          f"- Broker: built-in defaults plus {gw.broker_note}, pinned to CPU 0; "
          "generator pinned to CPU 1 (`--threads 1`)",
          f"- Each run: a fresh broker, a {args.warmup:g} s warm-up run (discarded), then {args.duration:g} s "
          "measured; broker CPU = utime + stime around the measured run; µs CPU/msg = broker CPU ÷ messages received",
          *(f"- {note}" for note in gw.notes)]
    for note in ctx_info["notes"]:
        L.append(f"- Note: {note}")
    L += ["", f"Generator commands (`$PORT`: the MQTT listener, `{gw.placeholder}`: {gw.port_name}):", ""]
    for (path, qos), c in sorted(cmds.items(), key=lambda kv: (kv[0][1], kv[0][0] != "mqtt")):
        L.append(f"- QoS {qos}, {dict(paths(gw))[path]}: `{c}`")
    L += ["", "Cells: median (min–max) over the rounds; the ratio is computed per round (the two runs of a "
          "round are back to back) and then its median (min–max).", "", body]
    verdicts = []
    for qos, med in verdict.items():
        if med is None:
            verdicts.append(f"QoS {qos}: no ratio (runs failed)")
        else:
            ok = "meets" if med <= TARGET_RATIO else "misses"
            verdicts.append(f"QoS {qos}: {med:.2f}× the MQTT path's CPU per message, which {ok} the target of "
                            f"≤ {TARGET_RATIO}×")
    L += [f"Target (docs/performance.md): {gw.label} publish → MQTT subscriber at most 1.5× the broker CPU per "
          "message of the MQTT path. " + "; ".join(verdicts) + "."]
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        L += ["", "### Failed runs", ""]
        for r in failed:
            L.append(f"- {r['path']} QoS {r['qos']} round {r['round'] + 1}: {r.get('error')}")
            tail = (r.get("broker_log_tail") or "").strip().splitlines()[-5:]
            if tail:
                L += ["", "  ```", *("  " + t for t in tail), "  ```"]
    return "\n".join(L) + "\n"


def main(gw: Gateway, doc: str, base_port: int, variants: dict[str, tuple[Gateway, str]] | None = None) -> int:
    """`variants`: flag -> (gateway, help): runner flags that measure another gateway (its own
    section) instead of `gw`."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, (_, help_text) in (variants or {}).items():
        p.add_argument(flag, action="store_true", help=help_text)
    p.add_argument("--runs", type=int, default=3, help="rounds (each: both paths at QoS 0 and 1); default 3")
    p.add_argument("--pairs", type=int, default=10, help="publishers (= subscribers, one topic each); default 10")
    p.add_argument("--rate0", type=int, default=20000, help="QoS 0 total msg/s (default 20000)")
    p.add_argument("--rate1", type=int, default=10000, help="QoS 1 total msg/s (default 10000)")
    p.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    p.add_argument("--duration", type=float, default=10, help="measured seconds per run (default 10)")
    p.add_argument("--warmup", type=float, default=3, help="seconds of the warm-up run before each (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 s runs, 1 s warm-up; docs untouched")
    p.add_argument("--base-port", type=int, default=base_port,
                   help=f"first loopback port (2 per broker start; default {base_port})")
    p.add_argument("--out", default="docs/benchmarks.md", help="markdown file for the section")
    p.add_argument("--bench-dir", default="docs/bench", help="where the raw JSON goes")
    args = p.parse_args()
    for flag, (variant, _) in (variants or {}).items():
        if getattr(args, flag.lstrip("-").replace("-", "_")):
            gw = variant
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 2, 1
    command = f"python3 bench/runner/{script(gw)}" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    started = time.monotonic()
    now = dt.datetime.now(dt.timezone.utc)
    os.chdir(REPO)
    portico = target_dir() / "release" / "portico"
    bench = target_dir() / "release" / "portico-bench"
    for binary in (portico, bench):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} missing: cargo build --release -p portico -p portico-bench")
    tmp = Path(tempfile.mkdtemp(prefix=f"portico-{gw.tag}-cost-"))
    ctx = argparse.Namespace(args=args, gw=gw, portico=portico, bench=bench, tmp=tmp,
                             ports=itertools.count(args.base_port))
    raw_path = Path(args.bench_dir) / f"raw-{now:%Y-%m-%d}-{gw.tag}{'-quick' if args.quick else ''}.json"
    ctx_info = {"command": command, "date": now.strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick,
                "args": vars(args), "machine": procfs.machine_info(),
                "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()), "notes": []}
    versions = {"portico": GatewayPortico(gw, 0, 0, portico).version(), "generator": tool_version(bench)}
    log("machine: " + json.dumps(ctx_info["machine"]) + f"; load average {ctx_info['loadavg']}")
    runs: list[dict] = []
    raw_path.parent.mkdir(parents=True, exist_ok=True)

    def save_raw():
        raw_path.write_text(json.dumps({"context": ctx_info, "versions": versions, "runs": runs},
                                       indent=1, ensure_ascii=False) + "\n")

    try:
        for rnd in range(args.runs):
            order = paths(gw) if rnd % 2 == 0 else paths(gw)[::-1]  # alternate who goes first
            for qos in (0, 1):
                for path, label in order:
                    log(f"round {rnd + 1}/{args.runs} QoS {qos} {label} ...")
                    rec = run_one(ctx, path, qos, rnd)
                    runs.append(rec)
                    log(f"  {brief(rec, gw)}")
                    save_raw()
    except KeyboardInterrupt:
        ctx_info["notes"].append(f"interrupted (Ctrl-C) after {len(runs)} runs; the tables hold only those.")
        log("interrupted: reporting the runs so far")
    finally:
        B.kill_all()
    ctx_info["wall_min"] = (time.monotonic() - started) / 60
    save_raw()
    section = markdown(ctx_info, runs, gw, args, versions)
    print(section)
    if not args.quick:
        report.write_section(Path(args.out), section, start_marker(gw), end_marker(gw))
        log(f"wrote {args.out} and {raw_path}")
    else:
        log(f"quick run: {args.out} left alone; raw JSON in {raw_path}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if any(r["status"] != "ok" for r in runs) else 0
