"""What a client can make the broker buffer, hold and log: the decoder alone, then
the transport and channel on a ``task.Clock``, all driven with raw bytes.

Sizes are checked at the fixed header: a packet announced longer than allowed
closes the connection with nothing of its body buffered (``decoder.buffered``).
Before CONNACK the limit is what a CONNECT needs (Mosquitto's 100,000 bytes of
remaining length); afterwards ``max_packet_size`` and ``message_size_limit``.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher

from gateway.mqtt.channel import MQTTSettings
from gateway.mqtt.codec import Decoder, MQTTError
from gateway.mqtt.reasons import ReasonCode
from gateway.mqtt.transport import CONNECT_REMAINING, PUBLISH_OVERHEAD, connect_limit, packet_limit
from tests import wire
from tests.mqtt.helpers import ADDR, Broker, Client


def announce(first: int, remaining_length: int) -> bytes:
    """A fixed header alone: the body is never sent."""
    return bytes([first]) + wire.remaining_length(remaining_length)


def assert_dropped_unbuffered(client: Client) -> None:
    assert client.closed
    assert client.take() == b""
    assert client.protocol.decoder.buffered == 0


def connect_of(remaining_length: int, **kw: object) -> bytes:
    """A valid CONNECT with exactly this remaining length (the password fills it)."""
    empty = wire.connect("c", username="u", password=b"", **kw)
    body = next(n for n in range(len(empty)) if len(empty) == 1 + len(wire.remaining_length(n)) + n)
    raw = wire.connect("c", username="u", password=b"p" * (remaining_length - body), **kw)
    assert raw[1:].startswith(wire.remaining_length(remaining_length))
    assert len(raw) == 1 + len(wire.remaining_length(remaining_length)) + remaining_length
    return raw


# --- the decoder alone: awaiting CONNECT --------------------------------------------

NOT_CONNECT = [0x20, 0x30, 0x32, 0x40, 0x62, 0x82, 0x90, 0xA2, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0, 0x00]


@pytest.mark.parametrize("first", NOT_CONNECT, ids=lambda b: f"{b:#04x}")
def test_first_byte_not_connect_fails_at_once(first: int) -> None:
    """One byte is enough: no remaining length is read, no body buffered."""
    d = Decoder()
    with pytest.raises(MQTTError) as e:
        d.feed(bytes([first]))
    assert e.value.reason is ReasonCode.PROTOCOL_ERROR
    assert d.buffered == 0


def test_huge_packet_announced_first_fails_at_once() -> None:
    d = Decoder()
    with pytest.raises(MQTTError) as e:
        d.feed(b"\x30\xff\xff\xff\x7f" + bytes(65536))
    assert e.value.reason is ReasonCode.PROTOCOL_ERROR
    assert d.buffered == 0


# --- bodies of a fixed size are checked before they are buffered -------------------

FIXED_BODIES = [
    pytest.param(4, 0x40, id="puback"),
    pytest.param(4, 0x50, id="pubrec"),
    pytest.param(4, 0x62, id="pubrel"),
    pytest.param(4, 0x70, id="pubcomp"),
    pytest.param(4, 0xB0, id="unsuback"),
    pytest.param(4, 0x20, id="connack"),
    pytest.param(4, 0xC0, id="pingreq"),
    pytest.param(4, 0xD0, id="pingresp"),
    pytest.param(4, 0xE0, id="disconnect"),
    pytest.param(5, 0xC0, id="pingreq-v5"),
    pytest.param(5, 0xD0, id="pingresp-v5"),
]


@pytest.mark.parametrize(("level", "first"), FIXED_BODIES)
def test_fixed_size_packet_announcing_more_fails_at_its_header(level: int, first: int) -> None:
    d = Decoder()
    d.protocol_level = level
    with pytest.raises(MQTTError) as e:
        d.feed(bytes([first]) + b"\x80\x80\x40")  # a megabyte announced, nothing sent
    assert e.value.reason is ReasonCode.MALFORMED_PACKET


# --- before CONNECT ------------------------------------------------------------------

@pytest.mark.parametrize("first", [0x30, 0x32, 0x40, 0x62, 0x82, 0x90, 0xA2, 0xC0, 0xE0],
                         ids=lambda b: f"{b:#04x}")
def test_first_packet_not_connect_is_dropped_at_its_first_byte(first):
    client = Broker().open()
    client.send(bytes([first]))
    assert_dropped_unbuffered(client)
    client.send(b"\xff\xff\xff\x7f" + bytes(1000))  # input after the close is ignored
    assert client.protocol.decoder.buffered == 0


def test_connect_announcing_more_than_mosquitto_allows_is_dropped_at_its_header():
    client = Broker().open()
    client.send(announce(0x10, 240_000_000))
    assert_dropped_unbuffered(client)


def test_connect_of_100000_bytes_is_accepted_and_one_more_is_not():
    broker = Broker()
    at_limit = connect_of(CONNECT_REMAINING, will_topic="w", will_payload=b"x" * 65535)
    client = broker.open()
    client.send(at_limit)
    assert client.take() == wire.connack(0)
    over = connect_of(CONNECT_REMAINING + 1, will_topic="w", will_payload=b"x" * 65535)
    client = broker.open()
    client.send(over[:8])
    assert_dropped_unbuffered(client)


def test_message_size_limit_shrinks_the_connect_limit_by_the_will_share():
    settings = MQTTSettings(message_size_limit=100)
    assert connect_limit(settings) == connect_limit(MQTTSettings()) - (65535 - 100)
    client = Broker(settings).open()
    client.send(connect_of(CONNECT_REMAINING - 65535 + 100))
    assert client.take() == wire.connack(0)
    client = Broker(settings).open()
    client.send(announce(0x10, CONNECT_REMAINING - 65535 + 101))
    assert_dropped_unbuffered(client)


def test_a_smaller_max_packet_size_bounds_the_connect():
    settings = MQTTSettings(max_packet_size=64)
    assert connect_limit(settings) == 64
    client = Broker(settings).open()
    client.send(announce(0x10, 63))
    assert_dropped_unbuffered(client)


def test_will_payload_above_message_size_limit_gets_connack_5():
    client = Broker(MQTTSettings(message_size_limit=10)).open()
    client.send(wire.connect("c", will_topic="w", will_payload=b"x" * 11))
    assert client.take() == wire.connack(5)
    assert client.closed


def test_pipelined_publish_larger_than_a_connect_counts_once_authenticated():
    """The decoder stops after the CONNECT, so what follows is sized after CONNACK."""
    broker = Broker()
    sub = broker.subscriber("sub", "big")
    big = wire.publish("big", b"x" * 200_000)
    client = broker.open()
    client.send(wire.connect("pipelined") + big[:1000], big[1000:])
    assert client.take() == wire.connack(0)
    assert sub.take() == big


def test_before_authentication_pipelined_packets_get_the_connect_limit():
    broker = Broker()
    pending = Deferred()
    broker.hub.set_security(lambda client, password: pending, None)
    client = broker.open()
    client.send(wire.connect("slow") + announce(0x30, 200_000))
    assert_dropped_unbuffered(client)


def test_after_deferred_authentication_the_limit_rises():
    broker = Broker()
    sub = broker.subscriber("sub", "big")
    pending = Deferred()
    broker.hub.set_security(lambda client, password: pending, None)
    client = broker.open()
    client.send(wire.connect("slow"))
    pending.callback(True)
    assert client.take() == wire.connack(0)
    big = wire.publish("big", b"x" * 200_000)
    client.send(big)
    assert sub.take() == big


# --- after CONNECT -------------------------------------------------------------------

def test_packet_above_message_size_limit_plus_overhead_is_dropped_at_its_header():
    settings = MQTTSettings(message_size_limit=100)
    assert packet_limit(settings) == 100 + PUBLISH_OVERHEAD
    client = Broker(settings).connect("c")
    client.send(announce(0x30, 100 + PUBLISH_OVERHEAD))
    assert_dropped_unbuffered(client)


def test_packet_above_max_packet_size_is_dropped_at_its_header():
    client = Broker(MQTTSettings(max_packet_size=1000)).connect("c")
    client.send(announce(0x82, 998))  # 1 + 2 + 998 bytes
    assert_dropped_unbuffered(client)


def test_without_limits_an_authenticated_client_may_announce_the_protocol_maximum():
    client = Broker().connect("c")
    client.send(announce(0x30, 268_435_455) + wire.string("t"))
    assert not client.closed
    assert client.protocol.decoder.buffered == 8


@pytest.mark.parametrize("first", [0x40, 0x50, 0x62, 0x70, 0xC0, 0xE0], ids=lambda b: f"{b:#04x}")
def test_fixed_size_packet_announcing_a_body_is_dropped_at_its_header(first):
    client = Broker().connect("c")
    client.send(announce(first, 1_000_000))
    assert_dropped_unbuffered(client)


# --- topics and subscriptions --------------------------------------------------------

DEEP = [
    pytest.param("/" * 65535, id="65535-separators"),
    pytest.param("a/" * 200 + "#/", id="hash-after-201-levels"),
    pytest.param("+/" * 201, id="202-levels"),
]


@pytest.mark.parametrize("topic_filter", DEEP)
def test_subscribe_to_a_too_deep_filter_closes(topic_filter):
    broker = Broker()
    client = broker.connect("deep")
    client.send(wire.subscribe(1, [(topic_filter, 0)]))
    assert client.closed
    assert client.take() == b""
    assert broker.hub.session("deep").subscriptions == {}


def test_unsubscribe_from_a_too_deep_filter_closes():
    client = Broker().connect("deep")
    client.send(wire.unsubscribe(1, ["a/" * 201]))
    assert client.closed
    assert client.take() == b""


def test_filter_with_200_separators_is_granted():
    client = Broker().connect("deep")
    client.send(wire.subscribe(1, [("+/" * 200 + "#", 0)]))
    assert client.take() == wire.suback(1, [0])


def test_subscriptions_beyond_max_subscriptions_get_0x80():
    broker = Broker(MQTTSettings(max_subscriptions=2))
    client = broker.connect("many")
    client.send(wire.subscribe(1, [("a", 0), ("b", 1), ("c", 0)]))
    assert client.take() == wire.suback(1, [0, 1, 0x80])
    client.send(wire.subscribe(2, [("a", 1), ("d", 0)]))  # a is not a new one
    assert client.take() == wire.suback(2, [1, 0x80])
    client.send(wire.unsubscribe(3, ["b"]))
    assert client.take() == wire.unsuback(3)
    client.send(wire.subscribe(4, [("d", 0)]))
    assert client.take() == wire.suback(4, [0])
    assert sorted(broker.hub.session("many").subscriptions) == ["a", "d"]
    assert not client.closed


# --- logging -------------------------------------------------------------------------

@pytest.fixture
def logged():
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    yield events
    globalLogPublisher.removeObserver(events)


def lines(events) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_namespace", "").startswith("gateway.mqtt")]


def test_client_chosen_strings_are_escaped_and_cut_in_the_log(logged):
    broker = Broker(MQTTSettings(verbose=True))
    evil = "x\n2024-01-01 [-] forged line\x1b[31m\x07" + "y" * 65_000
    client = broker.connect(evil)
    client.send(wire.subscribe(1, [("t/\n" + "z" * 60_000, 0)]), wire.connect("again"))
    assert client.closed
    text = lines(logged)
    assert text and all("\n" not in line and "\x1b" not in line and "\x07" not in line
                        for line in text)
    assert all(len(line) < 1000 for line in text)
    assert any("x\\n2024-01-01 [-] forged line\\x1b[31m\\x07yyy" in line for line in text)


def test_connections_failing_before_connect_are_summarised(logged):
    """Ten lines per ten seconds, then one line that counts the rest."""
    broker = Broker()
    for i in range(50):
        client = broker.open()
        client.send(bytes([0x30 + (i % 2) * 0x60]))  # PUBLISH or SUBACK first
        assert client.closed
        client.lost()
    stalled = [broker.open() for _ in range(30)]  # no CONNECT: the timeout closes them
    broker.clock.advance(1)
    text = lines(logged)
    assert len(text) == 10
    assert all(line.startswith("closing connection from 192.168.1.1:54321 (None): first packet")
               for line in text)
    for _ in range(20):
        broker.clock.advance(1)
    assert all(client.closed for client in stalled)
    text = lines(logged)
    assert len(text) == 22, text
    assert text[10].startswith("40 more connections closed before CONNECT in the last 10 s "
                               "(protocol error: 40); from 1 addresses, 40 from 192.168.1.1")
    assert all(line.startswith("no CONNECT from 192.168.1.1:54321") for line in text[11:21])
    assert text[21].startswith("20 more connections closed before CONNECT in the last 10 s "
                               "(timeout: 20)")


def test_failures_after_connect_are_each_logged(logged):
    broker = Broker()
    for i in range(20):
        client = broker.connect(f"c{i}")
        client.send(b"\xc1\x00")
    text = lines(logged)
    assert len([line for line in text if line.startswith("closing connection")]) == 20


def test_refusals_at_max_connections_are_summarised(logged):
    broker = Broker(max_connections=1)
    broker.open()
    for _ in range(30):
        assert broker.factory.buildProtocol(ADDR) is None
    broker.clock.advance(10)
    text = [line for line in lines(logged) if "max_connections" in line]
    assert len(text) == 11, text
    assert text[-1].startswith("20 more connections refused at max_connections in the last 10 s "
                               "(max_connections: 20); from 1 addresses, 20 from 127.0.0.1")
