"""Twisted glue for MQTT over TCP: bytes in to the codec, packets to the channel."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import interfaces, tcp
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
TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def tcp_connection(transport: Any) -> tcp.Connection | None:
    """Twisted's TCP connection: ``transport`` itself or the one under a TLS wrapper."""
    while transport is not None and not isinstance(transport, tcp.Connection):
        transport = getattr(transport, "transport", None)
    return transport


class MQTTProtocol(Protocol):
    """One TCP (or TLS, or WebSocket-wrapped) MQTT connection."""

    channel: MQTTChannel
    decoder: Decoder
    tcp_conn: tcp.Connection | None = None  # set when ACKs can be forced (ack_if_unanswered)

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
        if TCP_QUICKACK is not None:
            self.tcp_conn = tcp_connection(transport)

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
            return
        if self.tcp_conn is not None:
            self.ack_if_unanswered(self.tcp_conn)

    def ack_if_unanswered(self, conn: tcp.Connection) -> None:
        """ACK the bytes just read now if no reply is queued to carry the ACK.

        PUBACK, PUBCOMP and QoS 0 PUBLISH get no reply, so the kernel delays their
        ACK (40 ms on Linux). A client that leaves Nagle on (paho-mqtt does) holds
        its next small packet until then: publishing to a topic it subscribes to,
        it waited that long per QoS 1 or 2 message, whatever our TCP_NODELAY.
        (Mosquitto avoids it only while its own Nagle holds back the PUBACK until
        the client's PUBACK arrives.) TCP_QUICKACK 2 sends the pending ACK and
        keeps delayed ACKs for later segments. A queued reply, which Twisted
        sends on the next reactor turn, carries the ACK itself.
        """
        if conn.dataBuffer or conn._tempDataLen:  # Twisted's unsent output
            return
        try:
            conn.socket.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 2)  # type: ignore[arg-type]
        except OSError:
            self.tcp_conn = None  # not a TCP socket after all (a UNIX socket, say)

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
