"""MQTT over WebSockets: autobahn does the HTTP upgrade and the framing; the bytes
inside are an MQTT stream that the same ``MQTTProtocol`` reads as over TCP.

Each binary message is fed to the MQTT decoder as it arrives, frame chunk by
frame chunk (MQTT packets and WebSocket messages need not line up), so the
decoder's limits before and after CONNECT hold here too and autobahn never
buffers a whole message. Each packet the channel writes goes out as one binary
message. The channel sees a ``WebSocketLink`` with a TCP transport's methods.
"""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import interfaces
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from gateway.logtext import clip, summary_for
from gateway.mqtt.transport import MQTTFactory, MQTTProtocol

#: The Sec-WebSocket-Protocol names of MQTT (3.1.1 and 5, and 3.1).
SUBPROTOCOLS = ("mqtt", "mqttv3.1")
UNSUPPORTED_DATA = 1003      # close code for a text message
log = Logger(namespace=__name__)


class WebSocketLink:
    """The transport ``MQTTProtocol`` writes to: one binary message per write."""

    #: One MQTT packet per WebSocket message, as Mosquitto sends them: some browser
    #: and mini-program clients read one packet per message (``gateway.outbox``).
    one_message_per_write = True

    def __init__(self, ws: MQTTWebSocketProtocol) -> None:
        self.ws = ws

    @property
    def transport(self) -> Any:
        """The stream under the WebSocket: ``tcp_connection()`` walks down to TCP for
        ``SEND_LIMIT`` and the delayed-ACK fix, which hold over WebSockets as well."""
        return self.ws.transport

    @property
    def producer(self) -> Any:
        return getattr(self.ws.transport, "producer", None)

    def write(self, data: bytes) -> None:
        ws = self.ws
        if ws.state == ws.STATE_OPEN:
            ws.sendMessage(data, isBinary=True)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        ws = self.ws
        if ws.state == ws.STATE_OPEN:
            ws.sendClose(1000)
        elif ws.state != ws.STATE_CLOSING:
            ws.dropConnection(abort=False)

    def abortConnection(self) -> None:
        self.ws.transport.abortConnection()

    def getPeer(self) -> Any:
        return self.ws.transport.getPeer()

    def getHost(self) -> Any:
        return self.ws.transport.getHost()

    def getPeerCertificate(self) -> Any:
        get = getattr(self.ws.transport, "getPeerCertificate", None)
        return get() if get is not None else None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.ws.transport.setTcpNoDelay(enabled)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.ws.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.ws.transport.unregisterProducer()


class MQTTWebSocketProtocol(WebSocketServerProtocol):
    """One WebSocket connection carrying one MQTT connection."""

    factory: MQTTWebSocketFactory
    # autobahn logs each failed handshake and dropped connection by itself; those are
    # events anonymous peers cause at will, logged here through a summary instead.
    log = txaio.make_logger(level="none")
    inner: MQTTProtocol
    link: WebSocketLink | None = None
    peer_text = ""

    def connectionMade(self) -> None:
        super().connectionMade()
        address = self.transport.getPeer()
        self.peer_text = f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        # Counted against max_connections from the first byte, and closed with the
        # listener, though the MQTT connection only starts once the upgrade is done.
        self.inner.transport = WebSocketLink(self)
        self.factory.mqtt.protocols.add(self.inner)

    def processHandshake(self) -> None:
        limit = self.factory.headers_size
        if len(self.data) > limit and self.data.find(b"\r\n\r\n", 0, limit) < 0:
            self.failHandshake(f"request headers longer than {limit} bytes", 431)
            return
        super().processHandshake()

    def onConnect(self, request: ConnectionRequest) -> str:
        origins = self.factory.origins
        origin = request.headers.get("origin")
        if origins and origin is not None and origin.strip() not in origins:
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "Origin not allowed")
        for name in request.protocols:
            if name in SUBPROTOCOLS:
                return name
        raise ConnectionDeny(ConnectionDeny.NOT_ACCEPTABLE, "no MQTT subprotocol (mqtt or mqttv3.1)")

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        self._summarised("handshake", "refused WebSocket connection from {peer}: {reason}", reason)
        super().failHandshake(reason, code, responseHeaders)

    def _summarised(self, kind: str, fmt: str, reason: str) -> None:
        summary = summary_for(self.factory.mqtt.clock, "refused WebSocket connections", log)
        summary.event(kind, self.peer_text.rpartition(":")[0], LogLevel.info, fmt,
                      peer=self.peer_text, reason=clip(reason))

    def onOpen(self) -> None:
        link = self.link = self.inner.transport
        self.inner.makeConnection(link)

    def onMessageBegin(self, isBinary: bool) -> None:
        if not isBinary:
            self._summarised("text message", "closing WebSocket connection from {peer}: {reason}",
                             "a text message")
            self._fail_connection(UNSUPPORTED_DATA, "MQTT is carried in binary messages")

    def onMessageFrameBegin(self, length: int) -> None:
        """Nothing to set up: the payload goes to the MQTT decoder as it arrives."""

    def onMessageFrameData(self, payload: bytes) -> None:
        if payload and not self.failedByMe:
            self.inner.dataReceived(payload)

    def onMessageFrameEnd(self) -> None:
        """MQTT packets may continue in the next frame or message."""

    def onMessageEnd(self) -> None:
        """Likewise."""

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._connectionLost(reason)          # autobahn's state, without its log lines
        if self.link is not None:
            self.inner.connectionLost(reason)
        else:
            self.factory.mqtt.protocols.discard(self.inner)


class MQTTWebSocketFactory(WebSocketServerFactory):
    """WebSocket connections for one listener, each wrapping a protocol of ``mqtt``
    (which enforces ``max_connections`` and ``max_connection_rate``)."""

    protocol = MQTTWebSocketProtocol
    noisy = False

    def __init__(
        self,
        mqtt: MQTTFactory,
        reactor: interfaces.IReactorTime,
        origins: list[str] | tuple[str, ...] = (),
        headers_size: int = 4096,
        tcp_nodelay: bool = False,
        handshake_timeout: float = 10.0,
    ) -> None:
        super().__init__(reactor=reactor)
        self.mqtt = mqtt
        self.origins = frozenset(origins)
        self.headers_size = headers_size
        # No status page for plain HTTP requests, no compression (a decompression bomb
        # would bypass the decoder's limits), and no size limit here: the MQTT
        # decoder sees every byte as it arrives and enforces its own. Origins,
        # "null" included (a page opened from a file), are checked in onConnect.
        self.setProtocolOptions(
            webStatus=False,
            allowNullOrigin=True,
            perMessageCompressionAccept=lambda offers: None,
            maxFramePayloadSize=0,
            maxMessagePayloadSize=0,
            tcpNoDelay=tcp_nodelay,
            openHandshakeTimeout=handshake_timeout,
        )

    def buildProtocol(self, addr: Any) -> MQTTWebSocketProtocol | None:  # type: ignore[override]
        inner = self.mqtt.buildProtocol(addr)
        if inner is None:
            return None
        ws = super().buildProtocol(addr)
        ws.inner = inner
        return ws
