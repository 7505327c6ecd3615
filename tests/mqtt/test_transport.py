"""MQTTProtocol and MQTTFactory: framing, limits, counters and closing, with no sockets.

The ``Broker`` and ``Client`` helpers come from ``test_channel``; here the subject
is what the transport adds around the channel: how bytes are cut into packets,
``max_connections``, ``max_packet_size``, the ``$SYS`` byte and message counters,
and what happens to input once a connection is closing.
"""

from __future__ import annotations

import pytest

from gateway.mqtt.channel import MQTTSettings
from tests import wire
from tests.mqtt.helpers import ADDR, Broker, RecordingTransport

BAD = wire.packet(0x36, b"\x00\x01a\x00\x01")  # PUBLISH with QoS 3


def test_connect_fed_one_byte_at_a_time():
    broker = Broker()
    client = broker.open()
    raw = wire.connect("bytewise", keepalive=30)
    client.send(*(raw[i : i + 1] for i in range(len(raw))))
    assert client.take() == wire.connack(0)
    assert broker.hub.session("bytewise") is not None


def test_packets_coalesced_in_one_read_are_handled_in_order():
    broker = Broker()
    client = broker.open()
    client.send(
        wire.connect("c1")
        + wire.subscribe(1, [("t", 1)])
        + wire.publish("t", b"self", qos=1, mid=4)
        + wire.pingreq()
    )
    assert client.take() == (
        wire.connack(0)
        + wire.suback(1, [1])
        + wire.publish("t", b"self", qos=1, mid=1)
        + wire.puback(4)
        + wire.pingresp()
    )


def test_packet_split_across_reads_with_the_next_one_attached():
    broker = Broker()
    client = broker.connect("c1")
    raw = wire.subscribe(1, [("a/b", 0)]) + wire.pingreq()
    client.send(raw[:3], raw[3:-1], raw[-1:])
    assert client.take() == wire.suback(1, [0]) + wire.pingresp()


def test_large_publish_with_multi_byte_remaining_length():
    broker = Broker()
    sub = broker.subscriber("sub", "big")
    pub = broker.connect("pub")
    payload = bytes(range(256)) * 600  # remaining length needs three bytes
    raw = wire.publish("big", payload)
    pub.send(raw[:1000], raw[1000:])
    assert sub.take() == raw


def test_malformed_packet_closes_the_connection():
    client = Broker().connect("c1")
    client.send(BAD)
    assert client.closed
    assert client.take() == b""


def test_input_after_close_is_ignored():
    broker = Broker()
    client = broker.connect("c1")
    client.send(wire.pingreq() + wire.connect("c1"))  # second CONNECT: closed
    assert client.closed
    assert client.take() == wire.pingresp()
    stats = broker.hub.stats
    before = (stats.bytes_received, stats.messages_received)
    client.send(wire.pingreq())
    assert client.take() == b""
    assert (stats.bytes_received, stats.messages_received) == before


@pytest.mark.parametrize("one_read", [True, False], ids=["one-read", "two-reads"])
def test_packets_before_a_malformed_one_are_handled_however_the_stream_is_cut(one_read):
    broker = Broker()
    sub = broker.subscriber("sub", "t")
    pub = broker.connect("pub")
    valid = wire.publish("t", b"valid", qos=1, mid=1)
    if one_read:
        pub.send(valid + BAD)
    else:
        pub.send(valid, BAD)
    assert pub.closed
    assert sub.take() == wire.publish("t", b"valid")
    assert pub.take() == wire.puback(1)


def test_packet_above_max_packet_size_closes():
    broker = Broker(MQTTSettings(max_packet_size=64))
    sub = broker.subscriber("sub", "t")
    pub = broker.connect("pub")
    small = wire.publish("t", b"x" * 10)
    pub.send(small)
    assert sub.take() == small
    pub.send(wire.publish("t", b"x" * 100))
    assert pub.closed
    assert sub.take() == b""


# --- the factory ----------------------------------------------------------------------


def test_max_connections_refuses_new_protocols_at_the_limit():
    broker = Broker(max_connections=2)
    first = broker.open()
    broker.open()
    assert broker.factory.buildProtocol(ADDR) is None
    first.lost()
    assert broker.factory.buildProtocol(ADDR) is not None


def test_unlimited_connections_by_default():
    broker = Broker()
    clients = [broker.open() for _ in range(50)]
    assert len(broker.factory.protocols) == 50
    for client in clients:
        client.lost()
    assert broker.factory.protocols == set()


def test_tcp_nodelay_is_set_when_configured():
    class NoDelayTransport(RecordingTransport):
        nodelay = None

        def setTcpNoDelay(self, enabled: bool) -> None:
            self.nodelay = enabled

    broker = Broker(set_tcp_nodelay=True)
    protocol = broker.factory.buildProtocol(ADDR)
    transport = NoDelayTransport()
    protocol.makeConnection(transport)
    assert transport.nodelay is True


def test_channel_gets_the_peer_address():
    client = Broker().open()
    peer = client.transport.getPeer()
    assert client.protocol.channel.peer == f"{peer.host}:{peer.port}"


# --- counters -------------------------------------------------------------------------


def test_counters_move_with_traffic():
    broker = Broker()
    stats = broker.hub.stats
    sub = broker.subscriber("sub", "t/#", qos=1)
    pub = broker.connect("pub")
    assert stats.messages_received == 3  # two CONNECTs and a SUBSCRIBE
    assert stats.bytes_received == (
        2 * len(wire.connect("sub")) + len(wire.subscribe(1, [("t/#", 1)]))
    )
    received, sent_before = stats.bytes_received, stats.bytes_sent
    chunk = wire.publish("t/a", b"0") + wire.publish("t/b", b"1", qos=1, mid=1)
    pub.send(chunk)
    assert stats.bytes_received == received + len(chunk)
    assert stats.messages_received == 5
    assert stats.publish_received == 2
    assert stats.publish_sent == 2
    out = sub.take()
    assert out == wire.publish("t/a", b"0") + wire.publish("t/b", b"1", qos=1, mid=1)
    assert pub.take() == wire.puback(1)
    assert stats.bytes_sent == sent_before + len(out) + len(wire.puback(1))
