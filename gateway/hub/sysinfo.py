"""$SYS counters and their periodic publication, with Mosquitto's topic names.

Counters are plain attribute increments on the hot path; formatting and publishing
happen only every ``sys_interval`` seconds, as Mosquitto's ``sys_tree.c`` does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from gateway import __version__
from gateway.hub.api import Message

if TYPE_CHECKING:
    from gateway.hub.hub import Hub


class Stats:
    """Counters every channel and the hub increment."""

    __slots__ = (
        "messages_received",
        "messages_sent",
        "publish_received",
        "publish_sent",
        "dropped",
        "expired",
        "denied_publish",
        "denied_subscribe",
        "bytes_received",
        "bytes_sent",
        "clients_connected",
        "clients_maximum",
        "started",
        "extra",
    )

    def __init__(self) -> None:
        self.messages_received = 0
        self.messages_sent = 0
        self.publish_received = 0
        self.publish_sent = 0
        self.dropped = 0
        self.expired = 0  # queued messages whose expiry passed before their turn
        self.denied_publish = 0
        self.denied_subscribe = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.clients_connected = 0
        self.clients_maximum = 0
        self.started = time.monotonic()
        # Protocols add their own counters here: name -> zero-argument callable.
        self.extra: dict[str, Callable[[], int | str]] = {}


class SysTopics:
    """Builds the $SYS tree and publishes the values that changed."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._last: dict[str, bytes] = {}

    def values(self) -> dict[str, int | str]:
        hub = self.hub
        s = hub.stats
        sessions = hub.sessions
        connected = s.clients_connected
        total = len(sessions)
        uptime = int(time.monotonic() - s.started)
        values: dict[str, int | str] = {
            "version": f"mqttgateway version {__version__}",
            "uptime": f"{uptime} seconds",
            "clients/connected": connected,
            "clients/active": connected,
            "clients/total": total,
            "clients/disconnected": total - connected,
            "clients/inactive": total - connected,
            "clients/maximum": s.clients_maximum,
            "messages/received": s.messages_received,
            "messages/sent": s.messages_sent,
            "publish/messages/received": s.publish_received,
            "publish/messages/sent": s.publish_sent,
            "publish/messages/dropped": s.dropped,
            "publish/messages/expired": s.expired,
            "publish/messages/denied": s.denied_publish,
            "subscriptions/denied": s.denied_subscribe,
            "messages/stored": len(hub.retained_store) + hub.queued_messages(),
            "store/messages/count": len(hub.retained_store) + hub.queued_messages(),
            "subscriptions/count": hub.trie.count,
            "retained messages/count": len(hub.retained_store),
            "load/bytes/received": s.bytes_received,
            "load/bytes/sent": s.bytes_sent,
        }
        for name, fn in s.extra.items():
            values[name] = fn()
        return values

    def publish(self) -> None:
        """Publish (retained) every value that changed since the last call."""
        hub = self.hub
        last = self._last
        for name, value in self.values().items():
            payload = str(value).encode()
            topic = f"$SYS/broker/{name}"
            if last.get(topic) != payload:
                last[topic] = payload
                hub.publish(Message(topic, payload, 0, True))
