"""A token bucket per source address, for anything that limits a rate per peer.

Neutral (no protocol, no configuration): MQTT's ``max_connection_rate``
(``gateway.ratelimit``) and the DTLS handshake limit (``gateway.dtls``) share it.
"""

from __future__ import annotations

from typing import Any

MAX_TRACKED = 100_000


class RateLimiter:
    """``allow(host)`` answers whether one more event from *host* fits the rate:
    COUNT may arrive at once, then one more every SECONDS/COUNT. The table of
    addresses forgets idle entries, so its size stays bounded by the recent senders."""

    def __init__(self, count: int, period: float, clock: Any) -> None:
        self.capacity = float(count)
        self.refill = count / period          # tokens per second
        self.clock = clock
        self.buckets: dict[Any, tuple[float, float]] = {}   # host -> (tokens, at)
        self.refused = 0

    def allow(self, host: Any) -> bool:
        now = self.clock.seconds()
        tokens, at = self.buckets.get(host, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.refill)
        if len(self.buckets) >= MAX_TRACKED:
            self._forget_full(now)
        if tokens < 1.0:
            self.buckets[host] = (tokens, now)
            self.refused += 1
            return False
        self.buckets[host] = (tokens - 1.0, now)
        return True

    def _forget_full(self, now: float) -> None:
        full = self.capacity / self.refill
        self.buckets = {h: (t, a) for h, (t, a) in self.buckets.items() if now - a < full}
        if len(self.buckets) >= MAX_TRACKED:
            self.buckets.clear()
