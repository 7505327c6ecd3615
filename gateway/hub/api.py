"""The hub's contract: what every protocol channel (MQTT, MQTT-SN, CoAP) may call.

The hub knows no wire format. A channel turns its protocol's packets into these calls
and values, and turns deliveries and results back into packets through a table of its
own (``Reason.NOT_AUTHORIZED`` is MQTT 5's 0x87, MQTT 3.1.1's CONNACK 5, MQTT-SN's
return code 0x03, CoAP's 4.03). Everything that must hold for every protocol alike
(ACL, retained messages, queued QoS 1/2 messages, wills, expiry, shared subscriptions,
``$SYS`` counters) lives behind this API, so a rule written once applies to all
transports.

Values
------
``Message(topic, payload, qos, retain, props, expires_at)``
    One application message. Topic names reaching the hub are already validated by the
    channel (``gateway.hub.topics``). ``props`` holds the end-to-end properties
    (``Properties``: content type, payload format, response topic, correlation data,
    user properties in order) or None; ``expires_at`` is the wall-clock second after
    which it is no longer delivered, or None. ``cache`` is where a channel memoises its
    encoding, so a message fanned out to N subscribers is encoded once per encoding.

``Subscription(qos, no_local, retain_as_published, retain_handling, identifier)``
    What a client asked for with one filter. ``$share/GROUP/FILTER`` filters are
    shared subscriptions for every protocol: one member of the group gets each message.

``ClientInfo(client_id, protocol, peer, username, listener, certificate, auth_method, transport, trusted)``
    Who is connecting, as authentication and ACL see it, and how it came.

``Allowed`` / ``Denied(reason, text)``
    Results of authentication, publish and subscribe checks; ``Reason`` is neutral.

``AuthMethod``, ``AuthContinue``
    An enhanced authentication method (challenge and response over several rounds);
    ``hub.auth_methods`` holds those offered, by name.

``Endpoint`` (implemented by each channel)
    ``send_publish(message, qos, packet_id, dup, retain, sub_ids) -> bool``: write one
    PUBLISH (``packet_id`` None at QoS 0); False when the client cannot take it (too
    large for its limit), which finishes that delivery as if it had been sent.
    ``send_pubrel(packet_id)``: resend a PUBREL after a reconnect. ``close(reason)``:
    the hub ends this connection (session taken over, no longer authorized, server
    shutting down); the hub has already detached it.

Calls (``gateway.hub.hub.Hub``)
-------------------------------
``authenticate(client, password) -> Allowed | Denied | Deferred``;
``authorize(client, access, topic) -> bool`` (``READ``, ``WRITE``, ``SUBSCRIBE``;
per delivered message too, so synchronous).
``connect(client, endpoint, clean_start, expiry, will, ...) -> (Session, present)`` then
``session.resume(endpoint)`` once the channel has acknowledged;
``disconnect(session, graceful, endpoint, expiry)``.
``publish_from(session, message) -> int | Denied`` (checks the ACL, returns the number
of sessions reached); ``publish(message)`` for the gateway's own messages.
``subscribe(session, filter, Subscription) -> Subscribed | Denied`` then, after the
channel acknowledged, ``deliver_retained(session, subscribed)``;
``unsubscribe(session, filter) -> bool``.
``retained(filter)``, ``retained_message(topic)``, ``session(client_id)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

READ = "read"
WRITE = "write"
SUBSCRIBE = "subscribe"

NEVER_EXPIRES = None  # a session or message expiry of None: kept until removed


class Reason(enum.Enum):
    """Why the hub refused or ended something; each channel maps these to its codes."""

    BAD_CREDENTIALS = "bad user name or password"
    NOT_AUTHORIZED = "not authorized"
    SERVER_UNAVAILABLE = "server unavailable"
    SERVER_BUSY = "server busy"
    BANNED = "banned"
    BAD_AUTHENTICATION_METHOD = "bad authentication method"
    QUOTA_EXCEEDED = "quota exceeded"
    RETAIN_NOT_SUPPORTED = "retain not supported"
    TOPIC_INVALID = "topic invalid"
    SESSION_TAKEN_OVER = "session taken over"
    SERVER_SHUTTING_DOWN = "server shutting down"
    ADMINISTRATIVE_ACTION = "administrative action"
    UNSPECIFIED = "unspecified error"


@dataclass(frozen=True, slots=True)
class Denied:
    """A refusal; ``text`` is for logs and MQTT 5's Reason String (may be empty)."""

    reason: Reason
    text: str = ""
    user_properties: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Allowed:
    """Authentication succeeded. A backend may attach user properties for the client;
    an enhanced authentication method may return final data for it and the username
    it established."""

    user_properties: tuple[tuple[str, str], ...] = ()
    auth_data: bytes | None = None
    username: str | None = None

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class AuthContinue:
    """An enhanced authentication method needs another round: ``data`` goes to the
    client, ``state`` comes back to the method with the client's answer."""

    data: bytes | None
    state: Any = None


ALLOWED = Allowed()
AuthResult = Allowed | Denied


def as_result(answer: Any, refused: Reason = Reason.NOT_AUTHORIZED) -> AuthResult:
    """A backend's True/False (or already an Allowed/Denied) as a result value."""
    if isinstance(answer, (Allowed, Denied)):
        return answer
    return ALLOWED if answer else Denied(refused)


class PayloadFormat(enum.IntEnum):
    """How the payload is to be read: unspecified bytes, or UTF-8 text."""

    BYTES = 0
    UTF8 = 1


class Properties:
    """End-to-end message properties every protocol maps to and from.

    Kept as ``items``, (name, value) pairs in the order the publisher gave them (so a
    message is forwarded as it came): names are ``content_type``, ``payload_format``
    (0 bytes, 1 UTF-8 text; other values pass through), ``response_topic``,
    ``correlation_data`` and ``user`` (a (key, value) pair, repeatable). Immutable by
    convention once published: one object is shared by every delivery.
    """

    __slots__ = ("items",)

    def __init__(
        self,
        content_type: str | None = None,
        payload_format: int | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        user_properties: tuple[tuple[str, str], ...] = (),
    ) -> None:
        items: list[tuple[str, Any]] = []
        for name, value in (("payload_format", payload_format), ("content_type", content_type),
                            ("response_topic", response_topic), ("correlation_data", correlation_data)):
            if value is not None:
                items.append((name, value))
        items.extend(("user", pair) for pair in user_properties)
        self.items: tuple[tuple[str, Any], ...] = tuple(items)

    @classmethod
    def from_items(cls, items: Any) -> Properties:
        props = cls.__new__(cls)
        props.items = tuple(items)
        return props

    def _get(self, name: str) -> Any:
        for key, value in self.items:
            if key == name:
                return value
        return None

    @property
    def content_type(self) -> str | None:
        return self._get("content_type")

    @property
    def payload_format(self) -> int | None:
        return self._get("payload_format")

    @property
    def response_topic(self) -> str | None:
        return self._get("response_topic")

    @property
    def correlation_data(self) -> bytes | None:
        return self._get("correlation_data")

    @property
    def user_properties(self) -> tuple[tuple[str, str], ...]:
        return tuple(value for key, value in self.items if key == "user")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Properties):
            return NotImplemented
        return self.items == other.items

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return bool(self.items)

    def __repr__(self) -> str:
        return f"Properties({list(self.items)!r})"


class Message:
    """An application message; slotted because millions pass through the hub."""

    __slots__ = ("topic", "payload", "qos", "retain", "props", "expires_at", "source", "cache",
                 "store_id")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        props: Properties | None = None,
        expires_at: float | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.props = props
        self.expires_at = expires_at
        # Who published it (set by the hub); check_retain_source and no-local use it.
        self.source: ClientInfo | None = None
        self.cache: dict[Any, Any] = {}
        self.store_id = 0  # the durable store's id for it, once stored (gateway.hub.persistence)

    def __repr__(self) -> str:
        return (
            f"Message({self.topic!r}, {self.payload[:32]!r}, qos={self.qos}, "
            f"retain={self.retain})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.topic, self.payload, self.qos, self.retain, self.props) == (
            other.topic, other.payload, other.qos, other.retain, other.props)

    __hash__ = object.__hash__

    def expired(self, now: float) -> bool:
        expires = self.expires_at
        return expires is not None and now >= expires

    def copy(self, **changes: Any) -> Message:
        """A new message with some fields replaced (its own encoding cache)."""
        m = Message(self.topic, self.payload, self.qos, self.retain, self.props, self.expires_at)
        m.source = self.source
        for name, value in changes.items():
            setattr(m, name, value)
        return m


class RetainHandling(enum.Enum):
    """When a new subscription receives the retained messages it matches."""

    SEND = "send"            # at every subscribe
    SEND_IF_NEW = "if-new"   # only when the subscription did not exist
    NEVER = "never"


class Subscription:
    """One filter's options; the trie stores these per subscriber."""

    __slots__ = ("qos", "no_local", "retain_as_published", "retain_handling", "identifier",
                 "ids")

    def __init__(
        self,
        qos: int,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: RetainHandling = RetainHandling.SEND,
        identifier: int | None = None,
    ) -> None:
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling
        self.identifier = identifier
        # What a delivery carries: the identifiers of every subscription it matched.
        self.ids: tuple[int, ...] = () if identifier is None else (identifier,)

    def _key(self) -> tuple[Any, ...]:
        return (self.qos, self.no_local, self.retain_as_published, self.retain_handling,
                self.identifier)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Subscription):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "Subscription(qos={}, no_local={}, rap={}, rh={}, id={})".format(
            self.qos, self.no_local, self.retain_as_published, self.retain_handling.value,
            self.identifier)


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A granted subscription: what ``deliver_retained`` needs after the acknowledgement."""

    topic_filter: str
    subscription: Subscription
    existed: bool

    @property
    def qos(self) -> int:
        return self.subscription.qos


@dataclass(slots=True)
class ClientInfo:
    """The identity authentication and ACL decisions are made on.

    ``certificate`` is True when the username comes from a verified TLS client
    certificate (``use_identity_as_username``): it is then the credential itself.
    ``auth_method`` names the enhanced authentication method the client logged in with.
    ``transport`` names the way in for status pages and metrics when the listener does
    not (a serial line: ``serial:/dev/ttyUSB0``); empty: the listener's.
    ``trusted`` marks a client the administrator configured inside the gateway (a
    bridge's local side): no ACL or plugin is asked about it, as Mosquitto trusts its
    bridges, because the configuration already says what it may carry.
    """

    client_id: str
    protocol: str = "mqtt"
    peer: str = ""
    username: str | None = None
    listener: Any = None
    certificate: bool = False
    auth_method: str | None = None
    transport: str = ""
    trusted: bool = False


class AuthMethod(Protocol):
    """An enhanced (challenge/response) authentication method, such as SCRAM-SHA-256.

    ``start`` sees the client's first data, ``step`` each later answer with the
    ``state`` of the ``AuthContinue`` before it; each returns ``AuthContinue``,
    ``Allowed`` or ``Denied`` (or a Deferred firing with one). ``start`` runs again
    for a re-authentication; ``client.username`` is then the one established before.
    """

    name: str

    def start(self, client: ClientInfo, data: bytes | None) -> Any: ...

    def step(self, client: ClientInfo, state: Any, data: bytes | None) -> Any: ...


class Endpoint(Protocol):
    """What a channel offers the hub for deliveries."""

    def send_publish(
        self,
        message: Message,
        qos: int,
        packet_id: int | None,
        dup: bool,
        retain: bool,
        sub_ids: tuple[int, ...],
    ) -> bool: ...

    def send_pubrel(self, packet_id: int) -> None: ...

    def close(self, reason: Reason) -> None: ...
