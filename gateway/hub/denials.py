"""ACL refusals: counted in ``$SYS`` and logged, but never flooding the log.

A client retrying a forbidden publish thousands of times a second must not write
thousands of lines: each (client, access, topic) is logged once per ``REPEAT_AFTER``
seconds, and the lines that pass go through a ``gateway.logtext.Summary`` (a burst
per interval, then one line counting the rest).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogLevel

from gateway.logtext import clip, summary_for

REPEAT_AFTER = 60.0
MAX_REMEMBERED = 10_000


class DenialLog:
    """Counts and logs ACL denials of publishes and subscriptions."""

    log = Logger()

    def __init__(self, stats: Any, clock: Any) -> None:
        self.stats = stats
        self.clock = clock
        self._seen: dict[tuple[str, str, str], float] = {}

    def denied(self, client: Any, access: str, topic: str) -> None:
        if access == "write":
            self.stats.denied_publish += 1
        else:
            self.stats.denied_subscribe += 1
        now = self.clock.seconds()
        key = (client.client_id, access, topic)
        last = self._seen.get(key)
        if last is not None and now - last < REPEAT_AFTER:
            return
        if len(self._seen) >= MAX_REMEMBERED:
            self._seen.clear()
        self._seen[key] = now
        what = "PUBLISH" if access == "write" else "SUBSCRIBE"
        summary_for(self.clock, "ACL denials", DenialLog.log).event(
            what, client.peer.rpartition(":")[0], LogLevel.warn,
            "denied {what} to {topic} for {client_id} (username {username}, {protocol} from {peer})",
            what=what, topic=clip(topic), client_id=clip(client.client_id),
            username=clip(client.username), protocol=client.protocol, peer=client.peer,
        )
