"""Opens the configured listeners and closes their connections at shutdown."""

from __future__ import annotations

import socket
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.config import Config, Listener
from gateway.hub.hub import Hub
from gateway.mqtt.channel import MQTTSettings
from gateway.mqtt.transport import MQTTFactory


def _interface(listener: Listener) -> str:
    """Mosquitto binds every interface when no address is given; so do we, v4 and v6."""
    if listener.bind_address:
        return listener.bind_address
    if listener.socket_domain == "ipv4" or not socket.has_ipv6:
        return "0.0.0.0"
    return "::"


class ListenerService(service.Service):
    """Binds ports in ``privilegedStartService`` so they are open before any privilege drop."""

    log = Logger()

    def __init__(self, hub: Hub, config: Config, mqtt_settings: MQTTSettings) -> None:
        self.hub = hub
        self.config = config
        self.mqtt_settings = mqtt_settings
        self.factories: list[MQTTFactory] = []
        self.ports: list[Any] = []

    def privilegedStartService(self) -> None:
        from twisted.internet import reactor

        for listener in self.config.listeners:
            factory = MQTTFactory(
                self.hub,
                self.mqtt_settings,
                reactor,  # type: ignore[arg-type]
                listener,
                listener.max_connections,
                self.config.set_tcp_nodelay,
            )
            port = reactor.listenTCP(listener.port, factory, interface=_interface(listener))  # type: ignore[attr-defined]
            host = port.getHost()
            self.log.info(
                "listening for {protocol} on {host}:{port}",
                protocol=listener.protocol,
                host=host.host,
                port=host.port,
            )
            self.factories.append(factory)
            self.ports.append(port)
        super().privilegedStartService()

    def stopService(self) -> Any:
        super().stopService()
        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])

    def close_connections(self, timeout: float = 5.0) -> defer.Deferred[None]:
        """Close every client connection, then wait (bounded) until they are gone."""
        from twisted.internet import reactor

        for factory in self.factories:
            for proto in list(factory.protocols):
                proto.transport.loseConnection()

        def gone() -> bool:
            return not any(f.protocols for f in self.factories)

        async def wait() -> None:
            waited = 0.0
            while not gone() and waited < timeout:
                await task.deferLater(reactor, 0.05, lambda: None)
                waited += 0.05
            for factory in self.factories:
                for proto in list(factory.protocols):
                    proto.transport.abortConnection()

        return defer.ensureDeferred(wait())
