"""MQTT-SN over DTLS: a UDP listener with ``certfile``/``keyfile`` or ``psk_hint``.

The network is ``UDPNetwork`` with every datagram passed through the listener's
``gateway.dtls`` server: MQTT-SN messages are the application data of a DTLS session,
one session per client address. With ``use_identity_as_username`` the PSK identity or
the certificate's CN (``use_subject_as_username``: its subject) is the client's
username, and a CONNECT without one is refused. A session that ends (close_notify, an
error, a new handshake from the same address) ends the client at that address as a
lost connection: its will is published. A session whose address still has a client
is never closed for idleness; the client's own keepalive and sleep supervision decide.
"""

from __future__ import annotations

from typing import Any

from gateway import netaddr
from gateway.dtls.driver import Driver
from gateway.dtls.server import DTLSServer, Limits, Session
from gateway.dtls.stats import stats_for
from gateway.hub.auth import listener_key
from gateway.mqttsn.channel import MQTTSNChannel
from gateway.mqttsn.context import Forwarded, MQTTSNContext, context_for
from gateway.mqttsn.udp import UDPHandle, UDPNetwork, listen_udp
from gateway.tls import certificate_username, uses_certificate_identity


class DTLSNetwork(UDPNetwork):
    """The MQTT-SN clients of one DTLS listener."""

    max_message = 16384  # one DTLS record

    def __init__(self, ctx: MQTTSNContext, listener: Any, tls: Any, limits: Limits,
                 clock: Any) -> None:
        super().__init__(ctx, listener)
        self.requires_identity = uses_certificate_identity(listener)
        server = DTLSServer(tls.getContext, clock, limits, stats_for(ctx.hub),
                            keep=self.channels.__contains__)
        self.dtls = Driver(server, clock, self._send_datagram, self._opened, self._closed)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        for plain in self.dtls.receive(data, addr):
            UDPNetwork.datagramReceived(self, plain, addr)

    def write(self, addr: Any, data: bytes) -> None:
        if not self.dtls.send(addr, data):
            self.send_errors += 1  # no session (any more): nothing can reach that peer

    def broadcast(self, data: bytes) -> None:
        """No ADVERTISE: a broadcast cannot be encrypted for every client."""

    def identity(self, addr: Any) -> str | None:
        if type(addr) is Forwarded:
            addr = addr.via  # nodes behind a forwarder count as the forwarder
        session = self.dtls.server.session(addr)
        return session.username if session is not None else None

    def stopProtocol(self) -> None:
        super().stopProtocol()
        self.dtls.stop()

    def _send_datagram(self, data: bytes, addr: Any) -> None:
        UDPNetwork.write(self, addr, data)

    def _opened(self, session: Session) -> None:
        if self.requires_identity:
            session.username = certificate_username(session, self.listener, None)

    def _closed(self, addr: Any, reason: str) -> None:
        for key, channel in list(self.channels.items()):
            if key == addr or (type(key) is Forwarded and key.via == addr):
                channel.lost(f"DTLS session ended: {reason}")


def start_dtls(ctx: Any, listener: Any) -> UDPHandle:
    """The starter of a ``protocol mqttsn`` listener with TLS keys (``ctx``:
    ``gateway.listeners.ListenerContext``, whose ``tls`` holds its context)."""
    sn = context_for(ctx.hub, ctx.config, ctx.reactor, MQTTSNChannel, ctx.mqtt_settings.verbose)
    network = DTLSNetwork(sn, listener, ctx.tls[listener_key(listener)],
                          Limits.from_settings(ctx.config, listener), ctx.reactor)
    return listen_udp(sn, ctx.reactor, listener.port, netaddr.interface(listener), listener,
                      None, network)
