"""What a Mosquitto persistence file holds, as plain data for the persistence layer.

``gateway.store.mosquitto_db`` fills these in; they carry no behaviour beyond small
conveniences, and nothing protocol- or hub-specific: the importer maps them onto hub
sessions and retained messages. Names follow Mosquitto's where a field is Mosquitto's
own (``mid``, ``store_id``, ``MessageState``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

NEVER_EXPIRES = 0xFFFFFFFF  # session expiry interval of an MQTT 3.1.1 persistent session

# MQTT 5 properties a stored PUBLISH may carry (MQTT 5.0 §2.2.2.2).
PAYLOAD_FORMAT_INDICATOR = 0x01
MESSAGE_EXPIRY_INTERVAL = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_IDENTIFIER = 0x0B
TOPIC_ALIAS = 0x23
USER_PROPERTY = 0x26
REPEATABLE = frozenset({USER_PROPERTY, SUBSCRIPTION_IDENTIFIER})

#: (property id, value) pairs in file order: int, str, bytes or a (key, value) pair.
Properties = tuple[tuple[int, Any], ...]


class ChunkType(IntEnum):
    CONFIG = 1
    MESSAGE_STORE = 2
    CLIENT_MESSAGE = 3
    RETAIN = 4
    SUBSCRIPTION = 5
    CLIENT = 6


class Direction(IntEnum):
    IN = 0
    OUT = 1


class MessageState(IntEnum):
    """Mosquitto's ``enum mosquitto_msg_state``, the same from 1.4 to 2.0."""

    INVALID = 0
    PUBLISH_QOS0 = 1
    PUBLISH_QOS1 = 2
    WAIT_FOR_PUBACK = 3
    PUBLISH_QOS2 = 4
    WAIT_FOR_PUBREC = 5
    RESEND_PUBREL = 6
    WAIT_FOR_PUBREL = 7
    RESEND_PUBCOMP = 8
    WAIT_FOR_PUBCOMP = 9
    SEND_PUBREC = 10
    QUEUED = 11


# --- what the file holds, chunk by chunk ----------------------------------------------


@dataclass(slots=True)
class DbConfig:
    last_db_id: int
    shutdown: bool  # written at a clean shutdown rather than by autosave


@dataclass(slots=True)
class StoredMessage:
    """One message store entry; retained messages are these too."""

    store_id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    expiry_time: int  # Unix time at which the message expires; 0 for never
    source_id: str | None = None
    source_username: str | None = None
    source_mid: int = 0
    source_port: int = 0
    properties: Properties = ()  # Mosquitto keeps the expiry apart, in expiry_time

    def expired(self, now: float) -> bool:
        """As Mosquitto decides when it loads the file."""
        return bool(self.expiry_time) and self.expiry_time < now

    def remaining_expiry(self, now: float) -> int | None:
        """Seconds left to live (the Message Expiry Interval to send), None for never."""
        if not self.expiry_time:
            return None
        return max(0, int(self.expiry_time - now))

    def properties_dict(self) -> dict[int, Any]:
        return properties_dict(self.properties)


@dataclass(slots=True)
class ClientRecord:
    client_id: str
    session_expiry_time: int = 0  # Unix time; 0 while connected or never set
    # Seconds; NEVER_EXPIRES for no expiry, as for every client of versions 2 to 4.
    session_expiry_interval: int = 0
    last_mid: int = 0
    listener_port: int = 0  # version 6 only
    # Version 6 only. Before 2.0.16 Mosquitto could save a client without a username
    # with the previous client's: the reader drops it only where the file shows it.
    username: str | None = None
    disconnect_time: int | None = None  # versions 3 and 4 only


@dataclass(slots=True)
class ClientMessage:
    client_id: str
    store_id: int
    mid: int
    qos: int
    direction: Direction
    state: MessageState
    retain: bool
    dup: bool
    properties: Properties = ()  # per delivery: the subscription identifier


@dataclass(slots=True)
class Subscription:
    client_id: str
    topic_filter: str
    qos: int
    options: int = 0  # Mosquitto keeps only No Local (0x04) and Retain As Published (0x08)
    identifier: int = 0  # 0 for none

    @property
    def no_local(self) -> bool:
        return bool(self.options & 0x04)

    @property
    def retain_as_published(self) -> bool:
        return bool(self.options & 0x08)


# --- the same, joined up --------------------------------------------------------------


@dataclass(slots=True)
class Delivery:
    """A client message joined with the stored message it refers to."""

    message: StoredMessage
    mid: int
    qos: int  # the delivery's QoS, at most the message's
    state: MessageState
    retain: bool
    dup: bool
    subscription_identifiers: tuple[int, ...] = ()

    @property
    def queued(self) -> bool:
        """Not yet sent: waits for the client and a free inflight slot."""
        return self.state == MessageState.QUEUED

    @property
    def awaiting_pubcomp(self) -> bool:
        """QoS 2 past PUBREC: the PUBREL is what to (re)send."""
        return self.state in (MessageState.RESEND_PUBREL, MessageState.WAIT_FOR_PUBCOMP)


@dataclass(slots=True)
class Session:
    client: ClientRecord
    subscriptions: tuple[Subscription, ...] = ()
    outgoing: tuple[Delivery, ...] = ()  # inflight first, then queued, as Mosquitto saves
    # QoS 2 messages received from the client and not yet released by its PUBREL;
    # Mosquitto routes them to subscribers only on that PUBREL.
    incoming: tuple[Delivery, ...] = ()

    @property
    def client_id(self) -> str:
        return self.client.client_id


@dataclass(slots=True)
class MosquittoState:
    path: str
    version: int
    config: DbConfig | None
    messages: dict[int, StoredMessage]  # by store id
    retained_ids: tuple[int, ...]
    clients: tuple[ClientRecord, ...]
    client_messages: tuple[ClientMessage, ...]
    subscriptions: tuple[Subscription, ...]
    retained: tuple[StoredMessage, ...]
    sessions: dict[str, Session]  # by client id
    unknown_chunks: tuple[tuple[int, int], ...] = ()  # (type, offset), skipped
    dropped_client_messages: int = 0  # no such stored message, or no client id
    dropped_retained: int = 0  # no such stored message
    dropped_clients: int = 0  # client chunks without a client id, skipped as Mosquitto does


def properties_dict(properties: Properties) -> dict[int, Any]:
    """The gateway's property form: id -> value, a list for the repeatable ones."""
    out: dict[int, Any] = {}
    for ident, value in properties:
        if ident in REPEATABLE:
            out.setdefault(ident, []).append(value)
        else:
            out[ident] = value
    return out
