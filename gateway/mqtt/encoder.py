"""Encoding half of the sans-IO MQTT codec: ``encode(packet, level) -> bytes``.

``publish_parts``/``set_dup`` let the broker encode a message once and stamp a packet
id per subscriber. ``gateway.mqtt.codec`` re-exports everything public here.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.mqtt.packets import (
    Auth, ConnAck, Connect, Disconnect, Packet, PingReq, PingResp, PubAck, PubComp, Publish,
    PubRec, PubRel, SubAck, Subscribe, UnsubAck, Unsubscribe,
)
from gateway.mqtt.reasons import PROPERTIES, REPEATABLE, PropertyId, PropType

#: Largest value a 4-byte remaining length can hold.
MAX_REMAINING_LENGTH = 268_435_455

_VARINT1 = [bytes((n,)) for n in range(128)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _VARINT1[n]
    if n > MAX_REMAINING_LENGTH:
        raise ValueError(f"{n} does not fit a variable byte integer")
    out = bytearray()
    while n:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | 0x80 if n else digit)
    return bytes(out)


def _fixed(b0: int, body: bytes) -> bytes:
    return bytes((b0,)) + _varint(len(body)) + body


def _bin(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def _str(s: str) -> bytes:
    return _bin(s.encode())


_WRITERS: dict[PropType, Callable[[object], bytes]] = {
    PropType.BYTE: lambda v: bytes((v,)),  # type: ignore[arg-type]
    PropType.U16: lambda v: v.to_bytes(2, "big"),  # type: ignore[attr-defined]
    PropType.U32: lambda v: v.to_bytes(4, "big"),  # type: ignore[attr-defined]
    PropType.VARINT: _varint,  # type: ignore[dict-item]
    PropType.STR: _str,  # type: ignore[dict-item]
    PropType.BIN: _bin,  # type: ignore[dict-item]
    PropType.PAIR: lambda v: _str(v[0]) + _str(v[1]),  # type: ignore[index]
}


def props_body(props: dict | list) -> bytes:
    """Encode level 5 properties without the length prefix (so a caller can join
    cached and per-delivery parts): a dict (a repeatable property's value is a list)
    in its order, or a list of (id, value) pairs as they come."""
    pairs = props if type(props) is list else [
        (ident, v) for ident, value in props.items()
        for v in (value if ident in REPEATABLE else (value,))]
    out = bytearray()
    for ident, value in pairs:
        out.append(ident)  # every identifier is below 0x80: a 1-byte varint
        out += _WRITERS[PROPERTIES[PropertyId(ident)][0]](value)
    return bytes(out)


def _props(props: dict | list) -> bytes:
    """Encode a level 5 property block, length prefix included."""
    if not props:
        return b"\x00"
    body = props_body(props)
    return _varint(len(body)) + body


def publish_v5(topic: bytes, payload: bytes, qos: int, retain: bool, dup: bool,
               packet_id: int | None, body: bytes) -> bytes:
    """A level 5 PUBLISH from parts: ``body`` is the encoded property list (no length
    prefix), ``topic`` the encoded name (empty when a topic alias stands for it)."""
    plen = len(body)
    props = (_VARINT1[plen] if plen < 0x80 else _varint(plen)) + body
    rl = 2 + len(topic) + (2 if qos else 0) + len(props) + len(payload)
    head = bytes((0x30 | qos << 1 | retain | (dup and 0x08),)) + (_VARINT1[rl] if rl < 0x80 else _varint(rl))
    pid = packet_id.to_bytes(2, "big") if qos else b""  # type: ignore[union-attr]
    return b"".join((head, len(topic).to_bytes(2, "big"), topic, pid, props, payload))


def publish_parts(
    topic: str | bytes,
    payload: bytes,
    qos: int,
    retain: bool,
    level: int = 4,
    properties: dict | None = None,
) -> tuple[bytes, bytes]:
    """Encode a PUBLISH once for many subscribers, leaving the packet id out.

    The packet is ``head + payload`` at QoS 0 and ``head + packet_id.to_bytes(2,
    "big") + payload`` otherwise; the remaining length in ``head`` counts the id.
    At level 5 the second part starts with the property block, so it is not
    ``payload`` itself.
    """
    tb = topic.encode() if type(topic) is str else topic
    tail = _props(properties) + payload if level == 5 else payload  # type: ignore[arg-type]
    tlen = len(tb)
    rl = 2 + tlen + len(tail) + (2 if qos else 0)
    head = bytes((0x30 | qos << 1 | retain, *(_VARINT1[rl] if rl < 0x80 else _varint(rl))))
    return head + tlen.to_bytes(2, "big") + tb, tail


def set_dup(head: bytes) -> bytes:
    """Mark a ``publish_parts`` head as a redelivery."""
    return bytes((head[0] | 0x08,)) + head[1:]


def _enc_publish(p: Publish, level: int) -> bytes:
    head, tail = publish_parts(p.topic, p.payload, p.qos, p.retain, level, p.properties)
    if p.dup:
        head = set_dup(head)
    if p.qos:
        if not p.packet_id:
            raise ValueError("QoS 1 and 2 PUBLISH need a packet id")
        return head + p.packet_id.to_bytes(2, "big") + tail
    return head + tail


def _enc_connect(p: Connect, level: int) -> bytes:
    level = p.protocol_level  # the packet says which protocol it speaks
    will = p.will
    flags = (p.clean_session and 0x02) | (p.username is not None and 0x80)
    flags |= p.password is not None and 0x40
    if will is not None:
        flags |= 0x04 | will.qos << 3 | (will.retain and 0x20)
    body = bytearray(_str(p.protocol_name))
    body += bytes((level | 0x80 if p.bridge else level, flags)) + p.keepalive.to_bytes(2, "big")
    if level == 5:
        body += _props(p.properties)
    body += _str(p.client_id)
    if will is not None:
        if level == 5:
            body += _props(will.properties)
        body += _str(will.topic) + _bin(will.payload)
    if p.username is not None:
        body += _str(p.username)
    if p.password is not None:
        body += _bin(p.password)
    return _fixed(0x10, bytes(body))


def _enc_connack(p: ConnAck, level: int) -> bytes:
    body = bytes((1 if p.session_present else 0, p.return_code))
    if level == 5:
        body += _props(p.properties)
    return _fixed(0x20, body)


def _enc_subscribe(p: Subscribe, level: int) -> bytes:
    body = bytearray(p.packet_id.to_bytes(2, "big"))
    if level == 5:
        body += _props(p.properties)
    for topic_filter, opts in p.topics:
        body += _str(topic_filter)
        body.append(opts)
    return _fixed(0x82, bytes(body))


def _enc_suback(p: SubAck, level: int) -> bytes:
    body = p.packet_id.to_bytes(2, "big")
    if level == 5:
        body += _props(p.properties)
    return _fixed(0x90, body + bytes(p.return_codes))


def _enc_unsubscribe(p: Unsubscribe, level: int) -> bytes:
    body = bytearray(p.packet_id.to_bytes(2, "big"))
    if level == 5:
        body += _props(p.properties)
    for topic_filter in p.topics:
        body += _str(topic_filter)
    return _fixed(0xA2, bytes(body))


def _enc_unsuback(p: UnsubAck, level: int) -> bytes:
    body = p.packet_id.to_bytes(2, "big")
    if level == 5:
        body += _props(p.properties) + bytes(p.reason_codes)
    return _fixed(0xB0, body)


def _reason_encoder(b0: int, has_pid: bool) -> Callable[..., bytes]:
    """The shortest form level 5 allows: reason code and properties only if needed."""

    def enc(p: PubAck | Disconnect, level: int) -> bytes:
        body = p.packet_id.to_bytes(2, "big") if has_pid else b""  # type: ignore[union-attr]
        if level == 5 and (p.reason_code or p.properties):
            body += bytes((p.reason_code,))
            if p.properties:
                body += _props(p.properties)
        return _fixed(b0, body)

    return enc


_ENCODERS: dict[type, Callable[..., bytes]] = {
    Connect: _enc_connect,
    ConnAck: _enc_connack,
    Publish: _enc_publish,
    PubAck: _reason_encoder(0x40, True),
    PubRec: _reason_encoder(0x50, True),
    PubRel: _reason_encoder(0x62, True),
    PubComp: _reason_encoder(0x70, True),
    Subscribe: _enc_subscribe,
    SubAck: _enc_suback,
    Unsubscribe: _enc_unsubscribe,
    UnsubAck: _enc_unsuback,
    PingReq: lambda p, level: b"\xc0\x00",
    PingResp: lambda p, level: b"\xd0\x00",
    Disconnect: _reason_encoder(0xE0, False),
    Auth: _reason_encoder(0xF0, False),
}


def encode(packet: Packet, level: int = 4) -> bytes:
    """Serialise one packet for ``level``; a CONNECT uses its own ``protocol_level``."""
    try:
        encoder = _ENCODERS[type(packet)]
    except KeyError:
        raise TypeError(f"not an MQTT packet: {packet!r}") from None
    return encoder(packet, level)
