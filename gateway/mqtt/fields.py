"""Reading MQTT's fields and level 5 property blocks, between explicit bounds.

Shared by every packet parser of ``gateway.mqtt.codec``: each reader takes the
received bytes, a start and an end, returns (value, next index), and raises
``MQTTError`` with the reason code to answer when the field breaks the protocol.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.errors import GatewayError
from gateway.mqtt.packets import Packet
from gateway.mqtt.reasons import (
    NONZERO, PROPERTIES, REPEATABLE, WILL, PacketType, PropertyId, PropType, ReasonCode,
)

_MALFORMED = ReasonCode.MALFORMED_PACKET
_PROTOCOL = ReasonCode.PROTOCOL_ERROR
_TOPIC_ALIAS = PropertyId.TOPIC_ALIAS
_SUB_ID = PropertyId.SUBSCRIPTION_IDENTIFIER


class MQTTError(GatewayError):
    """A packet that breaks the protocol; ``reason`` is what to answer with.

    ``packets`` holds the packets decoded, in the same ``feed()`` call, before
    the bad one, so the channel may still act on them before closing.
    """

    def __init__(self, msg: str, reason: ReasonCode = ReasonCode.MALFORMED_PACKET) -> None:
        super().__init__(msg)
        self.reason = reason
        self.packets: list[Packet] = []
        #: The type of the packet being decoded, when the error is in one.
        self.packet_type: int | None = None


def remaining_length(data: bytes, i: int, n: int) -> tuple[int, int]:
    """Decode the varint at ``data[i]``: (value, next index), or (-1, 0) if incomplete."""
    value = shift = 0
    for _ in range(4):
        if i >= n:
            return -1, 0
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
    raise MQTTError("variable byte integer longer than 4 bytes")



# --- field readers: all take explicit bounds, all raise MQTTError ------------------


def read_varint(b: bytes, i: int, end: int) -> tuple[int, int]:
    value, i = remaining_length(b, i, end)
    if value < 0:
        raise MQTTError("variable byte integer overruns the packet")
    return value, i


def read_u16(b: bytes, i: int, end: int) -> tuple[int, int]:
    if i + 2 > end:
        raise MQTTError("two-byte integer overruns the packet")
    return b[i] << 8 | b[i + 1], i + 2


def read_pid(b: bytes, i: int, end: int) -> tuple[int, int]:
    pid, i = read_u16(b, i, end)
    if not pid:
        raise MQTTError("packet identifier 0", _PROTOCOL)
    return pid, i


def read_bin(b: bytes, i: int, end: int) -> tuple[bytes, int]:
    size, i = read_u16(b, i, end)
    if i + size > end:
        raise MQTTError("field overruns the packet")
    return b[i : i + size], i + size


def read_str(b: bytes, i: int, end: int) -> tuple[str, int]:
    raw, i = read_bin(b, i, end)
    try:
        s = raw.decode()
    except UnicodeDecodeError:
        raise MQTTError("string is not valid UTF-8") from None
    if "\x00" in s:
        raise MQTTError("string contains U+0000")
    return s, i


def read_flag(b: bytes, i: int, end: int) -> tuple[int, int]:
    if i >= end:
        raise MQTTError("byte property overruns the block")
    if b[i] > 1:
        raise MQTTError("byte property other than 0 or 1", _PROTOCOL)
    return b[i], i + 1


def read_byte(b: bytes, i: int, end: int) -> tuple[int, int]:
    if i >= end:
        raise MQTTError("byte property overruns the block")
    return b[i], i + 1


def read_u32(b: bytes, i: int, end: int) -> tuple[int, int]:
    if i + 4 > end:
        raise MQTTError("four-byte integer overruns the packet")
    return int.from_bytes(b[i : i + 4], "big"), i + 4


def read_pair(b: bytes, i: int, end: int) -> tuple[tuple[str, str], int]:
    key, i = read_str(b, i, end)
    value, i = read_str(b, i, end)
    return (key, value), i


_READERS: dict[PropType, Callable[[bytes, int, int], tuple]] = {
    PropType.BYTE: read_flag,
    PropType.U16: read_u16,
    PropType.U32: read_u32,
    PropType.VARINT: read_varint,
    PropType.STR: read_str,
    PropType.BIN: read_bin,
    PropType.PAIR: read_pair,
}
_PROP_SPECS = {int(p): (p, _READERS[t], allowed) for p, (t, allowed) in PROPERTIES.items()}
# The spec fixes 0 and 1 for the Payload Format Indicator but calls no other value an
# error (it does for the other byte properties); Mosquitto forwards any value.
_PROP_SPECS[PropertyId.PAYLOAD_FORMAT_INDICATOR] = (
    PropertyId.PAYLOAD_FORMAT_INDICATOR, read_byte, PROPERTIES[PropertyId.PAYLOAD_FORMAT_INDICATOR][1])


class OrderedProperties(dict):
    """The properties of a PUBLISH or will, with ``order``: every (id, value) as it came,
    so a message is forwarded with its properties in the publisher's order; ``raw``,
    the block's bytes, which a broker may forward as they are when nothing in them
    changes on the way (no topic alias, no expiry to count down); and ``derived``, for
    a reader to keep what it computed from them. One object may stand for the
    properties of several PUBLISH packets with the same bytes (``Decoder``): read-only."""

    __slots__ = ("order", "raw", "derived")

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[PropertyId, object]] = []
        self.raw = b""
        self.derived: object = None


_ORDERED = frozenset({PacketType.PUBLISH, WILL})
_new_dict = dict.__new__
# A property that may not be 0 but is: what Mosquitto answers.
_ZERO_REASON = {_TOPIC_ALIAS: ReasonCode.TOPIC_ALIAS_INVALID, _SUB_ID: _MALFORMED}
_USER = PropertyId.USER_PROPERTY


def read_props(b: bytes, i: int, end: int, ctx: int, last: list | None = None) -> tuple[dict, int]:
    """Read a level 5 property block; ``ctx`` is the PacketType, or WILL.

    A property not allowed in this packet, or given twice, is a malformed packet (as
    Mosquitto reads it: MQTT 5 DISCONNECT 0x81). User properties, the common case of
    every packet, are read inline. ``last`` ([bytes, properties], PUBLISH only): a block
    with the same bytes as the one read before gives the same (checked) properties.
    """
    if i < end and b[i] < 0x80:
        size = b[i]
        i += 1
    else:
        size, i = read_varint(b, i, end)
    stop = i + size
    if stop > end:
        raise MQTTError("properties overrun the packet")
    if not size:
        return {}, i
    if ctx in _ORDERED:
        raw = b[i:stop]
        if last is not None and last[0] == raw:
            return last[1], stop
        props: dict = _new_dict(OrderedProperties)  # (no Python-level __init__ call)
        props.order = order = []
        props.raw = raw
        props.derived = None
    else:
        props = {}
        order = None
    specs = _PROP_SPECS
    while i < stop:
        ident = b[i]
        if ident == 0x26:
            # User Property: two strings, inline (no function call per field).
            i += 1
            if i + 2 > stop:
                raise MQTTError("two-byte integer overruns the packet")
            ke = i + 2 + (b[i] << 8 | b[i + 1])
            if ke + 2 > stop:
                raise MQTTError("field overruns the packet")
            ve = ke + 2 + (b[ke] << 8 | b[ke + 1])
            if ve > stop:
                raise MQTTError("field overruns the packet")
            try:
                pair = (b[i + 2 : ke].decode(), b[ke + 2 : ve].decode())
            except UnicodeDecodeError:
                raise MQTTError("string is not valid UTF-8") from None
            if "\x00" in pair[0] or "\x00" in pair[1]:
                raise MQTTError("string contains U+0000")
            i = ve
            users = props.get(_USER)
            if users is None:
                props[_USER] = [pair]
            else:
                users.append(pair)
            if order is not None:
                order.append((_USER, pair))
            continue
        if ident < 0x80:
            i += 1
        else:
            ident, i = read_varint(b, i, stop)
        spec = specs.get(ident)
        if spec is None:
            raise MQTTError(f"unknown property {ident:#04x}")
        prop, read, allowed = spec
        if ctx not in allowed:
            raise MQTTError(f"{prop.name} not allowed here")
        value, i = read(b, i, stop)
        if not value and prop in NONZERO:
            raise MQTTError(f"{prop.name} is 0", _ZERO_REASON.get(prop, _PROTOCOL))
        if prop in REPEATABLE:
            props.setdefault(prop, []).append(value)
        elif prop in props:
            raise MQTTError(f"{prop.name} given twice")
        else:
            props[prop] = value
        if order is not None:
            order.append((prop, value))
    if last is not None:
        last[0], last[1] = raw, props
    return props, i
