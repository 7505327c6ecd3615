"""MQTT packet types, reason codes and property ids, as data.

The codec and the channel share these tables: an error carries a ``ReasonCode``
(as wsproto's ``ParseFailed`` carries a ``CloseReason``), and the property table
says, per property, its wire type and the packets it may appear in, so a new
property is one line here rather than a branch in the codec.
"""

from __future__ import annotations

from enum import IntEnum


class PacketType(IntEnum):
    """The four high bits of the first byte of every packet."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ReasonCode(IntEnum):
    """MQTT 5 reason codes (§2.4); some values have several names."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnAckCode(IntEnum):
    """CONNACK return codes of MQTT 3.1 and 3.1.1 (§3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


class PropertyId(IntEnum):
    """MQTT 5 property identifiers (§2.2.2.2)."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


class PropType(IntEnum):
    """How a property value is laid out on the wire."""

    BYTE = 1  # 0 or 1 for every byte-valued property
    U16 = 2
    U32 = 3
    VARINT = 4
    STR = 5
    BIN = 6
    PAIR = 7  # a UTF-8 string pair


#: Where will properties live, in the "allowed in" sets below (not a packet type).
WILL = 0

_P = PacketType
_ACKS = {_P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP}
_MESSAGE = {_P.PUBLISH, WILL}

#: property -> (wire type, packets it is allowed in), from the table in §2.2.2.2.
PROPERTIES: dict[PropertyId, tuple[PropType, frozenset[int]]] = {
    p: (t, frozenset(allowed))
    for p, t, allowed in [
        (PropertyId.PAYLOAD_FORMAT_INDICATOR, PropType.BYTE, _MESSAGE),
        (PropertyId.MESSAGE_EXPIRY_INTERVAL, PropType.U32, _MESSAGE),
        (PropertyId.CONTENT_TYPE, PropType.STR, _MESSAGE),
        (PropertyId.RESPONSE_TOPIC, PropType.STR, _MESSAGE),
        (PropertyId.CORRELATION_DATA, PropType.BIN, _MESSAGE),
        (PropertyId.SUBSCRIPTION_IDENTIFIER, PropType.VARINT, {_P.PUBLISH, _P.SUBSCRIBE}),
        (PropertyId.SESSION_EXPIRY_INTERVAL, PropType.U32, {_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
        (PropertyId.ASSIGNED_CLIENT_IDENTIFIER, PropType.STR, {_P.CONNACK}),
        (PropertyId.SERVER_KEEP_ALIVE, PropType.U16, {_P.CONNACK}),
        (PropertyId.AUTHENTICATION_METHOD, PropType.STR, {_P.CONNECT, _P.CONNACK, _P.AUTH}),
        (PropertyId.AUTHENTICATION_DATA, PropType.BIN, {_P.CONNECT, _P.CONNACK, _P.AUTH}),
        (PropertyId.REQUEST_PROBLEM_INFORMATION, PropType.BYTE, {_P.CONNECT}),
        (PropertyId.WILL_DELAY_INTERVAL, PropType.U32, {WILL}),
        (PropertyId.REQUEST_RESPONSE_INFORMATION, PropType.BYTE, {_P.CONNECT}),
        (PropertyId.RESPONSE_INFORMATION, PropType.STR, {_P.CONNACK}),
        (PropertyId.SERVER_REFERENCE, PropType.STR, {_P.CONNACK, _P.DISCONNECT}),
        (
            PropertyId.REASON_STRING,
            PropType.STR,
            {_P.CONNACK, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH} | _ACKS,
        ),
        (PropertyId.RECEIVE_MAXIMUM, PropType.U16, {_P.CONNECT, _P.CONNACK}),
        (PropertyId.TOPIC_ALIAS_MAXIMUM, PropType.U16, {_P.CONNECT, _P.CONNACK}),
        (PropertyId.TOPIC_ALIAS, PropType.U16, {_P.PUBLISH}),
        (PropertyId.MAXIMUM_QOS, PropType.BYTE, {_P.CONNACK}),
        (PropertyId.RETAIN_AVAILABLE, PropType.BYTE, {_P.CONNACK}),
        (PropertyId.USER_PROPERTY, PropType.PAIR, set(_P) - {_P.PINGREQ, _P.PINGRESP} | {WILL}),
        (PropertyId.MAXIMUM_PACKET_SIZE, PropType.U32, {_P.CONNECT, _P.CONNACK}),
        (PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE, PropType.BYTE, {_P.CONNACK}),
        (PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE, PropType.BYTE, {_P.CONNACK}),
        (PropertyId.SHARED_SUBSCRIPTION_AVAILABLE, PropType.BYTE, {_P.CONNACK}),
    ]
}

#: Properties that may appear more than once; their value is always a list.
REPEATABLE = frozenset({PropertyId.USER_PROPERTY, PropertyId.SUBSCRIPTION_IDENTIFIER})

#: Properties for which the value 0 is a protocol error.
NONZERO = frozenset(
    {
        PropertyId.SUBSCRIPTION_IDENTIFIER,
        PropertyId.RECEIVE_MAXIMUM,
        PropertyId.TOPIC_ALIAS,
        PropertyId.MAXIMUM_PACKET_SIZE,
    }
)
