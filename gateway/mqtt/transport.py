"""Twisted glue for MQTT over TCP: bytes in to the codec, packets to the channel."""

from __future__ import annotations

from typing import Any

from twisted.internet import interfaces
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from gateway.hub.hub import Hub
from gateway.logs import summary_for
from gateway.mqtt.channel import CLOSED, CONNECTED, WAITING, MQTTChannel, MQTTSettings
from gateway.mqtt.codec import MAX_PACKET_SIZE, Decoder, MQTTError, packet_size
from gateway.mqtt.packets import Connect

# Send whatever the kernel will take in one writable event (Twisted's default of
# 128 KiB lets a few publishers outrun one subscriber).
SEND_LIMIT = 8 << 20
#: Mosquitto refuses a CONNECT whose remaining length is above 100,000 bytes: room
#: for a will payload of up to 65,535 bytes, and 34,465 for the client id, will
#: topic, username, password and (MQTT 5) properties.
CONNECT_REMAINING = 100_000
WILL_PAYLOAD = 65_535
#: What a PUBLISH holds besides its payload: fixed header, topic (up to 65,537
#: bytes), packet id and, at MQTT 5, properties.
PUBLISH_OVERHEAD = 128 * 1024


def connect_limit(settings: MQTTSettings) -> int:
    """Largest packet accepted before the client is authenticated: its CONNECT and
    whatever it sends before CONNACK. The will payload's share shrinks with
    ``message_size_limit`` (a larger will is refused anyway)."""
    will = min(settings.message_size_limit or WILL_PAYLOAD, WILL_PAYLOAD)
    limit = packet_size(CONNECT_REMAINING - WILL_PAYLOAD + will)
    return min(limit, settings.max_packet_size) if settings.max_packet_size else limit


def packet_limit(settings: MQTTSettings) -> int:
    """Largest packet accepted from an authenticated client: ``max_packet_size``, and
    no more than a PUBLISH of ``message_size_limit`` bytes needs."""
    limit = settings.max_packet_size or MAX_PACKET_SIZE
    if settings.message_size_limit:
        limit = min(limit, settings.message_size_limit + PUBLISH_OVERHEAD)
    return limit


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
        # Until CONNACK the client is anonymous: it may not make us buffer more than a
        # CONNECT needs (the limit rises in dataReceived once it is authenticated).
        self.decoder = Decoder(connect_limit(settings))
        self.authenticated = False
        self.channel = MQTTChannel(f.hub, settings, self.transport, f.clock, address, f.listener)
        transport = self.transport
        if hasattr(transport, "SEND_LIMIT"):
            transport.SEND_LIMIT = SEND_LIMIT
        transport.registerProducer(self.channel, True)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        channel = self.channel
        if channel.state == CLOSED:
            return
        stats = self.factory.stats
        stats.bytes_received += len(data)
        channel.last_rx = self.factory.clock.seconds()
        decoder = self.decoder
        handle = channel.handle
        while True:
            if not self.authenticated and (channel.state == CONNECTED or channel.state == WAITING):
                self.authenticated = True
                decoder.max_packet_size = packet_limit(self.factory.settings)
            error = None
            try:
                packets = decoder.feed(data)
            except MQTTError as e:
                # Packets that were complete before the bad one are handled first, as a
                # broker reading the stream packet by packet would.
                error, packets = e, e.packets
            stats.messages_received += len(packets)
            for packet in packets:
                handle(packet)
                if channel.state == CLOSED:
                    return
            if error is not None:
                channel.protocol_error(error)
                return
            # The decoder stops after a CONNECT: go on with what followed it, sized
            # by the limit its outcome allows.
            if not (packets and type(packets[-1]) is Connect and decoder.buffered):
                return
            data = b""

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
            host = getattr(addr, "host", str(addr))
            summary_for(self.clock, "connections refused at max_connections", MQTTFactory.log).event(
                "max_connections", host, LogLevel.warn,
                "refusing connection from {addr}: max_connections reached", addr=addr)
            return None
        return MQTTProtocol(self)
