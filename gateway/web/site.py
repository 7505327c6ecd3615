"""The ``protocol http_api`` listener: one twisted.web site in the gateway's process.

Every request is authenticated and authorized first (``gateway.web.access``), then
routed: Mosquitto's ``/api/v1/*``, ``/metrics`` for Prometheus, ``/api/status`` for the
status page, and files: from ``http_dir`` when set, else (and for what ``http_dir``
lacks) the gateway's own status page. GET and HEAD only; request bodies are read and
thrown away; no request is logged (the log stays free of per-request lines).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import pages, resource, server

from gateway.hub.auth import listener_key
from gateway.netaddr import LISTEN_BACKLOG, interface
from gateway.tcpserver import listen_tcp
from gateway.web import access, mosquitto
from gateway.web.files import resolve, serve_file
from gateway.web.metrics import Exposition
from gateway.web.status import TopicRates, status

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
IDLE_TIMEOUT = 60  # seconds an idle HTTP connection is kept


class APIRequest(server.Request):
    """Bodies are never used here: drop them as they arrive instead of buffering."""

    def gotLength(self, length: int | None) -> None:
        super().gotLength(None)

    def handleContentChunk(self, data: bytes) -> None:
        pass


class GatewayAPI(resource.Resource):
    """Routing after the access check; see the module docstring."""

    isLeaf = True
    log = Logger()

    def __init__(self, hub: Any, listener: Any, config: Any, clock: Any) -> None:
        super().__init__()
        self.hub = hub
        self.listener = listener
        self.config = config
        self.guard = access.Guard(hub, listener)
        self.metrics = Exposition(hub)
        self.rates = TopicRates(hub, clock)
        self.api = mosquitto.endpoints(hub, lambda: self.config.listeners)

    def render_GET(self, request: Any) -> Any:
        path = unquote(request.path.decode("latin-1"))
        if not access.readable_path(path):
            return pages.notFound("Not found", "Not found.").render(request)
        d = self.guard.check(request, path)
        d.addCallback(self._answer, request, path)
        d.addErrback(self._failed, request)
        return server.NOT_DONE_YET

    def _answer(self, outcome: str, request: Any, path: str) -> None:
        if request._disconnected:
            return
        if outcome == access.CHALLENGE:
            body: Any = access.challenge(request)
        elif outcome == access.FORBIDDEN:
            body = pages.forbidden("Not authorised", "Not authorised.").render(request)
        else:
            body = self.route(request, path)
        if body is not server.NOT_DONE_YET:
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
            request.finish()

    def route(self, request: Any, path: str) -> Any:
        api = self.api.get(path)
        if api is not None:
            request.setHeader(b"access-control-allow-origin", b"*")
            request.setHeader(b"content-type", b"application/json" if path != "/api/v1/version"
                              else b"text/plain; charset=utf-8")
            return api()
        if path == "/metrics":
            body, content_type = self.metrics.render(request.getHeader("accept"))
            request.setHeader(b"content-type", content_type.encode())
            return body
        if path == "/api/status":
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            return json.dumps(status(self.hub, self.rates)).encode()
        if path.startswith("/api/"):
            return pages.notFound("Not found", "Not found.").render(request)
        http_dir = self.listener.http_dir
        filename = (resolve(http_dir, path) if http_dir else None) or resolve(STATIC, path)
        if filename is None:
            return pages.notFound("Not found", "Not found.").render(request)
        return serve_file(request, filename)

    def _failed(self, failure: Any, request: Any) -> None:
        self.log.failure("HTTP API request failed", failure)
        if not request._disconnected and not request.finished:
            request.setResponseCode(500)
            request.write(b"Internal server error.\n")
            request.finish()


class QuietSite(server.Site):
    """No access log: requests are not logged one by one."""

    noisy = False
    requestFactory = APIRequest

    def log(self, request: Any) -> None:
        pass


class HTTPHandle:
    """What ``gateway.listeners`` keeps: the port (for the log) and ``close()``."""

    def __init__(self, port: Any, api: GatewayAPI) -> None:
        self.port = port
        self.api = api

    def reload(self, config: Any) -> None:
        self.api.config = config

    def close(self) -> defer.Deferred[Any]:
        self.api.rates.stop()
        return defer.maybeDeferred(self.port.stopListening)


def start_http_api(ctx: Any, listener: Any) -> HTTPHandle:
    """The ``protocol http_api`` starter (``ctx``: gateway.listeners.ListenerContext)."""
    api = GatewayAPI(ctx.hub, listener, ctx.config, ctx.reactor)
    site = QuietSite(api, timeout=IDLE_TIMEOUT)
    tls = ctx.tls.get(listener_key(listener))
    address = interface(listener)
    port = listen_tcp(ctx.reactor, listener.port, site, LISTEN_BACKLOG, address, tls)
    if tls is None and address not in ("127.0.0.1", "::1", "localhost"):
        GatewayAPI.log.warn(
            "HTTP API on {address}:{port} without TLS: passwords cross the network in "
            "clear; give the listener certfile and keyfile", address=address, port=listener.port)
    return HTTPHandle(port, api)
