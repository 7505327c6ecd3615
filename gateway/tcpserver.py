"""A TCP listening port whose connections keep less per connection than Twisted's.

An idle MQTT connection costs a few KiB, and a gateway holds tens of thousands.
Twisted's ``tcp.Server`` stores, for each one, two formatted strings (``logstr``,
the legacy log prefix, and ``repstr``, for ``repr``), the socket's bound ``fileno``
method and a session number that only those strings use: about 260 bytes of an
idle connection. Here each is worked out when it is read (the session number is
not kept). The connection is still Twisted's own class and code; only these four
stores are dropped (``_derived``), so nothing of its logic is copied. The peer's host
string is interned: connections from one address share it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IProtocolFactory, IReactorTCP
from twisted.protocols.tls import TLSMemoryBIOFactory


def _drop(conn: Any, value: Any = None) -> None:
    """Twisted's assignment (or deletion) of a value worked out when read."""


def _derived(compute: Callable[[Any], Any]) -> property:
    return property(compute, _drop, _drop)


def _closed() -> int:
    return -1  # what Twisted's FileDescriptor.fileno answers once the socket is gone


def _fileno(conn: Any) -> Callable[[], int]:
    sock = getattr(conn, "socket", None)
    return _closed if sock is None else sock.fileno  # type: ignore[no-any-return]


def _repstr(conn: Any) -> str:
    protocol = getattr(conn, "protocol", None)
    return f"<{type(protocol).__name__} fd {conn.fileno()} on {conn.server._realPortNumber}>"


class LeanServer(tcp.Server):
    """Twisted's accepted connection, without the four per-connection stores, and
    with one copy of a peer host's address string however many connections it has
    (a fleet behind one NAT address; every load generator)."""

    def __init__(self, sock: Any, protocol: Any, client: tuple[Any, ...], server: tcp.Port,
                 sessionno: int, reactor: Any) -> None:
        super().__init__(sock, protocol, (sys.intern(client[0]), *client[1:]), server, sessionno,
                         reactor)

    sessionno = _derived(lambda conn: -1)
    logstr = _derived(lambda conn: conn.server.connection_prefix)  # one string per port
    repstr = _derived(_repstr)
    fileno = _derived(_fileno)


class LeanPort(tcp.Port):
    """``tcp.Port`` making ``LeanServer`` connections."""

    transport = LeanServer

    def __init__(self, port: int, factory: IProtocolFactory, backlog: int, interface: str,
                 reactor: IReactorTCP) -> None:
        super().__init__(port, factory, backlog, interface, reactor)
        self.connection_prefix = type(factory).__name__


def listen_tcp(reactor: IReactorTCP, port: int, factory: IProtocolFactory, backlog: int = 50,
               interface: str = "", tls: Any = None) -> tcp.Port:
    """``reactor.listenTCP``, or ``listenSSL`` with the context factory ``tls``, with
    lean connections (as Twisted's ``listenSSL``: TLS in memory over plain TCP)."""
    if tls is not None:
        factory = TLSMemoryBIOFactory(tls, False, factory)
    listening = LeanPort(port, factory, backlog, interface, reactor)
    if tls is not None:
        listening._type = "TLS"
    listening.startListening()
    return listening
