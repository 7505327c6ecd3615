"""Protocol-neutral sessions: packet ids, the inflight window, the offline queue.

A session outlives its connection when its expiry allows. The bookkeeping here is the
same for MQTT and MQTT-SN, so a QoS 1 message queued for an absent client is
redelivered the same way whichever protocol it comes back on.

Overflow policy (as Mosquitto): once ``max_queued_messages`` (or ``max_queued_bytes``)
is reached, new QoS 1/2 messages for that session are dropped and counted in
``$SYS/broker/publish/messages/dropped``; messages already queued are kept. QoS 0
messages are never queued for an offline client. A queued message whose expiry has
passed is dropped when its turn comes (counted as expired); one already in flight is
still redelivered, as MQTT 5 requires.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.hub.api import ClientInfo, Endpoint, Message, Subscription

if TYPE_CHECKING:
    from gateway.hub.hub import Hub
    from gateway.hub.trie import ShareGroup

#: ``Session.extra`` key that a protocol sets, to the longest silence in seconds, while
#: its client sleeps (MQTT-SN): connected, but unaware of a restart of the process, so a
#: restart keeps the session asleep, will included, for its protocol to take up again.
#: The hub removes it when an endpoint connects or disconnects.
SLEEP_KEY = "asleep"


class _Unfilled(dict):
    """The empty mapping sessions share for ``subscriptions``, ``inflight`` and
    ``extra`` until they hold something (an idle session should not pay 64 bytes a
    dict): read like any dict, never written; a session puts a dict of its own in its
    place first."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("the sessions' shared empty mapping is not written to")

    __setitem__ = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]


UNFILLED: dict[Any, Any] = _Unfilled()

AWAIT_ACK = 0  # PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2)
AWAIT_COMP = 1  # PUBREL sent, waiting for PUBCOMP
MAX_PACKET_IDS = 65535  # the window can never be wider than the packet id space


@dataclass(slots=True)
class Limits:
    """Per-session bounds, from the config; 0 means unlimited."""

    max_inflight: int = 20
    max_inflight_bytes: int = 0
    max_queued: int = 1000
    max_queued_bytes: int = 0


class Outgoing:
    """One delivery to this session: queued, or in flight under a packet id. A queued
    one has its packet id already when ids are free (as in Mosquitto), 0 otherwise."""

    __slots__ = ("message", "qos", "retain", "sub_ids", "share", "state", "pid", "sid")

    def __init__(self, message: Message, qos: int, retain: bool, sub_ids: tuple[int, ...],
                 share: ShareGroup | None = None) -> None:
        self.message = message
        self.qos = qos
        self.retain = retain
        self.sub_ids = sub_ids
        self.share = share
        self.state = AWAIT_ACK
        self.pid = 0
        self.sid = 0  # the durable store's sequence number for it, once stored


class Session:
    """One client id's state, attached to at most one endpoint at a time.

    ``expiry`` is the session expiry interval in seconds once disconnected: 0 ends the
    session with its connection (MQTT 3.1.1's clean session), None keeps it until
    ``persistent_client_expiration`` (if set) or forever.
    """

    __slots__ = (
        "client_id", "client", "expiry", "endpoint", "subscriptions", "inflight", "queue",
        "inbound_qos2", "will", "will_delay", "will_expiry", "disconnected_at", "connected_at",
        "clean_start", "extra", "receive_maximum",
        "_hub", "_limits", "_stats", "_next_pid", "_inflight_bytes", "_queued_bytes", "_reserved",
        "_journal",
    )

    def __init__(self, client: ClientInfo, expiry: int | None, hub: Hub) -> None:
        self.client_id = client.client_id
        self.client = client
        self.expiry = expiry
        self.endpoint: Endpoint | None = None
        # UNFILLED and empty tuples until first used: an idle session should not pay
        # for dicts (64 bytes each), a deque (~600 bytes) and a set (~200 bytes).
        self.subscriptions: dict[str, Subscription] = UNFILLED
        self.inflight: dict[int, Outgoing] = UNFILLED
        self.queue: deque[Outgoing] | tuple[()] = ()
        # Inbound QoS 2 packet ids awaiting PUBREL -> (fingerprint, held message).
        self.inbound_qos2: dict[int, tuple[int, Message | None]] | tuple[()] = ()
        self.will: Message | None = None
        self.will_delay = 0
        self.will_expiry: int | None = None  # the will's message expiry, from publication
        self.disconnected_at: float | None = None
        self.connected_at: float | None = None  # wall clock of the last connect
        self.clean_start = True  # how the last connection started (a delayed will reads it)
        self.extra: dict[str, Any] = UNFILLED  # written through own_extra()
        # The client's own bound on QoS 1/2 messages in flight to it (MQTT 5's Receive
        # Maximum; MQTT-SN takes one at a time); 0: only the server's limit applies.
        self.receive_maximum = 0
        self._hub = hub
        self._limits = hub.settings.limits
        self._stats = hub.stats
        self._next_pid = 0
        self._inflight_bytes = 0
        self._queued_bytes = 0
        self._reserved: set[int] | tuple[()] = ()  # ids of queued messages, reserve_pid()'s
        # The hub's journal while this session is persistent (its expiry is not 0).
        self._journal: Any = None

    def __repr__(self) -> str:
        return f"<Session {self.client_id!r} expiry={self.expiry} online={self.endpoint is not None}>"

    def subscribed(self, topic_filter: str, sub: Subscription) -> None:
        """Record a subscription the hub made (the trie holds the matching side)."""
        subs = self.subscriptions
        if subs is UNFILLED:
            subs = self.subscriptions = {}
        subs[topic_filter] = sub

    def own_extra(self) -> dict[str, Any]:
        """``extra``, to write into."""
        extra = self.extra
        if extra is UNFILLED:
            extra = self.extra = {}
        return extra

    def _inflight(self) -> dict[int, Outgoing]:
        inflight = self.inflight
        if inflight is UNFILLED:
            inflight = self.inflight = {}
        return inflight

    @property
    def clean(self) -> bool:
        """Whether the session ends with its connection."""
        return self.expiry == 0

    # outbound ------------------------------------------------------------------

    def deliver(self, message: Message, qos: int, retain: bool, sub_ids: tuple[int, ...] = (),
                share: ShareGroup | None = None) -> None:
        """Send now if online and the window allows, else queue (QoS > 0 only)."""
        endpoint = self.endpoint
        if qos == 0:
            if endpoint is not None:
                endpoint.send_publish(message, 0, None, False, retain, sub_ids)
            return
        if endpoint is not None and not self.queue and self._window_open(message):
            self._send_new(endpoint, Outgoing(message, qos, retain, sub_ids, share))
            return
        self.enqueue(Outgoing(message, qos, retain, sub_ids, share))

    def enqueue(self, out: Outgoing) -> bool:
        """Queue behind what waits already; False (and counted) when the queue is full."""
        limits = self._limits
        size = len(out.message.payload)
        if (limits.max_queued and len(self.queue) >= limits.max_queued) or (
            limits.max_queued_bytes and self._queued_bytes + size > limits.max_queued_bytes
        ):
            self._stats.traffic_of(self.client.protocol).dropped[out.qos] += 1
            return False
        queue = self.queue
        if not queue:
            queue = self.queue = deque()
        queue.append(out)
        self._queued_bytes += size
        if not out.pid and len(self.inflight) + len(self._reserved) < MAX_PACKET_IDS:
            out.pid = self._allocate_pid()
            reserved = self._reserved
            if not reserved:
                reserved = self._reserved = set()
            reserved.add(out.pid)  # type: ignore[union-attr]
        if self._journal is not None:
            self._journal.outgoing(self, out)
        return True

    def _unqueued(self, out: Outgoing) -> None:
        """``out`` left the queue: its byte count and reserved packet id go."""
        self._queued_bytes -= len(out.message.payload)
        if out.pid:
            self._reserved.discard(out.pid)  # type: ignore[union-attr]

    def window_open(self) -> bool:
        """Whether a new QoS 1/2 message would go out now (shared subscriptions ask)."""
        return self.endpoint is not None and not self.queue and self._window_open(None)

    def _window_open(self, message: Message | None) -> bool:
        limits = self._limits
        inflight = len(self.inflight)
        if inflight >= MAX_PACKET_IDS or (limits.max_inflight and inflight >= limits.max_inflight):
            return False
        if self.receive_maximum and inflight >= self.receive_maximum:
            return False
        if message is not None and limits.max_inflight_bytes and self.inflight and (
            self._inflight_bytes + len(message.payload) > limits.max_inflight_bytes
        ):
            return False
        return True

    def _send_new(self, endpoint: Endpoint, out: Outgoing) -> None:
        pid = out.pid or self._allocate_pid()
        out.pid = pid
        self._inflight()[pid] = out
        message = out.message
        self._inflight_bytes += len(message.payload)
        journal = self._journal
        if journal is not None:
            journal.outgoing(self, out)
        if not endpoint.send_publish(message, out.qos, pid, False, out.retain, out.sub_ids):
            # The client cannot take it (too large): as if it had been acknowledged.
            del self.inflight[pid]
            self._inflight_bytes -= len(message.payload)
            if journal is not None:
                journal.outgoing_done(self, out)

    def _allocate_pid(self) -> int:
        pid = self._next_pid
        inflight = self.inflight
        reserved = self._reserved
        while True:
            pid = pid + 1 if pid < 65535 else 1
            if pid not in inflight and pid not in reserved:
                self._next_pid = pid
                return pid

    def reserve_pid(self) -> int:
        """A packet id for a packet the endpoint sends on its own (a bridge's SUBSCRIBE
        or state message), kept from deliveries until ``release_pid``: packet ids are
        one space per connection."""
        pid = self._allocate_pid()
        if not self._reserved:
            self._reserved = set()
        self._reserved.add(pid)  # type: ignore[union-attr]
        return pid

    def release_pid(self, pid: int) -> None:
        if self._reserved:
            self._reserved.discard(pid)  # type: ignore[union-attr]

    def pump(self) -> None:
        """Move queued messages into the inflight window while it has room."""
        queue = self.queue
        hub = self._hub
        while queue and self.endpoint is not None:
            out = queue[0]
            message = out.message
            if not self._window_open(message):
                return
            queue.popleft()  # type: ignore[union-attr]
            self._unqueued(out)
            if message.expires_at is not None and message.expired(hub.now()):
                self._stats.expired += 1
                self._dropped(out)
                continue
            if not hub.can_read(self.client, message.topic):
                self._dropped(out)  # the ACL changed since it was queued
                continue
            self._send_new(self.endpoint, out)

    def _dropped(self, out: Outgoing) -> None:
        if self._journal is not None:
            self._journal.outgoing_done(self, out)

    def acknowledge(self, pid: int) -> bool:
        """PUBACK for QoS 1, PUBCOMP for QoS 2: the delivery is finished."""
        out = self.inflight.pop(pid, None)
        if out is None:
            return False
        self._inflight_bytes -= len(out.message.payload)
        if self._journal is not None:
            self._journal.outgoing_done(self, out)
        if self.queue:
            self.pump()
        return True

    def received_pubrec(self, pid: int) -> bool:
        """QoS 2 step two; returns False for an unknown packet id."""
        out = self.inflight.get(pid)
        if out is None or out.qos != 2:
            return False
        out.state = AWAIT_COMP
        if self._journal is not None:
            self._journal.outgoing(self, out)
        return True

    def expects(self, pid: int, qos: int, state: int) -> bool:
        """Whether ``pid`` is in flight at ``qos`` and waiting in ``state`` (so an
        acknowledgement of the wrong kind can be told from an unknown id)."""
        out = self.inflight.get(pid)
        return out is not None and out.qos == qos and out.state == state

    def resume(self, endpoint: Endpoint) -> None:
        """Attach a new endpoint and redeliver what is inflight (with DUP), then the queue."""
        self.endpoint = endpoint
        self.disconnected_at = None
        hub = self._hub
        for pid, out in list(self.inflight.items()):
            if out.state == AWAIT_COMP:
                endpoint.send_pubrel(pid)
            elif not hub.can_read(self.client, out.message.topic) or not endpoint.send_publish(
                    out.message, out.qos, pid, True, out.retain, out.sub_ids):
                self.inflight.pop(pid, None)
                self._inflight_bytes -= len(out.message.payload)
                self._dropped(out)
        self.pump()

    def take_shared(self) -> list[Outgoing]:
        """Remove the shared-subscription messages not yet received by the client (for
        another member of their group to get them)."""
        taken: list[Outgoing] = []
        for pid, out in list(self.inflight.items()):
            if out.share is not None and out.state == AWAIT_ACK:
                del self.inflight[pid]
                self._inflight_bytes -= len(out.message.payload)
                self._dropped(out)
                out.pid = out.sid = 0
                taken.append(out)
        if self.queue and any(o.share is not None for o in self.queue):
            kept: deque[Outgoing] = deque()
            for out in self.queue:
                if out.share is None:
                    kept.append(out)
                else:
                    self._unqueued(out)
                    self._dropped(out)
                    out.pid = out.sid = 0
                    taken.append(out)
            self.queue = kept if kept else ()
        return taken

    # inbound QoS 2 -------------------------------------------------------------

    def inbound_qos2_received(self, pid: int, fingerprint: int = 0, held: Message | None = None) -> bool:
        """Record an inbound QoS 2 PUBLISH; False when it is a duplicate before PUBREL.

        ``fingerprint`` (stable across restarts, e.g. a CRC of topic and payload) tells
        an id reused for a different message before its PUBREL, which counts as a new
        message, as Mosquitto treats it. ``held`` is kept until the PUBREL for a channel
        that publishes then (as Mosquitto does for MQTT).
        """
        pending = self.inbound_qos2
        if pending and (entry := pending.get(pid)) is not None and entry[0] == fingerprint:  # type: ignore[union-attr]
            return False
        if not pending:
            pending = self.inbound_qos2 = {}
        pending[pid] = (fingerprint, held)  # type: ignore[index]
        if self._journal is not None:
            self._journal.inbound(self, pid, fingerprint, held, False)
        return True

    def inbound_qos2_pending(self, pid: int, fingerprint: int = 0) -> bool:
        """Whether this very message (id and fingerprint) already awaits its PUBREL."""
        entry = self.inbound_qos2.get(pid) if self.inbound_qos2 else None  # type: ignore[union-attr]
        return entry is not None and entry[0] == fingerprint

    def inbound_qos2_released(self, pid: int) -> tuple[bool, Message | None]:
        """PUBREL: forget the id; (whether it was pending, the message held for it)."""
        entry = self.inbound_qos2.pop(pid, None) if self.inbound_qos2 else None  # type: ignore[union-attr]
        if entry is None:
            return False, None
        if self._journal is not None:
            self._journal.inbound(self, pid, 0, None, True)
        return True, entry[1]

    # persistence ---------------------------------------------------------------

    @property
    def journaled(self) -> bool:
        """Whether a durable store keeps this session (persistent, with persistence on)."""
        return self._journal is not None

    def changed(self) -> None:
        """A channel changed what the session keeps for it (``extra``): report it."""
        if self._journal is not None:
            self._journal.session(self)

    def journal_all(self) -> None:
        """Report everything the session holds (it just became persistent)."""
        journal = self._journal
        for topic_filter, sub in self.subscriptions.items():
            journal.subscription(self, topic_filter, sub)
        for out in self.inflight.values():
            journal.outgoing(self, out)
        for out in self.queue:
            journal.outgoing(self, out)
        for pid, (fingerprint, held) in (self.inbound_qos2 or {}).items():
            journal.inbound(self, pid, fingerprint, held, False)

    def restore_outgoing(self, out: Outgoing, inflight: bool) -> None:
        """A delivery read back from the store, in queue order (nothing journaled)."""
        size = len(out.message.payload)
        if inflight and out.pid and out.pid not in self.inflight:
            self._inflight()[out.pid] = out
            self._inflight_bytes += size
            return
        queue = self.queue
        if not queue:
            queue = self.queue = deque()
        queue.append(out)
        self._queued_bytes += size
        if out.pid:
            if not self._reserved:
                self._reserved = set()
            self._reserved.add(out.pid)  # type: ignore[union-attr]

    # limits --------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self.queue)

    def clear_state(self) -> None:
        """Forget everything but identity (clean start)."""
        self.subscriptions = self.inflight = self.extra = UNFILLED
        self.queue = ()
        self.inbound_qos2 = ()
        self._inflight_bytes = 0
        self._queued_bytes = 0
        self._reserved = ()
