"""The MQTT codec against hand-written bytes, as h11's ``test_io.py`` does.

``CASES`` drives both directions: each golden byte string is decoded (whole,
byte by byte, and followed by part of another packet) and re-encoded, and is
also compared with what ``tests/wire.py`` builds on its own. Malformed input
is checked by the reason code it carries, never by its message.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mqtt.codec import (
    MAX_PACKET_SIZE, Decoder, MQTTError, encode, packet_size, publish_parts, set_dup,
)
from gateway.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
)
from gateway.mqtt.reasons import PropertyId as P
from gateway.mqtt.reasons import ReasonCode as R
from tests import wire

X200 = b"x" * 200
X20K = b"x" * 20000

# (level, packet, golden bytes written from the spec, the same built by tests/wire.py)
CASES = [
    # --- 3.1.1 ---
    (4, PingReq(), b"\xc0\x00", wire.pingreq()),
    (4, PingResp(), b"\xd0\x00", wire.pingresp()),
    (4, Disconnect(), b"\xe0\x00", wire.disconnect()),
    (4, Publish("a/b", b"hi"), b"\x30\x07\x00\x03a/bhi", wire.publish("a/b", b"hi")),
    (
        4,
        Publish("a/b", b"hi", qos=1, packet_id=1),
        b"\x32\x09\x00\x03a/b\x00\x01hi",
        wire.publish("a/b", b"hi", qos=1, mid=1),
    ),
    (
        4,
        Publish("a/b", b"", qos=2, retain=True, dup=True, packet_id=0x1234),
        b"\x3d\x07\x00\x03a/b\x12\x34",
        wire.publish("a/b", qos=2, retain=True, dup=True, mid=0x1234),
    ),
    (4, Publish("t", X200), b"\x30\xcb\x01\x00\x01t" + X200, wire.publish("t", X200)),
    (4, Publish("t", X20K), b"\x30\xa3\x9c\x01\x00\x01t" + X20K, wire.publish("t", X20K)),
    (4, Publish("é/ü", b"\x00"), b"\x30\x08\x00\x05\xc3\xa9/\xc3\xbc\x00", wire.publish("é/ü", b"\x00")),
    (4, PubAck(1), b"\x40\x02\x00\x01", wire.puback(1)),
    (4, PubRec(2), b"\x50\x02\x00\x02", wire.pubrec(2)),
    (4, PubRel(3), b"\x62\x02\x00\x03", wire.pubrel(3)),
    (4, PubComp(0xFFFF), b"\x70\x02\xff\xff", wire.pubcomp(0xFFFF)),
    (
        4,
        Subscribe(1, [("a/+", 1), ("#", 0)]),
        b"\x82\x0c\x00\x01\x00\x03a/+\x01\x00\x01#\x00",
        wire.subscribe(1, [("a/+", 1), ("#", 0)]),
    ),
    (4, SubAck(1, [1, 0x80]), b"\x90\x04\x00\x01\x01\x80", wire.suback(1, [1, 0x80])),
    (
        4,
        Unsubscribe(2, ["a/+", "b"]),
        b"\xa2\x0a\x00\x02\x00\x03a/+\x00\x01b",
        wire.unsubscribe(2, ["a/+", "b"]),
    ),
    (4, UnsubAck(2), b"\xb0\x02\x00\x02", wire.unsuback(2)),
    (4, ConnAck(), b"\x20\x02\x00\x00", wire.connack()),
    (4, ConnAck(5, True), b"\x20\x02\x01\x05", wire.connack(5, sp=True)),
    (4, Connect("c"), b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c", wire.connect("c")),
    (
        4,
        Connect(
            "cid",
            clean_session=False,
            keepalive=10,
            username="u",
            password=b"pw",
            will=Will("w", b"bye", qos=1, retain=True),
        ),
        b"\x10\x1e\x00\x04MQTT\x04\xec\x00\x0a\x00\x03cid\x00\x01w\x00\x03bye\x00\x01u\x00\x02pw",
        wire.connect(
            "cid",
            clean=False,
            keepalive=10,
            username="u",
            password=b"pw",
            will_topic="w",
            will_payload=b"bye",
            will_qos=1,
            will_retain=True,
        ),
    ),
    (4, Connect("", keepalive=0), b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x00\x00\x00", wire.connect("", keepalive=0)),
    # Mosquitto's bridges set bit 7 of the level (try_private)
    (4, Connect("c", bridge=True), b"\x10\x0d\x00\x04MQTT\x84\x02\x00\x3c\x00\x01c",
     wire.connect("c", proto_level=0x84)),
    (3, Connect("c", protocol_level=3, bridge=True), b"\x10\x0f\x00\x06MQIsdp\x83\x02\x00\x3c\x00\x01c",
     wire.connect("c", proto_level=0x83, proto_name="MQIsdp")),
    # --- 3.1 ---
    (
        3,
        Connect("c", protocol_level=3),
        b"\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01c",
        wire.connect("c", proto_level=3),
    ),
    (
        3,
        Connect("c", protocol_level=3, password=b"p"),
        b"\x10\x12\x00\x06MQIsdp\x03\x42\x00\x3c\x00\x01c\x00\x01p",
        wire.connect("c", proto_level=3, password=b"p"),
    ),
    (3, Publish("a", b"p", qos=1, packet_id=7), b"\x32\x06\x00\x01a\x00\x07p", wire.publish("a", b"p", 1, mid=7)),
    (3, PubAck(7), b"\x40\x02\x00\x07", wire.puback(7)),
    (3, Subscribe(7, [("a", 2)]), b"\x82\x06\x00\x07\x00\x01a\x02", wire.subscribe(7, [("a", 2)])),
    # --- 5 ---
    (
        5,
        Connect("c", protocol_level=5),
        b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01c",
        wire.connect("c", proto_level=5),
    ),
    (
        5,
        Connect(
            "c",
            protocol_level=5,
            will=Will("w", b"x", properties={P.WILL_DELAY_INTERVAL: 5}),
            properties={P.SESSION_EXPIRY_INTERVAL: 3600},
        ),
        b"\x10\x1f\x00\x04MQTT\x05\x06\x00\x3c\x05\x11\x00\x00\x0e\x10\x00\x01c"
        b"\x05\x18\x00\x00\x00\x05\x00\x01w\x00\x01x",
        wire.connect(
            "c",
            proto_level=5,
            will_topic="w",
            will_payload=b"x",
            properties=wire.prop_u32(0x11, 3600),
            will_properties=wire.prop_u32(0x18, 5),
        ),
    ),
    (
        5,
        Connect("c", protocol_level=5, password=b"p"),
        b"\x10\x11\x00\x04MQTT\x05\x42\x00\x3c\x00\x00\x01c\x00\x01p",
        wire.connect("c", proto_level=5, password=b"p"),
    ),
    (5, ConnAck(), b"\x20\x03\x00\x00\x00", wire.connack(proto_ver=5)),
    (
        5,
        ConnAck(0x86, properties={P.REASON_STRING: "no"}),
        b"\x20\x08\x00\x86\x05\x1f\x00\x02no",
        wire.connack(0x86, proto_ver=5, properties=wire.prop_str(0x1F, "no")),
    ),
    (5, Publish("a", b"p"), b"\x30\x05\x00\x01a\x00p", wire.publish("a", b"p", proto_ver=5)),
    (
        5,
        Publish(
            "a",
            b"p",
            qos=1,
            packet_id=10,
            properties={P.MESSAGE_EXPIRY_INTERVAL: 60, P.USER_PROPERTY: [("k", "v")]},
        ),
        b"\x32\x13\x00\x01a\x00\x0a\x0c\x02\x00\x00\x00\x3c\x26\x00\x01k\x00\x01vp",
        wire.publish(
            "a",
            b"p",
            qos=1,
            mid=10,
            proto_ver=5,
            properties=wire.prop_u32(0x02, 60) + wire.prop_pair(0x26, "k", "v"),
        ),
    ),
    (
        5,
        Publish("", b"x", properties={P.TOPIC_ALIAS: 3}),
        b"\x30\x07\x00\x00\x03\x23\x00\x03x",
        wire.publish("", b"x", proto_ver=5, properties=wire.prop_u16(0x23, 3)),
    ),
    (5, PubAck(1), b"\x40\x02\x00\x01", wire.puback(1, proto_ver=5)),
    (5, PubAck(1, 0x10), b"\x40\x03\x00\x01\x10", wire.puback(1, 0x10, proto_ver=5)),
    (
        5,
        PubRec(1, 0x80, {P.REASON_STRING: "e"}),
        b"\x50\x08\x00\x01\x80\x04\x1f\x00\x01e",
        wire.pubrec(1, 0x80, proto_ver=5, properties=wire.prop_str(0x1F, "e")),
    ),
    (5, PubRel(2, 0x92), b"\x62\x03\x00\x02\x92", wire.pubrel(2, 0x92, proto_ver=5)),
    (5, PubComp(2), b"\x70\x02\x00\x02", wire.pubcomp(2, proto_ver=5)),
    (
        5,
        Subscribe(1, [("a", 0x2D)]),
        b"\x82\x07\x00\x01\x00\x00\x01a\x2d",
        wire.subscribe(1, [("a", 0x2D)], proto_ver=5),
    ),
    (
        5,
        Subscribe(1, [("a", 1)], {P.SUBSCRIPTION_IDENTIFIER: [300]}),
        b"\x82\x0a\x00\x01\x03\x0b\xac\x02\x00\x01a\x01",
        wire.subscribe(1, [("a", 1)], proto_ver=5, properties=wire.prop_varint(0x0B, 300)),
    ),
    (5, SubAck(1, [0, 0x87]), b"\x90\x05\x00\x01\x00\x00\x87", wire.suback(1, [0, 0x87], proto_ver=5)),
    (5, Unsubscribe(1, ["a"]), b"\xa2\x06\x00\x01\x00\x00\x01a", wire.unsubscribe(1, ["a"], proto_ver=5)),
    (5, UnsubAck(1, [0, 0x11]), b"\xb0\x05\x00\x01\x00\x00\x11", wire.unsuback(1, [0, 0x11], proto_ver=5)),
    (5, Disconnect(), b"\xe0\x00", wire.disconnect(proto_ver=5)),
    (5, Disconnect(0x04), b"\xe0\x01\x04", wire.disconnect(4, proto_ver=5)),
    (
        5,
        Disconnect(0x82, {P.SESSION_EXPIRY_INTERVAL: 0}),
        b"\xe0\x07\x82\x05\x11\x00\x00\x00\x00",
        wire.disconnect(0x82, proto_ver=5, properties=wire.prop_u32(0x11, 0)),
    ),
    (
        5,
        Auth(0x18, {P.AUTHENTICATION_METHOD: "m"}),
        b"\xf0\x06\x18\x04\x15\x00\x01m",
        wire.auth(0x18, wire.prop_str(0x15, "m")),
    ),
    (5, PingReq(), b"\xc0\x00", wire.pingreq()),
]


def _case_id(case: tuple) -> str:
    level, packet, golden, _ = case
    return f"v{level}-{type(packet).__name__}-{len(golden)}"


def decoder(level: int | None = 4) -> Decoder:
    d = Decoder()
    d.protocol_level = level
    return d


@pytest.fixture(params=CASES, ids=[_case_id(c) for c in CASES])
def case(request: pytest.FixtureRequest) -> tuple:
    return request.param


def test_golden_bytes_match_wire_builders(case: tuple) -> None:
    _, _, golden, built = case
    assert golden == built


def test_encode(case: tuple) -> None:
    level, packet, golden, _ = case
    assert encode(packet, level) == golden


def test_decode_whole(case: tuple) -> None:
    level, packet, golden, _ = case
    assert decoder(level).feed(golden) == [packet]


def test_decode_byte_by_byte(case: tuple) -> None:
    level, packet, golden, _ = case
    d = decoder(level)
    got = []
    for i in range(len(golden)):
        got += d.feed(golden[i : i + 1])
        if i < len(golden) - 1:
            assert got == []
    assert got == [packet]


def test_decode_with_trailing_bytes(case: tuple) -> None:
    level, packet, golden, _ = case
    following = wire.publish("n", b"x", qos=1, mid=9, proto_ver=level)
    d = decoder(level)
    assert d.feed(golden + following[:3]) == [packet]
    assert d.feed(following[3:]) == [Publish("n", b"x", qos=1, packet_id=9)]


def test_decode_many_in_one_feed() -> None:
    for level in (3, 4, 5):
        cases = [c for c in CASES if c[0] == level and not isinstance(c[1], Connect)]
        got = decoder(level).feed(b"".join(c[2] for c in cases))
        assert got == [c[1] for c in cases]


# --- protocol level ---------------------------------------------------------------


@pytest.mark.parametrize("level", [3, 4, 5])
def test_connect_sets_protocol_level(level: int) -> None:
    d = Decoder()
    assert d.protocol_level is None
    d.feed(wire.connect("c", proto_level=level))
    assert d.protocol_level == level


def test_level_5_applies_to_packets_after_connect_in_same_feed() -> None:
    raw = wire.connect("c", proto_level=5) + wire.publish("a", b"p", proto_ver=5)
    d = Decoder()
    assert d.feed(raw) == [Connect("c", protocol_level=5)]
    assert d.feed(b"") == [Publish("a", b"p")]


def test_feed_stops_after_connect_keeping_what_follows() -> None:
    """So the caller can raise max_packet_size once the client is authenticated."""
    raw = wire.connect("c") + wire.publish("a", b"x" * 100)
    d = Decoder(max_packet_size=len(wire.connect("c")))
    assert d.feed(raw) == [Connect("c")]
    assert d.buffered == len(wire.publish("a", b"x" * 100))
    d.max_packet_size = 1000
    assert d.feed(b"") == [Publish("a", b"x" * 100)]
    assert d.buffered == 0


def test_feed_accepts_bytearray_and_memoryview() -> None:
    raw = wire.publish("a", b"p")
    assert decoder().feed(bytearray(raw)) == [Publish("a", b"p")]
    assert decoder().feed(memoryview(raw)) == [Publish("a", b"p")]


def test_empty_feed_returns_nothing() -> None:
    assert decoder().feed(b"") == []


@pytest.mark.parametrize("level", [4, 5])
def test_topic_with_200_separators_is_accepted(level: int) -> None:
    topic = "a/" * 200 + "a"
    assert decoder(level).feed(wire.publish(topic, b"x", proto_ver=level)) == [Publish(topic, b"x")]


# --- malformed input --------------------------------------------------------------

C = wire.connect
PUB = wire.publish
PKT = wire.packet

# (level, bytes, reason); each is also fed byte by byte.
MALFORMED = [
    # reserved fixed-header flags
    pytest.param(4, b"\x60\x02\x00\x01", R.MALFORMED_PACKET, id="pubrel-flags-0"),
    pytest.param(4, b"\x80\x06\x00\x01\x00\x01a\x00", R.MALFORMED_PACKET, id="subscribe-flags-0"),
    pytest.param(4, b"\xa0\x05\x00\x01\x00\x01a", R.MALFORMED_PACKET, id="unsubscribe-flags-0"),
    pytest.param(4, b"\x41\x02\x00\x01", R.MALFORMED_PACKET, id="puback-flags-1"),
    pytest.param(4, b"\xc1\x00", R.MALFORMED_PACKET, id="pingreq-flags-1"),
    pytest.param(4, b"\x18" + C("c")[1:], R.MALFORMED_PACKET, id="connect-flags"),
    pytest.param(5, b"\xe2\x00", R.MALFORMED_PACKET, id="disconnect-flags"),
    # PUBLISH first byte
    pytest.param(4, b"\x36\x05\x00\x01a\x00\x01", R.MALFORMED_PACKET, id="publish-qos3"),
    pytest.param(4, b"\x38\x03\x00\x01a", R.MALFORMED_PACKET, id="publish-qos0-dup"),
    # remaining length
    pytest.param(4, b"\x30\xff\xff\xff\xff\x01", R.MALFORMED_PACKET, id="rl-5-bytes"),
    # packet types
    pytest.param(4, b"\x00\x00", R.PROTOCOL_ERROR, id="type-0"),
    pytest.param(4, b"\xf0\x00", R.PROTOCOL_ERROR, id="type-15-below-v5"),
    # strings
    pytest.param(4, PUB(b"a\xff"), R.MALFORMED_PACKET, id="topic-bad-utf8"),
    pytest.param(4, PUB(b"\xc0\xaf"), R.MALFORMED_PACKET, id="topic-overlong-utf8"),
    pytest.param(4, PUB(b"\xed\xa0\x80"), R.MALFORMED_PACKET, id="topic-surrogate"),
    pytest.param(4, PUB("a\x00b"), R.MALFORMED_PACKET, id="topic-nul"),
    pytest.param(5, PUB("a\x00b", proto_ver=5), R.MALFORMED_PACKET, id="topic-nul-v5"),
    pytest.param(4, C(b"c\xff"), R.MALFORMED_PACKET, id="client-id-bad-utf8"),
    pytest.param(4, C("c\x00"), R.MALFORMED_PACKET, id="client-id-nul"),
    pytest.param(4, C("c", username=b"\xff"), R.MALFORMED_PACKET, id="username-bad-utf8"),
    pytest.param(4, C("c", will_topic=b"\xfe"), R.MALFORMED_PACKET, id="will-topic-bad-utf8"),
    pytest.param(4, wire.subscribe(1, [(b"\xff", 0)]), R.MALFORMED_PACKET, id="filter-bad-utf8"),
    pytest.param(4, wire.subscribe(1, [("a\x00", 0)]), R.MALFORMED_PACKET, id="filter-nul"),
    pytest.param(4, wire.unsubscribe(1, [b"\xff"]), R.MALFORMED_PACKET, id="unsub-filter-bad-utf8"),
    # topic names
    pytest.param(4, PUB("a/+"), R.PROTOCOL_ERROR, id="topic-plus"),
    pytest.param(4, PUB("a/#", qos=1, mid=1), R.PROTOCOL_ERROR, id="topic-hash"),
    pytest.param(5, PUB("#", proto_ver=5), R.PROTOCOL_ERROR, id="topic-hash-v5"),
    pytest.param(4, PUB(""), R.PROTOCOL_ERROR, id="topic-empty"),
    pytest.param(5, PUB("", proto_ver=5), R.PROTOCOL_ERROR, id="topic-empty-no-alias-v5"),
    pytest.param(4, C("c", will_topic="w/+"), R.PROTOCOL_ERROR, id="will-topic-wildcard"),
    pytest.param(4, C("c", will_topic=""), R.PROTOCOL_ERROR, id="will-topic-empty"),
    # packet identifiers
    pytest.param(4, PUB("a", qos=1, mid=0), R.PROTOCOL_ERROR, id="publish-mid-0"),
    pytest.param(5, PUB("a", qos=2, mid=0, proto_ver=5), R.PROTOCOL_ERROR, id="publish-mid-0-v5"),
    pytest.param(4, wire.puback(0), R.PROTOCOL_ERROR, id="puback-mid-0"),
    pytest.param(4, wire.pubrel(0), R.PROTOCOL_ERROR, id="pubrel-mid-0"),
    # As Mosquitto reads them: malformed in (UN)SUBSCRIBE, a protocol error elsewhere.
    pytest.param(4, wire.subscribe(0, [("a", 0)]), R.MALFORMED_PACKET, id="subscribe-mid-0"),
    pytest.param(4, wire.unsubscribe(0, ["a"]), R.MALFORMED_PACKET, id="unsubscribe-mid-0"),
    # SUBSCRIBE / UNSUBSCRIBE payloads
    pytest.param(4, wire.subscribe(1, []), R.MALFORMED_PACKET, id="subscribe-empty"),
    pytest.param(5, wire.subscribe(1, [], proto_ver=5), R.MALFORMED_PACKET, id="subscribe-empty-v5"),
    pytest.param(4, wire.unsubscribe(1, []), R.MALFORMED_PACKET, id="unsubscribe-empty"),
    pytest.param(4, wire.subscribe(1, [("a", 3)]), R.MALFORMED_PACKET, id="subscribe-qos3"),
    pytest.param(4, wire.subscribe(1, [("a", 0x04)]), R.MALFORMED_PACKET, id="subscribe-reserved-bits"),
    pytest.param(3, wire.subscribe(1, [("a", 0x81)]), R.MALFORMED_PACKET, id="subscribe-reserved-bits-v3"),
    pytest.param(5, wire.subscribe(1, [("a", 0x40)], proto_ver=5), R.MALFORMED_PACKET, id="sub-reserved-v5"),
    pytest.param(5, wire.subscribe(1, [("a", 3)], proto_ver=5), R.MALFORMED_PACKET, id="subscribe-qos3-v5"),
    pytest.param(5, wire.subscribe(1, [("a", 0x30)], proto_ver=5), R.MALFORMED_PACKET, id="retain-handling-3"),
    pytest.param(5, wire.subscribe(1, [("$share/g/a", 4)], proto_ver=5), R.PROTOCOL_ERROR, id="shared-no-local"),
    pytest.param(4, PKT(0x82, b"\x00\x01\x00\x01a"), R.MALFORMED_PACKET, id="subscribe-no-options"),
    pytest.param(4, PKT(0x82, b"\x00\x01\x00\x05a"), R.MALFORMED_PACKET, id="subscribe-filter-overrun"),
    # CONNECT flags
    pytest.param(4, C("c", flags=0x03), R.MALFORMED_PACKET, id="connect-reserved-flag"),
    pytest.param(4, C("c", will_topic="w", will_qos=3), R.MALFORMED_PACKET, id="will-qos3"),
    pytest.param(4, C("c", flags=0x0A), R.MALFORMED_PACKET, id="will-qos-without-will"),
    pytest.param(4, C("c", flags=0x22), R.MALFORMED_PACKET, id="will-retain-without-will"),
    pytest.param(4, C("c", password=b"p"), R.PROTOCOL_ERROR, id="password-without-username"),
    # protocol name and level
    pytest.param(4, C("c", proto_level=3, proto_name="MQTT"), R.UNSUPPORTED_PROTOCOL_VERSION, id="mqtt-3"),
    pytest.param(4, C("c", proto_level=4, proto_name="MQIsdp"), R.UNSUPPORTED_PROTOCOL_VERSION, id="mqisdp-4"),
    pytest.param(4, C("c", proto_level=6), R.UNSUPPORTED_PROTOCOL_VERSION, id="level-6"),
    pytest.param(4, C("c", proto_level=0x85), R.UNSUPPORTED_PROTOCOL_VERSION, id="bridge-bit-5"),
    pytest.param(4, C("c", proto_level=0x83, proto_name="MQTT"), R.UNSUPPORTED_PROTOCOL_VERSION,
                 id="bridge-bit-mqtt-3"),
    pytest.param(4, C("c", proto_name="HTTP"), R.UNSUPPORTED_PROTOCOL_VERSION, id="name-http"),
    # body length against fields
    pytest.param(4, PKT(0x40, b"\x00\x01\x00"), R.MALFORMED_PACKET, id="puback-rl-3"),
    pytest.param(4, PKT(0x50, b"\x00"), R.MALFORMED_PACKET, id="pubrec-rl-1"),
    pytest.param(4, PKT(0x70, b""), R.MALFORMED_PACKET, id="pubcomp-rl-0"),
    pytest.param(4, PKT(0xC0, b"\x00"), R.MALFORMED_PACKET, id="pingreq-rl-1"),
    pytest.param(4, PKT(0xD0, b"\x00"), R.MALFORMED_PACKET, id="pingresp-rl-1"),
    pytest.param(4, PKT(0xE0, b"\x00"), R.MALFORMED_PACKET, id="disconnect-rl-1"),
    pytest.param(4, PKT(0x20, b"\x00\x00\x00"), R.MALFORMED_PACKET, id="connack-rl-3"),
    pytest.param(4, PKT(0x20, b"\x02\x00"), R.MALFORMED_PACKET, id="connack-reserved-flags"),
    pytest.param(4, PKT(0xB0, b"\x00\x01\x00"), R.MALFORMED_PACKET, id="unsuback-rl-3"),
    pytest.param(4, PKT(0x90, b"\x00\x01\x03"), R.MALFORMED_PACKET, id="suback-code-3"),
    pytest.param(4, PKT(0x10, C("c")[2:] + b"\x00"), R.MALFORMED_PACKET, id="connect-trailing"),
    pytest.param(4, PKT(0x10, C("c")[2:-1]), R.MALFORMED_PACKET, id="connect-short"),
    pytest.param(4, PKT(0x10, b"\x00\x04MQTT\x04\x02"), R.MALFORMED_PACKET, id="connect-no-keepalive"),
    pytest.param(4, PKT(0x30, b"\x00"), R.MALFORMED_PACKET, id="publish-rl-1"),
    pytest.param(4, PKT(0x30, b"\x00\x05abc"), R.MALFORMED_PACKET, id="publish-topic-overrun"),
    pytest.param(4, PKT(0x32, b"\x00\x01a\x00"), R.MALFORMED_PACKET, id="publish-no-room-for-mid"),
    pytest.param(5, PKT(0x40, b"\x00\x01\x00\x05\x1f"), R.MALFORMED_PACKET, id="puback-props-overrun-v5"),
    pytest.param(5, PKT(0x30, b"\x00\x01a"), R.MALFORMED_PACKET, id="publish-no-property-length-v5"),
    pytest.param(5, PKT(0x32, b"\x00\x01a\x00\x07"), R.MALFORMED_PACKET, id="publish-qos1-no-property-length-v5"),
    pytest.param(5, PKT(0x30, b"\x00\x01a\x03\x26"), R.MALFORMED_PACKET, id="publish-props-overrun-v5"),
    # level 5 properties
    pytest.param(5, PUB("a", proto_ver=5, properties=b"\x05\x00"), R.MALFORMED_PACKET, id="unknown-property"),
    pytest.param(
        5,
        PUB("a", proto_ver=5, properties=wire.prop_u32(0x11, 1)),
        R.MALFORMED_PACKET,  # as Mosquitto
        id="property-not-allowed",
    ),
    pytest.param(
        5,
        PUB("a", proto_ver=5, properties=wire.prop_u32(0x02, 1) * 2),
        R.MALFORMED_PACKET,  # as Mosquitto
        id="property-twice",
    ),
    pytest.param(
        4,
        C("c", proto_level=5, properties=wire.prop_byte(0x17, 2)),   # request problem info
        R.PROTOCOL_ERROR,
        id="byte-property-2",
    ),
    pytest.param(
        5,
        PUB("a", proto_ver=5, properties=wire.prop_u16(0x23, 0)),
        R.TOPIC_ALIAS_INVALID,  # as Mosquitto answers it
        id="topic-alias-0",
    ),
    pytest.param(
        5,
        PUB("a", proto_ver=5, properties=wire.prop_str(0x03, b"\xff")),
        R.MALFORMED_PACKET,
        id="property-bad-utf8",
    ),
    pytest.param(
        5,
        PKT(0x30, b"\x00\x01a\x05\x02\x00\x00"),
        R.MALFORMED_PACKET,
        id="property-block-overrun",
    ),
    pytest.param(
        5,
        wire.subscribe(1, [("a", 0)], 5, wire.prop_varint(0x0B, 1) + wire.prop_varint(0x0B, 2)),
        R.PROTOCOL_ERROR,
        id="two-subscription-ids",
    ),
    pytest.param(
        4,
        C("c", proto_level=5, will_topic="w", will_properties=wire.prop_u32(0x11, 1)),
        R.MALFORMED_PACKET,
        id="will-property-not-allowed",
    ),
    # Mosquitto's TOPIC_HIERARCHY_LIMIT: 200 separators
    pytest.param(4, PUB("a/" * 201, b"x"), R.PROTOCOL_ERROR, id="topic-201-separators"),
    pytest.param(4, PUB("/" * 65535, b"x"), R.PROTOCOL_ERROR, id="topic-65535-separators"),
    pytest.param(5, PUB("a/" * 201, b"x", proto_ver=5), R.PROTOCOL_ERROR,
                 id="topic-201-separators-v5"),
    pytest.param(4, C("c", will_topic="/" * 201), R.PROTOCOL_ERROR, id="will-topic-201-separators"),
]


@pytest.mark.parametrize(("level", "data", "reason"), MALFORMED)
def test_malformed(level: int, data: bytes, reason: R) -> None:
    with pytest.raises(MQTTError) as e:
        decoder(level).feed(data)
    assert e.value.reason is reason


@pytest.mark.parametrize(("level", "data", "reason"), MALFORMED)
def test_malformed_byte_by_byte(level: int, data: bytes, reason: R) -> None:
    d = decoder(level)
    with pytest.raises(MQTTError) as e:
        for i in range(len(data)):
            d.feed(data[i : i + 1])
    assert e.value.reason is reason


@pytest.mark.parametrize("level", [None, 4, 5])
def test_packet_too_large_before_the_body_arrives(level: int | None) -> None:
    d = Decoder(max_packet_size=100)
    d.protocol_level = level
    first = 0x10 if level is None else 0x30
    with pytest.raises(MQTTError) as e:
        d.feed(bytes([first]) + b"\xe8\x07")  # remaining length 1000, no body yet
    assert e.value.reason is R.PACKET_TOO_LARGE
    assert d.buffered == 0


def test_max_packet_size_counts_the_fixed_header() -> None:
    raw = wire.publish("t", b"x" * 10)  # 2 + 13 bytes
    assert decoder_with(len(raw)).feed(raw) == [Publish("t", b"x" * 10)]
    with pytest.raises(MQTTError) as e:
        decoder_with(len(raw) - 1).feed(raw)
    assert e.value.reason is R.PACKET_TOO_LARGE


def decoder_with(max_packet_size: int, level: int = 4) -> Decoder:
    d = Decoder(max_packet_size)
    d.protocol_level = level
    return d


def test_largest_remaining_length_fits_the_default_limit() -> None:
    d = decoder()
    assert d.feed(b"\x30\xff\xff\xff\x7f\x00\x01a") == []
    assert d.buffered == 8
    assert packet_size(268_435_455) == MAX_PACKET_SIZE


@pytest.mark.parametrize("rl", [0, 127, 128, 16383, 16384, 2097151, 2097152, 268_435_455])
def test_packet_size_adds_the_fixed_header(rl: int) -> None:
    assert packet_size(rl) == 1 + len(wire.remaining_length(rl)) + rl


def test_unsupported_protocol_waits_for_the_whole_connect() -> None:
    raw = wire.connect("client", proto_level=6)
    d = Decoder()
    assert d.feed(raw[:-1]) == []
    with pytest.raises(MQTTError) as e:
        d.feed(raw[-1:])
    assert e.value.reason is R.UNSUPPORTED_PROTOCOL_VERSION
    assert d.protocol_level is None


@pytest.mark.parametrize("level", [3, 5])
def test_password_without_username_allowed_at_levels_3_and_5(level: int) -> None:
    got = Decoder().feed(wire.connect("c", password=b"p", proto_level=level))
    assert got == [Connect("c", protocol_level=level, password=b"p")]


def test_error_keeps_packets_decoded_before_it() -> None:
    d = decoder()
    with pytest.raises(MQTTError) as e:
        d.feed(wire.publish("a", b"1") + wire.pingreq() + b"\x36\x00")
    assert e.value.reason is R.MALFORMED_PACKET
    assert e.value.packets == [Publish("a", b"1"), PingReq()]


def test_decoder_stays_failed_after_an_error() -> None:
    d = decoder()
    with pytest.raises(MQTTError):
        d.feed(b"\x00\x00")
    with pytest.raises(MQTTError) as e:
        d.feed(wire.pingreq())
    assert e.value.reason is R.PROTOCOL_ERROR


# --- publish_parts / set_dup ------------------------------------------------------


@pytest.mark.parametrize("level", [3, 4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("retain", [False, True])
def test_publish_parts(level: int, qos: int, retain: bool) -> None:
    head, tail = publish_parts("a/b", b"payload", qos, retain, level)
    mid = 0x0102
    whole = head + (mid.to_bytes(2, "big") if qos else b"") + tail
    assert whole == wire.publish("a/b", b"payload", qos, retain, mid=mid, proto_ver=level)
    if qos:
        assert set_dup(head) + b"\x01\x02" + tail == wire.publish(
            "a/b", b"payload", qos, retain, dup=True, mid=mid, proto_ver=level
        )


def test_publish_parts_returns_the_payload_itself_below_level_5() -> None:
    payload = b"p" * 1000
    head, tail = publish_parts(b"a/b", payload, 1, False)
    assert tail is payload
    assert head == b"\x32" + wire.remaining_length(1007) + b"\x00\x03a/b"


def test_publish_parts_with_properties() -> None:
    head, tail = publish_parts("a", b"p", 1, False, 5, {P.MESSAGE_EXPIRY_INTERVAL: 60})
    assert head + b"\x00\x05" + tail == wire.publish(
        "a", b"p", 1, mid=5, proto_ver=5, properties=wire.prop_u32(0x02, 60)
    )


def test_a_repeated_property_block_is_read_once_and_a_changed_one_again() -> None:
    d = decoder(5)
    user = wire.prop_pair(0x26, "k", "v")
    first, second = d.feed(wire.publish("a", b"1", proto_ver=5, properties=user)
                           + wire.publish("b", b"2", proto_ver=5, properties=user))
    assert second.properties is first.properties == {P.USER_PROPERTY: [("k", "v")]}
    assert (second.topic, second.payload) == ("b", b"2")
    other, = d.feed(wire.publish("c", b"3", proto_ver=5, properties=wire.prop_pair(0x26, "k", "w")))
    assert other.properties == {P.USER_PROPERTY: [("k", "w")]}
    # The same length with one byte changed is read, and refused, again.
    with pytest.raises(MQTTError, match="not allowed here"):
        d.feed(wire.publish("d", b"4", proto_ver=5, properties=b"\x11" + user[1:]))


def test_a_repeated_block_that_overruns_its_packet_is_malformed() -> None:
    """The bytes after the packet end (the next packet's) match the block read last
    time: the packet is still refused, not completed from its neighbour."""
    d = decoder(5)
    user = wire.prop_pair(0x26, "k", "v")
    d.feed(wire.publish("a", b"1", proto_ver=5, properties=user))
    body = b"\x00\x01b" + bytes((len(user),)) + user[:2]
    with pytest.raises(MQTTError) as e:
        d.feed(bytes((0x30, len(body))) + body + user[2:] + b"\x00" * 8)
    assert e.value.reason is R.MALFORMED_PACKET


# --- roundtrips (in addition to the table, never instead of it) -------------------

topic_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=40)
filters = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40)
user_props = st.lists(st.tuples(filters, filters), max_size=3)


@given(
    topic=topic_names,
    payload=st.binary(max_size=300),
    qos=st.integers(0, 2),
    retain=st.booleans(),
    dup=st.booleans(),
    mid=st.integers(1, 0xFFFF),
    level=st.sampled_from([3, 4, 5]),
    users=user_props,
)
def test_publish_roundtrip(
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, mid: int, level: int, users: list
) -> None:
    dup = dup and qos > 0
    props = {P.USER_PROPERTY: users} if users and level == 5 else {}
    p = Publish(topic, payload, qos, retain, dup, mid if qos else None, props)
    raw = encode(p, level)
    if not props:
        assert raw == wire.publish(topic, payload, qos, retain, dup, mid, proto_ver=level)
    assert decoder(level).feed(raw) == [p]
    # a split at any point is as good as the whole
    for cut in (1, len(raw) // 2, len(raw) - 1):
        d = decoder(level)
        assert d.feed(raw[:cut]) + d.feed(raw[cut:]) == [p]


@given(
    mid=st.integers(1, 0xFFFF),
    level=st.sampled_from([3, 4, 5]),
    topics=st.lists(st.tuples(filters, st.integers(0, 2)), min_size=1, max_size=5),
    v5_options=st.lists(st.sampled_from([0, 0x04, 0x08, 0x10, 0x20, 0x2C]), min_size=5, max_size=5),
    sub_id=st.integers(1, 268_435_455),
)
def test_subscribe_roundtrip(
    mid: int, level: int, topics: list, v5_options: list, sub_id: int
) -> None:
    props: dict = {}
    if level == 5:
        topics = [(f, q | o) for (f, q), o in zip(topics, v5_options) if not f.startswith("$share/")]
        topics = topics or [("a", 0)]
        props = {P.SUBSCRIPTION_IDENTIFIER: [sub_id]}
    s = Subscribe(mid, topics, props)
    raw = encode(s, level)
    if level < 5:
        assert raw == wire.subscribe(mid, topics)
    assert decoder(level).feed(raw) == [s]
