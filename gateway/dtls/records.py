"""DTLS record framing (RFC 6347 section 4.1), read without OpenSSL.

Two uses: telling a first ClientHello from anything else before any OpenSSL object
exists for an address (garbage from an unknown peer costs a few byte comparisons),
and packing the records OpenSSL writes into a memory BIO into datagrams no larger
than the path MTU (a memory BIO keeps no datagram boundaries).
"""

from __future__ import annotations

HEADER = 13                 # type, version (2), epoch (2), sequence number (6), length (2)
HANDSHAKE = 22
CLIENT_HELLO = 1
HANDSHAKE_HEADER = 12       # type, length (3), message_seq (2), offset (3), fragment length (3)


def is_client_hello(data: bytes) -> bool:
    """A whole handshake record of epoch 0 that starts a ClientHello: what may open a
    session (its fragment within the record, the record within the datagram)."""
    if not (len(data) >= HEADER + HANDSHAKE_HEADER and data[0] == HANDSHAKE
            and data[1] == 0xFE and data[3] == 0 and data[4] == 0
            and data[HEADER] == CLIENT_HELLO):
        return False
    length = (data[11] << 8) | data[12]
    fragment = int.from_bytes(data[HEADER + 9:HEADER + 12], "big")
    return HEADER + length <= len(data) and HANDSHAKE_HEADER + fragment <= length


def has_cookie(data: bytes) -> bool:
    """Whether a ClientHello (``is_client_hello``) carries a cookie: the second
    ClientHello of a handshake, the answer to a HelloVerifyRequest. Only read here,
    not verified; a hello fragmented past the cookie counts as one without."""
    at = HEADER + HANDSHAKE_HEADER + 2 + 32     # client_version, random
    if at >= len(data) or int.from_bytes(data[HEADER + 6:HEADER + 9], "big") != 0:
        return False
    at += 1 + data[at]                          # session_id
    return at < len(data) and data[at] > 0


def split(data: bytes) -> list[bytes]:
    """The records in ``data``; a truncated tail is kept as one last piece."""
    records = []
    start, end = 0, len(data)
    while start < end:
        if end - start < HEADER:
            records.append(data[start:])
            break
        stop = start + HEADER + ((data[start + 11] << 8) | data[start + 12])
        records.append(data[start:stop])
        start = stop
    return records


def pack(data: bytes, mtu: int) -> list[bytes]:
    """``data`` (whole records) as datagrams of at most ``mtu`` bytes where the records
    allow it: records are never split, a record larger than ``mtu`` goes alone."""
    if len(data) <= mtu:
        return [data]
    datagrams: list[bytes] = []
    current = b""
    for record in split(data):
        if current and len(current) + len(record) > mtu:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams
