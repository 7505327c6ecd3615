"""Mosquitto persistence files built by hand, independent of ``gateway.store``.

Like ``tests/wire.py`` for packets: each layout is written out here from Mosquitto's
``src/persist.h`` and ``persist_write*.c`` (versions 5 and 6) and the 1.4/1.5 writer
(versions 2 to 4), so a misreading shared by the reader and its tests cannot hide.
Ids and times are little-endian (the host order of x86 and ARM), other integers
big-endian; strings are ``str`` or, to build invalid ones on purpose, ``bytes``.
"""

from __future__ import annotations

import struct

from tests import wire

Text = str | bytes

MAGIC = b"\x00\xb5\x00mosquitto db"
CFG, MSG_STORE, CLIENT_MSG, RETAIN, SUB, CLIENT = 1, 2, 3, 4, 5, 6


def _b(s: Text) -> bytes:
    return s.encode() if isinstance(s, str) else s


def database(version: int, *chunks: tuple[int, bytes], crc: int = 0) -> bytes:
    """The file header, then each (type, body) chunk with the version's header."""
    header = ">II" if version >= 5 else ">HI"
    out = [MAGIC, struct.pack(">II", crc, version)]
    for ctype, body in chunks:
        out += (struct.pack(header, ctype, len(body)), body)
    return b"".join(out)


def properties(*raw: bytes) -> bytes:
    """A property block with its length; the parts come from ``wire.prop_*``."""
    block = b"".join(raw)
    return wire.remaining_length(len(block)) + block


# --- versions 5 and 6 ---------------------------------------------------------------


def cfg(
    last_db_id: int = 1, shutdown: int = 1, dbid_size: int = 8, size: int = 16
) -> tuple[int, bytes]:
    """PF_cfg; ``size=12`` is the struct as a 32-bit x86 host pads it."""
    body = struct.pack("<QBB", last_db_id, shutdown, dbid_size)
    return CFG, body + bytes(size - len(body))


def msg_store(
    store_id: int,
    topic: Text,
    payload: bytes = b"",
    qos: int = 0,
    retain: int = 0,
    expiry_time: int = 0,
    source_id: Text = b"",
    source_username: Text = b"",
    source_mid: int = 0,
    source_port: int = 0,
    props: bytes = b"",
) -> tuple[int, bytes]:
    """PF_msg_store (32 bytes), source id, username, topic, payload, properties."""
    sid, user, t = _b(source_id), _b(source_username), _b(topic)
    body = struct.pack("<Qq", store_id, expiry_time)
    body += struct.pack(
        ">IHHHHHBB", len(payload), source_mid, len(sid), len(user), len(t), source_port, qos, retain
    )
    return MSG_STORE, body + sid + user + t + payload + props


def client_msg(
    client_id: Text,
    store_id: int,
    mid: int = 1,
    qos: int = 1,
    state: int = 11,
    direction: int = 1,
    retain: int = 0,
    dup: int = 0,
    props: bytes = b"",
) -> tuple[int, bytes]:
    """PF_client_msg (16 bytes), client id, properties."""
    cid = _b(client_id)
    body = struct.pack("<Q", store_id)
    body += struct.pack(">HHBBBB", mid, len(cid), qos, state, retain << 4 | dup, direction)
    return CLIENT_MSG, body + cid + props


def retain(store_id: int) -> tuple[int, bytes]:
    return RETAIN, struct.pack("<Q", store_id)


def sub(
    client_id: Text, topic_filter: Text, qos: int = 0, options: int = 0, identifier: int = 0
) -> tuple[int, bytes]:
    """PF_sub (12 bytes with padding), client id, topic filter."""
    cid, t = _b(client_id), _b(topic_filter)
    return SUB, struct.pack(">IHHBBxx", identifier, len(cid), len(t), qos, options) + cid + t


def client(
    client_id: Text,
    version: int = 6,
    expiry_time: int = 0,
    interval: int = 0,
    last_mid: int = 0,
    port: int = 0,
    username: Text = b"",
    padding: int = 4,
) -> tuple[int, bytes]:
    """PF_client (24 bytes; 20 with ``padding=0``, as on 32-bit x86) or PF_client_v5."""
    cid, user = _b(client_id), _b(username)
    body = struct.pack("<q", expiry_time) + struct.pack(">IHH", interval, last_mid, len(cid))
    if version == 6:
        body += struct.pack(">HH", port, len(user)) + bytes(padding)
        return CLIENT, body + cid + user
    return CLIENT, body + cid


# --- versions 2 to 4 ----------------------------------------------------------------


def cfg_v234(last_db_id: int = 1, shutdown: int = 1, dbid_size: int = 8) -> tuple[int, bytes]:
    return CFG, struct.pack("<BBQ", shutdown, dbid_size, last_db_id)


def msg_store_v234(
    version: int,
    store_id: int,
    topic: Text,
    payload: bytes = b"",
    qos: int = 0,
    retain: int = 0,
    source_id: Text = b"",
    source_username: Text = b"",
    source_mid: int = 0,
    source_port: int = 0,
) -> tuple[int, bytes]:
    body = struct.pack("<Q", store_id) + wire.string(_b(source_id))
    if version == 4:
        body += wire.string(_b(source_username)) + struct.pack(">H", source_port)
    body += struct.pack(">HH", source_mid, 0) + wire.string(_b(topic))
    body += struct.pack(">BBI", qos, retain, len(payload)) + payload
    return MSG_STORE, body


def client_msg_v234(
    client_id: Text,
    store_id: int,
    mid: int = 1,
    qos: int = 1,
    state: int = 11,
    direction: int = 1,
    retain: int = 0,
    dup: int = 0,
) -> tuple[int, bytes]:
    body = wire.string(_b(client_id)) + struct.pack("<Q", store_id)
    body += struct.pack(">HBBBBB", mid, qos, retain, direction, state, dup)
    return CLIENT_MSG, body


def sub_v234(client_id: Text, topic_filter: Text, qos: int = 0) -> tuple[int, bytes]:
    return SUB, wire.string(_b(client_id)) + wire.string(_b(topic_filter)) + bytes([qos])


def client_v234(
    version: int, client_id: Text, last_mid: int = 0, disconnect_t: int = 0, time_size: int = 8
) -> tuple[int, bytes]:
    """Version 2 has no disconnect time; ``time_size=4`` is a 32-bit host's time_t."""
    body = wire.string(_b(client_id)) + struct.pack(">H", last_mid)
    if version >= 3:
        body += struct.pack("<q" if time_size == 8 else "<i", disconnect_t)
    return CLIENT, body
