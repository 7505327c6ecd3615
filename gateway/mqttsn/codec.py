"""MQTT-SN v1.2 messages: one frozen dataclass per message type, ``decode`` and ``encode``.

Sans-IO: bytes in, message objects out, and back. A datagram (or a frame's payload)
holds exactly one message; its length field says how long it is, in the one-byte form
or as ``0x01`` followed by two bytes (a forwarder's encapsulation is the exception:
its one-octet length counts its own header, and the inner message's length ends it).
``frame_length`` lets a stream transport (a plain serial line) find message boundaries.

The decoder refuses only what is structurally wrong (length, truncation, unknown type,
bad UTF-8): those raise ``MQTTSNError`` and the transport drops the datagram. Values
that are well-formed but unsupported (a reserved topic id type, a protocol id other
than 1, QoS -1 in a SUBSCRIBE) are decoded as they are, because the answer to them
is a return code the channel sends, not a dropped packet.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, Callable, Union

from gateway.errors import GatewayError

PROTOCOL_ID = 0x01


class MsgType(enum.IntEnum):
    ADVERTISE = 0x00
    SEARCHGW = 0x01
    GWINFO = 0x02
    CONNECT = 0x04
    CONNACK = 0x05
    WILLTOPICREQ = 0x06
    WILLTOPIC = 0x07
    WILLMSGREQ = 0x08
    WILLMSG = 0x09
    REGISTER = 0x0A
    REGACK = 0x0B
    PUBLISH = 0x0C
    PUBACK = 0x0D
    PUBCOMP = 0x0E
    PUBREC = 0x0F
    PUBREL = 0x10
    SUBSCRIBE = 0x12
    SUBACK = 0x13
    UNSUBSCRIBE = 0x14
    UNSUBACK = 0x15
    PINGREQ = 0x16
    PINGRESP = 0x17
    DISCONNECT = 0x18
    WILLTOPICUPD = 0x1A
    WILLTOPICRESP = 0x1B
    WILLMSGUPD = 0x1C
    WILLMSGRESP = 0x1D
    ENCAPSULATED = 0xFE


class ReturnCode(enum.IntEnum):
    ACCEPTED = 0x00
    CONGESTION = 0x01
    INVALID_TOPIC_ID = 0x02
    NOT_SUPPORTED = 0x03


class TopicIdType(enum.IntEnum):
    """Flags bits 1-0. In SUBSCRIBE/UNSUBSCRIBE, NORMAL means a topic name follows."""

    NORMAL = 0
    PREDEFINED = 1
    SHORT = 2
    RESERVED = 3


# flag bits
DUP = 0x80
RETAIN = 0x10
WILL = 0x08
CLEAN = 0x04


class MQTTSNError(GatewayError):
    """A message that cannot be decoded, or a request the channel must refuse."""

    def __init__(self, msg: str, return_code: int = ReturnCode.NOT_SUPPORTED) -> None:
        super().__init__(msg)
        self.return_code = return_code


# --- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Advertise:
    gw_id: int
    duration: int


@dataclass(frozen=True, slots=True)
class SearchGw:
    radius: int = 0


@dataclass(frozen=True, slots=True)
class GwInfo:
    gw_id: int
    gw_address: bytes = b""


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    duration: int = 0
    clean: bool = True
    will: bool = False
    protocol_id: int = PROTOCOL_ID


@dataclass(frozen=True, slots=True)
class ConnAck:
    return_code: int = ReturnCode.ACCEPTED


@dataclass(frozen=True, slots=True)
class WillTopicReq:
    pass


@dataclass(frozen=True, slots=True)
class WillTopic:
    """``topic`` None is the empty WILLTOPIC: no will (or, as WILLTOPICUPD, delete it)."""

    topic: str | None
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class WillMsgReq:
    pass


@dataclass(frozen=True, slots=True)
class WillMsg:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Register:
    topic_id: int
    msg_id: int
    topic_name: str


@dataclass(frozen=True, slots=True)
class RegAck:
    topic_id: int
    msg_id: int
    return_code: int = ReturnCode.ACCEPTED


@dataclass(frozen=True, slots=True)
class Publish:
    """``topic_id`` is the raw 16-bit field; for a short name it holds the two bytes."""

    topic_id: int
    msg_id: int
    data: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    topic_type: int = TopicIdType.NORMAL


@dataclass(frozen=True, slots=True)
class PubAck:
    topic_id: int
    msg_id: int
    return_code: int = ReturnCode.ACCEPTED


@dataclass(frozen=True, slots=True)
class PubRec:
    msg_id: int


@dataclass(frozen=True, slots=True)
class PubRel:
    msg_id: int


@dataclass(frozen=True, slots=True)
class PubComp:
    msg_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``topic`` is a name (NORMAL, SHORT) or an id (PREDEFINED, RESERVED)."""

    msg_id: int
    topic: str | int
    qos: int = 0
    topic_type: int = TopicIdType.NORMAL
    dup: bool = False


@dataclass(frozen=True, slots=True)
class SubAck:
    topic_id: int
    msg_id: int
    return_code: int = ReturnCode.ACCEPTED
    qos: int = 0


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    msg_id: int
    topic: str | int
    topic_type: int = TopicIdType.NORMAL


@dataclass(frozen=True, slots=True)
class UnsubAck:
    msg_id: int


@dataclass(frozen=True, slots=True)
class PingReq:
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    duration: int | None = None


@dataclass(frozen=True, slots=True)
class WillTopicUpd:
    topic: str | None
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class WillTopicResp:
    return_code: int = ReturnCode.ACCEPTED


@dataclass(frozen=True, slots=True)
class WillMsgUpd:
    payload: bytes


@dataclass(frozen=True, slots=True)
class WillMsgResp:
    return_code: int = ReturnCode.ACCEPTED


@dataclass(frozen=True, slots=True)
class Encapsulated:
    """Forwarder encapsulation: ``message`` is the inner MQTT-SN message, still encoded."""

    node_id: bytes
    message: bytes
    radius: int = 0


Message = Union[
    Advertise, SearchGw, GwInfo, Connect, ConnAck, WillTopicReq, WillTopic, WillMsgReq,
    WillMsg, Register, RegAck, Publish, PubAck, PubRec, PubRel, PubComp, Subscribe, SubAck,
    Unsubscribe, UnsubAck, PingReq, PingResp, Disconnect, WillTopicUpd, WillTopicResp,
    WillMsgUpd, WillMsgResp, Encapsulated,
]


# --- helpers ------------------------------------------------------------------------------


def qos_from_flags(flags: int) -> int:
    """Flags bits 6-5; 0b11 is QoS -1."""
    q = (flags >> 5) & 3
    return -1 if q == 3 else q


def qos_to_flags(qos: int) -> int:
    return 0x60 if qos == -1 else (qos & 3) << 5


def short_name(topic_id: int) -> str:
    """A short topic name travels as the two bytes of the topic id field."""
    return topic_id.to_bytes(2, "big").decode("utf-8", "surrogateescape")


def short_id(name: str) -> int:
    return int.from_bytes(name.encode("utf-8"), "big")


def frame_length(buf: bytes | bytearray, offset: int = 0) -> tuple[int, int] | None:
    """(total length, header size) of the message at ``offset``; None if not all here yet.

    A length below the header size is returned as is; callers treat it as garbage.
    """
    avail = len(buf) - offset
    if avail < 1:
        return None
    first = buf[offset]
    if first != 0x01:
        if first >= 3 and avail >= 2 and buf[offset + 1] == MsgType.ENCAPSULATED:
            # The encapsulation's length covers its own header only; the inner
            # message's length field says where the whole ends (one level: an
            # encapsulation inside an encapsulation is refused by ``decode``).
            inner = _plain_length(buf, offset + first)
            return None if inner is None else (first + inner, 1)
        return first, 1
    return _long_length(buf, offset, avail)


def _long_length(buf: bytes | bytearray, offset: int, avail: int) -> tuple[int, int] | None:
    if avail < 3:
        return None
    return (buf[offset + 1] << 8) | buf[offset + 2], 3


def _plain_length(buf: bytes | bytearray, offset: int) -> int | None:
    avail = len(buf) - offset
    if avail < 1:
        return None
    if buf[offset] != 0x01:
        return buf[offset]
    info = _long_length(buf, offset, avail)
    return None if info is None else info[0]


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MQTTSNError(f"{what} is not valid UTF-8") from None


def _need(body: bytes, n: int, name: str) -> None:
    if len(body) < n:
        raise MQTTSNError(f"{name} too short ({len(body)} bytes after the type)")


def _exact(body: bytes, n: int, name: str) -> None:
    if len(body) != n:
        raise MQTTSNError(f"{name} must have {n} bytes after the type, has {len(body)}")


def _topic_field(flags: int, raw: bytes, name: str) -> tuple[int, str | int]:
    ttype = flags & 3
    if ttype == TopicIdType.NORMAL:
        return ttype, _text(raw, "topic name")
    if len(raw) != 2:
        raise MQTTSNError(f"{name}: topic id must have 2 bytes")
    if ttype == TopicIdType.SHORT:
        return ttype, _text(raw, "short topic name")
    return ttype, (raw[0] << 8) | raw[1]


# --- decoding -----------------------------------------------------------------------------

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_HHB = struct.Struct("!HHB")
_BHH = struct.Struct("!BHH")


def _d_advertise(b: bytes) -> Message:
    _exact(b, 3, "ADVERTISE")
    return Advertise(b[0], _H.unpack_from(b, 1)[0])


def _d_searchgw(b: bytes) -> Message:
    _exact(b, 1, "SEARCHGW")
    return SearchGw(b[0])


def _d_gwinfo(b: bytes) -> Message:
    _need(b, 1, "GWINFO")
    return GwInfo(b[0], bytes(b[1:]))


def _d_connect(b: bytes) -> Message:
    _need(b, 4, "CONNECT")  # an empty client id is refused by the channel, with CONNACK
    flags = b[0]
    return Connect(
        _text(b[4:], "client id"), _H.unpack_from(b, 2)[0], bool(flags & CLEAN),
        bool(flags & WILL), b[1],
    )


def _d_connack(b: bytes) -> Message:
    _exact(b, 1, "CONNACK")
    return ConnAck(b[0])


def _d_willtopic(b: bytes, cls: type = WillTopic) -> Message:
    if not b:
        return cls(None)
    _need(b, 2, cls.__name__.upper())
    flags = b[0]
    return cls(_text(b[1:], "will topic"), qos_from_flags(flags), bool(flags & RETAIN))


def _d_willmsg(b: bytes) -> Message:
    return WillMsg(bytes(b))


def _d_register(b: bytes) -> Message:
    _need(b, 5, "REGISTER")
    tid, mid = _HH.unpack_from(b)
    return Register(tid, mid, _text(b[4:], "topic name"))


def _d_regack(b: bytes) -> Message:
    _exact(b, 5, "REGACK")
    return RegAck(*_HHB.unpack(b))


def _d_publish(b: bytes) -> Message:
    _need(b, 5, "PUBLISH")
    flags, tid, mid = _BHH.unpack_from(b)
    return Publish(
        tid, mid, bytes(b[5:]), qos_from_flags(flags), bool(flags & RETAIN), bool(flags & DUP),
        flags & 3,
    )


def _d_puback(b: bytes) -> Message:
    _exact(b, 5, "PUBACK")
    return PubAck(*_HHB.unpack(b))


def _msg_id(cls: type) -> object:
    def decode(b: bytes) -> Message:
        _exact(b, 2, cls.__name__.upper())
        return cls(_H.unpack(b)[0])  # type: ignore[no-any-return]

    return decode


def _d_subscribe(b: bytes, cls: type = Subscribe) -> Message:
    _need(b, 4, cls.__name__.upper())
    flags = b[0]
    mid = _H.unpack_from(b, 1)[0]
    ttype, topic = _topic_field(flags, b[3:], cls.__name__.upper())
    if cls is Unsubscribe:
        return Unsubscribe(mid, topic, ttype)
    return Subscribe(mid, topic, qos_from_flags(flags), ttype, bool(flags & DUP))


def _d_suback(b: bytes) -> Message:
    _exact(b, 6, "SUBACK")
    flags = b[0]
    tid, mid, rc = _HHB.unpack_from(b, 1)
    return SubAck(tid, mid, rc, qos_from_flags(flags))


def _d_pingreq(b: bytes) -> Message:
    return PingReq(_text(b, "client id") if b else None)


def _d_empty(cls: type) -> object:
    def decode(b: bytes) -> Message:
        _exact(b, 0, cls.__name__.upper())
        return cls()  # type: ignore[no-any-return]

    return decode


def _d_disconnect(b: bytes) -> Message:
    if not b:
        return Disconnect(None)
    _exact(b, 2, "DISCONNECT")
    return Disconnect(_H.unpack(b)[0])


def _d_rc(cls: type) -> object:
    def decode(b: bytes) -> Message:
        _exact(b, 1, cls.__name__.upper())
        return cls(b[0])  # type: ignore[no-any-return]

    return decode


def _d_encapsulated(data: bytes) -> Message:
    """The whole datagram: Length (of this header), 0xFE, Ctrl, node id, inner message.

    ``decode`` has checked that the inner message's length field ends the datagram."""
    hlen = data[0]
    if hlen < 3:
        raise MQTTSNError("encapsulation header shorter than 3 bytes")
    inner = data[hlen:]
    info = frame_length(inner)
    if info is None or info[0] < info[1] + 1:
        raise MQTTSNError("encapsulated message has no inner message")
    return Encapsulated(bytes(data[3:hlen]), bytes(inner), data[2] & 3)


_DECODERS: dict[int, object] = {
    MsgType.ADVERTISE: _d_advertise,
    MsgType.SEARCHGW: _d_searchgw,
    MsgType.GWINFO: _d_gwinfo,
    MsgType.CONNECT: _d_connect,
    MsgType.CONNACK: _d_connack,
    MsgType.WILLTOPICREQ: _d_empty(WillTopicReq),
    MsgType.WILLTOPIC: _d_willtopic,
    MsgType.WILLMSGREQ: _d_empty(WillMsgReq),
    MsgType.WILLMSG: _d_willmsg,
    MsgType.REGISTER: _d_register,
    MsgType.REGACK: _d_regack,
    MsgType.PUBLISH: _d_publish,
    MsgType.PUBACK: _d_puback,
    MsgType.PUBCOMP: _msg_id(PubComp),
    MsgType.PUBREC: _msg_id(PubRec),
    MsgType.PUBREL: _msg_id(PubRel),
    MsgType.SUBSCRIBE: _d_subscribe,
    MsgType.SUBACK: _d_suback,
    MsgType.UNSUBSCRIBE: lambda b: _d_subscribe(b, Unsubscribe),
    MsgType.UNSUBACK: _msg_id(UnsubAck),
    MsgType.PINGREQ: _d_pingreq,
    MsgType.PINGRESP: _d_empty(PingResp),
    MsgType.DISCONNECT: _d_disconnect,
    MsgType.WILLTOPICUPD: lambda b: _d_willtopic(b, WillTopicUpd),
    MsgType.WILLTOPICRESP: _d_rc(WillTopicResp),
    MsgType.WILLMSGUPD: lambda b: WillMsgUpd(bytes(b)),
    MsgType.WILLMSGRESP: _d_rc(WillMsgResp),
}


def decode(data: bytes) -> Message:
    """Decode exactly one message; its length field must match ``len(data)``."""
    info = frame_length(data)
    if info is None:
        raise MQTTSNError("truncated length field")
    length, header = info
    if length != len(data):
        raise MQTTSNError(f"length field says {length} bytes, datagram has {len(data)}")
    if length < header + 1:
        raise MQTTSNError(f"length {length} leaves no room for the message type")
    if data[header] == MsgType.ENCAPSULATED:
        if header != 1:
            raise MQTTSNError("an encapsulation header has a one-octet length")
        return _d_encapsulated(data)
    decoder = _DECODERS.get(data[header])
    if decoder is None:
        raise MQTTSNError(f"unknown message type 0x{data[header]:02x}")
    return decoder(data[header + 1 :])  # type: ignore[operator,no-any-return]


# --- encoding -----------------------------------------------------------------------------


def frame(msg_type: int, body: bytes) -> bytes:
    """Prefix the length (one-byte form when it fits) and the type."""
    n = len(body) + 2
    if n <= 255:
        return bytes((n, msg_type)) + body
    n += 2
    if n > 65535:
        raise MQTTSNError("message longer than 65535 bytes", ReturnCode.CONGESTION)
    return b"\x01" + _H.pack(n) + bytes((msg_type,)) + body


def _flags(qos: int = 0, retain: bool = False, dup: bool = False, ttype: int = 0) -> int:
    return qos_to_flags(qos) | (RETAIN if retain else 0) | (DUP if dup else 0) | (ttype & 3)


def _topic_bytes(ttype: int, topic: str | int) -> bytes:
    if isinstance(topic, str):
        return topic.encode("utf-8")
    return _H.pack(topic)


def encode_publish(
    topic_id: int, msg_id: int, data: bytes, qos: int, retain: bool, dup: bool, ttype: int
) -> bytes:
    """The hot-path encoder, shared by ``encode``."""
    flags = (0x60 if qos == -1 else qos << 5) | (RETAIN if retain else 0) | (DUP if dup else 0) | ttype
    n = len(data) + 7
    if n <= 255:
        return bytes((n, 0x0C, flags, topic_id >> 8, topic_id & 255, msg_id >> 8, msg_id & 255)) + data
    return frame(0x0C, bytes((flags, topic_id >> 8, topic_id & 255, msg_id >> 8, msg_id & 255)) + data)


def publish_size(payload_length: int) -> int:
    """Bytes of a PUBLISH carrying that much payload (the same for every topic id type)."""
    n = payload_length + 7
    return n if n <= 255 else n + 2


def _e_willtopic(code: int) -> Callable[[Any], bytes]:
    def enc(m: Any) -> bytes:
        if m.topic is None:
            return frame(code, b"")
        return frame(code, bytes((_flags(m.qos, m.retain),)) + m.topic.encode())

    return enc


def _e_subscribe(code: int) -> Callable[[Any], bytes]:
    def enc(m: Any) -> bytes:
        qos = getattr(m, "qos", 0)
        dup = getattr(m, "dup", False)
        head = bytes((_flags(qos, False, dup, m.topic_type),)) + _H.pack(m.msg_id)
        return frame(code, head + _topic_bytes(m.topic_type, m.topic))

    return enc


def _e_rc(code: int) -> Callable[[Any], bytes]:
    return lambda m: frame(code, bytes((m.return_code,)))


def _e_msg_id(code: int) -> Callable[[Any], bytes]:
    return lambda m: frame(code, _H.pack(m.msg_id))


def _e_empty(code: int) -> Callable[[Any], bytes]:
    data = frame(code, b"")
    return lambda m: data


def _e_connect(m: Any) -> bytes:
    flags = (WILL if m.will else 0) | (CLEAN if m.clean else 0)
    return frame(MsgType.CONNECT, bytes((flags, m.protocol_id)) + _H.pack(m.duration) + m.client_id.encode())


def _e_encapsulated(m: Any) -> bytes:
    # The one-octet length counts the header up to the end of the node id (v1.2, 5.5).
    n = 3 + len(m.node_id)
    if n > 255:
        raise MQTTSNError("wireless node id longer than 252 bytes")
    return bytes((n, MsgType.ENCAPSULATED, m.radius & 3)) + m.node_id + m.message


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Publish: lambda m: encode_publish(m.topic_id, m.msg_id, m.data, m.qos, m.retain, m.dup, m.topic_type),
    Advertise: lambda m: frame(MsgType.ADVERTISE, bytes((m.gw_id,)) + _H.pack(m.duration)),
    SearchGw: lambda m: frame(MsgType.SEARCHGW, bytes((m.radius,))),
    GwInfo: lambda m: frame(MsgType.GWINFO, bytes((m.gw_id,)) + m.gw_address),
    Connect: _e_connect,
    ConnAck: _e_rc(MsgType.CONNACK),
    WillTopicReq: _e_empty(MsgType.WILLTOPICREQ),
    WillTopic: _e_willtopic(MsgType.WILLTOPIC),
    WillMsgReq: _e_empty(MsgType.WILLMSGREQ),
    WillMsg: lambda m: frame(MsgType.WILLMSG, m.payload),
    Register: lambda m: frame(MsgType.REGISTER, _HH.pack(m.topic_id, m.msg_id) + m.topic_name.encode()),
    RegAck: lambda m: frame(MsgType.REGACK, _HHB.pack(m.topic_id, m.msg_id, m.return_code)),
    PubAck: lambda m: frame(MsgType.PUBACK, _HHB.pack(m.topic_id, m.msg_id, m.return_code)),
    PubRec: _e_msg_id(MsgType.PUBREC),
    PubRel: _e_msg_id(MsgType.PUBREL),
    PubComp: _e_msg_id(MsgType.PUBCOMP),
    Subscribe: _e_subscribe(MsgType.SUBSCRIBE),
    SubAck: lambda m: frame(
        MsgType.SUBACK, bytes((_flags(m.qos),)) + _HHB.pack(m.topic_id, m.msg_id, m.return_code)
    ),
    Unsubscribe: _e_subscribe(MsgType.UNSUBSCRIBE),
    UnsubAck: _e_msg_id(MsgType.UNSUBACK),
    PingReq: lambda m: frame(MsgType.PINGREQ, m.client_id.encode() if m.client_id else b""),
    PingResp: _e_empty(MsgType.PINGRESP),
    Disconnect: lambda m: frame(MsgType.DISCONNECT, b"" if m.duration is None else _H.pack(m.duration)),
    WillTopicUpd: _e_willtopic(MsgType.WILLTOPICUPD),
    WillTopicResp: _e_rc(MsgType.WILLTOPICRESP),
    WillMsgUpd: lambda m: frame(MsgType.WILLMSGUPD, m.payload),
    WillMsgResp: _e_rc(MsgType.WILLMSGRESP),
    Encapsulated: _e_encapsulated,
}


def encode(msg: Message) -> bytes:
    """Encode any message."""
    return _ENCODERS[type(msg)](msg)
