"""Twisted glue for MQTT over TCP: bytes in to the codec, packets to the channel."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import interfaces, tcp
from twisted.internet.protocol import Factory
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway import outbox
from gateway.hub.hub import Hub
from gateway.logtext import summary_for
from gateway.mqtt.channel import CLOSED, CONNECTED, WAITING, MQTTChannel, MQTTSettings
from gateway.mqtt.codec import MAX_PACKET_SIZE, Decoder, MQTTError, packet_size
from gateway.mqtt.packets import Connect, Publish
from gateway.outbox import BufferedLink

# Send whatever the kernel will take in one writable event (Twisted's default of
# 128 KiB lets a few publishers outrun one subscriber).
SEND_LIMIT = 8 << 20
TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only
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


_LIMITS: dict[int, int] = {}


def _shared(limit: int) -> int:
    """The same int object for every connection with this limit (an int above 256
    is a new 32-byte object each time it is computed)."""
    return _LIMITS.setdefault(limit, limit)


def tcp_connection(transport: Any) -> tcp.Connection | None:
    """Twisted's TCP connection: ``transport`` itself or the one under a TLS wrapper."""
    while transport is not None and not isinstance(transport, tcp.Connection):
        transport = getattr(transport, "transport", None)
    return transport


@implementer(interfaces.IProtocol, interfaces.ILoggingContext)
class MQTTProtocol:
    """One TCP (or TLS, or WebSocket-wrapped) MQTT connection.

    Slotted, so not a subclass of Twisted's ``Protocol`` (whose instances carry a
    ``__dict__``): a gateway holds tens of thousands of these, mostly idle."""

    __slots__ = ("factory", "transport", "connected", "decoder", "authenticated", "link",
                 "channel", "tcp_conn")

    channel: MQTTChannel
    decoder: Decoder

    def __init__(self, factory: MQTTFactory) -> None:
        self.factory = factory
        self.transport: Any = None
        self.connected = 0
        # Set when ACKs can be forced (ack_if_unanswered).
        self.tcp_conn: tcp.Connection | None = None

    def makeConnection(self, transport: Any) -> None:
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def logPrefix(self) -> str:
        return "MQTTProtocol"

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
        self.decoder = Decoder(_shared(connect_limit(settings)))
        self.authenticated = False
        self.link = BufferedLink(self.transport)
        self.channel = MQTTChannel(f.hub, settings, self.link, f.clock, address, f.listener)
        transport = self.transport
        transport.registerProducer(self.channel, True)  # type: ignore[union-attr]
        # The TCP connection itself, under TLS, PROXY or WebSocket wrappers if any.
        conn = tcp_connection(transport)
        if conn is not None:
            conn.SEND_LIMIT = SEND_LIMIT
            if TCP_QUICKACK is not None:
                self.tcp_conn = conn

    def dataReceived(self, data: bytes) -> None:
        channel = self.channel
        if channel.state == CLOSED:
            return
        link = self.link
        written = link.replied()  # since its last read: what we sent it meanwhile
        outbox.begin()
        try:
            last = self._received(channel, data)
        finally:
            outbox.end()
        if self.tcp_conn is not None and not link.replied() and channel.state != CLOSED:
            if not (type(last) is Publish and last.packet_id is None):
                self.ack_if_unanswered(self.tcp_conn)
            elif written:
                self.ack_if_unanswered(self.tcp_conn, 1)

    def _received(self, channel: MQTTChannel, data: bytes) -> object:
        """Handle every packet in ``data``; returns the last one handled."""
        stats = self.factory.stats
        stats.bytes_received += len(data)
        channel.last_rx = self.factory.clock.seconds()
        decoder = self.decoder
        handle = channel.handle
        while True:
            if not self.authenticated and (channel.state == CONNECTED or channel.state == WAITING):
                self.authenticated = True
                decoder.max_packet_size = _shared(packet_limit(self.factory.settings))
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
                    return None
            if error is not None:
                channel.protocol_error(error)
                return None
            # The decoder stops after a CONNECT: go on with what followed it, sized
            # by the limit its outcome allows.
            if not (packets and type(packets[-1]) is Connect and decoder.buffered):
                return packets[-1] if packets else None
            data = b""

    def ack_if_unanswered(self, conn: tcp.Connection, mode: int = 2) -> None:
        """ACK the bytes just read now if no reply is queued to carry the ACK.

        PUBACK and PUBCOMP get no reply, so the kernel delays their ACK (40 ms on
        Linux). A client that leaves Nagle on (paho-mqtt does) holds its next small
        packet until then: publishing to a topic it subscribes to, it waited that
        long per QoS 1 or 2 message, whatever our TCP_NODELAY. (Mosquitto avoids it
        only while its own Nagle holds back the PUBACK until the client's PUBACK
        arrives.) TCP_QUICKACK 2 sends the pending ACK and keeps delayed ACKs for
        later segments. A reply written during the read (sent when it ends) carries
        the ACK itself, as does output Twisted still holds for the connection.

        Only a reply written during the read counts: a delivery sent to the client
        before it (from another client's read) carried the ACK of earlier bytes, not
        of these. A read that ends in a QoS 0 PUBLISH (``dataReceived``) is ACKed
        here only when we wrote to the client since its last read, which puts Linux
        in its interactive mode for the connection, where it delays ACKs; ``mode``
        1 then also leaves that mode, so the client's next QoS 0 packets are ACKed
        by the kernel as they are read (paho-mixed in bench/scenarios.py: a paho
        publisher that also receives messages). Otherwise Linux ACKs a pushed
        segment itself when it is read, and forcing it cost a system call and an
        ACK segment per read, about a tenth of the CPU at one message per ms (the
        low-rate scenario).
        """
        if conn.dataBuffer or conn._tempDataLen:  # Twisted's unsent output
            return
        try:
            conn.socket.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, mode)  # type: ignore[arg-type]
        except OSError:
            self.tcp_conn = None  # not a TCP socket after all (a UNIX socket, say)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.protocols.discard(self)
        link = getattr(self, "link", None)
        if link is not None:
            link.discard()
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
