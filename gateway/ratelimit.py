"""Connection-rate limiting per source address (``max_connection_rate COUNT[/SECONDS]``).

A token bucket per address (``gateway.tokenbucket``): COUNT connections may arrive at
once, then one more every SECONDS/COUNT. A connection over the rate is closed before any protocol state exists,
so a flood from one address costs an accept and a close, nothing more. The table of
addresses forgets idle entries, so its size stays bounded by the recent senders.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from gateway.mqtt.transport import MQTTFactory, MQTTProtocol
from gateway.tokenbucket import RateLimiter

__all__ = ["RateLimitedMQTTFactory", "RateLimiter"]


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
