"""aiocoap inside twistd: one aiocoap context per ``protocol coap`` listener.

Twisted runs on its asyncio reactor (installed by the twistd plugin), so aiocoap's
coroutines run on the very loop that serves MQTT. The listener's UDP socket is created
and bound here, synchronously, while the listeners start: a port already in use stops
startup with ``CannotListenError`` like a busy MQTT port does, and the socket never
gets SO_REUSEPORT (aiocoap's own udp6 server sets it, which would let two gateways
silently share a port and split its clients between them). aiocoap's udp6 message
interface is then built on that socket (encrypted, ``gateway.coap.secure``, when the
listener has TLS keys), behind ``GatewayMessageManager``, with ``CoAPSite`` answering
requests. aiocoap's stdlib logging is bridged into
twisted.logger, warnings and up only, at most a few lines per second.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
import weakref
from typing import Any

from aiocoap import Context
from aiocoap.tokenmanager import TokenManager
from aiocoap.message import Message
from aiocoap.transports.udp6 import MessageInterfaceUDP6, UDP6EndpointAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import LogLevel, Logger

from gateway.coap.clients import Clients
from gateway.coap.manager import CoAPStats, GatewayMessageManager
from gateway.coap.resources import CoAPSite
from gateway.coap.settings import CoAPSettings, settings_from
from gateway.hub.auth import listener_key
from gateway.logtext import clip

LOGGER_NAME = "coap-server"
_stats_by_hub: weakref.WeakKeyDictionary[Any, CoAPStats] = weakref.WeakKeyDictionary()


class GatewayContext(Context):
    """An aiocoap ``Context`` whose message layer and request dispatch are ours."""

    async def _append_tokenmanaged_messagemanaged_transport(self, constructor: Any) -> None:
        site = self.serversite
        tman = TokenManager(self)
        mman = GatewayMessageManager(tman, site.stats, site.settings)
        transport = await constructor(mman)
        mman.message_interface = transport
        tman.token_interface = mman
        self.request_interfaces.append(tman)

    #: Unprotects OSCORE requests (``gateway.coap.oscore``) when the listener has contexts.
    oscore: Any = None

    def render_to_pipe(self, pipe: Any) -> None:
        """Answer in this call; aiocoap would wrap the pipe and start a task per request."""
        if self.oscore is not None and pipe.request.opt.oscore is not None:
            self.oscore.render(pipe, self.serversite.render_pipe)
            return
        self.serversite.render_pipe(pipe)


#: Errors a send reports when an ICMP error for an *earlier* datagram is pending on the
#: socket (IP_RECVERR): they say nothing about this datagram's peer.
PENDING_ICMP = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                          errno.EHOSTDOWN, errno.ENETDOWN})


_V4MAPPED = b"\0" * 10 + b"\xff\xff"


def _multicast_host(host: str) -> bool:
    """``ipaddress.ip_address(host).is_multicast`` for a sockaddr host, without parsing."""
    if host.startswith("::ffff:") and "." in host:
        return 224 <= int(host[7:].split(".", 1)[0]) <= 239
    first = host.split(":", 1)[0]
    return len(first) == 4 and first[:2].lower() == "ff"


class GatewayAddress(UDP6EndpointAddress):
    """udp6's remote address with its multicast tests done on bytes.

    aiocoap asks them for every response and notification and answers them by
    formatting and re-parsing the address with ``ipaddress``: a quarter of the CPU
    time of a notification in the profile.
    """

    @property
    def is_multicast(self) -> bool:
        return _multicast_host(self.sockaddr[0])

    @property
    def is_multicast_locally(self) -> bool:
        pktinfo = self.pktinfo
        if pktinfo is None:
            return False
        if pktinfo[0] == 0xFF:
            return True
        return pktinfo[:12] == _V4MAPPED and 224 <= pktinfo[12] <= 239


class GatewayUDP6(MessageInterfaceUDP6):
    """aiocoap's udp6 interface, with sends that do not blame the wrong peer.

    On Linux an ICMP error (say, port unreachable from an observer that went away) is
    both queued on the error queue, where udp6 reads it with the right peer address,
    and reported once by the next ``sendmsg``, whoever that is for. aiocoap turns the
    latter into an error for the peer being sent to, which ends that innocent peer's
    requests and observations and drops the datagram. Here the send is repeated
    instead; the error queue still reports the real peer.

    On uvloop's event loop, libuv stops watching a socket that reports an error
    (``POLLERR``), which this one does for every ICMP error it queues: after each
    such error the socket is watched again (``_rewatch``), or the listener would go
    deaf at the first client that left.
    """

    _sock: socket.socket

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._sock = transport.get_extra_info("socket")

    def datagram_errqueue_received(self, data: bytes, ancdata: list[Any], flags: int,
                                   address: Any) -> None:
        super().datagram_errqueue_received(data, ancdata, flags, address)
        self._rewatch()

    def error_received(self, exc: Exception) -> None:
        super().error_received(exc)
        self._rewatch()

    def _rewatch(self) -> None:
        loop = self.loop
        if isinstance(loop, asyncio.SelectorEventLoop):
            return  # asyncio's loop keeps watching
        loop.call_soon(_watch_again, loop, self._sock, weakref.ref(self.transport))

    def datagram_msg_received(self, data: bytes, ancdata: list[Any], flags: int,
                              address: Any) -> None:
        """As udp6's, with ``GatewayAddress`` remotes."""
        pktinfo = None
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                pktinfo = value
        try:
            message = Message.decode(data, GatewayAddress(address, self, pktinfo=pktinfo))
        except Exception:  # aiocoap's option decoders raise more than UnparsableMessage
            self.log.warning("Ignoring unparsable message from %s", address)
            return
        self._ctx.dispatch_message(message)

    def send(self, message: Any) -> None:
        remote = message.remote
        self.transmit(message.encode(), remote.sockaddr, remote.pktinfo, remote)

    def transmit(self, data: bytes, sockaddr: Any, pktinfo: bytes | None, remote: Any) -> None:
        """One datagram to ``sockaddr`` (from the local address in ``pktinfo``); a send
        error that is about ``remote`` is reported for it."""
        ancdata = [] if pktinfo is None else [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                                                pktinfo)]
        sendmsg = self._sock.sendmsg
        for _ in range(3):
            try:
                sendmsg((data,), ancdata, 0, sockaddr)
                return
            except (BlockingIOError, InterruptedError):
                return  # the socket buffer is full: lost, as UDP may lose it anyway
            except OSError as e:
                if e.errno not in PENDING_ICMP:
                    if remote is None:
                        remote = GatewayAddress(sockaddr, self)
                    self._ctx.dispatch_error(e, remote)
                    return


def _watch_again(loop: asyncio.AbstractEventLoop, sock: socket.socket, transport: Any) -> None:
    """Register the transport's reader anew (after libuv dropped it on ``POLLERR``),
    unless the transport was closed meanwhile."""
    fd = sock.fileno()
    if fd < 0 or transport() is None:
        return
    loop.remove_reader(fd)
    loop.add_reader(fd, _read_ready, transport)


def _read_ready(transport: Any) -> None:
    t = transport()
    if t is not None:
        t._read_ready()


class _Throttled(logging.Handler):
    """stdlib ``logging`` records into twisted.logger, a few per message per minute.

    aiocoap warns per datagram about things a peer controls (unparsable messages,
    unexpected options), so an unbounded bridge would be a log flood on demand.
    """

    BURST = 5
    WINDOW = 60.0
    LEVELS = {logging.DEBUG: LogLevel.debug, logging.INFO: LogLevel.info,
              logging.WARNING: LogLevel.warn, logging.ERROR: LogLevel.error,
              logging.CRITICAL: LogLevel.critical}

    def __init__(self) -> None:
        super().__init__()
        self.log = Logger(namespace="aiocoap")
        self.counts: dict[str, int] = {}
        self.window_end = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if now >= self.window_end:
            suppressed = sum(n - self.BURST for n in self.counts.values() if n > self.BURST)
            if suppressed:
                self.log.warn("{count} aiocoap log lines suppressed in the last minute",
                              count=suppressed)
            self.counts.clear()
            self.window_end = now + self.WINDOW
        key = str(record.msg)
        n = self.counts.get(key, 0) + 1
        self.counts[key] = n
        if n > self.BURST:
            return
        level = self.LEVELS.get(record.levelno, LogLevel.warn)
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({record.exc_info[1]!r})"
        self.log.emit(level, "{logger}: {text}", logger=record.name, text=clip(text, 1000))


def bridge_logging() -> None:
    """Route aiocoap's loggers into twisted.logger (idempotent). Warnings and up only:
    aiocoap's DEBUG and INFO lines are per message (retransmissions, duplicates)."""
    for name in (LOGGER_NAME, "aiocoap"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Throttled) for h in logger.handlers):
            logger.addHandler(_Throttled())
        logger.propagate = False
        logger.setLevel(logging.WARNING)


def stats_for(hub: Any) -> CoAPStats:
    """One set of CoAP counters per hub, shared by its CoAP listeners."""
    stats = _stats_by_hub.get(hub)
    if stats is None:
        stats = _stats_by_hub[hub] = CoAPStats()
        stats.register(hub)
    return stats


def bind_udp(listener: Any) -> socket.socket:
    """The listener's UDP socket, bound now, without SO_REUSEPORT.

    aiocoap's udp6 transport wants an AF_INET6 socket; IPv4 addresses are reached
    through v4-mapped addresses (``::ffff:0.0.0.0`` is every IPv4 address only).
    """
    domain = listener.socket_domain
    host = listener.bind_address or ("0.0.0.0" if domain == "ipv4" else "::")
    try:
        infos = socket.getaddrinfo(host, listener.port, socket.AF_INET6, socket.SOCK_DGRAM, 0,
                                   socket.AI_V4MAPPED | socket.AI_PASSIVE)
    except (socket.gaierror, OSError) as e:
        raise CannotListenError(host, listener.port, e) from None
    if domain == "ipv4":
        infos = [i for i in infos if i[4][0].startswith("::ffff:")] or infos
    elif domain == "ipv6":
        infos = [i for i in infos if not i[4][0].startswith("::ffff:")] or infos
    sockaddr = infos[0][4]
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError as e:
        raise CannotListenError(host, listener.port, OSError(
            e.errno, f"{e.strerror} (CoAP needs IPv6 support in the kernel)")) from None
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if domain == "ipv6" else 0)
        sock.bind(sockaddr)
    except OSError as e:
        sock.close()
        raise CannotListenError(host, listener.port, e) from None
    return sock


class _Address:
    """What ``ListenerService`` logs: ``getHost().host`` and ``.port``."""

    def __init__(self, sock: socket.socket) -> None:
        host, port = sock.getsockname()[:2]
        self.host = host[7:] if host.startswith("::ffff:") else host
        self.port = port

    def getHost(self) -> _Address:
        return self


class CoAPListener:
    """A running CoAP listener; the handle ``ListenerService`` closes at shutdown."""

    log = Logger()

    def __init__(self, hub: Any, settings: CoAPSettings, listener: Any, sock: socket.socket,
                 loop: asyncio.AbstractEventLoop, reactor: Any,
                 interface: type[GatewayUDP6] = GatewayUDP6, oscore: Any = None) -> None:
        self.hub = hub
        self.interface = interface  # GatewayUDP6, or a gateway.coap.secure.GatewayDTLS
        self.settings = settings
        self.listener = listener
        self.sock = sock
        self.loop = loop
        self.port = _Address(sock)
        self.stats = stats_for(hub)
        self.clients = Clients(hub, settings, self.stats, reactor, listener)
        self.site = CoAPSite(hub, settings, self.stats, self.clients, listener)
        self.context = GatewayContext(loop=loop, serversite=self.site, loggername=LOGGER_NAME)
        self.context.oscore = oscore
        self.manager: GatewayMessageManager | None = None
        self.ready: Deferred[None] = Deferred.fromFuture(loop.create_task(self._open()))
        self.ready.addErrback(self._failed, reactor)

    async def _open(self) -> None:
        sock, context = self.sock, self.context

        async def interface(mman: GatewayMessageManager) -> Any:
            self.manager = mman
            return await self.interface._create_transport_endpoint(
                sock, mman, context.log, self.loop)

        await context._append_tokenmanaged_messagemanaged_transport(interface)

    def _failed(self, failure: Any, reactor: Any) -> None:
        self.log.failure("CoAP listener on port {port} failed to start", failure,
                         port=self.port.port)
        reactor.stop()

    def reload(self, config: Any) -> None:
        """SIGHUP: the new coap_* values, read live by the site, manager and clients."""
        key = listener_key(self.listener)
        listener = next((x for x in config.listeners if listener_key(x) == key), self.listener)
        fresh = settings_from(config, listener)
        for name in fresh.__slots__:  # type: ignore[attr-defined]
            setattr(self.settings, name, getattr(fresh, name))

    def close(self) -> Deferred[None]:
        """End observations and connections, then shut the aiocoap context down."""
        self.clients.close_all("server shutting down")

        async def shutdown() -> None:
            try:
                await self.ready.asFuture(self.loop)
            except Exception:
                pass
            await self.context.shutdown()

        return Deferred.fromFuture(self.loop.create_task(shutdown()))


def start_coap(ctx: Any, listener: Any) -> CoAPListener:
    """The ``protocol coap`` starter for ``gateway.listeners.STARTERS``."""
    from gateway.reactor import require_asyncio_reactor

    require_asyncio_reactor()
    reactor = ctx.reactor
    loop = getattr(reactor, "_asyncioEventloop", None) or asyncio.get_event_loop()
    bridge_logging()
    settings = settings_from(ctx.config, listener)
    interface: type[GatewayUDP6] = GatewayUDP6
    tls = ctx.tls.get(listener_key(listener))
    if tls is not None:
        from gateway.coap.secure import interface_for
        from gateway.dtls.server import Limits

        interface = interface_for(ctx.hub, listener, tls, Limits.from_settings(ctx.config, listener),
                                  reactor)
    oscore = None
    scope = listener if listener.oscore_file else ctx.config
    if scope.oscore_file:
        from gateway.coap.oscore import OscoreLayer, load_credentials
        from gateway.errors import ConfigError

        try:
            oscore = OscoreLayer(load_credentials(scope.oscore_file))
        except ConfigError as e:
            path, line = scope.lines.get("oscore_file", ("", 0))
            raise SystemExit(f"mqttgateway: {ConfigError(e.reason, path, line, 'oscore_file')}") from None
    sock = bind_udp(listener)
    return CoAPListener(ctx.hub, settings, listener, sock, loop, reactor, interface, oscore)
