"""Twisted glue for a bridge's connection: TCP or TLS to one remote address, bytes to
and from the sans-IO ``MQTTClient``, its keepalive on a timer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from gateway.bridge.client import ClientError, MQTTClient
from gateway.mqtt.codec import encode
from gateway.mqtt.packets import Connect, Disconnect, Packet

if TYPE_CHECKING:
    from gateway.bridge.link import BridgeLink

#: Seconds a TCP connection (and TLS handshake) to the remote may take.
CONNECT_TIMEOUT = 30
#: Seconds a closing connection may take to flush its DISCONNECT before it is cut.
CLOSE_TIMEOUT = 5.0
#: QoS 0 payload bytes still written once the remote reads slower than we send (the
#: transport's buffer is full); beyond, QoS 0 messages are dropped, as for a slow client.
QOS0_BACKLOG_LIMIT = 4 * 1024 * 1024


class RemoteProtocol(Protocol):
    """One connection to the remote broker, owned by its ``BridgeLink``; the producer of
    its transport, which says when the remote falls behind (``congested``)."""

    congested = False
    backlog = 0            # QoS 0 payload bytes written since it became congested

    def __init__(self, link: BridgeLink, connect: Connect) -> None:
        self.link = link
        self.connect = connect
        self.client: MQTTClient | None = None
        self.closing = False
        self._tick: Any = None
        self._cut: Any = None
        self.lost: defer.Deferred[None] = defer.Deferred()

    @property
    def clock(self) -> Any:
        return self.link.clock

    def connectionMade(self) -> None:
        if self.link.stopping:
            self.abort()
            return
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.client = MQTTClient(self.connect, self.link, self._write)
        self.client.start(self.clock.seconds())
        self._schedule(self.client.tick(self.clock.seconds()))

    def dataReceived(self, data: bytes) -> None:
        client = self.client
        if self.closing or client is None:
            return
        self.link.stats.bytes_received += len(data)
        try:
            client.feed(data, self.clock.seconds())
        except ClientError as e:
            self.link.protocol_error(e)
            self.abort()

    def send(self, packet: Packet) -> None:
        client = self.client
        if client is not None:
            self.send_bytes(encode(packet, client.level))

    def send_bytes(self, data: bytes) -> None:
        client = self.client
        if client is not None and not self.closing:
            client.send_bytes(data, self.clock.seconds())

    def _write(self, data: bytes) -> None:
        self.link.stats.bytes_sent += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def disconnect(self, code: int = 0) -> None:
        """A clean end: DISCONNECT, then close once it is written (cut after a while)."""
        if self.closing or self.transport is None:
            return
        self.send(Disconnect(code))
        self.closing = True
        self.transport.unregisterProducer()  # a registered producer would hold the close
        self.transport.loseConnection()
        self._cut = self.clock.callLater(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def qos0_fits(self, size: int) -> bool:
        """Whether a QoS 0 message of ``size`` bytes is still written (else dropped)."""
        if not self.congested:
            return True
        if self.backlog > QOS0_BACKLOG_LIMIT:
            return False
        self.backlog += size
        return True

    def pauseProducing(self) -> None:
        if not self.congested:
            self.congested = True
            self.backlog = 0

    def resumeProducing(self) -> None:
        self.congested = False

    def stopProducing(self) -> None:
        self.congested = True

    def _schedule(self, when: float | None) -> None:
        if self._tick is not None and self._tick.active():
            self._tick.cancel()
        self._tick = None
        if when is not None and not self.closing:
            self._tick = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._keepalive)

    def _keepalive(self) -> None:
        self._tick = None
        client = self.client
        if client is None or self.closing:
            return
        try:
            self._schedule(client.tick(self.clock.seconds()))
        except ClientError as e:
            self.link.protocol_error(e)
            self.abort()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closing = True
        for call in (self._tick, self._cut):
            if call is not None and call.active():
                call.cancel()
        self._tick = self._cut = None
        self.link.connection_lost(self, reason)
        self.lost.callback(None)


class _Factory(Factory):
    noisy = False  # no "Starting factory" line per connection attempt


class Dialer:
    """Opens connections to a bridge's addresses: TCP (any address family, through the
    resolver), wrapped in TLS with ``tls[i]`` (options naming address i's host) when
    given, from ``bind_address`` when given."""

    def __init__(self, reactor: Any, addresses: list[tuple[str, int]], tls: list[Any] | None = None,
                 bind_address: str | None = None) -> None:
        self.reactor = reactor
        self.addresses = addresses
        self.tls = tls
        self.bind = (bind_address, 0) if bind_address else None

    def _endpoint(self, index: int) -> Any:
        host, port = self.addresses[index]
        return endpoints.HostnameEndpoint(self.reactor, host, port, timeout=CONNECT_TIMEOUT,
                                          bindAddress=self.bind)

    def connect(self, index: int, build: Callable[[], Protocol]) -> defer.Deferred[Any]:
        endpoint = self._endpoint(index)
        if self.tls is not None:
            endpoint = endpoints.wrapClientTLS(self.tls[index], endpoint)
        return endpoint.connect(_Factory.forProtocol(build))

    def probe(self, index: int) -> defer.Deferred[None]:
        """Whether address ``index`` accepts TCP connections (the connection is closed
        at once): fires with None, or fails."""
        d = self._endpoint(index).connect(_Factory.forProtocol(Protocol))
        return d.addCallback(lambda proto: proto.transport.loseConnection())
