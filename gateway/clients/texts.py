"""libmosquitto's error numbers and texts, which the clients print and exit with.

The numbers are ``enum mosq_err_t`` (a program's exit status is often one of them);
the texts are ``mosquitto_strerror``, ``mosquitto_connack_string`` and
``mosquitto_reason_string``, word for word.
"""

from __future__ import annotations

import os

# libmosquitto's error numbers (enum mosq_err_t): the programs exit with them.
ERR_SUCCESS = 0
ERR_PROTOCOL = 2
ERR_INVAL = 3
ERR_NO_CONN = 4
ERR_CONN_REFUSED = 5
ERR_CONN_LOST = 7
ERR_TLS = 8
ERR_ERRNO = 14
ERR_EAI = 15
ERR_KEEPALIVE = 19
ERR_QOS_NOT_SUPPORTED = 24
ERR_TIMEOUT = 27

_STRERROR = {
    0: "No error.", 1: "Out of memory.",
    2: "A network protocol error occurred when communicating with the broker.",
    3: "Invalid function arguments provided.", 4: "The client is not currently connected.",
    5: "The connection was refused.", 7: "The connection was lost.", 8: "A TLS error occurred.",
    9: "Payload too large.", 10: "This feature is not supported.", 15: "Lookup error.",
    18: "Malformed UTF-8", 22: "Duplicate property in property list", 23: "TLS handshake failed.",
    24: "Requested QoS not supported on server.", 25: "Packet larger than supported by the server.",
}

# Fatal for loop_forever: it stops rather than reconnecting.
FATAL = frozenset({1, ERR_PROTOCOL, ERR_INVAL, 6, ERR_TLS, 9, 10, 11, 12, 13, ERR_EAI, 16})


def strerror(rc: int, os_errno: int = 0) -> str:
    """``mosquitto_strerror``."""
    if rc == ERR_ERRNO:
        return os.strerror(os_errno)
    return _STRERROR.get(rc, "Unknown error.")


#: ``mosquitto_connack_string``, for MQTT 3.1 and 3.1.1 refusals.
CONNACK_STRINGS = {
    0: "Connection Accepted.", 1: "Connection Refused: unacceptable protocol version.",
    2: "Connection Refused: identifier rejected.", 3: "Connection Refused: broker unavailable.",
    4: "Connection Refused: bad user name or password.", 5: "Connection Refused: not authorised.",
}
#: ``mosquitto_reason_string``, for MQTT 5 reason codes.
REASON_STRINGS = {
    0x00: "Success", 0x01: "Granted QoS 1", 0x02: "Granted QoS 2",
    0x04: "Disconnect with Will Message", 0x10: "No matching subscribers",
    0x11: "No subscription existed", 0x18: "Continue authentication", 0x19: "Re-authenticate",
    0x80: "Unspecified error", 0x81: "Malformed Packet", 0x82: "Protocol Error",
    0x83: "Implementation specific error", 0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid", 0x86: "Bad User Name or Password", 0x87: "Not authorized",
    0x88: "Server unavailable", 0x89: "Server busy", 0x8A: "Banned", 0x8B: "Server shutting down",
    0x8C: "Bad authentication method", 0x8D: "Keep Alive timeout", 0x8E: "Session taken over",
    0x8F: "Topic Filter invalid", 0x90: "Topic Name invalid", 0x91: "Packet Identifier in use",
    0x92: "Packet Identifier not found", 0x93: "Receive Maximum exceeded",
    0x94: "Topic Alias invalid", 0x95: "Packet too large", 0x96: "Message rate too high",
    0x97: "Quota exceeded", 0x98: "Administrative action", 0x99: "Payload format invalid",
    0x9A: "Retain not supported", 0x9B: "QoS not supported", 0x9C: "Use another server",
    0x9D: "Server moved", 0x9E: "Shared Subscriptions not supported",
    0x9F: "Connection rate exceeded", 0xA0: "Maximum connect time",
    0xA1: "Subscription identifiers not supported", 0xA2: "Wildcard Subscriptions not supported",
}


def connack_string(code: int) -> str:
    return CONNACK_STRINGS.get(code, "Connection Refused: unknown reason.")


def reason_string(code: int) -> str:
    return REASON_STRINGS.get(code, "Unknown reason")


def connection_error(level: int, code: int, v5_hint: str) -> str:
    """The "Connection error: ..." line of a refused CONNACK."""
    if level == 5:
        if code == 0x84:
            return f"Connection error: {reason_string(code)}. {v5_hint}\n"
        return f"Connection error: {reason_string(code)}\n"
    return f"Connection error: {connack_string(code)}\n"
