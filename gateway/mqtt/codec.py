"""Sans-IO MQTT codec for protocol levels 3 (3.1), 4 (3.1.1) and 5.

``Decoder.feed(bytes) -> [Packet]`` and ``encode(Packet, level) -> bytes`` (the latter
from ``gateway.mqtt.encoder``, re-exported); no sockets, no timers, no Twisted. Anything
malformed raises ``MQTTError`` carrying the ``ReasonCode`` to answer with, and the
channel decides what to send and when to close (as wsproto's ``events()`` turns
``ParseFailed`` into a close).

Parsers read from the received ``bytes`` between explicit bounds instead of slicing a
body per packet (the field and property readers are in ``gateway.mqtt.fields``), and
PUBLISH is decoded inline in the feed loop: it is most of the traffic. A level 5
PUBLISH whose property block repeats the previous one's bytes reuses what was read from
it. ``publish_parts``/``set_dup`` let the broker encode a message once and stamp a
packet id per subscriber.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.hub.topics import MAX_TOPIC_SEPARATORS
from gateway.mqtt.encoder import MAX_REMAINING_LENGTH, encode, publish_parts, set_dup
from gateway.mqtt.fields import (
    MQTTError, read_bin, read_pid, read_props, read_str, read_u16, remaining_length,
)
from gateway.mqtt.packets import (
    Auth, ConnAck, Connect, Disconnect, Packet, PingReq, PingResp, PubAck, PubComp, Publish,
    PubRec, PubRel, SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
)
from gateway.mqtt.reasons import WILL, PacketType, PropertyId, ReasonCode


__all__ = [
    "MAX_PACKET_SIZE", "MAX_REMAINING_LENGTH", "PROTOCOLS", "Decoder", "MQTTError", "encode",
    "packet_size", "publish_parts", "set_dup",
]

#: (protocol name, level) pairs a CONNECT may carry.
PROTOCOLS = {("MQIsdp", 3): 3, ("MQTT", 4): 4, ("MQTT", 5): 5}
#: The same with bit 7 set: a Mosquitto bridge (try_private) at 3.1 or 3.1.1.
BRIDGE_PROTOCOLS = {("MQIsdp", 0x83): 3, ("MQTT", 0x84): 4}
#: The largest packet the protocol can express: fixed header and remaining length.
MAX_PACKET_SIZE = 1 + 4 + MAX_REMAINING_LENGTH

_MALFORMED = ReasonCode.MALFORMED_PACKET
_PROTOCOL = ReasonCode.PROTOCOL_ERROR
# A wildcard or too many levels in a topic name: a protocol error, as Mosquitto reads
# it (MQTT 5 DISCONNECT 0x82).
_TOPIC_INVALID = ReasonCode.PROTOCOL_ERROR
_TOPIC_ALIAS = PropertyId.TOPIC_ALIAS
_SUB_ID = PropertyId.SUBSCRIPTION_IDENTIFIER


# --- fixed header ----------------------------------------------------------------


def _first_byte_error(b0: int, level: int) -> tuple[str, ReasonCode] | None:
    ptype, flags = b0 >> 4, b0 & 0x0F
    if ptype == 0 or (ptype == PacketType.AUTH and level < 5):
        return f"reserved packet type {ptype}", _PROTOCOL
    if ptype == PacketType.PUBLISH:
        qos = flags >> 1 & 3
        if qos == 3:
            return "PUBLISH with QoS 3", _MALFORMED
        if qos == 0 and flags & 8:
            return "PUBLISH with QoS 0 and DUP set", _MALFORMED
        return None
    want = 2 if ptype in (PacketType.PUBREL, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE) else 0
    if level == 3 and want and flags == 0x0A:
        return None  # MQTT 3.1 lets a client set DUP on these QoS 1 packets when resending
    if flags != want:
        return f"{PacketType(ptype).name} with reserved flags {flags:#06b}", _MALFORMED
    return None


# One lookup per packet instead of a chain of tests: None means the byte is fine.
_FIRST_V3 = tuple(_first_byte_error(b, 3) for b in range(256))
_FIRST_V4 = tuple(_first_byte_error(b, 4) for b in range(256))
_FIRST_V5 = tuple(_first_byte_error(b, 5) for b in range(256))
_FIRST_BY_LEVEL = {3: _FIRST_V3, 4: _FIRST_V4, 5: _FIRST_V5}
# Awaiting CONNECT, any other type ends the connection at its first byte (as Mosquitto's
# packet__read), before a remaining length is read or a body buffered.
_FIRST_CONNECT = tuple(
    _FIRST_V4[b] if b >> 4 == PacketType.CONNECT else ("first packet is not CONNECT", _PROTOCOL)
    for b in range(256)
)


def _fixed_body(ptype: int, level: int) -> int | None:
    """The body size the protocol fixes for this packet type, if any."""
    if ptype in (PacketType.PINGREQ, PacketType.PINGRESP):
        return 0
    if level < 5 and ptype == PacketType.DISCONNECT:
        return 0
    if level < 5 and ptype in (
        PacketType.CONNACK, PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL,
        PacketType.PUBCOMP, PacketType.UNSUBACK,
    ):
        return 2
    return None


# Checked when a packet is incomplete, so an announced length is refused before buffering.
_FIXED_V4 = tuple(_fixed_body(t, 4) for t in range(16))
_FIXED_V5 = tuple(_fixed_body(t, 5) for t in range(16))


def packet_size(remaining_length: int) -> int:
    """Bytes of a whole packet with this remaining length (fixed header included)."""
    n = remaining_length
    return 1 + n + (1 if n < 1 << 7 else 2 if n < 1 << 14 else 3 if n < 1 << 21 else 4)


def _check_topic_name(topic: str) -> None:
    if "+" in topic or "#" in topic:
        raise MQTTError("wildcard in a topic name", _TOPIC_INVALID)
    if topic.count("/") > MAX_TOPIC_SEPARATORS:
        raise MQTTError("topic name with too many levels", _TOPIC_INVALID)


def _trailing(i: int, end: int, what: str) -> None:
    if i != end:
        raise MQTTError(f"{what} with {end - i:+d} bytes after its last field")


# --- packet parsers: (data, start, end, first byte, level) -> Packet ---------------


def _parse_connect(b: bytes, i: int, end: int, b0: int, level: int) -> Connect:
    name, i = read_str(b, i, end)
    if i >= end:
        raise MQTTError("CONNECT without protocol level")
    plevel = PROTOCOLS.get((name, b[i]))
    bridge = plevel is None and (name, b[i]) in BRIDGE_PROTOCOLS
    if bridge:
        plevel = BRIDGE_PROTOCOLS[(name, b[i])]
    if plevel is None:
        raise MQTTError(
            f"unsupported protocol {name!r} level {b[i]}", ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
        )
    if i + 4 > end:
        raise MQTTError("CONNECT variable header truncated")
    flags = b[i + 1]
    keepalive = b[i + 2] << 8 | b[i + 3]
    i += 4
    if flags & 0x01:
        raise MQTTError("CONNECT reserved flag set")
    will_qos = flags >> 3 & 3
    if flags & 0x04:
        if will_qos == 3:
            raise MQTTError("will QoS 3")
    elif will_qos or flags & 0x20:
        raise MQTTError("will QoS or retain without will flag")
    if flags & 0xC0 == 0x40 and plevel == 4:
        raise MQTTError("password flag without user name flag", _PROTOCOL)
    props: dict = {}
    if plevel == 5:
        props, i = read_props(b, i, end, PacketType.CONNECT)
    client_id, i = read_str(b, i, end)
    will = None
    if flags & 0x04:
        will_props: dict = {}
        if plevel == 5:
            will_props, i = read_props(b, i, end, WILL)
        topic, i = read_str(b, i, end)
        if not topic:
            raise MQTTError("empty will topic", _TOPIC_INVALID)
        _check_topic_name(topic)
        payload, i = read_bin(b, i, end)
        will = Will(topic, payload, will_qos, bool(flags & 0x20), will_props)
    username = password = None
    if flags & 0x80:
        username, i = read_str(b, i, end)
    if flags & 0x40:
        password, i = read_bin(b, i, end)
    _trailing(i, end, "CONNECT")
    clean = bool(flags & 0x02)
    return Connect(client_id, plevel, clean, keepalive, username, password, will, name, props, bridge)


def _parse_connack(b: bytes, i: int, end: int, b0: int, level: int) -> ConnAck:
    if i + 2 > end:
        raise MQTTError("CONNACK truncated")
    flags, code = b[i], b[i + 1]
    i += 2
    if flags & 0xFE:
        raise MQTTError("CONNACK reserved flags set")
    props: dict = {}
    if level == 5 and i < end:
        props, i = read_props(b, i, end, PacketType.CONNACK)
    _trailing(i, end, "CONNACK")
    return ConnAck(code, bool(flags), props)


def _read_pid_malformed(b: bytes, i: int, end: int) -> tuple[int, int]:
    """A SUBSCRIBE's or UNSUBSCRIBE's packet id: 0 is malformed there, as Mosquitto
    reads it (in PUBLISH and the acks it is a protocol error)."""
    pid, i = read_u16(b, i, end)
    if not pid:
        raise MQTTError("packet identifier 0")
    return pid, i


def _parse_subscribe(b: bytes, i: int, end: int, b0: int, level: int) -> Subscribe:
    pid, i = _read_pid_malformed(b, i, end)
    props: dict = {}
    if level == 5:
        props, i = read_props(b, i, end, PacketType.SUBSCRIBE)
        if len(props.get(_SUB_ID, ())) > 1:
            raise MQTTError("several subscription identifiers", _PROTOCOL)
    topics = []
    while i < end:
        topic_filter, i = read_str(b, i, end)
        if i >= end:
            raise MQTTError("SUBSCRIBE filter without options")
        opts = b[i]
        i += 1
        if level < 5:
            if opts > 2:
                raise MQTTError(f"SUBSCRIBE requested QoS byte {opts:#04x}")
        elif opts & 0xC0:
            raise MQTTError("SUBSCRIBE options reserved bits set")
        elif opts & 0x03 == 3 or opts & 0x30 == 0x30:
            raise MQTTError("SUBSCRIBE QoS 3 or retain handling 3")  # malformed, as Mosquitto
        elif opts & 0x04 and topic_filter.startswith("$share/"):
            raise MQTTError("no local on a shared subscription", _PROTOCOL)
        topics.append((topic_filter, opts))
    if not topics:
        raise MQTTError("SUBSCRIBE without topic filters")  # malformed, as Mosquitto
    return Subscribe(pid, topics, props)


_SUBACK_V4 = frozenset({0, 1, 2, 0x80})


def _parse_suback(b: bytes, i: int, end: int, b0: int, level: int) -> SubAck:
    pid, i = read_pid(b, i, end)
    props: dict = {}
    if level == 5:
        props, i = read_props(b, i, end, PacketType.SUBACK)
    codes = list(b[i:end])
    if not codes:
        raise MQTTError("SUBACK without return codes", _PROTOCOL)
    if level < 5 and not _SUBACK_V4.issuperset(codes):
        raise MQTTError("SUBACK return code not 0, 1, 2 or 0x80")
    return SubAck(pid, codes, props)


def _parse_unsubscribe(b: bytes, i: int, end: int, b0: int, level: int) -> Unsubscribe:
    pid, i = _read_pid_malformed(b, i, end)
    props: dict = {}
    if level == 5:
        props, i = read_props(b, i, end, PacketType.UNSUBSCRIBE)
    topics = []
    while i < end:
        topic_filter, i = read_str(b, i, end)
        topics.append(topic_filter)
    if not topics:
        raise MQTTError("UNSUBSCRIBE without topic filters")  # malformed, as Mosquitto
    return Unsubscribe(pid, topics, props)


def _parse_unsuback(b: bytes, i: int, end: int, b0: int, level: int) -> UnsubAck:
    pid, i = read_pid(b, i, end)
    props: dict = {}
    codes: list[int] = []
    if level == 5:
        props, i = read_props(b, i, end, PacketType.UNSUBACK)
        codes = list(b[i:end])
        i = end
    _trailing(i, end, "UNSUBACK")
    return UnsubAck(pid, codes, props)


def _empty_parser(cls: type, name: str) -> Callable[..., Packet]:
    def parse(b: bytes, i: int, end: int, b0: int, level: int) -> Packet:
        _trailing(i, end, name)
        return cls()

    return parse


def _reason_tail(b: bytes, i: int, end: int, level: int, ptype: PacketType) -> tuple[int, dict]:
    """Level 5 acks, DISCONNECT and AUTH may stop before the reason code or properties."""
    code = 0
    props: dict = {}
    if level == 5 and i < end:
        code = b[i]
        i += 1
        if i < end:
            props, i = read_props(b, i, end, ptype)
    _trailing(i, end, ptype.name)
    return code, props


def _ack_parser(cls: type, ptype: PacketType) -> Callable[..., Packet]:
    def parse(b: bytes, i: int, end: int, b0: int, level: int) -> Packet:
        pid, i = read_pid(b, i, end)
        return cls(pid, *_reason_tail(b, i, end, level, ptype))

    return parse


def _reason_parser(cls: type, ptype: PacketType) -> Callable[..., Packet]:
    def parse(b: bytes, i: int, end: int, b0: int, level: int) -> Packet:
        return cls(*_reason_tail(b, i, end, level, ptype))

    return parse


_PARSERS: dict[int, Callable[..., Packet]] = {
    PacketType.CONNECT: _parse_connect,
    PacketType.CONNACK: _parse_connack,
    PacketType.PUBACK: _ack_parser(PubAck, PacketType.PUBACK),
    PacketType.PUBREC: _ack_parser(PubRec, PacketType.PUBREC),
    PacketType.PUBREL: _ack_parser(PubRel, PacketType.PUBREL),
    PacketType.PUBCOMP: _ack_parser(PubComp, PacketType.PUBCOMP),
    PacketType.SUBSCRIBE: _parse_subscribe,
    PacketType.SUBACK: _parse_suback,
    PacketType.UNSUBSCRIBE: _parse_unsubscribe,
    PacketType.UNSUBACK: _parse_unsuback,
    PacketType.PINGREQ: _empty_parser(PingReq, "PINGREQ"),
    PacketType.PINGRESP: _empty_parser(PingResp, "PINGRESP"),
    PacketType.DISCONNECT: _reason_parser(Disconnect, PacketType.DISCONNECT),
    PacketType.AUTH: _reason_parser(Auth, PacketType.AUTH),
}
_PARSER_LIST = [_PARSERS.get(t) for t in range(16)]
_ACK_CLASSES: list = [None] * 4 + [PubAck, PubRec, PubRel, PubComp]


# --- decoder ----------------------------------------------------------------------


class Decoder:
    """Incremental decoder: bytes in, whole packets out, partial packets buffered.

    ``protocol_level`` is None until a CONNECT is decoded, which sets it; a
    client-side caller sets it itself. While it is None the decoder awaits a
    CONNECT: any other first byte is an error at once. ``feed()`` returns right
    after a CONNECT, keeping what follows it buffered (``feed(b"")`` goes on),
    so a server can raise ``max_packet_size`` once the client is authenticated
    before the packets it pipelined are sized against it. After an
    ``MQTTError`` the stream cannot be resynchronised, so every later
    ``feed()`` raises it again.
    """

    __slots__ = ("protocol_level", "max_packet_size", "_buf", "_need", "_error", "_pos", "_last")

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.protocol_level: int | None = None
        #: Largest whole packet accepted now (fixed header included, as MQTT 5's
        #: Maximum Packet Size); checked as soon as the fixed header is in, so a
        #: longer announced packet is refused without buffering its body.
        self.max_packet_size = max_packet_size
        self._buf: bytearray | None = None  # a partial packet (none: idle clients pay nothing)
        self._need = 0  # bytes the buffered partial packet needs in all
        self._error: MQTTError | None = None
        self._pos = 0  # start of the packet being decoded, for errors
        # The last PUBLISH property block and its properties: publishers mostly repeat
        # theirs, and the same bytes are not read twice (made at the first one).
        self._last: list | None = None

    def feed(self, data: bytes) -> list[Packet]:
        """Add received bytes; return every packet they complete, in order."""
        if self._error is not None:
            raise MQTTError(str(self._error), self._error.reason)
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []  # a large packet trickling in: no rescan per chunk
            data = bytes(buf)
            self._buf = None
        elif type(data) is not bytes:
            data = bytes(data)
        out: list[Packet] = []
        try:
            pos = self._decode(data, out)
        except MQTTError as e:
            e.packets = out
            if e.packet_type is None and self._pos < len(data):
                e.packet_type = data[self._pos] >> 4
            self._error = e
            raise
        if pos < len(data):
            self._buf = bytearray(memoryview(data)[pos:])
        return out

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as packets."""
        buf = self._buf
        return len(buf) if buf else 0

    def _decode(self, data: bytes, out: list[Packet]) -> int:
        """Append the complete packets in ``data`` to ``out``; return bytes used."""
        n = len(data)
        pos = 0
        self._need = 0
        level = self.protocol_level or 4
        if self.protocol_level is None:
            first = _FIRST_CONNECT
        else:
            first = _FIRST_BY_LEVEL[level]
        fixed = _FIXED_V5 if level == 5 else _FIXED_V4
        max_size = self.max_packet_size
        append = out.append
        while pos < n:
            self._pos = pos
            b0 = data[pos]
            bad = first[b0]
            if bad is not None:
                raise MQTTError(*bad)
            if pos + 1 == n:
                break
            rl = data[pos + 1]
            if rl < 0x80:
                start = pos + 2
            else:
                rl, start = remaining_length(data, pos + 1, n)
                if rl < 0:
                    break
            end = start + rl
            if end - pos > max_size:
                raise MQTTError(f"packet of {end - pos} bytes", ReasonCode.PACKET_TOO_LARGE)
            ptype = b0 >> 4
            if end > n:
                size = fixed[ptype]
                if size is not None and rl != size:
                    raise MQTTError(f"{PacketType(ptype).name} with a {rl}-byte body")
                self._need = end - pos
                break
            if ptype == 3:
                # PUBLISH, inline at every level: most of the traffic.
                i = start + 2
                if i > end:
                    raise MQTTError("PUBLISH without topic")
                te = i + (data[start] << 8 | data[start + 1])
                qos = b0 >> 1 & 3
                if (te + 2 if qos else te) > end:
                    raise MQTTError("PUBLISH topic overruns the packet")
                try:
                    topic = data[i:te].decode()
                except UnicodeDecodeError:
                    raise MQTTError("topic is not valid UTF-8") from None
                if "\x00" in topic:
                    raise MQTTError("topic contains U+0000")
                if "+" in topic or "#" in topic:
                    raise MQTTError("wildcard in a topic name", _TOPIC_INVALID)
                if topic.count("/") > MAX_TOPIC_SEPARATORS:
                    raise MQTTError("topic name with too many levels", _TOPIC_INVALID)
                if qos:
                    pid = data[te] << 8 | data[te + 1]
                    if not pid:
                        raise MQTTError("packet identifier 0", _PROTOCOL)
                    te += 2
                else:
                    pid = None
                if level != 5:
                    if not topic:
                        raise MQTTError("empty topic name", _TOPIC_INVALID)
                    props: dict = {}
                elif te < end and not data[te]:
                    if not topic:
                        raise MQTTError("empty topic without a topic alias", _PROTOCOL)
                    props = {}
                    te += 1
                else:
                    last = self._last
                    if last is None:
                        last = self._last = [None, None]
                    stop = te + 1 + data[te] if te < end else end + 1
                    if stop <= end and data[te] < 0x80 and data[te + 1 : stop] == last[0]:
                        props, te = last[1], stop  # the block read last time (read_props)
                    else:
                        props, te = read_props(data, te, end, PacketType.PUBLISH, last)
                    if not topic and _TOPIC_ALIAS not in props:
                        raise MQTTError("empty topic without a topic alias", _PROTOCOL)
                append(Publish(topic, data[te:end], qos, b0 & 1 == 1, b0 & 8 == 8 if qos else False,
                               pid, props))
            elif rl == 2 and 4 <= ptype <= 7:
                # PUBACK..PUBCOMP, the other per-message packets (at level 5 too:
                # without a reason code they mean success, with no properties).
                pid = data[start] << 8 | data[start + 1]
                if not pid:
                    raise MQTTError("packet identifier 0", _PROTOCOL)
                append(_ACK_CLASSES[ptype](pid, 0, {}))
            else:
                packet = _PARSER_LIST[ptype](data, start, end, b0, level)  # type: ignore[misc]
                append(packet)
                if ptype == 1:
                    self.protocol_level = packet.protocol_level
                    return end  # the caller acts on the CONNECT before what follows
            pos = end
        return pos
