"""Protocol-neutral sessions: packet ids, the inflight window, the offline queue.

A session outlives its connection when the client asked for a persistent one. The
bookkeeping here is the same for MQTT and MQTT-SN, so a QoS 1 message queued for an
absent client is redelivered the same way whichever protocol it comes back on.

Overflow policy (as Mosquitto): once ``max_queued_messages`` (or ``max_queued_bytes``)
is reached, new QoS 1/2 messages for that session are dropped and counted in
``$SYS/broker/publish/messages/dropped``; messages already queued are kept. QoS 0
messages are never queued for an offline client.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.hub.api import ClientInfo, Endpoint, Message

if TYPE_CHECKING:
    from gateway.hub.sysinfo import Stats

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


class _Outflight:
    __slots__ = ("message", "qos", "retain", "state")

    def __init__(self, message: Message, qos: int, retain: bool) -> None:
        self.message = message
        self.qos = qos
        self.retain = retain
        self.state = AWAIT_ACK


class Session:
    """One client id's state, attached to at most one endpoint at a time."""

    __slots__ = (
        "client_id",
        "client",
        "clean",
        "endpoint",
        "subscriptions",
        "inflight",
        "queue",
        "inbound_qos2",
        "will",
        "disconnected_at",
        "expiry",
        "extra",
        "_limits",
        "_stats",
        "_next_pid",
        "_inflight_bytes",
        "_queued_bytes",
    )

    def __init__(self, client: ClientInfo, clean: bool, limits: Limits, stats: Stats) -> None:
        self.client_id = client.client_id
        self.client = client
        self.clean = clean
        self.endpoint: Endpoint | None = None
        self.subscriptions: dict[str, int] = {}
        self.inflight: dict[int, _Outflight] = {}
        # Empty tuples until first used: an idle session should not pay for a deque
        # (~600 bytes) and a set (~200 bytes).
        self.queue: deque[tuple[Message, int, bool]] | tuple[()] = ()
        self.inbound_qos2: set[int] | tuple[()] = ()
        self.will: Message | None = None
        self.disconnected_at: float | None = None
        self.expiry: float | None = None
        self.extra: dict[str, Any] = {}
        self._limits = limits
        self._stats = stats
        self._next_pid = 0
        self._inflight_bytes = 0
        self._queued_bytes = 0

    def __repr__(self) -> str:
        return f"<Session {self.client_id!r} clean={self.clean} online={self.endpoint is not None}>"

    # outbound ------------------------------------------------------------------

    def deliver(self, message: Message, qos: int, retain: bool) -> None:
        """Send now if online and the window allows, else queue (QoS > 0 only)."""
        endpoint = self.endpoint
        if qos == 0:
            if endpoint is not None:
                endpoint.send_publish(message, 0, None, False, retain)
            return
        if endpoint is not None and not self.queue and self._window_open(message):
            self._send_new(endpoint, message, qos, retain)
            return
        limits = self._limits
        size = len(message.payload)
        if (limits.max_queued and len(self.queue) >= limits.max_queued) or (
            limits.max_queued_bytes and self._queued_bytes + size > limits.max_queued_bytes
        ):
            self._stats.dropped += 1
            return
        queue = self.queue
        if not queue:
            queue = self.queue = deque()
        queue.append((message, qos, retain))
        self._queued_bytes += size

    def _window_open(self, message: Message) -> bool:
        limits = self._limits
        inflight = len(self.inflight)
        if inflight >= MAX_PACKET_IDS or (limits.max_inflight and inflight >= limits.max_inflight):
            return False
        if limits.max_inflight_bytes and self.inflight and (
            self._inflight_bytes + len(message.payload) > limits.max_inflight_bytes
        ):
            return False
        return True

    def _send_new(self, endpoint: Endpoint, message: Message, qos: int, retain: bool) -> None:
        pid = self._allocate_pid()
        self.inflight[pid] = _Outflight(message, qos, retain)
        self._inflight_bytes += len(message.payload)
        endpoint.send_publish(message, qos, pid, False, retain)

    def _allocate_pid(self) -> int:
        pid = self._next_pid
        inflight = self.inflight
        while True:
            pid = pid + 1 if pid < 65535 else 1
            if pid not in inflight:
                self._next_pid = pid
                return pid

    def pump(self) -> None:
        """Move queued messages into the inflight window while it has room."""
        endpoint = self.endpoint
        queue = self.queue
        while queue and endpoint is not None:
            message, qos, retain = queue[0]
            if not self._window_open(message):
                return
            queue.popleft()  # type: ignore[union-attr]
            self._queued_bytes -= len(message.payload)
            self._send_new(endpoint, message, qos, retain)
            endpoint = self.endpoint

    def acknowledge(self, pid: int) -> bool:
        """PUBACK for QoS 1, PUBCOMP for QoS 2: the delivery is finished."""
        out = self.inflight.pop(pid, None)
        if out is None:
            return False
        self._inflight_bytes -= len(out.message.payload)
        if self.queue:
            self.pump()
        return True

    def received_pubrec(self, pid: int) -> bool:
        """QoS 2 step two; returns False for an unknown packet id."""
        out = self.inflight.get(pid)
        if out is None or out.qos != 2:
            return False
        out.state = AWAIT_COMP
        return True

    def resume(self, endpoint: Endpoint) -> None:
        """Attach a new endpoint and redeliver what is inflight (with DUP), then the queue."""
        self.endpoint = endpoint
        self.disconnected_at = None
        for pid, out in list(self.inflight.items()):
            if out.state == AWAIT_COMP:
                endpoint.send_pubrel(pid)
            else:
                endpoint.send_publish(out.message, out.qos, pid, True, out.retain)
        self.pump()

    # inbound QoS 2 -------------------------------------------------------------

    def inbound_qos2_received(self, pid: int) -> bool:
        """Record an inbound QoS 2 PUBLISH; False when it is a duplicate before PUBREL."""
        pending = self.inbound_qos2
        if pid in pending:
            return False
        if not pending:
            pending = self.inbound_qos2 = set()
        pending.add(pid)  # type: ignore[union-attr]
        return True

    def inbound_qos2_released(self, pid: int) -> None:
        if pid in self.inbound_qos2:
            self.inbound_qos2.discard(pid)  # type: ignore[union-attr]

    # limits --------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self.queue)

    def clear_state(self) -> None:
        """Forget everything but identity (clean session start)."""
        self.subscriptions.clear()
        self.inflight.clear()
        self.queue = ()
        self.inbound_qos2 = ()
        self._inflight_bytes = 0
        self._queued_bytes = 0
