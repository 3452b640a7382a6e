#!/usr/bin/env python3
"""Authentication cost: CONNECT rate with no authentication, the built-in database (sha256, EMQX's
default) and HTTP authentication against `portico-bench auth-server`, in one run; then the
authorization cache hit ratio under a publish load with an HTTP authorization source.

    python3 bench/runner/auth_cost.py [--runs 3] [--connections 2000] [--connect-rate 20000]
                                      [--quick] [--base-port 23883]

Standard library only (plus mosquitto_sub to read $SYS metrics); binaries must be built
(cargo build --release -p portico -p portico-bench). Prints a Markdown table for
docs/benchmarks.md ("Authentication cost").
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shlex
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
from side_by_side import RunFailed, log, run_generator, settle, target_dir  # noqa: E402

REPO = HERE.parent.parent
USER, PASSWORD = "bench", "secret"


class AuthPortico(B.Portico):
    """brokers.Portico with extra environment (the authenticator under test)."""

    def __init__(self, port, binary, extra_env: dict[str, str]):
        super().__init__(port, binary, REPO)
        self.extra_env = extra_env

    def command(self, workdir):
        cmd, env = super().command(workdir)
        env.update(self.extra_env)
        return cmd, env


def modes(auth_url: str, users_csv: Path) -> list[tuple[str, dict[str, str]]]:
    closed = {"PORTICO_MQTT__ALLOW_ANONYMOUS": "false"}
    return [
        ("none (anonymous, no authenticator)", {}),
        ("built-in database, sha256 + prefix salt", {
            **closed,
            "PORTICO_AUTHENTICATION__1__MECHANISM": "password_based",
            "PORTICO_AUTHENTICATION__1__BACKEND": "built_in_database",
            "PORTICO_AUTHENTICATION__1__BOOTSTRAP_FILE": str(users_csv),
        }),
        ("HTTP (POST JSON, defaults: pool_size 8, max_inflight 8)", {
            **closed,
            "PORTICO_AUTHENTICATION__1__MECHANISM": "password_based",
            "PORTICO_AUTHENTICATION__1__BACKEND": "http",
            "PORTICO_AUTHENTICATION__1__URL": f"{auth_url}/auth",
        }),
        # More on the wire than kept in the pool: connections beyond 8 are opened and closed
        # per request.
        ("HTTP (POST JSON, pool_size 8, max_inflight 64)", {
            **closed,
            "PORTICO_AUTHENTICATION__1__MECHANISM": "password_based",
            "PORTICO_AUTHENTICATION__1__BACKEND": "http",
            "PORTICO_AUTHENTICATION__1__URL": f"{auth_url}/auth",
            "PORTICO_AUTHENTICATION__1__MAX_INFLIGHT": "64",
        }),
    ]


def start_auth_server(bench: Path, port: int, errlog: Path) -> tuple[subprocess.Popen, str]:
    cmd = [str(bench), "auth-server", "--bind", f"127.0.0.1:{port}", "--password", PASSWORD, "--threads", "1"]
    log("$ " + shlex.join(cmd))
    proc = B.spawn(cmd, stdout=subprocess.PIPE, stderr=open(errlog, "wb"))
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        B.kill(proc)
        raise RunFailed(f"auth-server did not start: {line!r}")
    return proc, "http://" + line.removeprefix("listening on ")


def conns(ctx, port: int, n: int, errlog: Path) -> dict:
    cmd = [str(ctx.bench), "conns", "--port", str(port), "--connections", str(n), "--connect-rate",
           str(ctx.args.connect_rate), "--hold", "1", "--username", USER, "--password", PASSWORD,
           "--json", "--quiet"]
    log("$ " + shlex.join(cmd))
    return run_generator(cmd, timeout=120, errlog=errlog)


def sys_metrics(port: int, wait: float) -> dict[str, int]:
    """The broker's counters as last published under $SYS/brokers/<node>/metrics/..."""
    cmd = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-u", USER, "-P", PASSWORD, "-v",
           "-t", "$SYS/brokers/+/metrics/#", "-W", str(int(wait))]
    out = subprocess.run(cmd, capture_output=True, timeout=wait + 10).stdout.decode(errors="replace")
    metrics = {}
    for line in out.splitlines():
        m = re.match(r"\$SYS/brokers/[^/]+/metrics/(\S+) (\d+)$", line)
        if m:
            metrics[m.group(1).replace("/", ".")] = int(m.group(2))
    return metrics


def cache_run(ctx, auth_url: str) -> dict:
    env = {
        "PORTICO_MQTT__ALLOW_ANONYMOUS": "false",
        "PORTICO_AUTHENTICATION__1__MECHANISM": "password_based",
        "PORTICO_AUTHENTICATION__1__BACKEND": "http",
        "PORTICO_AUTHENTICATION__1__URL": f"{auth_url}/auth",
        "PORTICO_AUTHORIZATION__SOURCES__1": f'{{ type = "http", url = "{auth_url}/acl" }}',
        "PORTICO_SYS_TOPICS__SYS_MSG_INTERVAL": "1s",
    }
    port = next(ctx.ports)
    broker = AuthPortico(port, ctx.portico, env)
    workdir = ctx.tmp / f"cache-{port}"
    broker.start(workdir, pinned=False)
    try:
        cmd = [str(ctx.bench), "p2p", "--port", str(port), "--pairs", str(ctx.args.pairs), "--rate",
               str(ctx.args.rate), "--duration", f"{ctx.args.duration:g}", "--warmup", "0", "--qos", "1",
               "--username", USER, "--password", PASSWORD, "--json", "--quiet"]
        log("$ " + shlex.join(cmd))
        report = run_generator(cmd, timeout=ctx.args.duration + 60, errlog=workdir / "p2p.err")
        time.sleep(1.5)  # one more $SYS period after the last publish
        metrics = sys_metrics(port, 3)
    finally:
        broker.stop()
    checks = metrics.get("authorization.allow", 0) + metrics.get("authorization.deny", 0)
    hits = metrics.get("authorization.cache_hit", 0)
    return {"report": report, "metrics": {k: v for k, v in metrics.items() if k.startswith("authorization")},
            "checks": checks, "cache_hit": hits, "ratio": hits / checks if checks else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="rounds per mode; medians are reported (default 3)")
    p.add_argument("--connections", type=int, default=2000, help="connections per conns run (default 2000)")
    p.add_argument("--connect-rate", type=int, default=20000, help="offered CONNECT rate /s (default 20000)")
    p.add_argument("--pairs", type=int, default=10, help="cache run: publisher/subscriber pairs (default 10)")
    p.add_argument("--rate", type=int, default=5000, help="cache run: total publishes /s (default 5000)")
    p.add_argument("--duration", type=float, default=10, help="cache run: seconds of publishing (default 10)")
    p.add_argument("--quick", action="store_true", help="1 run, 1000 connections, 5 s of publishing")
    p.add_argument("--base-port", type=int, default=23883, help="first loopback port (one per broker start)")
    args = p.parse_args()
    if args.quick:
        args.runs, args.connections, args.duration = 1, 1000, 5
    B.raise_nofile()
    portico = target_dir() / "release" / "portico"
    bench = target_dir() / "release" / "portico-bench"
    for binary in (portico, bench):
        if not binary.exists():
            sys.exit(f"{binary} missing: cargo build --release -p portico -p portico-bench")
    tmp = Path(tempfile.mkdtemp(prefix="portico-auth-cost-"))
    ctx = argparse.Namespace(args=args, portico=portico, bench=bench, tmp=tmp,
                             ports=itertools.count(args.base_port))
    users = tmp / "users.csv"
    users.write_text(f"user_id,password,is_superuser\n{USER},{PASSWORD},false\n")
    server, auth_url = start_auth_server(bench, next(ctx.ports), tmp / "auth-server.err")
    log(f"auth server at {auth_url}")
    results: dict[str, list[dict]] = {}
    server_cpu: dict[str, list[float]] = {}  # the auth server's CPU seconds per conns run
    try:
        for rnd in range(args.runs):
            for name, env in modes(auth_url, users):
                port = next(ctx.ports)
                broker = AuthPortico(port, portico, env)
                workdir = tmp / f"conns-{port}"
                broker.start(workdir, pinned=False)
                try:
                    settle(broker, 10)
                    cpu = procfs.cpu_seconds(server.pid)
                    report = conns(ctx, port, args.connections, workdir / "conns.err")
                    results.setdefault(name, []).append(report)
                    server_cpu.setdefault(name, []).append(procfs.cpu_seconds(server.pid) - cpu)
                finally:
                    broker.stop()
        cache = cache_run(ctx, auth_url)
    finally:
        B.kill(server)
    print(f"\nconns: {args.connections} connections offered at {args.connect_rate}/s, "
          f"--hold 1, {args.runs} run(s), median\n")
    print("| password check | connect rate /s | failures | auth server CPU per run |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        rate = statistics.median(r.get("connect_rate_per_s") or 0 for r in runs)
        fails = max(r.get("connect_failures") or 0 for r in runs)
        cpu = statistics.median(server_cpu[name])
        print(f"| {name} | {rate:,.0f} | {fails} | {cpu:.2f} s |")
    r = cache["report"]
    print(f"\nauthorization cache (HTTP source, cache on: 32 entries, 1 min): p2p {args.pairs} pairs, "
          f"QoS 1, {args.rate}/s for {args.duration:g} s; received {r.get('received')} of {r.get('expected')}")
    print(f"authorization counters: {json.dumps(cache['metrics'], sort_keys=True)}")
    ratio = cache["ratio"]
    print(f"cache hit ratio: {cache['cache_hit']} / {cache['checks']} = "
          + (f"{ratio:.4f}" if ratio is not None else "n/a"))
    return 0


if __name__ == "__main__":
    B.run_main(main)
