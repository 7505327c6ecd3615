"""``enable_proxy_protocol``: PROXY v1 and v2 headers as raw bytes before MQTT, MQTT
over TLS and MQTT over WebSockets. The address the header names is what the gateway
logs and what ``max_connection_rate`` counts; a connection without a valid header
is closed before any MQTT is read."""

from __future__ import annotations

import socket
import ssl
import struct

import pytest

from tests import wire
from tests.conftest import free_port, launch, serving
from tests.e2e.clients import RawClient, unique
from tests.e2e.wsclient import BINARY, RawWebSocket
from tests.security.pki import make_pki

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(source: str, port: int, family: str = "TCP4") -> bytes:
    destination = "127.0.0.1" if family == "TCP4" else "::1"
    return f"PROXY {family} {source} {destination} {port} 1883\r\n".encode()


def v2(source: str, port: int) -> bytes:
    if ":" in source:
        body = socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, "::1")
        family = 0x21
    else:
        body = socket.inet_aton(source) + socket.inet_aton("127.0.0.1")
        family = 0x11
    body += struct.pack("!HH", port, 1883)
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def gw(tmp_path_factory, pki):
    ports = [free_port() for _ in range(5)]
    lines = [
        "allow_anonymous true",
        f"listener {ports[0]} 127.0.0.1", "enable_proxy_protocol 1",
        f"listener {ports[1]} 127.0.0.1", "enable_proxy_protocol 2",
        f"listener {ports[2]} 127.0.0.1", "enable_proxy_protocol 1",
        f"certfile {pki['server']}", f"keyfile {pki['server_key']}",
        f"listener {ports[3]} 127.0.0.1", "protocol websockets", "enable_proxy_protocol 2",
        f"listener {ports[4]} 127.0.0.1", "enable_proxy_protocol 1", "max_connection_rate 1/3600",
    ]
    directory = tmp_path_factory.mktemp("proxy")
    for gateway in serving(launch(directory, lines, listener=False, args=["-v"])):
        gateway.v1, gateway.v2, gateway.tls, gateway.ws, gateway.rated = gateway.ports
        yield gateway


def mqtt_after(port: int, header: bytes, client_id: str) -> RawClient:
    """Header, then CONNECT, in one write as a proxy and a client would send them."""
    client = RawClient(port)
    client.send(header + wire.connect(client_id))
    return client


@pytest.mark.parametrize("version, source, shown", [
    (1, "203.0.113.7", "203.0.113.7"),
    (1, "2001:db8::7", "2001:db8::7"),
    (2, "203.0.113.8", "203.0.113.8"),
    (2, "2001:db8::8", "2001:db8::8"),
])
def test_the_proxied_address_is_the_clients(gw, version, source, shown):
    client_id, port = unique("px"), 40000 + version
    if version == 1:
        header = v1(source, port, "TCP6" if ":" in source else "TCP4")
    else:
        header = v2(source, port)
    mark = len(gw.stderr)
    with mqtt_after(gw.v1 if version == 1 else gw.v2, header, client_id) as client:
        client.expect(wire.connack(0))
    gw.wait_for_log(f"client {client_id} connected from {shown}:{port} ", mark)


@pytest.mark.parametrize("header", [b"PROXY UNKNOWN\r\n", V2_LOCAL], ids=["v1-unknown", "v2-local"])
def test_a_header_without_addresses_keeps_the_connections(gw, header):
    client_id = unique("px")
    mark = len(gw.stderr)
    with mqtt_after(gw.v1 if header.startswith(b"PROXY") else gw.v2, header, client_id) as client:
        client.expect(wire.connack(0))
    gw.wait_for_log(f"client {client_id} connected from 127.0.0.1:", mark)


def test_header_and_connect_byte_by_byte(gw):
    client_id = unique("px")
    data = v2("198.51.100.9", 50000) + wire.connect(client_id)
    with RawClient(gw.v2) as client:
        for i in range(len(data)):
            client.send(data[i:i + 1])
        client.expect(wire.connack(0))


@pytest.mark.parametrize("port_name, data", [
    ("v1", wire.connect("no-header")),
    ("v2", wire.connect("no-header")),
    ("v1", b"PROXY TCP4 203.0.113.777 127.0.0.1 1 2\r\n" + wire.connect("bad-address")),
    ("v1", b"PROXY TCP4 203.0.113.7 127.0.0.1 1\r\n" + wire.connect("short")),
    ("v1", v2("203.0.113.7", 1) + wire.connect("v2-on-v1")),
    ("v2", v1("203.0.113.7", 1) + wire.connect("v1-on-v2")),
    ("v2", V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12) + wire.connect("udp")),
    ("tls", wire.connect("plain-on-tls")),
    ("ws", b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n"),
], ids=["v1-none", "v2-none", "v1-address", "v1-short", "v2-on-v1", "v1-on-v2", "v2-udp",
        "tls-none", "ws-none"])
def test_a_connection_without_a_valid_header_is_closed(gw, port_name, data):
    with RawClient(getattr(gw, port_name)) as client:
        client.send(data)
        assert client.expect_closed() == b""


def test_a_refusal_is_logged_with_the_reason(gateway):
    # A gateway of its own: the shared one may be summarising refusals by now.
    gw = gateway("enable_proxy_protocol 2")
    with RawClient(gw.port) as client:
        client.send(wire.connect("no-header"))
        assert client.expect_closed() == b""
    gw.wait_for_log("refused connection from 127.0.0.1:")
    gw.wait_for_log(": no PROXY version 2 header")


def test_tls_follows_the_header(gw, pki):
    client_id = unique("px-tls")
    mark = len(gw.stderr)
    sock = socket.create_connection(("127.0.0.1", gw.tls), timeout=10)
    sock.sendall(v1("192.0.2.44", 44444))
    context = ssl.create_default_context(cafile=pki["ca"])
    with context.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(wire.connect(client_id))
        assert tls.recv(4) == wire.connack(0)
    gw.wait_for_log(f"client {client_id} connected from 192.0.2.44:44444 ", mark)


def test_websockets_follow_the_header(gw):
    client_id = unique("px-ws")
    mark = len(gw.stderr)
    sock = socket.create_connection(("127.0.0.1", gw.ws), timeout=10)
    sock.sendall(v2("2001:db8::99", 45454))
    ws = RawWebSocket(sock=sock)
    assert ws.handshake()[0] == 101
    ws.send(wire.connect(client_id))
    assert ws.receive() == (BINARY, wire.connack(0))
    ws.close()
    gw.wait_for_log(f"client {client_id} connected from 2001:db8::99:45454 ", mark)


def test_max_connection_rate_counts_the_proxied_address(gw):
    # 1 connection per hour and address: the proxy's own address (127.0.0.1) is
    # the same for all three, the clients' are not.
    with mqtt_after(gw.rated, v1("198.51.100.1", 1000), unique("rate")) as first:
        first.expect(wire.connack(0))
    with mqtt_after(gw.rated, v1("198.51.100.1", 1001), unique("rate")) as again:
        assert again.expect_closed() == b""
    with mqtt_after(gw.rated, v1("198.51.100.2", 1002), unique("rate")) as other:
        other.expect(wire.connack(0))
    gw.wait_for_log("refusing connections from 198.51.100.1: above max_connection_rate")
