"""Driving a ``BridgeLink`` without sockets: a dialer the test answers by hand, and the
remote broker's end of each connection, reading with a server-side decoder."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gateway.bridge.link import BridgeLink
from gateway.config import parse
from gateway.mqtt.codec import Decoder
from tests import wire
from tests.hub.helpers import make_hub


class FakeDialer:
    """Connection attempts and failback probes wait here for the test's answer."""

    def __init__(self) -> None:
        self.attempts: list[tuple[int, Any, Deferred]] = []
        self.probes: list[tuple[int, Deferred]] = []

    def connect(self, index: int, build: Any) -> Deferred:
        d: Deferred = Deferred()
        self.attempts.append((index, build, d))
        return d

    def probe(self, index: int) -> Deferred:
        d: Deferred = Deferred()
        self.probes.append((index, d))
        return d

    def refuse(self) -> int:
        index, _, d = self.attempts.pop(0)
        d.errback(ConnectionRefusedError())
        return index

    def accept(self, connack: bytes | None = None, level: int = 4) -> Remote:
        index, build, d = self.attempts.pop(0)
        proto = build()
        transport = StringTransport()
        proto.makeConnection(transport)
        d.callback(proto)
        remote = Remote(proto, transport, index)
        if connack is None:
            connack = wire.connack(proto_ver=level)
        if connack:
            remote.connect = remote.read()[0]
            remote.send(connack)
        return remote


class Remote:
    """The broker's side of one connection."""

    def __init__(self, proto: Any, transport: StringTransport, index: int) -> None:
        self.proto = proto
        self.transport = transport
        self.index = index
        self.decoder = Decoder()
        self.connect: Any = None

    def read(self) -> list[Any]:
        """Every packet the bridge wrote since the last read."""
        data = self.transport.value()
        self.transport.clear()
        packets = self.decoder.feed(data)
        while self.decoder.buffered:
            more = self.decoder.feed(b"")
            if not more:
                break
            packets += more
        return packets

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def drop(self) -> None:
        self.proto.connectionLost(Failure(ConnectionLost("gone")))

    def close_if_asked(self) -> bool:
        """The bridge closed (or aborted) this connection: finish it as TCP would."""
        if self.transport.disconnecting:
            self.proto.connectionLost(Failure(ConnectionLost("closed")))
            return True
        return False


def bridge_config(*lines: str, name: str = "cloud") -> Any:
    """A parsed ``connection`` section: ``lines``, plus an address and a topic if they
    name none, and remote client id ``gw-a``."""
    defaults = [line for key, line in (("address", "address 127.0.0.1:1884"),
                                       ("topic", "topic t out 0"))
                if not any(x.split()[0] == key for x in lines)]
    text = "\n".join(["listener 1883", f"connection {name}", "remote_clientid gw-a", *defaults,
                      *lines]) + "\n"
    return parse(text).bridges[0]


def make_link(*lines: str, hub: Any = None, jitter: Any = None) -> tuple[BridgeLink, FakeDialer, Any]:
    hub = hub or make_hub()
    dialer = FakeDialer()
    link = BridgeLink(hub, bridge_config(*lines), dialer, hub.clock,
                      jitter=jitter or (lambda low, high: low))
    return link, dialer, hub
