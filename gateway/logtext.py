"""Log lines safe from what clients send: ``clip`` for client-chosen strings, and
``Summary`` for events anonymous peers can cause at will.

Neutral on purpose (no configuration, no protocol): the hub and every protocol use
the same two pieces.
"""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel

CLIP = 200


def clip(value: object, limit: int = CLIP) -> str:
    """``value`` as it may appear in a log line: cut to ``limit`` characters, and
    non-printable characters (newline, ESC, BEL, ...) and backslashes escaped as
    ``repr()`` writes them, so a client cannot forge, split or colour lines."""
    text = value if isinstance(value, str) else str(value)
    more = len(text) - limit
    if more > 0:
        text = text[:limit]
    if not text.isprintable() or "\\" in text:
        text = "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in text)
    return f"{text}...({more} more)" if more > 0 else text


HOSTS_TRACKED = 10_000


class Summary:
    """Events logged one by one up to ``burst`` per ``interval`` seconds; beyond, counted
    by kind and source host and logged as one line when the interval ends.

    For what anonymous peers cause at will (garbage, CONNECT timeouts): a flood of
    them costs a bounded number of lines, however many connections it makes.
    """

    def __init__(
        self, log: Logger, clock: IReactorTime, what: str, burst: int = 10, interval: float = 10.0
    ) -> None:
        self.log = log
        self.clock = clock
        self.what = what
        self.burst = burst
        self.interval = interval
        self.logged = 0
        self.window_end = 0.0
        self.kinds: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        self._timer: IDelayedCall | None = None

    def event(self, kind: str, host: str, level: LogLevel, fmt: str, **fields: Any) -> None:
        """Log ``fmt`` now, or count it under ``kind`` for the summary."""
        now = self.clock.seconds()
        if now >= self.window_end:
            self.flush()
            self.window_end = now + self.interval
            self.logged = 0
        if self.logged < self.burst:
            self.logged += 1
            self.log.emit(level, fmt, **fields)
            return
        self.kinds[kind] += 1
        if host in self.hosts or len(self.hosts) < HOSTS_TRACKED:
            self.hosts[host] += 1
        if self._timer is None:
            self._timer = self.clock.callLater(self.window_end - now, self.flush)

    def flush(self) -> None:
        """Log what was counted since the last summary, if anything."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self.kinds:
            return
        total = sum(self.kinds.values())
        kinds = ", ".join(f"{kind}: {n}" for kind, n in self.kinds.most_common())
        host, most = self.hosts.most_common(1)[0] if self.hosts else ("?", 0)
        self.log.warn(
            "{total} more {what} in the last {interval:.0f} s ({kinds}); from {hosts} "
            "addresses, {most} from {host}",
            total=total, what=self.what, interval=self.interval, kinds=kinds,
            hosts=len(self.hosts), most=most, host=host,
        )
        self.kinds.clear()
        self.hosts.clear()


_summaries: weakref.WeakKeyDictionary[Any, dict[str, Summary]] = weakref.WeakKeyDictionary()


def summary_for(clock: IReactorTime, what: str, log: Logger) -> Summary:
    """The summary of ``what`` shared by everything that runs on ``clock``."""
    table = _summaries.setdefault(clock, {})
    summary = table.get(what)
    if summary is None:
        summary = table[what] = Summary(log, clock, what)
    return summary
