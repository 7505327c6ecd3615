"""CoAP over DTLS (coaps://, RFC 7252 section 9): a CoAP listener with TLS keys.

The seam is the message interface: ``GatewayDTLS`` is the gateway's udp6 interface
with every datagram passed through the listener's ``gateway.dtls`` server, so
aiocoap's message layer, the deduplication, rate limits, resources and observations
above it are those of plain CoAP, each CoAP message being the application data of
one DTLS record. Requests carry a ``DTLSAddress`` remote whose ``identity`` is the
client's username when the listener has ``use_identity_as_username`` (PSK identity or
certificate CN; ``use_subject_as_username``: the subject); the site then ignores
``username``/``password`` in the query. A session that ends (close_notify, an error,
idleness, a new handshake from the same address) ends that address's observations
and exchanges, as an ICMP error does.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from aiocoap import Message

from gateway.coap.transport import GatewayAddress, GatewayUDP6
from gateway.dtls.driver import Driver
from gateway.dtls.server import DTLSServer, Limits, Session
from gateway.dtls.stats import stats_for
from gateway.tls import certificate_username, uses_certificate_identity


class DTLSAddress(GatewayAddress):
    """The remote of a request that came over DTLS."""

    scheme = "coaps"

    def __init__(self, sockaddr: Any, interface: Any, *, pktinfo: Any = None,
                 identity: str | None = None) -> None:
        super().__init__(sockaddr, interface, pktinfo=pktinfo)
        self.identity = identity

    @property
    def is_multicast(self) -> bool:
        return False

    @property
    def is_multicast_locally(self) -> bool:
        return False


class GatewayDTLS(GatewayUDP6):
    """The udp6 interface, encrypted (see the module docstring). ``make_driver`` is set
    by ``interface_for`` on a class of its own per listener."""

    make_driver: Callable[[GatewayDTLS], Driver]
    dtls: Driver

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._pktinfo: Any = None  # of the datagram being handled
        self.dtls = self.make_driver(self)

    def datagram_msg_received(self, data: bytes, ancdata: list[Any], flags: int,
                              address: Any) -> None:
        pktinfo = None
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                pktinfo = value
        self._pktinfo = pktinfo
        try:
            plain = self.dtls.receive(data, address)
        finally:
            self._pktinfo = None
        if not plain:
            return
        session = self.dtls.server.session(address)
        if session is None:
            return
        session.data = pktinfo  # answers leave from the address the client reached
        for record in plain:
            try:
                message = Message.decode(record, DTLSAddress(address, self, pktinfo=pktinfo,
                                                             identity=session.username))
            except Exception:  # aiocoap's option decoders raise more than UnparsableMessage
                self.log.warning("Ignoring unparsable message from %s", address)
                continue
            self._ctx.dispatch_message(message)

    def send(self, message: Any) -> None:
        # No session (any more): the peer is gone, and its exchanges ended with it.
        self.dtls.send(message.remote.sockaddr, message.encode())

    def send_datagram(self, data: bytes, addr: Any) -> None:
        """The DTLS server's output, in the clear on the socket."""
        session = self.dtls.server.sessions.get(addr)
        pktinfo = session.data if session is not None and session.data is not None else self._pktinfo
        self.transmit(data, addr, pktinfo, None)

    def session_closed(self, addr: Any, reason: str) -> None:
        self._ctx.dispatch_error(ConnectionResetError(f"DTLS session ended: {reason}"),
                                 GatewayAddress(addr, self))

    async def shutdown(self) -> None:
        self.dtls.stop()  # close_notify to every client while the socket is open
        await super().shutdown()


def interface_for(hub: Any, listener: Any, tls: Any, limits: Limits, clock: Any) -> type[GatewayDTLS]:
    """The message interface class of one DTLS listener."""
    named = uses_certificate_identity(listener)
    stats = stats_for(hub)

    def opened(session: Session) -> None:
        if named:
            session.username = certificate_username(session, listener, None)

    def make_driver(interface: GatewayDTLS) -> Driver:
        server = DTLSServer(tls.getContext, clock, limits, stats)
        return Driver(server, clock, interface.send_datagram, opened, interface.session_closed)

    return type("GatewayDTLS", (GatewayDTLS,), {"make_driver": staticmethod(make_driver)})
