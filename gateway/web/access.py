"""Who may use the HTTP API: HTTP Basic against the hub's security, then an ACL check.

A request's username and password go through ``hub.authenticate`` as an MQTT CONNECT's
do, as client id ``http-api`` with protocol ``http``: the same password file, plugins
and ``allow_anonymous`` rules, and a failure counts toward the same per-address login
throttle. A request without credentials, on a listener that does not take anonymous
clients, is simply asked for them (401) without counting as a failed login: that is
how every browser starts.

Once in, the client must be allowed to *read* the request's path as if it were a topic
(``/metrics``, ``/api/v1/systree``): Mosquitto's own check. With an ACL file, ``topic
read /#`` in a user's section opens everything, ``topic read /metrics`` only the
scrape; without one every authenticated user may read.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed

from gateway.hub.api import READ, ClientInfo
from gateway.hub.auth import authorize_later, security_of

CLIENT_ID = "http-api"
REALM = "mqttgateway"

#: Outcomes of ``Guard.check``.
ALLOWED, CHALLENGE, FORBIDDEN = "allowed", "challenge", "forbidden"


def peer_of(request: Any) -> str:
    """``host:port`` as the other transports write a peer (the throttle keys on host)."""
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return f"{host}:{address.port}" if host is not None else str(address)


def credentials(request: Any) -> tuple[str, bytes] | None:
    """Username and password of a Basic ``Authorization`` header; None if absent or
    not Basic. A malformed one gives an empty username, which no backend accepts."""
    header = request.getHeader("authorization")
    if header is None:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "", b""
    username, _, password = decoded.partition(b":")
    return username.decode("utf-8", "replace"), password


def readable_path(path: str) -> bool:
    """Whether a path can be checked as a topic (no wildcards, no NUL)."""
    return not any(c in path for c in "+#\x00")


class Guard:
    """Authenticates and authorizes the requests of one HTTP API listener."""

    def __init__(self, hub: Any, listener: Any) -> None:
        self.hub = hub
        self.listener = listener

    def anonymous_allowed(self) -> bool:
        security = security_of(self.hub)
        return security is None or security.allows_anonymous(self.listener)

    def check(self, request: Any, path: str) -> Deferred[str]:
        """``ALLOWED``, ``CHALLENGE`` (ask for credentials) or ``FORBIDDEN``."""
        given = credentials(request)
        if given is None:
            if not self.anonymous_allowed():
                return succeed(CHALLENGE)
            username, password = None, None
        else:
            username, password = given
        client = ClientInfo(CLIENT_ID, "http", peer_of(request), username, self.listener)
        d = maybeDeferred(self.hub.authenticate, client, password)
        return d.addCallback(self._authenticated, client, path)

    def _authenticated(self, result: Any, client: ClientInfo, path: str) -> Any:
        if not result:
            return CHALLENGE
        if getattr(result, "username", None):
            client.username = result.username
        hub = self.hub
        wait = authorize_later(hub, client, READ, path)
        if wait is None:
            return ALLOWED if hub.authorize(client, READ, path) else FORBIDDEN
        return wait.addCallback(lambda _: ALLOWED if hub.authorize(client, READ, path) else FORBIDDEN)


def challenge(request: Any) -> bytes:
    """The 401 answer that makes a browser (or Prometheus) send credentials."""
    request.setResponseCode(401)
    request.setHeader(b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode())
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return b"Not authorised\n"
