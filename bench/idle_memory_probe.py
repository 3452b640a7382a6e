#!/usr/bin/env python3
"""First, rough idle-memory probe (the benchmark issue replaces it with portico-bench).

Opens N MQTT 3.1.1 connections to a running broker (alternating source addresses 127.0.0.1 and
127.0.0.2), each sending CONNECT and one SUBSCRIBE, waits 2 s, and prints the broker's RSS
growth per connection. Kernel socket memory is not in RSS.

    python3 bench/idle_memory_probe.py PORT N BROKER_PID
"""

import asyncio
import struct
import sys


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(cid)) + cid
    return bytes([0x10, len(body)]) + body


def subscribe_packet(topic: str) -> bytes:
    t = topic.encode()
    body = b"\x00\x01" + struct.pack("!H", len(t)) + t + b"\x00"
    return bytes([0x82, len(body)]) + body


async def open_one(port: int, i: int, keep: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{1 + i % 2}", 0))
    writer.write(connect_packet(f"idle-{i}"))
    await reader.readexactly(4)  # CONNACK
    writer.write(subscribe_packet(f"idle/{i}"))
    await reader.readexactly(5)  # SUBACK
    keep.append((reader, writer))


async def main(port: int, count: int, pid: int) -> None:
    before = rss_kib(pid)
    keep: list = []
    for start in range(0, count, 200):
        await asyncio.gather(*(open_one(port, i, keep) for i in range(start, min(count, start + 200))))
    await asyncio.sleep(2)
    after = rss_kib(pid)
    print(f"{count} connections: RSS {before} -> {after} KiB, {(after - before) * 1024 / count:.0f} B per connection")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
