"""Raw MQTT packets built by hand, independent of ``gateway.mqtt``.

Like Mosquitto's ``test/mosq_test.py``: tests that check the codec, or drive the
broker over a socket, get their bytes from here, so a bug shared by the
encoder and the decoder cannot hide. Strings may be given as ``bytes`` to build
invalid UTF-8 on purpose. At ``proto_ver=5``, ``properties`` is the raw
property block *without* its length, which the builder adds (use ``prop_*``).
"""

from __future__ import annotations

import struct

Text = str | bytes


def remaining_length(n: int) -> bytes:
    """MQTT variable byte integer, 1 to 4 bytes."""
    out = b""
    while True:
        digit = n % 128
        n //= 128
        if n > 0:
            digit |= 0x80
        out += struct.pack("!B", digit)
        if n == 0:
            return out


def _b(s: Text) -> bytes:
    return s.encode("utf-8") if isinstance(s, str) else s


def string(s: Text) -> bytes:
    """Two-byte length followed by the bytes (UTF-8 string or binary data)."""
    data = _b(s)
    return struct.pack("!H", len(data)) + data


def packet(first_byte: int, body: bytes) -> bytes:
    """Fixed header + body; for building deliberately odd packets."""
    return struct.pack("!B", first_byte) + remaining_length(len(body)) + body


def _props(proto_ver: int, properties: bytes) -> bytes:
    if proto_ver != 5:
        return b""
    return remaining_length(len(properties)) + properties


# --- MQTT 5 properties --------------------------------------------------------------


def prop_byte(ident: int, value: int) -> bytes:
    return struct.pack("!BB", ident, value)


def prop_u16(ident: int, value: int) -> bytes:
    return struct.pack("!BH", ident, value)


def prop_u32(ident: int, value: int) -> bytes:
    return struct.pack("!BI", ident, value)


def prop_varint(ident: int, value: int) -> bytes:
    return struct.pack("!B", ident) + remaining_length(value)


def prop_str(ident: int, value: Text) -> bytes:
    return struct.pack("!B", ident) + string(value)


def prop_pair(ident: int, key: Text, value: Text) -> bytes:
    return struct.pack("!B", ident) + string(key) + string(value)


# --- packets ------------------------------------------------------------------------


def connect(
    client_id: Text,
    clean: bool = True,
    keepalive: int = 60,
    username: Text | None = None,
    password: Text | None = None,
    will_topic: Text | None = None,
    will_payload: bytes = b"",
    will_qos: int = 0,
    will_retain: bool = False,
    proto_level: int = 4,
    proto_name: Text | None = None,
    properties: bytes = b"",
    will_properties: bytes = b"",
    flags: int | None = None,
) -> bytes:
    """CONNECT; ``flags`` overrides the computed connect flags byte."""
    if proto_name is None:
        proto_name = "MQIsdp" if proto_level == 3 else "MQTT"
    connect_flags = 0
    if clean:
        connect_flags |= 0x02
    if will_topic is not None:
        connect_flags |= 0x04 | (will_qos << 3)
        if will_retain:
            connect_flags |= 0x20
    if username is not None:
        connect_flags |= 0x80
    if password is not None:
        connect_flags |= 0x40
    if flags is not None:
        connect_flags = flags
    body = string(proto_name) + struct.pack("!BBH", proto_level, connect_flags, keepalive)
    body += _props(proto_level, properties)
    body += string(client_id)
    if will_topic is not None:
        body += _props(proto_level, will_properties)
        body += string(will_topic) + string(will_payload)
    if username is not None:
        body += string(username)
    if password is not None:
        body += string(password)
    return packet(0x10, body)


def connack(rc: int = 0, sp: bool = False, proto_ver: int = 4, properties: bytes = b"") -> bytes:
    body = struct.pack("!BB", 1 if sp else 0, rc) + _props(proto_ver, properties)
    return packet(0x20, body)


def connack_v5(rc: int = 0, sp: bool = False, extra: bytes = b"") -> bytes:
    """A level 5 CONNACK as the gateway sends it with default settings (as Mosquitto
    does): Topic Alias Maximum 10, ``extra``, Receive Maximum 20."""
    return connack(rc, sp, 5, prop_u16(0x22, 10) + extra + prop_u16(0x21, 20))


def publish(
    topic: Text,
    payload: bytes = b"",
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    mid: int | None = None,
    proto_ver: int = 4,
    properties: bytes = b"",
) -> bytes:
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = string(topic)
    if qos > 0:
        body += struct.pack("!H", mid if mid is not None else 1)
    body += _props(proto_ver, properties) + payload
    return packet(first, body)


def _mid_ack(first: int, mid: int, reason: int, proto_ver: int, properties: bytes) -> bytes:
    # The shortest form MQTT 5 allows: reason and properties only when needed.
    body = struct.pack("!H", mid)
    if proto_ver == 5 and (reason or properties):
        body += struct.pack("!B", reason)
        if properties:
            body += _props(5, properties)
    return packet(first, body)


def puback(mid: int, reason: int = 0, proto_ver: int = 4, properties: bytes = b"") -> bytes:
    return _mid_ack(0x40, mid, reason, proto_ver, properties)


def pubrec(mid: int, reason: int = 0, proto_ver: int = 4, properties: bytes = b"") -> bytes:
    return _mid_ack(0x50, mid, reason, proto_ver, properties)


def pubrel(mid: int, reason: int = 0, proto_ver: int = 4, properties: bytes = b"") -> bytes:
    return _mid_ack(0x62, mid, reason, proto_ver, properties)


def pubcomp(mid: int, reason: int = 0, proto_ver: int = 4, properties: bytes = b"") -> bytes:
    return _mid_ack(0x70, mid, reason, proto_ver, properties)


def subscribe(
    mid: int, topics: list[tuple[Text, int]], proto_ver: int = 4, properties: bytes = b""
) -> bytes:
    """SUBSCRIBE; the int is the requested QoS (the options byte at level 5)."""
    body = struct.pack("!H", mid) + _props(proto_ver, properties)
    for topic_filter, opts in topics:
        body += string(topic_filter) + struct.pack("!B", opts)
    return packet(0x82, body)


def suback(mid: int, codes: list[int], proto_ver: int = 4, properties: bytes = b"") -> bytes:
    body = struct.pack("!H", mid) + _props(proto_ver, properties)
    body += struct.pack(f"!{len(codes)}B", *codes)
    return packet(0x90, body)


def unsubscribe(
    mid: int, topics: list[Text], proto_ver: int = 4, properties: bytes = b""
) -> bytes:
    body = struct.pack("!H", mid) + _props(proto_ver, properties)
    for topic_filter in topics:
        body += string(topic_filter)
    return packet(0xA2, body)


def unsuback(
    mid: int, codes: list[int] | None = None, proto_ver: int = 4, properties: bytes = b""
) -> bytes:
    body = struct.pack("!H", mid)
    if proto_ver == 5:
        codes = codes or []
        body += _props(5, properties) + struct.pack(f"!{len(codes)}B", *codes)
    return packet(0xB0, body)


def pingreq() -> bytes:
    return struct.pack("!BB", 0xC0, 0)


def pingresp() -> bytes:
    return struct.pack("!BB", 0xD0, 0)


def disconnect(reason: int = 0, proto_ver: int = 4, properties: bytes = b"") -> bytes:
    body = b""
    if proto_ver == 5 and (reason or properties):
        body = struct.pack("!B", reason)
        if properties:
            body += _props(5, properties)
    return packet(0xE0, body)


def auth(reason: int = 0, properties: bytes = b"") -> bytes:
    """MQTT 5 AUTH."""
    body = b""
    if reason or properties:
        body = struct.pack("!B", reason)
        if properties:
            body += _props(5, properties)
    return packet(0xF0, body)
