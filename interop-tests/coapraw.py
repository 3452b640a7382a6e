"""CoAP by hand for the interop suite: a minimal RFC 7252 encoder and decoder and a UDP peer, for
what no well-behaved client sends (unknown critical options, duplicates, junk) and for exact
looks at what the gateway sends. Used by test_coap.py."""

from __future__ import annotations

import socket
import struct

TIMEOUT = 10.0


def dotted(code: int) -> str:
    """A CoAP code as `c.dd`."""
    code = int(code)
    return f"{code >> 5}.{code & 31:02d}"


OPT_OBSERVE, OPT_URI_PATH, OPT_URI_QUERY = 6, 11, 15
T_CON, T_NON, T_ACK, T_RST = 0, 1, 2, 3


def _ext(n: int) -> tuple[int, bytes]:
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes([n - 13])
    return 14, struct.pack("!H", n - 269)


def coap_encode(mtype: int, code: int, mid: int, token: bytes = b"", options=(), payload: bytes = b"") -> bytes:
    """One CoAP message; `options` are (number, bytes) pairs, repeated ones kept in order."""
    out = bytearray([0x40 | mtype << 4 | len(token), code]) + struct.pack("!H", mid) + token
    last = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        delta, delta_ext = _ext(number - last)
        length, length_ext = _ext(len(value))
        out += bytes([delta << 4 | length]) + delta_ext + length_ext + value
        last = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


def coap_decode(data: bytes) -> dict:
    tkl = data[0] & 0x0F
    m = {"type": data[0] >> 4 & 3, "code": data[1], "mid": struct.unpack("!H", data[2:4])[0],
         "token": data[4:4 + tkl], "options": [], "payload": b""}
    pos, number = 4 + tkl, 0
    while pos < len(data):
        if data[pos] == 0xFF:
            m["payload"] = data[pos + 1:]
            break
        delta, length = data[pos] >> 4, data[pos] & 0x0F
        pos += 1
        values = []
        for nibble in (delta, length):
            if nibble == 13:
                values.append(data[pos] + 13)
                pos += 1
            elif nibble == 14:
                values.append(struct.unpack("!H", data[pos:pos + 2])[0] + 269)
                pos += 2
            else:
                values.append(nibble)
        number += values[0]
        m["options"].append((number, data[pos:pos + values[1]]))
        pos += values[1]
    return m


def request_options(path: str, query: tuple[str, ...] = (), observe: int | None = None) -> list:
    opts = [(OPT_URI_PATH, seg.encode()) for seg in path.split("/")]
    opts += [(OPT_URI_QUERY, q.encode()) for q in query]
    if observe is not None:
        opts.append((OPT_OBSERVE, bytes([observe]) if observe else b""))
    return opts


class RawPeer:
    """A UDP socket speaking CoAP by hand."""

    def __init__(self, gw):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.connect(("127.0.0.1", gw.coap_port))
        self.mid = 0x1000

    def next_mid(self) -> int:
        self.mid += 1
        return self.mid

    def send(self, datagram: bytes) -> None:
        self.s.send(datagram)

    def recv(self, timeout: float = TIMEOUT) -> dict:
        self.s.settimeout(timeout)
        try:
            return coap_decode(self.s.recv(65536))
        except socket.timeout:
            raise AssertionError(f"no CoAP datagram within {timeout}s") from None

    def ask(self, path: str, code: int = 2, query=(), payload=b"", mtype=T_CON, token=b"\x01", observe=None,
            extra=()) -> dict:
        """Sends a request and returns the datagram that answers it (same token)."""
        mid = self.next_mid()
        self.send(coap_encode(mtype, code, mid, token, request_options(path, query, observe) + list(extra), payload))
        return self.recv()

    def close(self) -> None:
        self.s.close()
