"""Acknowledgements held until what they acknowledge is durable.

With persistence on, a channel may tell its client "I have it" (MQTT's PUBACK and
PUBREC, MQTT-SN's PUBACK, REGACK, ...) only once the store has committed what that
answer covers: the journal's ``barrier()`` is the batch everything reported so far
is in. The
answers of one client also keep their order, so a later one never overtakes an
earlier one still waiting for its commit. Without persistence every answer goes out
at once, for the price of one call.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from gateway.hub.hub import Hub
    from gateway.hub.persistence import Batch


class _Call:
    __slots__ = ("call",)

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call


class DurableAcks:
    """One client's answers, each written by ``write`` once durable, in order.

    An answer waits for the store's batch that held the latest change when it was
    given (``Journal.barrier``); a client registers one call per batch, however many
    of its answers the batch holds, and each call writes every answer at the head
    of the queue whose batch is durable.
    """

    __slots__ = ("_hub", "_write", "_queue", "_batch")

    def __init__(self, hub: Hub, write: Callable[[Any], None]) -> None:
        self._hub = hub
        self._write = write
        self._queue: deque[tuple[Any, Batch | None]] | None = None
        self._batch: Batch | None = None  # the last batch a call was registered with

    def send(self, item: Any) -> None:
        """Write ``item`` now if nothing is pending, else after what it depends on."""
        queue = self._queue
        journal = self._hub.journal
        batch = None if journal is None else journal.barrier()
        if batch is None and not queue:
            self._emit(item)
            return
        if queue is None:
            queue = self._queue = deque()
        queue.append((item, batch))
        if batch is not None and batch is not self._batch:
            self._batch = batch
            batch.then(self._release)

    def run(self, call: Callable[[], Any]) -> None:
        """``call()`` in the answers' order, once everything reported so far is
        durable: an answer with more to do once it is written (a SUBACK, then the
        retained messages the subscription brings)."""
        self.send(_Call(call))

    def _emit(self, item: Any) -> None:
        if type(item) is _Call:
            item.call()
        else:
            self._write(item)

    def pending(self) -> bool:
        return bool(self._queue)

    def drop(self) -> None:
        """The connection ended: what is still waiting is never written."""
        self._queue = None

    def _release(self) -> None:
        queue = self._queue
        while queue and (queue[0][1] is None or queue[0][1].done):
            self._emit(queue.popleft()[0])
            queue = self._queue  # (a write may end the connection)
        if not queue:
            self._queue = None
