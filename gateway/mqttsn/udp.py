"""MQTT-SN over UDP: one ``DatagramProtocol`` per listener, clients keyed by source address.

``listener PORT [ADDRESS]`` + ``protocol mqttsn``. Without an address the socket binds
``::`` and takes IPv4 clients too (as ``::ffff:a.b.c.d``), unless ``socket_domain
ipv4``. The receive buffer is enlarged so bursts from many sensors queue in the
kernel rather than vanish; what the kernel still drops is read from
``/proc/net/udp[6]`` and shown as ``$SYS/broker/mqttsn/udp/kernel dropped``. A listener
with ``certfile``/``keyfile`` or ``psk_hint`` speaks DTLS (``gateway.mqttsn.dtls``).

Datagrams go out with ``socket.sendto`` directly: Twisted's ``Port.write`` validates the
address string on every call, and a full send buffer (EAGAIN) must count a drop, not
raise into the reactor.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any

from twisted.internet import defer, udp
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from gateway import netaddr, outbox
from gateway.mqttsn.channel import MQTTSNChannel
from gateway.mqttsn.context import Forwarded, MQTTSNContext, Network, context_for

RECEIVE_BUFFER = 4 * 1024 * 1024  # bytes asked for (Linux doubles it for bookkeeping)
# SO_RCVBUFFORCE passes net.core.rmem_max with CAP_NET_ADMIN; Python does not name it.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)
MAX_DATAGRAM = 65535


class UDPNetwork(Network, DatagramProtocol):
    """The MQTT-SN clients of one UDP listener."""

    log = Logger()
    noisy = False
    max_message = 65507  # largest IPv4 UDP payload

    def __init__(self, ctx: MQTTSNContext, listener: Any = None,
                 multicast: tuple[str, int] | None = None) -> None:
        Network.__init__(self, ctx, listener)
        self.multicast = multicast  # (group, port) that ADVERTISE goes to
        self.send_errors = 0
        self.receive_buffer = 0
        self._inode = 0
        self._sendto: Any = None

    def startProtocol(self) -> None:
        sock = self.transport.socket  # type: ignore[attr-defined]
        self._sendto = sock.sendto
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                break
            except OSError:
                continue  # SO_RCVBUFFORCE needs CAP_NET_ADMIN
        self.receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        try:
            self._inode = os.fstat(sock.fileno()).st_ino
        except OSError:
            self._inode = 0
        self.ctx.add_network(self)

    def stopProtocol(self) -> None:
        self.ctx.remove_network(self)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        channel = self.channels.get(addr)
        if channel is not None:
            channel.datagram(data)
        else:
            self.ctx.unknown(self, addr, data)

    def write(self, addr: Any, data: bytes) -> None:
        try:
            self._sendto(data, addr)
        except OSError as e:
            # EAGAIN: send buffer full; ECONNREFUSED: an ICMP error from an earlier
            # datagram; EMSGSIZE: too big for the path. UDP may lose it either way.
            self.send_errors += 1
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNREFUSED, errno.EMSGSIZE,
                               errno.ENOBUFS, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EINVAL):
                raise

    def broadcast(self, data: bytes) -> None:
        if self.multicast is not None and self._sendto is not None:
            self.write(self.v4(self.multicast), data)

    def v4(self, addr: Any) -> Any:
        """An IPv4 address as this socket needs it (v4-mapped on a dual-stack socket)."""
        if self.transport.addressFamily == socket.AF_INET6:  # type: ignore[attr-defined]
            return (f"::ffff:{addr[0]}", addr[1])
        return addr

    def describe(self, addr: Any) -> str:
        if type(addr) is Forwarded:
            return f"{self.describe(addr.via)}/{addr.node_id.hex()}"
        return f"{addr[0]}:{addr[1]}"

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped on this socket (receive buffer full)."""
        if not self._inode:
            return 0
        inode = str(self._inode)
        for name in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(name) as fh:
                    next(fh, None)
                    for line in fh:
                        fields = line.split()
                        if len(fields) > 12 and fields[9] == inode:
                            return int(fields[-1])
            except OSError:
                continue
        return 0


class MulticastDiscovery(DatagramProtocol):
    """The ``mqttsn_multicast`` group: SEARCHGW heard here is answered from the listener's
    own socket (clients take the GWINFO source as the gateway's address)."""

    noisy = False

    def __init__(self, network: UDPNetwork) -> None:
        self.network = network

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        # Our own ADVERTISE comes back (multicast loop), as does other gateways' traffic.
        if len(data) == 3 and data[:2] == b"\x03\x01":
            network = self.network
            network.answer_searchgw(network.v4(addr), network.ctx.discovery.gwinfo)


class BatchingPort(udp.Port):
    """A UDP port whose readable event (up to ``maxThroughput`` bytes of datagrams) is
    handled between ``outbox.begin()`` and ``end()``: what a burst of sensors
    publishes reaches each TCP subscriber as one write, not one per datagram."""

    def doRead(self) -> None:
        outbox.begin()
        try:
            super().doRead()
        finally:
            outbox.end()


class UDPHandle:
    """What ``gateway.listeners`` keeps: ``port`` for the log, ``close()`` at shutdown."""

    def __init__(self, port: Any, network: UDPNetwork, group_port: Any = None) -> None:
        self.port = port
        self.network = network
        self.group_port = group_port

    def close(self) -> defer.Deferred[Any]:
        self.network.ctx.remove_network(self.network)
        ports = [p for p in (self.group_port, self.port) if p is not None]
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])


def listen_udp(ctx: MQTTSNContext, reactor: Any, port: int, interface: str, listener: Any = None,
               multicast: tuple[str, int] | None = None,
               network: UDPNetwork | None = None) -> UDPHandle:
    """Open one MQTT-SN UDP listener on ``interface``:``port`` (and its multicast group);
    ``network`` replaces the plain one (DTLS)."""
    if network is None:
        network = UDPNetwork(ctx, listener, multicast)
    udp_port = BatchingPort(port, network, interface, MAX_DATAGRAM, reactor)  # as listenUDP
    udp_port.startListening()
    group_port = None
    if multicast is not None:
        group, mport = multicast
        group_port = reactor.listenMulticast(mport, MulticastDiscovery(network), listenMultiple=True)
        group_port.joinGroup(group).addErrback(
            lambda f: UDPNetwork.log.warn("cannot join {group}: {error}", group=group, error=f.getErrorMessage())
        )
    return UDPHandle(udp_port, network, group_port)


def start_udp(ctx: Any, listener: Any) -> UDPHandle:
    """The ``protocol mqttsn`` starter for ``gateway.listeners`` (``ctx``: ListenerContext)."""
    sn = context_for(ctx.hub, ctx.config, ctx.reactor, MQTTSNChannel, ctx.mqtt_settings.verbose)
    return listen_udp(sn, ctx.reactor, listener.port, netaddr.interface(listener), listener,
                      getattr(listener, "mqttsn_multicast", None))
