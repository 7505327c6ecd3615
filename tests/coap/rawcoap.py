"""Raw CoAP datagrams built by hand, independent of aiocoap and of ``gateway.coap``.

Like ``tests/wire.py`` for MQTT: the flood generator, the RST-sending observer and
the deduplication tests get their bytes from here, so they test the gateway's
parsing, not a shared encoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4

OBSERVE, URI_PATH, CONTENT_FORMAT, MAX_AGE, URI_QUERY = 6, 11, 12, 14, 15


def code(cls: int, detail: int) -> int:
    """``code(4, 4)`` is 4.04."""
    return cls << 5 | detail


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, struct.pack("!H", value - 269)


def option_bytes(options: list[tuple[int, bytes]]) -> bytes:
    """Options sorted by number, delta-encoded (RFC 7252 section 3.1)."""
    out = b""
    previous = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        delta, delta_ext = _ext(number - previous)
        length, length_ext = _ext(len(value))
        out += bytes([delta << 4 | length]) + delta_ext + length_ext + value
        previous = number
    return out


def uint(value: int) -> bytes:
    """A CoAP uint option value: big-endian, no leading zero bytes (0 is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def message(mtype: int, mcode: int, mid: int, token: bytes = b"",
            options: list[tuple[int, bytes]] | None = None, payload: bytes = b"") -> bytes:
    head = bytes([0x40 | mtype << 4 | len(token), mcode]) + struct.pack("!H", mid) + token
    body = option_bytes(options or [])
    return head + body + (b"\xff" + payload if payload else b"")


def request(mtype: int, mcode: int, mid: int, token: bytes, path: str,
            query: list[str] = (), payload: bytes = b"",  # type: ignore[assignment]
            extra: list[tuple[int, bytes]] = ()) -> bytes:  # type: ignore[assignment]
    """A request for ``path`` (``/``-separated, not percent-encoded) with query items."""
    options = [(URI_PATH, seg.encode()) for seg in path.strip("/").split("/")]
    options += [(URI_QUERY, q.encode()) for q in query]
    options += list(extra)
    return message(mtype, mcode, mid, token, options, payload)


def empty(mtype: int, mid: int) -> bytes:
    """An empty ACK or RST."""
    return message(mtype, 0, mid)


@dataclass
class Parsed:
    mtype: int
    code: int
    mid: int
    token: bytes
    options: list[tuple[int, bytes]] = field(default_factory=list)
    payload: bytes = b""

    def option(self, number: int) -> bytes | None:
        for n, v in self.options:
            if n == number:
                return v
        return None


def parse(data: bytes) -> Parsed:
    """Decode a datagram (enough for tests: header, token, options, payload)."""
    first, mcode, mid = struct.unpack("!BBH", data[:4])
    tkl = first & 0x0F
    token = data[4:4 + tkl]
    i = 4 + tkl
    options: list[tuple[int, bytes]] = []
    number = 0
    while i < len(data) and data[i] != 0xFF:
        delta, length = data[i] >> 4, data[i] & 0x0F
        i += 1
        for which in ("delta", "length"):
            v = delta if which == "delta" else length
            if v == 13:
                v = data[i] + 13
                i += 1
            elif v == 14:
                v = struct.unpack("!H", data[i:i + 2])[0] + 269
                i += 2
            if which == "delta":
                delta = v
            else:
                length = v
        number += delta
        options.append((number, data[i:i + length]))
        i += length
    payload = data[i + 1:] if i < len(data) else b""
    return Parsed(first >> 4 & 3, mcode, mid, token, options, payload)
