"""The hub's refusals (``gateway.hub.api.Reason``) as MQTT-SN v1.2 return codes.

MQTT-SN has three ways to say no: congestion (0x01, try again later), invalid topic
id (0x02) and not supported (0x03, everything else, authorization included).
"""

from __future__ import annotations

from gateway.hub.api import Denied, Reason
from gateway.mqttsn.codec import ReturnCode

#: The refusals a channel meets, spelled out; a reason added later reads as "not supported".
RETURN_CODES: dict[Reason, int] = {
    Reason.NOT_AUTHORIZED: ReturnCode.NOT_SUPPORTED,
    Reason.BAD_CREDENTIALS: ReturnCode.NOT_SUPPORTED,
    Reason.BANNED: ReturnCode.NOT_SUPPORTED,
    Reason.BAD_AUTHENTICATION_METHOD: ReturnCode.NOT_SUPPORTED,
    Reason.RETAIN_NOT_SUPPORTED: ReturnCode.NOT_SUPPORTED,
    Reason.TOPIC_INVALID: ReturnCode.INVALID_TOPIC_ID,
    Reason.SERVER_UNAVAILABLE: ReturnCode.CONGESTION,
    Reason.SERVER_BUSY: ReturnCode.CONGESTION,
    Reason.QUOTA_EXCEEDED: ReturnCode.CONGESTION,
}


def return_code(denied: Denied) -> int:
    """The return code for a refusal; anything without its own is "not supported"."""
    return RETURN_CODES.get(denied.reason, ReturnCode.NOT_SUPPORTED)
