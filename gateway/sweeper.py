"""One timer for many deadlines: connect timeouts and keepalives.

A DelayedCall per connection costs about 700 bytes and a heap operation each time it
is rescheduled; a sweep once a second over the connections that have a deadline costs
a set entry each. Deadlines are checked with one-second granularity, as Mosquitto's
main loop does.
"""

from __future__ import annotations

import weakref
from typing import Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

INTERVAL = 1.0


class Sweepable(Protocol):
    def sweep(self, now: float) -> None:
        """Check this item's deadline; may call ``Sweeper.discard`` on itself."""


class Sweeper:
    """Calls ``sweep(now)`` on every registered item once per interval while any exist."""

    def __init__(self, clock: IReactorTime, interval: float = INTERVAL) -> None:
        self.clock = clock
        self.interval = interval
        self.items: set[Sweepable] = set()
        self._loop: LoopingCall | None = None

    def add(self, item: Sweepable) -> None:
        self.items.add(item)
        if self._loop is None:
            self._loop = LoopingCall(self._sweep)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False)

    def discard(self, item: Sweepable) -> None:
        self.items.discard(item)

    def _sweep(self) -> None:
        items = self.items
        if not items:
            loop, self._loop = self._loop, None
            if loop is not None:
                loop.stop()
            return
        now = self.clock.seconds()
        for item in list(items):
            item.sweep(now)


_sweepers: weakref.WeakKeyDictionary[object, Sweeper] = weakref.WeakKeyDictionary()


def sweeper_for(clock: IReactorTime) -> Sweeper:
    """The sweeper shared by everything that runs on ``clock``."""
    sweeper = _sweepers.get(clock)
    if sweeper is None:
        sweeper = _sweepers[clock] = Sweeper(clock)
    return sweeper
