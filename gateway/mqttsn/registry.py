"""Topic ids: the gateway-wide predefined table and each client's registrations.

MQTT-SN replaces topic names by 16-bit ids to keep packets small. Three kinds exist:
*predefined* ids (configured on the gateway and the client alike, the same for every
client), *short* names (exactly two characters, carried in the id field itself) and
*normal* ids, assigned by the gateway per client through REGISTER (in either
direction). A client's registrations belong to its session: they are kept in
``Session.extra`` so a persistent session resumed from another address, or after a
restart, still knows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.hub.topics import TopicError, split_shared, validate_topic_filter, validate_topic_name
from gateway.mqttsn.codec import ReturnCode, TopicIdType, short_id, short_name

if TYPE_CHECKING:
    from gateway.hub.sessions import Session

EXTRA_KEY = "mqttsn.topics"
MAX_TOPIC_ID = 0xFFFE  # 0x0000 and 0xFFFF are reserved


class Predefined:
    """The ``mqttsn_predefined_topic ID TOPIC`` table, both ways."""

    __slots__ = ("by_id", "by_name")

    def __init__(self, table: dict[int, str] | None = None) -> None:
        self.by_id: dict[int, str] = {}
        self.by_name: dict[str, int] = {}
        for topic_id, name in (table or {}).items():
            validate_topic_name(name)
            if not 1 <= topic_id <= MAX_TOPIC_ID:
                raise TopicError(f"predefined topic id {topic_id} out of range")
            self.by_id[topic_id] = name
            self.by_name.setdefault(name, topic_id)

    def __len__(self) -> int:
        return len(self.by_id)


class TopicRegistry(dict[str, int]):
    """One client's normal topic ids, name -> id; ids are assigned upwards from 1.

    The mapping itself is the plain data a store keeps (``Session.extra`` is written
    as JSON), so registrations survive a restart; the reverse index and the next id
    are rebuilt from it.
    """

    __slots__ = ("by_id", "next_id", "limit")

    def __init__(self, limit: int, names: dict[str, int] | None = None) -> None:
        super().__init__(names or ())
        self.by_id: dict[int, str] = {topic_id: name for name, topic_id in self.items()}
        self.next_id = max(self.by_id, default=0) + 1
        self.limit = limit

    def has_room_for(self, name: str) -> bool:
        """Whether ``register(name)`` would give an id (so a SUBSCRIBE can ask first)."""
        return name in self or (len(self) < self.limit and self.next_id <= MAX_TOPIC_ID)

    def register(self, name: str) -> int | None:
        """The id for ``name``, assigning one if needed; None when the table is full."""
        topic_id = self.get(name)
        if topic_id is not None:
            return topic_id
        if not self.has_room_for(name):
            return None
        topic_id = self.next_id
        self.next_id += 1
        self.by_id[topic_id] = name
        self[name] = topic_id
        return topic_id

    def forget(self, topic_id: int) -> bool:
        name = self.by_id.pop(topic_id, None)
        if name is None:
            return False
        self.pop(name, None)
        return True


def registry_of(session: Session, limit: int) -> TopicRegistry:
    """The session's registry, created on first use (idle clients never pay for one)
    or rebuilt from the plain mapping a store gave back."""
    extra = session.own_extra()
    reg = extra.get(EXTRA_KEY)
    if type(reg) is not TopicRegistry:
        reg = extra[EXTRA_KEY] = TopicRegistry(limit, reg)
    return reg


def register(session: Session, limit: int, name: str) -> int | None:
    """``name``'s id in the session's registry (assigned and reported if new)."""
    registry = registry_of(session, limit)
    known = name in registry
    topic_id = registry.register(name)
    if topic_id is not None and not known:
        session.changed()
    return topic_id


def forget(session: Session, topic_id: int) -> None:
    """The client does not know ``topic_id`` (any more): it is registered again next time."""
    registry = session.extra.get(EXTRA_KEY)
    if registry is not None and registry.forget(topic_id):
        session.changed()


def outgoing_topic(
    topic: str, predefined: Predefined, registry: TopicRegistry | None
) -> tuple[int, int] | None:
    """(topic id type, id) under which ``topic`` can be sent; None means REGISTER first."""
    topic_id = predefined.by_name.get(topic)
    if topic_id is not None:
        return TopicIdType.PREDEFINED, topic_id
    if registry is not None:
        topic_id = registry.get(topic)
        if topic_id is not None:
            return TopicIdType.NORMAL, topic_id
    if len(topic) == 2:
        raw = topic.encode("utf-8")
        if len(raw) == 2:
            return TopicIdType.SHORT, short_id(topic)
    return None


def incoming_topic(topic_type: int, topic_id: int, predefined: Predefined,
                   registry: TopicRegistry | None) -> str | None:
    """The topic name a client's PUBLISH names by (id type, id); None: unknown."""
    if topic_type == TopicIdType.NORMAL:
        return registry.by_id.get(topic_id) if registry is not None else None
    if topic_type == TopicIdType.PREDEFINED:
        return predefined.by_id.get(topic_id)
    if topic_type == TopicIdType.SHORT:
        return short_name(topic_id)
    return None


def subscription_topic(topic_type: int, topic: str | int,
                       predefined: Predefined) -> tuple[str | None, int, int]:
    """(filter, topic id for SUBACK, return code) for a SUBSCRIBE/UNSUBSCRIBE topic."""
    if topic_type == TopicIdType.PREDEFINED:
        name = predefined.by_id.get(topic)  # type: ignore[arg-type]
        if name is None:
            return None, topic, ReturnCode.INVALID_TOPIC_ID  # type: ignore[return-value]
        return name, topic, ReturnCode.ACCEPTED  # type: ignore[return-value]
    if topic_type == TopicIdType.RESERVED:
        return None, 0, ReturnCode.NOT_SUPPORTED
    name = str(topic)
    try:
        validate_topic_filter(name)
        split_shared(name)  # $share/GROUP/FILTER: a shared subscription, checked alike
    except TopicError:
        return None, 0, ReturnCode.NOT_SUPPORTED
    return name, 0, ReturnCode.ACCEPTED
