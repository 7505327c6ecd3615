"""``/api/status``: what the status page shows, as one JSON document it polls.

Clients (id, protocol, transport, address, connected since, subscriptions), message
counts per protocol (the page turns their differences into a messages/s chart), the
busiest topics with their rates, and the sections protocols registered (serial lines
and their radios). Topics are counted only while the page is being looked at: each
request switches the hub's ``TopicMeter`` on for ``WATCH`` seconds.
"""

from __future__ import annotations

import time
from typing import Any

from gateway import __version__
from gateway.hub.sysinfo import TopicMeter
from gateway.web.metrics import client_transport

WATCH = 60.0          # seconds the topic meter stays on after a request
MAX_CLIENTS = 500     # rows of the clients table
MAX_FILTERS = 20      # subscriptions listed per client
MAX_TOPICS = 50       # rows of the topics table
MIN_RATE_WINDOW = 1.0  # seconds between the snapshots a rate is computed from


class TopicRates:
    """Switches the topic meter on while watched and turns its counts into rates."""

    def __init__(self, hub: Any, clock: Any) -> None:
        self.hub = hub
        self.clock = clock
        self._off: Any = None
        self._last: tuple[float, dict[str | None, int]] | None = None
        self._rates: dict[str | None, float] = {}

    def watch(self) -> None:
        hub = self.hub
        if hub.topic_meter is None:
            hub.topic_meter = TopicMeter()
            self._last = None
            self._rates = {}
        if self._off is not None and self._off.active():
            self._off.reset(WATCH)
        else:
            self._off = self.clock.callLater(WATCH, self.stop)

    def stop(self) -> None:
        if self._off is not None and self._off.active():
            self._off.cancel()
        self._off = None
        self.hub.topic_meter = None

    def table(self) -> list[dict[str, Any]]:
        meter = self.hub.topic_meter
        if meter is None:
            return []
        now = self.clock.seconds()
        counts = dict(meter.counts)
        last = self._last
        if last is None:
            self._last = (now, counts)
        elif now - last[0] >= MIN_RATE_WINDOW:
            span = now - last[0]
            before = last[1]
            self._rates = {t: (n - before.get(t, 0)) / span for t, n in counts.items()}
            self._last = (now, counts)
        rates = self._rates
        # The gateway's own $SYS updates are not what an operator looks for here.
        rows = sorted(((t, n) for t, n in counts.items() if t is None or not t.startswith("$SYS/")),
                      key=lambda item: (-rates.get(item[0], 0.0), -item[1]))
        return [{"topic": topic if topic is not None else "(other topics)", "messages": n,
                 "rate": round(rates.get(topic, 0.0), 2)} for topic, n in rows[:MAX_TOPICS]]


def clients(hub: Any) -> dict[str, Any]:
    sessions = list(hub.sessions.values())
    online = [s for s in sessions if s.endpoint is not None]
    online.sort(key=lambda s: (s.client.protocol, s.client_id))
    rows = []
    for session in online[:MAX_CLIENTS]:
        client = session.client
        filters = list(session.subscriptions)
        rows.append({
            "id": client.client_id, "protocol": client.protocol,
            "transport": client_transport(client), "address": client.peer,
            "username": client.username, "connected_since": session.connected_at,
            "subscriptions": filters[:MAX_FILTERS], "subscription_count": len(filters),
            "queued": len(session.queue), "inflight": len(session.inflight),
        })
    return {"connected": len(online), "offline": len(sessions) - len(online), "rows": rows}


def protocols(hub: Any) -> dict[str, dict[str, int]]:
    return {name: {"received": sum(t.received), "sent": sum(t.sent), "dropped": sum(t.dropped)}
            for name, t in sorted(hub.stats.traffic.items())}


def status(hub: Any, rates: TopicRates) -> dict[str, Any]:
    """The whole document; ``rates`` is switched on (or kept on) by the look."""
    rates.watch()
    stats = hub.stats
    return {
        "version": __version__,
        "time": hub.now(),
        "uptime": int(time.monotonic() - stats.started),
        "clients": clients(hub),
        "protocols": protocols(hub),
        "topics": rates.table(),
        "totals": {
            "retained": len(hub.retained_store), "subscriptions": hub.trie.count,
            "bytes_received": stats.bytes_received, "bytes_sent": stats.bytes_sent,
        },
        "serial": hub.stats.section_items("serial"),
    }
