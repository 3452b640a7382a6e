"""Small /proc readers: a process's CPU time, RSS and open descriptors; machine facts."""

from __future__ import annotations

import os
import platform
import subprocess

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads, not its children), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": out(["nproc"]),
        "kernel": out(["uname", "-r"]),
        "cpu_model": cpu_model(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
    }


def _hex_ip(ip: str) -> str:
    """127.0.0.2 -> '0200007F', as /proc/net/tcp writes IPv4 addresses (host byte order)."""
    return "".join(f"{int(part):02X}" for part in reversed(ip.split(".")))


def local_sockets(ips: list[str]) -> dict[str, int]:
    """Number of IPv4 TCP sockets (any state, TIME_WAIT included) bound to each of `ips`:
    each holds one local port of that address, which a later bind(ip, 0) cannot use."""
    wanted = {_hex_ip(ip): ip for ip in ips}
    counts = {ip: 0 for ip in ips}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            local = line.split(None, 2)[1]
            ip = wanted.get(local.split(":")[0])
            if ip:
                counts[ip] += 1
    return counts


def ephemeral_ports() -> int:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = map(int, f.read().split())
    return hi - lo + 1
