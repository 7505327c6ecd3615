"""The seam between the hub's state and a durable store.

The hub and its sessions tell a ``Journal`` about every change of durable state, as
it happens: retained messages, persistent sessions (those that outlive their
connection) with their subscriptions, the QoS 1/2 messages queued or in flight to
them, inbound QoS 2 messages awaiting PUBREL, and wills waiting for their delay. A
store backend (``gateway.store``) batches these into transactions; ``barrier()`` is
how a channel holds an acknowledgement until what it acknowledges is durable: it
gives the ``Batch`` the latest change went into.

At startup the backend reads a ``Snapshot`` back, and ``restore`` rebuilds the hub
from it. The records are plain data, so another backend only has to store and return
them; what a new backend needs is the ``Journal`` methods and ``load()``.

Clean sessions (expiry 0) are not stored: they end with their connection, and a
restart ends every connection.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from twisted.logger import Logger

from gateway.hub.api import ClientInfo, Message, Properties, RetainHandling, Subscription

if TYPE_CHECKING:
    from gateway.hub.hub import Hub
    from gateway.hub.sessions import Outgoing, Session


class Batch:
    """One batch of changes on its way to disk, shared by everything that waits for it.

    Waiting costs a list entry, not a Deferred per acknowledgement: a client with a
    window of acknowledgements in one batch registers one call (``DurableAcks``).
    Batches become durable in the order they were made.
    """

    __slots__ = ("done", "_calls")
    log = Logger()

    def __init__(self) -> None:
        self.done = False
        self._calls: list[Callable[[], Any]] = []

    def then(self, call: Callable[[], Any]) -> None:
        """``call()`` once the batch is durable (at once if it already is)."""
        if self.done:
            call()
        else:
            self._calls.append(call)

    def fire(self) -> None:
        """The store committed the batch (reactor thread)."""
        self.done = True
        calls, self._calls = self._calls, []
        for call in calls:
            try:
                call()
            except Exception:
                self.log.failure("after a commit")


class Journal(Protocol):
    """What the hub reports; each call describes the state after the change."""

    def retained(self, message: Message) -> None: ...

    def retained_cleared(self, topic: str) -> None: ...

    def session(self, session: Session) -> None:
        """A persistent session was created or its own fields changed (expiry, will,
        disconnection time, client, protocol data in ``extra``)."""

    def session_ended(self, client_id: str) -> None:
        """The session and all it holds are gone (or it is no longer persistent)."""

    def subscription(self, session: Session, topic_filter: str, sub: Subscription | None) -> None:
        """Added or replaced; ``sub`` None: removed."""

    def outgoing(self, session: Session, out: Outgoing) -> None:
        """A delivery was queued or moved (packet id given, sent, PUBREC received)."""

    def outgoing_done(self, session: Session, out: Outgoing) -> None: ...

    def inbound(self, session: Session, pid: int, fingerprint: int, held: Message | None,
                done: bool) -> None:
        """An inbound QoS 2 id is pending (``done`` False) or released."""

    def will(self, client_id: str, will: Message | None, publish_at: float, expiry: int | None) -> None:
        """A will waits for its delay (``will`` None: it went out or was cancelled)."""

    def barrier(self) -> Batch | None:
        """None when every change reported so far is durable; else the batch that
        holds the latest one (earlier batches are durable before it)."""


# --- what a store gives back at startup ------------------------------------------------


@dataclass(slots=True)
class StoredMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Properties | None = None
    expires_at: float | None = None
    source_client_id: str | None = None
    source_username: str | None = None


@dataclass(slots=True)
class StoredSession:
    client_id: str
    protocol: str
    username: str | None
    listener: tuple[Any, ...] | None     # gateway.hub.auth.listener_key of its listener
    expiry: int | None
    disconnected_at: float | None        # None: it was connected when the process stopped
    will_id: int | None = None
    will_delay: int = 0
    will_expiry: int | None = None
    next_pid: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StoredSubscription:
    client_id: str
    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: str = RetainHandling.SEND.value
    identifier: int | None = None


@dataclass(slots=True)
class StoredOutgoing:
    client_id: str
    seq: int                             # queue order
    message_id: int
    qos: int
    retain: bool
    sub_ids: tuple[int, ...] = ()
    share: tuple[str, str] | None = None   # (share name, filter)
    pid: int = 0
    state: int = 0                       # sessions.AWAIT_ACK or AWAIT_COMP
    inflight: bool = False


@dataclass(slots=True)
class StoredInbound:
    client_id: str
    pid: int
    fingerprint: int
    message_id: int | None


@dataclass(slots=True)
class StoredWill:
    client_id: str
    message_id: int
    publish_at: float
    expiry: int | None
    protocol: str = "mqtt"
    username: str | None = None


@dataclass(slots=True)
class Snapshot:
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    retained: list[int] = field(default_factory=list)
    sessions: list[StoredSession] = field(default_factory=list)
    subscriptions: list[StoredSubscription] = field(default_factory=list)
    outgoing: list[StoredOutgoing] = field(default_factory=list)
    inbound: list[StoredInbound] = field(default_factory=list)
    wills: list[StoredWill] = field(default_factory=list)


# --- rebuilding the hub ------------------------------------------------------------------


def _message(stored: StoredMessage, cache: dict[Any, Any]) -> Message:
    message = cache.get(stored.id)
    if message is None:
        message = Message(stored.topic, stored.payload, stored.qos, stored.retain, stored.props,
                          stored.expires_at)
        if stored.source_client_id is not None:
            # One ClientInfo per publisher, not per message: 100,000 retained messages
            # from one client are 100,000 references, not 100,000 objects.
            who = (stored.source_client_id, stored.source_username)
            source = cache.get(who)
            if source is None:
                source = cache[who] = ClientInfo(who[0], username=who[1])
            message.source = source
        message.store_id = stored.id
        cache[stored.id] = message
    return message


def restore(hub: Hub, snapshot: Snapshot, listeners: dict[Any, Any]) -> dict[str, int]:
    """Rebuild retained messages, sessions, their queues and pending wills from a
    snapshot, on a hub with nothing in it yet. ``listeners`` maps listener keys to the
    configured listeners (a session whose listener is gone keeps none). Sessions that
    were connected when the process stopped are disconnected now, will and all, except
    those whose client was asleep (``sessions.SLEEP_KEY``): it never noticed, so they wait,
    offline with their will, for their protocol to take them up again. Expiries run on
    the wall clock, so what expired during the downtime goes at once. Returns counts
    for the log."""

    # Hundreds of thousands of objects that live on: the collector would scan the
    # growing heap again and again while they are made (a second per 100,000 here).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _restore(hub, snapshot, listeners)
    finally:
        if collecting:
            gc.enable()


def _restore(hub: Hub, snapshot: Snapshot, listeners: dict[Any, Any]) -> dict[str, int]:
    from gateway.hub.sessions import SLEEP_KEY, Outgoing, Session

    now = hub.now()
    messages: dict[Any, Any] = {}
    stored = snapshot.messages
    journal = hub.journal
    hub.journal = None                      # nothing read back is written again
    try:
        for mid in snapshot.retained:
            message = _message(stored[mid], messages)
            if not message.expired(now):
                hub.retained_store.store(message)
        sessions: dict[str, Session] = {}
        crashed: set[str] = set()
        for record in snapshot.sessions:
            client = ClientInfo(record.client_id, record.protocol, "", record.username,
                                listeners.get(record.listener) if record.listener else None)
            session = Session(client, record.expiry, hub)
            if record.disconnected_at is None and not record.extra.get(SLEEP_KEY):
                crashed.add(record.client_id)
            session.disconnected_at = record.disconnected_at if record.disconnected_at is not None else now
            session.extra = dict(record.extra)
            session._next_pid = record.next_pid
            if record.will_id is not None and record.will_id in stored:
                session.will = _message(stored[record.will_id], messages)
                session.will_delay = record.will_delay
                session.will_expiry = record.will_expiry
            sessions[record.client_id] = session
            hub.sessions[record.client_id] = session
        for sub in snapshot.subscriptions:
            session = sessions.get(sub.client_id)
            if session is None:
                continue
            hub.subscribe_restored(session, sub.topic_filter, Subscription(
                sub.qos, sub.no_local, sub.retain_as_published, RetainHandling(sub.retain_handling),
                sub.identifier))
        for item in sorted(snapshot.outgoing, key=lambda o: o.seq):
            session = sessions.get(item.client_id)
            if session is None or item.message_id not in stored:
                continue
            share = hub.trie.group(item.share[1], item.share[0]) if item.share else None
            out = Outgoing(_message(stored[item.message_id], messages), item.qos, item.retain,
                           item.sub_ids, share)
            out.state = item.state
            out.pid = item.pid
            out.sid = item.seq
            session.restore_outgoing(out, item.inflight)
        for item in snapshot.inbound:
            session = sessions.get(item.client_id)
            if session is None:
                continue
            held = _message(stored[item.message_id], messages) if item.message_id in stored else None
            session.inbound_qos2_received(item.pid, item.fingerprint, held)
    finally:
        hub.journal = journal
    for session in sessions.values():
        session._journal = journal if session.expiry != 0 else None
    for will in snapshot.wills:
        if will.message_id in stored:
            hub.restore_will(will.client_id, _message(stored[will.message_id], messages),
                             ClientInfo(will.client_id, will.protocol, "", will.username),
                             will.publish_at, will.expiry)
    for session in sessions.values():
        hub.restore_expiry(session, crashed=session.client_id in crashed)
    return {"retained": len(hub.retained_store), "sessions": len(sessions),
            "queued": sum(len(s.queue) + len(s.inflight) for s in sessions.values())}
