"""Protocol violations as raw bytes against a running gateway (``message_size_limit 100``).

Every case must end with the gateway closing that connection, sending nothing it
should not, and still serving everybody else. A client that broke the protocol
after a successful CONNECT has its will published. Bytes come from
``tests/wire.py`` or are written out by hand, never from the gateway's codec.
"""

from __future__ import annotations

import struct

import pytest

from tests import wire
from tests.e2e.clients import RawClient, unique

LEVELS = pytest.mark.parametrize("protocol", [3, 4], ids=["mqtt31", "mqtt311"])

CONNACK_REFUSED_PROTOCOL = wire.connack(1)


@pytest.fixture(scope="module")
def shared_gateway_config() -> list[str]:
    return ["message_size_limit 100"]


@pytest.fixture
def port(shared_gateway) -> int:
    return shared_gateway.port


@pytest.fixture
def still_serving(shared_gateway, raw):
    """Checks after the test that the gateway runs and a new client gets through."""
    yield
    assert shared_gateway.running(), shared_gateway.describe()
    client = raw(shared_gateway.port)
    assert client.connect(unique("bystander")) == (False, 0)
    client.send(wire.pingreq())
    client.expect(wire.pingresp())
    client.send(wire.disconnect())
    client.expect_closed()


@pytest.fixture
def watcher(paho, port):
    """A client subscribed to the wills of this test's violators."""
    client = paho(port, unique("watch"))
    client.connect()
    client.root = unique("e2e/violation-will")
    client.subscribe(f"{client.root}/#", 1)
    return client


def connect_body(client_id: str = "c") -> bytes:
    """A valid CONNECT's body (after the fixed header), to damage."""
    data = wire.connect(client_id)
    return data[2:]


# --- the first packet is not CONNECT --------------------------------------------------

FIRST_PACKET = [
    pytest.param(wire.pingreq(), id="pingreq"),
    pytest.param(wire.publish("a", b"x"), id="publish"),
    pytest.param(wire.publish("a", b"x", qos=1, mid=1), id="publish-qos1"),
    pytest.param(wire.subscribe(1, [("a", 0)]), id="subscribe"),
    pytest.param(wire.disconnect(), id="disconnect"),
    pytest.param(wire.connack(), id="connack"),
    # closed at the fixed header, before any of the body is read
    pytest.param(b"\x30\xff\xff\xff\x7f", id="publish-announcing-256-MB"),
    pytest.param(b"\x90\x80\xc2\xd7\x2f", id="suback-announcing-100-MB"),
]


@pytest.mark.parametrize("data", FIRST_PACKET)
def test_first_packet_not_connect(raw, port, still_serving, data):
    client = raw(port)
    client.send(data)
    assert client.expect_closed() == b""


# --- a bad CONNECT ----------------------------------------------------------------------

BAD_CONNECT = [
    pytest.param(wire.connect("c", proto_level=7), [CONNACK_REFUSED_PROTOCOL], id="protocol-level-7"),
    pytest.param(wire.connect("c", proto_level=3, proto_name="MQTT"), [CONNACK_REFUSED_PROTOCOL],
                 id="name-MQTT-with-level-3"),
    pytest.param(wire.connect("c", proto_level=4, proto_name="MQIsdp"), [CONNACK_REFUSED_PROTOCOL],
                 id="name-MQIsdp-with-level-4"),
    # MQTT-3.1.2-1: for a wrong protocol name the server MAY answer before closing.
    pytest.param(wire.connect("c", proto_name="MQTX"), [b"", CONNACK_REFUSED_PROTOCOL],
                 id="unknown-protocol-name"),
    pytest.param(wire.connect("c", flags=0x03), [b""], id="reserved-connect-flag"),
    pytest.param(wire.connect("c", flags=0x02 | 0x08), [b""], id="will-qos-without-will-flag"),
    pytest.param(wire.connect("c", flags=0x02 | 0x20), [b""], id="will-retain-without-will-flag"),
    pytest.param(wire.connect("c", will_topic="w", will_qos=3), [b""], id="will-qos-3"),
    pytest.param(wire.connect("c", will_topic="w/+"), [b""], id="will-topic-wildcard"),
    pytest.param(wire.connect("c", will_topic=""), [b""], id="will-topic-empty"),
    pytest.param(wire.connect("c", password="secret"), [b""], id="password-without-username"),
    pytest.param(wire.connect(b"c\xff"), [b""], id="client-id-invalid-utf8"),
    pytest.param(wire.connect("c\x00d"), [b""], id="client-id-with-nul"),
    pytest.param(wire.packet(0x10, connect_body() + b"\x00"), [b""], id="trailing-byte"),
    pytest.param(wire.packet(0x10, connect_body()[:-2]), [b""], id="client-id-truncated"),
    pytest.param(wire.packet(0x12, connect_body()), [b""], id="fixed-header-flags"),
    pytest.param(b"\x10\x80\xb8\xb8\x72", [b""], id="announcing-240-MB"),
    pytest.param(b"\x10\xa1\x8d\x06", [b""], id="announcing-100001-bytes"),
]


@pytest.mark.parametrize("data, replies", BAD_CONNECT)
def test_bad_connect(raw, port, still_serving, data, replies):
    client = raw(port)
    client.send(data)
    assert client.expect_closed() in replies


# --- violations after a successful CONNECT ------------------------------------------------

AFTER_CONNECT = [
    pytest.param(wire.connect("again"), id="second-connect"),
    # reserved flag bits in the fixed header
    pytest.param(wire.packet(0x80, struct.pack("!H", 1) + wire.string("a") + b"\x00"), id="subscribe-flags-0"),
    pytest.param(wire.packet(0xA0, struct.pack("!H", 1) + wire.string("a")), id="unsubscribe-flags-0"),
    pytest.param(wire.packet(0x60, struct.pack("!H", 1)), id="pubrel-flags-0"),
    pytest.param(wire.packet(0x41, struct.pack("!H", 1)), id="puback-flags-1"),
    pytest.param(b"\xc1\x00", id="pingreq-flags-1"),
    pytest.param(b"\xe2\x00", id="disconnect-flags-2"),
    # framing
    pytest.param(b"\x30" + b"\xff" * 5, id="remaining-length-5-bytes"),
    pytest.param(b"\xc0\x01\x00", id="pingreq-with-body"),
    pytest.param(wire.packet(0x40, b"\x00"), id="puback-truncated"),
    pytest.param(wire.packet(0x30, b"\x00\x05ab"), id="topic-overruns-packet"),
    pytest.param(b"\x00\x00", id="packet-type-0"),
    pytest.param(b"\xf0\x00", id="auth-below-mqtt5"),
    # topic names
    pytest.param(wire.publish(b"a/\xff\xfe", b"x"), id="topic-invalid-utf8"),
    pytest.param(wire.publish(b"a/\xc0\xaf", b"x"), id="topic-overlong-utf8"),
    pytest.param(wire.publish(b"a/\xed\xa0\x80", b"x"), id="topic-utf16-surrogate"),
    pytest.param(wire.publish("a/\x00b", b"x"), id="topic-with-nul"),
    pytest.param(wire.publish("a/+/c", b"x"), id="publish-topic-plus"),
    pytest.param(wire.publish("a/#", b"x"), id="publish-topic-hash"),
    pytest.param(wire.publish("", b"x"), id="publish-topic-empty"),
    # PUBLISH header and size
    pytest.param(wire.packet(0x36, wire.string("a") + b"\x00\x01x"), id="publish-qos-3"),
    pytest.param(wire.packet(0x38, wire.string("a") + b"x"), id="publish-qos0-with-dup"),
    pytest.param(wire.publish("a", b"x", qos=1, mid=0), id="publish-packet-id-0"),
    # SUBSCRIBE / UNSUBSCRIBE
    pytest.param(wire.subscribe(1, [("a/#/b", 0)]), id="filter-hash-not-last"),
    pytest.param(wire.subscribe(1, [("a/b#", 0)]), id="filter-hash-inside-level"),
    pytest.param(wire.subscribe(1, [("a+/b", 0)]), id="filter-plus-inside-level"),
    pytest.param(wire.subscribe(1, [("", 0)]), id="filter-empty"),
    pytest.param(wire.subscribe(1, [(b"a/\xff", 0)]), id="filter-invalid-utf8"),
    pytest.param(wire.subscribe(1, [("a", 3)]), id="subscribe-qos-3"),
    pytest.param(wire.packet(0x82, struct.pack("!H", 1)), id="subscribe-without-filters"),
    pytest.param(wire.subscribe(0, [("a", 0)]), id="subscribe-packet-id-0"),
    pytest.param(wire.unsubscribe(1, ["a/#/b"]), id="unsubscribe-invalid-filter"),
    # Mosquitto's limit: 200 '/' (201 levels)
    pytest.param(wire.subscribe(1, [("/" * 65535, 0)]), id="filter-65535-levels"),
    pytest.param(wire.subscribe(1, [("+/" * 201, 0)]), id="filter-202-levels"),
    pytest.param(wire.unsubscribe(1, ["a/" * 201]), id="unsubscribe-filter-202-levels"),
    pytest.param(wire.publish("a/" * 201, b"x"), id="topic-202-levels"),
    pytest.param(wire.packet(0xA2, struct.pack("!H", 1)), id="unsubscribe-without-filters"),
    # packets only a server sends
    pytest.param(wire.connack(), id="connack-from-client"),
    pytest.param(wire.suback(1, [0]), id="suback-from-client"),
    pytest.param(wire.unsuback(1), id="unsuback-from-client"),
    pytest.param(wire.pingresp(), id="pingresp-from-client"),
]


@LEVELS
@pytest.mark.parametrize("data", AFTER_CONNECT)
def test_violation_after_connect_closes_and_publishes_will(raw, port, watcher, still_serving, protocol, data):
    will = f"{watcher.root}/{unique('v')}"
    client = raw(port)
    assert client.connect(unique("bad"), proto_level=protocol, will_topic=will,
                          will_payload=b"violated", will_qos=1) == (False, 0)
    client.send(data)
    assert client.expect_closed() == b""
    msg = watcher.next_message()
    assert (msg.topic, msg.payload) == (will, b"violated")


def test_violation_in_the_same_segment_as_connect(raw, port, watcher, still_serving):
    """The CONNECT before the bad packet still counts: CONNACK, then close and will."""
    will = f"{watcher.root}/same-segment"
    client = raw(port)
    client.send(wire.connect(unique("hasty"), will_topic=will, will_payload=b"violated") + b"\xc1\x00")
    assert client.expect_closed() == wire.connack(0)
    assert watcher.next_message().topic == will


@LEVELS
def test_payload_over_message_size_limit_is_dropped_and_acknowledged(raw, paho, port, watcher, protocol):
    """As Mosquitto: not delivered, QoS 1 still acknowledged, the connection kept."""
    topic = f"{watcher.root}/{unique('big')}"
    client = raw(port)
    assert client.connect(unique("big"), proto_level=protocol) == (False, 0)
    client.send(wire.publish(topic, b"x" * 101))
    client.send(wire.publish(topic, b"x" * 101, qos=1, mid=7))
    client.expect(wire.puback(7))
    client.send(wire.publish(topic, b"fits", qos=1, mid=8))
    client.expect(wire.puback(8))
    assert [m.payload for m in watcher.wait_for(topic)] == [b"fits"]


def test_payload_at_message_size_limit_is_delivered(raw, paho, port, still_serving):
    topic = unique("e2e/size-limit")
    sub = paho(port, unique("sub"))
    sub.connect()
    sub.subscribe(topic, 1)
    client = raw(port)
    client.connect(unique("pub"))
    client.send(wire.publish(topic, b"x" * 100, qos=1, mid=1))
    client.expect(wire.puback(1))
    assert sub.next_message().payload == b"x" * 100


def test_many_violators_at_once(port, watcher, still_serving):
    """Twenty connections break the protocol together; each is closed on its own."""
    clients = []
    for i in range(20):
        client = RawClient(port)
        clients.append(client)
        client.connect(unique("crowd"), will_topic=f"{watcher.root}/{i}", will_payload=b"%d" % i)
    try:
        for client in clients:
            client.send(wire.publish("a/#", b"x"))
        for client in clients:
            assert client.expect_closed() == b""
        wills = sorted(int(watcher.next_message().payload) for _ in clients)
        assert wills == list(range(20))
    finally:
        for client in clients:
            client.close()
