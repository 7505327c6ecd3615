"""DTLS counters, one set per hub for all its DTLS listeners, under ``$SYS/broker/dtls/``."""

from __future__ import annotations

import weakref
from typing import Any

_by_hub: weakref.WeakKeyDictionary[Any, DTLSStats] = weakref.WeakKeyDictionary()

SYS = (
    ("dtls/cookies/sent", "cookies"),
    ("dtls/handshakes/started", "started"),
    ("dtls/handshakes/completed", "completed"),
    ("dtls/handshakes/failed", "failed"),
    ("dtls/handshakes/rate limited", "limited"),
    ("dtls/handshakes/refused", "refused"),
    ("dtls/sessions", "sessions"),
    ("dtls/sessions/expired", "expired"),
    ("dtls/sessions/errors", "errors"),
    ("dtls/datagrams/dropped", "dropped"),
)


class DTLSStats:
    """Plain attributes, incremented on the hot path by ``DTLSServer``."""

    __slots__ = tuple(attr for _, attr in SYS)

    def __init__(self) -> None:
        self.cookies = 0     # HelloVerifyRequests sent (ClientHellos without a valid cookie)
        self.started = 0     # handshakes past the cookie
        self.completed = 0
        self.failed = 0      # handshakes that ended in an error or timed out
        self.limited = 0     # ClientHellos dropped by the per-source rate limit
        self.refused = 0     # verified ClientHellos dropped: too many handshakes or sessions
        self.sessions = 0    # live sessions (handshaking or established)
        self.expired = 0     # sessions closed for idleness
        self.errors = 0      # established sessions ended by an error or alert
        self.dropped = 0     # datagrams from unknown addresses that were not ClientHellos

    def register(self, hub: Any) -> None:
        for name, attr in SYS:
            hub.extra_counter(name, lambda attr=attr: getattr(self, attr))
        hub.probe("dtls_handshakes", "counter", "DTLS handshakes by outcome", ("outcome",),
                  lambda: [(("completed",), self.completed), (("failed",), self.failed),
                           (("rate_limited",), self.limited), (("refused",), self.refused)],
                  "dtls")
        hub.probe("dtls_sessions", "gauge", "Live DTLS sessions", (),
                  lambda: [((), self.sessions)], "dtls")


def stats_for(hub: Any) -> DTLSStats:
    """The hub's DTLS counters, registered in its ``$SYS`` tree on first use."""
    stats = _by_hub.get(hub)
    if stats is None:
        stats = _by_hub[hub] = DTLSStats()
        stats.register(hub)
    return stats
