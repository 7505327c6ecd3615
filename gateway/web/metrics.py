"""``/metrics``: the gateway in Prometheus' text format, through prometheus_client.

``GatewayCollector`` computes every family when Prometheus scrapes, from the hub's
counters (``hub.stats``), its sessions and the probes that protocols and services
registered (``gateway.hub.sysinfo.Probe``): nothing is counted twice on the message
path. Names start with ``mqttgateway_``; counters end in ``_total``.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from prometheus_client.core import (
    CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from gateway import __version__
from gateway.hub.sysinfo import QOS_LABELS
from gateway.netaddr import transport_label

PREFIX = "mqttgateway_"


def client_transport(client: Any) -> str:
    """The transport label of a client: its own (a serial line) or its listener's."""
    return client.transport or transport_label(client.listener) or "internal"


class GatewayCollector:
    """A prometheus_client collector over one hub (``collect`` runs per scrape)."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        stats = hub.stats
        info = GaugeMetricFamily(PREFIX + "info", "The gateway's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(PREFIX + "uptime_seconds", "Seconds since the gateway started",
                                value=time.monotonic() - stats.started)
        yield from self._sessions()
        yield from self._traffic()
        for name, help, value in (
            ("packets_received", "Packets (and datagrams, CoAP requests) received", stats.messages_received),
            ("packets_sent", "Packets (and datagrams, CoAP notifications) sent", stats.messages_sent),
            ("bytes_received", "Bytes received from clients", stats.bytes_received),
            ("bytes_sent", "Bytes sent to clients", stats.bytes_sent),
            ("messages_expired", "Queued messages dropped when their expiry passed", stats.expired),
            ("publish_denied", "Messages refused by the ACL", stats.denied_publish),
            ("subscribe_denied", "Subscriptions refused by the ACL", stats.denied_subscribe),
            ("sessions_expired", "Persistent sessions ended by their expiry", stats.clients_expired),
        ):
            yield CounterMetricFamily(PREFIX + name, help, value=value)
        for name, help, value in (
            ("clients_maximum", "Most clients connected at once", stats.clients_maximum),
            ("retained_messages", "Retained messages held", len(hub.retained_store)),
            ("subscriptions", "Subscriptions of every session", hub.trie.count),
        ):
            yield GaugeMetricFamily(PREFIX + name, help, value=value)
        yield from self._probes()

    def _sessions(self) -> Iterator[Metric]:
        """Clients by protocol and transport, offline sessions, queued and inflight
        messages: one pass over the sessions."""
        connected: dict[tuple[str, str], int] = {}
        offline: dict[str, int] = {}
        queued: dict[str, int] = {}
        inflight: dict[str, int] = {}
        for session in list(self.hub.sessions.values()):
            client = session.client
            protocol = client.protocol
            if session.endpoint is not None:
                key = (protocol, client_transport(client))
                connected[key] = connected.get(key, 0) + 1
            else:
                offline[protocol] = offline.get(protocol, 0) + 1
            if session.queue:
                queued[protocol] = queued.get(protocol, 0) + len(session.queue)
            if session.inflight:
                inflight[protocol] = inflight.get(protocol, 0) + len(session.inflight)
        family = GaugeMetricFamily(PREFIX + "clients_connected",
                                   "Connected clients (CoAP: observers and connection-mode clients)",
                                   labels=["protocol", "transport"])
        for (protocol, transport), n in sorted(connected.items()):
            family.add_metric([protocol, transport], n)
        yield family
        for name, help, table in (
            ("sessions_offline", "Persistent sessions whose client is away", offline),
            ("queued_messages", "QoS 1/2 messages waiting for a client's window", queued),
            ("inflight_messages", "QoS 1/2 messages sent and not yet acknowledged", inflight),
        ):
            family = GaugeMetricFamily(PREFIX + name, help, labels=["protocol"])
            for protocol, n in sorted(table.items()):
                family.add_metric([protocol], n)
            yield family

    def _traffic(self) -> Iterator[Metric]:
        families = [
            (CounterMetricFamily(PREFIX + "messages_received", "Messages published by clients",
                                 labels=["protocol", "qos"]), "received"),
            (CounterMetricFamily(PREFIX + "messages_sent", "Messages delivered to clients",
                                 labels=["protocol", "qos"]), "sent"),
            (CounterMetricFamily(PREFIX + "messages_dropped",
                                 "Messages dropped: queue or backlog full, too large for the client",
                                 labels=["protocol", "qos"]), "dropped"),
        ]
        traffic = sorted(self.hub.stats.traffic.items())
        for family, attr in families:
            for protocol, counts in traffic:
                for qos, n in zip(QOS_LABELS, getattr(counts, attr)):
                    if n or qos != "-1":
                        family.add_metric([protocol, qos], n)
            yield family

    def _probes(self) -> Iterator[Metric]:
        for name, probe in sorted(self.hub.stats.probes.items()):
            labels = list(probe.labels)
            if probe.kind == "histogram":
                histogram = HistogramMetricFamily(PREFIX + name, probe.help, labels=labels)
                for values, (buckets, total) in probe.samples():
                    histogram.add_metric(list(values), [(_le(b), n) for b, n in buckets], total)
                yield histogram
                continue
            kind = CounterMetricFamily if probe.kind == "counter" else GaugeMetricFamily
            family = kind(PREFIX + name, probe.help, labels=labels)
            for values, value in probe.samples():
                family.add_metric(list(values), value)
            yield family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Exposition:
    """The registry behind ``/metrics`` and the text it returns for an Accept header."""

    def __init__(self, hub: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(hub))  # type: ignore[arg-type]

    def render(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
