"""One dataclass per MQTT control packet, the same for levels 3, 4 and 5.

Fields that only MQTT 5 puts on the wire (``properties``, reason codes on acks)
exist at every level with neutral defaults, so the channel handles one shape and
the codec decides what reaches the wire. Properties are keyed by
``reasons.PropertyId``; ``USER_PROPERTY`` (pairs) and ``SUBSCRIPTION_IDENTIFIER``
are lists because they may repeat.

Not frozen: the codec builds hundreds of thousands of these per second and a
frozen dataclass's ``__init__`` goes through ``object.__setattr__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Will:
    """The message a CONNECT asks the server to publish if the client vanishes."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    """First packet from a client; ``protocol_level`` picks 3.1 (3), 3.1.1 (4) or 5.

    ``bridge``: the level's bit 7 was (or is to be) set, Mosquitto's way for a bridge
    to say what it is at 3.1 and 3.1.1 (``try_private``)."""

    client_id: str
    protocol_level: int = 4
    clean_session: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    protocol_name: str = "MQTT"
    properties: dict = field(default_factory=dict)
    bridge: bool = False

    def __post_init__(self) -> None:
        # MQTT 3.1 names itself "MQIsdp"; spare every caller from spelling it.
        if self.protocol_level == 3 and self.protocol_name == "MQTT":
            self.protocol_name = "MQIsdp"


@dataclass(slots=True)
class ConnAck:
    """``return_code`` is a ``ConnAckCode`` below level 5, a ``ReasonCode`` at 5."""

    return_code: int = 0
    session_present: bool = False
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    """``packet_id`` is None exactly when ``qos`` is 0."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class PubRec:
    packet_id: int
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class PubRel:
    packet_id: int
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class PubComp:
    packet_id: int
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Subscribe:
    """``topics`` holds (filter, requested QoS); at level 5 the int is the options byte."""

    packet_id: int
    topics: list[tuple[str, int]]
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class SubAck:
    packet_id: int
    return_codes: list[int]
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topics: list[str]
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class UnsubAck:
    """``reason_codes`` stays empty below level 5, which has none on the wire."""

    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class PingReq:
    pass


@dataclass(slots=True)
class PingResp:
    pass


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Auth:
    """MQTT 5 only: extended authentication exchange."""

    reason_code: int = 0
    properties: dict = field(default_factory=dict)


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)
