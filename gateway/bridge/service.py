"""The bridges of a configuration as one Twisted service: built (TLS files read) with
the gateway, started after the listeners, stopped before them."""

from __future__ import annotations

import os
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from gateway.bridge.link import BridgeLink
from gateway.bridge.transport import Dialer
from gateway.config.bridges import Bridge
from gateway.errors import ConfigError
from gateway.hub.hub import Hub
from gateway.tls import client_options

SOURCE = "bridges"


def tls_options(bridge: Bridge) -> list[Any] | None:
    """One set of client TLS options per address (each checks its own host name), or
    None for a plain bridge; a file that cannot be used is reported at its line."""
    if not bridge.tls:
        return None
    files = (("bridge_cafile", bridge.cafile, os.path.isfile),
             ("bridge_capath", bridge.capath, os.path.isdir),
             ("bridge_certfile", bridge.certfile, os.path.isfile),
             ("bridge_keyfile", bridge.keyfile, os.path.isfile))
    for key, path, kind in files:
        if path and not (kind(path) and os.access(path, os.R_OK)):
            raise _error(bridge, key, f"cannot read {path!r}")
    try:
        return [client_options(host, bridge.cafile, bridge.certfile, bridge.keyfile,
                               capath=bridge.capath, insecure=bridge.insecure,
                               tls_version=bridge.tls_version, alpn=bridge.alpn)
                for host, _ in bridge.addresses]
    except Exception as e:  # pyOpenSSL and cryptography raise several kinds for bad PEM
        key = "bridge_certfile" if bridge.certfile else "bridge_cafile"
        raise _error(bridge, key, f"cannot load the certificates: {e or type(e).__name__}") from None


def _error(bridge: Bridge, key: str, reason: str) -> ConfigError:
    path, line = bridge.lines.get(key, bridge.source)
    return ConfigError(f"bridge {bridge.name!r}: {reason}", path, line, key)


class BridgeService(service.Service):
    """Every ``connection`` section's ``BridgeLink``, with their metrics."""

    log = Logger()

    def __init__(self, hub: Hub, bridges: list[Bridge], max_inflight: int = 20,
                 reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default

            reactor = default
        self.hub = hub
        self.links = [
            BridgeLink(hub, bridge, Dialer(reactor, bridge.addresses, tls_options(bridge),
                                           bridge.bind_address),
                       reactor, receive_maximum=max_inflight)
            for bridge in bridges
        ]
        links = self.links
        hub.probe("bridge_up", "gauge", "1 while the bridge is connected to its remote broker",
                  ("bridge",), lambda: [((x.name,), int(x.up)) for x in links], SOURCE)
        hub.probe("bridge_queued", "gauge", "Messages queued or in flight to the remote broker",
                  ("bridge",), lambda: [((x.name,), x.status()["queued"]) for x in links], SOURCE)
        hub.probe("bridge_connections", "counter", "Connections made to the remote broker",
                  ("bridge",), lambda: [((x.name,), x.connections) for x in links], SOURCE)

    def startService(self) -> None:
        super().startService()
        for link in self.links:
            self._start(link)

    def _start(self, link: BridgeLink) -> None:
        settings = link.settings
        if settings.local_username is None:
            link.start()
            return
        # A local username makes the bridge an ordinary client of the ACL: it logs in
        # as one (Mosquitto's local_username and local_password).
        password = None if settings.local_password is None else settings.local_password.encode()

        def decided(result: Any) -> None:
            if result:
                link.start()
            else:
                self.log.error("bridge {name} not started: local_username {username} refused: "
                               "{reason}", name=link.name, username=settings.local_username,
                               reason=result.reason.value)

        defer.maybeDeferred(self.hub.authenticate, link.client, password).addCallback(decided)

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        return defer.DeferredList([link.stop() for link in self.links], consumeErrors=True)
