"""Stateless DTLS cookies (RFC 6347 section 4.2.1) and the context setup they need.

A cookie is an HMAC of the peer's address under a secret that changes every minute
(the previous secret is still accepted), so a HelloVerifyRequest commits the server
to nothing and only a peer that receives datagrams at its source address can present
a valid cookie. OpenSSL asks for and checks cookies through context callbacks that
see only the connection, so each connection carries its address and the jar as its
application data (``Peer``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Protocol

from OpenSSL import SSL

COOKIE_BYTES = 16
ROTATION = 60.0           # seconds a secret signs new cookies
DTLS1_2_VERSION = 0xFEFD  # pyOpenSSL names no DTLS versions


class Clock(Protocol):
    def seconds(self) -> float: ...


class CookieJar:
    """Makes and checks cookies for addresses, with a rotating secret."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.current = os.urandom(32)
        self.previous = self.current
        self.rotate_at = clock.seconds() + ROTATION

    def _rotate(self) -> None:
        now = self.clock.seconds()
        if now >= self.rotate_at:
            self.previous = self.current
            self.current = os.urandom(32)
            self.rotate_at = now + ROTATION

    @staticmethod
    def _sign(secret: bytes, addr: Any) -> bytes:
        text = f"{addr[0]}|{addr[1]}".encode()
        return hmac.new(secret, text, hashlib.sha256).digest()[:COOKIE_BYTES]

    def make(self, addr: Any) -> bytes:
        self._rotate()
        return self._sign(self.current, addr)

    def check(self, addr: Any, cookie: bytes) -> bool:
        self._rotate()
        return (hmac.compare_digest(cookie, self._sign(self.current, addr))
                or hmac.compare_digest(cookie, self._sign(self.previous, addr)))


class Peer(Protocol):
    """What a connection's application data offers the cookie callbacks."""

    def cookie(self) -> bytes: ...

    def cookie_ok(self, cookie: bytes) -> bool: ...


def _generate(conn: SSL.Connection) -> bytes:
    peer: Peer = conn.get_app_data()
    return peer.cookie()


def _verify(conn: SSL.Connection, cookie: bytes) -> bool:
    peer: Peer = conn.get_app_data()
    return peer.cookie_ok(cookie)


def prepare_context(ctx: SSL.Context) -> SSL.Context:
    """Make a server context (``SSL.DTLS_SERVER_METHOD``) ready for this package:
    DTLS 1.2 only, no MTU queries (memory BIOs have no path), no renegotiation (a
    client could make the server redo its costliest step at will), buffers released
    while idle, cookies by ``Peer``. Call it before the context serves its first connection."""
    ctx.set_min_proto_version(DTLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_RENEGOTIATION)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)  # about 12 KiB less per idle session
    ctx.set_cookie_generate_callback(_generate)
    ctx.set_cookie_verify_callback(_verify)
    return ctx
