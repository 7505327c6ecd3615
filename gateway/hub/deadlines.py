"""One timer for many deadlines: session expiry and delayed wills.

Ten thousand disconnected sessions must not cost ten thousand DelayedCalls, nor a
scan every second: deadlines sit in a heap, and a single DelayedCall waits for the
earliest. Rescheduling or cancelling a key leaves its old heap entry behind, which is
skipped when it surfaces (its sequence number no longer matches).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable, Hashable

from twisted.internet.interfaces import IReactorTime


class Deadlines:
    """``schedule(key, when, fn)`` calls ``fn()`` at wall-clock ``when`` unless the key
    is cancelled or rescheduled first."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Hashable]] = []
        self._current: dict[Hashable, tuple[int, float, Callable[[], Any]]] = {}
        self._seq = itertools.count()
        self._call: Any = None
        self._call_at = 0.0

    def __len__(self) -> int:
        return len(self._current)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._current

    def when(self, key: Hashable) -> float | None:
        entry = self._current.get(key)
        return entry[1] if entry is not None else None

    def schedule(self, key: Hashable, when: float, fn: Callable[[], Any]) -> None:
        seq = next(self._seq)
        self._current[key] = (seq, when, fn)
        heapq.heappush(self._heap, (when, seq, key))
        self._arm()

    def cancel(self, key: Hashable) -> bool:
        return self._current.pop(key, None) is not None

    def fire_now(self, key: Hashable) -> bool:
        """Run a pending key's callback at once (its deadline no longer matters)."""
        entry = self._current.pop(key, None)
        if entry is None:
            return False
        entry[2]()
        return True

    def _arm(self) -> None:
        heap = self._heap
        while heap and self._stale(heap[0]):
            heapq.heappop(heap)
        if not heap:
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
            return
        when = heap[0][0]
        if self._call is not None and self._call.active():
            if self._call_at <= when:
                return
            self._call.cancel()
        self._call_at = when
        self._call = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._fire)

    def _stale(self, entry: tuple[float, int, Hashable]) -> bool:
        current = self._current.get(entry[2])
        return current is None or current[0] != entry[1]

    def _fire(self) -> None:
        self._call = None
        now = self.clock.seconds()
        heap = self._heap
        due: list[Callable[[], Any]] = []
        while heap and heap[0][0] <= now:
            when, seq, key = heapq.heappop(heap)
            current = self._current.get(key)
            if current is not None and current[0] == seq:
                del self._current[key]
                due.append(current[2])
        for fn in due:
            fn()
        self._arm()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
