"""The lean TCP port: its connections keep none of the four per-connection values
Twisted's ``tcp.Server`` stores, and still answer for them, over TCP and TLS, open
and closed. A real MQTT client (raw socket, in a thread) talks to a real
``MQTTFactory`` on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from gateway.config import Listener
from gateway.hub.hub import Hub
from gateway.mqtt.channel import MQTTSettings
from gateway.mqtt.transport import MQTTFactory
from gateway.tcpserver import LeanServer, listen_tcp
from gateway.tls import ServerTLS
from tests import wire
from tests.security.pki import make_pki

DROPPED = ("logstr", "repstr", "fileno", "sessionno")


def recv_exact(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


@pytest.fixture(params=["tcp", "tls"])
def broker(request: Any, tmp_path: Any) -> Any:
    factory = MQTTFactory(Hub(), MQTTSettings(), reactor)
    tls = None
    wrap: Callable[[socket.socket], Any] = lambda s: s
    if request.param == "tls":
        pki = make_pki(tmp_path)
        tls = ServerTLS(Listener(0, certfile=pki["server"], keyfile=pki["server_key"]))
        context = ssl.create_default_context(cafile=pki["ca"])
        wrap = lambda s: context.wrap_socket(s, server_hostname="localhost")
    port = listen_tcp(reactor, 0, factory, interface="127.0.0.1", tls=tls)
    yield factory, port, wrap
    port.stopListening()


def connect(port: int, wrap: Callable[[socket.socket], Any], client_id: str = "lean") -> Any:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    sock.sendall(wire.connect(client_id))
    assert recv_exact(sock, 4) == wire.connack(0)
    return sock


def tcp_of(protocol: Any) -> LeanServer:
    transport = protocol.transport
    while not isinstance(transport, LeanServer):
        transport = transport.transport
    return transport


@pytest_twisted.ensureDeferred
async def test_connections_keep_none_of_the_dropped_values_and_still_answer(broker):
    factory, port, wrap = broker
    sock = await threads.deferToThread(connect, port.getHost().port, wrap)
    try:
        (protocol,) = factory.protocols
        conn = tcp_of(protocol)
        assert not set(DROPPED) & set(vars(conn))
        assert conn.fileno() == conn.socket.fileno() > 0
        assert conn.logPrefix() == conn.logstr == type(port.factory).__name__
        assert repr(conn) == f"<{type(conn.protocol).__name__} fd {conn.fileno()} on {port.getHost().port}>"
        assert conn in reactor.getReaders()
        sock.sendall(wire.pingreq())
        assert await threads.deferToThread(recv_exact, sock, 2) == wire.pingresp()
    finally:
        sock.close()
    for _ in range(500):
        if not factory.protocols:
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    assert not factory.protocols
    assert conn.fileno() == -1  # as Twisted answers for a closed connection
    assert conn not in reactor.getReaders()
    assert not set(DROPPED) & set(vars(conn))


@pytest_twisted.ensureDeferred
async def test_connections_from_one_host_share_its_address_string(broker):
    factory, port, wrap = broker
    socks = [await threads.deferToThread(connect, port.getHost().port, wrap, f"lean{i}")
             for i in range(2)]
    try:
        first, second = (tcp_of(p) for p in factory.protocols)
        assert first.client[0] == second.client[0] == "127.0.0.1"
        assert first.client[0] is second.client[0] is first.hostname
        assert first.getPeer().host == "127.0.0.1" and first.getPeer().port != second.getPeer().port
    finally:
        for sock in socks:
            sock.close()
