#!/usr/bin/env python3
"""Durable-session benchmark: Portico's sync / batch / memory modes (Mosquitto with persistence as
a reference), and recovery of an offline persistent session after kill -9.

    python3 bench/runner/durable.py [--runs 3] [--duration 10] [--warmup 2] [--quick]
                                    [--base-port 22883] [--no-mosquitto] [--write-docs]

Standard library only; binaries must be built (target/release/portico, portico-bench).
See bench/README.md ("Durable sessions") for what it measures and how to read it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import brokers as B  # noqa: E402
import procfs  # noqa: E402
import report  # noqa: E402
from side_by_side import RunFailed, log, run_generator, settle, target_dir, tool_version  # noqa: E402

REPO = HERE.parent.parent
MODES = ["sync", "batch", "memory"]
BEGIN, END = "<!-- durable:begin -->", "<!-- durable:end -->"
TARGET_MSGS = 50_000  # the target: QoS 1 msg/s to persistent subscribers, sync mode
OPEN_LOOP_RATE = 20_000
PUB_WINDOW = 100  # unacknowledged PUBLISHes of the recovery publisher
MOSQUITTO_NOTE = ("Mosquitto writes its persistence file only at autosave (every 1800 s here, its "
                  "default) and at shutdown; it never fsyncs per message. Its rows show the cost of "
                  "persistent-session bookkeeping, not a like-for-like durability comparison.")


# ---------------------------------------------------------------- brokers


class DurablePortico(B.Portico):
    """brokers.Portico with a durable-sessions mode and an explicit data dir."""

    def __init__(self, port, binary, mode, data_dir: Path, extra_env: dict | None = None):
        super().__init__(port, binary, REPO)
        self.name, self.label = mode, f"Portico {mode}"
        self.mode, self.data_dir, self.extra_env = mode, data_dir, extra_env or {}

    def command(self, workdir):
        cmd, env = super().command(workdir)
        env.update({"PORTICO_NODE__DATA_DIR": str(self.data_dir), "PORTICO_DURABLE_SESSIONS__MODE": self.mode})
        env.update(self.extra_env)
        return cmd, env


MOSQUITTO_PERSISTENT_CONF = """\
# Written by bench/runner/durable.py: persistence on, as in a durable deployment.
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {pdir}/
autosave_interval 1800
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
connection_messages false
"""


class PersistentMosquitto(B.Mosquitto):
    name, label = "mosquitto", "Mosquitto (persistence true)"

    def command(self, workdir):
        pdir = workdir / "persist"
        pdir.mkdir(exist_ok=True)
        # Started as root, Mosquitto drops to the `mosquitto` user: it must reach and write pdir.
        for d in (workdir.parent, workdir):
            os.chmod(d, 0o755)
        os.chmod(pdir, 0o777)
        conf = workdir / "mosquitto.conf"
        conf.write_text(MOSQUITTO_PERSISTENT_CONF.format(port=self.port, pdir=pdir))
        return [self.binary, "-c", str(conf)], None


def make_broker(ctx, target: str, workdir: Path, extra_env=None) -> B.Broker:
    port = next(ctx.ports)  # a fresh loopback port for every broker start
    if target == "mosquitto":
        return PersistentMosquitto(port)
    return DurablePortico(port, ctx.portico, target, workdir / "data", extra_env)


# ---------------------------------------------------------------- p2p runs


def p2p_cmd(ctx, port: int, duration: float, pairs: int, rate: int | None) -> list[str]:
    cmd = [str(ctx.bench), "p2p", "--host", "127.0.0.1", "--port", str(port), "--qos", "1", "--persistent",
           "--pairs", str(pairs), "--duration", f"{duration:g}", "--warmup", "0", "--json", "--quiet"]
    return cmd + (["--rate", str(rate)] if rate else [])


def disk_write_bytes(pid: int) -> int:
    """Bytes the process caused to be sent to the block layer (/proc/PID/io write_bytes): shows
    that a mode really writes (and how much per message), which msg/s alone does not."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes:"))


def run_p2p(ctx, target: str, kind: str, rnd: int) -> dict:
    """One fresh broker: a warm-up run (discarded), then the measured run with broker CPU sampled
    from /proc around it (as side_by_side.run_traffic does)."""
    pairs, rate = (4, None) if kind == "closed" else (1, OPEN_LOOP_RATE)
    rec = {"kind": kind, "target": target, "round": rnd, "status": "ok"}
    workdir = ctx.tmp / f"{kind}-{target}-{rnd}"
    broker = make_broker(ctx, target, workdir)
    try:
        broker.start(workdir, pinned=False)
        rec["broker_cmd"] = shlex.join(broker.cmd)
        if ctx.args.warmup > 0:
            run_generator(p2p_cmd(ctx, broker.port, ctx.args.warmup, pairs, rate), ctx.args.warmup + 120,
                          workdir / "warmup.err")
            settle(broker)
        cmd = p2p_cmd(ctx, broker.port, ctx.args.duration, pairs, rate)
        rec["cmd_display"] = shlex.join(["portico-bench", *cmd[1:]]).replace(f"--port {broker.port}", "--port $PORT")
        cpu0, disk0, t0 = procfs.cpu_seconds(broker.pid), disk_write_bytes(broker.pid), time.monotonic()
        gen = run_generator(cmd, ctx.args.duration + 120, workdir / "generator.err")
        if not broker.alive():
            raise RunFailed("broker died during the measured run")
        cpu, disk = procfs.cpu_seconds(broker.pid) - cpu0, disk_write_bytes(broker.pid) - disk0
        n = gen.get("received") or 0
        rec.update(gen=gen, window_s=round(time.monotonic() - t0, 3), broker_cpu_s=round(cpu, 4), disk_write_bytes=disk,
                   cpu_us_per_msg=cpu * 1e6 / n if n else None, disk_bytes_per_msg=disk / n if n else None)
    except (RunFailed, RuntimeError, OSError) as e:
        rec.update(status="failed", error=str(e), broker_log_tail=broker.log_tail(15))
    finally:
        broker.stop()
    return rec


# ---------------------------------------------------------------- a tiny MQTT 3.1.1 client


def mqtt_str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def packet(first: int, body: bytes) -> bytes:
    n, rl = len(body), bytearray()
    while True:  # Remaining Length: 7 bits per byte, high bit = more
        n, digit = n >> 7, n & 0x7F
        rl.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([first]) + bytes(rl) + body


class MqttClient:
    def __init__(self, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pending: list[tuple[int, bytes]] = []  # read, but after the packet expect() wanted

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_packets(self) -> list[tuple[int, bytes]]:
        """Blocks for the next bytes; returns the complete packets as (first byte, body)."""
        if self.pending:
            out, self.pending = self.pending, []
            return out
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("broker closed the connection")
        buf, out, i = self.buf, [], 0
        buf += data
        while True:
            j, rl, shift = i + 1, 0, 0
            while j < len(buf):  # Remaining Length, 1 to 4 bytes
                rl |= (buf[j] & 0x7F) << shift
                j, shift = j + 1, shift + 7
                if not buf[j - 1] & 0x80:
                    break
            else:
                break  # header incomplete
            if j + rl > len(buf):
                break  # body incomplete: keep it for the next read
            out.append((buf[i], bytes(buf[j : j + rl])))
            i = j + rl
        del buf[:i]
        return out

    def expect(self, ptype: int) -> bytes:
        while True:
            packets = self.read_packets()
            for k, (first, body) in enumerate(packets):
                if first >> 4 == ptype:
                    # A broker may send queued PUBLISHes right behind the CONNACK: keep them.
                    self.pending = packets[k + 1 :]
                    return body

    def connect(self, client_id: str, clean: bool) -> bool:
        """CONNECT (keep alive 60 s); returns CONNACK's session-present flag."""
        flags = 0x02 if clean else 0x00
        self.send(packet(0x10, mqtt_str("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + mqtt_str(client_id)))
        ack = self.expect(2)
        if ack[1] != 0:
            raise RunFailed(f"CONNACK return code {ack[1]} for {client_id}")
        return bool(ack[0] & 1)

    def subscribe(self, topic: str, qos: int) -> None:
        self.send(packet(0x82, (1).to_bytes(2, "big") + mqtt_str(topic) + bytes([qos])))
        if self.expect(9)[2] & 0x80:
            raise RunFailed(f"SUBSCRIBE {topic} refused")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        """DISCONNECT (a clean end: no will, session kept) unless leaving on an error."""
        try:
            if exc_type is None:
                self.send(b"\xe0\x00")
        finally:
            self.sock.close()


def publish_all(port: int, count: int) -> float:
    """QoS 1 PUBLISHes of sequence numbers 0..count-1 to recovery/x, PUB_WINDOW unacknowledged at
    a time; returns the seconds from the first PUBLISH to the last PUBACK."""
    pad = bytes(56)  # 8-byte sequence number + 56 = 64-byte payload, like portico-bench's default
    head = packet(0x32, mqtt_str("recovery/x") + bytes(2 + 64))[:-(2 + 64)]
    with MqttClient(port) as client:
        client.connect("recovery-pub", clean=True)
        sent = acked = 0
        t0 = time.monotonic()
        while acked < count:
            batch = []
            while sent - acked < PUB_WINDOW and sent < count:
                batch.append(head + (sent % 65535 + 1).to_bytes(2, "big") + sent.to_bytes(8, "big") + pad)
                sent += 1
            if batch:
                client.send(b"".join(batch))
            acked += sum(1 for first, _ in client.read_packets() if first >> 4 == 4)
        return time.monotonic() - t0


def drain(port: int, count: int, idle_timeout: float = 10.0) -> dict:
    """Reconnects recovery-sub (clean session 0), PUBACKs everything it receives and counts the
    distinct sequence numbers, until all `count` arrived or nothing came for `idle_timeout` s."""
    seen = bytearray(count)
    distinct = total = 0
    t0 = t_last = time.monotonic()
    with MqttClient(port, timeout=idle_timeout) as client:
        present = client.connect("recovery-sub", clean=False)
        while distinct < count:
            try:
                packets = client.read_packets()
            except socket.timeout:
                break
            acks = []
            for first, body in packets:
                if first >> 4 != 3:
                    continue
                off = 2 + int.from_bytes(body[:2], "big")
                if first & 0x06:  # QoS > 0: a packet id follows the topic
                    acks.append(b"\x40\x02" + body[off : off + 2])
                    off += 2
                seq = int.from_bytes(body[off : off + 8], "big")
                total += 1
                if seq < count and not seen[seq]:
                    seen[seq], distinct, t_last = 1, distinct + 1, time.monotonic()
            if acks:
                client.send(b"".join(acks))
    return {"session_present": present, "received": total, "distinct": distinct,
            "duplicates": total - distinct, "lost": count - distinct, "drain_s": t_last - t0}


def start_timed(broker: B.Broker, workdir: Path, log_name: str) -> float:
    """Spawns the broker and returns the seconds until its listener accepts a connection. Polls
    every millisecond (brokers.wait_port sleeps 50 ms between tries: too coarse for this)."""
    cmd, env = broker.command(workdir)
    broker.cmd = cmd
    broker.log = workdir / log_name
    with open(broker.log, "wb") as logf:
        t0 = time.monotonic()
        broker.proc = B.spawn(cmd, cwd=workdir, env=env, stdout=logf, stderr=subprocess.STDOUT)
    while time.monotonic() - t0 < 120:
        if broker.proc.poll() is not None:
            raise RunFailed(f"broker exited {broker.proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()
            return time.monotonic() - t0
        except OSError:
            time.sleep(0.001)
    raise RunFailed("broker not listening after 120 s")


def run_recovery(ctx, rnd: int) -> dict:
    count = ctx.recovery_messages
    rec = {"kind": "recovery", "target": "sync", "round": rnd, "status": "ok", "messages": count}
    workdir = ctx.tmp / f"recovery-{rnd}"
    workdir.mkdir(parents=True)
    # Portico's mqtt.max_mqueue_len (1000 by default) would drop all but the newest 1000 queued
    # messages of the offline session: unlimited here, so that every message must come back.
    extra = {"PORTICO_MQTT__MAX_MQUEUE_LEN": "infinity"}
    broker = make_broker(ctx, "sync", workdir, extra)
    try:
        rec["empty_start_s"] = start_timed(broker, workdir, "broker.log")
        with MqttClient(broker.port) as sub:  # the session stays, offline, after DISCONNECT
            sub.connect("recovery-sub", clean=False)
            sub.subscribe("recovery/#", 1)
        rec["publish_s"] = publish_all(broker.port, count)
        rec["publish_msgs_per_s"] = count / rec["publish_s"]
        rec["db_bytes"] = (broker.data_dir / "portico.redb").stat().st_size
        os.kill(broker.pid, signal.SIGKILL)  # a crash: no chance to flush or close the file
        broker.proc.wait(10)
        B._LIVE.pop(broker.pid, None)
        broker.port = next(ctx.ports)  # a fresh port: no doubt the old listener is gone
        rec["restart_s"] = start_timed(broker, workdir, "broker-restart.log")
        rec["rss_after_restart_bytes"] = procfs.rss_bytes(broker.pid)
        rec.update(drain(broker.port, count))
        rec["drain_msgs_per_s"] = rec["distinct"] / rec["drain_s"] if rec["drain_s"] > 0 else None
        if rec["lost"]:
            raise RunFailed(f"{rec['lost']} of {count} messages lost after the restart")
    except (RunFailed, RuntimeError, OSError) as e:
        rec.update(status="failed", error=str(e), broker_log_tail=broker.log_tail(15))
    finally:
        broker.stop()
    return rec


# ---------------------------------------------------------------- summary and report


def med(runs: list[dict], kind: str, target: str, get) -> dict | None:
    """Median and min–max (report.spread) of one figure over the successful runs."""
    ok = [r for r in runs if r["kind"] == kind and r["target"] == target and r["status"] == "ok"]
    vals = [get(r) if callable(get) else r.get(get) for r in ok]
    return report.spread(float(v) for v in vals if isinstance(v, (int, float)))


def lat(p):
    return lambda r: r["gen"]["latency_us"][p]


P2P_COLUMNS = [("received msg/s", lambda r: r["gen"]["throughput_received_per_s"], "{:,.0f}"),
               ("p50 µs", lat("p50"), "{:,.0f}"), ("p99 µs", lat("p99"), "{:,.0f}"),
               ("p99.9 µs", lat("p999"), "{:,.0f}"),
               ("broker CPU µs/msg", lambda r: r["cpu_us_per_msg"], "{:,.2f}"),
               ("disk bytes/msg", lambda r: r["disk_bytes_per_msg"], "{:,.0f}"),
               ("lost", lambda r: r["gen"]["lost"], "{:,.0f}")]
OPEN_COLUMNS = [c for c in P2P_COLUMNS if c[0] in ("p50 µs", "p99 µs", "p99.9 µs", "lost")]
RECOVERY_ROWS = [("messages queued for the offline session", "messages", "{:,.0f}"),
                 ("publish rate, QoS 1, window 100 (msg/s)", "publish_msgs_per_s", "{:,.0f}"),
                 ("portico.redb size (MB)", lambda r: r["db_bytes"] / 1e6, "{:,.1f}"),
                 ("portico.redb bytes per message", lambda r: r["db_bytes"] / r["messages"], "{:,.0f}"),
                 ("start to listening, empty data dir (ms)", lambda r: r["empty_start_s"] * 1e3, "{:,.0f}"),
                 ("start to listening after kill -9 (ms)", lambda r: r["restart_s"] * 1e3, "{:,.0f}"),
                 ("broker RSS after the restart (MB)", lambda r: r["rss_after_restart_bytes"] / 1e6, "{:,.1f}"),
                 ("drain time (s)", "drain_s", "{:,.2f}"),
                 ("drain rate (msg/s)", "drain_msgs_per_s", "{:,.0f}"),
                 ("duplicates received", "duplicates", "{:,.0f}"),
                 ("lost", "lost", "{:,.0f}")]


def tables(ctx, runs) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, for the terminal and for the markdown alike."""
    def rows_for(kind, columns):
        rows = []
        for t in ctx.targets:
            nfail = sum(1 for r in runs if r["kind"] == kind and r["target"] == t and r["status"] != "ok")
            label = f"Portico {t}" if t in MODES else "Mosquitto (persistence true)"
            rows.append([label] + [report.cell(med(runs, kind, t, get), fmt, nfail, ctx.args.runs)
                                   for _, get, fmt in columns])
        return rows

    rfail = sum(1 for r in runs if r["kind"] == "recovery" and r["status"] != "ok")
    recovery = [[label, report.cell(med(runs, "recovery", "sync", get),
                                    fmt, rfail, ctx.args.runs)] for label, get, fmt in RECOVERY_ROWS]
    return [
        ("Closed loop: p2p, 4 pairs, QoS 1, persistent subscribers", ["broker / mode", *[c[0] for c in P2P_COLUMNS]],
         rows_for("closed", P2P_COLUMNS)),
        (f"Open loop: p2p, 1 pair at {OPEN_LOOP_RATE:,} msg/s, QoS 1, persistent subscriber",
         ["broker / mode", *[c[0] for c in OPEN_COLUMNS]], rows_for("open", OPEN_COLUMNS)),
        ("Recovery: Portico sync, offline persistent session, kill -9, restart, drain", ["figure", "value"], recovery),
    ]


def text_table(title, header, rows) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([title, fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def md_table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def reading(ctx, runs) -> str:
    """Two or three sentences generated from the medians."""
    get = P2P_COLUMNS[0][1]
    sync, batch, memory = (med(runs, "closed", m, get) for m in MODES)
    if not (sync and memory):
        return "Not enough successful runs for a reading."
    s, m = sync["median"], memory["median"]
    text = (f"Sync mode delivers {s:,.0f} msg/s QoS 1 to persistent subscribers, {s / m:.2f}× the "
            f"memory mode's {m:,.0f} msg/s" + (f" (batch: {batch['median'] / m:.2f}×)" if batch else "") + "; "
            f"the issue's target of ≥ {TARGET_MSGS:,} msg/s is {'met' if s >= TARGET_MSGS else 'NOT met'}.")
    rec = [r for r in runs if r["kind"] == "recovery" and r["status"] == "ok"]
    if rec:
        restart = statistics.median(r["restart_s"] for r in rec) * 1e3
        lost = max(r["lost"] for r in rec)
        text += (f" After kill -9 with {ctx.recovery_messages:,} messages queued the broker listened again after "
                 f"{restart:,.0f} ms (median) and {'none' if lost == 0 else lost} of them were lost.")
    return text


def filesystem(path: Path) -> str:
    """'ext4 on /dev/vda (mounted at /)' for the mount holding `path` (longest matching prefix)."""
    best = ("", "?", "?")
    real = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, dev, fstype)
    return f"{best[2]} on {best[1]} (mounted at {best[0]})"


def markdown(ctx, info, runs, tbls) -> str:
    mi = info["machine"]
    L = ["## Durable sessions" + (" — QUICK SMOKE RUN (not results)" if ctx.args.quick else ""), "",
         f"Run on {info['date']} with `{info['command']}` ({ctx.args.runs} round(s), modes interleaved within each; "
         f"wall time {info['wall_min']:.0f} min). Generated by `bench/runner/durable.py`; see `bench/README.md`.", "",
         f"- Machine: {mi['nproc']} CPUs ({mi['cpu_model']}), {mi['mem_gib']} GiB, Linux {mi['kernel']}; "
         f"load average {info['loadavg']} at the start; nothing pinned",
         f"- Data directories: {info['filesystem']}", f"- Portico: {info['portico']}; generator: {info['generator']}"]
    L += [f"- Mosquitto: {info['mosquitto']}. {MOSQUITTO_NOTE}"] if info.get("mosquitto") else []
    L += [f"- Note: {n}" for n in info["notes"]] + [""]
    cmds = {r["kind"]: r["cmd_display"] for r in runs if r.get("cmd_display")}
    for (title, header, rows), kind in zip(tbls, ["closed", "open", "recovery"]):
        L += [f"### {title}", ""]
        if kind in cmds:
            L += [f"Measured: `{cmds[kind]}`, after a {ctx.args.warmup:g} s warm-up run on the same fresh broker.", ""]
        else:
            L += [RECOVERY_METHOD, ""]
        L += md_table(header, rows) + [""]
    L += ["Cells: median over the rounds, min–max in parentheses.", "", reading(ctx, runs), ""]
    failed = [r for r in runs if r["status"] != "ok"]
    L += [f"- Failed: {r['kind']} / {r['target']} / round {r['round'] + 1}: {r['error']}" for r in failed]
    L += [""] if failed else []
    L += [f"Raw JSON: `{os.path.relpath(info['raw_path'], REPO)}`."]
    return "\n".join(L)


RECOVERY_METHOD = (
    "`recovery-sub` connects with clean session 0, subscribes to `recovery/#` at QoS 1 and disconnects; a "
    f"Python client publishes the messages at QoS 1 to `recovery/x` ({PUB_WINDOW} unacknowledged at a time, "
    "64-byte payload carrying a sequence number); the broker (`mqtt.max_mqueue_len = infinity`) is killed with "
    "SIGKILL and restarted on the same data dir; `recovery-sub` reconnects and PUBACKs everything. Publish and "
    "drain rates are bounded by the single-threaded Python client too.")


# ---------------------------------------------------------------- main


def brief(rec: dict) -> str:
    if rec["status"] != "ok":
        return "FAILED: " + rec["error"]
    g = rec["gen"]
    return (f"{g['throughput_received_per_s']:,.0f} msg/s, p50/p99 {g['latency_us']['p50']:,.0f}/"
            f"{g['latency_us']['p99']:,.0f} µs, {rec['cpu_us_per_msg'] or 0:.2f} µs CPU/msg, lost {g['lost']}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="rounds; medians are reported (default 3)")
    p.add_argument("--duration", type=float, default=10, help="measured seconds per p2p run (default 10)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of the discarded warm-up run (default 2)")
    p.add_argument("--recovery-messages", type=int, default=100_000, help="messages queued for recovery")
    p.add_argument("--quick", action="store_true", help="smoke check: 1 run, 3 s, 10,000 recovery messages")
    p.add_argument("--base-port", type=int, default=22883, help="first loopback port (one per broker start)")
    p.add_argument("--write-docs", action="store_true", help="replace the durable section of docs/benchmarks.md")
    p.add_argument("--no-mosquitto", action="store_true", help="leave Mosquitto out")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.recovery_messages = 1, 3, 10_000
    return args


def main() -> int:
    args = parse_args()
    started, now = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    os.chdir(REPO)
    portico, bench = target_dir() / "release" / "portico", target_dir() / "release" / "portico-bench"
    for binary in (portico, bench):
        if not os.access(binary, os.X_OK):
            sys.exit(f"missing {binary}: cargo build --release -p portico -p portico-bench")
    notes = []
    targets = list(MODES)
    if args.no_mosquitto:
        notes.append("Mosquitto left out (--no-mosquitto).")
    elif os.path.exists(B.Mosquitto.binary):
        targets.append("mosquitto")
    else:
        notes.append(f"Mosquitto skipped: {B.Mosquitto.binary} not installed.")
    tmp = Path(tempfile.mkdtemp(prefix="durable-"))
    ctx = argparse.Namespace(args=args, portico=portico, bench=bench, tmp=tmp, ports=itertools.count(args.base_port),
                             targets=targets, recovery_messages=args.recovery_messages)
    raw_path = REPO / "docs" / "bench" / f"durable-{now:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    info = {"command": "python3 bench/runner/durable.py" + "".join(" " + shlex.quote(a) for a in sys.argv[1:]),
            "date": now.strftime("%Y-%m-%d %H:%M UTC"), "machine": procfs.machine_info(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()), "filesystem": filesystem(tmp),
            "portico": B.Portico(0, portico, REPO).version(), "generator": tool_version(bench),
            "mosquitto": PersistentMosquitto(0).version() if "mosquitto" in targets else None,
            "notes": notes, "raw_path": str(raw_path)}
    log(f"machine: {info['machine']}; data dirs on {info['filesystem']}; load {info['loadavg']}")
    runs: list[dict] = []

    def save_raw():
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(json.dumps({"context": info, "runs": runs}, indent=1, ensure_ascii=False) + "\n")

    try:
        for rnd in range(args.runs):
            for kind in ("closed", "open"):
                for target in targets:  # interleaved: sync, batch, memory, mosquitto, sync, ...
                    log(f"round {rnd + 1}/{args.runs}: {kind} loop, {target} ...")
                    rec = run_p2p(ctx, target, kind, rnd)
                    runs.append(rec)
                    log("  " + brief(rec))
            log(f"round {rnd + 1}/{args.runs}: recovery, {ctx.recovery_messages:,} messages ...")
            rec = run_recovery(ctx, rnd)
            runs.append(rec)
            log("  " + (rec.get("error") or f"published {rec['publish_msgs_per_s']:,.0f} msg/s, restart "
                        f"{rec['restart_s'] * 1e3:.0f} ms, drained {rec['distinct']:,} in {rec['drain_s']:.2f} s"))
            save_raw()
    except KeyboardInterrupt:
        notes.append(f"interrupted (Ctrl-C) after {len(runs)} runs.")
    finally:
        B.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    info["wall_min"] = (time.monotonic() - started) / 60
    save_raw()
    tbls = tables(ctx, runs)
    print("\n" + "\n\n".join(text_table(*t) for t in tbls), file=sys.stderr)
    if "mosquitto" in targets:
        print("\nNote: " + MOSQUITTO_NOTE, file=sys.stderr)
    print("\n" + reading(ctx, runs) + f"\n\nraw JSON: {raw_path.relative_to(REPO)}", file=sys.stderr)
    if args.write_docs:
        report.write_section(REPO / "docs" / "benchmarks.md", markdown(ctx, info, runs, tbls), BEGIN, END)
        log("wrote docs/benchmarks.md (durable section)")
    failed = [r for r in runs if r["status"] != "ok"]
    for r in failed:
        log(f"FAILED {r['kind']} / {r['target']} / round {r['round'] + 1}: {r['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    B.run_main(main)
