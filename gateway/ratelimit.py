"""Connection-rate limiting per source address (``max_connection_rate COUNT[/SECONDS]``).

A token bucket per address: COUNT connections may arrive at once, then one more every
SECONDS/COUNT. A connection over the rate is closed before any protocol state exists,
so a flood from one address costs an accept and a close, nothing more. The table of
addresses forgets idle entries, so its size stays bounded by the recent senders.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from gateway.mqtt.transport import MQTTFactory, MQTTProtocol

MAX_TRACKED = 100_000


class RateLimiter:
    """``allow(host)`` answers whether one more connection from *host* fits the rate."""

    def __init__(self, count: int, period: float, clock: Any) -> None:
        self.capacity = float(count)
        self.refill = count / period          # tokens per second
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}   # host -> (tokens, at)
        self.refused = 0

    def allow(self, host: str) -> bool:
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


class RateLimitedMQTTFactory(MQTTFactory):
    """``MQTTFactory`` that refuses connections above the listener's rate per address."""

    log = Logger()

    def __init__(self, *args: Any, rate: tuple[int, float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limiter = self.limiter = RateLimiter(rate[0], rate[1], self.clock)
        self.hub.probe("rate_limited", "counter", "Answers delayed or refused by a rate limit",
                       ("protocol", "limit"), lambda: [(("mqtt", "connection_rate"), limiter.refused)],
                       f"max_connection_rate:{id(self)}")

    def buildProtocol(self, addr: Any) -> MQTTProtocol | None:  # type: ignore[override]
        host = getattr(addr, "host", str(addr))
        if not self.limiter.allow(host):
            if self.limiter.refused == 1 or self.limiter.refused % 1000 == 0:
                self.log.warn(
                    "refusing connections from {host}: above max_connection_rate "
                    "({refused} refused so far on this listener)",
                    host=host, refused=self.limiter.refused,
                )
            return None
        return super().buildProtocol(addr)
