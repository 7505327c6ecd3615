"""A read the broker sends nothing back for is ACKed at once, over TCP and TLS.

A client that leaves Nagle on (paho-mqtt does) holds its next small packet until
its last one is ACKed. A reply carries that ACK; a PUBACK for a delivery gets no
reply, and a delayed ACK would stall the client's next PUBLISH. Here a real
``MQTTFactory`` listens on 127.0.0.1 and a blocking raw-socket client, in a
thread, plays publish-to-self at QoS 1. The broker's segments are counted with
its socket's ``TCP_INFO`` (``tcpi_segs_out``, which counts pure ACKs too) right
after it handled the PUBACK, from the reactor thread: exactly one segment has
left by then, so no clock is involved.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Any, Callable

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from gateway.config import Listener
from gateway.hub.hub import Hub
from gateway.mqtt.channel import MQTTSettings
from gateway.mqtt.transport import MQTTFactory
from gateway.tcpserver import listen_tcp
from gateway.tls import ServerTLS
from tests import wire
from tests.security.pki import make_pki

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux only")

TCPI_SEGS_OUT = 136  # offset of tcpi_segs_out in Linux's struct tcp_info
POLLS = 10_000       # reactor round trips to wait for a packet; only to avoid hangs


def segs_out(factory: MQTTFactory, client_id: str = "self") -> int:
    """Segments the broker's connection of ``client_id`` has sent so far."""
    (protocol,) = [p for p in factory.protocols
                   if p.channel.client is not None and p.channel.client.client_id == client_id]
    sock = protocol.transport.getHandle()
    if not isinstance(sock, socket.socket):  # TLS: the handle is the OpenSSL connection
        sock = protocol.transport.transport.getHandle()
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, TCPI_SEGS_OUT)[0]


def recv_exact(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "broker closed the connection"
        data += chunk
    return data


def in_reactor(f: Callable[[], Any]) -> Any:
    return threads.blockingCallFromThread(reactor, f)


def after_handling(factory: MQTTFactory, packets: int, client_id: str = "self") -> int:
    """From the client thread: wait until the broker has read ``packets`` packets in
    all, then return the segment count of ``client_id``'s connection, taken in the
    same reactor turn."""
    for _ in range(POLLS):
        count = in_reactor(lambda: factory.stats.messages_received >= packets
                           and segs_out(factory, client_id))
        if count is not False:
            return count
    raise AssertionError(f"broker did not read {packets} packets")


def subscribe_to_t(sock: Any, client_id: str, qos: int) -> None:
    """CONNECT as ``client_id`` and SUBSCRIBE to t at ``qos``, checking both answers."""
    sock.sendall(wire.connect(client_id, keepalive=60))
    assert recv_exact(sock, 4) == wire.connack(0)
    sock.sendall(wire.subscribe(1, [("t", qos)]))
    assert recv_exact(sock, 5) == wire.suback(1, [qos])


def publish_to_self(factory: MQTTFactory, port: int, wrap: Callable[[socket.socket], Any]) -> int:
    """CONNECT, SUBSCRIBE t at QoS 1, PUBLISH to t at QoS 1, PUBACK the delivery:
    the broker's segments between having handled the PUBLISH and the PUBACK."""
    sock = wrap(socket.create_connection(("127.0.0.1", port)))
    try:
        subscribe_to_t(sock, "self", 1)
        sock.sendall(wire.publish("t", b"x" * 64, qos=1, mid=7))
        delivery = wire.publish("t", b"x" * 64, qos=1, mid=1)
        assert recv_exact(sock, len(delivery) + 4) == delivery + wire.puback(7)
        before = after_handling(factory, 3)
        sock.sendall(wire.puback(1))
        return after_handling(factory, 4) - before
    finally:
        sock.close()


@pytest.fixture(params=["tcp", "tls"])
def broker(request: Any, tmp_path: Any) -> Any:
    factory = MQTTFactory(Hub(), MQTTSettings(), reactor)
    if request.param == "tcp":
        port = listen_tcp(reactor, 0, factory, interface="127.0.0.1")
        wrap: Callable[[socket.socket], Any] = lambda s: s
    else:
        pki = make_pki(tmp_path)
        tls = ServerTLS(Listener(0, certfile=pki["server"], keyfile=pki["server_key"]))
        port = listen_tcp(reactor, 0, factory, interface="127.0.0.1", tls=tls)
        context = ssl.create_default_context(cafile=pki["ca"])
        wrap = lambda s: context.wrap_socket(s, server_hostname="localhost")
    yield factory, port.getHost().port, wrap
    port.stopListening()


@pytest_twisted.ensureDeferred
async def test_puback_for_a_delivery_is_acked_at_once(broker):
    factory, port, wrap = broker
    sent = await threads.deferToThread(publish_to_self, factory, port, wrap)
    assert sent == 1  # the bare ACK, not left to the 40 ms delayed-ACK timer


def publish_after_a_delivery(factory: MQTTFactory, port: int, wrap: Callable[[socket.socket], Any]) -> int:
    """Client A subscribes to t, B publishes to t at QoS 0 (the broker writes to A
    between A's reads), then A publishes at QoS 0 to a topic nobody reads: the
    broker's segments to A between having handled B's PUBLISH and A's."""
    a = wrap(socket.create_connection(("127.0.0.1", port)))
    b = wrap(socket.create_connection(("127.0.0.1", port)))
    try:
        subscribe_to_t(a, "a", 0)
        b.sendall(wire.connect("b", keepalive=60))
        assert recv_exact(b, 4) == wire.connack(0)
        delivery = wire.publish("t", b"x" * 16)
        b.sendall(delivery)
        assert recv_exact(a, len(delivery)) == delivery
        before = after_handling(factory, 4, "a")
        a.sendall(wire.publish("u", b"y" * 16))
        return after_handling(factory, 5, "a") - before
    finally:
        a.close()
        b.close()


@pytest_twisted.ensureDeferred
async def test_qos0_publish_after_a_delivery_is_acked_at_once(broker):
    """Writing to a client puts Linux in its interactive mode for the connection,
    where it delays the ACK of what it reads next. A client that leaves Nagle on
    would hold its following packet until then."""
    factory, port, wrap = broker
    sent = await threads.deferToThread(publish_after_a_delivery, factory, port, wrap)
    assert sent == 1
