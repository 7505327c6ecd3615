"""``gateway.proxyproto.read_header``: PROXY protocol headers as raw bytes, whole, cut
short and malformed (the listeners are tested end to end in tests/e2e/test_proxy.py)."""

from __future__ import annotations

import socket
import struct

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.proxyproto import V2_SIGNATURE, HeaderError, ProxyHeaderFactory, read_header


def v2(command: int = 1, family: int = 0x11, body: bytes | None = None) -> bytes:
    """A version 2 header: PROXY (1) or LOCAL (0), TCP over IPv4 (0x11) by default."""
    if body is None:
        body = socket.inet_aton("203.0.113.7") + socket.inet_aton("192.0.2.1") + struct.pack("!HH", 40000, 1883)
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 1883\r\n"


def test_v1_tcp4():
    source, destination, rest = read_header(V1 + b"\x10rest", 1)
    assert source == IPv4Address("TCP", "203.0.113.7", 40000)
    assert destination == IPv4Address("TCP", "192.0.2.1", 1883)
    assert rest == b"\x10rest"


def test_v1_tcp6():
    source, _, rest = read_header(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 1883\r\n", 1)
    assert (source, rest) == (IPv6Address("TCP", "2001:db8::7", 40000), b"")


def test_v1_unknown_names_no_address():
    assert read_header(b"PROXY UNKNOWN\r\nabc", 1) == (None, None, b"abc")


@pytest.mark.parametrize("cut", range(1, len(V1)))
def test_v1_cut_short_waits(cut):
    assert read_header(V1[:cut], 1) is None


@pytest.mark.parametrize("data", [
    b"\x10\x0c\x00\x04MQTT",                                    # MQTT without a header
    b"GET / HTTP/1.1\r\n",
    b"PROXY TCP4 999.0.113.7 192.0.2.1 40000 1883\r\n",         # not an address
    b"PROXY TCP4 2001:db8::7 192.0.2.1 40000 1883\r\n",         # IPv6 under TCP4
    b"PROXY TCP4 203.0.113.7 192.0.2.1 0 1883\r\n",             # port 0
    b"PROXY TCP4 203.0.113.7 192.0.2.1 70000 1883\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 x 1883\r\n",
    b"PROXY TCP4 \xff\xfe 192.0.2.1 40000 1883\r\n",
    b"PROXY TCP4 203.0.113.7\r\n",
    b"PROXY UDP4 203.0.113.7 192.0.2.1 40000 1883\r\n",
    b"PROXY TCP4 " + b"1" * 120,                                # no CRLF within 107 bytes
    v2(),                                                       # version 2 on a version 1 listener
])
def test_v1_refuses(data):
    with pytest.raises(HeaderError):
        read_header(data, 1)


def test_v2_tcp4():
    source, destination, rest = read_header(v2() + b"\x10", 2)
    assert source == IPv4Address("TCP", "203.0.113.7", 40000)
    assert destination == IPv4Address("TCP", "192.0.2.1", 1883)
    assert rest == b"\x10"


def test_v2_tcp6_with_tlvs():
    addresses = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    tlv = bytes([0x04]) + struct.pack("!H", 3) + b"abc"       # PP2_TYPE_NOOP
    source, _, rest = read_header(v2(family=0x21, body=addresses + struct.pack("!HH", 5, 6) + tlv), 2)
    assert (source, rest) == (IPv6Address("TCP", "2001:db8::7", 5), b"")


@pytest.mark.parametrize("header", [v2(command=0, family=0, body=b""), v2(family=0x00, body=b""),
                                    v2(family=0x31, body=b"/run/a".ljust(108, b"\0") * 2)])
def test_v2_local_unspec_and_unix_name_no_address(header):
    assert read_header(header + b"x", 2) == (None, None, b"x")


@pytest.mark.parametrize("cut", range(1, len(v2())))
def test_v2_cut_short_waits(cut):
    assert read_header(v2()[:cut], 2) is None


@pytest.mark.parametrize("data", [
    V1,                                                          # version 1 on a version 2 listener
    b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x00",
    V2_SIGNATURE + bytes([0x11, 0x11]) + struct.pack("!H", 12) + bytes(12),   # version 1 nibble
    v2(command=2),                                               # unknown command
    v2(family=0x12),                                             # UDP
    v2(body=bytes(4)),                                           # addresses cut short
    v2(family=0x41, body=bytes(12)),                             # unknown family
])
def test_v2_refuses(data):
    with pytest.raises(HeaderError):
        read_header(data, 2)


# --- the wrapper, on an in-memory transport -------------------------------------------

class Recorder(Protocol):
    def connectionMade(self):
        self.peer = self.transport.getPeer()
        self.data = b""

    def dataReceived(self, data):
        self.data += data


def wrapper(version: int = 1):
    clock = Clock()
    factory = ProxyHeaderFactory(Factory.forProtocol(Recorder), version, clock, 10.0)
    proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 5000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 5000))
    proto.makeConnection(transport)
    return clock, proto, transport


def test_the_inner_protocol_is_built_for_the_proxied_address():
    clock, proto, transport = wrapper()
    proto.dataReceived(V1[:10])
    assert proto.wrappedProtocol is None
    proto.dataReceived(V1[10:] + b"mqtt")
    inner = proto.wrappedProtocol
    assert (inner.peer, inner.data) == (IPv4Address("TCP", "203.0.113.7", 40000), b"mqtt")
    clock.advance(60)
    assert not transport.disconnecting          # the deadline was for the header only


def test_no_header_in_time_closes_the_connection():
    clock, proto, transport = wrapper()
    proto.dataReceived(b"PROXY TCP4")
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting and proto.wrappedProtocol is None


def test_a_refused_inner_protocol_closes_the_connection():
    # As MQTTFactory does at max_connections or max_connection_rate.
    clock, proto, transport = wrapper()
    proto.factory.wrappedFactory.buildProtocol = lambda addr: None
    proto.dataReceived(V1)
    assert transport.disconnecting and proto.wrappedProtocol is None
