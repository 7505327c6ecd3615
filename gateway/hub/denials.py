"""ACL refusals: counted in ``$SYS`` and logged, but never flooding the log.

A client retrying a forbidden publish thousands of times a second must not write
thousands of lines: each (client, access, topic) is logged once per ``REPEAT_AFTER``
seconds, and at most ``BURST`` lines go out per ``WINDOW`` seconds overall; what is
held back is summed up in one line when the window ends.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger

REPEAT_AFTER = 60.0
WINDOW = 10.0
BURST = 20
MAX_REMEMBERED = 10_000
MAX_SHOWN = 200  # characters of a client-supplied string in a log line


def shown(text: str | None, limit: int = MAX_SHOWN) -> str:
    """A client-supplied string made safe for one log line: escaped and cut."""
    if text is None:
        return "None"
    out = text.encode("unicode_escape").decode("ascii")
    return out if len(out) <= limit else out[:limit] + f"...({len(text)} chars)"


class DenialLog:
    """Counts and logs ACL denials of publishes and subscriptions."""

    log = Logger()

    def __init__(self, stats: Any, clock: Any = time.monotonic) -> None:
        self.stats = stats
        self.clock = clock
        self._seen: dict[tuple[str, str, str], float] = {}
        self._window_start = 0.0
        self._in_window = 0
        self._held = 0

    def denied(self, client: Any, access: str, topic: str) -> None:
        if access == "write":
            self.stats.denied_publish += 1
        else:
            self.stats.denied_subscribe += 1
        now = self.clock()
        key = (client.client_id, access, topic)
        last = self._seen.get(key)
        if last is not None and now - last < REPEAT_AFTER:
            return
        if now - self._window_start >= WINDOW:
            if self._held:
                self.log.warn("{count} more ACL denials not logged in the last {window:.0f} s",
                              count=self._held, window=WINDOW)
            self._window_start = now
            self._in_window = 0
            self._held = 0
        if self._in_window >= BURST:
            self._held += 1
            return
        if len(self._seen) >= MAX_REMEMBERED:
            self._seen.clear()
        self._seen[key] = now
        self._in_window += 1
        self.log.warn(
            "denied {what} to {topic} for {client_id} (username {username}, {protocol} from {peer})",
            what="PUBLISH" if access == "write" else "SUBSCRIBE",
            topic=shown(topic), client_id=shown(client.client_id), username=shown(client.username),
            protocol=client.protocol, peer=client.peer,
        )
