"""The hub's contract: what every protocol channel (MQTT, MQTT-SN, CoAP) may call.

The hub knows no wire format. A channel turns its protocol's packets into these calls
and turns deliveries back into packets; everything that must hold for every protocol
alike (ACL, retained messages, queued QoS 1/2 messages, wills, $SYS counters) lives
behind this API, so a rule written once applies to all transports.

Objects
-------
``Message(topic, payload, qos, retain, properties)``
    One application message. Topic names reaching the hub are already validated by the
    channel (``gateway.hub.topics.validate_topic_name``). ``cache`` is a per-message
    dict where a channel memoises its encoding (for example the MQTT PUBLISH bytes for
    a given protocol level and QoS), so a message fanned out to N subscribers is encoded
    once per encoding, not N times.

``ClientInfo(client_id, protocol, peer, username, listener)``
    Who is connecting, as authentication and ACL see it.

``Endpoint`` (implemented by each channel)
    ``send_publish(message, qos, packet_id, dup, retain)``: write one PUBLISH; for QoS 0
    ``packet_id`` is ``None``. ``send_pubrel(packet_id)``: resend a PUBREL after a
    reconnect. ``takeover()``: another connection claimed this client id; close without
    a clean DISCONNECT (the hub publishes the will).

Calls (``gateway.hub.hub.Hub``)
-------------------------------
``authenticate(client, password) -> bool | Deferred[bool]``
    The service installs ``gateway.hub.auth.Security`` (password file, plugins,
    ``allow_anonymous``); channels wrap it in ``maybeDeferred``.
``authorize(client, access, topic) -> bool``
    ``access`` is ``READ``, ``WRITE`` or ``SUBSCRIBE``; checked at publish, at
    subscribe, and per delivered message. Synchronous: plugin answers come from a
    cache; a channel that can wait calls ``gateway.hub.auth.authorize_later(hub,
    client, access, topic)`` first (see ``gateway.hub.plugins``).
``connect(client, endpoint, clean, will, ...) -> (Session, session_present)``
    Attach an endpoint to the client id's session, creating or resuming it and taking
    over a live one. ``disconnect(session, graceful)`` detaches it: a non-graceful
    disconnect publishes the will; a clean session is discarded.
``publish(message, sender=None) -> int``
    Route to every matching session (one delivery per session, at the highest granted
    QoS, downgraded to the message's QoS), store/clear the retained copy. Returns the
    number of sessions it reached.
``subscribe(session, topic_filter, qos) -> int`` / ``unsubscribe(session, topic_filter) -> bool``
    Returns the granted QoS, or ``SUBSCRIBE_FAILED`` (0x80).
``retained(topic_filter) -> list[Message]`` and ``retained_message(topic)``
    Retained lookup, used after a SUBACK and by CoAP GET.
``session(client_id) -> Session | None``
    Session lookup.

The ``Session`` (``gateway.hub.sessions``) does the protocol-neutral QoS bookkeeping:
packet ids, the inflight window, the offline queue and inbound QoS 2 de-duplication.
Channels call ``session.acknowledge(pid)``, ``session.received_pubrec(pid)``,
``session.complete(pid)`` and ``session.inbound_qos2_*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

READ = "read"
WRITE = "write"
SUBSCRIBE = "subscribe"

SUBSCRIBE_FAILED = 0x80


class Message:
    """An application message; slotted because millions pass through the hub."""

    __slots__ = ("topic", "payload", "qos", "retain", "properties", "cache")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.cache: dict[Any, bytes] = {}

    def __repr__(self) -> str:
        return (
            f"Message({self.topic!r}, {self.payload[:32]!r}, qos={self.qos}, "
            f"retain={self.retain})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.topic, self.payload, self.qos, self.retain) == (
            other.topic,
            other.payload,
            other.qos,
            other.retain,
        )

    __hash__ = object.__hash__


@dataclass(slots=True)
class ClientInfo:
    """The identity authentication and ACL decisions are made on."""

    client_id: str
    protocol: str = "mqtt"
    peer: str = ""
    username: str | None = None
    listener: Any = None


class Endpoint(Protocol):
    """What a channel offers the hub for deliveries."""

    def send_publish(
        self, message: Message, qos: int, packet_id: int | None, dup: bool, retain: bool
    ) -> None: ...

    def send_pubrel(self, packet_id: int) -> None: ...

    def takeover(self) -> None: ...
