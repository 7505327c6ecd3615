"""The PROXY protocol (HAProxy's, versions 1 and 2) in front of a stream listener.

A load balancer in TCP mode starts each connection with a header naming the client.
The listener's own protocol (MQTT, WebSockets, and TLS around either) is built only
once that header has been read, for the address it names: ``max_connection_rate``,
``max_connections``, the login throttle, plugins and every log line see the client,
not the proxy. Twisted's parsers (``twisted.protocols.haproxy``) read the header;
here are what they leave out: the version the listener expects, a bound on what is
buffered, address checks, a header split across reads, and a deadline.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet import address, interfaces
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LogLevel
from twisted.protocols import policies
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from gateway.logtext import clip, summary_for

V1_SIGNATURE = b"PROXY "
V1_MAX = 107                         # the longest version 1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16                        # signature, version/command, family, length


class HeaderError(Exception):
    """Not a PROXY header of the version the listener expects."""


def _address(found: Any) -> address.IPv4Address | address.IPv6Address | None:
    """The client address of a parsed header, or None (LOCAL, UNKNOWN, UNIX: the
    connection's own address stands)."""
    if not isinstance(found, (address.IPv4Address, address.IPv6Address)):
        return None
    if found.type != "TCP":
        raise HeaderError("not a TCP connection")
    try:
        ip = ipaddress.ip_address(found.host)
    except ValueError:
        raise HeaderError(f"bad address {clip(found.host, 50)!r}") from None
    wanted = 4 if isinstance(found, address.IPv4Address) else 6
    if ip.version != wanted or not 0 < found.port < 65536:
        raise HeaderError("bad address or port")
    return type(found)("TCP", str(ip), found.port)


def read_header(data: bytes, version: int) -> tuple[Any, Any, bytes] | None:
    """``(source, destination, rest)`` once ``data`` holds a whole header of
    ``version``; None while it may still become one. Addresses are None where the
    header names none."""
    if version == 1:
        if data[:len(V1_SIGNATURE)] != V1_SIGNATURE[:len(data)]:
            raise HeaderError("no PROXY version 1 header")
        end = data.find(b"\r\n", 0, V1_MAX)
        if end < 0:
            if len(data) >= V1_MAX:
                raise HeaderError("PROXY version 1 line longer than 107 bytes")
            return None
        header, rest, parse = data[:end], data[end + 2:], V1Parser.parse
        if header.split(b" ", 2)[1:2] == [b"UNKNOWN"]:   # what follows it is to be ignored
            return None, None, rest
    else:
        if data[:len(V2_SIGNATURE)] != V2_SIGNATURE[:len(data)]:
            raise HeaderError("no PROXY version 2 header")
        if len(data) < V2_FIXED:
            return None
        size = V2_FIXED + int.from_bytes(data[14:16], "big")
        if len(data) < size:
            return None
        header, rest, parse = data[:size], data[size:], V2Parser.parse
    try:
        info = parse(header)
    except Exception as e:
        raise HeaderError(f"malformed PROXY version {version} header ({type(e).__name__})") from None
    return _address(info.source), _address(info.destination), rest


class ProxyHeaderProtocol(policies.ProtocolWrapper):
    """Reads the header, then builds the listener's protocol and hands it the stream
    (itself as transport, reporting the header's addresses)."""

    wrappedProtocol: Any
    factory: ProxyHeaderFactory

    def __init__(self, factory: ProxyHeaderFactory) -> None:
        super().__init__(factory, None)  # type: ignore[arg-type]
        self.buffer = b""
        self.source: Any = None
        self.destination: Any = None
        self.timer: Any = None

    def makeConnection(self, transport: Any) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)

    def connectionMade(self) -> None:
        self.timer = self.factory.clock.callLater(self.factory.timeout, self._expired)

    def getPeer(self) -> Any:
        return self.source or self.transport.getPeer()

    def getHost(self) -> Any:
        return self.destination or self.transport.getHost()

    def dataReceived(self, data: bytes) -> None:
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self.disconnecting:
            return
        self.buffer += data
        try:
            found = read_header(self.buffer, self.factory.version)
        except HeaderError as e:
            self._refuse("header", "refused connection from {peer}: {reason}", LogLevel.warn, str(e))
            return
        if found is None:
            return
        self._stop_timer()
        self.source, self.destination, rest = found
        self.buffer = b""
        inner = self.factory.build(self.getPeer())
        if inner is None:
            self.loseConnection()
            return
        self.wrappedProtocol = inner
        inner.makeConnection(self)
        if rest:
            inner.dataReceived(rest)

    def _expired(self) -> None:
        self.timer = None
        self._refuse("timeout", "no PROXY header from {peer} in time; closing", LogLevel.info, "")

    def _refuse(self, kind: str, fmt: str, level: LogLevel, reason: str) -> None:
        peer = self.transport.getPeer()
        host = getattr(peer, "host", str(peer))
        summary = summary_for(self.factory.clock, "connections without a PROXY header",
                              ProxyHeaderFactory.log)
        summary.event(kind, host, level, fmt,
                      peer=f"{host}:{getattr(peer, 'port', '')}", reason=reason)
        self.loseConnection()

    def _stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._stop_timer()
        self.factory.unregisterProtocol(self)
        inner, self.wrappedProtocol = self.wrappedProtocol, None
        if inner is not None:
            inner.connectionLost(reason)


class ProxyHeaderFactory(policies.WrappingFactory):
    """Wraps a listener's factory: ``version`` is the PROXY version its connections
    must start with (Mosquitto's ``enable_proxy_protocol``), ``tls`` the context
    factory when TLS follows the header."""

    protocol = ProxyHeaderProtocol  # type: ignore[assignment]
    log = Logger()
    noisy = False

    def __init__(
        self,
        wrapped: Factory,
        version: int,
        clock: interfaces.IReactorTime,
        timeout: float,
        tls: Any = None,
    ) -> None:
        super().__init__(wrapped)
        self.version = version
        self.clock = clock
        self.timeout = timeout
        self.tls = TLSMemoryBIOFactory(tls, False, wrapped) if tls is not None else None

    def buildProtocol(self, addr: Any) -> ProxyHeaderProtocol:  # type: ignore[override]
        return ProxyHeaderProtocol(self)

    def build(self, addr: Any) -> Protocol | None:
        """The listener's protocol for a client at ``addr``, under TLS if it has TLS."""
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None or self.tls is None:
            return inner
        return TLSMemoryBIOProtocol(self.tls, inner)
