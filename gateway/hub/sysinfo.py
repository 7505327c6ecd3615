"""$SYS counters and their periodic publication, with Mosquitto's topic names.

Counters are plain attribute increments on the hot path; formatting and publishing
happen only every ``sys_interval`` seconds, as Mosquitto's ``sys_tree.c`` does.

Besides ``$SYS``, the same counters feed the HTTP API, Prometheus and the status page
(``gateway.web``), which read them when asked, never on the message path. What only a
protocol or a service knows (a serial line's state, a CoAP rate limit, a store's
commit times) it registers here as a *probe*: a named family of samples read at
scrape time (``Stats.probe``), or a *section* of the status page (``Stats.section``).
Neither registry imports anything of the protocols, and the web side none of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from gateway import __version__
from gateway.hub.api import Message

if TYPE_CHECKING:
    from gateway.hub.hub import Hub


#: PUBLISH counters are indexed by QoS: 0, 1, 2, then MQTT-SN's QoS -1 in the last
#: slot, which ``counts[-1]`` reaches as it is.
QOS_SLOTS = 4
QOS_LABELS = ("0", "1", "2", "-1")

#: A probe sample: label values (in the probe's label order) and a value; for a
#: histogram the value is ``(buckets, sum)``, buckets being (upper bound, cumulative
#: count) pairs ending with ``float("inf")``.
Sample = tuple[tuple[str, ...], Any]


class Traffic:
    """One protocol's PUBLISH messages by QoS: received from clients, sent to them,
    and dropped (queue or backlog full, too large for the client)."""

    __slots__ = ("received", "sent", "dropped")

    def __init__(self) -> None:
        self.received = [0] * QOS_SLOTS
        self.sent = [0] * QOS_SLOTS
        self.dropped = [0] * QOS_SLOTS


@dataclass
class Probe:
    """A family of samples that an owner outside the hub knows how to read.

    ``kind`` is ``counter``, ``gauge`` or ``histogram``; several owners (one per
    serial line, per listener) may feed one family, each under its own ``source``.
    """

    kind: str
    help: str
    labels: tuple[str, ...]
    readers: dict[str, Callable[[], Iterable[Sample]]] = field(default_factory=dict)

    def samples(self) -> list[Sample]:
        """Every reader's samples; counters and gauges with the same labels from several
        readers (two listeners with the same limit) add up."""
        if self.kind == "histogram":
            return [sample for read in list(self.readers.values()) for sample in read()]
        merged: dict[tuple[str, ...], Any] = {}
        for read in list(self.readers.values()):
            for labels, value in read():
                merged[labels] = merged.get(labels, 0) + value
        return list(merged.items())


class Stats:
    """Counters every channel and the hub increment."""

    __slots__ = (
        "messages_received",
        "messages_sent",
        "traffic",
        "expired",
        "denied_publish",
        "denied_subscribe",
        "bytes_received",
        "bytes_sent",
        "clients_connected",
        "clients_maximum",
        "clients_expired",
        "started",
        "extra",
        "probes",
        "sections",
    )

    def __init__(self) -> None:
        self.messages_received = 0
        self.messages_sent = 0
        # Protocol name -> its PUBLISH counters; a channel keeps its protocol's entry.
        self.traffic: dict[str, Traffic] = {}
        self.expired = 0  # queued messages whose expiry passed before their turn
        self.denied_publish = 0
        self.denied_subscribe = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.clients_connected = 0
        self.clients_maximum = 0
        self.clients_expired = 0  # persistent sessions ended by their expiry
        self.started = time.monotonic()
        # Protocols add their own counters here: name -> zero-argument callable.
        self.extra: dict[str, Callable[[], int | str]] = {}
        self.probes: dict[str, Probe] = {}
        self.sections: dict[str, dict[str, Callable[[], Any]]] = {}

    def traffic_of(self, protocol: str) -> Traffic:
        """The counters of ``protocol`` (created on first use)."""
        entry = self.traffic.get(protocol)
        if entry is None:
            entry = self.traffic[protocol] = Traffic()
        return entry

    # Totals over every protocol, as $SYS shows them. The setters are for code that
    # counts without naming a protocol: the difference goes to "other".

    @property
    def publish_received(self) -> int:
        return sum(sum(t.received) for t in self.traffic.values())

    @publish_received.setter
    def publish_received(self, value: int) -> None:
        self.traffic_of("other").received[0] += value - self.publish_received

    @property
    def publish_sent(self) -> int:
        return sum(sum(t.sent) for t in self.traffic.values())

    @publish_sent.setter
    def publish_sent(self, value: int) -> None:
        self.traffic_of("other").sent[0] += value - self.publish_sent

    @property
    def dropped(self) -> int:
        return sum(sum(t.dropped) for t in self.traffic.values())

    @dropped.setter
    def dropped(self, value: int) -> None:
        self.traffic_of("other").dropped[0] += value - self.dropped

    def probe(self, name: str, kind: str, help: str, labels: tuple[str, ...],
              read: Callable[[], Iterable[Sample]], source: str = "") -> None:
        """Register (or replace, for the same ``source``) a reader of family ``name``."""
        entry = self.probes.get(name)
        if entry is None:
            entry = self.probes[name] = Probe(kind, help, tuple(labels))
        elif (entry.kind, entry.labels) != (kind, tuple(labels)):
            raise ValueError(f"probe {name} is already a {entry.kind} with labels {entry.labels}")
        entry.readers[source] = read

    def unprobe(self, source: str) -> None:
        """Forget every reader and status section registered under ``source``."""
        for entry in self.probes.values():
            entry.readers.pop(source, None)
        for readers in self.sections.values():
            readers.pop(source, None)

    def section(self, name: str, read: Callable[[], Any], source: str = "") -> None:
        """A part of the status page: ``read()`` returns one JSON-able item of the list
        shown under ``name`` (for instance one serial line and its radios)."""
        self.sections.setdefault(name, {})[source] = read

    def section_items(self, name: str) -> list[Any]:
        return [read() for read in list(self.sections.get(name, {}).values())]


class TopicMeter:
    """Messages per topic, counted only while someone watches (the status page turns
    it on for a while after each look), so publishing pays nothing otherwise. At most
    ``limit`` topics are told apart; the rest add up under ``None``."""

    __slots__ = ("counts", "limit")

    def __init__(self, limit: int = 10_000) -> None:
        self.counts: dict[str | None, int] = {}
        self.limit = limit

    def count(self, topic: str) -> None:
        counts = self.counts
        n = counts.get(topic)
        if n is not None:
            counts[topic] = n + 1
        elif len(counts) < self.limit:
            counts[topic] = 1
        else:
            counts[None] = counts.get(None, 0) + 1


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
            "clients/expired": s.clients_expired,
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
