"""Raw MQTT-SN v1.2 messages built by hand, independent of ``gateway.mqttsn``.

As ``tests/wire.py`` is for MQTT: tests get their bytes from here, so a bug shared by
the gateway's encoder and decoder cannot hide. Field layouts follow the v1.2
specification, section 5.4; names are the message names in lower case.
"""

from __future__ import annotations

import struct

# flags
DUP = 0x80
QOS0, QOS1, QOS2, QOS_M1 = 0x00, 0x20, 0x40, 0x60
RETAIN = 0x10
WILL = 0x08
CLEAN = 0x04
NORMAL, PREDEFINED, SHORT, RESERVED = 0, 1, 2, 3

ACCEPTED, CONGESTION, INVALID_TOPIC_ID, NOT_SUPPORTED = 0, 1, 2, 3

QOS_FLAGS = {-1: QOS_M1, 0: QOS0, 1: QOS1, 2: QOS2}


def msg(msg_type: int, body: bytes = b"", long_form: bool = False) -> bytes:
    """Length + type + body; the three-byte length form when it is needed or asked for."""
    n = len(body) + 2
    if n <= 255 and not long_form:
        return struct.pack("!BB", n, msg_type) + body
    return struct.pack("!BHB", 1, n + 2, msg_type) + body


def advertise(gw_id: int, duration: int) -> bytes:
    return msg(0x00, struct.pack("!BH", gw_id, duration))


def searchgw(radius: int = 0) -> bytes:
    return msg(0x01, bytes([radius]))


def gwinfo(gw_id: int, address: bytes = b"") -> bytes:
    return msg(0x02, bytes([gw_id]) + address)


def connect(client_id: str | bytes, duration: int = 60, flags: int = CLEAN, protocol_id: int = 1) -> bytes:
    cid = client_id.encode() if isinstance(client_id, str) else client_id
    return msg(0x04, struct.pack("!BBH", flags, protocol_id, duration) + cid)


def connack(rc: int = ACCEPTED) -> bytes:
    return msg(0x05, bytes([rc]))


def willtopicreq() -> bytes:
    return msg(0x06)


def willtopic(topic: str | None, qos: int = 0, retain: bool = False) -> bytes:
    if topic is None:
        return msg(0x07)
    return msg(0x07, bytes([QOS_FLAGS[qos] | (RETAIN if retain else 0)]) + topic.encode())


def willmsgreq() -> bytes:
    return msg(0x08)


def willmsg(payload: bytes) -> bytes:
    return msg(0x09, payload)


def register(topic_id: int, msg_id: int, name: str) -> bytes:
    return msg(0x0A, struct.pack("!HH", topic_id, msg_id) + name.encode())


def regack(topic_id: int, msg_id: int, rc: int = ACCEPTED) -> bytes:
    return msg(0x0B, struct.pack("!HHB", topic_id, msg_id, rc))


def publish(topic_id: int | str, payload: bytes, qos: int = 0, msg_id: int = 0, retain: bool = False,
            dup: bool = False, id_type: int = NORMAL, long_form: bool = False) -> bytes:
    flags = QOS_FLAGS[qos] | (RETAIN if retain else 0) | (DUP if dup else 0) | id_type
    tid = topic_id.encode() if isinstance(topic_id, str) else struct.pack("!H", topic_id)
    return msg(0x0C, bytes([flags]) + tid + struct.pack("!H", msg_id) + payload, long_form)


def puback(topic_id: int, msg_id: int, rc: int = ACCEPTED) -> bytes:
    return msg(0x0D, struct.pack("!HHB", topic_id, msg_id, rc))


def pubcomp(msg_id: int) -> bytes:
    return msg(0x0E, struct.pack("!H", msg_id))


def pubrec(msg_id: int) -> bytes:
    return msg(0x0F, struct.pack("!H", msg_id))


def pubrel(msg_id: int) -> bytes:
    return msg(0x10, struct.pack("!H", msg_id))


def _topic(topic: str | int, id_type: int) -> bytes:
    return struct.pack("!H", topic) if isinstance(topic, int) else topic.encode()


def subscribe(msg_id: int, topic: str | int, qos: int = 0, id_type: int = NORMAL, dup: bool = False) -> bytes:
    flags = QOS_FLAGS[qos] | (DUP if dup else 0) | id_type
    return msg(0x12, bytes([flags]) + struct.pack("!H", msg_id) + _topic(topic, id_type))


def suback(topic_id: int, msg_id: int, rc: int = ACCEPTED, qos: int = 0) -> bytes:
    return msg(0x13, bytes([QOS_FLAGS[qos]]) + struct.pack("!HHB", topic_id, msg_id, rc))


def unsubscribe(msg_id: int, topic: str | int, id_type: int = NORMAL) -> bytes:
    return msg(0x14, bytes([id_type]) + struct.pack("!H", msg_id) + _topic(topic, id_type))


def unsuback(msg_id: int) -> bytes:
    return msg(0x15, struct.pack("!H", msg_id))


def pingreq(client_id: str | None = None) -> bytes:
    return msg(0x16, client_id.encode() if client_id else b"")


def pingresp() -> bytes:
    return msg(0x17)


def disconnect(duration: int | None = None) -> bytes:
    return msg(0x18, b"" if duration is None else struct.pack("!H", duration))


def willtopicupd(topic: str | None, qos: int = 0, retain: bool = False) -> bytes:
    if topic is None:
        return msg(0x1A)
    return msg(0x1A, bytes([QOS_FLAGS[qos] | (RETAIN if retain else 0)]) + topic.encode())


def willtopicresp(rc: int = ACCEPTED) -> bytes:
    return msg(0x1B, bytes([rc]))


def willmsgupd(payload: bytes) -> bytes:
    return msg(0x1C, payload)


def willmsgresp(rc: int = ACCEPTED) -> bytes:
    return msg(0x1D, bytes([rc]))


def encapsulated(node_id: bytes, inner: bytes, radius: int = 0) -> bytes:
    """Forwarder encapsulation (v1.2, 5.5): the one-octet length counts the header up
    to the end of the wireless node id; the inner message follows with its own length."""
    return struct.pack("!BBB", 3 + len(node_id), 0xFE, radius) + node_id + inner


def short(name: str) -> int:
    """The topic id field of a two-character short topic name."""
    return struct.unpack("!H", name.encode())[0]
