"""Acknowledgements held until what they acknowledge is durable.

With persistence on, a channel may tell its client "I have it" (MQTT's PUBACK and
PUBREC, MQTT-SN's PUBACK, REGACK, ...) only once the store has committed what that
answer covers: ``Hub.durable()`` gives a barrier for everything reported so far. The
answers of one client also keep their order, so a later one never overtakes an
earlier one still waiting for its commit. Without persistence every answer goes out
at once, for the price of one call.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from gateway.hub.hub import Hub


class DurableAcks:
    """One client's answers, each written by ``write`` once durable, in order."""

    __slots__ = ("_hub", "_write", "_queue")

    def __init__(self, hub: Hub, write: Callable[[Any], None]) -> None:
        self._hub = hub
        self._write = write
        self._queue: deque[list[Any]] | None = None

    def send(self, item: Any) -> None:
        """Write ``item`` now if nothing is pending, else after what it depends on."""
        queue = self._queue
        if not queue and self._hub.journal is None:
            self._write(item)  # no store: at once, without asking for a barrier
            return
        barrier = self._hub.durable()
        if barrier is None and not queue:
            self._write(item)
            return
        if queue is None:
            queue = self._queue = deque()
        entry = [item, barrier is None]
        queue.append(entry)
        if barrier is not None:
            barrier.addCallback(self._durable, queue, entry)

    def pending(self) -> bool:
        return bool(self._queue)

    def drop(self) -> None:
        """The connection ended: what is still waiting is never written."""
        self._queue = None

    def _durable(self, _: Any, queue: deque[list[Any]], entry: list[Any]) -> None:
        entry[1] = True
        if queue is not self._queue:
            return
        while queue and queue[0][1]:
            self._write(queue.popleft()[0])
        if not queue:
            self._queue = None
