"""Opens the configured listeners and closes their connections at shutdown.

Each ``protocol`` value maps to a starter in ``STARTERS``: a function that opens one
listener and returns a handle whose ``close()`` stops listening and closes its
connections (returning a Deferred when that takes time). A new transport adds one
entry here and keeps everything else in its own package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from gateway.config import Config, Listener
from gateway.hub.hub import Hub
from gateway.mqtt.channel import MQTTSettings
from gateway.mqtt.transport import MQTTFactory
from gateway.netaddr import LISTEN_BACKLOG, interface
from gateway.tcpserver import listen_tcp
from gateway.tls import is_tls


class ListenerHandle(Protocol):
    def close(self) -> defer.Deferred[Any] | None: ...


@dataclass
class ListenerContext:
    """What a starter may use: the hub, the whole config and the shared settings."""

    hub: Hub
    config: Config
    mqtt_settings: MQTTSettings
    reactor: Any
    # TLS context factories by listener_key (gateway.tls.ServerTLS), built at startup.
    tls: dict[Any, Any] = field(default_factory=dict)
    # Per-listener MQTT settings (a listener's own max_keepalive); None: mqtt_settings.
    settings_for: Callable[[Listener], MQTTSettings] | None = None


class TCPHandle:
    """A listening port plus the live connections of its factory (and those still
    waiting for their PROXY header, if the listener expects one)."""

    def __init__(self, port: Any, factory: MQTTFactory, reactor: Any, proxy: Any = None) -> None:
        self.port = port
        self.factory = factory
        self.reactor = reactor
        self.proxy = proxy

    def close(self, timeout: float = 5.0) -> defer.Deferred[None]:
        factory = self.factory
        stopped = defer.maybeDeferred(self.port.stopListening)
        for wrapper in list(self.proxy.protocols if self.proxy is not None else ()):
            if wrapper.wrappedProtocol is None:
                wrapper.loseConnection()
        for proto in list(factory.protocols):
            channel = getattr(proto, "channel", None)
            if channel is not None:
                channel.shutdown()       # level 5 clients hear why
            else:
                proto.transport.loseConnection()

        async def wait() -> None:
            await stopped
            waited = 0.0
            while factory.protocols and waited < timeout:
                await task.deferLater(self.reactor, 0.05, lambda: None)
                waited += 0.05
            for proto in list(factory.protocols):
                proto.transport.abortConnection()

        return defer.ensureDeferred(wait())


def _mqtt_factory(ctx: ListenerContext, listener: Listener) -> MQTTFactory:
    """The MQTT connections of one listener, with its limits (any transport)."""
    from gateway.ratelimit import RateLimitedMQTTFactory

    settings = ctx.settings_for(listener) if ctx.settings_for else ctx.mqtt_settings
    args = (ctx.hub, settings, ctx.reactor, listener, listener.max_connections,
            ctx.config.set_tcp_nodelay)
    rate = getattr(listener, "max_connection_rate", None)
    return RateLimitedMQTTFactory(*args, rate=rate) if rate else MQTTFactory(*args)


def _listen(ctx: ListenerContext, listener: Listener, factory: Any, mqtt: MQTTFactory) -> TCPHandle:
    """Open a stream listener: TLS when it has certfile/keyfile, the PROXY header first
    when it has ``enable_proxy_protocol`` (then TLS, if any, follows the header)."""
    from gateway.hub.auth import listener_key

    tls = ctx.tls.get(listener_key(listener))
    where = dict(backlog=LISTEN_BACKLOG, interface=interface(listener))
    proxy = None
    if listener.enable_proxy_protocol:
        from gateway.proxyproto import ProxyHeaderFactory

        proxy = ProxyHeaderFactory(factory, listener.enable_proxy_protocol, ctx.reactor,
                                   mqtt.settings.connect_timeout, tls)
        port = listen_tcp(ctx.reactor, listener.port, proxy, **where)
    else:
        port = listen_tcp(ctx.reactor, listener.port, factory, tls=tls, **where)
    return TCPHandle(port, mqtt, ctx.reactor, proxy)


def start_mqtt(ctx: ListenerContext, listener: Listener) -> TCPHandle:
    """MQTT over TCP, or over TLS when the listener has certfile/keyfile."""
    factory = _mqtt_factory(ctx, listener)
    return _listen(ctx, listener, factory, factory)


def start_websockets(ctx: ListenerContext, listener: Listener) -> TCPHandle:
    """MQTT over WebSockets (ws://, or wss:// with certfile/keyfile)."""
    from gateway.mqtt.websocket import MQTTWebSocketFactory

    mqtt = _mqtt_factory(ctx, listener)
    ws = MQTTWebSocketFactory(mqtt, ctx.reactor, listener.websockets_origin,
                              ctx.config.websockets_headers_size, ctx.config.set_tcp_nodelay,
                              mqtt.settings.connect_timeout)
    return _listen(ctx, listener, ws, mqtt)


def start_mqttsn(ctx: ListenerContext, listener: Listener) -> ListenerHandle:
    """MQTT-SN over UDP (gateway.mqttsn.udp), or over DTLS with TLS keys
    (gateway.mqttsn.dtls)."""
    if is_tls(listener):
        from gateway.mqttsn.dtls import start_dtls

        return start_dtls(ctx, listener)
    from gateway.mqttsn.udp import start_udp

    return start_udp(ctx, listener)


def start_coap(ctx: ListenerContext, listener: Listener) -> ListenerHandle:
    """CoAP over UDP (gateway.coap.transport): aiocoap on the reactor's asyncio loop."""
    from gateway.coap.transport import start_coap as start

    return start(ctx, listener)


def start_http_api(ctx: ListenerContext, listener: Listener) -> ListenerHandle:
    """Mosquitto 2.1's HTTP API, with metrics and a status page (gateway.web)."""
    from gateway.web.site import start_http_api as start

    return start(ctx, listener)


STARTERS: dict[str, Callable[[ListenerContext, Listener], ListenerHandle]] = {
    "mqtt": start_mqtt,
    "websockets": start_websockets,
    "coap": start_coap,
    "mqttsn": start_mqttsn,
    "http_api": start_http_api,
}


class ListenerService(service.Service):
    """Binds ports in ``privilegedStartService`` so they are open before any privilege drop."""

    log = Logger()

    def __init__(
        self,
        hub: Hub,
        config: Config,
        mqtt_settings: MQTTSettings,
        tls: dict[Any, Any] | None = None,
        settings_for: Callable[[Listener], MQTTSettings] | None = None,
    ) -> None:
        self.hub = hub
        self.config = config
        self.mqtt_settings = mqtt_settings
        self.tls = tls if tls is not None else {}
        self.settings_for = settings_for
        self.handles: list[ListenerHandle] = []

    def privilegedStartService(self) -> None:
        from twisted.internet import reactor

        ctx = ListenerContext(self.hub, self.config, self.mqtt_settings, reactor,
                              self.tls, self.settings_for)
        for listener in self.config.listeners:
            try:
                handle = STARTERS[listener.protocol](ctx, listener)
            except CannotListenError as e:
                path, line = listener.source
                raise SystemExit(
                    f"mqttgateway: {path}:{line}: listener: cannot listen on "
                    f"{e.interface or '*'}:{e.port}: {e.socketError}"
                ) from None
            port = getattr(handle, "port", None)
            host = port.getHost() if port is not None else None
            self.log.info(
                "listening for {protocol} on {host}:{port}",
                protocol=listener.protocol,
                host=getattr(host, "host", listener.bind_address),
                port=getattr(host, "port", listener.port),
            )
            self.handles.append(handle)
        if self.config.mqttsn_serial:
            from gateway.mqttsn.serial import start_serial_lines

            self.handles.extend(start_serial_lines(ctx))
        super().privilegedStartService()

    def stopService(self) -> defer.Deferred[Any]:
        """Stop listening and close every client connection (bounded wait)."""
        super().stopService()
        handles, self.handles = self.handles, []
        return defer.gatherResults([defer.maybeDeferred(h.close) for h in handles])
