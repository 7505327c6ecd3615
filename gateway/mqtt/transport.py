"""Twisted glue for MQTT over TCP: bytes in to the codec, packets to the channel."""

from __future__ import annotations

from typing import Any

from twisted.internet import interfaces
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.hub.hub import Hub
from gateway.mqtt.channel import CLOSED, MQTTChannel, MQTTSettings
from gateway.mqtt.codec import Decoder, MQTTError

MAX_PACKET = 268_435_455
# Send whatever the kernel will take in one writable event (Twisted's default of
# 128 KiB lets a few publishers outrun one subscriber).
SEND_LIMIT = 8 << 20


class MQTTProtocol(Protocol):
    """One TCP (or TLS, or WebSocket-wrapped) MQTT connection."""

    channel: MQTTChannel
    decoder: Decoder

    def __init__(self, factory: MQTTFactory) -> None:
        self.factory = factory

    def connectionMade(self) -> None:
        f = self.factory
        f.protocols.add(self)
        settings = f.settings
        if f.set_tcp_nodelay:
            try:
                self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
            except Exception:
                pass
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        address = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self.decoder = Decoder(settings.max_packet_size or MAX_PACKET)
        self.channel = MQTTChannel(f.hub, settings, self.transport, f.clock, address, f.listener)
        transport = self.transport
        if hasattr(transport, "SEND_LIMIT"):
            transport.SEND_LIMIT = SEND_LIMIT
        transport.registerProducer(self.channel, True)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        channel = self.channel
        if channel.state == CLOSED:
            return
        self.factory.stats.bytes_received += len(data)
        channel.last_rx = self.factory.clock.seconds()
        error = None
        try:
            packets = self.decoder.feed(data)
        except MQTTError as e:
            # Packets that were complete before the bad one are handled first, as a
            # broker reading the stream packet by packet would.
            error, packets = e, e.packets
        self.factory.stats.messages_received += len(packets)
        handle = channel.handle
        for packet in packets:
            handle(packet)
            if channel.state == CLOSED:
                return
        if error is not None:
            channel.protocol_error(error)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.protocols.discard(self)
        channel = getattr(self, "channel", None)
        if channel is not None:
            channel.connection_lost()


class MQTTFactory(Factory):
    """Builds MQTT connections for one listener, enforcing ``max_connections``."""

    log = Logger()
    noisy = False

    def __init__(
        self,
        hub: Hub,
        settings: MQTTSettings,
        clock: interfaces.IReactorTime,
        listener: Any = None,
        max_connections: int = -1,
        set_tcp_nodelay: bool = False,
    ) -> None:
        self.hub = hub
        self.stats = hub.stats
        self.settings = settings
        self.clock = clock
        self.listener = listener
        self.max_connections = max_connections
        self.set_tcp_nodelay = set_tcp_nodelay
        self.protocols: set[MQTTProtocol] = set()

    def buildProtocol(self, addr: Any) -> MQTTProtocol | None:  # type: ignore[override]
        if 0 <= self.max_connections <= len(self.protocols):
            self.log.warn("refusing connection from {addr}: max_connections reached", addr=addr)
            return None
        return MQTTProtocol(self)
