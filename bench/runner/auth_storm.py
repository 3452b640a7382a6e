#!/usr/bin/env python3
"""A CONNECT storm with a slow password hash, and what it does to clients already connected.

A steady QoS 1 point-to-point stream (1,000 msg/s) runs for the whole measurement; after two
seconds a burst of CONNECTs arrives whose passwords are checked with a deliberately slow hash
(argon2id by default). The stream's end-to-end latency is compared with a run without the burst,
for each broker binary given, so that two builds (e.g. before and after moving password checks
off the connection tasks) are compared in one run on the same machine.

    python3 bench/runner/auth_storm.py [--binary LABEL=PATH ...] [--hash argon2] [--storm 300]
                                       [--duration 10] [--runs 1] [--base-port 23883]

Standard library only; portico-bench must be built (target/release/portico-bench).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import brokers as B  # noqa: E402
from side_by_side import RunFailed, log, run_generator, target_dir  # noqa: E402

REPO = HERE.parent.parent
USERS = "user_id,password,is_superuser\nsteady,secret,false\nstorm,secret,false\n"


class AuthPortico(B.Portico):
    """Portico with built-in authentication only (anonymous refused) and a bootstrap CSV."""

    def __init__(self, port: int, binary: Path, hash_name: str, workdir: Path):
        super().__init__(port, binary, REPO)
        self.hash_name, self.workdir = hash_name, workdir

    def command(self, workdir):
        cmd, env = super().command(workdir)
        users = workdir / "users.csv"
        users.write_text(USERS)
        env.update({
            "PORTICO_NODE__DATA_DIR": str(workdir / "data"),
            "PORTICO_MQTT__ALLOW_ANONYMOUS": "false",
            "PORTICO_AUTHENTICATION__1__MECHANISM": "password_based",
            "PORTICO_AUTHENTICATION__1__BACKEND": "built_in_database",
            "PORTICO_AUTHENTICATION__1__BOOTSTRAP_FILE": str(users),
            "PORTICO_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__NAME": self.hash_name,
        })
        return cmd, env


def steady_cmd(bench: Path, port: int, duration: float) -> list[str]:
    return [str(bench), "p2p", "--port", str(port), "--qos", "1", "--pairs", "1", "--rate", "1000",
            "--duration", f"{duration:g}", "--warmup", "1", "--username", "steady", "--password", "secret",
            "--json", "--quiet"]


def storm_cmd(bench: Path, port: int, storm: int) -> list[str]:
    return [str(bench), "conns", "--port", str(port), "--connections", str(storm), "--connect-rate", "20000",
            "--hold", "1", "--username", "storm", "--password", "secret", "--json", "--quiet"]


def one_run(args, bench: Path, label: str, binary: Path, with_storm: bool, port: int, tmp: Path) -> dict:
    workdir = tmp / f"{label}-{'storm' if with_storm else 'calm'}-{port}"
    workdir.mkdir(parents=True)
    broker = AuthPortico(port, binary, args.hash, workdir)
    rec = {"label": label, "storm": with_storm}
    try:
        broker.start(workdir, pinned=False)
        storm_result: dict = {}

        def storm() -> None:
            time.sleep(3.0)  # one second of warm-up, then two of calm measured traffic
            try:
                storm_result.update(run_generator(storm_cmd(bench, port, args.storm), 300, workdir / "storm.err"))
            except RunFailed as e:
                storm_result["error"] = str(e)

        thread = threading.Thread(target=storm) if with_storm else None
        if thread:
            thread.start()
        steady = run_generator(steady_cmd(bench, port, args.duration), args.duration + 300, workdir / "steady.err")
        if thread:
            thread.join()
        rec.update(steady=steady, storm_result=storm_result)
    finally:
        broker.stop()
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", action="append", default=[],
                    help="LABEL=PATH of a portico binary (repeatable); default: this tree's release build")
    ap.add_argument("--hash", default="argon2", help="password_hash_algorithm.name for the users")
    ap.add_argument("--storm", type=int, default=300, help="CONNECTs in the burst")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds of the steady stream")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--base-port", type=int, default=23883)
    args = ap.parse_args()
    B.raise_nofile()
    release = target_dir() / "release"
    bench = release / "portico-bench"
    binaries = [tuple(b.split("=", 1)) for b in args.binary] or [("this tree", str(release / "portico"))]
    port = args.base_port
    rows = []
    with tempfile.TemporaryDirectory(prefix="portico-auth-storm-") as tmp:
        for rnd in range(args.runs):
            for label, path in binaries:
                for with_storm in (False, True):
                    log(f"round {rnd + 1}: {label}, {'with' if with_storm else 'without'} the storm")
                    rows.append(one_run(args, bench, label, Path(path), with_storm, port, Path(tmp)))
                    port += 1
    print(json.dumps(rows), file=sys.stderr)
    print(f"| build | storm ({args.storm} × {args.hash}) | steady p50 µs | p99 µs | p99.9 µs | max µs | "
          "storm CONNECT/s | storm failures |")
    print("|---|---|---|---|---|---|---|---|")
    for label, _ in binaries:
        for with_storm in (False, True):
            mine = [r for r in rows if r["label"] == label and r["storm"] == with_storm]
            lat = [r["steady"]["latency_us"] for r in mine]

            def med(key):
                values = [v[key] for v in lat if v.get(key) is not None]
                return f"{statistics.median(values):,.0f}" if values else "—"

            storms = [r["storm_result"] for r in mine if r["storm_result"]]
            rate = statistics.median([s.get("connect_rate_per_s") or 0 for s in storms]) if storms else None
            fails = sum(s.get("connect_failures") or 0 for s in storms) if storms else None
            print(f"| {label} | {'yes' if with_storm else 'no'} | {med('p50')} | {med('p99')} | {med('p999')} | "
                  f"{med('max')} | {'' if rate is None else f'{rate:,.0f}'} | {'' if fails is None else fails} |")
    return 0


if __name__ == "__main__":
    B.run_main(main)
