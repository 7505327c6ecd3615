"""Tables between the hub's neutral values and MQTT's codes and properties.

The hub answers with ``Reason`` values and carries ``Properties``; this module is the
one place that says what they are on MQTT's wire, per protocol level.
"""

from __future__ import annotations

from typing import Any, Callable

from gateway.hub.api import Message, Properties, Reason, RetainHandling, Subscription
from gateway.mqtt.packets import Publish
from gateway.mqtt.reasons import ConnAckCode, PropertyId, ReasonCode

P = PropertyId
_EXPIRY, _ALIAS, _SUB_ID = P.MESSAGE_EXPIRY_INTERVAL, P.TOPIC_ALIAS, P.SUBSCRIPTION_IDENTIFIER
#: ``Message.cache`` key of a message's level 5 property block (without its length).
RAW_PROPS = "props"

#: CONNACK return codes of MQTT 3.1 and 3.1.1 for a refused CONNECT.
CONNACK_V3 = {
    Reason.BAD_CREDENTIALS: ConnAckCode.BAD_USERNAME_OR_PASSWORD,
    Reason.NOT_AUTHORIZED: ConnAckCode.NOT_AUTHORIZED,
    Reason.BANNED: ConnAckCode.NOT_AUTHORIZED,
    Reason.BAD_AUTHENTICATION_METHOD: ConnAckCode.NOT_AUTHORIZED,
    Reason.SERVER_UNAVAILABLE: ConnAckCode.SERVER_UNAVAILABLE,
    Reason.SERVER_BUSY: ConnAckCode.SERVER_UNAVAILABLE,
    Reason.QUOTA_EXCEEDED: ConnAckCode.SERVER_UNAVAILABLE,
}

#: MQTT 5 reason codes (CONNACK, PUBACK, PUBREC, SUBACK, UNSUBACK, DISCONNECT).
V5 = {
    Reason.BAD_CREDENTIALS: ReasonCode.BAD_USER_NAME_OR_PASSWORD,
    Reason.NOT_AUTHORIZED: ReasonCode.NOT_AUTHORIZED,
    Reason.SERVER_UNAVAILABLE: ReasonCode.SERVER_UNAVAILABLE,
    Reason.SERVER_BUSY: ReasonCode.SERVER_BUSY,
    Reason.BANNED: ReasonCode.BANNED,
    Reason.BAD_AUTHENTICATION_METHOD: ReasonCode.BAD_AUTHENTICATION_METHOD,
    Reason.QUOTA_EXCEEDED: ReasonCode.QUOTA_EXCEEDED,
    Reason.RETAIN_NOT_SUPPORTED: ReasonCode.RETAIN_NOT_SUPPORTED,
    Reason.TOPIC_INVALID: ReasonCode.TOPIC_FILTER_INVALID,
    Reason.SESSION_TAKEN_OVER: ReasonCode.SESSION_TAKEN_OVER,
    Reason.SERVER_SHUTTING_DOWN: ReasonCode.SERVER_SHUTTING_DOWN,
    Reason.ADMINISTRATIVE_ACTION: ReasonCode.ADMINISTRATIVE_ACTION,
    Reason.UNSPECIFIED: ReasonCode.UNSPECIFIED_ERROR,
}


def suback_v5(reason: Reason) -> int:
    """A refused subscription at level 5. An ACL refusal is 0x80, as the Eclipse Paho
    interoperability suite requires (its client accepts no other failure code);
    other reasons keep their own code."""
    return ReasonCode.UNSPECIFIED_ERROR if reason is Reason.NOT_AUTHORIZED else v5_code(reason)


def connack_v3(reason: Reason) -> int:
    return CONNACK_V3.get(reason, ConnAckCode.NOT_AUTHORIZED)


def v5_code(reason: Reason) -> int:
    return V5.get(reason, ReasonCode.UNSPECIFIED_ERROR)


RETAIN_HANDLING = {0: RetainHandling.SEND, 1: RetainHandling.SEND_IF_NEW, 2: RetainHandling.NEVER}


def subscription(options: int, level: int, sub_id: int | None, max_qos: int,
                 bridge: bool = False) -> Subscription:
    """A SUBSCRIBE's options byte (the QoS alone below level 5) as a hub Subscription.
    A bridge's subscriptions below level 5 have No Local and Retain As Published, as
    Mosquitto gives them, so what it published does not come back to it."""
    qos = min(options & 3, max_qos)
    if level < 5:
        return Subscription(qos, bridge, bridge) if bridge else Subscription(qos)
    return Subscription(qos, bool(options & 0x04), bool(options & 0x08),
                        RETAIN_HANDLING[options >> 4 & 3], sub_id)


# --- properties --------------------------------------------------------------------


#: MQTT 5 property id -> name in ``Properties.items``, for the end-to-end ones.
_HUB_NAMES = {
    P.PAYLOAD_FORMAT_INDICATOR: "payload_format",
    P.CONTENT_TYPE: "content_type",
    P.RESPONSE_TOPIC: "response_topic",
    P.CORRELATION_DATA: "correlation_data",
    P.USER_PROPERTY: "user",
}
_MQTT_IDS = {name: ident for ident, name in _HUB_NAMES.items()}


def hub_properties(props: dict) -> Properties | None:
    """The end-to-end properties of a PUBLISH or will (None when it has none), in the
    order they came (the codec's ``OrderedProperties.order``)."""
    if not props:
        return None
    return _hub_form(props)[0]


def _hub_form(props: dict) -> tuple[Properties | None, bytes | None]:
    """(the hub's properties, the block's bytes when they can be forwarded as they
    came): made once per properties object, since the codec hands the same one for a
    repeated block."""
    form = getattr(props, "derived", None)
    if form is not None:
        return form  # type: ignore[no-any-return]
    order = getattr(props, "order", None)
    if order is None:  # built by hand: the dict's order, each user property in turn
        order = [(ident, v) for ident, value in props.items()
                 for v in (value if ident == P.USER_PROPERTY else (value,))]
    names = _HUB_NAMES
    items = [(names[ident], value) for ident, value in order if ident in names]
    typed = Properties.from_items(items) if items else None
    raw = getattr(props, "raw", None)
    if not raw or typed is None or _EXPIRY in props or _ALIAS in props or _SUB_ID in props:
        raw = None
    form = (typed, raw)
    if hasattr(props, "derived"):
        props.derived = form  # type: ignore[attr-defined]
    return form


def hub_message(topic: str, p: Publish, now: Callable[[], float]) -> Message:
    """The hub's message for a received PUBLISH. At level 5 its property block is
    kept as it came for the deliveries when nothing in it changes on the way: no
    topic alias (never forwarded), no expiry (counted down per delivery) and no
    subscription identifier (a client may not send one; like Mosquitto, it is
    dropped, not forwarded). ``gateway.mqtt.outbound`` finds it in the message's
    cache under ``RAW_PROPS``."""
    props = p.properties
    if not props:
        return Message(topic, p.payload, p.qos, p.retain)
    typed, raw = getattr(props, "derived", None) or _hub_form(props)
    if raw is not None:
        message = Message(topic, p.payload, p.qos, p.retain, typed)
        message.cache[RAW_PROPS] = raw
        return message
    interval = props.get(_EXPIRY)
    return Message(topic, p.payload, p.qos, p.retain, typed,
                   None if interval is None else now() + interval)


def static_properties(props: Properties | None) -> list[tuple[int, Any]]:
    """MQTT 5 properties for a message's end-to-end properties, in their order."""
    if props is None:
        return []
    ids = _MQTT_IDS
    return [(ids[name], value) for name, value in props.items]


def remaining_expiry(message: Message, now: float) -> int | None:
    """The Message Expiry Interval to forward: what is left of it, at least 1 s."""
    expires = message.expires_at
    if expires is None:
        return None
    return max(1, int(expires - now + 0.999))


def valid_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
