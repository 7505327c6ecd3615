"""An MQTT broker on a ``task.Clock`` driven with raw bytes (``tests.wire``).

A real ``Hub`` and ``MQTTFactory``; each client is an ``MQTTProtocol`` on a
``StringTransport``. ``StringTransport`` only marks itself ``disconnecting`` when the
broker closes it; ``Client.lost()`` then plays the reactor's part and calls
``connectionLost`` (that is when the hub detaches the session and publishes the will).
"""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gateway.hub.hub import Hub
from gateway.mqtt.channel import MQTTSettings
from gateway.mqtt.transport import MQTTFactory, MQTTProtocol
from tests import wire

ADDR = IPv4Address("TCP", "127.0.0.1", 50000)


class RecordingTransport(StringTransport):
    """A ``StringTransport`` that also keeps every object passed to ``write``."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []  # before __init__, which calls clear()
        self.write_closed = False
        super().__init__()

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def clear(self) -> None:
        super().clear()
        self.writes.clear()


class Client:
    """One connection as the broker sees it: a protocol and its transport."""

    def __init__(self, protocol: MQTTProtocol, transport: RecordingTransport) -> None:
        self.protocol = protocol
        self.transport = transport

    def send(self, *chunks: bytes) -> None:
        """Deliver each chunk in its own ``dataReceived`` call."""
        for chunk in chunks:
            self.protocol.dataReceived(chunk)

    def take(self) -> bytes:
        """Everything written to this client since the last ``take``."""
        data = self.transport.value()
        self.transport.clear()
        return data

    @property
    def closed(self) -> bool:
        """Closed, or closing: after a level 5 DISCONNECT the broker closes its write
        side (``loseWriteConnection``) and lingers before the full close."""
        return self.transport.disconnecting or self.transport.write_closed

    def lost(self) -> None:
        """Report the closed connection to the protocol, as the reactor would."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


class Broker:
    """A hub, a clock and one listener's factory."""

    def __init__(
        self,
        settings: MQTTSettings | None = None,
        hub: Hub | None = None,
        **factory_kw: object,
    ) -> None:
        self.clock = task.Clock()
        self.hub = hub if hub is not None else Hub(clock=self.clock)
        self.factory = MQTTFactory(
            self.hub, settings or MQTTSettings(), clock=self.clock, **factory_kw
        )

    def open(self) -> Client:
        protocol = self.factory.buildProtocol(ADDR)
        assert protocol is not None
        transport = RecordingTransport()
        protocol.makeConnection(transport)
        return Client(protocol, transport)

    def connect(self, client_id: str, present: bool = False, **connect_kw: object) -> Client:
        """Open a connection, complete CONNECT/CONNACK 0 and clear the transport."""
        client = self.open()
        client.send(wire.connect(client_id, **connect_kw))
        assert client.take() == wire.connack(0, sp=present)
        assert not client.closed
        return client

    def subscriber(self, client_id: str, topic_filter: str, qos: int = 0) -> Client:
        client = self.connect(client_id)
        client.send(wire.subscribe(1, [(topic_filter, qos)]))
        assert client.take() == wire.suback(1, [qos])
        return client
