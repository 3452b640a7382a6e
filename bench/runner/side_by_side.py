#!/usr/bin/env python3
"""Side-by-side benchmark: Portico vs Mosquitto vs rumqttd, driven by portico-bench.

    python3 bench/runner/side_by_side.py [--runs 5] [--quick] [--only portico,mosquitto,rumqttd]
                                         [--out docs/benchmarks.md]

Standard library only; the plots run under bench/runner/.venv (created here, matplotlib).
See bench/README.md for the method and how to read the output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import brokers as B  # noqa: E402
import procfs  # noqa: E402
import report  # noqa: E402
from scenarios import TRANSPORT_LABELS, Scenario, all_scenarios  # noqa: E402

REPO = HERE.parent.parent
VENV = HERE / ".venv"
DEFAULT_BASE_PORT = 21883


def ports(base: int) -> dict:
    """Loopback ports from --base-port: Portico base, Mosquitto base+1, rumqttd base+2 (v5 base+3);
    transport-cost listeners (tls, ws, wss): Portico base+10..12, Mosquitto base+20..22."""
    return {
        "portico": base, "mosquitto": base + 1, "rumqttd": base + 2,
        "portico_transports": {"tls": base + 10, "ws": base + 11, "wss": base + 12},
        "mosquitto_transports": {"tls": base + 20, "ws": base + 21, "wss": base + 22},
    }
ALL_BROKERS = ["portico", "mosquitto", "rumqttd"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class RunFailed(Exception):
    pass


# ---------------------------------------------------------------- preparing the peers


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + shlex.join(cmd))
    return subprocess.run(cmd, **kw)


def target_dir() -> Path:
    t = os.environ.get("CARGO_TARGET_DIR")
    return Path(t) if t else REPO / "target"


def build(args, wanted: list[str], notes: list[str]) -> tuple[Path, Path]:
    portico = target_dir() / "release" / "portico"
    bench = Path(args.bench_bin) if args.bench_bin else target_dir() / "release" / "portico-bench"
    pkgs = (["-p", "portico"] if "portico" in wanted else []) + ([] if args.bench_bin else ["-p", "portico-bench"])
    if not args.no_build and pkgs:
        r = sh(["cargo", "build", "--release", *pkgs], cwd=REPO)
        if r.returncode != 0:
            sys.exit("cargo build failed (see above)")
    for p in (portico, bench) if "portico" in wanted else (bench,):
        if not os.access(p, os.X_OK):
            sys.exit(f"missing executable {p} (build it, or pass --bench-bin for the generator)")
    if args.bench_bin:
        notes.append(f"generator binary given with --bench-bin: {bench}")
    return portico, bench


def ensure_mosquitto(notes: list[str]) -> bool:
    if os.path.exists(B.Mosquitto.binary):
        return True
    r = sh(["apt-get", "install", "-y", "mosquitto"])
    if r.returncode != 0:
        sh(["apt-get", "update"])
        r = sh(["apt-get", "install", "-y", "mosquitto"])
    # Debian may start a packaged mosquitto service on 1883; ours uses its own port and config.
    if r.returncode != 0 or not os.path.exists(B.Mosquitto.binary):
        notes.append("Mosquitto could not be installed (apt-get install mosquitto failed); left out.")
        return False
    return True


def cargo_bin_dir() -> Path:
    home = os.environ.get("CARGO_HOME")
    return Path(home) / "bin" if home else Path.home() / ".cargo" / "bin"


def ensure_rumqttd(notes: list[str]) -> str | None:
    found = shutil.which("rumqttd")
    if found:
        return found
    candidate = cargo_bin_dir() / "rumqttd"
    if not os.access(candidate, os.X_OK):
        log("rumqttd not on PATH: cargo install rumqttd (takes a few minutes)")
        r = sh(["cargo", "install", "rumqttd"])
        if r.returncode != 0 or not os.access(candidate, os.X_OK):
            notes.append("`cargo install rumqttd` failed; rumqttd is left out of this run.")
            return None
    return str(candidate)


def ensure_venv(notes: list[str]) -> Path | None:
    py = VENV / "bin" / "python"
    try:
        if not py.exists():
            sh([sys.executable, "-m", "venv", str(VENV)], check=True)
        r = subprocess.run([str(py), "-c", "import matplotlib"], capture_output=True)
        if r.returncode != 0:
            sh([str(py), "-m", "pip", "install", "-q", "-r", str(HERE / "requirements.txt")], check=True)
        return py
    except (subprocess.CalledProcessError, OSError) as e:
        notes.append(f"no plots: could not set up {VENV} with matplotlib ({e}).")
        return None


def tool_version(binary: Path) -> str:
    try:
        r = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
        v = (r.stdout or r.stderr).strip().splitlines()
        if r.returncode == 0 and v:
            return v[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{binary.name} built from this tree" if binary.is_relative_to(target_dir()) else str(binary)


# ---------------------------------------------------------------- running


class Ctx:
    def __init__(self, args, bench: Path, tmp: Path):
        self.args = args
        self.bench = bench
        self.tmp = tmp
        self.version = args.mqtt_version
        self.pki: B.Pki | None = None


def generator_cmd(ctx: Ctx, sc: Scenario, broker: B.Broker, duration: float, extra=()) -> list[str]:
    cmd = [
        str(ctx.bench), sc.command,
        "--host", "127.0.0.1", "--port", str(broker.port_for(ctx.version, sc.transport)),
        "--version", ctx.version, *sc.args, "--json",
    ]
    if sc.transport != "tcp":
        cmd += ["--transport", sc.transport]
    if sc.transport in ("tls", "wss"):
        assert ctx.pki is not None
        cmd += ["--ca-file", str(ctx.pki.ca)]
    if sc.command == "conns":
        cmd += ["--hold", f"{duration:g}"]
    else:
        cmd += ["--duration", f"{duration:g}", "--warmup", "0"]
    cmd += list(extra)
    if sc.pinned:
        cmd = ["taskset", "-c", B.GENERATOR_CPU, *cmd, "--threads", "1"]
    return cmd


def display(cmd: list[str], ctx: Ctx, source: str | None = None) -> str:
    """The command as printed in the report: generator path shortened, run-specific values
    ($PORT: the broker's port, $BROKER_PID, $SRC: the source address) as placeholders."""
    cmd = list(cmd)
    cmd[cmd.index(str(ctx.bench))] = "portico-bench"
    for flag, placeholder in (("--port", "$PORT"), ("--broker-pid", "$BROKER_PID"), ("--source-ips", source),
                              ("--ca-file", "$CA")):
        if flag in cmd and placeholder:
            cmd[cmd.index(flag) + 1] = placeholder
    return " ".join(shlex.quote(c) if not c.startswith("$") else c for c in cmd)


def run_generator(cmd: list[str], timeout: float, errlog: Path) -> dict:
    with open(errlog, "wb") as err:
        proc = B.spawn(cmd, stdout=subprocess.PIPE, stderr=err)
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            B.kill(proc)
            raise RunFailed(f"generator still running after {timeout:.0f} s; killed")
        except BaseException:  # Ctrl-C, SystemExit: never leave the generator behind
            B.kill(proc)
            raise
        finally:
            B._LIVE.pop(proc.pid, None)
    if proc.returncode != 0:
        raise RunFailed(f"generator exited {proc.returncode}: {B.tail(errlog, 5).strip()[-600:]}")
    text = stdout.decode(errors="replace").strip()
    try:
        return json.loads(text.splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise RunFailed(f"generator printed no JSON object: {text[-300:]!r}")


def settle(broker: B.Broker, limit_s: float = 60.0) -> None:
    """Waits until the broker is idle again (under 5% of a core over half a second). After a
    closed-loop warm-up a broker may still be working through what the warm-up's clients left
    behind (rumqttd took over 10 s to answer a CONNECT after a 1 -> 100 fan-out warm-up); the
    measured run starts from a quiet broker for every peer."""
    deadline = time.monotonic() + limit_s
    last = procfs.cpu_seconds(broker.pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = procfs.cpu_seconds(broker.pid)
        if now - last < 0.025:
            return
        last = now


def run_traffic(ctx: Ctx, sc: Scenario, broker: B.Broker, rec: dict, workdir: Path) -> None:
    quick = ctx.args.quick
    duration = sc.quick_duration if quick else sc.duration
    warmup = sc.quick_warmup if quick else sc.warmup
    broker.start(workdir, sc.pinned, sc.transport)
    rec["broker_cmd"] = shlex.join(broker.cmd)
    if warmup > 0:
        try:
            run_generator(generator_cmd(ctx, sc, broker, warmup), warmup + 120, workdir / "warmup.err")
        except RunFailed as e:
            raise RunFailed(f"warmup run: {e}")
        if not broker.alive():
            raise RunFailed("broker died during the warmup run")
        if broker.restart_after_warmup:
            broker.stop()
            (workdir / "broker.log").rename(workdir / "broker-warmup.log")
            broker.start(workdir, sc.pinned, sc.transport)
            rec["restarted_after_warmup"] = True
        settle(broker)
    cmd = generator_cmd(ctx, sc, broker, duration)
    rec["cmd_display"] = display(cmd, ctx)
    cpu0, rss0 = procfs.cpu_seconds(broker.pid), procfs.rss_bytes(broker.pid)
    t0 = time.monotonic()
    result = run_generator(cmd, duration + 120, workdir / "generator.err")
    wall = time.monotonic() - t0
    if not broker.alive():
        rec["gen"] = result
        raise RunFailed("broker died during the measured run")
    cpu1, rss1 = procfs.cpu_seconds(broker.pid), procfs.rss_bytes(broker.pid)
    rec["gen"] = result
    if not isinstance(result.get("received"), (int, float)):
        raise RunFailed(f"generator JSON has no 'received' count: {json.dumps(result)[:300]}")
    rec["window_s"] = round(wall, 3)
    rec["broker_cpu_s"] = round(cpu1 - cpu0, 4)
    rec["broker_cpu_util"] = round((cpu1 - cpu0) / wall, 3) if wall > 0 else None
    rec["broker_rss_before"], rec["broker_rss_after"] = rss0, rss1
    received = result.get("received") or 0
    rec["cpu_us_per_msg"] = (cpu1 - cpu0) * 1e6 / received if received else None


# A source address with more sockets than this bound to it (mostly TIME_WAIT left by the previous
# connections run: the generator closes first) is not used for a connections run.
PORTS_IN_USE_LIMIT = 2000
TIME_WAIT_WAIT_S = 75


def pick_sources(sc: Scenario) -> tuple[tuple[str, str], dict]:
    """The first pair of source addresses with at most PORTS_IN_USE_LIMIT sockets bound to each.

    9,500 connections from one address need 9,500 of its ~28,000 ephemeral ports, and every
    connection the generator closed keeps its port in TIME_WAIT for 60 s: three brokers' runs
    back to back from the same two addresses run out of ports (connects crawl, then fail).
    If no pair is clean, wait (up to TIME_WAIT_WAIT_S) for TIME_WAIT to expire."""
    deadline = time.monotonic() + TIME_WAIT_WAIT_S
    waited = False
    while True:
        counts = procfs.local_sockets([ip for pair in sc.source_ip_pairs for ip in pair])
        load = {pair: max(counts[pair[0]], counts[pair[1]]) for pair in sc.source_ip_pairs}
        clean = [pair for pair in sc.source_ip_pairs if load[pair] <= PORTS_IN_USE_LIMIT]
        if clean or time.monotonic() > deadline:
            pair = clean[0] if clean else min(load, key=load.get)
            return pair, {"ports_in_use": {ip: counts[ip] for ip in pair}, "waited_for_time_wait": waited}
        if not waited:
            log(f"  waiting up to {TIME_WAIT_WAIT_S} s for TIME_WAIT sockets to expire: {load}")
            waited = True
        time.sleep(1)


def run_conns(ctx: Ctx, sc: Scenario, broker: B.Broker, rec: dict, workdir: Path) -> None:
    hold = sc.quick_duration if ctx.args.quick else sc.duration
    sources, rec["source_ports"] = pick_sources(sc)
    broker.start(workdir, sc.pinned, sc.transport)
    rec["broker_cmd"] = shlex.join(broker.cmd)
    pid = broker.pid
    time.sleep(0.5)
    rss0, fd0 = procfs.rss_bytes(pid), procfs.fd_count(pid)
    samples: list[tuple[float, int, int]] = []  # (t, fds, rss)
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                samples.append((time.monotonic(), procfs.fd_count(pid), procfs.rss_bytes(pid)))
            except (OSError, RuntimeError):
                return
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    cmds = []
    rate = min(sc.connect_rate, broker.max_connect_rate or sc.connect_rate)
    for ip in sources:
        extra = ["--connections", str(sc.conns_per_process), "--connect-rate", str(rate),
                 "--source-ips", ip, "--broker-pid", str(pid)]
        cmds.append(generator_cmd(ctx, sc, broker, hold, extra))
    rec["cmd_display"] = " & ".join(display(c, ctx, f"$SRC_{'AB'[i]}") for i, c in enumerate(cmds))
    rec["source_ips"] = list(sources)
    timeout = hold + 2 * sc.conns_per_process / rate + 120
    procs = []
    try:
        sampler.start()
        for i, cmd in enumerate(cmds):
            err = open(workdir / f"generator{i}.err", "wb")
            out = open(workdir / f"generator{i}.out", "wb")
            procs.append((B.spawn(cmd, stdout=out, stderr=err), out, err, i))
        deadline = time.monotonic() + timeout
        for proc, out, err, i in procs:
            try:
                proc.wait(max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise RunFailed(f"generator {i} still running after {timeout:.0f} s; killed")
    finally:
        stop.set()
        for proc, out, err, _ in procs:
            B.kill(proc)
            out.close()
            err.close()
        sampler.join(2)
    if not broker.alive():
        raise RunFailed("broker died during the connections run")
    results = []
    for proc, _, _, i in procs:
        if proc.returncode != 0:
            raise RunFailed(f"generator {i} exited {proc.returncode}: "
                            f"{B.tail(workdir / f'generator{i}.err', 5).strip()[-600:]}")
        text = (workdir / f"generator{i}.out").read_text(errors="replace").strip()
        try:
            results.append(json.loads(text.splitlines()[-1]))
        except (json.JSONDecodeError, IndexError):
            raise RunFailed(f"generator {i} printed no JSON object: {text[-300:]!r}")
    rec["gen_each"] = results
    if any(not isinstance(r.get("connections"), int) for r in results):
        raise RunFailed("generator JSON has no 'connections' count: " + json.dumps(results)[:300])
    if not samples:
        raise RunFailed("no /proc samples of the broker")
    peak_fds = max(s[1] for s in samples)
    at_peak = [s for s in samples if s[1] == peak_fds]
    _, fds, rss1 = at_peak[-1]  # last sample on the plateau: all connections up and idle
    connections = sum(r.get("connections") or 0 for r in results)
    rec["connections"] = connections
    rec["connect_failures"] = sum(r.get("connect_failures") or 0 for r in results)
    rec["connect_rate_per_s"] = sum(r.get("connect_rate_per_s") or 0 for r in results)
    rec["broker_fd_growth"] = fds - fd0
    rec["broker_rss_before"], rec["broker_rss_after"] = rss0, rss1
    rec["rss_per_conn_bytes"] = (rss1 - rss0) / connections if connections > 0 else None
    wanted = sc.conns_per_process * len(cmds)
    if connections < 0.95 * wanted:
        raise RunFailed(f"only {connections:,} of {wanted:,} connections established "
                        f"({rec['connect_failures']:,} connect failures)")
    rec["generator_rss_per_conn_bytes"] = [r.get("rss_per_conn_bytes") for r in results]
    # A merged view for the report's "gen" lookups.
    rec["gen"] = {"connections": connections, "connect_failures": rec["connect_failures"]}


def run_one(ctx: Ctx, sc: Scenario, broker: B.Broker, rnd: int) -> dict:
    rec = {"scenario": sc.key, "broker": broker.name, "round": rnd, "pinned": sc.pinned, "transport": sc.transport,
           "started": dt.datetime.now().isoformat(timespec="seconds"), "status": "ok"}
    workdir = ctx.tmp / f"{sc.key}-{broker.name}-{rnd}"
    try:
        if sc.command == "conns":
            run_conns(ctx, sc, broker, rec, workdir)
        else:
            run_traffic(ctx, sc, broker, rec, workdir)
    except (RunFailed, RuntimeError, OSError) as e:
        rec["status"] = "failed"
        rec["error"] = str(e)
        died = broker.proc is not None and not broker.alive()
        if died:
            rec["error"] += f" (broker exit status {broker.proc.returncode})"
        rec["broker_died"] = died
        rec["broker_log_tail"] = broker.log_tail() or "(broker log empty)"
    finally:
        broker.stop()
    return rec


def brief(rec: dict) -> str:
    if rec["status"] != "ok":
        return f"FAILED: {rec.get('error')}"
    g = rec.get("gen") or {}
    if rec["scenario"].startswith("idle_conns"):
        per = rec.get("rss_per_conn_bytes")
        return f"{rec['connections']} conns, {per:,.0f} B/conn" if per else f"{rec['connections']} conns"
    parts = [f"{g.get('throughput_received_per_s') or 0:,.0f} msg/s"]
    if rec.get("cpu_us_per_msg"):
        parts.append(f"{rec['cpu_us_per_msg']:.2f} µs CPU/msg")
    latency = g.get("latency_us") or {}
    if latency.get("p99") is not None:
        parts.append(f"p50 {latency.get('p50')} p99 {latency.get('p99')} µs")
    return ", ".join(parts)


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="interleaved runs per scenario and broker (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke check: 1 run, short durations")
    p.add_argument("--only", default=",".join(ALL_BROKERS), help="comma-separated brokers")
    p.add_argument("--out", default="docs/benchmarks.md", help="markdown file to write the section into")
    p.add_argument("--bench-dir", default="docs/bench", help="where plots and raw JSON go")
    p.add_argument("--scenarios", default=None,
                   help="comma-separated scenario keys, or `transport` for the transport-cost group "
                        "(default: the side-by-side set)")
    p.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help=f"first loopback port (default {DEFAULT_BASE_PORT}); brokers use base..base+22")
    p.add_argument("--mqtt-version", default="3.1.1", choices=["3.1.1", "5"])
    p.add_argument("--bench-bin", default=os.environ.get("PORTICO_BENCH_BIN"),
                   help="use this generator binary instead of building portico-bench (env PORTICO_BENCH_BIN)")
    p.add_argument("--no-build", action="store_true", help="do not run cargo build")
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python3 bench/runner/side_by_side.py" + ("" if argv is None and len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:] if argv is None else argv))
    started = time.monotonic()
    now = dt.datetime.now(dt.timezone.utc)
    wanted = [b.strip() for b in args.only.split(",") if b.strip()]
    for b in wanted:
        if b not in ALL_BROKERS:
            sys.exit(f"unknown broker {b!r}; choose from {', '.join(ALL_BROKERS)}")
    scenarios = [s for s in all_scenarios() if s.default]
    if args.scenarios:
        keys = [k.strip() for k in args.scenarios.split(",") if k.strip()]
        known = {s.key for s in all_scenarios()}
        unknown = [k for k in keys if k not in known and k != "transport"]
        if unknown:
            sys.exit(f"unknown scenario {', '.join(unknown)}; keys: transport, " + ", ".join(sorted(known)))
        scenarios = [s for s in all_scenarios() if s.key in keys or ("transport" in keys and s.kind)]
    # Only transport-cost scenarios: their own section, raw file, and no plots (the side-by-side
    # plots are kept).
    transport_mode = all(s.kind for s in scenarios) and any(s.transport != "tcp" for s in scenarios)

    os.chdir(REPO)
    out = Path(args.out)
    bench_dir = Path(args.bench_dir)
    suffix = ("-transport" if transport_mode else "") + ("-quick" if args.quick else "")
    raw_path = bench_dir / f"raw-{now:%Y-%m-%d}{suffix}.json"

    notes: list[str] = []
    portico_bin, bench_bin = build(args, wanted, notes)
    tmp = Path(tempfile.mkdtemp(prefix="side-by-side-"))
    pki = None
    if any(s.transport in ("tls", "wss") for s in scenarios):
        pki = B.Pki(tmp / "pki")  # raises with openssl's error if the CLI is missing or fails
        notes.append("TLS: a throwaway CA and an EC P-256 server certificate for 127.0.0.1 made with the "
                     "openssl CLI at the start of the run; the generator verifies it (`--ca-file $CA`), "
                     "TLS 1.3 as negotiated, full handshake per connection (no resumption).")
    P = ports(args.base_port)
    brokers: list[B.Broker] = []
    for name in wanted:
        if name == "portico":
            brokers.append(B.Portico(P["portico"], portico_bin, REPO, P["portico_transports"], pki))
        elif name == "mosquitto" and ensure_mosquitto(notes):
            brokers.append(B.Mosquitto(P["mosquitto"], P["mosquitto_transports"], pki))
        elif name == "rumqttd":
            binary = ensure_rumqttd(notes)
            if binary:
                brokers.append(B.Rumqttd(P["rumqttd"], binary))
    venv_py = None if transport_mode else ensure_venv(notes)
    if not brokers:
        sys.exit("no broker to run")

    ctx_info = {
        "command": command,
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "runs": args.runs,
        "machine": procfs.machine_info(),
        "generator": tool_version(bench_bin),
        "notes": notes,
        "out": str(out),
        "raw_path": str(raw_path),
        "mqtt_version": args.mqtt_version,
        "ports": {b.name: b.port_for(args.mqtt_version) for b in brokers},
        "transport_ports": {b.name: {t: b.port_for(args.mqtt_version, t) for t in TRANSPORT_LABELS if b.supports(t)}
                            for b in brokers},
    }
    versions = [(b.name, b.label, b.version()) for b in brokers]
    log("machine: " + json.dumps(ctx_info["machine"]))
    for _, label, v in versions:
        log(f"{label}: {v}")

    runs: list[dict] = []
    ctx = Ctx(args, bench_bin, tmp)
    ctx.pki = pki
    bench_dir.mkdir(parents=True, exist_ok=True)

    def save_raw():
        raw = {"context": ctx_info, "versions": versions, "runs": runs}
        raw_path.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n")

    try:
        for sc in scenarios:
            for rnd in range(args.runs):
                for broker in brokers:  # interleaved: A, B, C, A, B, C, ...
                    if not broker.supports(sc.transport):
                        continue
                    log(f"{sc.key} round {rnd + 1}/{args.runs} {broker.label} ...")
                    rec = run_one(ctx, sc, broker, rnd)
                    runs.append(rec)
                    log(f"  {brief(rec)}")
                    save_raw()
    except KeyboardInterrupt:
        # Ctrl-C: stop measuring, but still report what was measured.
        notes.append(f"interrupted (Ctrl-C) after {len(runs)} runs; the tables hold only those.")
        log("interrupted: writing the report of the runs so far")
    finally:
        B.kill_all()
        save_raw()

    ctx_info["wall_min"] = (time.monotonic() - started) / 60
    names = [b.name for b in brokers]
    summary = report.summarize(runs, scenarios, names)
    if transport_mode:
        section = report.transport_markdown(ctx_info, runs, scenarios, versions, summary)
        report.write_section(out, section, report.TRANSPORT_START, report.TRANSPORT_END)
    else:
        plots = make_plots(venv_py, summary, scenarios, brokers, bench_dir, ctx_info, notes)
        section = report.markdown(ctx_info, runs, scenarios, versions, summary, plots)
        report.write_section(out, section)
    save_raw()
    shutil.rmtree(tmp, ignore_errors=True)
    nfail = sum(1 for r in runs if r["status"] != "ok")
    log(f"done in {ctx_info['wall_min']:.1f} min: {len(runs)} runs, {nfail} failed; wrote {out} and {raw_path}")
    return 0


def make_plots(venv_py, summary, scenarios, brokers, bench_dir: Path, ctx_info, notes) -> dict:
    if venv_py is None:
        return {}
    names = [[b.name, b.label] for b in brokers]
    data: dict = {"brokers": names, "subtitle": f"{ctx_info['date']}, {ctx_info['runs']} run(s)"
                  + (" — quick smoke run" if ctx_info["quick"] else ""), "throughput": []}
    for sc in scenarios:
        s = summary[sc.key]
        if not any(v["brokers"].get(b.name) for v in s.values() for b in brokers):
            continue  # every run failed: nothing to plot
        if sc.key == "p2p_latency":
            data["latency"] = {"title": sc.title}
            for p in ("p50", "p99", "p999"):
                entry = next(v for v in s.values() if v["metric"] == p)
                data["latency"][p] = entry["brokers"]
        if sc.plot_throughput:
            entry = next(v for v in s.values() if v["metric"] in ("throughput", "deliveries"))
            data["throughput"].append({"title": sc.title, "unit": entry["label"], "brokers": entry["brokers"]})
    spath = bench_dir / "summary-latest.json"
    spath.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    r = subprocess.run([str(venv_py), str(HERE / "plots.py"), str(spath), str(bench_dir)],
                       capture_output=True, text=True)
    spath.unlink(missing_ok=True)
    if r.returncode != 0:
        notes.append("plotting failed: " + r.stderr.strip()[-300:])
        return {}
    plots = {}
    if (bench_dir / "latency.png").exists() and "latency" in data:
        plots["Latency percentiles"] = bench_dir / "latency.png"
    if (bench_dir / "throughput.png").exists() and data["throughput"]:
        plots["Throughput per scenario"] = bench_dir / "throughput.png"
    return plots


if __name__ == "__main__":
    B.run_main(main)
